/**
 * Protected rows: the canonical bytes of every row that decides behaviour (key state and
 * attributes, API tokens, consensus watermarks, policy documents and budgets, agent hiding,
 * versioned objects such as Lightning channel state) and of every audit entry, for the row
 * MACs that make an edit with SQL visible.
 *
 * The database is treated as untrusted (DESIGN.md). Three things together:
 *  - Each protected row carries HMAC-SHA256(K_rows, table ‖ primary key ‖ these bytes), K_rows
 *    derived from the root key: whoever can write the file but does not hold the root can
 *    neither edit a row, nor forge one, nor move one under another primary key.
 *  - Each row's bytes include its write sequence (`wseq`), taken from a counter that every
 *    write advances: a process never accepts a row older than one it has already seen (an
 *    old copy of a watermark or of a key's state put back), whichever process wrote it.
 *  - The state row `integrity.state` holds the audit head the rows belong to, the write
 *    counter, and a keyed multiset digest of every protected row (MSet-Add-Hash, Clarke et
 *    al., ASIACRYPT 2003: the sum mod 2^512 of HMAC-SHA512 under a second root-derived key,
 *    updated by subtracting a row's old element and adding its new one). It is MACed and
 *    written in every transaction, so at open a row that is missing, extra or older than the
 *    rest, or rows older than the log, differ from it.
 * Deletions are also caught while running by a MACed count per table (`integrity.count.*`),
 * checked whenever a row a decision needs is absent. The bytes are the same for every store
 * implementation: a PostgreSQL store MACs what SQLite does.
 */
import { sha256hex } from '../crypto/digest.js';
import { bytesToHex, utf8 } from '../core/bytes.js';
import { canonicalJson } from '../core/canonical.js';
import type { KeyRecord } from '../core/types.js';
import type { AuditEntry } from '../core/types.js';
import type { ApiToken, Watermark } from './store.js';

export const PROTECTED_TABLES = ['keys', 'api_tokens', 'watermarks', 'meta', 'audit', 'row_writes', 'objects'] as const;
export type ProtectedTable = (typeof PROTECTED_TABLES)[number];

/**
 * Meta rows read before the root key exists (to find and unseal the vault), and so not MACed.
 * Each is authenticated another way: the seal record by unsealing, the audit public key by
 * deriving it from the root, the vault id by every MAC and envelope that binds it.
 */
export const BOOTSTRAP_META: ReadonlySet<string> = new Set(['schema_version', 'vault_id', 'audit_public_key', 'seal', 'created_at']);

/** Bookkeeping rows (counts, the state row): MACed, never counted, never in a digest. */
export const INTEGRITY_PREFIX = 'integrity.';
/** MACed counts of protected rows, one per counted table. */
export const COUNT_PREFIX = 'integrity.count.';
/** `{ seq, writes, digest }`: the audit head the rows belong to, the write counter, the keyed digest. */
export const STATE_ROW = 'integrity.state';
export const COUNTED_TABLES = ['keys', 'api_tokens', 'watermarks', 'meta', 'objects'] as const;
export type CountedTable = (typeof COUNTED_TABLES)[number];
/**
 * The tables every row digest names (those of schema 4 and of the anchors it signed). A table
 * added since (`objects`, schema 5) is named only when it holds rows: an anchor signed before
 * it existed, or while it was empty, still compares equal to a database whose table is empty.
 */
export const DIGEST_V1_TABLES = ['keys', 'api_tokens', 'watermarks', 'meta'] as const;
export type DigestV1Table = (typeof DIGEST_V1_TABLES)[number];

export function isProtectedMeta(name: string): boolean {
  return !BOOTSTRAP_META.has(name);
}

/** Meta rows that count towards `integrity.count.meta`: every protected one but the bookkeeping. */
export function isCountedMeta(name: string): boolean {
  return isProtectedMeta(name) && !name.startsWith(INTEGRITY_PREFIX);
}

/**
 * Meta rows whose absence a decision would obey (a budget deleted is a budget refilled, a
 * hiding deleted shows a removed key again, a generation deleted with the documents drops
 * every policy, the accounts' OPAQUE setup deleted would be made again): reading one that is
 * absent checks the table's count.
 */
export function absenceMatters(name: string): boolean {
  // (Not login guards: every start for a fresh name reads an absent one, and a count per start
  // would let anyone load the database; a guard deleted with SQL is found by the next start's
  // check of the rows' digest.)
  return name.startsWith('policy_state.') || name.startsWith('ssh_agent.') || name === POLICY_GENERATION_ROW || name === 'accounts.opaque_setup' || name === 'account.decoy';
}

/**
 * Bumped by every policy upload and retirement, and written ("0") when a vault is created or
 * upgraded, so that it is never legitimately absent: deleting it with the documents is caught.
 */
export const POLICY_GENERATION_ROW = 'policy_generation';

/**
 * The entries a sealed daemon appends with no key (unseal attempts, daemon/unseal.ts): the
 * only entries that may lack a MAC, recognised by their exact shape. They change no row;
 * `audit tail` shows them as unauthenticated, since anyone able to write the file could
 * append one.
 */
