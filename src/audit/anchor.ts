/**
 * The audit anchor: the newest audit head (sequence number and hash), signed with the audit
 * key and kept OUTSIDE the database, in `custos.anchor` beside it. Checkpoints live in the
 * database, so whoever can write the database can delete the newest entries together with the
 * checkpoints that cover them and the log still verifies, shorter. The anchor is what such a
 * cut, or a whole database put back from an older copy, cannot match: a database whose log
 * ends before the anchored entry, or whose entry at that place has another hash, is refused
 * with `database_rolled_back`.
 *
 * Written periodically while the vault runs (never ahead of what is durable: the head is read
 * from the database after its commit), and at every clean stop with `clean: true` and the
 * digest of every protected row (store/rows.ts), so that a database edited at rest (a key
 * re-enabled, a budget refilled, a token inserted) differs from its anchor even for a tool
 * that holds only the audit public key. The file is replaced atomically (write, fsync,
 * rename, fsync of the directory) and never moves backwards.
 *
 * What it cannot see: an attacker who puts back an older database AND its older anchor file
 * together, or who cuts only entries written after the newest anchor (at most one anchor
 * interval of them, after an unclean stop). A copy of the anchor kept off the host
 * (`custos audit anchor` prints it; `audit verify --anchor FILE` checks against it) closes both.
 */
import { fsyncDir } from '../core/files.js';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes, verify as nodeVerify } from 'node:crypto';
import { dirname, join } from 'node:path';
import { CustosError } from '../core/errors.js';
import { bytesToHex, equalBytes, hexToBytes, utf8 } from '../core/bytes.js';
import { canonicalJson } from '../core/canonical.js';
import { publicKeyObject } from '../crypto/algorithms.js';
import type { AuditEntry } from '../core/types.js';
import type { ChainHead, Store } from '../store/store.js';
import { COUNTED_TABLES, DIGEST_V1_TABLES, type RowsDigest } from '../store/rows.js';
import type { AuditSigner } from './chain.js';

export const ANCHOR_FILE = 'custos.anchor';
const MAX_ANCHOR_BYTES = 64 * 1024;

export interface Anchor {
  vaultId: string;
  seq: number;
  hash: Uint8Array;
  ts: string;
  /** Written by a clean stop: nothing was written after it by the process that wrote it. */
  clean: boolean;
  /** With a clean stop: the protected rows as they were at `seq`. */
  rows?: RowsDigest;
}

function statement(a: Anchor): Uint8Array {
  const body: Record<string, unknown> = { v: 1, vault_id: a.vaultId, seq: a.seq, hash: bytesToHex(a.hash), ts: a.ts, clean: a.clean };
  if (a.rows) body.rows = { tables: a.rows.tables, counts: a.rows.counts };
  return utf8(`custos-audit-anchor-v1\n${canonicalJson(body)}`);
}

/** The anchor file's text: the statement's fields and its signature, one JSON object. */
export function encodeAnchor(a: Anchor, signer: AuditSigner): string {
  const signature = signer.signStatement(statement(a));
  return `${JSON.stringify({ v: 1, vault_id: a.vaultId, seq: a.seq, hash: bytesToHex(a.hash), ts: a.ts, clean: a.clean, ...(a.rows ? { rows: a.rows } : {}), signature: Buffer.from(signature).toString('base64') })}\n`;
}

const corrupt = (where: string, why: string) =>
  new CustosError('database_rolled_back', `The audit anchor ${where} ${why}; it cannot vouch for the database. Restore the anchor and the database from the same backup, or see "Restoring from a backup" in the README.`, { tag: 'anchor_invalid' });

