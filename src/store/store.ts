/**
 * The durable state of a vault behind one interface. SQLite is the embedded default;
 * PostgreSQL (several nodes on one database) is the second implementation; both pass the same
 * conformance suite (test/store/conformance.ts) and share their logic (engine.ts). Every
 * method is async so that a networked store fits.
 *
 * Writes go through `commit`: a batch of units written in ONE durable transaction (group
 * commit), each unit applied atomically on its own (a unit that fails, say on a taken label,
 * rolls back alone and the others still commit). A unit pairs state mutations with the audit
 * entries that describe them, so state never changes without its audit record.
 */
import type { AuditCheckpoint, AuditDraft, AuditEntry, KeyRecord, KeyState, Role, Scope } from '../core/types.js';
import type { RowAuthenticator, RowsDigest } from './rows.js';

export type StateMutation =
  | { kind: 'insertKey'; key: KeyRecord }
  | { kind: 'setKeyState'; id: string; state: Exclude<KeyState, 'destroyed'>; updatedAt: string }
  /** Overwrites the sealed material, then removes it; the row stays as a tombstone. */
  | { kind: 'destroyKey'; id: string; updatedAt: string }
  | { kind: 'insertToken'; token: ApiToken }
  /**
   * Replaces a token's credential hash and terms (rotate, revoke, a scope change) if the row
   * is still the one `expected` describes (its hash and terms): two admins racing in two
   * processes cannot both win. Fails `storage_unavailable:token_moved` otherwise.
   */
  | { kind: 'updateToken'; expected: ApiToken; token: ApiToken }
  /**
   * Replaces a key's attributes and sealed material (a new envelope, bound to the new
   * attributes) if the stored version is still `expectedVersion`; bumps the version. Used to
   * give a pre-purpose key its purpose, once.
   */
  | { kind: 'rewrapKey'; id: string; expectedVersion: number; version: number; attributes: KeyRecord['attributes']; sealed: Uint8Array; updatedAt: string }
  /**
   * Fails the unit (`key_disabled` / `key_destroyed`) unless the key is active at commit time:
   * a sign or export that raced a disable or destroy is refused instead of slipping through.
   */
  /** The key is active and, with `version`, still the version the decision read (its purpose, its attributes). */
  | { kind: 'assertKeyActive'; id: string; version?: number }
  /**
   * The principal's credential row (`<row id>/<first 8 bytes of its hash, hex>`) is still
   * current, checked inside the signing transaction (after the write journal is read): not
   * revoked, not expired, not rotated, not an older copy put back. Fails `unauthorized`.
   */
  | { kind: 'assertCredential'; credential: string; now: string }
  /**
   * Double-sign protection: moves a (key, chain) consensus watermark from `expected` (what the
   * caller read and decided on; null when there was none) to `next`, in the same transaction
   * as the audit entry. If another process moved it meanwhile the unit fails with
   * `storage_unavailable:watermark_moved`, and the caller decides again on the new state.
   */
  | { kind: 'advanceWatermark'; keyId: string; chainId: string; expected: WatermarkPosition | null; next: Watermark }
  /**
   * Sets a meta value (the seal record, policy state) if it still holds `expected` (null:
   * absent), in the same transaction as the audit entry; otherwise the unit fails with
   * `storage_unavailable:meta_moved` and the caller reads and decides again. With `value`
   * equal to `expected` it only guards: nothing is written.
   */
  | { kind: 'compareAndSetMeta'; name: string; expected: string | null; value: string | null }
  /**
   * Writes a new version of a (key, object) record (a Lightning channel monitor) if the stored
   * version is still `expectedVersion` (what the caller read and decided on; null when there
   * was no row), in the same transaction as the audit entry. If another process wrote it
   * meanwhile the unit fails with `storage_unavailable:object_moved` and the caller reads and
   * decides again. `version` (a u64) must be above the stored one, or the unit fails with
   * `conflict:object_version`: an object never goes back to an older state.
   */
  | { kind: 'putObject'; keyId: string; objectId: string; expectedVersion: bigint | null; version: bigint; record: Uint8Array };

/** What the audit view filters on: exact matches, and a cursor for the next (older) page. */
export interface AuditQuery {
  limit: number;
  before?: number;
  /** A key's id or label. */
  key?: string;
  principal?: string;
  operation?: string;
  outcome?: string;
}

/**
 * One versioned record of a key (a Lightning channel monitor), one row per object: only the
 * latest version is kept. `version` is a u64 (LDK uses u64::MAX for a closed channel's final
 * update), stored as decimal text. A destroyed key's objects stay (they are encrypted).
 */