export function isSealedEntry(e: Pick<AuditEntry, 'operation' | 'principal' | 'keyId' | 'keyLabel' | 'outcome' | 'details'>): boolean {
  const d: unknown = e.details;
  return (
    e.operation === 'unseal' &&
    e.principal === 'unauthenticated' &&
    e.keyId === null &&
    e.keyLabel === null &&
    (e.outcome === 'ok' || e.outcome === 'denied' || e.outcome === 'failed') &&
    typeof d === 'object' &&
    d !== null &&
    !Array.isArray(d) &&
    Object.keys(d).length <= 16 &&
    Object.values(d).every((v) => typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && v.length <= 200))
  );
}

const sha = (b: Uint8Array | null): string | null => (b === null ? null : sha256hex(b));

/** `wseq`: the row's write sequence (null only in a database from before row MACs). */
export function keyRowBytes(k: KeyRecord, wseq: number | null): Uint8Array {
  return utf8(
    JSON.stringify([k.id, k.label, k.algorithm, bytesToHex(k.publicKey), k.state, k.exportable, k.origin, k.version, k.createdAt, k.updatedAt, sha(k.sealed), canonicalJson(k.attributes), wseq]),
  );
}

/** Terms (scope, expiry, revocation) join the bytes only when there are any: older rows keep their MACs. */
export function tokenRowBytes(t: ApiToken, wseq: number | null): Uint8Array {
  const terms = tokenTermsJson(t.terms);
  return utf8(JSON.stringify(terms === '{}' ? [t.id, t.name, bytesToHex(t.hash), t.role, t.createdAt, wseq] : [t.id, t.name, bytesToHex(t.hash), t.role, t.createdAt, terms, wseq]));
}

/** The stored form of a token's terms: canonical JSON, so the same terms give the same bytes in every store. */
export function tokenTermsJson(terms: ApiToken['terms']): string {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(sorted) : typeof v === 'object' && v !== null ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, x]) => [k, sorted(x)])) : v;
  return JSON.stringify(sorted(terms));
}

export const watermarkPk = (keyId: string, chainId: string): string => JSON.stringify([keyId, chainId]);

export function watermarkRowBytes(keyId: string, chainId: string, w: Watermark, wseq: number | null): Uint8Array {
  return utf8(JSON.stringify([keyId, chainId, w.height.toString(), w.round, w.step, bytesToHex(w.signBytes), w.signature === null ? null : bytesToHex(w.signature), wseq]));
}

export const objectPk = (keyId: string, objectId: string): string => JSON.stringify([keyId, objectId]);

/**
 * A versioned object (store.ts `StoredObject`): the version as decimal text (u64), and the
 * record by its SHA-256 (records can be megabytes; the MAC and the digest element then cost
 * one hash of it).
 */
/**
 * An object row's MAC covers its record's SHA-256 (a column of its own, checked against the
 * record whenever the record is read), not the record: a check of every row at open reads the
 * hashes, never the records (100,000 channel monitors are gigabytes).
 */
export function objectRowBytes(keyId: string, objectId: string, version: bigint, recordSha256: string, wseq: number | null): Uint8Array {
  return utf8(JSON.stringify([keyId, objectId, version.toString(), recordSha256, wseq]));
}

/** The hex SHA-256 stored beside a record. */
export const recordSha256 = (record: Uint8Array): string => sha(record)!;

export function metaRowBytes(name: string, value: string, wseq: number | null): Uint8Array {
  return utf8(JSON.stringify([name, value, wseq]));
}

/** An audit entry's hash already covers its content; the MAC binds the hash to its place. */
export function auditRowBytes(seq: number, hash: Uint8Array): Uint8Array {
  return utf8(JSON.stringify([seq, bytesToHex(hash)]));
}

/**
 * The write journal (`row_writes`): which row each write sequence went to (or that it deleted
 * the row). Every process sharing the database reads the entries written since it last looked,
 * so it knows each row's newest write sequence even for rows it never read: an older copy put
 * back is refused by every node, not only by the one that wrote the newer copy.
 */
export function journalRowBytes(table: string, pk: string, deleted: boolean): Uint8Array {
  return utf8(JSON.stringify([table, pk, deleted]));
}

/** Computes and checks row MACs; held by an unsealed vault and given to its store. */
export interface RowAuthenticator {
  mac(table: ProtectedTable, pk: string, bytes: Uint8Array): Uint8Array;
  /** Constant-time. */
  check(table: ProtectedTable, pk: string, bytes: Uint8Array, mac: Uint8Array | null): boolean;
  /** Told of every row that fails its check (the alert metric and log line). */
  alarm(table: ProtectedTable, pk: string, problem: string): void;
  /** The row's element of the keyed multiset digest: 64 bytes, under a key of its own. */
  element(table: ProtectedTable, pk: string, bytes: Uint8Array): Uint8Array;
}

/** Arithmetic of the multiset digest: elements and sums are integers mod 2^512. */
export const DIGEST_MODULUS = 1n << 512n;
export const elementValue = (e: Uint8Array): bigint => BigInt(`0x${bytesToHex(e)}`);
export const digestHex = (d: bigint): string => d.toString(16).padStart(128, '0');

/**
 * The digest of every protected row (not the audit log), per table, in primary-key order. The
 * tables of DIGEST_V1_TABLES are always named; a later one only when it holds rows.
 */
export interface RowsDigest {
  tables: Record<DigestV1Table, string> & Partial<Record<CountedTable, string>>;
  /** Rows per table. */
  counts: Record<DigestV1Table, number> & Partial<Record<CountedTable, number>>;
}
