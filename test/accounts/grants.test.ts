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
  const rows = [
    { name: 'account_grant.acc_1.grt_0', value: 'not json' },
    { name: 'account_grant.acc_1.grt_1', value: JSON.stringify({ id: 'grt_1', principal: 'token:pay', credential_row: 'tok_1', operations: ['sign', 'export'], keys: ['hot-*'], created_at: '', expires_at: '2026-12-06T00:00:00.000Z' }) },
  ];
  const allows = (...a: [string, string | undefined, string, string, number]) => grantAllows(rows, ...a) !== null;
  assert.equal(allows('token:pay', 'tok_1', 'sign', 'hot-1', now), true);
  assert.equal(allows('token:pay', 'tok_1', 'read', 'hot-1', now), false);
  assert.equal(allows('token:pay', 'tok_1', 'export', 'hot-1', now), false, 'export never, even when a stored row lists it');
  assert.equal(allows('token:pay', 'tok_2', 'sign', 'hot-1', now), false, 'a principal made later under the same name');
  assert.equal(allows('token:pay', undefined, 'sign', 'hot-1', now), false);
  assert.equal(allows('token:other', 'tok_1', 'sign', 'hot-1', now), false);
  assert.equal(allows('token:pay', 'tok_1', 'sign', 'cold-1', now), false);
  assert.equal(allows('token:pay', 'tok_1', 'sign', 'hot-1', Date.parse('2026-12-06T00:00:00Z')), false, 'expired');
  assert.doesNotThrow(() => checkGrant({ principal: 'token:ops@corp', operations: ['read'], keys: ['a'] }), 'principal names may hold @');
});
