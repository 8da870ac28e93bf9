/**
 * Mutated input against a live connector (a short run of scripts/fuzz-privval.ts): one case of
 * every kind — garbage and forgeries during the SecretConnection handshake, bad MACs, impossible
 * frame lengths, oversized length prefixes, wrong protobuf tags, random sealed bytes, requests
 * split at random points, connections closed or silent mid-frame. The connector must drop each
 * bad connection (or answer a well-formed refusal), dial again, leave the watermark untouched,
 * and sign a normal vote afterwards. CUSTOS_PRIVVAL_FUZZ_PASSES repeats the pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CASE_KINDS, runPrivvalFuzz } from '../../../scripts/fuzz-privval.js';

test('mutated handshakes, frames and messages: every bad connection is dropped and redialled, the watermark is untouched, a normal vote is signed after', { timeout: 120_000 }, async () => {
  const passes = Number(process.env.CUSTOS_PRIVVAL_FUZZ_PASSES ?? 1);
  const kinds = Array.from({ length: passes }, () => [...CASE_KINDS]).flat();
  const seed = Date.now() & 0x7fffffff;
  const logs: string[] = [];
  const report = await runPrivvalFuzz({ kinds, seed, readTimeoutMs: 500, log: (s) => logs.push(s) });
  const replay = `(replay: node --import tsx scripts/fuzz-privval.ts --passes ${passes} --seed ${seed} --read-timeout-ms 500)`;
  assert.equal(report.violations, 0, `${report.details.join('\n')}\n${replay}`);
  assert.equal(report.cases, kinds.length);
  assert.ok(report.reconnects >= kinds.length, `the connector dialled again after every case ${replay}`);
  assert.equal(report.watermarkUnchanged, true);
  assert.equal(report.finalVoteVerified, true);
  for (const kind of CASE_KINDS) assert.ok(report.outcomes[kind], `case ${kind} ran`);
});
