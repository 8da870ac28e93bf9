/**
 * Grants: how an account delegates a right over its own keys. An account's keys are its own
 * (principals.ts `keyInScope`); a grant, made by the account in its session, lets one named
 * principal (`token:<name>` or `cert:<name>`) read, verify or sign with the keys whose names
 * match its globs, until it expires or the account revokes it. Export is never granted: a key
 * leaves only into its account's own session. The principal's own role must allow the
 * operation too. Grants are protected rows `account_grant.<account id>.<grant id>`.
 */
import { CustosError } from '../core/errors.js';
import type { KeyRecord, Principal } from '../core/types.js';
import type { Store } from '../store/store.js';
import { keyOwner, matchesGlob, permits, type Operation } from './principals.js';

export const GRANT_PREFIX = 'account_grant.';
export const GRANTABLE = ['read', 'verify', 'sign'] as const;

export interface Grant {
  id: string;
  principal: string;
  /** The principal's credential row when granted: a principal made later under the same name is not it. */
  credential_row: string;
  operations: Array<(typeof GRANTABLE)[number]>;
  /** Globs over the account's key names. */
  keys: string[];
  created_at: string;
  expires_at: string | null;
}

const PRINCIPAL_RE = /^(token|cert):[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
/** The most live grants an account holds. */
export const MAX_GRANTS = 64;
const GLOB_RE = /^[A-Za-z0-9._:@*?-]{1,64}$/;

/** Checks a grant's terms as asked for; throws `bad_request` with a sentence. */
export function checkGrant(g: { principal: unknown; operations: unknown; keys: unknown; expires_at?: unknown }): Pick<Grant, 'principal' | 'operations' | 'keys' | 'expires_at'> {
  // (The principal must exist: the vault binds the grant to its credential row.)
  if (typeof g.principal !== 'string' || !PRINCIPAL_RE.test(g.principal)) throw new CustosError('bad_request', 'A grant names one principal: token:<name> or cert:<name>.');
  if (!Array.isArray(g.operations) || g.operations.length === 0 || !g.operations.every((o) => (GRANTABLE as readonly unknown[]).includes(o))) throw new CustosError('bad_request', `A grant's operations are some of ${GRANTABLE.join(', ')} (export is never granted).`);
  if (!Array.isArray(g.keys) || g.keys.length === 0 || g.keys.length > 32 || !g.keys.every((k) => typeof k === 'string' && GLOB_RE.test(k))) throw new CustosError('bad_request', 'A grant names 1–32 globs over the account\'s key names.');
  let expires: string | null = null;
  if (g.expires_at !== undefined && g.expires_at !== null) {
    if (typeof g.expires_at !== 'string' || !(Date.parse(g.expires_at) > Date.now())) throw new CustosError('bad_request', 'expires_at is an ISO time in the future.');
    expires = new Date(Date.parse(g.expires_at)).toISOString();
  }
  return { principal: g.principal, operations: [...new Set(g.operations)] as Grant['operations'], keys: g.keys as string[], expires_at: expires };
}

/** Whether a grant is past its expiry at `now`. */
export const grantExpired = (g: Pick<Grant, 'expires_at'>, now: number): boolean => g.expires_at !== null && !(Date.parse(g.expires_at) > now);

/**
 * The grant among an account's rows that lets `principal` (authenticated by credential row
 * `credentialRow`) do `op` on its key `name` at `now`, if any.
 */
export function grantAllows(rows: Array<{ name: string; value: string }>, principal: string, credentialRow: string | undefined, op: string, name: string, now: number): Grant | null {
  if (!(GRANTABLE as readonly string[]).includes(op) || credentialRow === undefined) return null;
  for (const r of rows) {
    let g: Grant;
    try {
      g = JSON.parse(r.value) as Grant;
    } catch {
      continue;
    }
    if (g.principal !== principal || g.credential_row !== credentialRow || !(g.operations as string[]).includes(op)) continue;
    if (grantExpired(g, now)) continue;
    if (g.keys.some((k) => matchesGlob(k, name))) return g;
  }
  return null;
}

/**
 * Whether an account granted this principal `op` on this key of its own: a live grant naming
 * the principal (by its credential row), the operation (read, verify or sign; never export) and
 * a glob matching the key's name, with the principal's role allowing the operation too. Read
 * from the store each time, so a revocation is in force at the next request (and after a wait
 * for approval, where the vault asks again).
 */
export async function granted(store: Pick<Store, 'listMeta'>, p: Principal, op: Operation, key: Pick<KeyRecord, 'label' | 'attributes'>): Promise<boolean> {
  const owner = keyOwner(key);
  if (owner === undefined || p.credential === undefined || !(GRANTABLE as readonly string[]).includes(op) || !permits(p, op)) return false;
  if (!key.label.startsWith(`${owner}.`)) return false;
  return grantAllows(await store.listMeta(`${GRANT_PREFIX}${owner}.`), p.id, p.credential.split('/')[0], op, key.label.slice(owner.length + 1), Date.now()) !== null;
}
