/**
 * The logic every SQL store shares: rows and their MACs, write sequences, per-table counts,
 * the state row that binds the rows to the audit log, units committed in one transaction
 * with a savepoint each. Written once as statement generators (sql.ts); `SqliteStore` and
 * `PostgresStore` supply a driver (how a transaction begins, how a statement runs), the few
 * statements that differ, and the schema.
 *
 * What a store instance remembers across transactions (the newest write sequence seen per
 * row, the newest state row) is only updated when a transaction commits; what a transaction
 * in progress has seen lives in its own `Tx`, so a read running beside it never judges rows
 * by writes that are not committed yet.
 */
import { createHash } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { canonicalJson } from '../core/canonical.js';
import { bytesToHex, equalBytes, utf8 } from '../core/bytes.js';
import { printable } from '../core/text.js';
import type { AuditCheckpoint, AuditEntry, KeyRecord } from '../core/types.js';
import { comparePosition, GENESIS_HASH, type IndexedAttribute, type ApiToken, type AuditQuery, type ChainHead, type Chainer, type Store, type StateMutation, type StoredObject, type Watermark, type WriteUnit } from './store.js';
import {
  auditRowBytes,
  BOOTSTRAP_META,
  COUNT_PREFIX,
  COUNTED_TABLES,
  DIGEST_MODULUS,
  DIGEST_V1_TABLES,
  digestHex,
  elementValue,
  INTEGRITY_PREFIX,
  absenceMatters,
  isCountedMeta,
  isProtectedMeta,
  isSealedEntry,
  journalRowBytes,
  keyRowBytes,
  metaRowBytes,
  objectPk,
  objectRowBytes,
  recordSha256,
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
import { all, get, run, type Param, type Q } from './sql.js';

/**
 * 3: row MACs and write sequences (`mac`, `wseq` on every protected table), counts, the state
 * row. 4: the write journal (`row_writes`), which every process sharing the database must keep:
 * a Custos that knows only 3 refuses the database instead of writing without it. 5: versioned
 * objects (`objects`, a protected and counted table); a database of 4 gets the table at
 * `migrate`, and its count row and the version 5 from the first write with row MACs on
 * (`addNewCounts`), in one transaction.
 */
export const SCHEMA_VERSION = 5;
export const MAC_TABLES = ['keys', 'api_tokens', 'watermarks', 'meta', 'audit', 'objects'] as const;
export const WSEQ_TABLES = ['keys', 'api_tokens', 'watermarks', 'meta', 'objects'] as const;
/** The highest object version: u64::MAX (LDK's final update of a closed channel). */
const MAX_OBJECT_VERSION = (1n << 64n) - 1n;
/** The counted tables schema 5 added: a database of schema 4 has no count row for them yet. */
const SCHEMA_5_TABLES: readonly CountedTable[] = ['objects'];
/** SQL for "a counted meta row": protected, and not bookkeeping. */
const COUNTED_META_SQL = `name NOT IN (${[...BOOTSTRAP_META].map((n) => `'${n}'`).join(',')}) AND substr(name, 1, ${INTEGRITY_PREFIX.length}) != '${INTEGRITY_PREFIX}'`;
export const INTEGRITY_ROW_SQL = `SELECT 1 FROM meta WHERE substr(name, 1, ${INTEGRITY_PREFIX.length}) = '${INTEGRITY_PREFIX}' LIMIT 1`;

/** How many key rows an open remembers the write sequence of (about 100 bytes each). */
const SEEN_KEYS_AT_OPEN = 200_000;
/** Key rows this process created and has not touched since that it remembers (about 100 MB). */
const SEEN_INSERTED_KEYS = 1_000_000;
/** Rows remembered as MAC-checked, column for column (checkedRows): the hot ones, not a copy of the vault. */
const CHECKED_ROWS = 10_000;
/** How long the count of token rows is taken as known (tokensVersion). */
const TOKEN_COUNT_MS = 1000;

/**
 * The newest write sequence a process knows for each row. Every row it read or changed, or
 * that the journal says another process wrote, is kept for the life of the process. A key row
 * this process only inserted (a bulk creation makes millions) is kept among at most
 * `maxInserted`, the oldest forgotten first: such a row has no older copy that could be put
 * back (a deleted one is caught by the table's count, and ids are never reused), so forgetting
 * it loses nothing; once read or changed, it is kept like the others.
 */
export class SeenRows {
  private readonly kept = new Map<string, number>();
  private readonly inserted = new Map<string, number>();
  /**
   * The inserted rows in the order they came, as a ring: the oldest is forgotten first. (Not
   * the Map's own order: taking a Map's first key after many deletions scans every deleted slot
   * before it, which made a bulk creation of millions slow down without end.) It grows to
   * `maxInserted` as rows come: made whole at once, it cost every store ~20 ms at open.
   */
  private readonly ring: string[] = [];
  private next = 0;
  constructor(private readonly maxInserted: number) {}

  get(k: string): number | undefined {
    return this.kept.get(k) ?? this.inserted.get(k);
  }

  /** `insertedOnly`: the row's only write this process knows is its insert (a key row). */
  set(k: string, wseq: number, insertedOnly = false): void {
    if (insertedOnly && k.startsWith('keys\0') && !this.kept.has(k)) {
      if (!this.inserted.has(k)) {
        if (this.ring.length < this.maxInserted) this.ring.push(k);
        else {
          this.inserted.delete(this.ring[this.next]!);
          this.ring[this.next] = k;
          this.next = (this.next + 1) % this.maxInserted;
        }
      }
      this.inserted.set(k, wseq);
      return;
    }
    // (Its ring slot, if any, stays until reused: deleting an absent key then does nothing.)
    this.inserted.delete(k);
    this.kept.set(k, wseq);
  }

  get size(): number {
    return this.kept.size + this.inserted.size;
  }
}
/** An UPDATE of one protected row by its primary key (`SET` is completed by the caller). */
const WHERE_PK: Record<CountedTable, string> = {
  keys: 'UPDATE keys SET WHERE id = ?',
  api_tokens: 'UPDATE api_tokens SET WHERE id = ?',
  watermarks: 'UPDATE watermarks SET WHERE key_id = ? AND chain_id = ?',
  meta: 'UPDATE meta SET WHERE name = ?',
  objects: 'UPDATE objects SET WHERE key_id = ? AND object_id = ?',
};

/** The primary-key parameters of WHERE_PK for a row's `pk` (the two-column keys are JSON pairs). */
const pkParams = (table: CountedTable, pk: string): string[] => (table === 'watermarks' || table === 'objects' ? (JSON.parse(pk) as [string, string]) : [pk]);

/** Journal entries kept (about 150 bytes each); older ones are dropped every JOURNAL_PRUNE_EVERY writes. */
const JOURNAL_KEEP = 1_000_000;
const JOURNAL_PRUNE_EVERY = 10_000;
/** Journal entries per INSERT. */
const JOURNAL_BATCH = 500;
/** New keys per INSERT (14 parameters each: within SQLite's 32,766 and PostgreSQL's 65,535). */
const KEYS_PER_INSERT = 100;
/** Audit entries per INSERT (13 parameters each). */
const AUDIT_PER_INSERT = 100;

/** Rows read per statement when walking a whole table (checks, digests, sealing). */
const PAGE = 1000;
/** Object rows read per statement when walking the table: their records can be megabytes each. */
const OBJECT_PAGE = 100;

/** The state row, parsed: the audit head the rows belong to, the write counter, the digest. */
interface IntegrityState {
  seq: number;
  writes: number;
  digest: bigint;
}

/** A write transaction in progress: the state it builds and the rows it saw or wrote. */
interface Tx {
  state: IntegrityState;
  seen: Map<string, number>;
  /** Row-count changes not yet written: each count row is written once, at the end. */
  counts: Partial<Record<CountedTable, number>>;
  /** The head of the log as the transaction found it (null: not read yet). */
  head: ChainHead | null;
  /** The head entry's MAC column, as found or as this transaction wrote it (see StateSeen). */
  headMac: Buffer | null;
  /** The state row's value and MAC columns, as found or as this transaction wrote them. */
  stateRow: { value: string; mac: Buffer | null } | null;
  /** What each write sequence of this transaction went to, for the write journal. */
  journal: Array<{ wseq: number; table: string; pk: string; deleted: boolean }>;
  /** Rows of `seen` this transaction inserted and did not touch again (see SeenRows). */
  inserted: Set<string>;
}

export interface KeyRow {
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

interface MetaRow {
  name: string;
  value: string;
  mac: Buffer | null;
  wseq: number | null;
}

interface ObjectRow {
  key_id: string;
  object_id: string;
  version: string;
  /** Absent where only the hash was read (the walk of every row). */
  record?: Buffer;
  record_sha256: string;
  mac: Buffer | null;
  wseq: number | null;
}
/** The columns a walk of every object row reads: its hash, never its record. */
const OBJECT_HEAD = 'key_id, object_id, version, record_sha256, mac, wseq';

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

// Heights are int64: stored as decimal text, since SQLite integers are read into JS numbers.
const toWatermark = (r: WatermarkRow): Watermark => ({ height: BigInt(r.height), round: r.round, step: r.step, signBytes: u8(r.sign_bytes), signature: r.signature ? u8(r.signature) : null });

// Object versions are u64, stored as decimal text as Custos writes it (no sign, no leading zero).
function objectVersion(text: string): bigint | null {
  if (!/^(0|[1-9][0-9]{0,19})$/.test(text)) return null;
  const v = BigInt(text);
  return v <= MAX_OBJECT_VERSION ? v : null;
}

/**
 * The bytes an object row's MAC covers, as stored. A version that is not one Custos writes
 * gives bytes no MAC was ever computed over: the row fails its check (`row_mac`) instead of
 * failing to parse.
 */
function objectBytes(r: ObjectRow): Uint8Array {
  const v = objectVersion(r.version);
  return v === null ? utf8(JSON.stringify(['unreadable version', r.key_id, r.object_id, r.version])) : objectRowBytes(r.key_id, r.object_id, v, r.record_sha256, r.wseq);
}

const TABLE_NOUN: Record<ProtectedTable, string> = { keys: 'key', api_tokens: 'API token', watermarks: 'consensus watermark', meta: 'setting', audit: 'audit entry', row_writes: 'write journal', objects: 'object' };

/**
 * Refuses text with a lone UTF-16 surrogate: the databases store it as U+FFFD, so its MAC (or
 * its audit entry's hash), computed over the JS string, would never match again.
 */
function wellFormed(...texts: Array<string | null>): void {
  for (const t of texts) {
    if (t !== null && /\p{Cs}/u.test(t)) throw new CustosError('bad_request', 'A text of this request holds a lone UTF-16 surrogate, which cannot be stored as it is; nothing was changed.');
  }
}

/** The one unit of a batch failed on its own: its transaction is rolled back, and this is its answer. */
class UnitFailed extends CustosError {
  constructor(readonly failure: CustosError) {
    super(failure.code, failure.message, { ...(failure.tag ? { tag: failure.tag } : {}), cause: failure });
  }
}

/**
 * A write found this process far behind the journal: it is rolled back (releasing the write
 * lock that every node shares), the journal is read in a snapshot, and the write runs again.
 */
class Behind extends CustosError {
  constructor(readonly writes: number) {
    super('storage_unavailable', 'This process is catching up with the write journal; retry.', { tag: 'catching_up' });
  }
}

/** What differs between the SQL databases beside the driver and the schema. */
export interface Dialect {
  /** Overwrites a key's sealed material in place (parameter: the key id) before it is dropped. */
  zeroSealed: string;
  /** The keys with a lifetime that are not destroyed, by the partial index the schema makes. */
  expiringKeys: string;
  /** The SQL expression of an indexed key attribute (the one its index is made on). */
  attribute(name: IndexedAttribute): string;
  /** A unique or primary-key constraint refused the statement (a label taken). */
  isUniqueViolation(e: unknown): boolean;
  /** A failure of the storage itself (disk, connection, corruption): it aborts the whole batch. */
  isFatal(e: unknown): boolean;
  /** The name of a trigger (or rule) on a Custos table, if there is any: none is ever Custos's. */
  triggers: string;
  /** A row when the table named by the parameter exists (a read-only tool may meet a database not migrated yet). */
  tableExists: string;
  /**
   * Statements cost a round trip (a database server): a key asked for by id or label is found
   * in one statement. Otherwise by two lookups on their own indexes (id, then label), which an
   * embedded database runs faster than the one statement with OR.
   */
  roundTrips: boolean;
}

/** How a driver runs a piece of logic: one statement alone, a read snapshot, or a write transaction. */
export type TxMode = 'statement' | 'snapshot' | 'write';

export abstract class SqlStore implements Store {
  abstract readonly kind: string;
  /** Where the database is, for sentences: a file, or a URL without its password. */
  abstract readonly path: string;
  protected abstract readonly dialect: Dialect;
  /**
   * Runs `q`. `write`: one transaction that no other writer, in this process or another, runs
   * beside (SQLite's BEGIN IMMEDIATE; PostgreSQL's transaction lock), committed durably before
   * `onCommit` runs and the promise resolves; rolled back on any failure. Failures come out as
   * `CustosError` sentences.
   */
  protected abstract transact<T>(q: () => Q<T>, mode: TxMode, onCommit?: () => void): Promise<T>;
  abstract migrate(): Promise<void>;
  abstract integrityEnabled(): Promise<boolean>;
  abstract integrityCheck(): Promise<string[]>;
  abstract purgeFreed(): Promise<boolean>;
  abstract close(): Promise<void>;

  private auth: RowAuthenticator | null = null;
  private chain: Chainer | null = null;

  /** `chain`: how entries are hashed (audit/chain.ts), to check what a sealed daemon appended. */
  setRowAuthenticator(auth: RowAuthenticator, chain?: Chainer): void {
    this.auth = auth;
    this.checkedRows.clear();
    this.stateSeen = null;
    this.chain = chain ?? null;
  }

  /** Schema version checks shared by every engine: run inside `migrate`'s transaction. */
  protected *checkSchemaVersion(fresh: boolean): Q<void> {
    const v = yield* get<{ value: string }>("SELECT value FROM meta WHERE name='schema_version'");
    if (!v) {
      // Only a new database has no version: in a vault's database its absence is an edit.
      if (!fresh && (yield* get("SELECT 1 FROM meta WHERE name = 'vault_id'"))) {
        throw new CustosError('database_corrupt', `The database ${this.path} has no schema_version row: it was edited outside Custos. Restore it from a backup.`, { tag: 'schema' });
      }
      yield* run("INSERT INTO meta(name, value) VALUES ('schema_version', ?)", String(SCHEMA_VERSION));
    } else if (!/^[0-9]{1,6}$/.test(v.value)) {
      throw new CustosError('database_corrupt', `The database ${this.path} has an unreadable schema version (${printable(v.value, 20)}): it was edited outside Custos. Restore it from a backup.`, { tag: 'schema' });
    } else if (Number(v.value) > SCHEMA_VERSION) {
      throw new CustosError('database_corrupt', `The database ${this.path} was written by a newer Custos (schema ${v.value}; this one knows up to ${SCHEMA_VERSION}); upgrade Custos.`, { tag: 'schema_newer' });
    } else if (v.value === '3' || v.value === '4') {
      // 3 → 4: the journal table was just made (empty: it starts at each process's open).
      if (v.value === '3') yield* run("UPDATE meta SET value = '4' WHERE name = 'schema_version'");
      // 4 → 5: the objects table was just made, empty. Its count row must be MACed, and this
      // runs before the root key is given: the first write with row MACs on writes it and moves
      // the version to 5, in one transaction (`addNewCounts`). Until then the version stays 4
      // (a Custos of schema 4 still opens the database) and the missing count reads as 0.
      this.newCounts = [...SCHEMA_5_TABLES];
    }
  }

  /**
   * Counted tables this process found new at `migrate` (the database was of schema 4): their
   * count rows are not written yet. Emptied when a write commits them (or finds them written).
   */
  private newCounts: CountedTable[] = [];

  /**
   * Whether the count row of `table`, found missing, is one an upgrade has not written yet (so
   * the count is 0) rather than one deleted: this process's own `migrate` found schema 4 (its
   * open then checked every row against the state row's digest, which a deleted object row
   * changes), it has never seen the count row (not written, not read, not in the journal),
   * and the database still says schema 4.
   */
  private *countPending(cx: Tx | null, table: CountedTable): Q<boolean> {
    if (!this.newCounts.includes(table) || this.seenOf(cx, `meta\0${COUNT_PREFIX}${table}`) !== undefined) return false;
    return (yield* get<{ value: string }>("SELECT value FROM meta WHERE name = 'schema_version'"))?.value === '4';
  }

  /**
   * Finishes an upgrade from schema 4 in a write transaction: the count rows of the tables schema
   * 5 added (0: the tables were made empty, and a row Custos writes there needs this count
   * first), and the version 5. Nothing when another process did it already.
   */
  private *addNewCounts(cx: Tx): Q<void> {
    const v = (yield* get<{ value: string }>("SELECT value FROM meta WHERE name = 'schema_version'"))?.value;
    if (v !== '4') return;
    for (const table of this.newCounts) {
      if (!(yield* get('SELECT 1 FROM meta WHERE name = ?', COUNT_PREFIX + table))) yield* this.writeMeta(cx, COUNT_PREFIX + table, '0');
    }
    yield* run("UPDATE meta SET value = ? WHERE name = 'schema_version'", String(SCHEMA_VERSION));
  }

  // ---- integrity: row MACs, write sequences, the state row --------------------------------

  /** Highest write sequence seen per row by this process: a row never goes back to an older copy. */
  private readonly seen = new SeenRows(SEEN_INSERTED_KEYS);
  /**
   * The newest state row this process has seen or written: the state row never goes back
   * either (a log cut together with an older state row and older rows, under a running vault).
   */
  private stateMark: { seq: number; writes: number; hash: Uint8Array | null } | null = null;

  private seenOf(cx: Tx | null, k: string): number | undefined {
    const p = cx?.seen.get(k);
    const c = this.seen.get(k);
    return p === undefined ? c : c === undefined ? p : Math.max(p, c);
  }

  /**
   * Remembers a row's write sequence: in the transaction's own map while one is in progress
   * (applied to the store's only when it commits: a write rolled back must not be remembered,
   * or the row it never changed would then look older than itself), else at once.
   */
  private remember(cx: Tx | null, k: string, wseq: number): void {
    // Read or written again: no longer a row only inserted (seal marks an insert after this).
    cx?.inserted.delete(k);
    const target = cx?.seen ?? this.seen;
    const cur = target.get(k);
    // Set even when not newer: a row read is kept from now on (SeenRows).
    target.set(k, cur === undefined || wseq > cur ? wseq : cur);
  }

  private corrupt(table: ProtectedTable, pk: string, problem: string, sentence: string, tag: string): CustosError {
    this.auth?.alarm(table, pk, problem);
    return new CustosError('database_corrupt', `${sentence} Run \`custos audit verify\`, then restore the database from a backup.`, { tag });
  }

  /**
   * Copies of rows whose MAC this process has checked, every column as read, by table and
   * primary key. A row's check is a function of its columns alone, so a row read again exactly
   * as it was (a key or a token at every request, a watermark at every vote) is not hashed
   * again; any column changed, and it is. Whether it is an older copy of itself is checked
   * every time. Bounded (CHECKED_ROWS, then started again); holds nothing secret (sealed
   * envelopes, token hashes, MACs); a row rewritten or deleted is dropped (`seal`).
   */
  private readonly checkedRows = new Map<string, Record<string, unknown>>();

  /**
   * checkRow, skipping the MAC when these very columns were checked before. `row` must be the
   * row exactly as read (every column the MAC's `bytes` are made from, and nothing made up), and
   * `pk` its primary key; `remember`: false for rows read by a listing, which would only push
   * the hot rows out.
   */
  private checkRowOnce(cx: Tx | null, table: ProtectedTable, pk: string, row: { mac: Buffer | null; wseq: number | null }, bytes: () => Uint8Array, remember = true): void {
    if (!this.auth) return;
    const k = `${table}\0${pk}`;
    const before = this.checkedRows.get(k);
    if (before !== undefined && sameColumns(before, row)) {
      this.checkFresh(cx, table, pk, row.wseq);
      return;
    }
    this.checkRow(cx, table, pk, bytes(), row.mac, row.wseq);
    if (!remember) return;
    const copy = copyColumns(row);
    if (!copy) return;
    // Full: start again (dropping the oldest one by one is slow in a Map this size).
    if (this.checkedRows.size >= CHECKED_ROWS) this.checkedRows.clear();
    this.checkedRows.set(k, copy);
  }

  /** Forgets every row checked (the store closes; its authenticator may be wiped next). */
  protected forgetCheckedRows(): void {
    this.checkedRows.clear();
    this.stateSeen = null;
  }

  /** Refuses a row whose MAC does not match, or that is older than one this process has seen. */
  private checkRow(cx: Tx | null, table: ProtectedTable, pk: string, bytes: Uint8Array, mac: Buffer | null, wseq: number | null): void {
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
    this.checkFresh(cx, table, pk, wseq);
  }

  /** Refuses a row older than one this process has seen (put back outside Custos), and remembers it. */
  private checkFresh(cx: Tx | null, table: ProtectedTable, pk: string, wseq: number | null): void {
    const k = `${table}\0${pk}`;
    const before = this.seenOf(cx, k);
    if (wseq === null || (before !== undefined && wseq < before)) {
      throw this.corrupt(table, pk, 'replayed', `The ${TABLE_NOUN[table]} row ${printable(pk, 80)} in ${this.path} is an older copy of itself (write ${wseq ?? 'none'}, after write ${before} was seen): it was put back outside Custos, so it is not obeyed.`, 'row_replayed');
    }
    this.remember(cx, k, wseq);
  }

  /**
   * For a protected row about to be written as `bytes(wseq)` (or, with null, deleted) in this
   * transaction: its next write sequence and its MAC, to be written in the same statement, and
   * the digest moved from its old element to its new one. The MAC covers the bytes Custos
   * means to write, never what reads back: whatever changes them on the way (a trigger, a
   * rule) leaves a row that fails its MAC at the next read, instead of one MACed as ours.
   */
  private seal(cx: Tx | null, table: CountedTable | 'bookkeeping', pk: string, before: Uint8Array | null, bytes: ((wseq: number) => Uint8Array) | null): { wseq: number | null; mac: Buffer | null } {
    const auth = this.auth;
    if (!auth || !cx) return { wseq: null, mac: null };
    const macTable: ProtectedTable = table === 'bookkeeping' ? 'meta' : table;
    let out: { wseq: number | null; mac: Buffer | null } = { wseq: null, mac: null };
    let after: Uint8Array | null = null;
    if (bytes || before) {
      // A deletion takes a write sequence too: the journal then says the row is gone, and an
      // old copy put back is refused like any older row.
      const wseq = ++cx.state.writes;
      if (bytes) {
        after = bytes(wseq);
        out = { wseq, mac: Buffer.from(auth.mac(macTable, pk, after)) };
      }
      const k = `${macTable}\0${pk}`;
      // The copy checked before is of a row now rewritten or gone: not kept (a destroyed key's envelope).
      this.checkedRows.delete(k);
      this.remember(cx, k, wseq);
      if (before === null && bytes) cx.inserted.add(k);
      cx.journal.push({ wseq, table: macTable, pk, deleted: !bytes });
    }
    if (table === 'bookkeeping') return out;
    let d = cx.state.digest;
    if (before) d -= elementValue(auth.element(macTable, pk, before));
    if (after) d += elementValue(auth.element(macTable, pk, after));
    cx.state.digest = ((d % DIGEST_MODULUS) + DIGEST_MODULUS) % DIGEST_MODULUS;
    return out;
  }

  /** Gives an existing row (as stored) its write sequence and MAC: `sealRows`, upgrading a database. */
  private *sealStored(cx: Tx | null, table: CountedTable, pk: string): Q<void> {
    let bytes: ((w: number) => Uint8Array) | null = null;
    switch (table) {
      case 'keys': {
        const r = yield* get<KeyRow>('SELECT * FROM keys WHERE id = ?', pk);
        if (r) bytes = (w) => keyRowBytes(toKey(r), w);
        break;
      }
      case 'api_tokens': {
        const r = yield* get<TokenRow>('SELECT * FROM api_tokens WHERE id = ?', pk);
        if (r) bytes = (w) => tokenRowBytes(toToken(r), w);
        break;
      }
      case 'watermarks': {
        const [keyId, chainId] = JSON.parse(pk) as [string, string];
        const r = yield* get<WatermarkRow>('SELECT * FROM watermarks WHERE key_id = ? AND chain_id = ?', keyId, chainId);
        if (r) bytes = (w) => watermarkRowBytes(keyId, chainId, toWatermark(r), w);
        break;
      }
      case 'meta': {
        const r = yield* get<{ value: string }>('SELECT value FROM meta WHERE name = ?', pk);
        if (r) bytes = (w) => metaRowBytes(pk, r.value, w);
        break;
      }
      case 'objects': {
        const [keyId, objectId] = JSON.parse(pk) as [string, string];
        const r = yield* get<ObjectRow>(`SELECT ${OBJECT_HEAD} FROM objects WHERE key_id = ? AND object_id = ?`, keyId, objectId);
        const v = r ? objectVersion(r.version) : null;
        // (An unreadable version cannot have been written by Custos: it stays unsealed, and fails its check.)
        if (r && v !== null) bytes = (w) => objectRowBytes(keyId, objectId, v, r.record_sha256, w);
        break;
      }
    }
    if (!bytes) return;
    const { wseq, mac } = this.seal(cx, table, pk, null, bytes);
    yield* run(WHERE_PK[table].replace('SET', 'SET wseq = ?, mac = ?'), wseq, mac, ...pkParams(table, pk));
  }

  /**
   * The state row (checked against its MAC, unless byte for byte as this process last checked
   * or wrote it: `stateSeen`) and the head of the log with its MAC, in one statement.
   */
  private *readStateAndHead(): Q<{ st: IntegrityState | null; head: ChainHead; headMac: Buffer | null; row: { value: string; mac: Buffer | null } | null; hit?: true }> {
    const r = (yield* get<{ value: string | null; mac: Buffer | null; wseq: number | null; head_seq: number | null; head_hash: Buffer | null; head_mac: Buffer | null; trigger: string | null }>(
      `SELECT m.value AS value, m.mac AS mac, m.wseq AS wseq, a.seq AS head_seq, a.hash AS head_hash, a.mac AS head_mac, (${this.dialect.triggers}) AS trigger FROM (SELECT 1 AS one) o LEFT JOIN meta m ON m.name = ? LEFT JOIN (SELECT seq, hash, mac FROM audit ORDER BY seq DESC LIMIT 1) a ON 1 = 1`,
      STATE_ROW,
    ))!;
    if (r.trigger !== null) this.refuseTrigger(r.trigger);
    // Exactly as this process last checked or wrote them: their MACs and links held then, and
    // every byte they depend on is the same (an older copy differs in its counters).
    const seen = this.stateSeen;
    const mark = this.stateMark;
    // (Anything else is checked in full, and forgotten: a copy of it put back later is not this.)
    this.stateSeen = null;
    if (
      seen &&
      // Not older than a state this process has seen since (refused below, as a replay).
      !(mark && (seen.st.writes < mark.writes || seen.st.seq < mark.seq)) &&
      r.value === seen.value &&
      r.wseq === null &&
      sameBytes(r.mac, seen.mac) &&
      r.head_seq === seen.head.seq &&
      sameBytes(r.head_hash, seen.head.hash) &&
      sameBytes(r.head_mac, seen.headMac)
    ) {
      this.stateSeen = seen;
      return { st: { ...seen.st }, head: { seq: seen.head.seq, hash: Uint8Array.from(seen.head.hash) }, headMac: r.head_mac, row: { value: r.value, mac: r.mac }, hit: true };
    }
    const head: ChainHead = r.head_seq !== null && r.head_hash !== null ? { seq: r.head_seq, hash: u8(r.head_hash) } : { seq: 0, hash: GENESIS_HASH };
    if (r.value === null) return { st: null, head, headMac: null, row: null };
    if (this.auth && !this.auth.check('meta', STATE_ROW, metaRowBytes(STATE_ROW, r.value, r.wseq), r.mac ? u8(r.mac) : null)) {
      throw this.corrupt('meta', STATE_ROW, 'mac_mismatch', `The integrity state row of ${this.path} does not match its MAC: it was edited outside Custos.`, 'row_mac');
    }
    try {
      const o = JSON.parse(r.value) as { seq: number; writes: number; digest: string };
      if (!Number.isSafeInteger(o.seq) || !Number.isSafeInteger(o.writes) || !/^[0-9a-f]{128}$/.test(o.digest)) throw new Error('shape');
      return { st: { seq: o.seq, writes: o.writes, digest: BigInt(`0x${o.digest}`) }, head, headMac: r.head_mac, row: { value: r.value, mac: r.mac } };
    } catch {
      throw this.corrupt('meta', STATE_ROW, 'unreadable', `The integrity state row of ${this.path} is unreadable.`, 'row_mac');
    }
  }

  private *writeState(st: IntegrityState): Q<{ value: string; mac: Buffer }> {
    const value = JSON.stringify({ seq: st.seq, writes: st.writes, digest: digestHex(st.digest) });
    const mac = Buffer.from(this.auth!.mac('meta', STATE_ROW, metaRowBytes(STATE_ROW, value, null)));
    yield* run('INSERT INTO meta(name, value, mac, wseq) VALUES (?, ?, ?, NULL) ON CONFLICT(name) DO UPDATE SET value = excluded.value, mac = excluded.mac, wseq = NULL', STATE_ROW, value, mac);
    return { value, mac };
  }

  /**
   * The state row and the head of the log must agree: the rows belong to the newest entry
   * (or to an entry followed only by what a sealed daemon appended), and the entry they belong
   * to carries its MAC. An entry appended with SQL, or a log cut below the rows, is refused
   * here before anything is chained onto it or checkpointed.
   */
  private *checkedState(): Q<{ st: IntegrityState; head: ChainHead; headMac: Buffer | null; row: { value: string; mac: Buffer | null } | null }> {
    const { st, head, headMac, row, hit } = yield* this.readStateAndHead();
    if (hit) {
      // (The rows are at the head entry itself: nothing was appended after it.)
      this.markState(st!, head.hash);
      return { st: st!, head, headMac, row };
    }
    if (!st) throw this.corrupt('meta', STATE_ROW, 'missing', `The integrity state row of ${this.path} is missing: it was deleted outside Custos.`, 'row_count');
    const mark = this.stateMark;
    if (mark && (st.writes < mark.writes || st.seq < mark.seq)) {
      throw this.corrupt('meta', STATE_ROW, 'replayed', `The integrity state row of ${this.path} is older than one this process has seen (write ${st.writes} at entry ${st.seq}, after write ${mark.writes} at entry ${mark.seq}): the database was put back to an older copy under the running vault.`, 'row_replayed');
    }
    if (head.seq < st.seq) {
      throw this.corrupt('audit', String(head.seq), 'truncated', `The audit log of ${this.path} ends at entry ${head.seq}, but its rows were written at entry ${st.seq}: entries were cut.`, 'audit_log');
    }
    let stHash: Uint8Array = GENESIS_HASH;
    if (st.seq > 0) {
      // Usually the rows belong to the head itself, read with the state row.
      const at = st.seq === head.seq ? { hash: Buffer.from(head.hash), mac: headMac } : yield* get<AuditRow>('SELECT * FROM audit WHERE seq = ?', st.seq);
      if (!at || !this.auth!.check('audit', String(st.seq), auditRowBytes(st.seq, u8(at.hash)), at.mac ? u8(at.mac) : null)) {
        throw this.corrupt('audit', String(st.seq), 'mac_mismatch', `Audit entry ${st.seq} of ${this.path}, the one its rows were written with, was altered.`, 'audit_log');
      }
      stHash = u8(at.hash);
    }
    // The log must still run, link by link, from the entry this process last saw the rows at to
    // the one they are at now (whose MAC was just checked): another process writing on top of
    // an older copy of the database does not make it newer, nor does putting back that one entry.
    if (mark && mark.hash && mark.seq > 0) yield* this.checkLinks(mark.seq, mark.hash, st.seq, stHash);
    if (head.seq > st.seq) {
      const at = st.seq > 0 ? yield* get<{ seq: number; hash: Buffer }>('SELECT seq, hash FROM audit WHERE seq = ?', st.seq) : undefined;
      let prev: ChainHead = at ? { seq: at.seq, hash: u8(at.hash) } : { seq: 0, hash: GENESIS_HASH };
      for (const r of yield* all<AuditRow>('SELECT * FROM audit WHERE seq > ? ORDER BY seq', st.seq)) {
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
    // Only a state that passed every check becomes what this process has seen.
    this.markState(st, stHash);
    return { st, head, headMac, row };
  }

  /** Refuses unless the entries (from, to] chain from `fromHash` to `toHash`. */
  private *checkLinks(from: number, fromHash: Uint8Array, to: number, toHash: Uint8Array): Q<void> {
    const rewritten = () => this.corrupt('audit', String(from), 'rewritten', `The audit log of ${this.path} no longer runs from entry ${from}, as this process saw it, to entry ${to}: the database was put back to an older copy and written on again. Nothing is written on top of it.`, 'row_replayed');
    if (to < from) throw rewritten();
    let prev: ChainHead = { seq: from, hash: fromHash };
    while (prev.seq < to) {
      const rows = yield* all<AuditRow>('SELECT * FROM audit WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?', prev.seq, to, PAGE);
      if (rows.length === 0) throw rewritten();
      for (const r of rows) {
        const e = toAudit(r);
        if (r.seq !== prev.seq + 1 || !equalBytes(e.prevHash, prev.hash) || (this.chain && !equalBytes(this.chain(prev, r.seq, r.ts, e), e.hash))) throw rewritten();
        prev = { seq: r.seq, hash: e.hash };
      }
    }
    if (!equalBytes(prev.hash, toHash)) throw rewritten();
  }

  /**
   * A write transaction: with row MACs on, it starts from the checked state row and ends by
   * writing it at the new head, so that every transaction binds the rows to the log.
   * `sealing` starts a state (init, upgrade).
   */
  protected async writeTx<T>(f: (cx: Tx | null) => Q<T>, sealing = false): Promise<T> {
    // Far behind (others wrote thousands of rows): read their journal outside the write lock,
    // which every node's writes wait for, then write. Twice at most; then in the lock anyway.
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.writeTxOnce(f, sealing, attempt < 2);
      } catch (e) {
        if (!(e instanceof Behind)) throw e;
        const self = this;
        await this.transact(function* () {
          yield* self.catchUp(e.writes);
        }, 'snapshot');
      }
    }
  }

  /** Journal entries a write reads under the lock; further behind, it reads them before (`Behind`). */
  protected catchUpInLock = 5_000;

  private async writeTxOnce<T>(f: (cx: Tx | null) => Q<T>, sealing: boolean, mayDefer: boolean): Promise<T> {
    let cx: Tx | null = null;
    let committed: IntegrityState | null = null;
    let upgraded = false;
    const self = this;
    return this.transact(
      function* () {
        cx = null;
        committed = null;
        upgraded = sealing;
        if (!self.auth) return yield* f(null);
        const checked = sealing ? null : yield* self.checkedState();
        const start = checked?.st ?? { seq: 0, writes: 0, digest: 0n };
        // What every other process wrote since this one last looked: each row's newest write.
        if (!sealing && mayDefer && self.journalMark !== null && start.writes - self.journalMark > self.catchUpInLock) throw new Behind(start.writes);
        if (!sealing) yield* self.catchUp(start.writes);
        const tx: Tx = { state: { ...start }, seen: new Map(), counts: {}, head: checked?.head ?? null, headMac: checked?.headMac ?? null, stateRow: checked?.row ?? null, journal: [], inserted: new Set() };
        cx = tx;
        // (Sealing writes every count and the version itself.)
        if (!sealing && self.newCounts.length > 0) {
          yield* self.addNewCounts(tx);
          upgraded = true;
        }
        const r = yield* f(tx);
        yield* self.writeCounts(tx);
        yield* self.writeJournal(tx);
        // The rows belong to the last entry this transaction wrote (its MAC is checked
        // before anything is chained onto it); with no entry, to the same one as before:
        // never to an entry a sealed daemon appended, which carries no MAC.
        const t = tx.state;
        if (sealing || t.seq !== start.seq || t.writes !== start.writes || t.digest !== start.digest) {
          if (sealing) t.seq = (yield* self.readHead()).seq;
          tx.stateRow = yield* self.writeState(t);
          committed = t;
        }
        // (Triggers were looked for with the state row, above; sealing looks now.)
        if (sealing) yield* self.noTriggers();
        return r;
      },
      'write',
      () => {
        // Committed: what it saw and wrote is now what this process remembers.
        if (upgraded) this.newCounts = [];
        if (cx) {
          const tx = cx as Tx;
          for (const [k, v] of tx.seen) {
            const cur = this.seen.get(k);
            const inserted = tx.inserted.has(k);
            // A row read again (not only inserted) is kept from now on, even at the same write.
            if (cur === undefined || v > cur || !inserted) this.seen.set(k, cur === undefined || v > cur ? v : cur, inserted);
          }
        }
        if (committed) this.markState(committed, (cx as Tx | null)?.head && (cx as Tx).head!.seq === committed.seq ? (cx as Tx).head!.hash : null);
        this.rememberState(cx as Tx | null, sealing);
        // Sealing vouches for every row it sealed: the journal starts there.
        if (sealing && committed) this.journalMark = committed.writes;
        // The journal is known up to this transaction's last write (nobody wrote in between).
        const done = (cx as Tx | null)?.state.writes;
        if (done !== undefined && this.journalMark !== null && done > this.journalMark) this.journalMark = done;
      },
    );
  }

  /**
   * The state row and the head entry exactly as this process last checked or wrote them, with
   * what they say (see StateSeen): a write transaction that finds them byte for byte the same
   * (the usual case, after this process's own commit) does not check their MACs and links
   * again. Only when the rows belong to the head entry itself (no entry appended after it).
   */
  private stateSeen: StateSeen | null = null;

  /** After a commit: the state row and head it left, for the next transaction to compare. */
  private rememberState(tx: Tx | null, sealing: boolean): void {
    this.stateSeen = null;
    if (!tx || sealing || !this.auth || !tx.head || !tx.stateRow || !tx.headMac || tx.head.seq !== tx.state.seq || tx.head.seq === 0) return;
    this.stateSeen = {
      value: tx.stateRow.value,
      mac: tx.stateRow.mac ? Buffer.from(tx.stateRow.mac) : null,
      st: { ...tx.state },
      head: { seq: tx.head.seq, hash: Uint8Array.from(tx.head.hash) },
      headMac: Buffer.from(tx.headMac),
    };
  }

  /**
   * The write sequence up to which this process has read the write journal (null until a full
   * check of the rows at open has vouched for them all): see rows.ts `journalRowBytes`.
   */
  private journalMark: number | null = null;

  /** Writes this transaction's journal entries, in one statement; drops old ones now and then. */
  private *writeJournal(cx: Tx): Q<void> {
    const auth = this.auth;
    if (!auth || cx.journal.length === 0) return;
    for (let i = 0; i < cx.journal.length; i += JOURNAL_BATCH) {
      const part = cx.journal.slice(i, i + JOURNAL_BATCH);
      const values: Param[] = [];
      for (const j of part) values.push(j.wseq, j.table, j.pk, j.deleted ? 1 : 0, Buffer.from(auth.mac('row_writes', String(j.wseq), journalRowBytes(j.table, j.pk, j.deleted))));
      yield* run(`INSERT INTO row_writes (wseq, tbl, pk, deleted, mac) VALUES ${Array(part.length).fill('(?,?,?,?,?)').join(',')}`, ...values);
    }
    const first = cx.journal[0]!.wseq;
    const last = cx.journal[cx.journal.length - 1]!.wseq;
    // Once every JOURNAL_PRUNE_EVERY writes: a process that falls further behind than the
    // journal keeps stops writing until it is restarted (a start checks every row).
    if (Math.floor(last / JOURNAL_PRUNE_EVERY) !== Math.floor((first - 1) / JOURNAL_PRUNE_EVERY)) yield* run('DELETE FROM row_writes WHERE wseq <= ?', last - JOURNAL_KEEP);
  }

  /**
   * Reads the journal from this process's mark up to `writes` (the state row's counter):
   * every entry must be there, in sequence, with its MAC. Each row written meanwhile is then
   * known at its newest write sequence, so an older copy of it is refused here too.
   */
  private *catchUp(writes: number): Q<void> {
    const auth = this.auth;
    if (!auth) return;
    if (this.journalMark === null || this.journalMark >= writes) return;
    let from = this.journalMark;
    while (from < writes) {
      const rows = yield* all<{ wseq: number; tbl: string; pk: string; deleted: number; mac: Buffer }>('SELECT wseq, tbl, pk, deleted, mac FROM row_writes WHERE wseq > ? AND wseq <= ? ORDER BY wseq LIMIT ?', from, writes, PAGE);
      if (rows.length === 0 || rows[0]!.wseq !== from + 1) {
        const oldest = (yield* get<{ w: number | null }>('SELECT min(wseq) AS w FROM row_writes'))!.w;
        // Pruning keeps about JOURNAL_KEEP entries: fewer kept than that is a cut, not a prune.
        if (oldest !== null && oldest > from + 1 && (rows.length === 0 || rows[0]!.wseq === oldest) && writes - oldest + 1 >= JOURNAL_KEEP - JOURNAL_PRUNE_EVERY) {
          throw new CustosError('storage_unavailable', `This process fell more than ${JOURNAL_KEEP} writes behind the others sharing ${this.path} and can no longer tell their newest rows from older copies; it writes nothing more. Restart it (a start checks every row).`, { tag: 'stale_process' });
        }
        throw this.corrupt('row_writes', String(from + 1), 'missing', `The write journal of ${this.path} lacks write ${from + 1}: it was edited outside Custos.`, 'row_count');
      }
      for (const r of rows) {
        if (r.wseq !== from + 1) throw this.corrupt('row_writes', String(from + 1), 'missing', `The write journal of ${this.path} lacks write ${from + 1}: it was edited outside Custos.`, 'row_count');
        if (!auth.check('row_writes', String(r.wseq), journalRowBytes(r.tbl, r.pk, r.deleted === 1), u8(r.mac))) {
          throw this.corrupt('row_writes', String(r.wseq), 'mac_mismatch', `Entry ${r.wseq} of the write journal of ${this.path} does not match its MAC: it was edited outside Custos.`, 'row_mac');
        }
        const k = `${r.tbl}\0${r.pk}`;
        if (!(this.seen.get(k)! >= r.wseq)) this.seen.set(k, r.wseq);
        from = r.wseq;
      }
    }
    this.journalMark = writes;
  }

  /**
   * A trigger (or a PostgreSQL rule) on a Custos table could change what Custos writes; row
   * MACs cover the bytes Custos meant to write, so a changed row fails its MAC at its next read,
   * and none is Custos's anyway: any is refused, by every write transaction (with the state
   * row) and at open.
   */
  protected *noTriggers(): Q<void> {
    const t = yield* get<{ name: string }>(this.dialect.triggers);
    if (t) this.refuseTrigger(t.name);
  }

  private refuseTrigger(name: string): never {
    throw this.corrupt('meta', '*', 'trigger', `The database ${this.path} has a trigger or rule, "${printable(name, 60)}", on a Custos table: it was added outside Custos and could change what Custos writes, so nothing is written while it is there. Remove it (DROP TRIGGER / DROP RULE), then run \`custos audit verify\`.`, 'trigger');
  }

  /**
   * `hash`: the hash of audit entry `st.seq` (the next transaction checks that the log still
   * runs from it). A mark with a hash is never replaced by one without.
   */
  private markState(st: { seq: number; writes: number }, hash: Uint8Array | null): void {
    const m = this.stateMark;
    if (m && m.hash && !hash) return;
    if (!m || st.writes > m.writes || (st.writes === m.writes && st.seq > m.seq)) this.stateMark = { seq: st.seq, writes: st.writes, hash };
  }

  /** Writes a meta value (null removes it) with its write sequence and MAC; returns the count change. */
  private *writeMeta(cx: Tx | null, name: string, value: string | null): Q<number> {
    wellFormed(name, value);
    const protectedRow = isProtectedMeta(name);
    const table = name.startsWith(INTEGRITY_PREFIX) ? 'bookkeeping' : 'meta';
    const now = yield* get<{ value: string; wseq: number | null }>('SELECT value, wseq FROM meta WHERE name = ?', name);
    const before = protectedRow && now ? metaRowBytes(name, now.value, now.wseq) : null;
    const existed = !!now;
    const { wseq, mac } = protectedRow ? this.seal(cx, table, name, before, value === null ? null : (w) => metaRowBytes(name, value, w)) : { wseq: null, mac: null };
    if (value === null) yield* run('DELETE FROM meta WHERE name = ?', name);
    else yield* run('INSERT INTO meta(name, value, mac, wseq) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value, mac = excluded.mac, wseq = excluded.wseq', name, value, mac, wseq);
    if (!isCountedMeta(name)) return 0;
    return value === null ? (existed ? -1 : 0) : existed ? 0 : 1;
  }

  private *readMeta(cx: Tx | null, name: string): Q<string | null> {
    // Bootstrap rows are read before `migrate` (a database from before row MACs has no mac or
    // wseq column yet), and carry no MAC anyway.
    if (!isProtectedMeta(name)) return (yield* get<{ value: string }>('SELECT value FROM meta WHERE name = ?', name))?.value ?? null;
    const r = yield* get<{ value: string; mac: Buffer | null; wseq: number | null }>('SELECT value, mac, wseq FROM meta WHERE name = ?', name);
    if (!r) return null;
    this.checkRowOnce(cx, 'meta', name, r, () => metaRowBytes(name, r.value, r.wseq));
    return r.value;
  }

  private *countOf(table: CountedTable): Q<number> {
    const sql = table === 'meta' ? `SELECT count(*) AS n FROM meta WHERE ${COUNTED_META_SQL}` : `SELECT count(*) AS n FROM ${table}`;
    return (yield* get<{ n: number }>(sql))!.n;
  }

  /**
   * The MACed count of a table, with the changes this transaction has made and not yet written;
   * a vault with row MACs has one for every counted table, so a missing one is an edit (unless
   * an upgrade from schema 4 has not written it yet: `countPending`).
   */
  private *storedCount(cx: Tx | null, table: CountedTable): Q<number> {
    const v = yield* this.readMeta(cx, COUNT_PREFIX + table);
    if (v === null && (yield* this.countPending(cx, table))) return cx?.counts[table] ?? 0;
    if (v === null) throw this.corrupt('meta', COUNT_PREFIX + table, 'missing', `The count of ${table} rows in ${this.path} is missing: it was deleted outside Custos.`, 'row_count');
    return Number(v) + (cx?.counts[table] ?? 0);
  }

  /** Writes each count this transaction changed, once. */
  private *writeCounts(cx: Tx): Q<void> {
    for (const table of COUNTED_TABLES) {
      const d = cx.counts[table] ?? 0;
      if (d === 0) continue;
      const total = yield* this.storedCount(cx, table);
      delete cx.counts[table];
      yield* this.writeMeta(cx, COUNT_PREFIX + table, String(total));
    }
  }

  /**
   * A protected row that is absent may have been deleted (a budget refilled, a watermark
   * forgotten): the table's MACed count says whether a row is missing.
   */
  private *checkCount(cx: Tx | null, table: CountedTable): Q<void> {
    if (!this.auth) return;
    const stored = yield* this.storedCount(cx, table);
    const actual = yield* this.countOf(table);
    if (stored === actual) return;
    throw this.corrupt(
      table,
      '*',
      'count_mismatch',
      `The ${table} table of ${this.path} holds ${actual} protected rows where Custos wrote ${stored}: rows were ${actual < stored ? 'deleted' : 'inserted'} outside Custos, so none of its state is trusted.`,
      'row_count',
    );
  }

  /** Counts `d` more rows in `table` (written at the end of the transaction, by `writeCounts`). */
  private applyCount(cx: Tx | null, table: CountedTable, d: number): void {
    if (!this.auth || !cx || d === 0) return;
    cx.counts[table] = (cx.counts[table] ?? 0) + d;
  }

  // ---- meta ---------------------------------------------------------------------------------

  async getMeta(name: string): Promise<string | null> {
    // A row found is one statement. Absent, it is read again with the count in one snapshot, so
    // that a commit by another process in between is never mistaken for a deleted row.
    const self = this;
    const v = await this.transact(() => this.readMeta(null, name), 'statement');
    if (v !== null || !absenceMatters(name)) return v;
    return this.transact(function* () {
      const again = yield* self.readMeta(null, name);
      if (again === null) yield* self.checkCount(null, 'meta');
      return again;
    }, 'snapshot');
  }

  /**
   * Meta rows by name prefix. The list is what decides (every policy document): a row deleted
   * from it (the newest version of a policy) is found by the table's count, in the same snapshot.
   */
  async listMeta(prefix: string): Promise<Array<{ name: string; value: string }>> {
    const self = this;
    // A range scan on the primary key, not LIKE: prefixes may contain % or _.
    return this.transact(function* () {
      const rows = (yield* all<MetaRow>('SELECT name, value, mac, wseq FROM meta WHERE name >= ? AND name < ? ORDER BY name', prefix, prefix + '\uffff')).map((r) => {
        if (isProtectedMeta(r.name)) self.checkRow(null, 'meta', r.name, metaRowBytes(r.name, r.value, r.wseq), r.mac, r.wseq);
        return { name: r.name, value: r.value };
      });
      yield* self.checkCount(null, 'meta');
      return rows;
    }, 'snapshot');
  }

  async initMeta(values: Record<string, string>): Promise<boolean> {
    const self = this;
    return this.writeTx(function* (cx) {
      for (const k of Object.keys(values)) if (yield* get('SELECT 1 FROM meta WHERE name = ?', k)) return false;
      let d = 0;
      for (const [k, v] of Object.entries(values)) d += yield* self.writeMeta(cx, k, v);
      self.applyCount(cx, 'meta', d);
      return true;
    });
  }

  async setMeta(name: string, value: string | null): Promise<void> {
    const self = this;
    await this.writeTx(function* (cx) {
      self.applyCount(cx, 'meta', yield* self.writeMeta(cx, name, value));
    });
  }

  // ---- keys and tokens ------------------------------------------------------------------------

  private checkedKey(cx: Tx | null, r: KeyRow, remember = true): KeyRecord {
    const k = toKey(r);
    this.checkRowOnce(cx, 'keys', k.id, r, () => keyRowBytes(k, r.wseq), remember);
    return k;
  }

  /** A listed row, checked; one that fails its check is shown as `tampered` (alarm raised), never obeyed. */
  private listedKey(r: KeyRow): KeyRecord & { tampered?: true } {
    try {
      return this.checkedKey(null, r, false);
    } catch (e) {
      if (e instanceof CustosError && (e.tag === 'row_mac' || e.tag === 'row_replayed')) return { ...toKey(r), tampered: true as const };
      throw e;
    }
  }

  private checkedToken(cx: Tx | null, r: TokenRow, remember = true): ApiToken {
    const t = toToken(r);
    this.checkRowOnce(cx, 'api_tokens', t.id, r, () => tokenRowBytes(t, r.wseq), remember);
    return t;
  }

  async findKey(ref: string): Promise<KeyRecord | null> {
    return this.transact(() => this.findKeyQ(ref), 'statement');
  }

  private *findKeyQ(ref: string): Q<KeyRecord | null> {
    // An id wins over a label equal to it, either way.
    const r = this.dialect.roundTrips
      ? yield* get<KeyRow>('SELECT * FROM keys WHERE id = ? OR label = ? ORDER BY id = ? DESC LIMIT 1', ref, ref, ref)
      : ((yield* get<KeyRow>('SELECT * FROM keys WHERE id = ?', ref)) ?? (yield* get<KeyRow>('SELECT * FROM keys WHERE label = ?', ref)));
    return r ? this.checkedKey(null, r) : null;
  }

  async keysVersion(): Promise<number | null> {
    return this.transact(function* () {
      return (yield* get<{ v: number | null }>('SELECT max(wseq) AS v FROM keys'))!.v;
    }, 'statement');
  }

  /**
   * Every key; one whose row fails its check is returned with `tampered: true` (and the alarm
   * raised) so that a listing shows it, while every use of it is refused.
   */
  async listKeys(): Promise<Array<KeyRecord & { tampered?: true }>> {
    const self = this;
    return this.transact(function* () {
      return (yield* all<KeyRow>('SELECT * FROM keys ORDER BY created_at, id')).map((r) => self.listedKey(r));
    }, 'statement');
  }

  async listExpiringKeys(): Promise<KeyRecord[]> {
    const self = this;
    return this.transact(function* () {
      // An edited row is alarmed and left to fail where it is used, not swept.
      return (yield* all<KeyRow>(self.dialect.expiringKeys)).map((r) => self.listedKey(r)).filter((k) => !k.tampered);
    }, 'statement');
  }

  async listKeysPage(after: string | null, limit: number, prefix = ''): Promise<Array<KeyRecord & { tampered?: true }>> {
    const n = Math.max(1, Math.min(10_000, Math.floor(limit)));
    const self = this;
    // A range of the label index: after the cursor (or from the prefix), below the prefix's end.
    const from = after !== null && after >= prefix ? after : null;
    return this.transact(function* () {
      const rows =
        from === null
          ? yield* all<KeyRow>('SELECT * FROM keys WHERE label >= ? AND label < ? ORDER BY label LIMIT ?', prefix, prefix + '\u{10ffff}', n)
          : yield* all<KeyRow>('SELECT * FROM keys WHERE label > ? AND label < ? ORDER BY label LIMIT ?', from, prefix + '\u{10ffff}', n);
      return rows.map((r) => self.listedKey(r));
    }, 'statement');
  }

  async findKeysBy(q: { publicKey: Uint8Array } | { attribute: IndexedAttribute; value?: string }): Promise<Array<KeyRecord & { tampered?: true }>> {
    const self = this;
    return this.transact(function* () {
      let rows: KeyRow[];
      if ('publicKey' in q) rows = yield* all<KeyRow>('SELECT * FROM keys WHERE public_key = ?', Buffer.from(q.publicKey));
      else {
        const expr = self.dialect.attribute(q.attribute);
        rows = q.value === undefined ? yield* all<KeyRow>(`SELECT * FROM keys WHERE ${expr} IS NOT NULL`) : yield* all<KeyRow>(`SELECT * FROM keys WHERE ${expr} = ?`, q.value);
      }
      return rows.map((r) => self.listedKey(r));
    }, 'statement');
  }

  async listTokens(skipCorrupt = false): Promise<ApiToken[]> {
    const self = this;
    return this.transact(function* () {
      return (yield* all<TokenRow>('SELECT * FROM api_tokens ORDER BY created_at, id')).flatMap((r) => {
        try {
          return [self.checkedToken(null, r, false)];
        } catch (e) {
          if (skipCorrupt && e instanceof CustosError && e.code === 'database_corrupt') return [];
          throw e;
        }
      });
    }, 'statement');
  }

  async tokensWrittenAfter(wseq: number): Promise<Array<{ token: ApiToken; wseq: number }>> {
    const self = this;
    return this.transact(function* () {
      return (yield* all<TokenRow>('SELECT * FROM api_tokens WHERE wseq > ? ORDER BY wseq', wseq)).flatMap((r) => {
        try {
          return [{ token: self.checkedToken(null, r, false), wseq: r.wseq! }];
        } catch (e) {
          if (e instanceof CustosError && e.code === 'database_corrupt') return [];
          throw e;
        }
      });
    }, 'statement');
  }

  /** The token rows' count and when it was counted (tokensVersion). */
  private tokenCount: { n: number; at: number } | null = null;

  async tokensVersion(): Promise<string> {
    // The highest write sequence, by its index, at every call: every write Custos makes raises
    // it. The count (a walk of the whole index) notices a row deleted outside Custos; it is
    // taken again at most once a second, so that authentication does not cost a walk of every
    // token at every request.
    const now = Date.now();
    const count = this.tokenCount && now - this.tokenCount.at < TOKEN_COUNT_MS ? this.tokenCount : null;
    const r = await this.transact(function* () {
      return (yield* get<{ w: number | null; n?: number }>(count ? 'SELECT max(wseq) AS w FROM api_tokens' : 'SELECT max(wseq) AS w, count(*) AS n FROM api_tokens'))!;
    }, 'statement');
    const n = count?.n ?? r.n ?? 0;
    if (!count) this.tokenCount = { n, at: now };
    return `${r.w ?? 0}/${n}`;
  }

  async findTokenBy(key: { id: string } | { name: string }): Promise<ApiToken | null> {
    const self = this;
    return this.transact(function* () {
      const r = 'id' in key ? yield* get<TokenRow>('SELECT * FROM api_tokens WHERE id = ?', key.id) : yield* get<TokenRow>('SELECT * FROM api_tokens WHERE name = ?', key.name);
      return r ? self.checkedToken(null, r) : null;
    }, 'statement');
  }

  async findToken(hash: Uint8Array): Promise<ApiToken | null> {
    const self = this;
    return this.transact(function* () {
      const r = yield* get<TokenRow>('SELECT * FROM api_tokens WHERE hash = ?', Buffer.from(hash));
      // A token row inserted with SQL (an attacker's own admin token) has no valid MAC.
      return r ? self.checkedToken(null, r) : null;
    }, 'statement');
  }

  /** New keys in one statement (a batch of them is one round trip); returns how many. */
  private *insertKeys(cx: Tx | null, keys: KeyRecord[]): Q<number> {
    const values: Param[] = [];
    for (const k of keys) {
      wellFormed(k.id, k.label);
      const { wseq, mac } = this.seal(cx, 'keys', k.id, null, (w) => keyRowBytes(k, w));
      values.push(k.id, k.label, k.algorithm, Buffer.from(k.publicKey), k.state, k.exportable ? 1 : 0, k.origin, k.version, k.createdAt, k.updatedAt, k.sealed ? Buffer.from(k.sealed) : null, canonicalJson(k.attributes), mac, wseq);
    }
    try {
      yield* run(`INSERT INTO keys (id, label, algorithm, public_key, state, exportable, origin, version, created_at, updated_at, sealed, attributes, mac, wseq) VALUES ${Array(keys.length).fill('(?,?,?,?,?,?,?,?,?,?,?,?,?,?)').join(',')}`, ...values);
    } catch (e) {
      if (this.dialect.isUniqueViolation(e)) {
        const which = keys.length === 1 ? `A key labelled "${keys[0]!.label}" already exists` : `A label of ${keys[0]!.label} … ${keys[keys.length - 1]!.label} is taken or given twice`;
        throw new CustosError('label_taken', `${which} (labels stay reserved after a key is destroyed); choose another label.`);
      }
      throw e;
    }
    return keys.length;
  }

  /** Applies one mutation; returns the change it makes to a table's row count. */
  private *applyMutation(cx: Tx | null, m: StateMutation): Q<[CountedTable, number] | null> {
    switch (m.kind) {
      case 'insertKey':
        return ['keys', yield* this.insertKeys(cx, [m.key])];
      case 'setKeyState': {
        const cur = yield* this.currentKey(cx, m.id);
        if (!cur || cur.key.state === 'destroyed') throw new CustosError('key_destroyed', 'The key was destroyed; its state can no longer change.');
        const next: KeyRecord = { ...cur.key, state: m.state, updatedAt: m.updatedAt };
        const { wseq, mac } = this.seal(cx, 'keys', m.id, cur.bytes(), (w) => keyRowBytes(next, w));
        const changed = yield* run("UPDATE keys SET state = ?, updated_at = ?, mac = ?, wseq = ? WHERE id = ? AND state != 'destroyed'", m.state, m.updatedAt, mac, wseq, m.id);
        if (changed !== 1) throw new CustosError('key_destroyed', 'The key was destroyed; its state can no longer change.');
        return null;
      }
      case 'destroyKey': {
        const cur = yield* this.currentKey(cx, m.id);
        if (!cur || cur.key.state === 'destroyed') throw new CustosError('key_destroyed', 'The key was already destroyed.');
        const next: KeyRecord = { ...cur.key, sealed: null, state: 'destroyed', updatedAt: m.updatedAt };
        const { wseq, mac } = this.seal(cx, 'keys', m.id, cur.bytes(), (w) => keyRowBytes(next, w));
        // Overwrite in place first, then drop (SQLite's secure_delete zeroes the freed bytes too).
        yield* run(this.dialect.zeroSealed, m.id);
        const changed = yield* run("UPDATE keys SET sealed = NULL, state = 'destroyed', updated_at = ?, mac = ?, wseq = ? WHERE id = ? AND state != 'destroyed'", m.updatedAt, mac, wseq, m.id);
        if (changed !== 1) throw new CustosError('key_destroyed', 'The key was already destroyed.');
        return null;
      }
      case 'rewrapKey': {
        const cur = yield* this.currentKey(cx, m.id);
        if (!cur || cur.key.state === 'destroyed') throw new CustosError('key_destroyed', 'The key was destroyed; it can no longer change.');
        if (cur.key.version !== m.expectedVersion) throw new CustosError('storage_unavailable', 'The key changed while this request was decided (another process?); retry.', { tag: 'key_moved' });
        const next: KeyRecord = { ...cur.key, attributes: m.attributes, sealed: m.sealed, version: m.version, updatedAt: m.updatedAt };
        const { wseq, mac } = this.seal(cx, 'keys', m.id, cur.bytes(), (w) => keyRowBytes(next, w));
        yield* run('UPDATE keys SET attributes = ?, sealed = ?, version = ?, updated_at = ?, mac = ?, wseq = ? WHERE id = ?', canonicalJson(m.attributes), Buffer.from(m.sealed), m.version, m.updatedAt, mac, wseq, m.id);
        return null;
      }
      case 'advanceWatermark': {
        wellFormed(m.keyId, m.chainId);
        const found = yield* this.readWatermarkRow(cx, m.keyId, m.chainId);
        const cur = found?.w ?? null;
        const same =
          (cur === null && m.expected === null) ||
          (cur !== null && m.expected !== null && comparePosition(cur, m.expected) === 0);
        if (!same) throw new CustosError('storage_unavailable', 'The consensus watermark moved while this request was decided (another signer?); decide again.', { tag: 'watermark_moved' });
        if (cur !== null && comparePosition(m.next, cur) < 0) {
          throw new CustosError('policy_denied', 'A consensus watermark never moves backwards.', { tag: 'double_sign' });
        }
        const pk = watermarkPk(m.keyId, m.chainId);
        const w: Watermark = m.next;
        const { wseq, mac } = this.seal(cx, 'watermarks', pk, found?.bytes ?? null, (n) => watermarkRowBytes(m.keyId, m.chainId, w, n));
        yield* run(
          'INSERT INTO watermarks (key_id, chain_id, height, round, step, sign_bytes, signature, mac, wseq) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(key_id, chain_id) DO UPDATE SET height = excluded.height, round = excluded.round, step = excluded.step, sign_bytes = excluded.sign_bytes, signature = excluded.signature, mac = excluded.mac, wseq = excluded.wseq',
          m.keyId, m.chainId, w.height.toString(), w.round, w.step, Buffer.from(w.signBytes), w.signature ? Buffer.from(w.signature) : null, mac, wseq,
        );
        return cur === null ? ['watermarks', 1] : null;
      }
      case 'assertKeyActive': {
        const r = (yield* this.currentKey(cx, m.id))?.key;
        if (!r || r.state === 'destroyed') throw new CustosError('key_destroyed', 'The key was destroyed while this request was in progress; nothing was signed.');
        if (r.state !== 'active') throw new CustosError('key_disabled', 'The key was disabled while this request was in progress; nothing was signed.');
        if (m.version !== undefined && r.version !== m.version) {
          throw new CustosError('storage_unavailable', 'The key was changed (its purpose or attributes) while this request was in progress; nothing was signed. Retry.', { tag: 'key_moved' });
        }
        return null;
      }
      case 'assertCredential': {
        const [id, prefix] = m.credential.split('/') as [string, string | undefined];
        const r = yield* get<TokenRow>('SELECT * FROM api_tokens WHERE id = ?', id);
        if (!r) yield* this.checkCount(cx, 'api_tokens');
        const t = r ? this.checkedToken(cx, r) : null;
        if (!t || t.terms.revoked_at !== undefined || (t.terms.expires_at !== undefined && !(Date.parse(t.terms.expires_at) > Date.parse(m.now))) || bytesToHex(t.hash).slice(0, 16) !== prefix) {
          throw new CustosError('unauthorized', 'The credential of this request was revoked, replaced or expired while it was in progress; nothing was signed.', { tag: 'credential_moved' });
        }
        return null;
      }
      case 'compareAndSetMeta': {
        const current = yield* this.readMeta(cx, m.name);
        // Absent: deleted outside Custos, or never written? The count tells, where it matters
        // (a row written on top of a deletion would make the count agree again).
        if (current === null && (m.expected !== null ? isCountedMeta(m.name) : absenceMatters(m.name))) yield* this.checkCount(cx, 'meta');
        if (current !== m.expected) throw new CustosError('storage_unavailable', `The stored ${m.name.split('.')[0]} changed while this request was decided (another process?); decide again.`, { tag: 'meta_moved' });
        // value === expected is a guard only (the policy generation on every decision): no write.
        if (m.value === m.expected) return null;
        return ['meta', yield* this.writeMeta(cx, m.name, m.value)];
      }
      case 'putObject': {
        wellFormed(m.keyId, m.objectId);
        if (typeof m.version !== 'bigint' || m.version < 0n || m.version > MAX_OBJECT_VERSION) throw new CustosError('bad_request', 'An object version is an unsigned 64-bit integer; nothing was changed.');
        // The row's version and MAC decide; its record (megabytes, perhaps) is not read.
        const found = yield* this.readObjectRow(cx, m.keyId, m.objectId, true);
        const cur = found?.o.version ?? null;
        if (cur !== m.expectedVersion) throw new CustosError('storage_unavailable', 'The object changed while this update was decided (another writer?); read it and decide again.', { tag: 'object_moved' });
        if (cur !== null && m.version <= cur) throw new CustosError('conflict', 'An object version never moves backwards.', { tag: 'object_version' });
        const pk = objectPk(m.keyId, m.objectId);
        const { version, record } = m;
        const hash = recordSha256(record);
        const { wseq, mac } = this.seal(cx, 'objects', pk, found?.bytes ?? null, (n) => objectRowBytes(m.keyId, m.objectId, version, hash, n));
        yield* run(
          'INSERT INTO objects (key_id, object_id, version, record, record_sha256, mac, wseq) VALUES (?,?,?,?,?,?,?) ON CONFLICT(key_id, object_id) DO UPDATE SET version = excluded.version, record = excluded.record, record_sha256 = excluded.record_sha256, mac = excluded.mac, wseq = excluded.wseq',
          m.keyId, m.objectId, version.toString(), Buffer.from(record.buffer, record.byteOffset, record.byteLength), hash, mac, wseq,
        );
        return cur === null ? ['objects', 1] : null;
      }
      case 'insertToken': {
        const t = m.token;
        wellFormed(t.id, t.name);
        const { wseq, mac } = this.seal(cx, 'api_tokens', t.id, null, (w) => tokenRowBytes(t, w));
        yield* run('INSERT INTO api_tokens (id, name, hash, role, created_at, terms, mac, wseq) VALUES (?,?,?,?,?,?,?,?)', t.id, t.name, Buffer.from(t.hash), t.role, t.createdAt, tokenTermsJson(t.terms), mac, wseq);
        return ['api_tokens', 1];
      }
      case 'updateToken': {
        const r = yield* get<TokenRow>('SELECT * FROM api_tokens WHERE id = ?', m.expected.id);
        if (!r) yield* this.checkCount(cx, 'api_tokens');
        const cur = r ? this.checkedToken(cx, r) : null;
        const same = (a: ApiToken, b: ApiToken) => a.name === b.name && a.role === b.role && Buffer.from(a.hash).equals(Buffer.from(b.hash)) && tokenTermsJson(a.terms) === tokenTermsJson(b.terms);
        if (!cur || !same(cur, m.expected) || m.token.id !== cur.id) {
          throw new CustosError('storage_unavailable', `The principal ${m.expected.name} changed while this request was decided (another admin, another process?); nothing was changed. Retry.`, { tag: 'token_moved' });
        }
        const t = m.token;
        const next: ApiToken = { ...cur, hash: t.hash, role: t.role, terms: t.terms };
        const { wseq, mac } = this.seal(cx, 'api_tokens', t.id, tokenRowBytes(cur, r!.wseq), (w) => tokenRowBytes(next, w));
        yield* run('UPDATE api_tokens SET hash = ?, role = ?, terms = ?, mac = ?, wseq = ? WHERE id = ?', Buffer.from(t.hash), t.role, tokenTermsJson(t.terms), mac, wseq, t.id);
        return null;
      }
    }
  }

  /** The key row as stored, checked, and its bytes: a decision never rests on an edited or older state. */
  private *currentKey(cx: Tx | null, id: string): Q<{ key: KeyRecord; bytes: () => Uint8Array } | null> {
    const r = yield* get<KeyRow>('SELECT * FROM keys WHERE id = ?', id);
    if (!r) return null;
    const key = this.checkedKey(cx, r);
    // Only a change of the row needs its bytes (the digest's old element); a check does not.
    return { key, bytes: () => keyRowBytes(key, r.wseq) };
  }

  /** The watermark as stored, checked, and its bytes. */
  private *readWatermarkRow(cx: Tx | null, keyId: string, chainId: string, countAbsent = true): Q<{ w: Watermark; bytes: Uint8Array } | null> {
    const r = yield* get<WatermarkRow>('SELECT * FROM watermarks WHERE key_id = ? AND chain_id = ?', keyId, chainId);
    if (!r) {
      // No watermark: a first vote, or a deleted row (which would allow any vote): the count tells.
      if (countAbsent) yield* this.checkCount(cx, 'watermarks');
      return null;
    }
    const w = toWatermark(r);
    const bytes = watermarkRowBytes(keyId, chainId, w, r.wseq);
    this.checkRowOnce(cx, 'watermarks', watermarkPk(keyId, chainId), r, () => bytes);
    return { w, bytes };
  }

  async getWatermark(keyId: string, chainId: string): Promise<Watermark | null> {
    // A row found is one statement. None found: read again with the count in one snapshot, as
    // in getMeta, so that another process's first vote is not taken for a deleted row.
    const found = await this.transact(() => this.readWatermarkRow(null, keyId, chainId, false), 'statement');
    if (found) return found.w;
    return (await this.transact(() => this.readWatermarkRow(null, keyId, chainId), 'snapshot'))?.w ?? null;
  }

  // ---- versioned objects ----------------------------------------------------------------------

  /** The object as stored, checked, and its bytes: by its primary key, O(log n). */
  private *readObjectRow(cx: Tx | null, keyId: string, objectId: string, headOnly = false): Q<{ o: StoredObject; bytes: Uint8Array } | null> {
    const r = yield* get<ObjectRow>(`SELECT ${headOnly ? OBJECT_HEAD : '*'} FROM objects WHERE key_id = ? AND object_id = ?`, keyId, objectId);
    if (!r) {
      yield* this.checkAbsent(cx, 'objects', objectPk(keyId, objectId));
      return null;
    }
    return this.checkedObject(cx, r);
  }

  private checkedObject(cx: Tx | null, r: ObjectRow): { o: StoredObject; bytes: Uint8Array } {
    const pk = objectPk(r.key_id, r.object_id);
    const bytes = objectBytes(r);
    this.checkRow(cx, 'objects', pk, bytes, r.mac, r.wseq);
    const version = objectVersion(r.version);
    // Only without row MACs (a tool holding no root key) can an unreadable version get here.
    if (version === null) throw this.corrupt('objects', pk, 'unreadable', `The object row ${printable(pk, 80)} in ${this.path} has an unreadable version: it was edited outside Custos.`, 'row_mac');
    if (r.record === undefined) return { o: { keyId: r.key_id, objectId: r.object_id, version, record: new Uint8Array(0), hash: u8(Buffer.from(r.record_sha256, 'hex')) }, bytes };
    const record = u8(r.record);
    // The MAC covers the hash; the record must be the one hashed.
    if (recordSha256(record) !== r.record_sha256) throw this.corrupt('objects', pk, 'record', `The object row ${printable(pk, 80)} in ${this.path} holds a record other than the one its MAC covers: it was edited outside Custos.`, 'row_mac');
    return { o: { keyId: r.key_id, objectId: r.object_id, version, record, hash: u8(Buffer.from(r.record_sha256, 'hex')) }, bytes };
  }

  /**
   * An object row that is absent: never written, or deleted outside Custos (Custos never
   * deletes one), which would let a decision start again from nothing. What this process knows
   * answers without reading the table: a row it has seen (read, written, checked at open, or
   * named by the write journal) is gone, so it was deleted. A row it has never seen is new, once
   * its open vouched for every row (`checkRows`) and the journal is read up to now (a write
   * transaction has read it; a snapshot reads it here). Only a process that has not vouched for
   * the rows falls back to the table's count, which reads the whole primary-key index.
   */
  private *checkAbsent(cx: Tx | null, table: 'objects', pk: string): Q<void> {
    if (!this.auth) return;
    const k = `${table}\0${pk}`;
    const deleted = () => this.corrupt(table, pk, 'deleted', `The ${TABLE_NOUN[table]} row ${printable(pk, 80)} is missing from ${this.path}, though Custos wrote it (write ${this.seenOf(cx, k)}): it was deleted outside Custos, so none of its state is trusted.`, 'row_count');
    if (this.seenOf(cx, k) !== undefined) throw deleted();
    if (this.journalMark === null) return yield* this.checkCount(cx, table);
    if (!cx) {
      // A write transaction read the journal under its lock; a snapshot reads it now.
      const { st } = yield* this.checkedState();
      yield* this.catchUp(st.writes);
      if (this.seenOf(null, k) !== undefined) throw deleted();
    }
  }

  async getObject(keyId: string, objectId: string): Promise<StoredObject | null> {
    // A snapshot: the row and, when it is absent, the journal (or the count) are one view.
    const self = this;
    return this.transact(function* () {
      return (yield* self.readObjectRow(null, keyId, objectId))?.o ?? null;
    }, 'snapshot');
  }

  async listObjects(keyId: string, after: string | null, limit: number): Promise<StoredObject[]> {
    const n = Math.max(1, Math.min(10_000, Math.floor(limit)));
    const self = this;
    return this.transact(function* () {
      // A range of the primary key: (key_id, object_id > after), in object_id order.
      const rows =
        after === null
          ? yield* all<ObjectRow>('SELECT * FROM objects WHERE key_id = ? ORDER BY object_id LIMIT ?', keyId, n)
          : yield* all<ObjectRow>('SELECT * FROM objects WHERE key_id = ? AND object_id > ? ORDER BY object_id LIMIT ?', keyId, after, n);
      const out = rows.map((r) => self.checkedObject(null, r).o);
      // A listing from the start (a backup) is also checked for a deleted row, once, in the
      // same snapshot: the table's count against its MACed count (one pass of the index).
      if (after === null) yield* self.checkCount(null, 'objects');
      return out;
    }, after === null ? 'snapshot' : 'statement');
  }

  async countObjects(keyId: string): Promise<number> {
    return this.transact(function* () {
      return (yield* get<{ n: number }>('SELECT count(*) AS n FROM objects WHERE key_id = ?', keyId))!.n;
    }, 'statement');
  }

  async listWatermarks(): Promise<Array<{ keyId: string; chainId: string; height: bigint; round: number; step: number }>> {
    const self = this;
    return this.transact(function* () {
      return (yield* all<WatermarkRow>('SELECT * FROM watermarks ORDER BY key_id, chain_id')).map((r) => {
        const w = toWatermark(r);
        self.checkRow(null, 'watermarks', watermarkPk(r.key_id, r.chain_id), watermarkRowBytes(r.key_id, r.chain_id, w, r.wseq), r.mac, r.wseq);
        return { keyId: r.key_id, chainId: r.chain_id, height: w.height, round: w.round, step: w.step };
      });
    }, 'statement');
  }

  private *readHead(): Q<ChainHead> {
    const r = yield* get<{ seq: number; hash: Buffer }>('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
    return r ? { seq: r.seq, hash: u8(r.hash) } : { seq: 0, hash: GENESIS_HASH };
  }

  async commit(units: WriteUnit[], chain: Chainer, ts: string): Promise<Array<Error | null>> {
    const self = this;
    let results: Array<Error | null> = [];
    // One unit alone needs no savepoint: if it fails, the whole transaction is rolled back
    // (two statements fewer for the request that waits alone, the latency case).
    const alone = units.length === 1;
    try {
      await this.writeTx(function* (cx) {
        results = [];
        let head = cx?.head ?? (yield* self.readHead());
        let headMac = cx?.headMac ?? null;
        for (const unit of units) {
          const before = head;
          const macBefore = headMac;
          const saved = cx && !alone ? { state: { ...cx.state }, seen: new Map(cx.seen), inserted: new Set(cx.inserted), counts: { ...cx.counts }, journal: cx.journal.length } : null;
          // A savepoint per unit: a failing unit rolls back alone.
          if (!alone) yield* run('SAVEPOINT unit');
          try {
            const ms = unit.mutations;
            for (let i = 0; i < ms.length; ) {
              // New keys side by side go in one statement (a batch creation).
              let j = i;
              while (j < ms.length && ms[j]!.kind === 'insertKey' && j - i < KEYS_PER_INSERT) j++;
              const c = j - i > 1 ? (['keys', yield* self.insertKeys(cx, ms.slice(i, j).map((m) => (m as { key: KeyRecord }).key))] as const) : yield* self.applyMutation(cx, ms[i]!);
              i = Math.max(j, i + 1);
              // Counted at once (in the transaction's pending counts, restored with the unit if
              // it fails): a later unit of the same batch that finds a row absent compares
              // against a count that includes this one. Each count row is written once, at the end.
              if (c) self.applyCount(cx, c[0], c[1]);
            }
            // The unit's entries in one statement (a decision and its outcome are two), or one per
            // hundred for a batch (fixed sizes: few prepared statements, within parameter limits).
            let values: Param[] = [];
            let rows = 0;
            const flush = function* () {
              if (rows === 0) return;
              yield* run(`INSERT INTO audit (seq, ts, request_id, principal, operation, key_id, key_label, outcome, reason, details, prev_hash, hash, mac) VALUES ${Array(rows).fill('(?,?,?,?,?,?,?,?,?,?,?,?,?)').join(',')}`, ...values);
              values = [];
              rows = 0;
            };
            for (const d of unit.audit) {
              wellFormed(d.requestId, d.principal, d.operation, d.keyId, d.keyLabel, d.reason);
              const seq = head.seq + 1;
              const hash = chain(head, seq, ts, d);
              const mac = self.auth ? Buffer.from(self.auth.mac('audit', String(seq), auditRowBytes(seq, hash))) : null;
              values.push(seq, ts, d.requestId, d.principal, d.operation, d.keyId, d.keyLabel, d.outcome, d.reason, canonicalJson(d.details), Buffer.from(head.hash), Buffer.from(hash), mac);
              head = { seq, hash };
              headMac = mac;
              if (++rows === AUDIT_PER_INSERT) yield* flush();
            }
            yield* flush();
            if (unit.audit.length > 0) {
              if (cx) {
                cx.state.seq = head.seq;
                cx.head = head;
                cx.headMac = headMac;
              }
            }
            if (!alone) yield* run('RELEASE SAVEPOINT unit');
            results.push(null);
          } catch (e) {
            // Storage failures abort the whole batch; a tampered row too (nothing is committed on
            // top of it); a unit's own conflict rolls back only that unit.
            if (self.dialect.isFatal(e) || (e instanceof CustosError && e.code === 'database_corrupt')) throw e;
            const own = e instanceof CustosError ? e : self.unitError(e);
            if (alone) throw new UnitFailed(own);
            yield* run('ROLLBACK TO SAVEPOINT unit');
            yield* run('RELEASE SAVEPOINT unit');
            head = before;
            headMac = macBefore;
            if (cx) {
              cx.head = before;
              cx.headMac = macBefore;
            }
            // The unit's writes are rolled back: so is their bookkeeping, and what it remembered.
            if (cx && saved) {
              cx.state = saved.state;
              cx.seen = saved.seen;
              cx.inserted = saved.inserted;
              cx.counts = saved.counts;
              cx.journal.length = saved.journal;
            }
            results.push(own);
          }
        }
      });
    } catch (e) {
      if (e instanceof UnitFailed) return [e.failure];
      throw e;
    }
    return results;
  }

  /** A unit's failure that is neither a sentence of ours nor fatal (a constraint), as a sentence. */
  protected abstract unitError(e: unknown): CustosError;

  async auditHead(): Promise<ChainHead> {
    return this.transact(() => this.readHead(), 'statement');
  }

  async verifiedHead(): Promise<ChainHead> {
    const self = this;
    return this.transact(function* () {
      if (self.auth) return (yield* self.checkedState()).head;
      return yield* self.readHead();
    }, 'snapshot');
  }

  async auditAfter(afterSeq: number, limit: number): Promise<AuditEntry[]> {
    return this.transact(function* () {
      return (yield* all<AuditRow>('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?', afterSeq, limit)).map(toAudit);
    }, 'statement');
  }

  async auditTail(limit: number): Promise<AuditEntry[]> {
    return (await this.auditQuery({ limit })).reverse();
  }

  async auditQuery(q: AuditQuery): Promise<AuditEntry[]> {
    const where: string[] = [];
    const args: Array<string | number> = [];
    if (q.before !== undefined) (where.push('seq < ?'), args.push(q.before));
    if (q.key !== undefined) (where.push('(key_id = ? OR key_label = ?)'), args.push(q.key, q.key));
    if (q.principal !== undefined) (where.push('principal = ?'), args.push(q.principal));
    if (q.operation !== undefined) (where.push('operation = ?'), args.push(q.operation));
    if (q.outcome !== undefined) (where.push('outcome = ?'), args.push(q.outcome));
    const sql = `SELECT * FROM audit${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`;
    return this.transact(function* () {
      return (yield* all<AuditRow>(sql, ...args, q.limit)).map(toAudit);
    }, 'statement');
  }

  async putCheckpoint(cp: AuditCheckpoint): Promise<void> {
    await this.transact(function* () {
      yield* run('INSERT INTO audit_checkpoints (seq, hash, ts, signature) VALUES (?,?,?,?) ON CONFLICT DO NOTHING', cp.seq, Buffer.from(cp.hash), cp.ts, Buffer.from(cp.signature));
    }, 'statement');
  }

  async checkpoints(): Promise<AuditCheckpoint[]> {
    return this.transact(function* () {
      return (yield* all<{ seq: number; hash: Buffer; ts: string; signature: Buffer }>('SELECT * FROM audit_checkpoints ORDER BY seq')).map((r) => ({
        seq: r.seq,
        hash: u8(r.hash),
        ts: r.ts,
        signature: u8(r.signature),
      }));
    }, 'statement');
  }

  /**
   * Visits every protected row with the bytes its MAC covers, table by table in primary-key
   * order, a page at a time (a million keys are never one result in memory).
   */
  private *eachProtectedRow(table: CountedTable, visit: (r: { pk: string; bytes: Uint8Array; mac: Buffer | null; wseq: number | null }) => void): Q<void> {
    switch (table) {
      case 'keys':
        for (let after = ''; ; ) {
          const rows = yield* all<KeyRow>('SELECT * FROM keys WHERE id > ? ORDER BY id LIMIT ?', after, PAGE);
          for (const r of rows) visit({ pk: r.id, bytes: keyRowBytes(toKey(r), r.wseq), mac: r.mac, wseq: r.wseq });
          if (rows.length < PAGE) return;
          after = rows[rows.length - 1]!.id;
        }
      case 'api_tokens':
        for (let after = ''; ; ) {
          const rows = yield* all<TokenRow>('SELECT * FROM api_tokens WHERE id > ? ORDER BY id LIMIT ?', after, PAGE);
          for (const r of rows) visit({ pk: r.id, bytes: tokenRowBytes(toToken(r), r.wseq), mac: r.mac, wseq: r.wseq });
          if (rows.length < PAGE) return;
          after = rows[rows.length - 1]!.id;
        }
      case 'watermarks':
        for (let after: [string, string] | null = null; ; ) {
          const rows: WatermarkRow[] = after
            ? yield* all<WatermarkRow>('SELECT * FROM watermarks WHERE key_id > ? OR (key_id = ? AND chain_id > ?) ORDER BY key_id, chain_id LIMIT ?', after[0], after[0], after[1], PAGE)
            : yield* all<WatermarkRow>('SELECT * FROM watermarks ORDER BY key_id, chain_id LIMIT ?', PAGE);
          for (const r of rows) visit({ pk: watermarkPk(r.key_id, r.chain_id), bytes: watermarkRowBytes(r.key_id, r.chain_id, toWatermark(r), r.wseq), mac: r.mac, wseq: r.wseq });
          if (rows.length < PAGE) return;
          const last = rows[rows.length - 1]!;
          after = [last.key_id, last.chain_id];
        }
      case 'meta':
        for (let after = ''; ; ) {
          const rows = yield* all<MetaRow>(`SELECT name, value, mac, wseq FROM meta WHERE name > ? AND ${COUNTED_META_SQL} ORDER BY name LIMIT ?`, after, PAGE);
          for (const r of rows) visit({ pk: r.name, bytes: metaRowBytes(r.name, r.value, r.wseq), mac: r.mac, wseq: r.wseq });
          if (rows.length < PAGE) return;
          after = rows[rows.length - 1]!.name;
        }
      case 'objects':
        // A database of schema 4 read by a tool that does not migrate (`audit verify`) has no
        // objects table yet: it holds no objects.
        if (!(yield* get(this.dialect.tableExists, 'objects'))) return;
        for (let after: [string, string] | null = null; ; ) {
          const rows: ObjectRow[] = after
            ? // A row comparison, which both databases answer from the primary-key index (the
              // OR of two ranges is a scan of the whole index in SQLite, for every page).
              yield* all<ObjectRow>(`SELECT ${OBJECT_HEAD} FROM objects WHERE (key_id, object_id) > (?, ?) ORDER BY key_id, object_id LIMIT ?`, after[0], after[1], OBJECT_PAGE)
            : yield* all<ObjectRow>(`SELECT ${OBJECT_HEAD} FROM objects ORDER BY key_id, object_id LIMIT ?`, OBJECT_PAGE);
          for (const r of rows) visit({ pk: objectPk(r.key_id, r.object_id), bytes: objectBytes(r), mac: r.mac, wseq: r.wseq });
          if (rows.length < OBJECT_PAGE) return;
          const last = rows[rows.length - 1]!;
          after = [last.key_id, last.object_id];
        }
    }
  }

  async sealRows(): Promise<number> {
    if (!this.auth) throw new CustosError('internal', 'Rows can only be sealed by an unsealed vault.');
    const auth = this.auth;
    const self = this;
    return this.writeTx(function* (cx) {
      // Sealing starts the write counter again: what a journal says of earlier writes is void.
      yield* run('DELETE FROM row_writes');
      let n = 0;
      for (const table of COUNTED_TABLES) {
        // Collected first: the rows are updated while walking them otherwise.
        const pks: string[] = [];
        yield* self.eachProtectedRow(table, (r) => pks.push(r.pk));
        for (const pk of pks) {
          yield* self.sealStored(cx, table, pk);
          n++;
        }
        yield* self.writeMeta(cx, COUNT_PREFIX + table, String(pks.length));
      }
      // Entries a sealed daemon wrote stay unauthenticated, as they were written.
      const audit = (yield* all<AuditRow>('SELECT * FROM audit WHERE mac IS NULL ORDER BY seq')).filter((r) => !isSealedEntry(toAudit(r)));
      for (const a of audit) yield* run('UPDATE audit SET mac = ? WHERE seq = ?', Buffer.from(auth.mac('audit', String(a.seq), auditRowBytes(a.seq, u8(a.hash)))), a.seq);
      yield* run("UPDATE meta SET value = ? WHERE name = 'schema_version'", String(SCHEMA_VERSION));
      return n + audit.length;
    }, true);
  }

  async checkRows(): Promise<string[]> {
    const auth = this.auth;
    if (!auth) throw new CustosError('internal', 'Rows can only be checked by an unsealed vault.');
    const self = this;
    return this.transact(function* () {
      const problems: string[] = [];
      let st: IntegrityState;
      try {
        st = (yield* self.checkedState()).st;
      } catch (e) {
        if (!(e instanceof CustosError)) throw e;
        return [e.message];
      }
      let digest = 0n;
      for (const table of COUNTED_TABLES) {
        let n = 0;
        yield* self.eachProtectedRow(table, (r) => {
          n++;
          if (!auth.check(table, r.pk, r.bytes, r.mac ? u8(r.mac) : null)) {
            auth.alarm(table, r.pk, r.mac ? 'mac_mismatch' : 'mac_missing');
            if (problems.length < 20) problems.push(`${TABLE_NOUN[table]} ${printable(r.pk, 80)}: ${r.mac ? 'does not match its MAC (edited outside Custos)' : 'has no MAC (inserted outside Custos)'}`);
            return;
          }
          digest += elementValue(auth.element(table, r.pk, r.bytes));
          // What this process will refuse to see older while it runs; keys too, up to a bound
          // on memory (beyond it, a key row is remembered once read).
          if (r.wseq !== null && (table !== 'keys' || n <= SEEN_KEYS_AT_OPEN)) self.seen.set(`${table}\0${r.pk}`, r.wseq);
        });
        const countRow = yield* get<{ value: string; mac: Buffer | null; wseq: number | null }>('SELECT value, mac, wseq FROM meta WHERE name = ?', COUNT_PREFIX + table);
        if (!countRow && (yield* self.countPending(null, table))) {
          // A table schema 5 added, before the upgrade's first write: it holds no row yet.
          if (n !== 0) {
            auth.alarm(table, '*', 'count_mismatch');
            problems.push(`the ${table} table holds ${n} protected rows where Custos wrote none (the database is of schema 4): rows were inserted outside Custos`);
          }
          continue;
        }
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
        if (countRow.wseq !== null) self.seen.set(`meta\0${COUNT_PREFIX}${table}`, countRow.wseq);
      }
      if (problems.length === 0 && digest % DIGEST_MODULUS !== st.digest) {
        auth.alarm('meta', STATE_ROW, 'digest_mismatch');
        problems.push(
          `the protected rows are not the ones this vault last wrote (their keyed digest differs from the state row of entry ${st.seq}): a row was deleted, inserted, or put back from an older copy outside Custos`,
        );
      }
      // Every row is vouched for as of this snapshot: from here on the write journal says what
      // other processes write.
      if (problems.length === 0 && !(self.journalMark !== null && self.journalMark >= st.writes)) self.journalMark = st.writes;
      return problems;
    }, 'snapshot');
  }

  async rowsDigest(): Promise<{ head: ChainHead; digest: RowsDigest }> {
    const self = this;
    // One snapshot: the head and the rows belong together.
    return this.transact(function* () {
      const head = yield* self.readHead();
      const tables = {} as RowsDigest['tables'];
      const counts = {} as RowsDigest['counts'];
      for (const table of COUNTED_TABLES) {
        const h = createHash('sha256').update(`custos-rows-v1\n${table}\n`);
        let n = 0;
        yield* self.eachProtectedRow(table, (r) => {
          // Length-prefixed, so that no two different row lists hash alike.
          const pk = Buffer.from(r.pk, 'utf8');
          h.update(`${pk.length}:`).update(pk).update(`${r.bytes.length}:`).update(r.bytes);
          n++;
        });
        // A table added after the first anchors is named only when it holds rows (rows.ts
        // DIGEST_V1_TABLES): an anchor signed before it existed still compares equal.
        if (n === 0 && !(DIGEST_V1_TABLES as readonly string[]).includes(table)) continue;
        tables[table] = bytesToHex(new Uint8Array(h.digest()));
        counts[table] = n;
      }
      return { head, digest: { tables, counts } };
    }, 'snapshot');
  }
}

/** The state row and the head entry as a process last checked or wrote them (SqlStore.stateSeen). */
interface StateSeen {
  /** The state row's value and MAC columns (its wseq column is always NULL). */
  value: string;
  mac: Buffer | null;
  /** What the value says: checked against its MAC when read, or written by this process. */
  st: IntegrityState;
  /** The head entry (`st.seq`) and its MAC column. */
  head: ChainHead;
  headMac: Buffer;
}

/** Two nullable byte columns, equal (null only to null). */
function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  return a === null || b === null ? a === b : equalBytes(a, b);
}

/** Whether a row read now has exactly the columns of one checked before (copyColumns). */
function sameColumns(before: Record<string, unknown>, row: object): boolean {
  const now = row as Record<string, unknown>;
  const names = Object.keys(now);
  if (names.length !== Object.keys(before).length) return false;
  for (const name of names) {
    if (!Object.hasOwn(before, name)) return false;
    const a = before[name];
    const b = now[name];
    if (b instanceof Uint8Array) {
      if (!(a instanceof Uint8Array) || a.length !== b.length || !Buffer.from(a.buffer, a.byteOffset, a.length).equals(b)) return false;
    } else if (a !== b || (typeof b === 'object' && b !== null)) {
      return false;
    }
  }
  return true;
}

/** A copy of a row's columns (bytes copied: a caller may wipe what it was given); null for a column of another kind. */
function copyColumns(row: object): Record<string, unknown> | null {
  const out: Record<string, unknown> = {};
  for (const [name, v] of Object.entries(row)) {
    if (v instanceof Uint8Array) out[name] = Uint8Array.from(v);
    else if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') out[name] = v;
    else return null;
  }
  return out;
}
