/**
 * Grants: how an account delegates a right over its own keys. An account's keys are its own
 * (principals.ts `keyInScope`); a grant, made by the account in its session, lets one named
 * principal (`token:<name>` or `cert:<name>`) read, verify or sign with the keys whose names
 * match its globs, until it expires or the account revokes it. Export is never granted: a key
 * leaves only into its account's own session. The principal's own role must allow the
 * operation too. Grants are protected rows `account_grant.<account id>.<grant id>`.
 */
import { CustosError } from '../core/errors.js';
import { matchesGlob } from './principals.js';

export const GRANT_PREFIX = 'account_grant.';
export const GRANTABLE = ['read', 'verify', 'sign'] as const;

export interface Grant {
  id: string;
  principal: string;
  operations: Array<(typeof GRANTABLE)[number]>;
  /** Globs over the account's key names. */
  keys: string[];
  created_at: string;
  expires_at: string | null;
}

const PRINCIPAL_RE = /^(token|cert):[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const GLOB_RE = /^[A-Za-z0-9._:@*?-]{1,64}$/;

/** Checks a grant's terms as asked for; throws `bad_request` with a sentence. */
export function checkGrant(g: { principal: unknown; operations: unknown; keys: unknown; expires_at?: unknown }): Pick<Grant, 'principal' | 'operations' | 'keys' | 'expires_at'> {
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

/** Whether any of an account's grant rows lets `principal` do `op` on its key `name` at `now`. */
export function grantAllows(rows: Array<{ name: string; value: string }>, principal: string, op: string, name: string, now: number): boolean {
  for (const r of rows) {
    let g: Grant;
    try {
      g = JSON.parse(r.value) as Grant;
    } catch {
      continue;
    }
    if (g.principal !== principal || !(g.operations as string[]).includes(op)) continue;
    if (g.expires_at !== null && !(Date.parse(g.expires_at) > now)) continue;
    if (g.keys.some((k) => matchesGlob(k, name))) return true;
  }
  return false;
}
