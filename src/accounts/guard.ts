/**
 * Password-guessing limits: what a login attempt may do given the failures recorded for its
 * user name and for its source address. Pure logic over a small JSON state that the vault keeps
 * in protected rows (so counters survive restarts and are shared by every node on the database;
 * a row edited or deleted with SQL is refused, not obeyed).
 *
 * - The window slides: the times of the last failures are kept, and `maxFailures` of them
 *   within any `windowSeconds` lock the name (default 5 in 15 minutes) until `lockSeconds`
 *   after the last (0: until an operator unlocks it).
 * - Each failure doubles the wait before the name's next attempt (1 s, 2 s, 4 s … up to
 *   `maxDelaySeconds`), counted from the last failure, whatever the window.
 * - An address may have `addressMaxFailures` failures within the window over all names, so one
 *   address cannot guess across many names faster than that; past a tenth of that, each of its
 *   failures doubles its wait too.
 * - A success clears the name's record and takes back the address's count for that attempt.
 * Unknown names are guarded exactly like real ones, so a lock says nothing about existence.
 */
import { CustosError } from '../core/errors.js';

export interface GuardPolicy {
  maxFailures: number;
  windowSeconds: number;
  lockSeconds: number;
  maxDelaySeconds: number;
  addressMaxFailures: number;
}

export const DEFAULT_GUARD: GuardPolicy = { maxFailures: 5, windowSeconds: 900, lockSeconds: 900, maxDelaySeconds: 60, addressMaxFailures: 50 };

/** The times (ms since the epoch, oldest first) of the most recent failures, and the delay level. */
export interface GuardState {
  fails: number[];
  /** Failures in a row since the last success (sets the wait before the next attempt). */
  streak: number;
  /** A name's logins started and not yet finished: `<start id>:<deadline>`, each finished once. */
  pending: string[];
}

export const EMPTY_GUARD: GuardState = { fails: [], streak: 0, pending: [] };
const PENDING_RE = /^[0-9a-f]{32}:\d{1,16}$/;
const MAX_KEPT = 1000;

export function parseGuard(raw: string | null): GuardState {
  if (raw === null) return EMPTY_GUARD;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    v = null;
  }
  const o = v as { fails?: unknown; streak?: unknown; pending?: unknown } | null;
  const ok =
    o !== null &&
    typeof o === 'object' &&
    Object.keys(o).length === 3 &&
    Array.isArray(o.pending) &&
    o.pending.length <= MAX_KEPT &&
    o.pending.every((p) => typeof p === 'string' && PENDING_RE.test(p)) &&
    Array.isArray(o.fails) &&
    o.fails.length <= MAX_KEPT &&
    o.fails.every((t, i, a) => Number.isSafeInteger(t) && (t as number) >= 0 && (i === 0 || (t as number) >= (a[i - 1] as number))) &&
    Number.isSafeInteger(o.streak) &&
    (o.streak as number) >= 0;
  if (!ok) throw new CustosError('database_corrupt', 'A login-guard record is not in the form Custos writes; restore the database from a backup.');
  return { fails: o!.fails as number[], streak: o!.streak as number, pending: o!.pending as string[] };
}

/** The row's value; null (no row) once nothing in it matters any more. */
export function formatGuard(g: GuardState): string | null {
  return g.fails.length === 0 && g.pending.length === 0 ? null : JSON.stringify({ fails: g.fails, streak: g.streak, pending: g.pending });
}

/** With a login start recorded (and those past their deadline dropped). */
export function withPending(g: GuardState, startId: string, deadline: number, now: number): GuardState {
  return { ...g, pending: [...g.pending.filter((p) => Number(p.split(':')[1]) >= now), `${startId}:${deadline}`].slice(-MAX_KEPT) };
}

/** Whether a start is pending, and the record without it (a start is finished once). */
export function takePending(g: GuardState, startId: string): { found: boolean; rest: GuardState } {
  const i = g.pending.findIndex((p) => p.startsWith(`${startId}:`));
  return i < 0 ? { found: false, rest: g } : { found: true, rest: { ...g, pending: g.pending.filter((_, j) => j !== i) } };
}

export type Verdict = { allowed: true } | { allowed: false; reason: 'locked' | 'slow_down'; retryAfterSeconds: number | null };

const within = (g: GuardState, policy: GuardPolicy, now: number) => g.fails.filter((t) => t > now - policy.windowSeconds * 1000);

