/**
 * SQLite store (better-sqlite3): WAL with synchronous=FULL, so a commit is on disk when
 * `commit` resolves (SQLite's documentation: FULL syncs the WAL on every commit). All writes
 * use BEGIN IMMEDIATE so that two processes on one file serialise instead of deadlocking.
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, openSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { canonicalJson } from '../core/canonical.js';
import { bytesToHex, equalBytes } from '../core/bytes.js';
import { printable } from '../core/text.js';
import type { AuditCheckpoint, AuditEntry, KeyRecord } from '../core/types.js';
import { comparePosition, GENESIS_HASH, type ApiToken, type ChainHead, type Chainer, type Store, type StateMutation, type Watermark, type WriteUnit } from './store.js';
import {
  auditRowBytes,
  BOOTSTRAP_META,
  COUNT_PREFIX,
  COUNTED_TABLES,
  DIGEST_MODULUS,
  digestHex,
  elementValue,
  INTEGRITY_PREFIX,
  absenceMatters,
  isCountedMeta,
  isProtectedMeta,
  isSealedEntry,
  keyRowBytes,
  metaRowBytes,
  STATE_ROW,
  tokenRowBytes,
  tokenTermsJson,
  watermarkPk,
  watermarkRowBytes,
  type CountedTable,
  type ProtectedTable,
  type RowAuthenticator,
  type RowsDigest,
} from './rows.js';

/** 3: row MACs and write sequences (`mac`, `wseq` on every protected table), counts, the state row. */
const SCHEMA_VERSION = 3;
const MAC_TABLES = ['keys', 'api_tokens', 'watermarks', 'meta', 'audit'] as const;
const WSEQ_TABLES = ['keys', 'api_tokens', 'watermarks', 'meta'] as const;
/** SQL for "a counted meta row": protected, and not bookkeeping. */
const COUNTED_META_SQL = `name NOT IN (${[...BOOTSTRAP_META].map((n) => `'${n}'`).join(',')}) AND substr(name, 1, ${INTEGRITY_PREFIX.length}) != '${INTEGRITY_PREFIX}'`;

/** How many key rows an open remembers the write sequence of (about 100 bytes each). */
const SEEN_KEYS_AT_OPEN = 200_000;

/** The state row, parsed: the audit head the rows belong to, the write counter, the digest. */
interface IntegrityState {
  seq: number;
  writes: number;
  digest: bigint;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL, mac BLOB, wseq INTEGER) STRICT;
