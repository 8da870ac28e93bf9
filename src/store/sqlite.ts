/**
 * SQLite store (better-sqlite3), the embedded default: WAL with synchronous=FULL, so a commit
 * is on disk when `commit` resolves (SQLite's documentation: FULL syncs the WAL on every
 * commit). All writes use BEGIN IMMEDIATE so that two processes on one file serialise instead
 * of deadlocking. The logic is engine.ts's; this driver runs it synchronously, so a
 * transaction is one uninterrupted piece of JavaScript.
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, openSync } from 'node:fs';
import { CustosError } from '../core/errors.js';
import { SqlStore, MAC_TABLES, WSEQ_TABLES, INTEGRITY_ROW_SQL, type Dialect, type TxMode } from './engine.js';
import { runSync, type Q, type Statement } from './sql.js';
import { INDEXED_ATTRIBUTES } from './store.js';

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
-- Versioned objects (Lightning channel state): the latest version of each, as decimal text (u64).
CREATE TABLE IF NOT EXISTS objects (
  key_id TEXT NOT NULL,
  object_id TEXT NOT NULL,
  version TEXT NOT NULL,
  record BLOB NOT NULL,
  record_sha256 TEXT NOT NULL,
  mac BLOB,
  wseq INTEGER,
  PRIMARY KEY (key_id, object_id)
) STRICT;
CREATE TABLE IF NOT EXISTS row_writes (
  wseq INTEGER PRIMARY KEY,
  tbl TEXT NOT NULL,
  pk TEXT NOT NULL,
  deleted INTEGER NOT NULL,
  mac BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  seq INTEGER PRIMARY KEY,
  hash BLOB NOT NULL,
  ts TEXT NOT NULL,
  signature BLOB NOT NULL
) STRICT;
`;

const code = (e: unknown): string => (e as { code?: string }).code ?? '';

const SQLITE: Dialect = {
  zeroSealed: 'UPDATE keys SET sealed = zeroblob(length(sealed)) WHERE id = ? AND sealed IS NOT NULL',
  expiringKeys: "SELECT * FROM keys WHERE json_extract(attributes, '$.expires_at') IS NOT NULL AND state != 'destroyed'",
  isUniqueViolation: (e) => code(e) === 'SQLITE_CONSTRAINT_UNIQUE' || code(e) === 'SQLITE_CONSTRAINT_PRIMARYKEY',
  isFatal: (e) => code(e).startsWith('SQLITE_IOERR') || code(e) === 'SQLITE_FULL' || code(e).startsWith('SQLITE_CORRUPT') || code(e) === 'SQLITE_NOTADB',
  triggers: "SELECT name FROM sqlite_master WHERE type = 'trigger' LIMIT 1",
  attribute: (name) => `json_extract(attributes, '$."${name}"')`,
  tableExists: "SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = ?",
  roundTrips: false,
};

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

export class SqliteStore extends SqlStore {
  readonly kind = 'sqlite';
  protected readonly dialect = SQLITE;
  private db: Database.Database;

  private constructor(readonly path: string, db: Database.Database) {
    super();
    this.db = db;
    this.inTx = db.transaction((q: () => Q<unknown>) => runSync(q(), this.exec));
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

  private readonly exec = (s: Statement): unknown => {
    const st = this.stmt(s.sql);
    if (s.op === 'get') return st.get(...s.params);
    if (s.op === 'all') return st.all(...s.params);
    return st.run(...s.params).changes;
  };

  private run<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw storageError(e, this.path);
    }
  }

  /**
   * Runs a piece of logic in a transaction: made once per connection, since better-sqlite3
   * builds four wrappers and their properties at every `db.transaction()`.
   */
  private readonly inTx: Database.Transaction<(q: () => Q<unknown>) => unknown>;

  protected async transact<T>(q: () => Q<T>, mode: TxMode, onCommit?: () => void): Promise<T> {
    return this.run(() => {
      if (mode === 'statement') return runSync(q(), this.exec);
      // A snapshot is a deferred (read) transaction: WAL gives it one consistent view.
      const out = (mode === 'write' ? this.inTx.immediate(q) : this.inTx(q)) as T;
      onCommit?.();
      return out;
    });
  }

  protected unitError(e: unknown): CustosError {
    return storageError(e, this.path);
  }

  async migrate(): Promise<void> {
    this.run(() => {
      const fresh = !(this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get());
      this.db.exec(SCHEMA);
      // Schema 2 → 3: the mac and wseq columns. The version itself moves to 3 only in
      // `sealRows`, in the transaction that MACs every row, so a crash in between leaves a
      // schema-2 vault.
      for (const t of MAC_TABLES) {
        const cols = this.columns(t);
        if (!cols.includes('mac')) this.db.exec(`ALTER TABLE ${t} ADD COLUMN mac BLOB`);
        if ((WSEQ_TABLES as readonly string[]).includes(t) && !cols.includes('wseq')) this.db.exec(`ALTER TABLE ${t} ADD COLUMN wseq INTEGER`);
      }
      // keysVersion() in O(log n): front ends re-index their keys only when one changed.
      this.db.exec('CREATE INDEX IF NOT EXISTS keys_wseq ON keys(wseq)');
      // The expiry sweeper reads only keys with a lifetime (a partial index on the attribute).
      this.db.exec("CREATE INDEX IF NOT EXISTS keys_expiring ON keys(json_extract(attributes, '$.expires_at')) WHERE json_extract(attributes, '$.expires_at') IS NOT NULL AND state != 'destroyed'");
      // Principals' scopes, expiry and revocation (no schema version: an older Custos ignores the
      // column, and a row with terms fails its MAC there, so it is refused rather than obeyed unscoped).
      if (!this.columns('api_tokens').includes('terms')) this.db.exec("ALTER TABLE api_tokens ADD COLUMN terms TEXT NOT NULL DEFAULT '{}'");
      this.db.exec('CREATE INDEX IF NOT EXISTS api_tokens_wseq ON api_tokens(wseq)');
      // Lookups by public key and by indexed attribute (store.ts INDEXED_ATTRIBUTES) instead of scans.
      this.db.exec('CREATE INDEX IF NOT EXISTS keys_public ON keys(public_key)');
      for (const a of INDEXED_ATTRIBUTES) {
        const expr = SQLITE.attribute(a);
        this.db.exec(`CREATE INDEX IF NOT EXISTS "keys_attr_${a}" ON keys(${expr}) WHERE ${expr} IS NOT NULL`);
      }
      runSync(this.checkSchemaVersion(fresh), this.exec);
      runSync(this.noTriggers(), this.exec);
    });
  }

  private columns(table: string): string[] {
    return (this.db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).map((c) => c.name);
  }

  async integrityEnabled(): Promise<boolean> {
    return this.run(() => {
      const v = this.stmt("SELECT value FROM meta WHERE name='schema_version'").get() as { value: string } | undefined;
      if (!v || Number(v.value) >= 3) return true;
      // Whoever rewrote schema_version to look like an old vault still leaves these behind.
      if (this.db.prepare(INTEGRITY_ROW_SQL).get()) return true;
      for (const t of MAC_TABLES) {
        if (this.columns(t).includes('mac') && this.db.prepare(`SELECT 1 FROM ${t} WHERE mac IS NOT NULL LIMIT 1`).get()) return true;
      }
      return false;
    });
  }

  async integrityCheck(): Promise<string[]> {
    return this.run(() => {
      const rows = this.db.pragma('integrity_check') as Array<{ integrity_check: string }>;
      return rows.map((r) => r.integrity_check).filter((s) => s !== 'ok');
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
    this.forgetCheckedRows();
    if (this.db.open) this.db.close();
  }
}
