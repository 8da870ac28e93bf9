/**
 * The durable state of a vault behind one interface. SQLite is the embedded default;
 * PostgreSQL will be a second implementation passing the same conformance suite
 * (test/store/conformance.ts). Every method is async so that a networked store fits.
 *
 * Writes go through `commit`: a batch of units written in ONE durable transaction (group
 * commit), each unit applied atomically on its own (a unit that fails, say on a taken label,
 * rolls back alone and the others still commit). A unit pairs state mutations with the audit
 * entries that describe them, so state never changes without its audit record.
 */
import type { AuditCheckpoint, AuditDraft, AuditEntry, KeyRecord, KeyState } from '../core/types.js';

export type StateMutation =
  | { kind: 'insertKey'; key: KeyRecord }
  | { kind: 'setKeyState'; id: string; state: Exclude<KeyState, 'destroyed'>; updatedAt: string }
  /** Overwrites the sealed material, then removes it; the row stays as a tombstone. */
  | { kind: 'destroyKey'; id: string; updatedAt: string }
  | { kind: 'insertToken'; token: ApiToken }
  /**
   * Fails the unit (`key_disabled` / `key_destroyed`) unless the key is active at commit time:
   * a sign or export that raced a disable or destroy is refused instead of slipping through.
   */
  | { kind: 'assertKeyActive'; id: string };

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
  role: 'admin';
  createdAt: string;
}

export interface Store {
  readonly kind: string;
  /** Creates or upgrades the schema. */
  migrate(): Promise<void>;
  getMeta(name: string): Promise<string | null>;
  /** Sets a value only if absent; returns false when it was already there. */
  initMeta(values: Record<string, string>): Promise<boolean>;
  /** Sets (or, with null, removes) a value, durably. */
  setMeta(name: string, value: string | null): Promise<void>;
  /** By stable id or by label. */
  findKey(ref: string): Promise<KeyRecord | null>;
  listKeys(): Promise<KeyRecord[]>;
  findToken(hash: Uint8Array): Promise<ApiToken | null>;
  /** One durable transaction; returns, per unit, null or the error that rolled it back. */
  commit(units: WriteUnit[], chain: Chainer, ts: string): Promise<Array<Error | null>>;
  auditHead(): Promise<ChainHead>;
  /** Entries with seq > afterSeq, in order. */
  auditAfter(afterSeq: number, limit: number): Promise<AuditEntry[]>;
  auditTail(limit: number): Promise<AuditEntry[]>;
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
}

export const GENESIS_HASH = new Uint8Array(32);