CREATE TABLE IF NOT EXISTS keys (
  id TEXT PRIMARY KEY,
  label TEXT NOT NULL UNIQUE,
  algorithm TEXT NOT NULL,
  public_key BLOB NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active','disabled','destroyed')),
  exportable INTEGER NOT NULL,
  origin TEXT NOT NULL,
  version INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  sealed BLOB,
  attributes TEXT NOT NULL DEFAULT '{}',
  mac BLOB,
  wseq INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS api_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  hash BLOB NOT NULL UNIQUE,
  role TEXT NOT NULL,
  created_at TEXT NOT NULL,
  mac BLOB,
  wseq INTEGER,
  terms TEXT NOT NULL DEFAULT '{}'
) STRICT;
-- Approvers are told apart by token name.
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_name ON api_tokens(name);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY,
  ts TEXT NOT NULL,
  request_id TEXT NOT NULL,
  principal TEXT NOT NULL,
  operation TEXT NOT NULL,
  key_id TEXT,
  key_label TEXT,
  outcome TEXT NOT NULL,
  reason TEXT,
  details TEXT NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL,
  mac BLOB
) STRICT;
CREATE TABLE IF NOT EXISTS watermarks (
  key_id TEXT NOT NULL,
  chain_id TEXT NOT NULL,
  height TEXT NOT NULL,
  round INTEGER NOT NULL,
  step INTEGER NOT NULL,
  sign_bytes BLOB NOT NULL,
  signature BLOB,
  mac BLOB,
  wseq INTEGER,
  PRIMARY KEY (key_id, chain_id)
) STRICT;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  seq INTEGER PRIMARY KEY,
  hash BLOB NOT NULL,
  ts TEXT NOT NULL,
  signature BLOB NOT NULL
) STRICT;
`;

interface KeyRow {
  id: string;
  label: string;
  algorithm: string;
  public_key: Buffer;
  state: string;
  exportable: number;
  origin: string;
  version: number;
  created_at: string;
  updated_at: string;
  sealed: Buffer | null;
  attributes: string;
  mac: Buffer | null;
  wseq: number | null;
}

interface AuditRow {
  seq: number;
  ts: string;
  request_id: string;
  principal: string;
  operation: string;
  key_id: string | null;
  key_label: string | null;
  outcome: string;
  reason: string | null;
  details: string;
  prev_hash: Buffer;
  hash: Buffer;
  mac: Buffer | null;
}

const u8 = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

function toKey(r: KeyRow): KeyRecord {
  return {
    id: r.id,
    label: r.label,
    algorithm: r.algorithm as KeyRecord['algorithm'],
    publicKey: u8(r.public_key),
    state: r.state as KeyRecord['state'],
    exportable: r.exportable === 1,
    origin: r.origin as KeyRecord['origin'],
    version: r.version,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    sealed: r.sealed ? u8(r.sealed) : null,
    attributes: parseAttributes(r.attributes),
  };
}

function parseAttributes(json: string): KeyRecord['attributes'] {
  try {
    const v = JSON.parse(json) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as KeyRecord['attributes'];
  } catch {
    // fall through: an unreadable value fails envelope authentication like any edit
  }
  return { unreadable: json.slice(0, 64) };
}

function toAudit(r: AuditRow): AuditEntry {
  let details: AuditEntry['details'];
  try {
    const v = JSON.parse(r.details) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    details = v as AuditEntry['details'];
  } catch {
    // Kept verbatim so that verification reports the entry (its hash no longer matches)
    // instead of crashing on it.
    details = { unparseable: r.details.slice(0, 1000) };
  }
  return {
    seq: r.seq,
    ts: r.ts,
    requestId: r.request_id,
    principal: r.principal,
    operation: r.operation,
    keyId: r.key_id,
    keyLabel: r.key_label,
    outcome: r.outcome as AuditEntry['outcome'],
    reason: r.reason,
    details,
    prevHash: u8(r.prev_hash),
    hash: u8(r.hash),
    mac: r.mac ? u8(r.mac) : null,
  };
}

interface TokenRow {
  id: string;
  name: string;
  hash: Buffer;
  role: ApiToken['role'];
  created_at: string;
  mac: Buffer | null;
  wseq: number | null;
  terms: string;
}

function toToken(r: TokenRow): ApiToken {
  let terms: ApiToken['terms'];
  try {
    terms = JSON.parse(r.terms) as ApiToken['terms'];
  } catch {
    // Its MAC fails too when checked; an unchecked read (no root key) shows it as revoked.
    terms = { revoked_at: 'unreadable' };
  }
  return { id: r.id, name: r.name, hash: u8(r.hash), role: r.role, createdAt: r.created_at, terms: typeof terms === 'object' && terms !== null && !Array.isArray(terms) ? terms : { revoked_at: 'unreadable' } };
}

interface WatermarkRow {
  key_id: string;
  chain_id: string;
  height: string;
  round: number;
  step: number;
  sign_bytes: Buffer;
  signature: Buffer | null;
  mac: Buffer | null;
  wseq: number | null;
}

// Heights are int64: stored as decimal text, since SQLite integers are read into JS numbers.
const toWatermark = (r: WatermarkRow): Watermark => ({ height: BigInt(r.height), round: r.round, step: r.step, signBytes: u8(r.sign_bytes), signature: r.signature ? u8(r.signature) : null });

const TABLE_NOUN: Record<ProtectedTable, string> = { keys: 'key', api_tokens: 'API token', watermarks: 'consensus watermark', meta: 'setting', audit: 'audit entry' };


/** Translates SQLite's failures into sentences an operator can act on. */
function storageError(e: unknown, path: string): CustosError {
  const code = (e as { code?: string }).code ?? '';
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT' || code.startsWith('SQLITE_CORRUPT')) {
    return new CustosError('database_corrupt', `The database ${path} is damaged or is not a Custos database (${code}); restore it from a backup. Nothing was changed.`, { cause: e });
  }
  if (code === 'SQLITE_FULL' || code.startsWith('SQLITE_IOERR')) {
    return new CustosError('storage_unavailable', `The database ${path} could not be written (${code}: disk full or I/O error); free space or fix the disk, then retry. The change was not made.`, { cause: e });
  }
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new CustosError('storage_unavailable', `The database ${path} is busy (held by another process for too long); retry.`, { cause: e });
  }
  if (code === 'SQLITE_READONLY' || code === 'SQLITE_CANTOPEN' || code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN')) {
    return new CustosError('storage_unavailable', `The database ${path} cannot be opened for writing (${code}); check its permissions and its directory.`, { cause: e });
  }
  if (e instanceof CustosError) return e;
  return new CustosError('storage_unavailable', `The database ${path} failed: ${(e as Error).message}`, { cause: e });
}

export interface SqliteOptions {
  readonly?: boolean;
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  private db: Database.Database;
  private auth: RowAuthenticator | null = null;

  private constructor(readonly path: string, db: Database.Database) {
    this.db = db;
  }

  /** Opens (creating with mode 0600 if absent and not read-only) the database at `path`. */
  static open(path: string, options: SqliteOptions = {}): SqliteStore {
    try {
      if (!options.readonly && !existsSync(path)) closeSync(openSync(path, 'a', 0o600));
      const db = new Database(path, { readonly: !!options.readonly, fileMustExist: true, timeout: 5000 });
      if (!options.readonly) {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = FULL');
        // Freed pages (a destroyed key's envelope) are overwritten with zeros, not left on disk.
        db.pragma('secure_delete = ON');
      }
      db.pragma('foreign_keys = ON');
      // Touch the schema so that a file that is not a database fails here, with a sentence.
      db.prepare('SELECT count(*) FROM sqlite_master').get();
      return new SqliteStore(path, db);
    } catch (e) {
      throw storageError(e, path);
    }
  }

  private readonly statements = new Map<string, Database.Statement>();

  /** Prepared once per connection: preparing costs more than running these small statements. */
  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  private run<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw storageError(e, this.path);
    }
  }

  async migrate(): Promise<void> {
    this.run(() => {
      const fresh = !(this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get());
      this.db.exec(SCHEMA);
      // Schema 2 → 3: the mac and wseq columns. The version itself moves to 3 only in
      // `sealRows`, in the transaction that MACs every row, so a crash in between leaves a
      // schema-2 vault.
      for (const t of MAC_TABLES) {
        const cols = this.db.prepare(`PRAGMA table_info(${t})`).all() as Array<{ name: string }>;
        if (!cols.some((c) => c.name === 'mac')) this.db.exec(`ALTER TABLE ${t} ADD COLUMN mac BLOB`);
        if ((WSEQ_TABLES as readonly string[]).includes(t) && !cols.some((c) => c.name === 'wseq')) this.db.exec(`ALTER TABLE ${t} ADD COLUMN wseq INTEGER`);
      }
      // keysVersion() in O(log n): front ends re-index their keys only when one changed.
      this.db.exec('CREATE INDEX IF NOT EXISTS keys_wseq ON keys(wseq)');
      // The expiry sweeper reads only keys with a lifetime (a partial index on the attribute).
      this.db.exec("CREATE INDEX IF NOT EXISTS keys_expiring ON keys(json_extract(attributes, '$.expires_at')) WHERE json_extract(attributes, '$.expires_at') IS NOT NULL AND state != 'destroyed'");
      // Principals' scopes, expiry and revocation (no schema version: an older Custos ignores the
      // column, and a row with terms fails its MAC there, so it is refused rather than obeyed unscoped).
      if (!(this.db.prepare('PRAGMA table_info(api_tokens)').all() as Array<{ name: string }>).some((c) => c.name === 'terms')) this.db.exec("ALTER TABLE api_tokens ADD COLUMN terms TEXT NOT NULL DEFAULT '{}'");
      this.db.exec('CREATE INDEX IF NOT EXISTS api_tokens_wseq ON api_tokens(wseq)');
      const v = this.stmt("SELECT value FROM meta WHERE name='schema_version'").get() as { value: string } | undefined;
      if (!v) {
        // Only a new file has no version: in a vault's database its absence is an edit.
        if (!fresh && this.stmt("SELECT 1 FROM meta WHERE name = 'vault_id'").get()) {
          throw new CustosError('database_corrupt', `The database ${this.path} has no schema_version row: it was edited outside Custos. Restore it from a backup.`, { tag: 'schema' });
        }
        this.stmt("INSERT INTO meta(name, value) VALUES ('schema_version', ?)").run(String(SCHEMA_VERSION));
      } else if (Number(v.value) > SCHEMA_VERSION) {
        throw new CustosError('database_corrupt', `The database ${this.path} was written by a newer Custos (schema ${v.value}); upgrade Custos.`);
      }
    });
  }

  /** `chain`: how entries are hashed (audit/chain.ts), to check what a sealed daemon appended. */
  setRowAuthenticator(auth: RowAuthenticator, chain?: Chainer): void {
    this.auth = auth;
    this.chain = chain ?? null;
  }

  private chain: Chainer | null = null;

  async integrityEnabled(): Promise<boolean> {
    return this.run(() => {
      const v = this.stmt("SELECT value FROM meta WHERE name='schema_version'").get() as { value: string } | undefined;
      if (!v || Number(v.value) >= 3) return true;
      // Whoever rewrote schema_version to look like an old vault still leaves these behind.
      if (this.db.prepare(`SELECT 1 FROM meta WHERE substr(name, 1, ${INTEGRITY_PREFIX.length}) = '${INTEGRITY_PREFIX}' LIMIT 1`).get()) return true;
      for (const t of MAC_TABLES) {
        const cols = this.db.prepare(`PRAGMA table_info(${t})`).all() as Array<{ name: string }>;
        if (cols.some((c) => c.name === 'mac') && this.db.prepare(`SELECT 1 FROM ${t} WHERE mac IS NOT NULL LIMIT 1`).get()) return true;
      }
      return false;
    });
  }

  // ---- integrity: row MACs, write sequences, the state row --------------------------------

  /** Highest write sequence seen per row by this process: a row never goes back to an older copy. */
  private readonly seen = new Map<string, number>();
  /**
   * What the write transaction in progress has seen or written, applied to `seen` only when it
   * commits: a write rolled back (a unit's conflict, a full disk) must not be remembered, or
   * the row it never changed would then look older than itself.
   */
  private pendingSeen: Map<string, number> | null = null;
  /** The state being built by the write transaction in progress. */
  private tx: IntegrityState | null = null;
  /**
   * The newest state row this process has seen or written: the state row never goes back
   * either (a log cut together with an older state row and older rows, under a running vault).
   */
  private stateMark: { seq: number; writes: number } | null = null;

  private seenOf(k: string): number | undefined {
    const p = this.pendingSeen?.get(k);
    const c = this.seen.get(k);
    return p === undefined ? c : c === undefined ? p : Math.max(p, c);
  }

  private remember(k: string, wseq: number): void {
    const target = this.pendingSeen ?? this.seen;
    const cur = target.get(k);
    if (cur === undefined || wseq > cur) target.set(k, wseq);
  }

  private corrupt(table: ProtectedTable, pk: string, problem: string, sentence: string, tag: string): CustosError {
    this.auth?.alarm(table, pk, problem);
    return new CustosError('database_corrupt', `${sentence} Run \`custos audit verify\`, then restore the database from a backup.`, { tag });
  }

  /** Refuses a row whose MAC does not match, or that is older than one this process has seen. */
  private checkRow(table: ProtectedTable, pk: string, bytes: Uint8Array, mac: Buffer | null, wseq: number | null): void {
    if (!this.auth) return;
    if (!this.auth.check(table, pk, bytes, mac ? u8(mac) : null)) {
      throw this.corrupt(
        table,
        pk,
        mac ? 'mac_mismatch' : 'mac_missing',
        `The ${TABLE_NOUN[table]} row ${printable(pk, 80)} in ${this.path} ${mac ? 'does not match its MAC' : 'has no MAC'}: it was edited or inserted outside Custos, so it is not obeyed.`,
        'row_mac',
      );
    }
    if (table === 'audit') return;
    const k = `${table}\0${pk}`;
    const before = this.seenOf(k);
    if (wseq === null || (before !== undefined && wseq < before)) {
      throw this.corrupt(table, pk, 'replayed', `The ${TABLE_NOUN[table]} row ${printable(pk, 80)} in ${this.path} is an older copy of itself (write ${wseq ?? 'none'}, after write ${before} was seen): it was put back outside Custos, so it is not obeyed.`, 'row_replayed');
    }
    this.remember(k, wseq);
  }

  /** The bytes of a row as stored now (its current wseq included), or null. */
  private rowNow(table: CountedTable | 'bookkeeping', pk: string): { bytes: Uint8Array; wseq: number | null } | null {
    switch (table) {
      case 'keys': {
        const r = this.stmt('SELECT * FROM keys WHERE id = ?').get(pk) as KeyRow | undefined;
        return r ? { bytes: keyRowBytes(toKey(r), r.wseq), wseq: r.wseq } : null;
      }
      case 'api_tokens': {
        const r = this.stmt('SELECT * FROM api_tokens WHERE id = ?').get(pk) as TokenRow | undefined;
        return r ? { bytes: tokenRowBytes(toToken(r), r.wseq), wseq: r.wseq } : null;
      }
      case 'watermarks': {
        const [keyId, chainId] = JSON.parse(pk) as [string, string];
        const r = this.stmt('SELECT * FROM watermarks WHERE key_id = ? AND chain_id = ?').get(keyId, chainId) as WatermarkRow | undefined;
        return r ? { bytes: watermarkRowBytes(keyId, chainId, toWatermark(r), r.wseq), wseq: r.wseq } : null;
      }
      case 'meta':
      case 'bookkeeping': {
        const r = this.stmt('SELECT value, wseq FROM meta WHERE name = ?').get(pk) as { value: string; wseq: number | null } | undefined;
        return r ? { bytes: metaRowBytes(pk, r.value, r.wseq), wseq: r.wseq } : null;
      }
    }
  }

  /**
   * After a protected row was written (or deleted) in this transaction: gives it the next
   * write sequence and its MAC, and moves the digest from its old element to its new one.
   */
  private finishRow(table: CountedTable | 'bookkeeping', pk: string, before: Uint8Array | null): void {
    const auth = this.auth;
    const tx = this.tx;
    if (!auth || !tx) return;
    const macTable: ProtectedTable = table === 'bookkeeping' ? 'meta' : table;
    let after: Uint8Array | null = null;
    if (this.rowNow(table, pk)) {
      const wseq = ++tx.writes;
      const sql = {
        keys: 'UPDATE keys SET wseq = ? WHERE id = ?',
        api_tokens: 'UPDATE api_tokens SET wseq = ? WHERE id = ?',
        meta: 'UPDATE meta SET wseq = ? WHERE name = ?',
        bookkeeping: 'UPDATE meta SET wseq = ? WHERE name = ?',
        watermarks: 'UPDATE watermarks SET wseq = ? WHERE key_id = ? AND chain_id = ?',
      }[table];
      const where = table === 'watermarks' ? (JSON.parse(pk) as [string, string]) : [pk];
      this.stmt(sql).run(wseq, ...where);
      after = this.rowNow(table, pk)!.bytes;
      const mac = Buffer.from(auth.mac(macTable, pk, after));
      this.stmt(sql.replace('wseq = ?', 'mac = ?')).run(mac, ...where);
      this.remember(`${macTable}\0${pk}`, wseq);
    }
    if (table === 'bookkeeping') return;
    let d = tx.digest;
    if (before) d -= elementValue(auth.element(macTable, pk, before));
    if (after) d += elementValue(auth.element(macTable, pk, after));
    tx.digest = ((d % DIGEST_MODULUS) + DIGEST_MODULUS) % DIGEST_MODULUS;
  }

  private readState(): IntegrityState | null {
    const r = this.stmt('SELECT value, mac, wseq FROM meta WHERE name = ?').get(STATE_ROW) as { value: string; mac: Buffer | null; wseq: number | null } | undefined;
    if (!r) return null;
    if (this.auth && !this.auth.check('meta', STATE_ROW, metaRowBytes(STATE_ROW, r.value, r.wseq), r.mac ? u8(r.mac) : null)) {
      throw this.corrupt('meta', STATE_ROW, 'mac_mismatch', `The integrity state row of ${this.path} does not match its MAC: it was edited outside Custos.`, 'row_mac');
    }
    try {
      const o = JSON.parse(r.value) as { seq: number; writes: number; digest: string };
      if (!Number.isSafeInteger(o.seq) || !Number.isSafeInteger(o.writes) || !/^[0-9a-f]{128}$/.test(o.digest)) throw new Error('shape');
      return { seq: o.seq, writes: o.writes, digest: BigInt(`0x${o.digest}`) };
    } catch {
      throw this.corrupt('meta', STATE_ROW, 'unreadable', `The integrity state row of ${this.path} is unreadable.`, 'row_mac');
    }
  }

  private writeState(st: IntegrityState): void {
    const value = JSON.stringify({ seq: st.seq, writes: st.writes, digest: digestHex(st.digest) });
    const mac = Buffer.from(this.auth!.mac('meta', STATE_ROW, metaRowBytes(STATE_ROW, value, null)));
    this.stmt('INSERT INTO meta(name, value, mac, wseq) VALUES (?, ?, ?, NULL) ON CONFLICT(name) DO UPDATE SET value = excluded.value, mac = excluded.mac, wseq = NULL').run(STATE_ROW, value, mac);
  }

  /**
   * The state row and the head of the log must agree: the rows belong to the newest entry
   * (or to an entry followed only by what a sealed daemon appended), and the entry they belong
   * to carries its MAC. An entry appended with SQL, or a log cut below the rows, is refused
   * here before anything is chained onto it or checkpointed.
   */
  private checkedState(): IntegrityState {
    const st = this.readState();
    if (!st) throw this.corrupt('meta', STATE_ROW, 'missing', `The integrity state row of ${this.path} is missing: it was deleted outside Custos.`, 'row_count');
    const mark = this.stateMark;
    if (mark && (st.writes < mark.writes || st.seq < mark.seq)) {
      throw this.corrupt('meta', STATE_ROW, 'replayed', `The integrity state row of ${this.path} is older than one this process has seen (write ${st.writes} at entry ${st.seq}, after write ${mark.writes} at entry ${mark.seq}): the database was put back to an older copy under the running vault.`, 'row_replayed');
    }
    this.markState(st);
    const head = this.readHead();
    if (head.seq < st.seq) {
      throw this.corrupt('audit', String(head.seq), 'truncated', `The audit log of ${this.path} ends at entry ${head.seq}, but its rows were written at entry ${st.seq}: entries were cut.`, 'audit_log');
    }
    if (st.seq > 0) {
      const at = this.stmt('SELECT * FROM audit WHERE seq = ?').get(st.seq) as AuditRow | undefined;
      if (!at || !this.auth!.check('audit', String(st.seq), auditRowBytes(st.seq, u8(at.hash)), at.mac ? u8(at.mac) : null)) {
        throw this.corrupt('audit', String(st.seq), 'mac_mismatch', `Audit entry ${st.seq} of ${this.path}, the one its rows were written with, was altered.`, 'audit_log');
      }
    }
    if (head.seq > st.seq) {
      const at = st.seq > 0 ? (this.stmt('SELECT seq, hash FROM audit WHERE seq = ?').get(st.seq) as { seq: number; hash: Buffer }) : null;
      let prev: ChainHead = at ? { seq: at.seq, hash: u8(at.hash) } : { seq: 0, hash: GENESIS_HASH };
      for (const r of this.stmt('SELECT * FROM audit WHERE seq > ? ORDER BY seq').all(st.seq) as AuditRow[]) {
        const e = toAudit(r);
        // What a sealed daemon appends has no MAC, so its shape and its place in the chain are
        // all there is to check: nothing is chained onto, or signed over, anything else.
        const linked = r.seq === prev.seq + 1 && equalBytes(e.prevHash, prev.hash) && (!this.chain || equalBytes(this.chain(prev, r.seq, r.ts, e), e.hash));
        if (r.mac === null && isSealedEntry(e) && linked) {
          prev = { seq: r.seq, hash: e.hash };
          continue;
        }
        throw this.corrupt('audit', String(r.seq), 'appended', `Audit entry ${r.seq} of ${this.path} was appended outside Custos (it is not an entry a sealed vault writes, and no write of this vault made it).`, 'audit_log');
      }
    }
    return st;
  }

  /**
   * A write transaction (BEGIN IMMEDIATE): with row MACs on, it starts from the checked state
   * row and ends by writing it at the new head, so that every transaction binds the rows to
   * the log. `sealing` starts a state (init, upgrade).
   */
  private writeTx<T>(f: () => T, sealing = false): T {
    const journal = new Map<string, number>();
    let committed: IntegrityState | null = null;
    const out = this.run(() =>
      this.db
        .transaction(() => {
          if (!this.auth) return f();
          const start = sealing ? { seq: 0, writes: 0, digest: 0n } : this.checkedState();
          this.tx = { ...start };
          this.pendingSeen = journal;
          try {
            const r = f();
            // The rows belong to the last entry this transaction wrote (its MAC is checked
            // before anything is chained onto it); with no entry, to the same one as before:
            // never to an entry a sealed daemon appended, which carries no MAC.
            const t = this.tx;
            if (sealing || t.seq !== start.seq || t.writes !== start.writes || t.digest !== start.digest) {
              if (sealing) t.seq = this.readHead().seq;
              this.writeState(t);
              committed = t;
            }
            return r;
          } finally {
            this.tx = null;
            this.pendingSeen = null;
          }
        })
        .immediate(),
    );
    // Committed: what it saw and wrote is now what this process remembers.
    for (const [k, v] of journal) if (!(this.seen.get(k)! >= v)) this.seen.set(k, v);
    if (committed) this.markState(committed);
    return out;
  }

  private markState(st: { seq: number; writes: number }): void {
    if (!this.stateMark || st.writes > this.stateMark.writes || (st.writes === this.stateMark.writes && st.seq > this.stateMark.seq)) this.stateMark = { seq: st.seq, writes: st.writes };
  }

  /** Writes a meta value (null removes it) with its write sequence and MAC; returns the count change. */
  private writeMeta(name: string, value: string | null): number {
    const protectedRow = isProtectedMeta(name);
    const table = name.startsWith(INTEGRITY_PREFIX) ? 'bookkeeping' : 'meta';
    const before = protectedRow ? (this.rowNow(table, name)?.bytes ?? null) : null;
    const existed = !!this.stmt('SELECT 1 FROM meta WHERE name = ?').get(name);
    if (value === null) this.stmt('DELETE FROM meta WHERE name = ?').run(name);
    else this.stmt('INSERT INTO meta(name, value, mac, wseq) VALUES (?, ?, NULL, NULL) ON CONFLICT(name) DO UPDATE SET value = excluded.value, mac = NULL, wseq = NULL').run(name, value);
    if (protectedRow) this.finishRow(table, name, before);
    if (!isCountedMeta(name)) return 0;
    return value === null ? (existed ? -1 : 0) : existed ? 0 : 1;
  }

  private readMeta(name: string): string | null {
    // Bootstrap rows are read before `migrate` (a database from before row MACs has no mac or
    // wseq column yet), and carry no MAC anyway.
    if (!isProtectedMeta(name)) return (this.stmt('SELECT value FROM meta WHERE name = ?').get(name) as { value: string } | undefined)?.value ?? null;
    const r = this.stmt('SELECT value, mac, wseq FROM meta WHERE name = ?').get(name) as { value: string; mac: Buffer | null; wseq: number | null } | undefined;
    if (!r) return null;
    this.checkRow('meta', name, metaRowBytes(name, r.value, r.wseq), r.mac, r.wseq);
    return r.value;
  }

  private countOf(table: CountedTable): number {
    const sql = table === 'meta' ? `SELECT count(*) AS n FROM meta WHERE ${COUNTED_META_SQL}` : `SELECT count(*) AS n FROM ${table}`;
    return (this.stmt(sql).get() as { n: number }).n;
  }

  /** The MACed count of a table; a vault with row MACs has all four, so a missing one is an edit. */
  private storedCount(table: CountedTable): number {
    const v = this.readMeta(COUNT_PREFIX + table);
    if (v === null) throw this.corrupt('meta', COUNT_PREFIX + table, 'missing', `The count of ${table} rows in ${this.path} is missing: it was deleted outside Custos.`, 'row_count');
    return Number(v);
  }

  /**
   * A protected row that is absent may have been deleted (a budget refilled, a watermark
   * forgotten): the table's MACed count says whether a row is missing.
   */
  private checkCount(table: CountedTable): void {
    if (!this.auth) return;
    const stored = this.storedCount(table);
    const actual = this.countOf(table);
    if (stored === actual) return;
    throw this.corrupt(
      table,
      '*',
      'count_mismatch',
      `The ${table} table of ${this.path} holds ${actual} protected rows where Custos wrote ${stored}: rows were ${actual < stored ? 'deleted' : 'inserted'} outside Custos, so none of its state is trusted.`,
      'row_count',
    );
  }

  private applyCount(table: CountedTable, d: number): void {
    if (!this.auth || d === 0) return;
    this.writeMeta(COUNT_PREFIX + table, String(this.storedCount(table) + d));
  }

  // ---- meta ---------------------------------------------------------------------------------

  async getMeta(name: string): Promise<string | null> {
    // One read transaction: the row and, when it is absent, the count are one snapshot, so a
    // commit by another process in between is never mistaken for a deleted row.
    return this.run(() =>
      this.db.transaction(() => {
        const v = this.readMeta(name);
        if (v === null && absenceMatters(name)) this.checkCount('meta');
        return v;
      })(),
    );
  }

  async listMeta(prefix: string): Promise<Array<{ name: string; value: string }>> {
    // A range scan on the primary key, not LIKE: prefixes may contain % or _.
    return this.run(() =>
      (this.stmt('SELECT name, value, mac, wseq FROM meta WHERE name >= ? AND name < ? ORDER BY name').all(prefix, prefix + '\uffff') as Array<{ name: string; value: string; mac: Buffer | null; wseq: number | null }>).map((r) => {
        if (isProtectedMeta(r.name)) this.checkRow('meta', r.name, metaRowBytes(r.name, r.value, r.wseq), r.mac, r.wseq);
        return { name: r.name, value: r.value };
      }),
    );
  }

  async initMeta(values: Record<string, string>): Promise<boolean> {
    return this.writeTx(() => {
      const exists = this.stmt('SELECT 1 FROM meta WHERE name = ?');
      if (Object.keys(values).some((k) => exists.get(k))) return false;
      let d = 0;
      for (const [k, v] of Object.entries(values)) d += this.writeMeta(k, v);
      this.applyCount('meta', d);
      return true;
    });
  }

  async setMeta(name: string, value: string | null): Promise<void> {
    this.writeTx(() => this.applyCount('meta', this.writeMeta(name, value)));
  }

  // ---- keys and tokens ------------------------------------------------------------------------

  private checkedKey(r: KeyRow): KeyRecord {
    const k = toKey(r);
    this.checkRow('keys', k.id, keyRowBytes(k, r.wseq), r.mac, r.wseq);
    return k;
  }

  async findKey(ref: string): Promise<KeyRecord | null> {
    return this.run(() => {
      const r = this.stmt('SELECT * FROM keys WHERE id = ? OR label = ? ORDER BY id = ? DESC LIMIT 1').get(ref, ref, ref) as KeyRow | undefined;
      return r ? this.checkedKey(r) : null;
    });
  }

  async keysVersion(): Promise<number | null> {
    return this.run(() => (this.stmt('SELECT max(wseq) AS v FROM keys').get() as { v: number | null }).v);
  }

  /**
   * Every key; one whose row fails its check is returned with `tampered: true` (and the alarm
   * raised) so that a listing shows it, while every use of it is refused.
   */
  async listKeys(): Promise<Array<KeyRecord & { tampered?: true }>> {
    return this.run(() =>
      (this.stmt('SELECT * FROM keys ORDER BY created_at, id').all() as KeyRow[]).map((r) => this.listedKey(r)),
    );
  }

  /** A listed row, checked; one that fails its check is shown as `tampered` (alarm raised), never obeyed. */
  private listedKey(r: KeyRow): KeyRecord & { tampered?: true } {
    try {
      return this.checkedKey(r);
    } catch (e) {
      if (e instanceof CustosError && (e.tag === 'row_mac' || e.tag === 'row_replayed')) return { ...toKey(r), tampered: true as const };
      throw e;
    }
  }

  async listExpiringKeys(): Promise<KeyRecord[]> {
    return this.run(() =>
      // An edited row is alarmed and left to fail where it is used, not swept.
      (this.stmt("SELECT * FROM keys WHERE json_extract(attributes, '$.expires_at') IS NOT NULL AND state != 'destroyed'").all() as KeyRow[]).map((r) => this.listedKey(r)).filter((k) => !k.tampered),
    );
  }

  async listKeysPage(after: string | null, limit: number): Promise<Array<KeyRecord & { tampered?: true }>> {
    const n = Math.max(1, Math.min(10_000, Math.floor(limit)));
    return this.run(() =>
      ((after === null ? this.stmt('SELECT * FROM keys ORDER BY label LIMIT ?').all(n) : this.stmt('SELECT * FROM keys WHERE label > ? ORDER BY label LIMIT ?').all(after, n)) as KeyRow[]).map((r) => this.listedKey(r)),
    );
  }

  async listTokens(skipCorrupt = false): Promise<ApiToken[]> {
    return this.run(() =>
      (this.stmt('SELECT * FROM api_tokens ORDER BY created_at, id').all() as TokenRow[]).flatMap((r) => {
        const t = toToken(r);
        try {
          this.checkRow('api_tokens', t.id, tokenRowBytes(t, r.wseq), r.mac, r.wseq);
        } catch (e) {
          if (skipCorrupt && e instanceof CustosError && e.code === 'database_corrupt') return [];
          throw e;
        }
        return [t];
      }),
    );
  }

  async tokensWrittenAfter(wseq: number): Promise<Array<{ token: ApiToken; wseq: number }>> {
    return this.run(() =>
      (this.stmt('SELECT * FROM api_tokens WHERE wseq > ? ORDER BY wseq').all(wseq) as TokenRow[]).flatMap((r) => {
        const t = toToken(r);
        try {
          this.checkRow('api_tokens', t.id, tokenRowBytes(t, r.wseq), r.mac, r.wseq);
        } catch (e) {
          if (e instanceof CustosError && e.code === 'database_corrupt') return [];
          throw e;
        }
        return [{ token: t, wseq: r.wseq! }];
      }),
    );
  }

  async tokensVersion(): Promise<string> {
    return this.run(() => {
      const r = this.stmt('SELECT max(wseq) AS w, count(*) AS n FROM api_tokens').get() as { w: number | null; n: number };
      return `${r.w ?? 0}/${r.n}`;
    });
  }

  async findTokenBy(key: { id: string } | { name: string }): Promise<ApiToken | null> {
    return this.run(() => {
      const r = ('id' in key ? this.stmt('SELECT * FROM api_tokens WHERE id = ?').get(key.id) : this.stmt('SELECT * FROM api_tokens WHERE name = ?').get(key.name)) as TokenRow | undefined;
      if (!r) return null;
      const t = toToken(r);
      this.checkRow('api_tokens', t.id, tokenRowBytes(t, r.wseq), r.mac, r.wseq);
      return t;
    });
  }

  async findToken(hash: Uint8Array): Promise<ApiToken | null> {
    return this.run(() => {
      const r = this.stmt('SELECT * FROM api_tokens WHERE hash = ?').get(Buffer.from(hash)) as TokenRow | undefined;
      if (!r) return null;
      const t = toToken(r);
      // A token row inserted with SQL (an attacker's own admin token) has no valid MAC.
      this.checkRow('api_tokens', t.id, tokenRowBytes(t, r.wseq), r.mac, r.wseq);
      return t;
    });
  }

  /** Applies one mutation; returns the change it makes to a table's row count. */
  private applyMutation(m: StateMutation): [CountedTable, number] | null {
    switch (m.kind) {
      case 'insertKey': {
        const k = m.key;
        try {
          this
            .stmt('INSERT INTO keys (id, label, algorithm, public_key, state, exportable, origin, version, created_at, updated_at, sealed, attributes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)')
            .run(k.id, k.label, k.algorithm, Buffer.from(k.publicKey), k.state, k.exportable ? 1 : 0, k.origin, k.version, k.createdAt, k.updatedAt, k.sealed ? Buffer.from(k.sealed) : null, canonicalJson(k.attributes));
        } catch (e) {
          if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' || (e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
            throw new CustosError('label_taken', `A key labelled "${k.label}" already exists (labels stay reserved after a key is destroyed); choose another label.`);
          }
          throw e;
        }
        this.finishRow('keys', k.id, null);
        return ['keys', 1];
      }
      case 'setKeyState': {
        const before = this.currentKeyBytes(m.id);
        const r = this.stmt("UPDATE keys SET state = ?, updated_at = ? WHERE id = ? AND state != 'destroyed'").run(m.state, m.updatedAt, m.id);
        if (r.changes !== 1) throw new CustosError('key_destroyed', 'The key was destroyed; its state can no longer change.');
        this.finishRow('keys', m.id, before);
        return null;
      }
      case 'destroyKey': {
        const before = this.currentKeyBytes(m.id);
        // Overwrite in place first, then drop: with secure_delete the freed bytes are zeroed too.
        this.stmt('UPDATE keys SET sealed = zeroblob(length(sealed)) WHERE id = ? AND sealed IS NOT NULL').run(m.id);
        const r = this.stmt("UPDATE keys SET sealed = NULL, state = 'destroyed', updated_at = ? WHERE id = ? AND state != 'destroyed'").run(m.updatedAt, m.id);
        if (r.changes !== 1) throw new CustosError('key_destroyed', 'The key was already destroyed.');
        this.finishRow('keys', m.id, before);
        return null;
      }
      case 'rewrapKey': {
        const cur = this.currentKeyRow(m.id);
        if (!cur || cur.state === 'destroyed') throw new CustosError('key_destroyed', 'The key was destroyed; it can no longer change.');
        if (cur.version !== m.expectedVersion) throw new CustosError('storage_unavailable', 'The key changed while this request was decided (another process?); retry.', { tag: 'key_moved' });
        const before = this.rowNow('keys', m.id)!.bytes;
        this.stmt('UPDATE keys SET attributes = ?, sealed = ?, version = ?, updated_at = ? WHERE id = ?').run(canonicalJson(m.attributes), Buffer.from(m.sealed), m.version, m.updatedAt, m.id);
        this.finishRow('keys', m.id, before);
        return null;
      }
      case 'advanceWatermark': {
        const cur = this.readWatermark(m.keyId, m.chainId);
        const same =
          (cur === null && m.expected === null) ||
          (cur !== null && m.expected !== null && comparePosition(cur, m.expected) === 0);
        if (!same) throw new CustosError('storage_unavailable', 'The consensus watermark moved while this request was decided (another signer?); decide again.', { tag: 'watermark_moved' });
        if (cur !== null && comparePosition(m.next, cur) < 0) {
          throw new CustosError('policy_denied', 'A consensus watermark never moves backwards.', { tag: 'double_sign' });
        }
        const pk = watermarkPk(m.keyId, m.chainId);
        const before = cur === null ? null : this.rowNow('watermarks', pk)!.bytes;
        const w: Watermark = m.next;
        this.stmt(
          'INSERT INTO watermarks (key_id, chain_id, height, round, step, sign_bytes, signature, mac, wseq) VALUES (?,?,?,?,?,?,?,NULL,NULL) ON CONFLICT(key_id, chain_id) DO UPDATE SET height = excluded.height, round = excluded.round, step = excluded.step, sign_bytes = excluded.sign_bytes, signature = excluded.signature, mac = NULL, wseq = NULL',
        ).run(m.keyId, m.chainId, w.height.toString(), w.round, w.step, Buffer.from(w.signBytes), w.signature ? Buffer.from(w.signature) : null);
        this.finishRow('watermarks', pk, before);
        return cur === null ? ['watermarks', 1] : null;
      }
      case 'assertKeyActive': {
        const r = this.currentKeyRow(m.id);
        if (!r || r.state === 'destroyed') throw new CustosError('key_destroyed', 'The key was destroyed while this request was in progress; nothing was signed.');
        if (r.state !== 'active') throw new CustosError('key_disabled', 'The key was disabled while this request was in progress; nothing was signed.');
        if (m.version !== undefined && r.version !== m.version) {
          throw new CustosError('storage_unavailable', 'The key was changed (its purpose or attributes) while this request was in progress; nothing was signed. Retry.', { tag: 'key_moved' });
        }
        return null;
      }
      case 'compareAndSetMeta': {
        const current = this.readMeta(m.name);
        if (current === null && m.expected !== null && isCountedMeta(m.name)) this.checkCount('meta');
        if (current !== m.expected) throw new CustosError('storage_unavailable', `The stored ${m.name.split('.')[0]} changed while this request was decided (another process?); decide again.`, { tag: 'meta_moved' });
        // value === expected is a guard only (the policy generation on every decision): no write.
        if (m.value === m.expected) return null;
        return ['meta', this.writeMeta(m.name, m.value)];
      }
      case 'insertToken': {
        const t = m.token;
        this.stmt('INSERT INTO api_tokens (id, name, hash, role, created_at, terms) VALUES (?,?,?,?,?,?)').run(t.id, t.name, Buffer.from(t.hash), t.role, t.createdAt, tokenTermsJson(t.terms));
        this.finishRow('api_tokens', t.id, null);
        return ['api_tokens', 1];
      }
      case 'updateToken': {
        const r = this.stmt('SELECT * FROM api_tokens WHERE id = ?').get(m.expected.id) as TokenRow | undefined;
        if (!r) this.checkCount('api_tokens');
        const cur = r ? toToken(r) : null;
        if (cur) this.checkRow('api_tokens', cur.id, tokenRowBytes(cur, r!.wseq), r!.mac, r!.wseq);
        const same = (a: ApiToken, b: ApiToken) => a.name === b.name && a.role === b.role && Buffer.from(a.hash).equals(Buffer.from(b.hash)) && tokenTermsJson(a.terms) === tokenTermsJson(b.terms);
        if (!cur || !same(cur, m.expected) || m.token.id !== cur.id) {
          throw new CustosError('storage_unavailable', `The principal ${m.expected.name} changed while this request was decided (another admin, another process?); nothing was changed. Retry.`, { tag: 'token_moved' });
        }
        const before = tokenRowBytes(cur, r!.wseq);
        const t = m.token;
        this.stmt('UPDATE api_tokens SET hash = ?, role = ?, terms = ? WHERE id = ?').run(Buffer.from(t.hash), t.role, tokenTermsJson(t.terms), t.id);
        this.finishRow('api_tokens', t.id, before);
        return null;
      }
    }
  }

  /** The key row as stored, checked: a decision never rests on an edited or older state. */
  private currentKeyRow(id: string): KeyRecord | null {
    const r = this.stmt('SELECT * FROM keys WHERE id = ?').get(id) as KeyRow | undefined;
    return r ? this.checkedKey(r) : null;
  }

  /** The checked key row's bytes before a change (the digest subtracts them). */
  private currentKeyBytes(id: string): Uint8Array | null {
    if (!this.currentKeyRow(id)) return null;
    return this.rowNow('keys', id)!.bytes;
  }

  private readWatermark(keyId: string, chainId: string): Watermark | null {
    const r = this.stmt('SELECT * FROM watermarks WHERE key_id = ? AND chain_id = ?').get(keyId, chainId) as WatermarkRow | undefined;
    if (!r) {
      // No watermark: a first vote, or a deleted row (which would allow any vote): the count tells.
      this.checkCount('watermarks');
      return null;
    }
    const w = toWatermark(r);
    this.checkRow('watermarks', watermarkPk(keyId, chainId), watermarkRowBytes(keyId, chainId, w, r.wseq), r.mac, r.wseq);
    return w;
  }

  async getWatermark(keyId: string, chainId: string): Promise<Watermark | null> {
    // A snapshot, as in getMeta: another process's first vote is not a deleted row.
    return this.run(() => this.db.transaction(() => this.readWatermark(keyId, chainId))());
  }

  async listWatermarks(): Promise<Array<{ keyId: string; chainId: string; height: bigint; round: number; step: number }>> {
    return this.run(() =>
      (this.stmt('SELECT * FROM watermarks ORDER BY key_id, chain_id').all() as WatermarkRow[]).map((r) => {
        const w = toWatermark(r);
        this.checkRow('watermarks', watermarkPk(r.key_id, r.chain_id), watermarkRowBytes(r.key_id, r.chain_id, w, r.wseq), r.mac, r.wseq);
        return { keyId: r.key_id, chainId: r.chain_id, height: w.height, round: w.round, step: w.step };
      }),
    );
  }

  private readHead(): ChainHead {
    const r = this.stmt('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: Buffer } | undefined;
    return r ? { seq: r.seq, hash: u8(r.hash) } : { seq: 0, hash: GENESIS_HASH };
  }

  async commit(units: WriteUnit[], chain: Chainer, ts: string): Promise<Array<Error | null>> {
    const insert = this.stmt(
      'INSERT INTO audit (seq, ts, request_id, principal, operation, key_id, key_label, outcome, reason, details, prev_hash, hash, mac) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)',
    );
    const results: Array<Error | null> = [];
    this.writeTx(() => {
      let head = this.readHead();
      for (const unit of units) {
        const before = head;
        const tx = this.tx ? { ...this.tx } : null;
        const seen = this.pendingSeen ? new Map(this.pendingSeen) : null;
        try {
          // A nested transaction is a SAVEPOINT: a failing unit rolls back alone.
          this.db.transaction(() => {
            for (const m of unit.mutations) {
              const c = this.applyMutation(m);
              // Counted at once, inside the unit's savepoint: a later unit of the same batch
              // that finds a row absent compares against a count that includes this one.
              if (c) this.applyCount(c[0], c[1]);
            }
            for (const d of unit.audit) {
              const seq = head.seq + 1;
              const hash = chain(head, seq, ts, d);
              insert.run(seq, ts, d.requestId, d.principal, d.operation, d.keyId, d.keyLabel, d.outcome, d.reason, canonicalJson(d.details), Buffer.from(head.hash), Buffer.from(hash), this.auth ? Buffer.from(this.auth.mac('audit', String(seq), auditRowBytes(seq, hash))) : null);
              head = { seq, hash };
              if (this.tx) this.tx.seq = seq;
            }
          })();
          results.push(null);
        } catch (e) {
          head = before;
          // The unit's writes are rolled back: so is their bookkeeping, and what it remembered.
          if (tx) this.tx = tx;
          if (seen && this.pendingSeen) {
            this.pendingSeen.clear();
            for (const [k, v] of seen) this.pendingSeen.set(k, v);
          }
          const code = (e as { code?: string }).code ?? '';
          // Storage failures abort the whole batch; a unit's own conflict rolls back only that unit.
          if (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_FULL' || code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') throw e;
          // A tampered row aborts the batch too: nothing is committed on top of it.
          if (e instanceof CustosError && e.code === 'database_corrupt') throw e;
          results.push(e instanceof CustosError ? e : storageError(e, this.path));
        }
      }
    });
    return results;
  }

  async auditHead(): Promise<ChainHead> {
    return this.run(() => this.readHead());
  }

  async verifiedHead(): Promise<ChainHead> {
    return this.run(() =>
      this.db.transaction(() => {
        if (this.auth) this.checkedState();
        return this.readHead();
      })(),
    );
  }

  async auditAfter(afterSeq: number, limit: number): Promise<AuditEntry[]> {
    return this.run(() => (this.stmt('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?').all(afterSeq, limit) as AuditRow[]).map(toAudit));
  }

  async auditTail(limit: number): Promise<AuditEntry[]> {
    return this.run(() => (this.stmt('SELECT * FROM audit ORDER BY seq DESC LIMIT ?').all(limit) as AuditRow[]).map(toAudit).reverse());
  }

  async putCheckpoint(cp: AuditCheckpoint): Promise<void> {
    this.run(() =>
      this.stmt('INSERT OR IGNORE INTO audit_checkpoints (seq, hash, ts, signature) VALUES (?,?,?,?)').run(cp.seq, Buffer.from(cp.hash), cp.ts, Buffer.from(cp.signature)),
    );
  }

  async checkpoints(): Promise<AuditCheckpoint[]> {
    return this.run(() =>
      (this.stmt('SELECT * FROM audit_checkpoints ORDER BY seq').all() as Array<{ seq: number; hash: Buffer; ts: string; signature: Buffer }>).map((r) => ({
        seq: r.seq,
        hash: u8(r.hash),
        ts: r.ts,
        signature: u8(r.signature),
      })),
    );
  }

  /** Every protected row with the bytes its MAC covers, table by table in primary-key order. */
  private *protectedRows(table: CountedTable): Generator<{ pk: string; bytes: Uint8Array; mac: Buffer | null; wseq: number | null }> {
    switch (table) {
      case 'keys':
        for (const r of this.db.prepare('SELECT * FROM keys ORDER BY id').iterate() as IterableIterator<KeyRow>) yield { pk: r.id, bytes: keyRowBytes(toKey(r), r.wseq), mac: r.mac, wseq: r.wseq };
        return;
      case 'api_tokens':
        for (const r of this.db.prepare('SELECT * FROM api_tokens ORDER BY id').iterate() as IterableIterator<TokenRow>) yield { pk: r.id, bytes: tokenRowBytes(toToken(r), r.wseq), mac: r.mac, wseq: r.wseq };
        return;
      case 'watermarks':
        for (const r of this.db.prepare('SELECT * FROM watermarks ORDER BY key_id, chain_id').iterate() as IterableIterator<WatermarkRow>) {
          yield { pk: watermarkPk(r.key_id, r.chain_id), bytes: watermarkRowBytes(r.key_id, r.chain_id, toWatermark(r), r.wseq), mac: r.mac, wseq: r.wseq };
        }
        return;
      case 'meta':
        for (const r of this.db.prepare(`SELECT name, value, mac, wseq FROM meta WHERE ${COUNTED_META_SQL} ORDER BY name`).iterate() as IterableIterator<{ name: string; value: string; mac: Buffer | null; wseq: number | null }>) {
          yield { pk: r.name, bytes: metaRowBytes(r.name, r.value, r.wseq), mac: r.mac, wseq: r.wseq };
        }
        return;
    }
  }

  async sealRows(): Promise<number> {
    if (!this.auth) throw new CustosError('internal', 'Rows can only be sealed by an unsealed vault.');
    const auth = this.auth;
    return this.writeTx(() => {
      let n = 0;
      for (const table of COUNTED_TABLES) {
        // Collected first: the rows are updated while iterating otherwise.
        const pks = [...this.protectedRows(table)].map((r) => r.pk);
        for (const pk of pks) {
          this.finishRow(table, pk, null);
          n++;
        }
        this.writeMeta(COUNT_PREFIX + table, String(pks.length));
      }
      // Entries a sealed daemon wrote stay unauthenticated, as they were written.
      const audit = (this.db.prepare('SELECT * FROM audit WHERE mac IS NULL ORDER BY seq').all() as AuditRow[]).filter((r) => !isSealedEntry(toAudit(r)));
      for (const a of audit) this.stmt('UPDATE audit SET mac = ? WHERE seq = ?').run(Buffer.from(auth.mac('audit', String(a.seq), auditRowBytes(a.seq, u8(a.hash)))), a.seq);
      this.stmt("UPDATE meta SET value = ? WHERE name = 'schema_version'").run(String(SCHEMA_VERSION));
      return n + audit.length;
    }, true);
  }

  async checkRows(): Promise<string[]> {
    const auth = this.auth;
    if (!auth) throw new CustosError('internal', 'Rows can only be checked by an unsealed vault.');
    return this.run(() =>
      this.db.transaction(() => {
        const problems: string[] = [];
        let st: IntegrityState;
        try {
          st = this.checkedState();
        } catch (e) {
          return [(e as Error).message];
        }
        let digest = 0n;
        for (const table of COUNTED_TABLES) {
          let n = 0;
          for (const r of this.protectedRows(table)) {
            n++;
            if (!auth.check(table, r.pk, r.bytes, r.mac ? u8(r.mac) : null)) {
              auth.alarm(table, r.pk, r.mac ? 'mac_mismatch' : 'mac_missing');
              if (problems.length < 20) problems.push(`${TABLE_NOUN[table]} ${printable(r.pk, 80)}: ${r.mac ? 'does not match its MAC (edited outside Custos)' : 'has no MAC (inserted outside Custos)'}`);
              continue;
            }
            digest += elementValue(auth.element(table, r.pk, r.bytes));
            // What this process will refuse to see older while it runs; keys too, up to a bound
            // on memory (beyond it, a key row is remembered once read).
            if (r.wseq !== null && (table !== 'keys' || n <= SEEN_KEYS_AT_OPEN)) this.seen.set(`${table}\0${r.pk}`, r.wseq);
          }
          const countRow = this.stmt('SELECT value, mac, wseq FROM meta WHERE name = ?').get(COUNT_PREFIX + table) as { value: string; mac: Buffer | null; wseq: number | null } | undefined;
          if (!countRow) {
            problems.push(`the count of ${table} rows is missing (deleted outside Custos)`);
            continue;
          }
          if (!auth.check('meta', COUNT_PREFIX + table, metaRowBytes(COUNT_PREFIX + table, countRow.value, countRow.wseq), countRow.mac ? u8(countRow.mac) : null)) {
            auth.alarm('meta', COUNT_PREFIX + table, 'mac_mismatch');
            problems.push(`the count of ${table} rows does not match its MAC (edited outside Custos)`);
          } else if (Number(countRow.value) !== n) {
            auth.alarm(table, '*', 'count_mismatch');
            problems.push(`the ${table} table holds ${n} protected rows where Custos wrote ${countRow.value}: rows were ${n < Number(countRow.value) ? 'deleted' : 'inserted'} outside Custos`);
          }
          if (countRow.wseq !== null) this.seen.set(`meta\0${COUNT_PREFIX}${table}`, countRow.wseq);
        }
        if (problems.length === 0 && digest % DIGEST_MODULUS !== st.digest) {
          auth.alarm('meta', STATE_ROW, 'digest_mismatch');
          problems.push(
            `the protected rows are not the ones this vault last wrote (their keyed digest differs from the state row of entry ${st.seq}): a row was deleted, inserted, or put back from an older copy outside Custos`,
          );
        }
        return problems;
      })(),
    );
  }

  async rowsDigest(): Promise<{ head: ChainHead; digest: RowsDigest }> {
    return this.run(() =>
      // One read transaction: the head and the rows are the same snapshot (WAL).
      this.db.transaction(() => {
        const head = this.readHead();
        const tables = {} as Record<CountedTable, string>;
        const counts = {} as Record<CountedTable, number>;
        for (const table of COUNTED_TABLES) {
          const h = createHash('sha256').update(`custos-rows-v1\n${table}\n`);
          let n = 0;
          for (const r of this.protectedRows(table)) {
            // Length-prefixed, so that no two different row lists hash alike.
            const pk = Buffer.from(r.pk, 'utf8');
            h.update(`${pk.length}:`).update(pk).update(`${r.bytes.length}:`).update(r.bytes);
            n++;
          }
          tables[table] = bytesToHex(new Uint8Array(h.digest()));
          counts[table] = n;
        }
        return { head, digest: { tables, counts } };
      })(),
    );
  }

  async integrityCheck(): Promise<string[]> {
    return this.run(() => {
      const rows = this.db.pragma('integrity_check') as Array<{ integrity_check: string }>;
      const problems = rows.map((r) => r.integrity_check).filter((s) => s !== 'ok');
      return problems;
    });
  }

  /** Moves the WAL into the main file and truncates it, so destroyed material leaves the WAL too. */
  async purgeFreed(): Promise<boolean> {
    // TRUNCATE waits for readers via the busy handler, but a reader that keeps a snapshot
    // open (another process's long `audit verify`) makes it report busy: retry briefly.
    for (let attempt = 0; attempt < 20; attempt++) {
      const [r] = this.run(() => this.db.pragma('wal_checkpoint(TRUNCATE)')) as Array<{ busy: number; log: number; checkpointed: number }>;
      if (r && r.busy === 0 && r.log === r.checkpointed) return true;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return false;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