export interface StoredObject {
  keyId: string;
  objectId: string;
  version: bigint;
  record: Uint8Array;
  /** SHA-256 of `record`, as stored beside it and checked against it when it was read (nobody hashes it again). */
  hash: Uint8Array;
}

/** Height, round and step (1 propose, 2 prevote, 3 precommit, as CometBFT's FilePV). */
export interface WatermarkPosition {
  height: bigint;
  round: number;
  step: number;
}

export interface Watermark extends WatermarkPosition {
  /** Canonical sign bytes of the message signed (or about to be) at this position. */
  signBytes: Uint8Array;
  /** Null between the decision and the signature (a crash there allows only identical bytes again). */
  signature: Uint8Array | null;
}

export function comparePosition(a: WatermarkPosition, b: WatermarkPosition): number {
  if (a.height !== b.height) return a.height < b.height ? -1 : 1;
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  return a.step === b.step ? 0 : a.step < b.step ? -1 : 1;
}

export interface WriteUnit {
  mutations: StateMutation[];
  audit: AuditDraft[];
}

export interface ChainHead {
  seq: number;
  hash: Uint8Array;
}

/** Computes an entry's hash from the previous head; supplied by the audit layer. */
export type Chainer = (prev: ChainHead, seq: number, ts: string, draft: AuditDraft) => Uint8Array;

export interface ApiToken {
  id: string;
  name: string;
  /** SHA-256 of the bearer token: the token itself is never stored. */
  hash: Uint8Array;
  /** What the role allows (accounts/principals.ts); `terms.scope` narrows it. */
  role: Role;
  createdAt: string;
  /** Everything else a principal carries; `{}` for a token made before scopes (an admin or an approver). */
  terms: TokenTerms;
}

/** A principal's scope, expiry, rate limit and revocation, stored as one canonical JSON column. */
export interface TokenTerms {
  scope?: Scope;
  /** ISO time after which the credential is refused. */
  expires_at?: string;
  /** `N/s`, `N/min` or `N/h`: requests this principal may make per process. */
  rate_limit?: string;
  /** ISO time of the revocation: the row stays, for the record; the credential is refused. */
  revoked_at?: string;
  /** ISO time the secret (or bound certificate) was last replaced. */
  rotated_at?: string;
  /** Client certificates: the bound certificate's SHA-256 (shown in listings; the hash is of it). */
  certificate_sha256?: string;
  /** Or the certificate name (`DNS:…`, `URI:…`, `CN=…`) any certificate from the client CA may carry. */
  certificate_name?: string;
}

