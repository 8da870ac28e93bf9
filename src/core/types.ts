/** Domain types shared by every layer: keys, principals, sign requests, audit entries. */
import type { KeyUse } from './purpose.js';

export const ALGORITHMS = [
  'ed25519',
  /** Ed25519 held as a 64-byte expanded secret (a ‖ RH) with no seed: Tor's key files and blinded keys. */
  'ed25519-expanded',
  'secp256k1',
  'secp256k1-bip340',
  'p256',
  /** Tor's RSA keys only (relay identity, directory authorities): purpose tor, never anything else. */
  'rsa-1024',
  /** X25519 key agreement (Tor's ntor and descriptor-decryption keys): purpose tor; it signs nothing. */
  'x25519',
  'rsa-2048',
  'rsa-3072',
  'rsa-4096',
] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

export function isAlgorithm(s: string): s is Algorithm {
  return (ALGORITHMS as readonly string[]).includes(s);
}

export type KeyState = 'active' | 'disabled' | 'destroyed';
export type KeyOrigin = 'generated' | 'imported';

/** A key as the vault knows it. The secret is never here: only its sealed envelope. */
export interface KeyRecord {
  id: string;
  label: string;
  algorithm: Algorithm;
  /** Canonical raw public key (see crypto/algorithms.ts for each algorithm's form). */
  publicKey: Uint8Array;
  state: KeyState;
  exportable: boolean;
  origin: KeyOrigin;
  /** Bumped when the sealed material is rewritten; bound into the envelope's associated data. */
  version: number;
  createdAt: string;
  updatedAt: string;
  /** Envelope-encrypted secret (nonce ‖ ciphertext ‖ tag); null once destroyed. */
  sealed: Uint8Array | null;
  /**
   * Fixed at creation and bound into the envelope: what a front end recorded about the key
   * (`ssh.comment`, `ssh.socket`) and `expires_at` (ISO time after which the key is unusable
   * and is destroyed by the vault's sweeper).
   */
  attributes: KeyAttributes;
}

export type KeyAttributes = Record<string, string | number | boolean>;

/** Who is asking. Each front end authenticates its callers into one of these. */
export interface Principal {
  /** Stable name: `token:admin`, `ssh-agent:/run/custos/agent.sock`, `privval:cosmoshub-4`, `peer:node-b` (a cosigner). */
  id: string;
  kind: 'admin' | 'token' | 'agent' | 'privval' | 'system' | 'account' | 'peer';
  /** API principals (tokens and client certificates): what the role allows (accounts/principals.ts). */
  role?: Role;
  /** API principals but admins: the operations and keys they may use. Absent on a token principal: nothing. */
  scope?: Scope;
  /** API principals: the id of the credential row they were authenticated by (re-checked after a wait). */
  credential?: string;
  /** An account's session (kind `account`): the account's id. Its keys are its own, and it has no others. */
  account?: string;
  /**
   * Rows that must still hold these values when anything this principal does commits: an
   * account session's row and its account's row, as its call found them. A logout, a password
   * change or an end-all meanwhile makes the call's commit fail, so nothing it made is released.
   */
  guards?: Array<{ name: string; value: string }>;
}

/** An API principal's role: the most it may be given. */
export type Role = 'admin' | 'operator' | 'signer' | 'approver' | 'auditor';

/** A principal (an API token or a client certificate) as the HTTP API shows it, and the SDK returns it. */
export interface PrincipalView {
  id: string;
  name: string;
  /** `token:<name>` or `cert:<name>`: how the audit log names it. */
  principal: string;
  role: Role;
  operations: string[];
  keys: string[];
  tags: string[];
  expires_at: string | null;
  rate_limit: string | null;
  certificate_sha256: string | null;
  certificate_name: string | null;
  state: 'active' | 'expired' | 'revoked';
  revoked_at: string | null;
  rotated_at: string | null;
  created_at: string;
}

/** What an API principal may do: operations, on keys whose label matches a glob and that carry a tag (empty: any). */
export interface Scope {
  operations: string[];
  keys: string[];
  tags: string[];
}

export type SignatureEncoding = 'raw' | 'der';
/** `sha1` exists only for legacy RSA `ssh-rsa` signatures, which old SSH clients still ask for. */
export type HashName = 'sha1' | 'sha256' | 'sha384' | 'sha512';
export type RsaPadding = 'pkcs1' | 'pss';

export interface SignOptions {
  /** ECDSA only: `raw` is r‖s (fixed width), `der` the ASN.1 SEQUENCE. */
  encoding?: SignatureEncoding;
  /** Hash applied to a message (ECDSA, RSA). */
  hash?: HashName;
  /** RSA only. */
  padding?: RsaPadding;
  /** BIP340 only: 32 bytes of auxiliary randomness; random when absent. */
  auxRand?: Uint8Array;
}

/** The payload is either a message or, where the algorithm allows, a pre-computed digest. */
export type SignPayload = { kind: 'message'; bytes: Uint8Array } | { kind: 'digest'; bytes: Uint8Array };

export interface SignRequest {
  requestId: string;
  principal: Principal;
  /** Key id or label. */
  key: string;
  payload: SignPayload;
  options: SignOptions;
  /** Protocol context for audit and policy (`{ protocol: 'http' }`, later ssh user@host, chain id). */
  context: Record<string, string>;
  /** HD master keys only: the derivation path of the child key that signs (`m/44'/0'/0'/0/7`). */
  path?: string;
  /**
   * What the front end is asking for, checked against the key's purpose (core/purpose.ts).
   * Absent: `derived` with a path, `ssh` from the ssh-agent, else `raw`. The privval connector
   * says `consensus` for vote extensions and v1 SignBytes, which only consensus keys sign.
   */
  use?: KeyUse;
}

export interface SignResult {
  keyId: string;
  algorithm: Algorithm;
  signature: Uint8Array;
  encoding: string;
}

export type AuditOutcome = 'ok' | 'denied' | 'failed' | 'decided';

/** An audit entry before it is chained: what happened, never a secret or a message body. */
export interface AuditDraft {
  requestId: string;
  principal: string;
  operation: string;
  keyId: string | null;
  keyLabel: string | null;
  outcome: AuditOutcome;
  /** Stable code of a denial or failure, or null. */
  reason: string | null;
  /** Hashes and small facts: `{ message_sha256, signature_sha256, algorithm }`. */
  details: Record<string, string | number | boolean>;
}

/** A chained entry as stored. */
export interface AuditEntry extends AuditDraft {
  seq: number;
  ts: string;
  prevHash: Uint8Array;
  hash: Uint8Array;
  /** The row MAC (store/rows.ts), as stored; null for an entry written while sealed, before adoption. */
  mac?: Uint8Array | null;
}

export interface AuditCheckpoint {
  seq: number;
  hash: Uint8Array;
  ts: string;
  signature: Uint8Array;
}
