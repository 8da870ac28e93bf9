/**
 * Password-guessing limits as pure logic (src/accounts/guard.ts): doubling waits, a lock after
 * five failures in fifteen minutes that a timer or an operator ends, a per-address ceiling that
 * spans names, successes that clear, and records that survive a round trip through storage
 * while anything else stored there is refused as corrupt.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DEFAULT_GUARD, EMPTY_GUARD, formatGuard, mayAttempt, parseGuard, withFailure, withSuccess, type GuardState } from '../../src/accounts/guard.js';
import { isCustosError } from '../../src/core/errors.js';

const P = DEFAULT_GUARD;
const T0 = Date.parse('2026-12-05T00:00:00Z');

test('each failure doubles the wait; the fifth locks the name for fifteen minutes; then it starts afresh', () => {
  let name: GuardState = EMPTY_GUARD;
  let now = T0;
  const waits: number[] = [];
  for (let i = 0; i < 4; i++) {
    assert.deepEqual(mayAttempt(name, EMPTY_GUARD, P, now), { allowed: true });
    name = withFailure(name, P, now, 'name');
    const v = mayAttempt(name, EMPTY_GUARD, P, now);
    assert.equal(v.allowed, false);
    waits.push((v as { retryAfterSeconds: number }).retryAfterSeconds);
    now += waits[i]! * 1000;
  }
  assert.deepEqual(waits, [1, 2, 4, 8]);
  name = withFailure(name, P, now, 'name');
  const locked = mayAttempt(name, EMPTY_GUARD, P, now);
  assert.deepEqual(locked, { allowed: false, reason: 'locked', retryAfterSeconds: 900 });
  assert.equal(mayAttempt(name, EMPTY_GUARD, P, now + 899_000).allowed, false);
  assert.deepEqual(mayAttempt(name, EMPTY_GUARD, P, now + 900_000), { allowed: true });
  // Failures spread wider than the window never lock.
  let slow: GuardState = EMPTY_GUARD;
  for (let i = 0; i < 20; i++) slow = withFailure(slow, P, T0 + i * 901_000, 'name');
  assert.equal(slow.failures, 1);
  // A finish is judged without its own start's failure: the fifth attempt, if right, gets in.
  let five: GuardState = EMPTY_GUARD;
  for (let i = 0; i < 5; i++) five = withFailure(five, { ...P, maxDelaySeconds: 0 }, T0, 'name');
  assert.deepEqual(mayAttempt(five, EMPTY_GUARD, P, T0, 1), { allowed: true });
  assert.equal(mayAttempt(five, EMPTY_GUARD, P, T0).allowed, false);
});

test('with lock_seconds 0 only an operator unlocks; the lock survives storage', () => {
  const p = { ...P, lockSeconds: 0 };
  let g: GuardState = EMPTY_GUARD;
  for (let i = 0; i < 5; i++) g = withFailure(g, p, T0 + i * 100_000, 'name');
  const stored = parseGuard(formatGuard(g));
  assert.deepEqual(stored, g);
  assert.deepEqual(mayAttempt(stored, EMPTY_GUARD, p, T0 + 10 * 365 * 86_400_000), { allowed: false, reason: 'locked', retryAfterSeconds: null });
  assert.equal(formatGuard(EMPTY_GUARD), null, 'an empty record is no row at all');
});

test('an address is counted over all names, never delayed per attempt; a success clears the name and takes back the address attempt', () => {
  let addr: GuardState = EMPTY_GUARD;
  for (let i = 0; i < P.addressMaxFailures; i++) {
    assert.ok(mayAttempt(EMPTY_GUARD, addr, P, T0 + i).allowed, `attempt ${i}`);
    addr = withFailure(addr, P, T0 + i, 'address');
  }
  const v = mayAttempt(EMPTY_GUARD, addr, P, T0 + 100);
  assert.equal(v.allowed, false);
  assert.equal((v as { reason: string }).reason, 'slow_down');
  assert.equal(withSuccess(addr, P, T0 + 100, 'address').failures, P.addressMaxFailures - 1);
  assert.deepEqual(withSuccess(withFailure(EMPTY_GUARD, P, T0, 'name'), P, T0, 'name'), EMPTY_GUARD);
  assert.ok(mayAttempt(EMPTY_GUARD, addr, P, T0 + P.windowSeconds * 1000).allowed, 'the window passes');
});

test('a stored record in any other form is refused as corrupt, never obeyed as empty', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json()), (raw) => {
      try {
        const g = parseGuard(raw);
        assert.equal(formatGuard(g) === null || parseGuard(formatGuard(g)).failures === g.failures, true);
      } catch (e) {
        assert.ok(isCustosError(e) && e.code === 'database_corrupt', String(e));
      }
    }),
    { numRuns: 300 },
  );
});
