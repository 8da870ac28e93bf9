/**
 * Accounts' rows and names: the account types, an account as stored and as shown, the rows
 * they live in, and what a user name may be.
 *
 * Everything lives in protected rows (row MACs, write journal, audit-bound digest), as meta
 * rows: `account.<id>` (the account, its user_seed sealed under a subkey of the root),
 * `account_name.<sha256 of the name>` (its id), `account.decoy` (what an unknown name reads
 * instead) and `login_guard.<name|addr>.<sha256>` (the counters, shared by every node on the
 * database and kept across restarts; a deleted one is noticed, accounts/guard.ts).
 */
import { CustosError } from '../core/errors.js';
import { sha256hex } from './core.js';

export const ACCOUNT_TYPES = ['self-custodial', 'delegated', 'service'] as const;
export type AccountType = (typeof ACCOUNT_TYPES)[number];

export interface Account {
  id: string;
  name: string;
  type: AccountType;
  createdAt: string;
  /** Whether a password is registered. */
  registered: boolean;
  passwordVersion: number;
  /** What a session opened now is bound to: a password change or an end-all moves it, and every older session ends. */
  epoch: string;
}

export interface AccountRow {
  id: string;
  name: string;
  type: AccountType;
  created_at: string;
  /** The user_seed, sealed (base64). */
  seed: string;
  record: string | null;
  password_version: number;
  /** The one-time registration code's SHA-256 (hex) and its deadline (ms), while one is open. */
  registration: { hash: string; expires: number } | null;
  /** Bumped to end every session of the account at once. */
  session_epoch?: number;
}

export const SETUP_ROW = 'accounts.opaque_setup';
export const DECOY_ID = 'decoy';
const NAME_RE = /^[\p{L}\p{N}._@+-]{1,128}$/u;
/** Compare-and-set attempts on an account's or a guard's row before giving up with a retry. */
export const CAS_ATTEMPTS = 8;

export const accountRow = (id: string) => `account.${id}`;
export const nameRow = (name: string) => `account_name.${sha256hex(name)}`;
export const guardRow = (kind: 'name' | 'addr', v: string) => `login_guard.${kind}.${sha256hex(v)}`;

export function checkAccountName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name) || name !== name.normalize('NFC')) {
    throw new CustosError('bad_request', 'A user name is 1–128 letters, digits and . _ @ + - (Unicode NFC).');
  }
  return name;
}