/** Whether the name is locked at `now`, and until when (Infinity: until an operator unlocks it). */
export function lockedUntil(g: GuardState, policy: GuardPolicy, now: number): number | null {
  const n = policy.maxFailures;
  // A lock: n failures within one window, the last of them recent enough.
  for (let i = g.fails.length - 1; i >= n - 1; i--) {
    const last = g.fails[i]!;
    if (last - g.fails[i - n + 1]! >= policy.windowSeconds * 1000) continue;
    const until = policy.lockSeconds > 0 ? last + policy.lockSeconds * 1000 : Infinity;
    if (until > now) return until;
    break;
  }
  return null;
}

/**
 * Whether an attempt may go on now, for a name and for an address. `own`: the failure recorded
 * by this very attempt's start (a finish is judged without it).
 */
export function mayAttempt(name: GuardState, address: GuardState, policy: GuardPolicy, now: number, own = 0): Verdict {
  const n = own > 0 ? { ...name, fails: name.fails.slice(0, Math.max(0, name.fails.length - own)), streak: Math.max(0, name.streak - own) } : name;
  const until = lockedUntil(n, policy, now);
  if (until !== null) return { allowed: false, reason: 'locked', retryAfterSeconds: until === Infinity ? null : Math.max(1, Math.ceil((until - now) / 1000)) };
  const a = within(current(address, policy, now, 'address'), policy, now);
  if (a.length - own >= policy.addressMaxFailures) return { allowed: false, reason: 'slow_down', retryAfterSeconds: Math.max(1, Math.ceil((a[0]! + policy.windowSeconds * 1000 - now) / 1000)) };
  if (own === 0 && n.streak > 0) {
    const wait = n.fails[n.fails.length - 1]! + delayMs(n.streak, policy) - now;
    if (wait > 0) return { allowed: false, reason: 'slow_down', retryAfterSeconds: Math.ceil(wait / 1000) };
  }
  // An address slows down exponentially too, once past a tenth of its ceiling (many users may
  // share one address: a few failures among them cost nothing).
  const free = Math.max(1, Math.floor(policy.addressMaxFailures / 10));
  if (own === 0 && a.length > free) {
    const wait = a[a.length - 1]! + delayMs(a.length - free, policy) - now;
    if (wait > 0) return { allowed: false, reason: 'slow_down', retryAfterSeconds: Math.ceil(wait / 1000) };
  }
  return { allowed: true };
}

const delayMs = (streak: number, policy: GuardPolicy) => Math.min(policy.maxDelaySeconds, 2 ** Math.min(streak - 1, 30)) * 1000;

/** Whether this record locks its name at `now` (for the audit of the moment a lock begins). */
export function isLocked(g: GuardState, policy: GuardPolicy, now: number): boolean {
  return lockedUntil(g, policy, now) !== null;
}

/**
 * The record as of now: once the last failure is a window old (and no lock holds), nothing in
 * it counts any more, and the doubling starts again from 1 s.
 */
export function current(g: GuardState, policy: GuardPolicy, now: number, kind: 'name' | 'address'): GuardState {
  if (g.fails.length === 0) return g;
  if (kind === 'name' && lockedUntil(g, policy, now) !== null) return g;
  return now - g.fails[g.fails.length - 1]! >= policy.windowSeconds * 1000 ? { ...EMPTY_GUARD, pending: g.pending } : g;
}

/** One more failure, recorded when an attempt starts (a success then takes it back). */
export function withFailure(g: GuardState, policy: GuardPolicy, now: number, kind: 'name' | 'address'): GuardState {
  const c = current(g, policy, now, kind);
  // Only the newest matter: a name's last maxFailures decide a lock, an address's last ceiling.
  const keep = Math.min(MAX_KEPT, kind === 'name' ? policy.maxFailures : policy.addressMaxFailures);
  return { fails: [...c.fails, now].slice(-keep), streak: kind === 'name' ? c.streak + 1 : 0, pending: c.pending };
}

/** A login finished with the right password: the name's record is cleared, the address's attempt taken back. */
export function withSuccess(g: GuardState, kind: 'name' | 'address'): GuardState {
  if (kind === 'name' || g.fails.length <= 1) return EMPTY_GUARD;
  return { fails: g.fails.slice(0, -1), streak: 0, pending: [] };
}

/**
 * The key an address is counted under: an IPv4 address as is (also when IPv4-mapped), an IPv6
 * address by its /64 (one subscriber's prefix holds 2^64 addresses).
 */
export function addressKey(ip: string): string {
  const v4 = /^(?:::ffff:)?(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (v4) return v4[1]!;
  if (!ip.includes(':')) return ip.slice(0, 64);
  const [head, tail = ''] = ip.split('%')[0]!.toLowerCase().split('::') as [string, string?];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const full = ip.includes('::') ? [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h;
  return `${full.slice(0, 4).map((x) => x.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
