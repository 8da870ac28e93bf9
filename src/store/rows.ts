/**
 * Protected rows: the canonical bytes of every row that decides behaviour (key state and
 * attributes, API tokens, consensus watermarks, policy documents and budgets, agent hiding)
 * and of every audit entry, for the row MACs that make an edit with SQL visible.
 *
 * The database is treated as untrusted (DESIGN.md). Each protected row carries
 * HMAC-SHA256(K_rows, table ‖ primary key ‖ these bytes), K_rows derived from the root key, so
 * whoever can write the file but does not hold the root can neither edit a row, nor forge one,
 * nor move one under another primary key. Deleting rows is caught by a MACed count per table
 * (`integrity.count.<table>`), kept in the same transaction as every insert and delete. The
 * bytes are the same for every store implementation: a PostgreSQL store MACs what SQLite does.
 */
import { createHash } from 'node:crypto';
import { bytesToHex, utf8 } from '../core/bytes.js';
import { canonicalJson } from '../core/canonical.js';
import type { KeyRecord } from '../core/types.js';
import type { ApiToken, Watermark } from './store.js';

export const PROTECTED_TABLES = ['keys', 'api_tokens', 'watermarks', 'meta', 'audit'] as const;
export type ProtectedTable = (typeof PROTECTED_TABLES)[number];

/**
 * Meta rows read before the root key exists (to find and unseal the vault), and so not MACed.
 * Each is authenticated another way: the seal record by unsealing, the audit public key by
 * deriving it from the root, the vault id by every MAC and envelope that binds it.
 */
export const BOOTSTRAP_META: ReadonlySet<string> = new Set(['schema_version', 'vault_id', 'audit_public_key', 'seal', 'created_at']);

/** MACed counts of protected rows, one per counted table; themselves MACed, never counted. */
export const COUNT_PREFIX = 'integrity.count.';
export const COUNTED_TABLES = ['keys', 'api_tokens', 'watermarks', 'meta'] as const;
export type CountedTable = (typeof COUNTED_TABLES)[number];

export function isProtectedMeta(name: string): boolean {
  return !BOOTSTRAP_META.has(name);
}

/** Meta rows that count towards `integrity.count.meta`: every protected one except the counts. */
export function isCountedMeta(name: string): boolean {
  return isProtectedMeta(name) && !name.startsWith(COUNT_PREFIX);
}

const sha = (b: Uint8Array | null): string | null => (b === null ? null : createHash('sha256').update(b).digest('hex'));

export function keyRowBytes(k: KeyRecord): Uint8Array {
  return utf8(
    JSON.stringify([k.id, k.label, k.algorithm, bytesToHex(k.publicKey), k.state, k.exportable, k.origin, k.version, k.createdAt, k.updatedAt, sha(k.sealed), canonicalJson(k.attributes)]),
  );
}

export function tokenRowBytes(t: ApiToken): Uint8Array {
  return utf8(JSON.stringify([t.id, t.name, bytesToHex(t.hash), t.role, t.createdAt]));
}

export const watermarkPk = (keyId: string, chainId: string): string => JSON.stringify([keyId, chainId]);

export function watermarkRowBytes(keyId: string, chainId: string, w: Watermark): Uint8Array {
  return utf8(JSON.stringify([keyId, chainId, w.height.toString(), w.round, w.step, bytesToHex(w.signBytes), w.signature === null ? null : bytesToHex(w.signature)]));
}

export function metaRowBytes(name: string, value: string): Uint8Array {
  return utf8(JSON.stringify([name, value]));
}

/** An audit entry's hash already covers its content; the MAC binds the hash to its place. */
export function auditRowBytes(seq: number, hash: Uint8Array): Uint8Array {
  return utf8(JSON.stringify([seq, bytesToHex(hash)]));
}

/** Computes and checks row MACs; held by an unsealed vault and given to its store. */
export interface RowAuthenticator {
  mac(table: ProtectedTable, pk: string, bytes: Uint8Array): Uint8Array;
  /** Constant-time. */
  check(table: ProtectedTable, pk: string, bytes: Uint8Array, mac: Uint8Array | null): boolean;
  /** Told of every row that fails its check (the alert metric and log line). */
  alarm(table: ProtectedTable, pk: string, problem: string): void;
}

/** The digest of every protected row (not the audit log), per table, in primary-key order. */
export interface RowsDigest {
  tables: Record<CountedTable, string>;
  /** Rows per table. */
  counts: Record<CountedTable, number>;
}