/** Parses and verifies an anchor's text against the vault's id and audit public key. */
export function decodeAnchor(text: string, vaultId: string, auditPublicKey: Uint8Array, where: string): Anchor {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw corrupt(where, 'is not valid JSON');
  }
  if (typeof o !== 'object' || o === null || o.v !== 1) throw corrupt(where, 'is not a version 1 anchor');
  const { vault_id, seq, hash, ts, clean, rows, signature } = o;
  if (typeof vault_id !== 'string' || !Number.isSafeInteger(seq) || (seq as number) < 0 || typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash) || typeof ts !== 'string' || typeof clean !== 'boolean' || typeof signature !== 'string') {
    throw corrupt(where, 'is malformed');
  }
  if (vault_id !== vaultId) throw corrupt(where, `belongs to another vault (${vault_id.slice(0, 40)})`);
  let digest: RowsDigest | undefined;
  if (rows !== undefined) {
    const r = rows as { tables?: Record<string, unknown>; counts?: Record<string, unknown> };
    if (typeof r !== 'object' || r === null || typeof r.tables !== 'object' || typeof r.counts !== 'object' || r.tables === null || r.counts === null) throw corrupt(where, 'has a malformed row digest');
    // A table added after the first anchors (rows.ts DIGEST_V1_TABLES) is named only when it held rows.
    for (const t of COUNTED_TABLES) {
      const named = (DIGEST_V1_TABLES as readonly string[]).includes(t) || r.tables[t] !== undefined || r.counts[t] !== undefined;
      if (named && (typeof r.tables[t] !== 'string' || !Number.isSafeInteger(r.counts[t]))) throw corrupt(where, 'has a malformed row digest');
    }
    digest = { tables: r.tables as RowsDigest['tables'], counts: r.counts as RowsDigest['counts'] };
  }
  const a: Anchor = { vaultId, seq: seq as number, hash: hexToBytes(hash, 'anchor hash'), ts, clean, ...(digest ? { rows: digest } : {}) };
  const sig = Buffer.from(signature, 'base64');
  if (sig.length !== 64 || !nodeVerify(null, statement(a), publicKeyObject('ed25519', auditPublicKey), sig)) throw corrupt(where, 'does not carry a valid signature of this vault\'s audit key (it was altered)');
  return a;
}

/**
 * Somewhere an anchor is kept: the file beside the database (always), and for an HSM-sealed
 * vault a private data object in its token, which a copy of the data directory does not carry.
 */
export interface AnchorPlace {
  /** Named in messages: a path, or the token and object label. */
  readonly where: string;
  /** Once a vault has anchors, a missing one here refuses the database (the file: yes). */
  readonly required: boolean;
  /** How often a running vault updates it (a token's storage wears; a file's does not). */
  readonly intervalMs: number;
  read(): Promise<string | null>;
  /** Durable on return. */
  write(text: string): Promise<void>;
}

/** The anchor kept in a place, verified; null when there is none. */
export async function readAnchor(place: AnchorPlace, vaultId: string, auditPublicKey: Uint8Array): Promise<Anchor | null> {
  const text = await place.read();
  if (text === null) return null;
  if (Buffer.byteLength(text, 'utf8') > MAX_ANCHOR_BYTES) throw corrupt(place.where, 'is larger than any anchor');
  return decodeAnchor(text, vaultId, auditPublicKey, place.where);
}

/**
 * Replaces the anchor kept in `place` with `a`, unless it already vouches for a later entry
 * (another process on the same database wrote it): an anchor only moves forward.
 */
export async function writeAnchor(place: AnchorPlace, a: Anchor, signer: AuditSigner, publicKey: Uint8Array, store?: Store): Promise<void> {
  let cur: Anchor | null = null;
  try {
    cur = await readAnchor(place, a.vaultId, publicKey);
  } catch (e) {
    // An unreadable anchor is replaced by a good one (the open already judged the database);
    // a place that cannot be read at all (a token gone) cannot be written either.
    if (!(e instanceof CustosError) || e.code !== 'database_rolled_back') throw e;
  }
  if (cur && (cur.seq > a.seq || (cur.seq === a.seq && cur.clean && !a.clean))) return;
  // An anchor moves forward only along the log it vouched for: if the entry it names is gone
  // or changed (the log cut and rewritten under a running vault), it stays where it is.
  if (cur && store && cur.seq > 0) {
    const [at] = await store.auditAfter(cur.seq - 1, 1);
    if (!at || at.seq !== cur.seq || !equalBytes(at.hash, cur.hash)) {
      throw new CustosError('database_rolled_back', `The log no longer holds the entry ${cur.seq} that the audit anchor ${place.where} vouches for: the database was cut or rewritten under the running vault. The anchor is left as it was.`, { tag: 'rewritten' });
    }
  }
  await place.write(encodeAnchor(a, signer));
}

