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
  /** Failures within the current window, and when the window began. */
  failures: number;
  since: number;
  /** The earliest time of the next attempt. */
  next: number;
  /** Locked until then (Infinity: until an operator unlocks it). */
  lockedUntil: number | null;
}

export const EMPTY_GUARD: GuardState = { failures: 0, since: 0, next: 0, lockedUntil: null };

export function parseGuard(raw: string | null): GuardState {
  if (raw === null) return EMPTY_GUARD;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    v = null;
  }
  const o = v as Partial<Record<keyof GuardState, unknown>> | null;
  const num = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x >= 0;
  if (!o || !num(o.failures) || !num(o.since) || !num(o.next) || !(o.lockedUntil === null || num(o.lockedUntil) || o.lockedUntil === 'operator')) {
    throw new CustosError('database_corrupt', 'A login-guard record is not in the form Custos writes; restore the database from a backup.');
  }
  return { failures: o.failures as number, since: o.since as number, next: o.next as number, lockedUntil: o.lockedUntil === 'operator' ? Infinity : (o.lockedUntil as number | null) };
}

export function formatGuard(g: GuardState): string | null {
  if (g.failures === 0 && g.lockedUntil === null) return null;
  return JSON.stringify({ failures: g.failures, since: g.since, next: g.next, lockedUntil: g.lockedUntil === Infinity ? 'operator' : g.lockedUntil });
}

export type Verdict = { allowed: true } | { allowed: false; reason: 'locked' | 'slow_down'; retryAfterSeconds: number | null };

/** Whether an attempt may start now, for a name and for an address. */
export function mayAttempt(name: GuardState, address: GuardState, policy: GuardPolicy, now: number): Verdict {
  const n = current(name, policy, now);
  if (n.lockedUntil !== null) return { allowed: false, reason: 'locked', retryAfterSeconds: n.lockedUntil === Infinity ? null : Math.ceil((n.lockedUntil - now) / 1000) };
  const a = current(address, policy, now);
  if (a.failures >= policy.addressMaxFailures) return { allowed: false, reason: 'slow_down', retryAfterSeconds: Math.ceil((a.since + policy.windowSeconds * 1000 - now) / 1000) };
  const wait = Math.max(n.next, a.next) - now;
  if (wait > 0) return { allowed: false, reason: 'slow_down', retryAfterSeconds: Math.ceil(wait / 1000) };
  return { allowed: true };
}

/** The state as of now: an expired window or lock is gone. */
export function current(g: GuardState, policy: GuardPolicy, now: number): GuardState {
  if (g.lockedUntil !== null && g.lockedUntil !== Infinity && g.lockedUntil <= now) return EMPTY_GUARD;
  if (g.lockedUntil === null && g.failures > 0 && now - g.since >= policy.windowSeconds * 1000) return EMPTY_GUARD;
  return g;
}

/**
 * One more failure, recorded when an attempt starts (a success then takes it back). For a name:
 * the next attempt waits twice as long as the last, and `maxFailures` lock it. For an address:
 * only counted (many users may share one address).
 */
export function withFailure(g: GuardState, policy: GuardPolicy, now: number, kind: 'name' | 'address'): GuardState {
  const c = current(g, policy, now);
  const failures = c.failures + 1;
  const since = c.failures === 0 ? now : c.since;
  if (kind === 'address') return { failures, since, next: 0, lockedUntil: null };
  const delay = Math.min(policy.maxDelaySeconds, 2 ** Math.min(failures - 1, 30)) * 1000;
  const lock = failures >= policy.maxFailures ? (policy.lockSeconds > 0 ? now + policy.lockSeconds * 1000 : Infinity) : c.lockedUntil;
  return { failures, since, next: now + delay, lockedUntil: lock };
}

/** A login finished with the right password: the name's record is cleared, the address's attempt taken back. */
export function withSuccess(g: GuardState, policy: GuardPolicy, now: number, kind: 'name' | 'address'): GuardState {
  if (kind === 'name') return EMPTY_GUARD;
  const c = current(g, policy, now);
  return c.failures <= 1 ? EMPTY_GUARD : { ...c, failures: c.failures - 1 };
}
