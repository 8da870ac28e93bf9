/**
 * Crash soak: start `custos serve`, stream create/sign requests at it from several clients,
 * SIGKILL it at a random moment, restart, and check after every cycle that
 *   - every key whose creation was acknowledged is present, with the same id and public key;
 *   - every acknowledged signature has its durable "ok" audit entry (same request id) and
 *     verifies under the key;
 * and at the end that the audit chain verifies and SQLite's integrity_check is clean.
 *
 *   node --import tsx scripts/crash-soak.ts --cycles 1000
 *
 * The test suite runs a short version of this (test/daemon/crash.test.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { custos, serve, type ServeProcess } from '../test/helpers/process.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { verifySignature } from '../src/crypto/algorithms.js';
import { DB_FILE } from '../src/vault/open.js';
import { verifyAudit } from '../src/vault/verify.js';
import type { Algorithm } from '../src/core/types.js';

interface AckKey {
  label: string;
  id: string;
  algorithm: Algorithm;
  publicKey: Uint8Array;
}
interface AckSig {
  requestId: string;
  label: string;
  message: Uint8Array;
  signature: Uint8Array;
}

export interface SoakReport {
  cycles: number;
  acknowledgedKeys: number;
  acknowledgedSignatures: number;
  missingKeys: number;
  unauditedSignatures: number;
  invalidSignatures: number;
  auditChainOk: boolean;
  integrityProblems: string[];
  ok: boolean;
}

const PASS = { CUSTOS_PASSPHRASE: 'crash soak passphrase' };

async function call(url: string, token: string, path: string, body: unknown, requestId: string): Promise<any> {
  const res = await fetch(url + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-request-id': requestId },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
}

/** How many of `keys` the store does not hold as acknowledged. */
async function countMissing(store: SqliteStore, keys: readonly AckKey[]): Promise<number> {
  let missing = 0;
  for (const k of keys) {
    const found = await store.findKey(k.id);
    if (!found || found.label !== k.label || Buffer.compare(found.publicKey, k.publicKey) !== 0) missing++;
  }
  return missing;
}

/** Adds the request ids of `sign ok` entries after `after` to `into`; returns the last sequence read. */
async function readOk(store: SqliteStore, after: number, into: Set<string>): Promise<number> {
  for (;;) {
    const page = await store.auditAfter(after, 5000);
    if (page.length === 0) return after;
    for (const e of page) if (e.operation === 'sign' && e.outcome === 'ok') into.add(e.requestId);
    after = page[page.length - 1]!.seq;
  }
}

