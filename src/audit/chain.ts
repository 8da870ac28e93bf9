/**
 * The tamper-evident audit log: each entry's hash covers the previous entry's hash and the
 * entry's canonical bytes, so editing, removing or reordering any entry breaks every later
 * link. Checkpoints sign (seq, head hash) with the vault's audit key (Ed25519, derived from
 * the root key), so that rewriting the whole chain from some point on also needs the root key.
 */
import { createHash, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { bytesToHex, concatBytes, equalBytes, utf8 } from '../core/bytes.js';
import type { AuditCheckpoint, AuditDraft, AuditEntry } from '../core/types.js';
import { canonicalJson } from '../core/canonical.js';
import { GENESIS_HASH, type ChainHead, type Store } from '../store/store.js';
import { ed25519PrivateKeyObject, publicKeyObject } from '../crypto/algorithms.js';
import { auditRowBytes, isSealedEntry, type RowAuthenticator } from '../store/rows.js';

/** The exact bytes an entry's hash covers. Changing this is a new format version. */
export function entryBytes(seq: number, ts: string, d: AuditDraft): Uint8Array {
  return utf8(
    JSON.stringify(['custos-audit-v1', seq, ts, d.requestId, d.principal, d.operation, d.keyId, d.keyLabel, d.outcome, d.reason, canonicalJson(d.details)]),
  );
}

export function chainHash(prev: ChainHead, seq: number, ts: string, d: AuditDraft): Uint8Array {
  return new Uint8Array(createHash('sha256').update(prev.hash).update(entryBytes(seq, ts, d)).digest());
}

function checkpointMessage(vaultId: string, seq: number, hash: Uint8Array, ts: string): Uint8Array {
  return concatBytes(utf8(`custos-audit-checkpoint-v1\n${vaultId}\n${seq}\n${ts}\n`), hash);
}

/** Holds the audit signing key of an unsealed vault. */
export class AuditSigner {
  private readonly key: KeyObject;
  readonly publicKey: Uint8Array;

  constructor(seed: Uint8Array, readonly vaultId: string) {
    this.key = ed25519PrivateKeyObject(seed);
    const spki = createPublicKey(this.key).export({ format: 'der', type: 'spki' });
    this.publicKey = new Uint8Array(spki.subarray(spki.length - 32));
  }

  /** Signs a statement about the log that lives outside the database (the anchor file). */
  signStatement(message: Uint8Array): Uint8Array {
    return new Uint8Array(nodeSign(null, message, this.key));
  }

  checkpoint(head: ChainHead, ts: string): AuditCheckpoint {
    const signature = new Uint8Array(nodeSign(null, checkpointMessage(this.vaultId, head.seq, head.hash, ts), this.key));
    return { seq: head.seq, hash: head.hash, ts, signature };
  }
}

export interface VerifyReport {
  ok: boolean;
  entries: number;
  checkpoints: number;
  headSeq: number;
  headHash: string;
  /** The first entry (or checkpoint) that fails, and why. */
  firstBad?: { seq: number; problem: string };
}

/**
 * Walks the whole chain in order and checks every link, every sequence number and every
 * checkpoint signature. Reads in pages, so memory stays flat on a long log.
 */
export async function verifyChain(
  store: Store,
  vaultId: string,
  auditPublicKey: Uint8Array,
  options: {
    onProgress?: (done: number, total: number) => void;
    /** Trust the newest checkpoint (after checking its signature) and verify only what follows. */
    fromLastCheckpoint?: boolean;
    /** An unsealed vault's row MACs: every entry verified must also carry its MAC. */
    auth?: RowAuthenticator;
    /**
     * A serving vault checks in pages of this many entries and lets other work run between
     * them: a synchronous store (SQLite) would otherwise hold the process for the whole log.
     */
    interleave?: number;
  } = {},
): Promise<VerifyReport> {
  const { onProgress } = options;
  const pub = publicKeyObject('ed25519', auditPublicKey);
  const cps = await store.checkpoints();
  const cpBySeq = new Map(cps.map((c) => [c.seq, c]));
  const total = (await store.auditHead()).seq;
  let head: ChainHead = { seq: 0, hash: GENESIS_HASH };
  let count = 0;
  const last = cps[cps.length - 1];
  // Every vault signs a checkpoint when it is created and at every stop: a log with entries
  // and no checkpoint had them deleted, and then nothing vouches for any entry.
  if (total > 0 && !last) {
    return { ok: false, entries: 0, checkpoints: 0, headSeq: 0, headHash: '', firstBad: { seq: 1, problem: `the log has ${total} entries but no signed checkpoint: the checkpoints were deleted, so nothing vouches for the entries` } };
  }
  if (options.fromLastCheckpoint && last && last.seq <= total) {
    if (!nodeVerify(null, checkpointMessage(vaultId, last.seq, last.hash, last.ts), pub, last.signature)) {
      return { ok: false, entries: 0, checkpoints: cps.length, headSeq: 0, headHash: '', firstBad: { seq: last.seq, problem: `checkpoint at entry ${last.seq} has a bad signature` } };
    }
    const [at] = await store.auditAfter(last.seq - 1, 1);
    if (!at || at.seq !== last.seq || !equalBytes(at.hash, last.hash)) {
      return { ok: false, entries: 0, checkpoints: cps.length, headSeq: 0, headHash: '', firstBad: { seq: last.seq, problem: `entry ${last.seq} does not match its signed checkpoint` } };
    }
    head = { seq: last.seq, hash: last.hash };
    cpBySeq.clear();
  }
  const fail = (seq: number, problem: string): VerifyReport => ({
    ok: false,
    entries: count,
    checkpoints: cps.length,
    headSeq: head.seq,
    headHash: bytesToHex(head.hash),
    firstBad: { seq, problem },
  });
  const checkCp = (cp: AuditCheckpoint): string | null => {
    if (!equalBytes(cp.hash, head.hash)) return `checkpoint at entry ${cp.seq} names a different head hash than the chain has`;
    if (!nodeVerify(null, checkpointMessage(vaultId, cp.seq, cp.hash, cp.ts), pub, cp.signature)) return `checkpoint at entry ${cp.seq} has a bad signature`;
    return null;
  };
  for (;;) {
    const page: AuditEntry[] = await store.auditAfter(head.seq, options.interleave ?? 2000);
    if (page.length === 0) break;
    for (const e of page) {
      if (e.seq !== head.seq + 1) return fail(head.seq + 1, `entry ${head.seq + 1} is missing (next stored entry is ${e.seq})`);
      if (!equalBytes(e.prevHash, head.hash)) return fail(e.seq, `entry ${e.seq} does not link to entry ${head.seq} (previous hash differs)`);
      const h = chainHash(head, e.seq, e.ts, e);
      if (!equalBytes(h, e.hash)) return fail(e.seq, `entry ${e.seq} was altered (its content does not match its hash)`);
      // Entries a sealed daemon wrote have no MAC (it holds no key); only their exact shape may.
      if (options.auth && !(e.mac == null && isSealedEntry(e)) && !options.auth.check('audit', String(e.seq), auditRowBytes(e.seq, e.hash), e.mac ?? null)) {
        options.auth.alarm('audit', String(e.seq), e.mac ? 'mac_mismatch' : 'mac_missing');
        return fail(e.seq, `entry ${e.seq} ${e.mac ? 'does not match its MAC' : 'has no MAC'}: it was written outside Custos (the chain after it was recomputed)`);
      }
      head = { seq: e.seq, hash: e.hash };
      count++;
      const cp = cpBySeq.get(e.seq);
      if (cp) {
        const problem = checkCp(cp);
        if (problem) return fail(e.seq, problem);
      }
    }
    onProgress?.(head.seq, total);
    if (options.interleave) await new Promise((r) => setImmediate(r));
  }
  const beyond = cps.find((c) => c.seq > head.seq);
  if (beyond) return fail(head.seq + 1, `the log ends at entry ${head.seq}, but a checkpoint vouches for entry ${beyond.seq}: entries were removed from the end`);
  return { ok: true, entries: count, checkpoints: cps.length, headSeq: head.seq, headHash: bytesToHex(head.hash) };
}
