/**
 * Password-guessing limits: what a login attempt may do given the failures recorded for its
 * user name and for its source address. Pure logic over a small JSON state that the vault keeps
 * in protected rows (so counters survive restarts and are shared by every node on the database,
 * and a row edited with SQL is refused, not obeyed).
 *
 * - Each failure (a login started and not finished with the right password) doubles the wait
 *   before the next attempt: 1 s, 2 s, 4 s … up to `maxDelaySeconds`.
 * - `maxFailures` failures within `windowSeconds` lock the name (default 5 in 15 minutes) until
 *   an operator unlocks it or `lockSeconds` pass (0: only an operator unlocks).
 * - An address may have `addressMaxFailures` failures within the window, over all names, so one
 *   address cannot guess across many names faster than that.
 * - A success clears the name's record and takes back the address's count for that attempt.
 * Unknown names are guarded exactly like real ones, so a lock says nothing about existence.
 */
import { CustosError } from '../core/errors.js';

export interface GuardPolicy {
  maxFailures: number;
  windowSeconds: number;
  lockSeconds: number;
  maxDelaySeconds: number;
  /** Failures an address may have within the window before it is refused (over all names). */
  addressMaxFailures: number;
}

export const DEFAULT_GUARD: GuardPolicy = { maxFailures: 5, windowSeconds: 900, lockSeconds: 900, maxDelaySeconds: 60, addressMaxFailures: 50 };

/** What is recorded per name or per address. Times are milliseconds since the epoch. */
export interface GuardState {
  /** Failures within the current window, when the window began, and the newest. */
  failures: number;
  since: number;
  last: number;
  /** The earliest time of the next attempt. */
  next: number;
}

export const EMPTY_GUARD: GuardState = { failures: 0, since: 0, last: 0, next: 0 };

export function parseGuard(raw: string | null): GuardState {
  if (raw === null) return EMPTY_GUARD;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    v = null;
  }
  const o = v as Partial<Record<keyof GuardState, unknown>> | null;
  const num = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  if (!o || typeof o !== 'object' || Object.keys(o).length !== 4 || !num(o.failures) || !num(o.since) || !num(o.last) || !num(o.next)) {
    throw new CustosError('database_corrupt', 'A login-guard record is not in the form Custos writes; restore the database from a backup.');
  }
  return { failures: o.failures as number, since: o.since as number, last: o.last as number, next: o.next as number };
}

export function formatGuard(g: GuardState): string | null {
  if (g.failures === 0) return null;
  return JSON.stringify({ failures: g.failures, since: g.since, last: g.last, next: g.next });
}

export type Verdict = { allowed: true } | { allowed: false; reason: 'locked' | 'slow_down'; retryAfterSeconds: number | null };

/**
 * Whether an attempt may go on now, for a name and for an address. `own`: failures recorded for
 * this very attempt (a finish excludes the one its start recorded).
 */
export function mayAttempt(name: GuardState, address: GuardState, policy: GuardPolicy, now: number, own = 0): Verdict {
  const n = current(name, policy, now);
  if (n.failures - own >= policy.maxFailures) {
    return { allowed: false, reason: 'locked', retryAfterSeconds: policy.lockSeconds > 0 ? Math.max(1, Math.ceil((n.last + policy.lockSeconds * 1000 - now) / 1000)) : null };
  }
  const a = current(address, policy, now, 'address');
  if (a.failures - own >= policy.addressMaxFailures) return { allowed: false, reason: 'slow_down', retryAfterSeconds: Math.max(1, Math.ceil((a.since + policy.windowSeconds * 1000 - now) / 1000)) };
  const wait = own > 0 ? 0 : Math.max(n.next, a.next) - now;
  if (wait > 0) return { allowed: false, reason: 'slow_down', retryAfterSeconds: Math.ceil(wait / 1000) };
  return { allowed: true };
}

/** Whether this state locks its name. */
export function isLocked(g: GuardState, policy: GuardPolicy, now: number): boolean {
  return current(g, policy, now).failures >= policy.maxFailures;
}

/**
 * The state as of now: a lock ends `lockSeconds` after its last failure (never, with 0: an
 * operator clears it); below the lock, failures older than the window are forgotten.
 */
export function current(g: GuardState, policy: GuardPolicy, now: number, kind: 'name' | 'address' = 'name'): GuardState {
  if (kind === 'name' && g.failures >= policy.maxFailures) return policy.lockSeconds > 0 && now >= g.last + policy.lockSeconds * 1000 ? EMPTY_GUARD : g;
  if (g.failures > 0 && now - g.since >= policy.windowSeconds * 1000) return EMPTY_GUARD;
  return g;
}

/**
 * One more failure, recorded when an attempt starts (a success then takes it back). For a name:
 * the next attempt waits twice as long as the last, and `maxFailures` of them lock it. For an
 * address: only counted (many users may share one address).
 */
export function withFailure(g: GuardState, policy: GuardPolicy, now: number, kind: 'name' | 'address'): GuardState {
  const c = current(g, policy, now, kind);
  const failures = c.failures + 1;
  const since = c.failures === 0 ? now : c.since;
  if (kind === 'address') return { failures, since, last: now, next: 0 };
  const delay = Math.min(policy.maxDelaySeconds, 2 ** Math.min(failures - 1, 30)) * 1000;
  return { failures, since, last: now, next: now + delay };
}

/** A login finished with the right password: the name's record is cleared, the address's attempt taken back. */
export function withSuccess(g: GuardState, policy: GuardPolicy, now: number, kind: 'name' | 'address'): GuardState {
  if (kind === 'name') return EMPTY_GUARD;
  const c = current(g, policy, now, 'address');
  return c.failures <= 1 ? EMPTY_GUARD : { ...c, failures: c.failures - 1 };
}