/** The anchor file beside the database: written to a temporary name, fsynced, renamed, the directory fsynced. */
export function fileAnchorPlace(path: string, intervalMs = 1000): AnchorPlace {
  return {
    where: path,
    required: true,
    intervalMs,
    read: async () => {
      if (!existsSync(path)) return null;
      const buf = readFileSync(path);
      return buf.length > MAX_ANCHOR_BYTES ? 'x'.repeat(MAX_ANCHOR_BYTES + 1) : buf.toString('utf8');
    },
    write: async (text) => {
      atomicWrite(path, text);
    },
  };
}

/** The anchor in the file at `path`, verified; null when there is none. */
export function readAnchorFile(path: string, vaultId: string, auditPublicKey: Uint8Array): Anchor | null {
  if (!existsSync(path)) return null;
  const buf = readFileSync(path);
  if (buf.length > MAX_ANCHOR_BYTES) throw corrupt(path, 'is larger than any anchor');
  return decodeAnchor(buf.toString('utf8'), vaultId, auditPublicKey, path);
}


/** Writes `a` to the anchor file at `path` unless it vouches for a later entry already. */
export function writeAnchorFile(path: string, a: Anchor, signer: AuditSigner, publicKey: Uint8Array): void {
  try {
    const cur = readAnchorFile(path, a.vaultId, publicKey);
    if (cur && (cur.seq > a.seq || (cur.seq === a.seq && cur.clean && !a.clean))) return;
  } catch {
    // An unreadable anchor is replaced by a good one: the open already judged the database.
  }
  atomicWrite(path, encodeAnchor(a, signer));
}

/**
 * Writes a file atomically and durably: a new temporary file of a random name, created
 * exclusively (O_EXCL: a symlink or file planted under that name is never followed or
 * truncated), fsynced, renamed over `path`, and the directory fsynced.
 */
function atomicWrite(path: string, text: string): void {
  const tmp = join(dirname(path), `.${ANCHOR_FILE}.${randomBytes(8).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dirname(path));
}

/**
 * Checks the database against an anchor: its log must reach the anchored entry with the same
 * hash, and after a clean stop with nothing written since, its protected rows must be the ones
 * the anchor digested. Throws `database_rolled_back` or `database_corrupt:rows_changed`.
 */
export async function checkAnchor(
  store: Store,
  a: Anchor,
  where: string,
  /** Entries that change no protected row (failed unseal attempts): the rows are still comparable after them. */
  rowNeutral: (e: AuditEntry) => boolean = () => false,
): Promise<{ rowsChecked: boolean }> {
  const head = await store.auditHead();
  if (head.seq < a.seq) {
    throw new CustosError(
      'database_rolled_back',
      `The database's audit log ends at entry ${head.seq}, but the audit anchor ${where} (signed ${a.ts}) vouches for entry ${a.seq}: the database is older or shorter than the one this vault wrote (entries were cut, or an old copy was put back). Custos refuses it; restore the newest backup, or see "Restoring from a backup" in the README.`,
      { tag: 'truncated' },
    );
  }
  if (a.seq > 0) {
    const [at] = await store.auditAfter(a.seq - 1, 1);
    if (!at || at.seq !== a.seq || !equalBytes(at.hash, a.hash)) {
      throw new CustosError(
        'database_rolled_back',
        `Audit entry ${a.seq} in the database is not the one the audit anchor ${where} (signed ${a.ts}) vouches for: the log was rewritten from there or earlier. Custos refuses it; run \`custos audit verify\` and restore the database from a backup.`,
        { tag: 'rewritten' },
      );
    }
  }
  if (!a.clean || !a.rows) return { rowsChecked: false };
  for (let after = a.seq; after < head.seq; ) {
    const page = await store.auditAfter(after, 1000);
    if (page.length === 0) break;
    if (!page.every(rowNeutral)) return { rowsChecked: false };
    after = page[page.length - 1]!.seq;
  }
  const now = await store.rowsDigest();
  if (now.head.seq !== head.seq) return { rowsChecked: false };
  const changed = COUNTED_TABLES.filter((t) => now.digest.tables[t] !== a.rows!.tables[t]);
  if (changed.length > 0) {
    throw new CustosError(
      'database_corrupt',
      `The vault stopped cleanly at audit entry ${a.seq} and changed nothing since, yet its protected rows differ from that stop's signed anchor in: ${changed.map((t) => `${t} (${a.rows!.counts[t] ?? 0} rows then, ${now.digest.counts[t] ?? 0} now)`).join(', ')}. They were edited outside Custos; restore the database from a backup.`,
      { tag: 'rows_changed' },
    );
  }
  return { rowsChecked: true };
}

