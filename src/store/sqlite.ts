/**
 * SQLite store (better-sqlite3): WAL with synchronous=FULL, so a commit is on disk when
 * `commit` resolves (SQLite's documentation: FULL syncs the WAL on every commit). All writes
 * use BEGIN IMMEDIATE so that two processes on one file serialise instead of deadlocking.
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, openSync } from 'node:fs';
import { CustosError } from '../core/errors.js';
import { canonicalJson } from '../core/canonical.js';
import type { AuditCheckpoint, AuditEntry, KeyRecord } from '../core/types.js';
import { comparePosition, GENESIS_HASH, type ApiToken, type ChainHead, type Chainer, type Store, type StateMutation, type Watermark, type WriteUnit } from './store.js';

const SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
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
  attributes TEXT NOT NULL DEFAULT '{}'
) STRICT;
CREATE TABLE IF NOT EXISTS api_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  hash BLOB NOT NULL UNIQUE,
  role TEXT NOT NULL,
  created_at TEXT NOT NULL
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
  hash BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS watermarks (
  key_id TEXT NOT NULL,
  chain_id TEXT NOT NULL,
  height TEXT NOT NULL,
  round INTEGER NOT NULL,
  step INTEGER NOT NULL,
  sign_bytes BLOB NOT NULL,
  signature BLOB,
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
  };
}


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
      const v = this.stmt("SELECT value FROM meta WHERE name='schema_version'").get() as { value: string } | undefined;
      if (!v) this.stmt("INSERT INTO meta(name, value) VALUES ('schema_version', ?)").run(String(SCHEMA_VERSION));
      else if (Number(v.value) > SCHEMA_VERSION) {
        throw new CustosError('database_corrupt', `The database ${this.path} was written by a newer Custos (schema ${v.value}); upgrade Custos.`);
      }
    });
  }

  async getMeta(name: string): Promise<string | null> {
    return this.run(() => (this.stmt('SELECT value FROM meta WHERE name = ?').get(name) as { value: string } | undefined)?.value ?? null);
  }

  async listMeta(prefix: string): Promise<Array<{ name: string; value: string }>> {
    // A range scan on the primary key, not LIKE: prefixes may contain % or _.
    return this.run(() => this.stmt('SELECT name, value FROM meta WHERE name >= ? AND name < ? ORDER BY name').all(prefix, prefix + '\uffff') as Array<{ name: string; value: string }>);
  }

  async initMeta(values: Record<string, string>): Promise<boolean> {
    return this.run(() =>
      this.db.transaction(() => {
        const exists = this.stmt('SELECT 1 FROM meta WHERE name = ?');
        if (Object.keys(values).some((k) => exists.get(k))) return false;
        const ins = this.stmt('INSERT INTO meta(name, value) VALUES (?, ?)');
        for (const [k, v] of Object.entries(values)) ins.run(k, v);
        return true;
      }).immediate(),
    );
  }

  async setMeta(name: string, value: string | null): Promise<void> {
    this.run(() => {
      if (value === null) this.stmt('DELETE FROM meta WHERE name = ?').run(name);
      else this.stmt('INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value').run(name, value);
    });
  }

  async findKey(ref: string): Promise<KeyRecord | null> {
    return this.run(() => {
      const r = this.stmt('SELECT * FROM keys WHERE id = ? OR label = ? ORDER BY id = ? DESC LIMIT 1').get(ref, ref, ref) as KeyRow | undefined;
      return r ? toKey(r) : null;
    });
  }

  async listKeys(): Promise<KeyRecord[]> {
    return this.run(() => (this.stmt('SELECT * FROM keys ORDER BY created_at, id').all() as KeyRow[]).map(toKey));
  }

  async listTokens(): Promise<ApiToken[]> {
    return this.run(() =>
      (this.stmt('SELECT id, name, hash, role, created_at FROM api_tokens ORDER BY created_at, id').all() as Array<{ id: string; name: string; hash: Buffer; role: ApiToken['role']; created_at: string }>).map((r) => ({
        id: r.id,
        name: r.name,
        hash: u8(r.hash),
        role: r.role,
        createdAt: r.created_at,
      })),
    );
  }

  async findToken(hash: Uint8Array): Promise<ApiToken | null> {
    return this.run(() => {
      const r = this.stmt('SELECT * FROM api_tokens WHERE hash = ?').get(Buffer.from(hash)) as
        | { id: string; name: string; hash: Buffer; role: 'admin'; created_at: string }
        | undefined;
      return r ? { id: r.id, name: r.name, hash: u8(r.hash), role: r.role, createdAt: r.created_at } : null;
    });
  }

  private applyMutation(m: StateMutation): void {
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
        return;
      }
      case 'setKeyState': {
        const r = this.stmt("UPDATE keys SET state = ?, updated_at = ? WHERE id = ? AND state != 'destroyed'").run(m.state, m.updatedAt, m.id);
        if (r.changes !== 1) throw new CustosError('key_destroyed', 'The key was destroyed; its state can no longer change.');
        return;
      }
      case 'destroyKey': {
        // Overwrite in place first, then drop: with secure_delete the freed bytes are zeroed too.
        this.stmt('UPDATE keys SET sealed = zeroblob(length(sealed)) WHERE id = ? AND sealed IS NOT NULL').run(m.id);
        const r = this.stmt("UPDATE keys SET sealed = NULL, state = 'destroyed', updated_at = ? WHERE id = ? AND state != 'destroyed'").run(m.updatedAt, m.id);
        if (r.changes !== 1) throw new CustosError('key_destroyed', 'The key was already destroyed.');
        return;
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
        this.stmt(
          'INSERT INTO watermarks (key_id, chain_id, height, round, step, sign_bytes, signature) VALUES (?,?,?,?,?,?,?) ON CONFLICT(key_id, chain_id) DO UPDATE SET height = excluded.height, round = excluded.round, step = excluded.step, sign_bytes = excluded.sign_bytes, signature = excluded.signature',
        ).run(m.keyId, m.chainId, m.next.height.toString(), m.next.round, m.next.step, Buffer.from(m.next.signBytes), m.next.signature ? Buffer.from(m.next.signature) : null);
        return;
      }
      case 'assertKeyActive': {
        const r = this.stmt('SELECT state FROM keys WHERE id = ?').get(m.id) as { state: string } | undefined;
        if (!r || r.state === 'destroyed') throw new CustosError('key_destroyed', 'The key was destroyed while this request was in progress; nothing was signed.');
        if (r.state !== 'active') throw new CustosError('key_disabled', 'The key was disabled while this request was in progress; nothing was signed.');
        return;
      }
      case 'compareAndSetMeta': {
        const r = this.stmt('SELECT value FROM meta WHERE name = ?').get(m.name) as { value: string } | undefined;
        if ((r?.value ?? null) !== m.expected) throw new CustosError('storage_unavailable', `The stored ${m.name.split('.')[0]} changed while this request was decided (another process?); decide again.`, { tag: 'meta_moved' });
        // value === expected is a guard only (the policy generation on every decision): no write.
        if (m.value === m.expected) return;
        if (m.value === null) this.stmt('DELETE FROM meta WHERE name = ?').run(m.name);
        else this.stmt('INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value').run(m.name, m.value);
        return;
      }
      case 'insertToken': {
        const t = m.token;
        this.stmt('INSERT INTO api_tokens (id, name, hash, role, created_at) VALUES (?,?,?,?,?)').run(t.id, t.name, Buffer.from(t.hash), t.role, t.createdAt);
        return;
      }
    }
  }

  private readWatermark(keyId: string, chainId: string): Watermark | null {
    const r = this.stmt('SELECT height, round, step, sign_bytes, signature FROM watermarks WHERE key_id = ? AND chain_id = ?').get(keyId, chainId) as
      | { height: string; round: number; step: number; sign_bytes: Buffer; signature: Buffer | null }
      | undefined;
    // Heights are int64: stored as decimal text, since SQLite integers are read into JS numbers.
    return r ? { height: BigInt(r.height), round: r.round, step: r.step, signBytes: u8(r.sign_bytes), signature: r.signature ? u8(r.signature) : null } : null;
  }

  async getWatermark(keyId: string, chainId: string): Promise<Watermark | null> {
    return this.run(() => this.readWatermark(keyId, chainId));
  }

  private readHead(): ChainHead {
    const r = this.stmt('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: Buffer } | undefined;
    return r ? { seq: r.seq, hash: u8(r.hash) } : { seq: 0, hash: GENESIS_HASH };
  }

  async commit(units: WriteUnit[], chain: Chainer, ts: string): Promise<Array<Error | null>> {
    const insert = this.stmt(
      'INSERT INTO audit (seq, ts, request_id, principal, operation, key_id, key_label, outcome, reason, details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)',
    );
    const results: Array<Error | null> = [];
    const batch = this.db.transaction(() => {
      let head = this.readHead();
      for (const unit of units) {
        const before = head;
        try {
          // A nested transaction is a SAVEPOINT: a failing unit rolls back alone.
          this.db.transaction(() => {
            for (const m of unit.mutations) this.applyMutation(m);
            for (const d of unit.audit) {
              const seq = head.seq + 1;
              const hash = chain(head, seq, ts, d);
              insert.run(seq, ts, d.requestId, d.principal, d.operation, d.keyId, d.keyLabel, d.outcome, d.reason, canonicalJson(d.details), Buffer.from(head.hash), Buffer.from(hash));
              head = { seq, hash };
            }
          })();
          results.push(null);
        } catch (e) {
          head = before;
          const code = (e as { code?: string }).code ?? '';
          // Storage failures abort the whole batch; a unit's own conflict rolls back only that unit.
          if (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_FULL' || code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') throw e;
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