export async function runCrashCycles(opts: { cycles: number; clients?: number; log?: (s: string) => void }): Promise<SoakReport> {
  const log = opts.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), 'custos-crash-'));
  const dataDir = join(dir, 'vault');
  const keys: AckKey[] = [];
  const sigs: AckSig[] = [];
  let totalSigs = 0;
  let missingKeys = 0;
  let unaudited = 0;
  let invalid = 0;
  let checkedKeys = 0;
  let auditSeen = 0;
  const okIds = new Set<string>();
  const ackIds: string[] = [];
  try {
    const init = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '10'], PASS);
    if (init.status !== 0) throw new Error(`init failed: ${init.stderr}`);
    const token = /custos_[A-Za-z0-9_-]{43}/.exec(init.stdout)![0];
    for (let cycle = 1; cycle <= opts.cycles; cycle++) {
      const s: ServeProcess = await serve(['--data-dir', dataDir, '--log-level', 'warn'], PASS);
      let stop = false;
      let n = 0;
      const worker = async (w: number) => {
        while (!stop) {
          const requestId = randomUUID();
          try {
            if (keys.length < 4 || Math.random() < 0.25) {
              const label = `c${cycle}-w${w}-${n++}`;
              const algorithm: Algorithm = Math.random() < 0.5 ? 'ed25519' : 'secp256k1';
              const r = await call(s.url, token, '/v1/keys', { label, algorithm }, requestId);
              keys.push({ label, id: r.id, algorithm, publicKey: new Uint8Array(Buffer.from(r.public_key.raw, 'base64')) });
            } else {
              const k = keys[Math.floor(Math.random() * keys.length)]!;
              const message = new Uint8Array(Buffer.from(requestId));
              const r = await call(s.url, token, `/v1/keys/${k.label}/sign`, { message: Buffer.from(message).toString('base64') }, requestId);
              sigs.push({ requestId, label: k.label, message, signature: new Uint8Array(Buffer.from(r.signature, 'base64')) });
              totalSigs++;
            }
          } catch {
            // Requests in flight when the process dies fail; only acknowledged ones count.
            if (stop) return;
            await new Promise((r) => setTimeout(r, 5));
          }
        }
      };
      const workers = Array.from({ length: opts.clients ?? 8 }, (_, w) => worker(w));
      await new Promise((r) => setTimeout(r, 200 + Math.random() * 800));
      stop = true;
      await s.stop('SIGKILL');
      await Promise.all(workers);

      // Check the acknowledged state directly on disk, as the next process will find it: every
      // key and signature acknowledged in this cycle, and a sample of older keys; the audit
      // log is read on from where the last check ended. (Everything again at the end: a long
      // soak stays linear.)
      const store = SqliteStore.open(join(dataDir, DB_FILE), { readonly: true });
      try {
        const sample = Array.from({ length: Math.min(200, checkedKeys) }, () => keys[Math.floor(Math.random() * checkedKeys)]!);
        missingKeys += await countMissing(store, [...keys.slice(checkedKeys), ...sample]);
        checkedKeys = keys.length;
        auditSeen = await readOk(store, auditSeen, okIds);
        const byLabel = new Map(keys.map((k) => [k.label, k]));
        for (const sg of sigs) {
          if (!okIds.has(sg.requestId)) unaudited++;
          const k = byLabel.get(sg.label)!;
          if (!verifySignature(k.algorithm, k.publicKey, { kind: 'message', bytes: sg.message }, sg.signature, {})) invalid++;
          ackIds.push(sg.requestId);
        }
        sigs.length = 0;
      } finally {
        await store.close();
      }
      log(`cycle ${cycle}/${opts.cycles}: ${keys.length} keys, ${totalSigs} signatures acknowledged; missing ${missingKeys}, unaudited ${unaudited}, invalid ${invalid}`);
    }
    // The whole record once more, read afresh: nothing acknowledged earlier went missing later.
    {
      const store = SqliteStore.open(join(dataDir, DB_FILE), { readonly: true });
      try {
        missingKeys += await countMissing(store, keys);
        const all = new Set<string>();
        await readOk(store, 0, all);
        unaudited += ackIds.filter((id) => !all.has(id)).length;
      } finally {
        await store.close();
      }
    }
    const chain = await verifyAudit(dataDir);
    const store = SqliteStore.open(join(dataDir, DB_FILE), { readonly: true });
    const integrityProblems = await store.integrityCheck();
    await store.close();
    const report: SoakReport = {
      cycles: opts.cycles,
      acknowledgedKeys: keys.length,
      acknowledgedSignatures: totalSigs,
      missingKeys,
      unauditedSignatures: unaudited,
      invalidSignatures: invalid,
      auditChainOk: chain.ok,
      integrityProblems,
      ok: missingKeys === 0 && unaudited === 0 && invalid === 0 && chain.ok && integrityProblems.length === 0,
    };
    if (!chain.ok) log(`audit chain: ${JSON.stringify(chain.firstBad)}`);
    return report;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--cycles');
  const cycles = i > 0 ? Number(process.argv[i + 1]) : 200;
  const report = await runCrashCycles({ cycles, log: (s) => process.stderr.write(s + '\n') });
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  process.exitCode = report.ok ? 0 : 1;
}
