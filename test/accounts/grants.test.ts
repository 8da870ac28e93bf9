/**
 * Grants (src/accounts/grants.ts): their terms are checked strictly (one named principal, read,
 * verify or sign, never export, globs over key names, a future expiry), and a grant allows
 * exactly its principal, operations and keys until it expires.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkGrant, grantAllows } from '../../src/accounts/grants.js';
import { isCustosError } from '../../src/core/errors.js';

test('grant terms are checked; export is never granted', () => {
  const ok = checkGrant({ principal: 'token:payments', operations: ['sign', 'sign', 'read'], keys: ['main', 'hot-*'] });
  assert.deepEqual(ok.operations, ['sign', 'read']);
  for (const bad of [
    { principal: 'admin', operations: ['sign'], keys: ['a'] },
    { principal: 'token:x', operations: ['export'], keys: ['a'] },
    { principal: 'token:x', operations: [], keys: ['a'] },
    { principal: 'token:x', operations: ['sign'], keys: [] },
    { principal: 'token:x', operations: ['sign'], keys: ['a b'] },
    { principal: 'token:x', operations: ['sign'], keys: ['a'], expires_at: '2000-01-01T00:00:00Z' },
  ]) assert.throws(() => checkGrant(bad), (e: unknown) => isCustosError(e) && e.code === 'bad_request', JSON.stringify(bad));
  fc.assert(
    fc.property(fc.anything(), fc.anything(), fc.anything(), (principal, operations, keys) => {
      try {
        checkGrant({ principal, operations, keys });
      } catch (e) {
        assert.ok(isCustosError(e) && e.code === 'bad_request');
      }
    }),
    { numRuns: 300 },
  );
});

test('a grant allows its principal, its operations and its keys, until it expires', () => {
  const now = Date.parse('2026-12-05T00:00:00Z');
  const rows = [{ name: 'account_grant.acc_1.grt_1', value: JSON.stringify({ id: 'grt_1', principal: 'token:pay', operations: ['sign'], keys: ['hot-*'], created_at: '', expires_at: '2026-12-06T00:00:00.000Z' }) }];
  assert.equal(grantAllows(rows, 'token:pay', 'sign', 'hot-1', now), true);
  assert.equal(grantAllows(rows, 'token:pay', 'read', 'hot-1', now), false);
  assert.equal(grantAllows(rows, 'token:other', 'sign', 'hot-1', now), false);
  assert.equal(grantAllows(rows, 'token:pay', 'sign', 'cold-1', now), false);
  assert.equal(grantAllows(rows, 'token:pay', 'sign', 'hot-1', Date.parse('2026-12-06T00:00:00Z')), false, 'expired');
});
