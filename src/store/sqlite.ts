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
import { bytesToHex } from '../core/bytes.js';
import { printable } from '../core/text.js';
import type { AuditCheckpoint, AuditEntry, KeyRecord } from '../core/types.js';
import { comparePosition, GENESIS_HASH, type ApiToken, type ChainHead, type Chainer, type Store, type StateMutation, type Watermark, type WriteUnit } from './store.js';
import {
  auditRowBytes,
  BOOTSTRAP_META,
  COUNT_PREFIX,
  COUNTED_TABLES,
  isCountedMeta,
  isProtectedMeta,
  keyRowBytes,
  metaRowBytes,
  tokenRowBytes,
  watermarkPk,
  watermarkRowBytes,
  type CountedTable,
  type ProtectedTable,
  type RowAuthenticator,
  type RowsDigest,
} from './rows.js';

/** 3: row MACs (a `mac` column on every protected table) and MACed per-table counts. */
const SCHEMA_VERSION = 3;
const MAC_TABLES = ['keys', 'api_tokens', 'watermarks', 'meta', 'audit'] as const;
/** SQL for "a counted meta row": protected, and not one of the counts themselves. */
const COUNTED_META_SQL = `name NOT IN (${[...BOOTSTRAP_META].map((n) => `'${n}'`).join(',')}) AND substr(name, 1, ${COUNT_PREFIX.length}) != '${COUNT_PREFIX}'`;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL, mac BLOB) STRICT;
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
  mac BLOB
) STRICT;
CREATE TABLE IF NOT EXISTS api_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  hash BLOB NOT NULL UNIQUE,
  role TEXT NOT NULL,
  created_at TEXT NOT NULL,
  mac BLOB
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
    details = JSON.parse(r.details) as AuditEntry['details'];
  } catch {
    // Kept verbatim so that verification reports the entry instead of crashing.
    details = { unparseable: r.details };
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
}

const toToken = (r: TokenRow): ApiToken => ({ id: r.id, name: r.name, hash: u8(r.hash), role: r.role, createdAt: r.created_at });

