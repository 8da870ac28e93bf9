/**
 * Password-guessing limits as pure logic (src/accounts/guard.ts): doubling waits, a lock after
 * five failures within any fifteen minutes (a sliding window: no burst across a window's edge
 * escapes it) that a timer or an operator ends, a per-address ceiling that spans names,
 * successes that clear, IPv6 counted by /64, and records that survive a round trip through
 * storage while anything else stored there is refused as corrupt.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { addressKey, DEFAULT_GUARD, EMPTY_GUARD, formatGuard, mayAttempt, parseGuard, takePending, withFailure, withPending, withSuccess, type GuardState } from '../../src/accounts/guard.js';
import { isCustosError } from '../../src/core/errors.js';

const P = DEFAULT_GUARD;
const T0 = Date.parse('2026-12-05T00:00:00Z');

test('each failure doubles the wait; the fifth within fifteen minutes locks the name; the lock ends fifteen minutes after the last', () => {
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
  assert.deepEqual(mayAttempt(name, EMPTY_GUARD, P, now), { allowed: false, reason: 'locked', retryAfterSeconds: 900 });
  assert.equal(mayAttempt(name, EMPTY_GUARD, P, now + 899_000).allowed, false);
  assert.deepEqual(mayAttempt(name, EMPTY_GUARD, P, now + 900_000), { allowed: true });
  // A finish is judged without its own start's failure: the fifth attempt, if right, gets in.
  assert.deepEqual(mayAttempt(name, EMPTY_GUARD, P, now, 1), { allowed: true });
});

test('the window slides: a burst across a window edge locks; failures spread wider than the window never do', () => {
  const p = { ...P, maxDelaySeconds: 0 };
  let g: GuardState = EMPTY_GUARD;
  const locks: boolean[] = [];
  for (const s of [0, 885, 887, 891, 900, 901, 903]) {
    const t = T0 + s * 1000;
    locks.push(!mayAttempt(g, EMPTY_GUARD, p, t).allowed);
    if (mayAttempt(g, EMPTY_GUARD, p, t).allowed) g = withFailure(g, p, t, 'name');
  }
  assert.deepEqual(locks, [false, false, false, false, false, false, true], 'five failures within 16 s lock, whatever the clock');
  let slow: GuardState = EMPTY_GUARD;
  for (let i = 0; i < 20; i++) {
    assert.ok(mayAttempt(slow, EMPTY_GUARD, p, T0 + i * 240_000).allowed, `attempt ${i}`);
    slow = withFailure(slow, p, T0 + i * 240_000, 'name');
  }
});

test('with lock_seconds 0 only an operator unlocks; records survive storage', () => {
  const p = { ...P, lockSeconds: 0, maxDelaySeconds: 0 };
  let g: GuardState = EMPTY_GUARD;
  for (let i = 0; i < 5; i++) g = withFailure(g, p, T0 + i * 100_000, 'name');
  g = withPending(g, 'ab'.repeat(16), T0 + 60_000, T0);
  const stored = parseGuard(formatGuard(g));
  assert.deepEqual(stored, g);
  assert.deepEqual(mayAttempt(stored, EMPTY_GUARD, p, T0 + 10 * 365 * 86_400_000), { allowed: false, reason: 'locked', retryAfterSeconds: null });
  assert.equal(formatGuard(EMPTY_GUARD), null, 'an empty record is no row at all');
  assert.equal(takePending(stored, 'ab'.repeat(16)).found, true);
  assert.equal(takePending(takePending(stored, 'ab'.repeat(16)).rest, 'ab'.repeat(16)).found, false, 'a start is taken once');
});

test('an address is counted over all names and slows down exponentially past a tenth of its ceiling; a success clears the name and takes back the address attempt', () => {
  let addr: GuardState = EMPTY_GUARD;
  const waits: number[] = [];
  let t = T0;
  for (let i = 0; i < P.addressMaxFailures; i++) {
    const v = mayAttempt(EMPTY_GUARD, addr, P, t);
    if (!v.allowed) {
      waits.push(v.retryAfterSeconds!);
      t += v.retryAfterSeconds! * 1000;
    }
    assert.ok(mayAttempt(EMPTY_GUARD, addr, P, t).allowed, `attempt ${i}`);
    addr = withFailure(addr, P, t, 'address');
  }
  assert.deepEqual(waits.slice(0, 4), [1, 2, 4, 8], 'no wait for the first five (a tenth of 50), then doubling');
  assert.equal(waits.length, P.addressMaxFailures - 5 - 1);
  const v = mayAttempt(EMPTY_GUARD, addr, P, t);
  assert.equal(v.allowed, false, 'right after a failure past the free ones: wait');
  assert.equal((v as { reason: string }).reason, 'slow_down');
  // Without waits, the ceiling itself: 50 failures within the window.
  const q = { ...P, maxDelaySeconds: 0 };
  let full: GuardState = EMPTY_GUARD;
  for (let i = 0; i < q.addressMaxFailures; i++) full = withFailure(full, q, T0 + i, 'address');
  assert.equal((mayAttempt(EMPTY_GUARD, full, q, T0 + 100) as { reason: string }).reason, 'slow_down');
  assert.ok(mayAttempt(EMPTY_GUARD, full, q, T0 + 100 + q.windowSeconds * 1000).allowed, 'the window passes');
  assert.equal(withSuccess(full, 'address').fails.length, q.addressMaxFailures - 1);
  assert.deepEqual(withSuccess(withFailure(EMPTY_GUARD, P, T0, 'name'), 'name'), EMPTY_GUARD);
});

test('addresses: IPv4 as is (also mapped), IPv6 by its /64', () => {
  assert.equal(addressKey('192.0.2.7'), '192.0.2.7');
  assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(addressKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:db8:1:2::9'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:0db8:0001:0002:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(addressKey('::1'), '0:0:0:0::/64');
});

test('a stored record in any other form is refused as corrupt, never obeyed as empty', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json()), (raw) => {
      try {
        const g = parseGuard(raw);
        const again = formatGuard(g);
        assert.ok(again === null || parseGuard(again).fails.length === g.fails.length);
      } catch (e) {
        assert.ok(isCustosError(e) && e.code === 'database_corrupt', String(e));
      }
    }),
    { numRuns: 300 },
  );
});
