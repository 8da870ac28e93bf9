/**
 * A probe for a design decision, not a benchmark of anything Custos ships: what one
 * consensus vote would cost if its decision were made durable by one append to a dedicated
 * signature log instead of a SQLite transaction (the lever issue 11's notes name for
 * privval ≤ 1.5× fsync + sign). Measured in the same run, twice, alternating:
 *   - the floor: a 256-byte write + fsync (lib/floors.ts) plus a raw node:crypto Ed25519 sign;
 *   - the log: decide against an in-memory watermark, sign, build the `decided` and `ok`
 *     audit entries with their chain hashes and row MACs and the watermark record with its MAC
 *     (the vault's own code: audit/chain.ts, keystore/row-mac.ts, store/rows.ts), then one
 *     write of all of it and one fsync;
 *   - today: vault.signConsensus on a real vault (one SQLite transaction per vote).
 *
 * What the log leaves out, and a real design would add: a lock that keeps other processes
 * from signing with the same key meanwhile (a file lock, taken once), folding the log into
 * SQLite behind the votes (batched, off the vote's path, but on the same cores), reading the
 * log back at start, and policy decisions (a validator's key has none by default).
 *
 *   node --import tsx bench/probes/signature-log.ts [--votes N]
 *
 * One JSON document on stdout, progress on stderr; never exits non-zero because of a timing.
 */
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chainHash, entryBytes } from '../../src/audit/chain.js';
import { concatBytes, utf8 } from '../../src/core/bytes.js';
import type { AuditDraft } from '../../src/core/types.js';
import { onlyTimestampDiffers } from '../../src/crypto/cometbft/compare.js';
import { sha256hex } from '../../src/crypto/digest.js';
import { RowMac } from '../../src/keystore/row-mac.js';
import { auditRowBytes, watermarkPk, watermarkRowBytes } from '../../src/store/rows.js';
import { makeVault } from '../../test/helpers/tmpvault.js';
import { fsyncFloor, pct, round, signFloor } from '../lib/floors.js';
import { benchVoteBytes } from '../lib/votes.js';

const { values } = parseArgs({ options: { votes: { type: 'string', default: '2000' } } });
const VOTES = Number(values.votes);
const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

const votes = Array.from({ length: VOTES }, (_, i) => {
  const height = BigInt(Math.floor(i / 2) + 1);
  const step: 2 | 3 = i % 2 === 0 ? 2 : 3;
  return { height, step, signBytes: benchVoteBytes('bench', height, step) };
});

/** One vote made durable by one append (and fsync) to a log of its own. */
function signatureLog(dir: string): number[] {
  const { privateKey } = generateKeyPairSync('ed25519');
  const mac = new RowMac(new Uint8Array(32).fill(5), 'probe');
  const fd = openSync(join(dir, `log-${process.hrtime.bigint()}`), 'a', 0o600);
  let watermark = { height: 0n, step: 0 };
  let head: { seq: number; hash: Uint8Array } = { seq: 0, hash: new Uint8Array(32) };
  let wseq = 0;
  const out: number[] = [];
  try {
    for (const [i, v] of votes.entries()) {
      const t = process.hrtime.bigint();
      if (v.height < watermark.height || (v.height === watermark.height && v.step <= watermark.step)) throw new Error('the probe asked for a vote behind its watermark');
      const signature = new Uint8Array(nodeSign(null, v.signBytes, privateKey));
      const ts = new Date().toISOString();
      const details = { chain_id: 'bench', height: v.height.toString(), round: 0, step: v.step, sign_bytes_sha256: sha256hex(v.signBytes), algorithm: 'ed25519' };
      const decided: AuditDraft = { requestId: `r${i}`, principal: 'privval:bench', operation: 'sign_vote', keyId: 'key_probe', keyLabel: 'val', outcome: 'decided', reason: null, details };
      const ok: AuditDraft = { ...decided, outcome: 'ok', details: { ...details, signature_sha256: sha256hex(signature) } };
      const s1 = head.seq + 1;
      const h1 = chainHash(head, s1, ts, decided);
      const h2 = chainHash({ seq: s1, hash: h1 }, s1 + 1, ts, ok);
      const row = watermarkRowBytes('key_probe', 'bench', { height: v.height, round: 0, step: v.step, signBytes: v.signBytes, signature }, ++wseq);
      const record = concatBytes(
        entryBytes(s1, ts, decided),
        mac.mac('audit', String(s1), auditRowBytes(s1, h1)),
        entryBytes(s1 + 1, ts, ok),
        mac.mac('audit', String(s1 + 1), auditRowBytes(s1 + 1, h2)),
        row,
        mac.mac('watermarks', watermarkPk('key_probe', 'bench'), row),
        utf8('\n'),
      );
      writeSync(fd, record);
      fsyncSync(fd);
      // Only now would the signature leave.
      watermark = { height: v.height, step: v.step };
      head = { seq: s1 + 1, hash: h2 };
      out.push(ms(t));
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** What Custos does today: vault.signConsensus, one SQLite transaction per vote. */
async function today(): Promise<number[]> {
  const v = await makeVault();
  try {
    const key = await v.vault.createKey(v.ctx(), { label: 'val', algorithm: 'ed25519', exportable: false, purpose: 'consensus' });
    const out: number[] = [];
    for (const [i, x] of votes.entries()) {
      const t = process.hrtime.bigint();
      await v.vault.signConsensus({ requestId: `b${i}`, principal: { id: 'privval:bench', kind: 'privval' }, key: key.id, chainId: 'bench', position: { height: x.height, round: 0, step: x.step }, signBytes: x.signBytes, onlyTimestampDiffers, context: {} });
      out.push(ms(t));
    }
    return out;
  } finally {
    await v.dispose();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'custos-bench-siglog-'));
const runs = [];
try {
  for (let rep = 1; rep <= 2; rep++) {
    log(`run ${rep} of 2: floor, signature log, today (${VOTES} votes each)`);
    const fsync = fsyncFloor(VOTES);
    const sign = signFloor(VOTES, votes.map((v) => v.signBytes));
    const floor = pct(fsync, 50) + pct(sign, 50);
    const probe = signatureLog(dir);
    const now = await today();
    runs.push({
      floor_fsync_plus_sign_p50_ms: round(floor),
      signature_log: { p50_ms: round(pct(probe, 50)), p99_ms: round(pct(probe, 99)), p50_vs_floor: round(pct(probe, 50) / floor) },
      sqlite_today: { p50_ms: round(pct(now, 50)), p99_ms: round(pct(now, 99)), p50_vs_floor: round(pct(now, 50) / floor) },
    });
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify({ votes: VOTES, target: 'a vote p50 ≤ 1.5× (fsync + sign)', runs }, null, 2)}\n`);
