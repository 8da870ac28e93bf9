/**
 * The audit view's reads (GET /v1/audit and /v1/audit/status) in the vault layer: filters and
 * paging for an unconfined principal; for a principal confined to some keys, nothing its scope
 * hides shows through the filters, the count of entries or the `next` cursor.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Principal } from '../../src/core/types.js';
import { makeVault } from '../helpers/tmpvault.js';

const scoped: Principal = { id: 'token:app-auditor', kind: 'token', role: 'auditor', scope: { operations: ['audit'], keys: ['app-*'], tags: [] } };

test('filters and pages: newest first, each page\'s next is the cursor of the older one', async () => {
  const v = await makeVault();
  try {
    await v.vault.createKey(v.ctx(), { label: 'app-1', algorithm: 'ed25519', exportable: false });
    for (let i = 0; i < 5; i++) await v.vault.sign({ ...v.ctx(), key: 'app-1', payload: { kind: 'message', bytes: Uint8Array.of(i) }, options: {}, context: { protocol: 'http' } });
    const first = await v.vault.auditPage({ limit: 3, operation: 'sign', outcome: 'ok' });
    assert.equal(first.entries.length, 3);
    assert.ok(first.entries.every((e) => e.operation === 'sign' && e.outcome === 'ok'));
    assert.ok(first.entries[0]!.seq > first.entries[1]!.seq, 'newest first');
    const second = await v.vault.auditPage({ limit: 3, operation: 'sign', outcome: 'ok', before: first.next! });
    assert.equal(second.entries.length, 2);
    assert.equal(second.next, null, 'the oldest page');
    assert.equal((await v.vault.auditPage({ limit: 10, key: 'app-1', principal: 'token:admin', operation: 'create' })).entries.length, 1);
  } finally {
    await v.dispose();
  }
});

test('a principal confined to some keys learns nothing of other keys through filters, counts or the cursor', async () => {
  const v = await makeVault();
  try {
    await v.vault.createKey(v.ctx(), { label: 'app-1', algorithm: 'ed25519', exportable: false });
    await v.vault.createKey(v.ctx(), { label: 'treasury-cold', algorithm: 'ed25519', exportable: false });
    for (let i = 0; i < 4; i++) await v.vault.sign({ ...v.ctx(), key: 'treasury-cold', payload: { kind: 'message', bytes: Uint8Array.of(i) }, options: {}, context: { protocol: 'http' } });
    await v.vault.sign({ ...v.ctx(), key: 'app-1', payload: { kind: 'message', bytes: Uint8Array.of(9) }, options: {}, context: { protocol: 'http' } });
    const ask = (q: Parameters<typeof v.vault.auditPage>[0]) => v.vault.auditPage(q, scoped);
    // A hidden key and one that does not exist: the same answer.
    for (const limit of [1, 5, 50]) {
      const hidden = await ask({ limit, key: 'treasury-cold' });
      const missing = await ask({ limit, key: 'does-not-exist' });
      assert.deepEqual(hidden, missing, `limit ${limit}`);
      assert.deepEqual(hidden, { entries: [], next: null });
      assert.deepEqual(await ask({ limit, principal: 'token:admin', operation: 'create', key: 'treasury-cold' }), { entries: [], next: null });
    }
    // What it may see, it sees, filtered; no entry of another key, no principal's record.
    const mine = await ask({ limit: 50 });
    assert.ok(mine.entries.length > 0 && mine.entries.every((e) => e.keyLabel === 'app-1'));
    assert.equal(mine.next, null);
    assert.deepEqual((await ask({ limit: 50, operation: 'sign', outcome: 'ok' })).entries.map((e) => e.keyLabel), ['app-1']);
    // One entry a page: the cursor is the seq of the last entry it saw, never of a hidden one.
    const page1 = await ask({ limit: 1 });
    assert.equal(page1.next, page1.entries[0]!.seq);
    // The whole-chain check speaks of every key: refused to it.
    await assert.rejects(v.vault.auditStatus({ principal: scoped, requestId: 'r' }), /may not|not allowed|forbidden/i);
  } finally {
    await v.dispose();
  }
});

test('the whole-chain check reports the chain and its latest checkpoint, and callers asking at once share one check', async () => {
  const v = await makeVault();
  try {
    await v.vault.createKey(v.ctx(), { label: 'k', algorithm: 'ed25519', exportable: false });
    const [a, b] = await Promise.all([v.vault.auditStatus(v.ctx()), v.vault.auditStatus(v.ctx())]);
    assert.equal(a.ok, true);
    assert.ok(a.latestCheckpoint && a.latestCheckpoint.seq >= 1);
    assert.equal(a.entries, (await v.store.auditHead()).seq, 'every entry checked');
    assert.equal(b, a, 'one check answered both');
  } finally {
    await v.dispose();
  }
});
