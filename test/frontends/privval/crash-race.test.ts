/**
 * Crash and race proofs for the privval remote signer, against the real `custos serve`
 * process and a test CometBFT node (test/helpers/cometbft-node.ts):
 *   - SIGKILL at random moments while signing never yields a double sign (a short run of
 *     scripts/privval-crash-soak.ts; CUSTOS_PRIVVAL_CYCLES sets the number of cycles);
 *   - two processes on one data dir, asked for conflicting prevotes at the same moment,
 *     sign at most one of them;
 *   - the same race over many heights, both conflicting votes sent to both processes at once,
 *     every returned signature checked independently (a short run of scripts/privval-race.ts;
 *     CUSTOS_PRIVVAL_RACE_ROUNDS sets the number of rounds).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serve, type ServeProcess } from '../../helpers/process.js';
import { TestNode } from '../../helpers/cometbft-node.js';
import { runPrivvalRace } from '../../../scripts/privval-race.js';
import {
  PASS,
  blockId,
  bytesFor,
  checkSignatures,
  ed25519Verify,
  makePrivvalVault,
  makeVote,
  runPrivvalCrashCycles,
  signRequest,
  type Vault,
} from '../../../scripts/privval-crash-soak.js';

test('the double-sign check is not vacuous', () => {
  const pub = new Uint8Array(32);
  const sig = (h: bigint, bytes: number) => ({ height: h, round: 0, type: 1 as const, signBytes: new Uint8Array([bytes]), signature: new Uint8Array(64), cycle: 1 });
  // Bogus signatures fail verification; two different sign bytes at one position is a double sign.
  assert.equal(checkSignatures(pub, [sig(1n, 1)]).violations, 1);
  assert.equal(checkSignatures(pub, [sig(1n, 1), sig(1n, 2)]).violations, 3);
  assert.equal(checkSignatures(pub, [sig(1n, 1), sig(2n, 2)]).violations, 2);
});

test('SIGKILL while signing never produces a double sign', { timeout: 120_000 }, async () => {
  const cycles = Number(process.env.CUSTOS_PRIVVAL_CYCLES ?? 8);
  const logs: string[] = [];
  const report = await runPrivvalCrashCycles({ cycles, log: (s) => logs.push(s) });
  assert.equal(report.violations, 0, `violations:\n${report.details.join('\n')}\n${logs.join('\n')}`);
  assert.equal(report.cycles, cycles);
  assert.ok(report.signatures > 0, 'signatures were returned');
});

test('two processes on one data dir: conflicting prevotes at the same moment, at most one is signed', { timeout: 60_000 }, async () => {
  const node = await TestNode.listen();
  let vault: Vault | undefined;
  const procs: ServeProcess[] = [];
  try {
    vault = await makePrivvalVault(node.address, 'custos-privval-race-');
    const started = await Promise.all([0, 1].map(() => serve(['--data-dir', vault!.dataDir, '--log-level', 'warn'], PASS)));
    procs.push(...started);
    const [a, b] = await node.waitForSigners(2, 15_000);
    assert.ok(a && b && a !== b);

    let signedTotal = 0;
    for (let i = 0; i < 20; i++) {
      const height = BigInt(10 + i * 3);
      const ts = { seconds: 1_700_000_000n + BigInt(i), nanos: 0 };
      const va = makeVote(1, height, 0, blockId(1 + i), ts);
      const vb = makeVote(1, height, 0, blockId(101 + i), ts);
      const [ra, rb] = await Promise.all([a.request(signRequest(va)), b.request(signRequest(vb))]);
      const outcomes: Array<'signed' | 'refused'> = [
        { v: va, r: ra },
        { v: vb, r: rb },
      ].map(({ v, r }): 'signed' | 'refused' => {
        assert.equal(r.kind, 'signed_vote_response');
        assert.ok(r.kind === 'signed_vote_response');
        if (r.vote && !r.error) {
          assert.ok(ed25519Verify(vault!.consensusPub, bytesFor(v, r.vote.timestamp), r.vote.signature), `h${height}: the signature verifies`);
          return 'signed';
        }
        assert.equal(r.error?.code, 2, `h${height}: the refusal is a double-sign refusal: ${JSON.stringify(r.error)}`);
        return 'refused';
      });
      const signed = outcomes.filter((o) => o === 'signed').length;
      assert.ok(signed <= 1, `h${height}: both conflicting prevotes were signed`);
      assert.equal(signed, 1, `h${height}: one of the two prevotes is signed`);
      signedTotal += signed;

      // Each process now refuses the block it did not sign, whichever process signed it.
      const winner = outcomes[0] === 'signed' ? va : vb;
      const loser = winner === va ? vb : va;
      for (const conn of [a, b]) {
        const r = await conn.request(signRequest(loser));
        assert.ok(r.kind === 'signed_vote_response' && !r.vote && r.error?.code === 2, `h${height}: the losing block is refused by every process`);
      }
    }
    assert.equal(signedTotal, 20);
  } finally {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await node.close();
    vault?.cleanup();
  }
});

test('two processes, many heights, both conflicting votes sent to both at once: every signature verifies, never two at one position', { timeout: 180_000 }, async () => {
  const rounds = Number(process.env.CUSTOS_PRIVVAL_RACE_ROUNDS ?? 400);
  const logs: string[] = [];
  const report = await runPrivvalRace({ rounds, log: (s) => logs.push(s) });
  const why = `${report.details.join('\n')}\n${logs.join('\n')}`;
  assert.equal(report.conflicts, 0, why);
  assert.equal(report.badSignatures, 0, why);
  assert.equal(report.unexpected, 0, why);
  assert.equal(report.unsignedRounds, 0, `every height got one of its two votes signed\n${why}`);
  // Per round: one vote signed (by one process, re-served by the other) and the other refused by both.
  assert.equal(report.signatures, 2 * rounds);
  assert.equal(report.refused, 2 * rounds);
});
