/**
 * Rolling-window counters of constant size, for `velocity` (satoshis) and `rate_limit`
 * (requests). Time is cut into buckets of `bucketMs`; a window of B buckets keeps B + 1
 * counters, the current bucket and the B before it, and a request is checked against their
 * sum. Why B + 1: any stretch of wall-clock time of the window's length W touches at most
 * B + 1 buckets, so counting B + 1 guarantees that no interval of length W ever holds more
 * than the limit. The price is that a spend is forgotten between W and W + bucketMs after it
 * happened, never sooner.
 *
 * Counters are JSON numbers: a counter only grows while the total stays within a limit, and
 * limits are at most 21 million BTC in satoshis (2.1e15 < 2^53), so they are always exact.
 *
 * A clock that goes backwards never frees budget: the counters stay where they are and new
 * spending goes into the newest bucket.
 */
import { CustosError } from '../core/errors.js';
import { printable } from '../core/text.js';
import type { BucketState, RuleState } from './model.js';

export interface WindowGeometry {
  bucketMs: number;
  buckets: number;
}

/** A window as read at one instant: counters advanced to now, and their total. */
export interface WindowView {
  geometry: WindowGeometry;
  head: number;
  counts: number[];
  total: number;
}

function corrupt(scope: string, why: string): CustosError {
  return new CustosError('database_corrupt', `The policy state of ${printable(scope, 120)} is malformed (${why}); refusing to evaluate with it.`);
}

function checkState(s: unknown, scope: string): BucketState {
  if (typeof s !== 'object' || s === null) throw corrupt(scope, 'not an object');
  const b = s as Partial<BucketState>;
  if (b.kind !== 'buckets') throw corrupt(scope, 'unknown kind');
  if (!Number.isSafeInteger(b.bucketMs) || b.bucketMs! < 1) throw corrupt(scope, 'bad bucketMs');
  if (!Number.isSafeInteger(b.buckets) || b.buckets! < 1 || b.buckets! > 100_000) throw corrupt(scope, 'bad buckets');
  if (!Number.isSafeInteger(b.head) || b.head! < 0) throw corrupt(scope, 'bad head');
  if (!Array.isArray(b.counts) || b.counts.length !== b.buckets! + 1) throw corrupt(scope, 'bad counts');
  let total = 0;
  for (const c of b.counts) {
    if (!Number.isSafeInteger(c) || c < 0) throw corrupt(scope, 'bad counts');
    total += c;
  }
  if (!Number.isSafeInteger(total)) throw corrupt(scope, 'counts too large');
  return b as BucketState;
}

function advance(counts: number[], head: number, idx: number): number {
  if (idx <= head) return head;
  const slots = counts.length;
  const steps = Math.min(idx - head, slots);
  for (let i = 1; i <= steps; i++) counts[(head + i) % slots] = 0;
  return idx;
}

function sum(xs: readonly number[]): number {
  let t = 0;
  for (const x of xs) t += x;
  return t;
}

/**
 * The window of `scope` at `nowMs`. A state written with another geometry (the rule's window
 * or bucket count changed in a new policy version) is carried over conservatively: its whole
 * remaining total is put into the current bucket, so a new version never frees budget early.
 */
export function readWindow(state: RuleState | undefined, g: WindowGeometry, nowMs: number, scope: string): WindowView {
  const idx = Math.floor(nowMs / g.bucketMs);
  if (state === undefined) return { geometry: g, head: idx, counts: new Array<number>(g.buckets + 1).fill(0), total: 0 };
  const s = checkState(state, scope);
  const old = s.counts.slice();
  const oldHead = advance(old, s.head, Math.floor(nowMs / s.bucketMs));
  const total = sum(old);
  if (s.bucketMs === g.bucketMs && s.buckets === g.buckets) return { geometry: g, head: oldHead, counts: old, total };
  const counts = new Array<number>(g.buckets + 1).fill(0);
  counts[idx % counts.length] = total;
  return { geometry: g, head: idx, counts, total };
}

/**
 * The state after recording `amount` in the newest bucket; the caller has checked it against a
 * limit. Takes over the view's counters (a view is read for one request and used once).
 */
export function recordInWindow(w: WindowView, amount: number): BucketState {
  const counts = w.counts;
  const slot = w.head % counts.length;
  counts[slot] = counts[slot]! + amount;
  return { kind: 'buckets', bucketMs: w.geometry.bucketMs, buckets: w.geometry.buckets, head: w.head, counts };
}