interface WatermarkRow {
  key_id: string;
  chain_id: string;
  height: string;
  round: number;
  step: number;
  sign_bytes: Buffer;
  signature: Buffer | null;
  mac: Buffer | null;
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
      this.db.exec(SCHEMA);
      // Schema 2 → 3: the mac columns. The version itself moves to 3 only in `sealRows`, in
      // the transaction that MACs every row, so a crash in between leaves a schema-2 vault.
      for (const t of MAC_TABLES) {
        const cols = this.db.prepare(`PRAGMA table_info(${t})`).all() as Array<{ name: string }>;
        if (!cols.some((c) => c.name === 'mac')) this.db.exec(`ALTER TABLE ${t} ADD COLUMN mac BLOB`);
      }
      const v = this.stmt("SELECT value FROM meta WHERE name='schema_version'").get() as { value: string } | undefined;
      if (!v) this.stmt("INSERT INTO meta(name, value) VALUES ('schema_version', ?)").run(String(SCHEMA_VERSION));
      else if (Number(v.value) > SCHEMA_VERSION) {
        throw new CustosError('database_corrupt', `The database ${this.path} was written by a newer Custos (schema ${v.value}); upgrade Custos.`);
      }
    });
  }

  setRowAuthenticator(auth: RowAuthenticator): void {
    this.auth = auth;
  }

  async integrityEnabled(): Promise<boolean> {
    return this.run(() => {
      const v = this.stmt("SELECT value FROM meta WHERE name='schema_version'").get() as { value: string } | undefined;
      if (v && Number(v.value) >= 3) return true;
      // Whoever rewrote schema_version to look like an old vault still leaves these behind.
      for (const t of MAC_TABLES) {
        const cols = this.db.prepare(`PRAGMA table_info(${t})`).all() as Array<{ name: string }>;
        if (cols.some((c) => c.name === 'mac') && this.db.prepare(`SELECT 1 FROM ${t} WHERE mac IS NOT NULL LIMIT 1`).get()) return true;
      }
      return !!this.db.prepare("SELECT 1 FROM audit WHERE operation = 'integrity_enabled' LIMIT 1").get();
    });
  }

  // ---- row MACs ---------------------------------------------------------------------------

  /** Refuses a row whose MAC does not match (fail closed: the request that read it fails). */
  private checkRow(table: ProtectedTable, pk: string, bytes: Uint8Array, mac: Buffer | null): void {
    if (!this.auth) return;
    if (this.auth.check(table, pk, bytes, mac ? u8(mac) : null)) return;
    this.auth.alarm(table, pk, mac ? 'mac_mismatch' : 'mac_missing');
    throw new CustosError(
      'database_corrupt',
      `The ${TABLE_NOUN[table]} row ${printable(pk, 80)} in ${this.path} ${mac ? 'does not match its MAC' : 'has no MAC'}: it was edited or inserted outside Custos, so it is not obeyed. Run \`custos audit verify\`, then restore the database from a backup.`,
      { tag: 'row_mac' },
    );
  }

  private macOf(table: ProtectedTable, pk: string, bytes: Uint8Array): Buffer | null {
    return this.auth ? Buffer.from(this.auth.mac(table, pk, bytes)) : null;
  }

  private remacKey(id: string): void {
    const r = this.stmt('SELECT * FROM keys WHERE id = ?').get(id) as KeyRow | undefined;
    if (r) this.stmt('UPDATE keys SET mac = ? WHERE id = ?').run(this.macOf('keys', id, keyRowBytes(toKey(r))), id);
  }

  private remacWatermark(keyId: string, chainId: string): void {
    const r = this.stmt('SELECT * FROM watermarks WHERE key_id = ? AND chain_id = ?').get(keyId, chainId) as WatermarkRow | undefined;
    if (r) this.stmt('UPDATE watermarks SET mac = ? WHERE key_id = ? AND chain_id = ?').run(this.macOf('watermarks', watermarkPk(keyId, chainId), watermarkRowBytes(keyId, chainId, toWatermark(r))), keyId, chainId);
  }

  /** Writes a meta value (null removes it) with its MAC; returns +1, -1 or 0 for the count. */
  private writeMeta(name: string, value: string | null): number {
    const existed = !!this.stmt('SELECT 1 FROM meta WHERE name = ?').get(name);
    if (value === null) {
      this.stmt('DELETE FROM meta WHERE name = ?').run(name);
      return existed && isCountedMeta(name) ? -1 : 0;
    }
    const mac = isProtectedMeta(name) ? this.macOf('meta', name, metaRowBytes(name, value)) : null;
    this.stmt('INSERT INTO meta(name, value, mac) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value, mac = excluded.mac').run(name, value, mac);
    return !existed && isCountedMeta(name) ? 1 : 0;
  }

  private readMeta(name: string): string | null {
    const r = this.stmt('SELECT value, mac FROM meta WHERE name = ?').get(name) as { value: string; mac: Buffer | null } | undefined;
    if (!r) return null;
    if (isProtectedMeta(name)) this.checkRow('meta', name, metaRowBytes(name, r.value), r.mac);
    return r.value;
  }

  private countOf(table: CountedTable): number {
    const sql = table === 'meta' ? `SELECT count(*) AS n FROM meta WHERE ${COUNTED_META_SQL}` : `SELECT count(*) AS n FROM ${table}`;
    return (this.stmt(sql).get() as { n: number }).n;
  }

  private storedCount(table: CountedTable): number {
    const v = this.readMeta(COUNT_PREFIX + table);
    return v === null ? 0 : Number(v);
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
    this.auth.alarm(table, '*', 'count_mismatch');
    throw new CustosError(
      'database_corrupt',
      `The ${table} table of ${this.path} holds ${actual} protected rows where Custos wrote ${stored}: rows were ${actual < stored ? 'deleted' : 'inserted'} outside Custos, so none of its state is trusted. Run \`custos audit verify\`, then restore the database from a backup.`,
      { tag: 'row_count' },
    );
  }

  private applyCounts(deltas: Map<CountedTable, number>): void {
    if (!this.auth) return;
    for (const [table, d] of deltas) {
      if (d === 0) continue;
      this.writeMeta(COUNT_PREFIX + table, String(this.storedCount(table) + d));
    }
  }

  // ---- meta ---------------------------------------------------------------------------------

  async getMeta(name: string): Promise<string | null> {
    // One read transaction: the row and, when it is absent, the count are one snapshot, so a
    // commit by another process in between is never mistaken for a deleted row.
    return this.run(() =>
      this.db.transaction(() => {
        const v = this.readMeta(name);
        if (v === null && isCountedMeta(name)) this.checkCount('meta');
        return v;
      })(),
    );
  }

  async listMeta(prefix: string): Promise<Array<{ name: string; value: string }>> {
    // A range scan on the primary key, not LIKE: prefixes may contain % or _.
    return this.run(() =>
      (this.stmt('SELECT name, value, mac FROM meta WHERE name >= ? AND name < ? ORDER BY name').all(prefix, prefix + '\uffff') as Array<{ name: string; value: string; mac: Buffer | null }>).map((r) => {
        if (isProtectedMeta(r.name)) this.checkRow('meta', r.name, metaRowBytes(r.name, r.value), r.mac);
        return { name: r.name, value: r.value };
      }),
    );
  }

  async initMeta(values: Record<string, string>): Promise<boolean> {
    return this.run(() =>
      this.db.transaction(() => {
        const exists = this.stmt('SELECT 1 FROM meta WHERE name = ?');
        if (Object.keys(values).some((k) => exists.get(k))) return false;
        const deltas = new Map<CountedTable, number>([['meta', 0]]);
        for (const [k, v] of Object.entries(values)) deltas.set('meta', deltas.get('meta')! + this.writeMeta(k, v));
        this.applyCounts(deltas);
        return true;
      }).immediate(),
    );
  }

  async setMeta(name: string, value: string | null): Promise<void> {
    this.run(() =>
      this.db.transaction(() => {
        this.applyCounts(new Map([['meta', this.writeMeta(name, value)]]));
      }).immediate(),
    );
  }

  // ---- keys and tokens ------------------------------------------------------------------------

  private checkedKey(r: KeyRow): KeyRecord {
    const k = toKey(r);
    this.checkRow('keys', k.id, keyRowBytes(k), r.mac);
    return k;
  }

  async findKey(ref: string): Promise<KeyRecord | null> {
    return this.run(() => {
      const r = this.stmt('SELECT * FROM keys WHERE id = ? OR label = ? ORDER BY id = ? DESC LIMIT 1').get(ref, ref, ref) as KeyRow | undefined;
      return r ? this.checkedKey(r) : null;
    });
  }

  /**
   * Every key; one whose row fails its MAC is returned with `tampered: true` (and the alarm
   * raised) so that a listing shows it, while every use of it is refused.
   */
  async listKeys(): Promise<Array<KeyRecord & { tampered?: true }>> {
    return this.run(() =>
      (this.stmt('SELECT * FROM keys ORDER BY created_at, id').all() as KeyRow[]).map((r) => {
        try {
          return this.checkedKey(r);
        } catch (e) {
          if (e instanceof CustosError && e.tag === 'row_mac') return { ...toKey(r), tampered: true as const };
          throw e;
        }
      }),
    );
  }

  async listTokens(): Promise<ApiToken[]> {
    return this.run(() =>
      (this.stmt('SELECT * FROM api_tokens ORDER BY created_at, id').all() as TokenRow[]).map((r) => {
        const t = toToken(r);
        this.checkRow('api_tokens', t.id, tokenRowBytes(t), r.mac);
        return t;
      }),
    );
  }

  async findToken(hash: Uint8Array): Promise<ApiToken | null> {
    return this.run(() => {
      const r = this.stmt('SELECT * FROM api_tokens WHERE hash = ?').get(Buffer.from(hash)) as TokenRow | undefined;
      if (!r) return null;
      const t = toToken(r);
      // A token row inserted with SQL (an attacker's own admin token) has no valid MAC.
      this.checkRow('api_tokens', t.id, tokenRowBytes(t), r.mac);
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
            .stmt('INSERT INTO keys (id, label, algorithm, public_key, state, exportable, origin, version, created_at, updated_at, sealed, attributes, mac) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)')
            .run(k.id, k.label, k.algorithm, Buffer.from(k.publicKey), k.state, k.exportable ? 1 : 0, k.origin, k.version, k.createdAt, k.updatedAt, k.sealed ? Buffer.from(k.sealed) : null, canonicalJson(k.attributes), this.macOf('keys', k.id, keyRowBytes(k)));
        } catch (e) {
          if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' || (e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
            throw new CustosError('label_taken', `A key labelled "${k.label}" already exists (labels stay reserved after a key is destroyed); choose another label.`);
          }
          throw e;
        }
        return ['keys', 1];
      }
      case 'setKeyState': {
        this.currentKeyRow(m.id);
        const r = this.stmt("UPDATE keys SET state = ?, updated_at = ? WHERE id = ? AND state != 'destroyed'").run(m.state, m.updatedAt, m.id);
        if (r.changes !== 1) throw new CustosError('key_destroyed', 'The key was destroyed; its state can no longer change.');
        this.remacKey(m.id);
        return null;
      }
      case 'destroyKey': {
        this.currentKeyRow(m.id);
        // Overwrite in place first, then drop: with secure_delete the freed bytes are zeroed too.
        this.stmt('UPDATE keys SET sealed = zeroblob(length(sealed)) WHERE id = ? AND sealed IS NOT NULL').run(m.id);
        const r = this.stmt("UPDATE keys SET sealed = NULL, state = 'destroyed', updated_at = ? WHERE id = ? AND state != 'destroyed'").run(m.updatedAt, m.id);
        if (r.changes !== 1) throw new CustosError('key_destroyed', 'The key was already destroyed.');
        this.remacKey(m.id);
        return null;
      }
      case 'rewrapKey': {
        const cur = this.currentKeyRow(m.id);
        if (!cur || cur.state === 'destroyed') throw new CustosError('key_destroyed', 'The key was destroyed; it can no longer change.');
        if (cur.version !== m.expectedVersion) throw new CustosError('storage_unavailable', 'The key changed while this request was decided (another process?); retry.', { tag: 'key_moved' });
        this.stmt('UPDATE keys SET attributes = ?, sealed = ?, version = ?, updated_at = ? WHERE id = ?').run(canonicalJson(m.attributes), Buffer.from(m.sealed), m.version, m.updatedAt, m.id);
        this.remacKey(m.id);
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
        const w: Watermark = m.next;
        this.stmt(
          'INSERT INTO watermarks (key_id, chain_id, height, round, step, sign_bytes, signature, mac) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(key_id, chain_id) DO UPDATE SET height = excluded.height, round = excluded.round, step = excluded.step, sign_bytes = excluded.sign_bytes, signature = excluded.signature, mac = excluded.mac',
        ).run(m.keyId, m.chainId, w.height.toString(), w.round, w.step, Buffer.from(w.signBytes), w.signature ? Buffer.from(w.signature) : null, this.macOf('watermarks', watermarkPk(m.keyId, m.chainId), watermarkRowBytes(m.keyId, m.chainId, w)));
        return cur === null ? ['watermarks', 1] : null;
      }
      case 'assertKeyActive': {
        const r = this.currentKeyRow(m.id);
        if (!r || r.state === 'destroyed') throw new CustosError('key_destroyed', 'The key was destroyed while this request was in progress; nothing was signed.');
        if (r.state !== 'active') throw new CustosError('key_disabled', 'The key was disabled while this request was in progress; nothing was signed.');
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
        this.stmt('INSERT INTO api_tokens (id, name, hash, role, created_at, mac) VALUES (?,?,?,?,?,?)').run(t.id, t.name, Buffer.from(t.hash), t.role, t.createdAt, this.macOf('api_tokens', t.id, tokenRowBytes(t)));
        return ['api_tokens', 1];
      }
    }
  }

  /** The key row as stored, its MAC checked: a decision never rests on an edited state. */
  private currentKeyRow(id: string): KeyRecord | null {
    const r = this.stmt('SELECT * FROM keys WHERE id = ?').get(id) as KeyRow | undefined;
    return r ? this.checkedKey(r) : null;
  }

  private readWatermark(keyId: string, chainId: string): Watermark | null {
    const r = this.stmt('SELECT * FROM watermarks WHERE key_id = ? AND chain_id = ?').get(keyId, chainId) as WatermarkRow | undefined;
    if (!r) {
      // No watermark: a first vote, or a deleted row (which would allow any vote): the count tells.
      this.checkCount('watermarks');
      return null;
    }
    const w = toWatermark(r);
    this.checkRow('watermarks', watermarkPk(keyId, chainId), watermarkRowBytes(keyId, chainId, w), r.mac);
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
        this.checkRow('watermarks', watermarkPk(r.key_id, r.chain_id), watermarkRowBytes(r.key_id, r.chain_id, w), r.mac);
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
    const batch = this.db.transaction(() => {
      let head = this.readHead();
      for (const unit of units) {
        const before = head;
        try {
          // A nested transaction is a SAVEPOINT: a failing unit rolls back alone.
          this.db.transaction(() => {
            for (const m of unit.mutations) {
              const c = this.applyMutation(m);
              // Counted at once, inside the unit's savepoint: a later unit of the same batch
              // that finds a row absent compares against a count that includes this one.
              if (c && c[1] !== 0) this.applyCounts(new Map([c]));
            }
            for (const d of unit.audit) {
              const seq = head.seq + 1;
              const hash = chain(head, seq, ts, d);
              insert.run(seq, ts, d.requestId, d.principal, d.operation, d.keyId, d.keyLabel, d.outcome, d.reason, canonicalJson(d.details), Buffer.from(head.hash), Buffer.from(hash), this.macOf('audit', String(seq), auditRowBytes(seq, hash)));
              head = { seq, hash };
            }
          })();
          results.push(null);
        } catch (e) {
          head = before;
          const code = (e as { code?: string }).code ?? '';
          // Storage failures abort the whole batch; a unit's own conflict rolls back only that unit.
          if (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_FULL' || code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') throw e;
          // A tampered row aborts the batch too: nothing is committed on top of it.
          if (e instanceof CustosError && e.code === 'database_corrupt') throw e;
          results.push(e instanceof CustosError ? e : storageError(e, this.path));
        }
      }
    });
    this.run(() => batch.immediate());
    return results;
  }

  async auditHead(): Promise<ChainHead> {
    return this.run(() => this.readHead());
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
  private *protectedRows(table: CountedTable): Generator<{ pk: string; bytes: Uint8Array; mac: Buffer | null }> {
    switch (table) {
      case 'keys':
        for (const r of this.db.prepare('SELECT * FROM keys ORDER BY id').iterate() as IterableIterator<KeyRow>) yield { pk: r.id, bytes: keyRowBytes(toKey(r)), mac: r.mac };
        return;
      case 'api_tokens':
        for (const r of this.db.prepare('SELECT * FROM api_tokens ORDER BY id').iterate() as IterableIterator<TokenRow>) yield { pk: r.id, bytes: tokenRowBytes(toToken(r)), mac: r.mac };
        return;
      case 'watermarks':
        for (const r of this.db.prepare('SELECT * FROM watermarks ORDER BY key_id, chain_id').iterate() as IterableIterator<WatermarkRow>) {
          yield { pk: watermarkPk(r.key_id, r.chain_id), bytes: watermarkRowBytes(r.key_id, r.chain_id, toWatermark(r)), mac: r.mac };
        }
        return;
      case 'meta':
        for (const r of this.db.prepare(`SELECT name, value, mac FROM meta WHERE ${COUNTED_META_SQL} ORDER BY name`).iterate() as IterableIterator<{ name: string; value: string; mac: Buffer | null }>) {
          yield { pk: r.name, bytes: metaRowBytes(r.name, r.value), mac: r.mac };
        }
        return;
    }
  }

  async sealRows(): Promise<number> {
    const auth = this.auth;
    if (!auth) throw new CustosError('internal', 'Rows can only be sealed by an unsealed vault.');
    return this.run(() =>
      this.db.transaction(() => {
        let n = 0;
        for (const table of COUNTED_TABLES) {
          // Collected first: the rows are updated while iterating otherwise.
          const rows = [...this.protectedRows(table)];
          for (const r of rows) {
            const mac = Buffer.from(auth.mac(table, r.pk, r.bytes));
            if (table === 'keys') this.stmt('UPDATE keys SET mac = ? WHERE id = ?').run(mac, r.pk);
            else if (table === 'api_tokens') this.stmt('UPDATE api_tokens SET mac = ? WHERE id = ?').run(mac, r.pk);
            else if (table === 'meta') this.stmt('UPDATE meta SET mac = ? WHERE name = ?').run(mac, r.pk);
            else {
              const [keyId, chainId] = JSON.parse(r.pk) as [string, string];
              this.stmt('UPDATE watermarks SET mac = ? WHERE key_id = ? AND chain_id = ?').run(mac, keyId, chainId);
            }
            n++;
          }
          this.writeMeta(COUNT_PREFIX + table, String(rows.length));
        }
        const audit = this.db.prepare('SELECT seq, hash FROM audit WHERE mac IS NULL ORDER BY seq').all() as Array<{ seq: number; hash: Buffer }>;
        for (const a of audit) this.stmt('UPDATE audit SET mac = ? WHERE seq = ?').run(Buffer.from(auth.mac('audit', String(a.seq), auditRowBytes(a.seq, u8(a.hash)))), a.seq);
        this.stmt("UPDATE meta SET value = ? WHERE name = 'schema_version'").run(String(SCHEMA_VERSION));
        return n + audit.length;
      }).immediate(),
    );
  }

  async adoptSealedEntries(isSealedEntry: (e: AuditEntry) => boolean): Promise<number> {
    const auth = this.auth;
    if (!auth) throw new CustosError('internal', 'Entries can only be adopted by an unsealed vault.');
    return this.run(() =>
      this.db.transaction(() => {
        let n = 0;
        for (const r of this.db.prepare('SELECT * FROM audit WHERE mac IS NULL ORDER BY seq').all() as AuditRow[]) {
          if (!isSealedEntry(toAudit(r))) continue;
          this.stmt('UPDATE audit SET mac = ? WHERE seq = ?').run(Buffer.from(auth.mac('audit', String(r.seq), auditRowBytes(r.seq, u8(r.hash)))), r.seq);
          n++;
        }
        return n;
      }).immediate(),
    );
  }

  async checkRows(): Promise<string[]> {
    const auth = this.auth;
    if (!auth) throw new CustosError('internal', 'Rows can only be checked by an unsealed vault.');
    return this.run(() =>
      this.db.transaction(() => {
        const problems: string[] = [];
        for (const table of COUNTED_TABLES) {
          let n = 0;
          for (const r of this.protectedRows(table)) {
            n++;
            if (!auth.check(table, r.pk, r.bytes, r.mac ? u8(r.mac) : null)) {
              auth.alarm(table, r.pk, r.mac ? 'mac_mismatch' : 'mac_missing');
              if (problems.length < 20) problems.push(`${TABLE_NOUN[table]} ${printable(r.pk, 80)}: ${r.mac ? 'does not match its MAC (edited outside Custos)' : 'has no MAC (inserted outside Custos)'}`);
            }
          }
          const countRow = this.stmt('SELECT value, mac FROM meta WHERE name = ?').get(COUNT_PREFIX + table) as { value: string; mac: Buffer | null } | undefined;
          if (!countRow) {
            problems.push(`the count of ${table} rows is missing (deleted outside Custos)`);
            continue;
          }
          if (!auth.check('meta', COUNT_PREFIX + table, metaRowBytes(COUNT_PREFIX + table, countRow.value), countRow.mac)) {
            auth.alarm('meta', COUNT_PREFIX + table, 'mac_mismatch');
            problems.push(`the count of ${table} rows does not match its MAC (edited outside Custos)`);
          } else if (Number(countRow.value) !== n) {
            auth.alarm(table, '*', 'count_mismatch');
            problems.push(`the ${table} table holds ${n} protected rows where Custos wrote ${countRow.value}: rows were ${n < Number(countRow.value) ? 'deleted' : 'inserted'} outside Custos`);
          }
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
