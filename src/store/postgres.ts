/**
 * PostgreSQL store (`pg`), for several Custos nodes sharing one database and for more keys
 * than one machine's file should hold. The logic is engine.ts's, the same as SQLite's: the
 * same rows, MACs, counts and state row. What differs:
 *  - Write transactions serialise on a transaction-level advisory lock, taken first: two
 *    nodes (or two connections) never interleave their writes, so the audit log stays one
 *    chain and every compare-and-set (watermarks, budgets, token rows) decides on the newest
 *    committed state. Inside the lock, READ COMMITTED sees every earlier commit.
 *  - A snapshot is a REPEATABLE READ, READ ONLY transaction.
 *  - A commit is durable when PostgreSQL says so: `synchronous_commit` (on by default, and
 *    `remote_apply`/`on` with a synchronous standby) decides what survives losing the primary.
 *  - One connection per store, used by one piece of logic at a time, like SQLite's: reads
 *    never see a transaction of this process half-done. A connection that breaks is replaced
 *    on the next use, trying every host of the URL for a writable primary; meanwhile every
 *    operation fails with a sentence (fail closed).
 *
 * URLs: `postgresql://user[:password]@host[:port][,host2[:port2]…]/database?…`. With several
 * hosts, `target_session_attrs=read-write` (the default here) picks the one that accepts
 * writes, as libpq does, so a promoted standby is found by itself. The password may instead
 * come from PGPASSWORD.
 */
import pg from 'pg';
import { CustosError } from '../core/errors.js';
import { printable } from '../core/text.js';
import { SqlStore, type Dialect, type TxMode } from './engine.js';
import { runAsync, type Q, type Statement } from './sql.js';
import { parsePostgresUrl, describePostgresUrl, type PgLocation, type PgTarget } from './postgres-url.js';