/** The anchor of the store's current head; with `clean`, with the row digest of that head. */
export async function anchorOfHead(store: Store, vaultId: string, clean: boolean): Promise<Anchor> {
  if (clean) {
    await store.verifiedHead();
    const { head, digest } = await store.rowsDigest();
    return { vaultId, seq: head.seq, hash: head.hash, ts: new Date().toISOString(), clean: true, rows: digest };
  }
  // Only a head whose rows and MACs check out is anchored (an entry appended with SQL is not).
  const head = await store.verifiedHead();
  return { vaultId, seq: head.seq, hash: head.hash, ts: new Date().toISOString(), clean: false };
}

/**
 * Writes an anchor of the current head to every place. A required place that fails throws;
 * another (a token) is reported to `onError` and retried later.
 */
export async function anchorNow(
  store: Store,
  places: readonly AnchorPlace[],
  signer: AuditSigner,
  publicKey: Uint8Array,
  clean: boolean,
  onError: (e: Error, place: AnchorPlace) => void = () => undefined,
): Promise<ChainHead> {
  const a = await anchorOfHead(store, signer.vaultId, clean);
  for (const p of places) {
    try {
      await writeAnchor(p, a, signer, publicKey, store);
    } catch (e) {
      if (p.required) throw e;
      onError(e as Error, p);
    }
  }
  return { seq: a.seq, hash: a.hash };
}

/**
 * Keeps the anchors close to the head while the vault runs: each place, every `intervalMs`
 * of its own, gets an anchor of the head if the log grew (read after its commit, so never
 * ahead of what is durable).
 */
export class AnchorKeeper {
  private timer: NodeJS.Timeout | null = null;
  private readonly last = new Map<AnchorPlace, { seq: number; at: number }>();
  private writing: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly places: readonly AnchorPlace[],
    private readonly signer: AuditSigner,
    private readonly publicKey: Uint8Array,
    /** A failed anchor write (disk full, token gone) is reported, not fatal: the log itself is durable. */
    private readonly onError: (e: Error, place: AnchorPlace) => void = () => undefined,
  ) {}

  start(): void {
    const live = this.places.filter((p) => p.intervalMs > 0);
    if (live.length === 0 || this.timer) return;
    this.timer = setInterval(() => void this.tick(), Math.min(...live.map((p) => p.intervalMs)));
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.writing) return;
    this.writing = (async () => {
      let a: Anchor | null = null;
      for (const p of this.places) {
        const last = this.last.get(p);
        if (p.intervalMs <= 0 || (last && Date.now() - last.at < p.intervalMs - 5)) continue;
        try {
          a ??= await anchorOfHead(this.store, this.signer.vaultId, false);
          if (last?.seq === a.seq) continue;
          await writeAnchor(p, a, this.signer, this.publicKey, this.store);
          this.last.set(p, { seq: a.seq, at: Date.now() });
        } catch (e) {
          this.onError(e as Error, p);
        }
      }
    })();
    await this.writing;
    this.writing = null;
  }

  /** Stops the timer; with `clean`, writes the final anchor with the row digest to every place. */
  async stop(clean: boolean): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.writing) await this.writing;
    if (!clean) return;
    const a = await anchorOfHead(this.store, this.signer.vaultId, true);
    for (const p of this.places) {
      try {
        await writeAnchor(p, a, this.signer, this.publicKey, this.store);
      } catch (e) {
        this.onError(e as Error, p);
      }
    }
  }
}