export interface Store {
  readonly kind: string;
  /** Creates or upgrades the schema. */
  migrate(): Promise<void>;
  /**
   * From now on every protected row written carries a MAC, and every protected row read is
   * checked (a mismatch throws `database_corrupt:row_mac` and calls `alarm`). Without one
   * (read-only tools that hold no root key) rows are read unchecked.
   */
  setRowAuthenticator(auth: RowAuthenticator, chain?: Chainer): void;
  /**
   * Whether this database has ever been MACed (schema 3 or later, or MAC columns present):
   * such a database must carry valid MACs and an audit anchor from then on.
   */
  integrityEnabled(): Promise<boolean>;
  /**
   * Writes the MAC of every protected row that has none and sets the per-table counts
   * (upgrading a database from before row MACs). Returns the number of rows MACed.
   */
  sealRows(): Promise<number>;
  /**
   * Checks every protected row's MAC and every table count, the keyed digest of the rows
   * against the state row, and the state row against the head of the log; [] when sound.
   */
  checkRows(): Promise<string[]>;
  /** The head and the digest of every protected row, read in one snapshot. */
  rowsDigest(): Promise<{ head: ChainHead; digest: RowsDigest }>;
  /** Every consensus watermark (key id, chain id, position). */
  listWatermarks(): Promise<Array<{ keyId: string; chainId: string; height: bigint; round: number; step: number }>>;
  getMeta(name: string): Promise<string | null>;
  /** Meta rows whose name starts with `prefix`, by name (policy documents, policy state). */
  listMeta(prefix: string): Promise<Array<{ name: string; value: string }>>;
  /** Sets a value only if absent; returns false when it was already there. */
  initMeta(values: Record<string, string>): Promise<boolean>;
  /** Sets (or, with null, removes) a value, durably. */
  setMeta(name: string, value: string | null): Promise<void>;
  /** By stable id or by label. */
  findKey(ref: string): Promise<KeyRecord | null>;
  /**
   * A number that changes whenever any key row changes, in any process (the highest write
   * sequence of the keys table), or null without row MACs: what a front end's key index is
   * valid for.
   */
  keysVersion(): Promise<number | null>;
  /**
   * Every key at once, for tests and tools on small vaults (the vault itself lists by pages);
   * a row failing its MAC comes back with `tampered: true` (never usable).
   */
  listKeys(): Promise<Array<KeyRecord & { tampered?: true }>>;
  /**
   * One page of keys in label order, after the label `after` (exclusive), by the label index:
   * what a listing of a vault with millions of keys reads instead of every row.
   */
  listKeysPage(after: string | null, limit: number, prefix?: string): Promise<Array<KeyRecord & { tampered?: true }>>;
  /**
   * The keys with this public key, or carrying this indexed attribute (with this value, or any),
   * by an index; a row failing its check comes back `tampered`. What an agent, an adoption or a
   * refusal's explanation reads instead of every key.
   */
  findKeysBy(q: { publicKey: Uint8Array } | { attribute: IndexedAttribute; value?: string }): Promise<Array<KeyRecord & { tampered?: true }>>;
  /**
   * The keys not destroyed that carry an `expires_at` attribute (ssh-add -t lifetimes), checked,
   * by an index: what the expiry sweeper reads every few seconds instead of every key.
   */
  listExpiringKeys(): Promise<KeyRecord[]>;
  findToken(hash: Uint8Array): Promise<ApiToken | null>;
  /** A token row by its id or its (unique) name, checked; by index. */
  findTokenBy(key: { id: string } | { name: string }): Promise<ApiToken | null>;
  /**
   * Changes whenever any token row is written, in this process or another sharing the
   * database: an authentication cache is good only while this is unchanged. A row deleted
   * outside Custos (never done by Custos) changes it within a second.
   */
  tokensVersion(): Promise<string>;
  /**
   * Every token's id, name, role and creation time (hashes included; they are not secrets).
   * `skipCorrupt`: rows that fail their check are left out (and alarmed) instead of failing
   * the whole read, so one forged row does not lock every principal out.
   */
  listTokens(skipCorrupt?: boolean): Promise<ApiToken[]>;
  /**
   * The token rows written after write sequence `wseq`, checked (so their newest versions are
   * remembered), with their write sequences; rows failing their check are left out (and
   * alarmed). By the wseq index: what a process reads when the token rows change.
   */
  tokensWrittenAfter(wseq: number): Promise<Array<{ token: ApiToken; wseq: number }>>;
  getWatermark(keyId: string, chainId: string): Promise<Watermark | null>;
  /** One object's latest record, checked. */
  getObject(keyId: string, objectId: string): Promise<StoredObject | null>;
  /** A page of a key's objects in object_id order after `after` (exclusive), checked; for backups and restores of 100,000 objects. */
  listObjects(keyId: string, after: string | null, limit: number): Promise<StoredObject[]>;
  /** How many objects a key has (by the primary-key index). */
  countObjects(keyId: string): Promise<number>;
  /** One durable transaction; returns, per unit, null or the error that rolled it back. */
  commit(units: WriteUnit[], chain: Chainer, ts: string): Promise<Array<Error | null>>;
  auditHead(): Promise<ChainHead>;
  /**
   * The head, after checking (with row MACs on) that the rows belong to it and that no entry
   * after the last write was appended outside Custos: what a checkpoint may sign.
   */
  verifiedHead(): Promise<ChainHead>;
  /** Entries with seq > afterSeq, in order. */
  auditAfter(afterSeq: number, limit: number): Promise<AuditEntry[]>;
  auditTail(limit: number): Promise<AuditEntry[]>;
  /** The newest entries before `before` (a seq; none: from the head) matching every filter given, newest first. */
  auditQuery(q: AuditQuery): Promise<AuditEntry[]>;
  putCheckpoint(cp: AuditCheckpoint): Promise<void>;
  checkpoints(): Promise<AuditCheckpoint[]>;
  /** Storage-level consistency check; returns [] when sound, or the problems found. */
  integrityCheck(): Promise<string[]>;
  /**
   * Makes overwritten data (a destroyed key's envelope) unrecoverable from logs and free
   * pages. Returns false when it could not finish (another reader holds the log); retry later.
   */
  purgeFreed(): Promise<boolean>;
  close(): Promise<void>;
  /**
   * A store on a server: whether it answers now, and if not, why (what /healthz shows). Asking
   * while it is down starts a reconnection.
   */
  health?(): { ok: boolean; detail?: string };
}

export const GENESIS_HASH = new Uint8Array(32);

/** Key attributes the stores index: the socket a key was added over, a token object's CKA_ID. */
export const INDEXED_ATTRIBUTES = ['ssh.socket', 'pkcs11.id'] as const;
export type IndexedAttribute = (typeof INDEXED_ATTRIBUTES)[number];