/** Text columns that are ordered or compared use the C collation: byte order, as SQLite's. */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL, mac BYTEA, wseq BIGINT);
CREATE TABLE IF NOT EXISTS keys (
  id TEXT COLLATE "C" PRIMARY KEY,
  label TEXT COLLATE "C" NOT NULL UNIQUE,
  algorithm TEXT NOT NULL,
  public_key BYTEA NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active','disabled','destroyed')),
  exportable INTEGER NOT NULL,
  origin TEXT NOT NULL,
  version INTEGER NOT NULL,
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT NOT NULL,
  sealed BYTEA,
  attributes TEXT NOT NULL DEFAULT '{}',
  mac BYTEA,
  wseq BIGINT
);
CREATE INDEX IF NOT EXISTS keys_wseq ON keys(wseq);
CREATE INDEX IF NOT EXISTS keys_expiring ON keys ((attributes::jsonb ->> 'expires_at')) WHERE (attributes::jsonb ->> 'expires_at') IS NOT NULL AND state <> 'destroyed';
CREATE INDEX IF NOT EXISTS keys_public ON keys(public_key);
CREATE INDEX IF NOT EXISTS keys_attr_ssh_socket ON keys ((attributes::jsonb ->> 'ssh.socket')) WHERE (attributes::jsonb ->> 'ssh.socket') IS NOT NULL;
CREATE INDEX IF NOT EXISTS keys_attr_pkcs11_id ON keys ((attributes::jsonb ->> 'pkcs11.id')) WHERE (attributes::jsonb ->> 'pkcs11.id') IS NOT NULL;
CREATE TABLE IF NOT EXISTS api_tokens (
  id TEXT COLLATE "C" PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  hash BYTEA NOT NULL UNIQUE,
  role TEXT NOT NULL,
  created_at TEXT COLLATE "C" NOT NULL,
  mac BYTEA,
  wseq BIGINT,
  terms TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_name ON api_tokens(name);
CREATE INDEX IF NOT EXISTS api_tokens_wseq ON api_tokens(wseq);
CREATE TABLE IF NOT EXISTS audit (
  seq BIGINT PRIMARY KEY,
  ts TEXT NOT NULL,
  request_id TEXT NOT NULL,
  principal TEXT NOT NULL,
  operation TEXT NOT NULL,
  key_id TEXT,
  key_label TEXT,
  outcome TEXT NOT NULL,
  reason TEXT,
  details TEXT NOT NULL,
  prev_hash BYTEA NOT NULL,
  hash BYTEA NOT NULL,
  mac BYTEA
);
CREATE TABLE IF NOT EXISTS watermarks (
  key_id TEXT COLLATE "C" NOT NULL,
  chain_id TEXT COLLATE "C" NOT NULL,
  height TEXT NOT NULL,
  round INTEGER NOT NULL,
  step INTEGER NOT NULL,
  sign_bytes BYTEA NOT NULL,
  signature BYTEA,
  mac BYTEA,
  wseq BIGINT,
  PRIMARY KEY (key_id, chain_id)
);
CREATE TABLE IF NOT EXISTS objects (
  key_id TEXT COLLATE "C" NOT NULL,
  object_id TEXT COLLATE "C" NOT NULL,
  version TEXT NOT NULL,
  record BYTEA NOT NULL,
  record_sha256 TEXT NOT NULL,
  mac BYTEA,
  wseq BIGINT,
  PRIMARY KEY (key_id, object_id)
);
CREATE TABLE IF NOT EXISTS row_writes (
  wseq BIGINT PRIMARY KEY,
  tbl TEXT NOT NULL,
  pk TEXT NOT NULL,
  deleted INTEGER NOT NULL,
  mac BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  seq BIGINT PRIMARY KEY,
  hash BYTEA NOT NULL,
  ts TEXT NOT NULL,
  signature BYTEA NOT NULL
);
`;

const TABLES = "'meta','keys','api_tokens','audit','watermarks','audit_checkpoints','row_writes','objects'";

/** The advisory lock every write transaction takes first ("custos" in ASCII). */
const WRITE_LOCK = '108584524705907';

const code = (e: unknown): string => String((e as { code?: unknown }).code ?? '');

const POSTGRES: Dialect = {
  // PostgreSQL keeps old row versions until VACUUM: the overwrite matters less than in SQLite,
  // but costs nothing and leaves no envelope in the newest version.
  zeroSealed: "UPDATE keys SET sealed = decode(repeat('00', length(sealed)), 'hex') WHERE id = ? AND sealed IS NOT NULL",
  expiringKeys: "SELECT * FROM keys WHERE (attributes::jsonb ->> 'expires_at') IS NOT NULL AND state <> 'destroyed'",
  attribute: (name) => `(attributes::jsonb ->> '${name}')`,
  isUniqueViolation: (e) => code(e) === '23505',
  // A constraint (class 23) or a value PostgreSQL cannot hold (class 22: a NUL character) is
  // the unit's own failure; anything else from the server or the connection is the storage's.
  isFatal: (e) => !(e instanceof CustosError) && !code(e).startsWith('23') && !code(e).startsWith('22'),
  triggers: `SELECT t.tgname AS name FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND c.relname IN (${TABLES})
    UNION ALL SELECT rulename AS name FROM pg_rules WHERE tablename IN (${TABLES}) LIMIT 1`,
  tableExists: 'SELECT 1 AS one WHERE to_regclass(?::text) IS NOT NULL',
  roundTrips: true,
};

export { parsePostgresUrl, describePostgresUrl, type PgLocation, type PgTarget };

/** int8 (counts, sequences) as JS numbers: every value Custos stores there is below 2^53. */
function parseInt8(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new CustosError('database_corrupt', `A 64-bit value (${printable(v, 30)}) is beyond what Custos writes: the database was edited outside Custos.`);
  return n;
}
const types = { getTypeParser: (oid: number, format?: 'text' | 'binary') => (oid === 20 ? parseInt8 : pg.types.getTypeParser(oid, format as 'text')) };

/** Translates `?` placeholders into `$1, $2, …` (no statement of the engine has a `?` in a literal). */
function numbered(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

export class PostgresStore extends SqlStore {
  readonly kind = 'postgres';
  readonly path: string;
  protected readonly dialect = POSTGRES;
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;
  /** Logic runs one piece at a time on the one connection. */
  private lane: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Whether `migrate` found no Custos tables and made them (what `custos init` requires). */
  createdSchema = false;
  private readonly texts = new Map<string, { name: string; text: string }>();

  private constructor(private readonly loc: PgLocation) {
    super();
    this.path = describePostgresUrl(loc);
  }

  /** Connects (to the first writable host, by default) and returns the store; fails with a sentence. */
  static async open(url: string): Promise<PostgresStore> {
    const s = new PostgresStore(parsePostgresUrl(url));
    await s.connection();
    return s;
  }

  /** The current connection, or a new one to the first host that will do. */
  private async connection(): Promise<pg.Client> {
    if (this.closed) throw new CustosError('storage_unavailable', `The store ${this.path} is closed.`);
    if (this.client) return this.client;
    this.connecting ??= this.connect().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async connect(): Promise<pg.Client> {
    const failures: string[] = [];
    for (const t of this.loc.targets) {
      const c = new pg.Client({
        host: t.host,
        port: t.port,
        ...(this.loc.user ? { user: this.loc.user } : {}),
        ...(this.loc.password !== undefined ? { password: this.loc.password } : {}),
        ...(this.loc.database ? { database: this.loc.database } : {}),
        ...(this.loc.params.application_name ? { application_name: this.loc.params.application_name } : { application_name: 'custos' }),
        connectionTimeoutMillis: Number(this.loc.params.connect_timeout ?? 5) * 1000,
        // Nothing waits for ever: a server gone silent (a partition) fails the request instead
        // of hanging it, and a node gone silent while holding the write lock loses its session
        // (and the lock) on the server after 30 s instead of blocking every other node.
        keepAlive: true,
        query_timeout: 30_000,
        statement_timeout: 30_000,
        lock_timeout: 10_000,
        idle_in_transaction_session_timeout: 30_000,
        ...(this.loc.params.sslmode && this.loc.params.sslmode !== 'disable' ? { ssl: { rejectUnauthorized: this.loc.params.sslmode === 'verify-full' || this.loc.params.sslmode === 'verify-ca' } } : {}),
        types,
      });
      // A connection that breaks later (the primary killed, a restart) is dropped here and
      // replaced on the next use; the operation in flight fails with its own error.
      c.on('error', (e) => {
        if (this.client !== c) return;
        this.client = null;
        this.lastFailure = `the connection to PostgreSQL at ${this.path} was lost (${printable(e.message, 120)}); Custos signs nothing until a writable primary answers, and reconnects by itself`;
      });
      try {
        await c.connect();
        if (this.loc.sessionAttrs === 'read-write') {
          const r = await c.query<{ ro: string }>("SELECT current_setting('transaction_read_only') AS ro");
          if (r.rows[0]?.ro !== 'off') {
            failures.push(`${t.host}:${t.port} is read-only (a standby)`);
            await c.end().catch(() => undefined);
            continue;
          }
        }
        this.client = c;
        this.lastFailure = null;
        return c;
      } catch (e) {
        failures.push(`${t.host}:${t.port}: ${printable((e as Error).message, 120)}`);
        await c.end().catch(() => undefined);
      }
    }
    this.lastFailure = `no writable PostgreSQL primary answers at ${this.path} (${failures.join('; ')})`;
    throw new CustosError(
      'storage_unavailable',
      `No writable PostgreSQL primary answers at ${this.path} (${failures.join('; ')}). Custos signs nothing until one does; it reconnects by itself on the next request.`,
      { tag: 'database_unreachable' },
    );
  }

  private async exec(c: pg.Client, s: Statement): Promise<unknown> {
    let q: pg.QueryConfig;
    if (s.params.length === 0) q = { text: s.sql };
    else {
      let t = this.texts.get(s.sql);
      if (!t) {
        // Named: prepared once per connection (pg re-prepares on a new one).
        t = { name: `custos_${this.texts.size}`, text: numbered(s.sql) };
        this.texts.set(s.sql, t);
      }
      q = { name: t.name, text: t.text, values: s.params };
    }
    const r = await c.query(q);
    if (s.op === 'get') return r.rows[0];
    if (s.op === 'all') return r.rows;
    return r.rowCount ?? 0;
  }

  /** Runs `f` alone on the connection (after whatever runs on it now). */
  private exclusive<T>(f: (c: pg.Client) => Promise<T>): Promise<T> {
    const next = this.lane.then(async () => f(await this.connection()));
    this.lane = next.catch(() => undefined);
    return next;
  }

  protected transact<T>(q: () => Q<T>, mode: TxMode, onCommit?: () => void): Promise<T> {
    return this.exclusive(async (c) => {
      const exec = (s: Statement) => this.exec(c, s);
      try {
        if (mode === 'statement') return await runAsync(q(), exec);
        // Spelled out: a server whose default is REPEATABLE READ would make writes fail on every
        // race. BEGIN and the lock go in one round trip.
        let out: T;
        try {
          // Inside the try: a failed lock (a timeout) leaves the transaction aborted, and only a
          // ROLLBACK makes the connection usable again.
          await c.query(mode === 'write' ? `BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(${WRITE_LOCK})` : 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
          out = await runAsync(q(), exec);
        } catch (e) {
          await c.query('ROLLBACK').catch(() => undefined);
          throw e;
        }
        // If the answer to COMMIT is lost (the connection dropped), whether it committed is
        // unknown: the caller is told it failed, so nothing it guarded is released.
        // COMMIT on a transaction that failed answers ROLLBACK without an error: only a COMMIT is one.
        const done = await c.query('COMMIT');
        if (done.command !== 'COMMIT') throw new CustosError('storage_unavailable', `PostgreSQL at ${this.path} rolled the transaction back instead of committing it; nothing was changed.`);
        onCommit?.();
        return out;
      } catch (e) {
        throw this.storageError(e);
      }
    });
  }

  protected unitError(e: unknown): CustosError {
    return this.storageError(e);
  }

  /** Translates PostgreSQL's failures into sentences an operator can act on. */
  private storageError(e: unknown): CustosError {
    if (e instanceof CustosError) return e;
    const c = code(e);
    const msg = printable((e as Error).message ?? String(e), 200);
    if (c.startsWith('53')) return new CustosError('storage_unavailable', `PostgreSQL at ${this.path} could not write (${c}: ${msg}: disk full or out of resources); free space, then retry. The change was not made.`, { cause: e });
    if (c === '25P02') {
      // A transaction left aborted on this connection: start again on a new one.
      this.drop();
      return new CustosError('storage_unavailable', `PostgreSQL at ${this.path} found this connection inside a failed transaction; the change was not made. Retry: Custos opens a new connection.`, { cause: e });
    }
    if (c === '25006') {
      this.drop();
      return new CustosError('storage_unavailable', `PostgreSQL at ${this.path} answered read-only (a standby, or a primary being demoted); the change was not made. Custos reconnects to the writable primary by itself.`, { cause: e, tag: 'database_unreachable' });
    }
    if (c.startsWith('22')) return new CustosError('bad_request', `PostgreSQL cannot store a value of this request (${c}: ${msg}; a NUL character, U+0000, is the usual cause); nothing was changed.`, { cause: e });
    if (c.startsWith('XX')) return new CustosError('database_corrupt', `PostgreSQL at ${this.path} reported damaged data (${c}: ${msg}); restore it from a backup. Nothing was changed.`, { cause: e });
    if (c.startsWith('28')) return new CustosError('storage_unavailable', `PostgreSQL at ${this.path} refused the login (${msg}); check the user and password of [store] url (or PGPASSWORD).`, { cause: e });
    if (c === '42P01') return new CustosError('vault_not_found', `The database ${this.path} holds no Custos vault (no Custos tables). Run \`custos init --store-url …\` first.`, { cause: e });
    if (c === '3D000') return new CustosError('storage_unavailable', `PostgreSQL at ${this.path} has no such database (${msg}); create it (createdb) or fix [store] url.`, { cause: e });
    if (c === '' || c.startsWith('08') || c.startsWith('57') || /terminat|ECONN|EPIPE|closed|timeout/i.test(msg)) {
      this.drop();
      return new CustosError('storage_unavailable', `PostgreSQL at ${this.path} stopped answering (${msg}); the change was not made, and nothing waiting on it was released. Custos reconnects by itself on the next request.`, { cause: e, tag: 'database_unreachable' });
    }
    return new CustosError('storage_unavailable', `PostgreSQL at ${this.path} failed (${c}: ${msg}); the change was not made.`, { cause: e });
  }

  /** Why the last connection was lost or could not be made; null while connected. */
  private lastFailure: string | null = null;

  health(): { ok: boolean; detail?: string } {
    if (this.client) return { ok: true };
    if (!this.closed && !this.connecting) void this.connection().catch(() => undefined);
    return { ok: false, detail: this.lastFailure ?? `connecting to PostgreSQL at ${this.path}` };
  }

  /** Forgets a connection that can no longer be trusted to be in a known state. */
  private drop(): void {
    const c = this.client;
    this.client = null;
    this.lastFailure ??= `the connection to PostgreSQL at ${this.path} failed; reconnecting`;
    c?.end().catch(() => undefined);
  }

  async migrate(): Promise<void> {
    const self = this;
    await this.exclusive(async (c) => {
      try {
        await c.query('BEGIN');
        try {
          // Two nodes starting at once create the schema one after the other.
          await c.query(`SELECT pg_advisory_xact_lock(${WRITE_LOCK})`);
          const fresh = (await c.query<{ t: string | null }>("SELECT to_regclass('meta') AS t")).rows[0]?.t == null;
          await c.query(SCHEMA);
          await runAsync(self.checkSchemaVersion(fresh), (s) => self.exec(c, s));
          await runAsync(self.noTriggers(), (s) => self.exec(c, s));
          await c.query('COMMIT');
          this.createdSchema = fresh;
        } catch (e) {
          await c.query('ROLLBACK').catch(() => undefined);
          throw e;
        }
      } catch (e) {
        throw this.storageError(e);
      }
    });
  }

  /** Every PostgreSQL vault was made with row MACs (there is no older PostgreSQL schema). */
  async integrityEnabled(): Promise<boolean> {
    return true;
  }

  /**
   * PostgreSQL checks its own pages (with data checksums on, `initdb --data-checksums`); the
   * rows themselves are checked by `checkRows`.
   */
  async integrityCheck(): Promise<string[]> {
    return [];
  }

  /**
   * Makes the space of old row versions (a destroyed key's envelope) reusable. PostgreSQL
   * does not overwrite them, and its WAL archive and base backups keep them until recycled:
   * envelopes are sealed under the root, so what stays is ciphertext.
   */
  async purgeFreed(): Promise<boolean> {
    await this.exclusive(async (c) => {
      try {
        await c.query('VACUUM keys');
      } catch (e) {
        throw this.storageError(e);
      }
    });
    return true;
  }

  async close(): Promise<void> {
    this.forgetCheckedRows();
    await this.lane;
    this.closed = true;
    // A reconnection that /healthz started may still be on its way: its connection is closed too.
    await this.connecting?.catch(() => undefined);
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => undefined);
  }
}
