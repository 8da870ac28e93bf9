/**
 * The store conformance suite: every Store implementation (SQLite and PostgreSQL)
 * must pass it. Call `storeConformance(name, factory)` from the implementation's test file.
 */
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Store, Chainer, WriteUnit } from '../../src/store/store.js';
import { GENESIS_HASH } from '../../src/store/store.js';
import type { AuditDraft, KeyRecord } from '../../src/core/types.js';
import { CustosError } from '../../src/core/errors.js';
import { chainHash } from '../../src/audit/chain.js';
import { RowMac } from '../../src/keystore/row-mac.js';
import { SeenRows } from '../../src/store/engine.js';

export type StoreFactory = () => Promise<{ store: Store; reopen(): Promise<Store>; dispose(): Promise<void> }>;

let n = 0;
function key(label: string, over: Partial<KeyRecord> = {}): KeyRecord {
  n++;
  const now = new Date().toISOString();
  return {
    id: `key_conformance${String(n).padStart(11, '0')}`,
    label,
    algorithm: 'ed25519',
    publicKey: new Uint8Array(32).fill(n),
    state: 'active',
    exportable: false,
    origin: 'generated',
    version: 1,
    createdAt: now,
    updatedAt: now,
    sealed: new Uint8Array(72).fill(7),
    attributes: {},
    ...over,
  } as KeyRecord;
}

const draft = (op: string, keyId: string | null = null): AuditDraft => ({
  requestId: `r-${op}-${Math.random()}`,
  principal: 'test',
  operation: op,
  keyId,
  keyLabel: null,
  outcome: 'ok',
  reason: null,
  details: { b: 2, a: 'x' },
});

const chain: Chainer = chainHash;

export function storeConformance(name: string, factory: StoreFactory): void {
  const withStore = (title: string, f: (s: Store, reopen: () => Promise<Store>) => Promise<void>) =>
    test(`${name}: ${title}`, async () => {
      const h = await factory();
      try {
        await h.store.migrate();
        await f(h.store, h.reopen);
      } finally {
        await h.dispose();
      }
    });

  withStore('meta is set once and survives a reopen', async (s, reopen) => {
    assert.equal(await s.initMeta({ vault_id: 'v1', seal: '{}' }), true);
    assert.equal(await s.initMeta({ vault_id: 'v2' }), false);
    assert.equal(await s.getMeta('vault_id'), 'v1');
    await s.close();
    const s2 = await reopen();
    assert.equal(await s2.getMeta('vault_id'), 'v1');
    assert.equal(await s2.getMeta('absent'), null);
    await s2.setMeta('agent.hidden', '["a"]');
    await s2.setMeta('agent.hidden', '["a","b"]');
    assert.equal(await s2.getMeta('agent.hidden'), '["a","b"]');
    await s2.setMeta('agent.hidden', null);
    assert.equal(await s2.getMeta('agent.hidden'), null);
    await s2.setMeta('policy.b', '2');
    await s2.setMeta('policy.a', '1');
    await s2.setMeta('policy_state.x', '3');
    await s2.setMeta('policz', '4');
    assert.deepEqual(await s2.listMeta('policy.'), [{ name: 'policy.a', value: '1' }, { name: 'policy.b', value: '2' }]);
  });

  withStore('compare-and-set meta commits with its audit entry, or not at all', async (s) => {
    const cas = (expected: string | null, value: string | null) =>
      s.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.k', expected, value }], audit: [draft('sign', 'k')] }], chain, new Date().toISOString());
    assert.deepEqual(await cas(null, 'a'), [null]);
    assert.deepEqual(await cas('a', 'b'), [null]);
    const head = (await s.auditHead()).seq;
    const stale = await cas('a', 'c');
    assert.ok(stale[0] instanceof CustosError && stale[0].fullCode === 'storage_unavailable:meta_moved');
    assert.equal((await s.auditHead()).seq, head, 'the audit entry went with it');
    assert.equal(await s.getMeta('policy_state.k'), 'b');
    assert.deepEqual(await cas('b', null), [null]);
    assert.equal(await s.getMeta('policy_state.k'), null);
  });

  withStore('a committed key is found by id and by label, with every field intact', async (s) => {
    const k = key('alpha', { exportable: true, origin: 'imported', attributes: { 'ssh.comment': 'me@host', expires_at: '2030-01-01T00:00:00.000Z', n: 3 } });
    assert.deepEqual(await s.commit([{ mutations: [{ kind: 'insertKey', key: k }], audit: [draft('create', k.id)] }], chain, new Date().toISOString()), [null]);
    const byId = await s.findKey(k.id);
    const byLabel = await s.findKey('alpha');
    assert.deepEqual(byId, k);
    assert.deepEqual(byLabel, k);
    assert.equal(await s.findKey('nope'), null);
    assert.equal((await s.listKeys()).length, 1);
  });

  withStore('a unit that conflicts rolls back alone; the rest of the batch commits', async (s) => {
    const a = key('dup');
    const b = key('dup');
    const c = key('other');
    const res = await s.commit(
      [
        { mutations: [{ kind: 'insertKey', key: a }], audit: [draft('create', a.id)] },
        { mutations: [{ kind: 'insertKey', key: b }], audit: [draft('create', b.id)] },
        { mutations: [{ kind: 'insertKey', key: c }], audit: [draft('create', c.id)] },
      ],
      chain,
      new Date().toISOString(),
    );
    assert.equal(res[0], null);
    assert.ok(res[1] instanceof CustosError && res[1].code === 'label_taken');
    assert.equal(res[2], null);
    assert.equal(await s.findKey(b.id), null);
    const head = await s.auditHead();
    assert.equal(head.seq, 2, 'the failed unit left no audit entry');
  });

  withStore('a unit of many new keys and audit entries (100 a statement) commits whole, or fails whole on a taken label', async (s) => {
    const many = Array.from({ length: 450 }, (_, i) => key(`many-${i}`));
    const ts = new Date().toISOString();
    assert.deepEqual(await s.commit([{ mutations: many.map((k) => ({ kind: 'insertKey' as const, key: k })), audit: many.map((k) => draft('create', k.id)) }], chain, ts), [null]);
    assert.deepEqual(await s.findKey('many-449'), many[449]);
    assert.deepEqual(await s.findKey(many[201]!.id), many[201]);
    // The taken label sits in the fifth statement's rows: the first four are rolled back with it.
    const next = Array.from({ length: 450 }, (_, i) => key(i === 420 ? 'many-3' : `more-${i}`));
    const [err, other] = await s.commit(
      [{ mutations: next.map((k) => ({ kind: 'insertKey' as const, key: k })), audit: [draft('create')] }, { mutations: [{ kind: 'insertKey', key: key('after') }], audit: [] }],
      chain,
      ts,
    );
    assert.ok(err instanceof CustosError && err.code === 'label_taken', String(err));
    assert.equal(other, null);
    assert.equal(await s.findKey('more-0'), null);
    assert.equal(await s.findKey('more-449'), null);
    assert.equal((await s.listKeysPage(null, 10_000)).length, 451);
  });

  withStore('text with a lone UTF-16 surrogate is refused by its unit (it could not be stored as MACed or hashed); the chain stays whole', async (s) => {
    const [bad, good] = await s.commit([{ mutations: [], audit: [{ ...draft('op'), reason: 'x\ud800y' }] }, { mutations: [], audit: [draft('op')] }], chain, new Date().toISOString());
    assert.ok(bad instanceof CustosError && bad.code === 'bad_request', String(bad));
    assert.equal(good, null);
    const [alone] = await s.commit([{ mutations: [{ kind: 'insertKey', key: key('lone-\udc00') }], audit: [] }], chain, new Date().toISOString());
    assert.ok(alone instanceof CustosError && alone.code === 'bad_request', String(alone));
    const entries = await s.auditAfter(0, 10);
    assert.equal(entries.length, 1);
    assert.deepEqual(entries[0]!.prevHash, GENESIS_HASH);
  });

  withStore('audit entries chain from genesis, in order, across batches', async (s) => {
    await s.commit([{ mutations: [], audit: [draft('a'), draft('b')] }], chain, '2026-01-01T00:00:00.000Z');
    await s.commit([{ mutations: [], audit: [draft('c')] }], chain, '2026-01-01T00:00:01.000Z');
    const all = await s.auditAfter(0, 100);
    assert.deepEqual(all.map((e) => e.seq), [1, 2, 3]);
    assert.deepEqual(all[0]!.prevHash, GENESIS_HASH);
    assert.deepEqual(all[1]!.prevHash, all[0]!.hash);
    assert.deepEqual(all[2]!.prevHash, all[1]!.hash);
    assert.deepEqual(all[0]!.details, { a: 'x', b: 2 });
    assert.deepEqual((await s.auditTail(2)).map((e) => e.operation), ['b', 'c']);
    assert.equal((await s.auditHead()).seq, 3);
  });

  withStore('the audit view\'s query: exact filters (a key by id or label), newest first, a page before a sequence number', async (s) => {
    const k = key('filtered');
    await s.commit([{ mutations: [{ kind: 'insertKey', key: k }], audit: [draft('create', k.id)] }], chain, new Date().toISOString());
    await s.commit([{ mutations: [], audit: [draft('sign', k.id), { ...draft('sign', k.id), outcome: 'denied', reason: 'policy_denied' }, draft('sign'), { ...draft('approve'), principal: 'token:alice' }] }], chain, new Date().toISOString());
    const ops = (q: Parameters<typeof s.auditQuery>[0]) => s.auditQuery(q).then((es) => es.map((e) => `${e.seq}:${e.operation}:${e.outcome}`));
    assert.deepEqual(await ops({ limit: 10, key: k.id, operation: 'sign' }), ['3:sign:denied', '2:sign:ok']);
    assert.deepEqual(await ops({ limit: 10, key: k.id, outcome: 'denied' }), ['3:sign:denied']);
    assert.deepEqual(await ops({ limit: 10, principal: 'token:alice' }), ['5:approve:ok']);
    assert.deepEqual(await ops({ limit: 2 }), ['5:approve:ok', '4:sign:ok']);
    assert.deepEqual(await ops({ limit: 2, before: 4 }), ['3:sign:denied', '2:sign:ok']);
    assert.deepEqual(await ops({ limit: 10, key: "x' OR '1'='1" }), [], 'parameters, never SQL');
  });

  withStore('state changes and destroy: material gone, row kept as a tombstone', async (s) => {
    const k = key('gamma');
    await s.commit([{ mutations: [{ kind: 'insertKey', key: k }], audit: [] }], chain, new Date().toISOString());
    const stale = await s.commit([{ mutations: [{ kind: 'assertKeyActive', id: k.id, version: k.version + 1 }], audit: [draft('sign', k.id)] }], chain, new Date().toISOString());
    assert.ok(stale[0] instanceof CustosError && stale[0].tag === 'key_moved', 'a key changed since the decision fails the guard');
    const current = await s.commit([{ mutations: [{ kind: 'assertKeyActive', id: k.id, version: k.version }], audit: [draft('sign', k.id)] }], chain, new Date().toISOString());
    assert.equal(current[0], null, 'the version the decision read passes');
    await s.commit([{ mutations: [{ kind: 'setKeyState', id: k.id, state: 'disabled', updatedAt: 'later' }], audit: [] }], chain, new Date().toISOString());
    assert.equal((await s.findKey(k.id))!.state, 'disabled');
    const guarded = await s.commit([{ mutations: [{ kind: 'assertKeyActive', id: k.id }], audit: [draft('sign', k.id)] }], chain, new Date().toISOString());
    assert.ok(guarded[0] instanceof CustosError && guarded[0].code === 'key_disabled', 'a disabled key fails the guard');
    await s.commit([{ mutations: [{ kind: 'destroyKey', id: k.id, updatedAt: 'later' }], audit: [] }], chain, new Date().toISOString());
    const gone0 = await s.commit([{ mutations: [{ kind: 'assertKeyActive', id: k.id }], audit: [draft('sign', k.id)] }], chain, new Date().toISOString());
    assert.ok(gone0[0] instanceof CustosError && gone0[0].code === 'key_destroyed', 'a destroyed key fails the guard');
    const gone = await s.findKey(k.id);
    assert.equal(gone!.state, 'destroyed');
    assert.equal(gone!.sealed, null);
    const again = await s.commit([{ mutations: [{ kind: 'setKeyState', id: k.id, state: 'active', updatedAt: 'x' }], audit: [] }], chain, new Date().toISOString());
    assert.ok(again[0] instanceof CustosError && again[0].code === 'key_destroyed');
    await s.purgeFreed();
  });

  withStore('consensus watermarks advance only from what the caller read, never backwards, and keep int64 heights exactly', async (s) => {
    const now = () => new Date().toISOString();
    const big = 9_007_199_254_740_993n; // above 2^53: must not lose precision
    const at = (height: bigint, round: number, step: number, sig: number | null = null) => ({ height, round, step, signBytes: new Uint8Array([Number(height % 256n), round, step]), signature: sig === null ? null : new Uint8Array(64).fill(sig) });
    const adv = (expected: { height: bigint; round: number; step: number } | null, next: ReturnType<typeof at>) => s.commit([{ mutations: [{ kind: 'advanceWatermark', keyId: 'k', chainId: 'c', expected, next }], audit: [draft('sign', 'k')] }], chain, now());
    assert.equal(await s.getWatermark('k', 'c'), null);
    assert.deepEqual(await adv(null, at(big, 0, 2)), [null]);
    assert.deepEqual(await s.getWatermark('k', 'c'), at(big, 0, 2));
    // The signature is filled in by a second advance at the same position.
    assert.deepEqual(await adv({ height: big, round: 0, step: 2 }, at(big, 0, 2, 7)), [null]);
    assert.deepEqual((await s.getWatermark('k', 'c'))!.signature, new Uint8Array(64).fill(7));
    // Deciding on a stale read (another process advanced it) fails the unit, and its audit entry with it.
    const head = (await s.auditHead()).seq;
    const stale = await adv(null, at(big + 1n, 0, 1));
    assert.ok(stale[0] instanceof CustosError && stale[0].fullCode === 'storage_unavailable:watermark_moved');
    assert.equal((await s.auditHead()).seq, head);
    // Never backwards, even from an up-to-date read.
    const back = await adv({ height: big, round: 0, step: 2 }, at(big, 0, 1));
    assert.ok(back[0] instanceof CustosError && back[0].fullCode === 'policy_denied:double_sign');
    assert.deepEqual(await adv({ height: big, round: 0, step: 2 }, at(big, 1, 1)), [null]);
    // Watermarks are per key and chain.
    assert.equal(await s.getWatermark('k', 'other-chain'), null);
  });

  withStore('keys are listed a page at a time in label order, by cursor', async (s) => {
    const labels = ['k-3', 'a-1', 'k-10', 'b-2', 'z'];
    await s.commit([{ mutations: labels.map((l) => ({ kind: 'insertKey' as const, key: key(l) })), audit: [] }], chain, new Date().toISOString());
    const seen: string[] = [];
    let after: string | null = null;
    for (let i = 0; i < 10; i++) {
      const page = await s.listKeysPage(after, 2);
      seen.push(...page.map((k) => k.label));
      if (page.length < 2) break;
      after = page[page.length - 1]!.label;
    }
    assert.deepEqual(seen, [...labels].sort());
    assert.deepEqual((await s.listKeysPage('zz', 5)).length, 0);
    // Within a label prefix (an agent's "k-*"), by the same index, with a cursor.
    assert.deepEqual((await s.listKeysPage(null, 10, 'k-')).map((k) => k.label), ['k-10', 'k-3']);
    assert.deepEqual((await s.listKeysPage('k-10', 10, 'k-')).map((k) => k.label), ['k-3']);
    assert.deepEqual((await s.listKeysPage('a-1', 10, 'k-')).map((k) => k.label), ['k-10', 'k-3'], 'a cursor before the prefix starts at the prefix');
    assert.deepEqual((await s.listKeysPage(null, 10, 'q')).length, 0);
  });

  withStore('keys are found by public key and by indexed attribute', async (s) => {
    const pub = new Uint8Array(32).fill(200);
    await s.commit(
      [
        {
          mutations: [
            { kind: 'insertKey', key: key('by-pub', { publicKey: pub }) },
            { kind: 'insertKey', key: key('added-a', { attributes: { 'ssh.socket': 'a' } }) },
            { kind: 'insertKey', key: key('added-b', { attributes: { 'ssh.socket': 'b' } }) },
            { kind: 'insertKey', key: key('token-obj', { attributes: { backend: 'pkcs11:hsm', 'pkcs11.id': '0a0b' } }) },
          ],
          audit: [],
        },
      ],
      chain,
      new Date().toISOString(),
    );
    assert.deepEqual((await s.findKeysBy({ publicKey: pub })).map((k) => k.label), ['by-pub']);
    assert.deepEqual((await s.findKeysBy({ attribute: 'ssh.socket', value: 'a' })).map((k) => k.label), ['added-a']);
    assert.deepEqual((await s.findKeysBy({ attribute: 'ssh.socket' })).map((k) => k.label).sort(), ['added-a', 'added-b']);
    assert.deepEqual((await s.findKeysBy({ attribute: 'pkcs11.id', value: '0a0b' })).map((k) => k.label), ['token-obj']);
    assert.deepEqual(await s.findKeysBy({ attribute: 'pkcs11.id', value: 'ffff' }), []);
  });

  withStore('the expiry sweeper reads only keys with a lifetime that are not destroyed', async (s) => {
    const soon = new Date(Date.now() + 60_000).toISOString();
    await s.commit([{ mutations: [{ kind: 'insertKey', key: key('brief', { attributes: { expires_at: soon } }) }, { kind: 'insertKey', key: key('lasting') }, { kind: 'insertKey', key: key('gone', { attributes: { expires_at: soon }, state: 'destroyed', sealed: null }) }], audit: [] }], chain, new Date().toISOString());
    assert.deepEqual((await s.listExpiringKeys()).map((k) => k.label), ['brief']);
  });

  withStore('token rows written after a write sequence are read by it, oldest first', async (s) => {
    const tok = (id: string, fill: number) => ({ kind: 'insertToken' as const, token: { id, name: id, hash: new Uint8Array(32).fill(fill), role: 'signer' as const, createdAt: 'now', terms: {} } });
    await s.commit([{ mutations: [tok('t1', 1)], audit: [] }], chain, 'now');
    await s.commit([{ mutations: [tok('t2', 2)], audit: [] }], chain, 'now');
    const all = await s.tokensWrittenAfter(0);
    // Without a row authenticator (a bare store) rows carry no write sequence: nothing to read by.
    if (all.length === 0) return;
    assert.deepEqual(all.map((r) => r.token.id), ['t1', 't2']);
    assert.deepEqual((await s.tokensWrittenAfter(all[0]!.wseq)).map((r) => r.token.id), ['t2']);
  });

  withStore('tokens are found by hash only', async (s) => {
    const hash = new Uint8Array(32).fill(9);
    await s.commit([{ mutations: [{ kind: 'insertToken', token: { id: 't1', name: 'admin', hash, role: 'admin', createdAt: 'now', terms: {} } }], audit: [] }], chain, 'now');
    assert.equal((await s.findToken(hash))!.name, 'admin');
    assert.equal((await s.findTokenBy({ name: 'admin' }))!.id, 't1');
    assert.equal((await s.findTokenBy({ id: 't1' }))!.name, 'admin');
    assert.equal(await s.findTokenBy({ name: 'nobody' }), null);
    assert.equal(await s.findToken(new Uint8Array(32)), null);
  });

  withStore('versioned objects: put, get, list and count by primary key; compare-and-set on the version, never backwards; u64 versions exact', async (s, reopen) => {
    const now = () => new Date().toISOString();
    const put = (st: Store, objectId: string, expectedVersion: bigint | null, version: bigint, record: Uint8Array, keyId = 'ln') =>
      st.commit([{ mutations: [{ kind: 'putObject', keyId, objectId, expectedVersion, version, record }], audit: [draft('lightning_put', keyId)] }], chain, now());
    const fails = (res: Array<Error | null>, fullCode: string) => assert.ok(res[0] instanceof CustosError && res[0].fullCode === fullCode, `${fullCode}: ${String(res[0])}`);
    // The rows, their MACs and their counts (with row MACs on; a bare store has none to check).
    const rowsSound = async (st: Store) => {
      try {
        assert.deepEqual(await st.checkRows(), []);
      } catch (e) {
        if (!(e instanceof CustosError && e.code === 'internal')) throw e;
      }
    };
    assert.equal(await s.getObject('ln', 'chan-1'), null);
    assert.equal(await s.countObjects('ln'), 0);
    assert.deepEqual(await s.listObjects('ln', null, 10), []);
    const r0 = new Uint8Array(300).fill(1);
    assert.deepEqual(await put(s, 'chan-1', null, 0n, r0), [null]);
    assert.deepEqual(await s.getObject('ln', 'chan-1'), { keyId: 'ln', objectId: 'chan-1', version: 0n, record: r0, hash: new Uint8Array(createHash('sha256').update(r0).digest()) });
    // Decided on "no row" while one exists: moved, and the unit's audit entry goes with it.
    const head = (await s.auditHead()).seq;
    fails(await put(s, 'chan-1', null, 1n, r0), 'storage_unavailable:object_moved');
    assert.equal((await s.auditHead()).seq, head);
    // A record of a megabyte.
    const r1 = new Uint8Array(1 << 20).map((_, i) => i % 251);
    assert.deepEqual(await put(s, 'chan-1', 0n, 1n, r1), [null]);
    // Decided on a stale read (another writer wrote 1 since 0 was read).
    fails(await put(s, 'chan-1', 0n, 2n, r0), 'storage_unavailable:object_moved');
    // Never backwards, nor the same version again, even from an up-to-date read.
    fails(await put(s, 'chan-1', 1n, 1n, r0), 'conflict:object_version');
    fails(await put(s, 'chan-1', 1n, 0n, r0), 'conflict:object_version');
    assert.equal((await put(s, 'chan-1', 1n, 1n << 64n, r0))[0] instanceof CustosError, true, 'a version beyond u64 is refused');
    assert.deepEqual((await s.getObject('ln', 'chan-1'))!.record, r1);
    // u64::MAX (LDK's final update of a closed channel) round-trips exactly; nothing comes after it.
    const max = (1n << 64n) - 1n;
    assert.deepEqual(await put(s, 'chan-1', 1n, max, new Uint8Array(0)), [null]);
    assert.deepEqual(await s.getObject('ln', 'chan-1'), { keyId: 'ln', objectId: 'chan-1', version: max, record: new Uint8Array(0), hash: new Uint8Array(createHash('sha256').update(new Uint8Array(0)).digest()) });
    fails(await put(s, 'chan-1', max, max, r0), 'conflict:object_version');
    // Per key.
    assert.equal(await s.getObject('ln-other', 'chan-1'), null);
    // Two units of one batch creating the same object: the second decided on "no row" too, and fails alone.
    const [first, second] = await s.commit(
      [
        { mutations: [{ kind: 'putObject', keyId: 'ln', objectId: 'chan-2', expectedVersion: null, version: 1n, record: r0 }], audit: [draft('lightning_put', 'ln')] },
        { mutations: [{ kind: 'putObject', keyId: 'ln', objectId: 'chan-2', expectedVersion: null, version: 1n, record: r1 }], audit: [draft('lightning_put', 'ln')] },
      ],
      chain,
      now(),
    );
    assert.equal(first, null);
    assert.ok(second instanceof CustosError && second.fullCode === 'storage_unavailable:object_moved', String(second));
    assert.deepEqual((await s.getObject('ln', 'chan-2'))!.record, r0);
    await rowsSound(s);
    // 250 objects of another key in one unit, listed 100 at a time in object_id order (byte
    // order: "B-…" before "a-…", as SQLite and PostgreSQL's C collation agree).
    const ids = Array.from({ length: 250 }, (_, i) => `${i % 2 ? 'B' : 'a'}-${String(i).padStart(3, '0')}`);
    const rec = (id: string) => new Uint8Array(Buffer.from(`record of ${id}`));
    assert.deepEqual(await s.commit([{ mutations: ids.map((objectId) => ({ kind: 'putObject' as const, keyId: 'ln2', objectId, expectedVersion: null, version: 7n, record: rec(objectId) })), audit: [draft('lightning_restore', 'ln2')] }], chain, now()), [null]);
    // Keys on either side of it in the primary key's order, not to be listed with it.
    assert.deepEqual(await put(s, 'a-000', null, 1n, r0, 'ln1'), [null]);
    assert.deepEqual(await put(s, 'a-000', null, 1n, r0, 'ln3'), [null]);
    const listed: string[] = [];
    const pages: number[] = [];
    for (let after: string | null = null; ; ) {
      const page = await s.listObjects('ln2', after, 100);
      pages.push(page.length);
      for (const o of page) {
        assert.equal(o.keyId, 'ln2');
        assert.equal(o.version, 7n);
        assert.deepEqual(o.record, rec(o.objectId));
        listed.push(o.objectId);
      }
      if (page.length < 100) break;
      after = page[page.length - 1]!.objectId;
    }
    assert.deepEqual(pages, [100, 100, 50]);
    assert.deepEqual(listed, [...ids].sort());
    assert.equal(listed[0], 'B-001');
    assert.equal(await s.countObjects('ln2'), 250);
    assert.equal(await s.countObjects('ln'), 2);
    assert.equal(await s.countObjects('nobody'), 0);
    assert.deepEqual((await s.listObjects('ln', 'chan-1', 10)).map((o) => o.objectId), ['chan-2']);
    await rowsSound(s);
    // Durable, and read back the same by another open (which has not checked the rows: an
    // absent object is then judged by the table's count).
    await s.close();
    const s2 = await reopen();
    assert.deepEqual((await s2.getObject('ln', 'chan-1'))!.version, max);
    assert.deepEqual((await s2.getObject('ln2', 'B-249'))!.record, rec('B-249'));
    assert.equal(await s2.getObject('ln2', 'absent'), null);
    assert.deepEqual(await put(s2, 'chan-2', 1n, 2n, r1), [null]);
    assert.deepEqual(await put(s2, 'chan-3', null, 1n, r1), [null]);
    await rowsSound(s2);
  });

  withStore('checkpoints are stored and listed in order; integrity check is clean', async (s) => {
    await s.putCheckpoint({ seq: 5, hash: new Uint8Array(32).fill(5), ts: 't5', signature: new Uint8Array(64) });
    await s.putCheckpoint({ seq: 2, hash: new Uint8Array(32).fill(2), ts: 't2', signature: new Uint8Array(64) });
    assert.deepEqual((await s.checkpoints()).map((c) => c.seq), [2, 5]);
    assert.deepEqual(await s.integrityCheck(), []);
  });
}

/** How an attacker with write access to the database runs a statement (`$1`… placeholders). */
export type Sql = (q: string, params?: unknown[]) => Promise<Array<Record<string, unknown>>>;

/**
 * Two processes (stores) on one sealed database, `first` committed by one, both opened as a
 * vault opens (every row checked); `f` runs with them, and both are closed whatever happens.
 */
async function withTwoProcesses(open: () => Promise<Store>, first: WriteUnit[], f: (p: { a: Store; b: Store; mac: RowMac }) => Promise<void>): Promise<void> {
  const mac = new RowMac(new Uint8Array(32).fill(11), 'processes');
  const a = await open();
  try {
    const b = await open();
    try {
      for (const s of [a, b]) s.setRowAuthenticator(mac, chain);
      await a.migrate();
      await a.sealRows();
      if (first.length) assert.deepEqual(await a.commit(first, chain, new Date().toISOString()), first.map(() => null));
      assert.deepEqual(await a.checkRows(), []);
      assert.deepEqual(await b.checkRows(), []);
      await f({ a, b, mac });
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
}

/**
 * What a process remembers of key rows is bounded for rows it only inserted (here 3 instead of
 * a million): a key disabled, then pushed out of memory's order by a batch of new keys, then
 * put back active with SQL (its genuine older MAC) is refused, at a read and at a signature.
 */
async function replayAfterBulk(open: () => Promise<Store>, sql: Sql): Promise<void> {
  await withTwoProcesses(open, [], async ({ a, b }) => {
    (a as unknown as { seen: SeenRows }).seen = new SeenRows(3);
    const ts = () => new Date().toISOString();
    const victim = key('victim');
    assert.deepEqual(await a.commit([{ mutations: [{ kind: 'insertKey', key: victim }], audit: [draft('create')] }], chain, ts()), [null]);
    const [old] = await sql('SELECT * FROM keys WHERE id = $1', [victim.id]);
    assert.deepEqual(await a.commit([{ mutations: [{ kind: 'setKeyState', id: victim.id, state: 'disabled', updatedAt: ts() }], audit: [draft('disable')] }], chain, ts()), [null]);
    const bulk = Array.from({ length: 20 }, (_, i) => key(`bulk-${i}`));
    assert.deepEqual(await a.commit([{ mutations: bulk.map((k) => ({ kind: 'insertKey' as const, key: k })), audit: [draft('create')] }], chain, ts()), [null]);
    await sql('UPDATE keys SET state = $1, updated_at = $2, mac = $3, wseq = $4 WHERE id = $5', [old!.state, old!.updated_at, old!.mac, old!.wseq, victim.id]);
    await assert.rejects(a.findKey(victim.id), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_replayed');
    const [res] = await a.commit([{ mutations: [{ kind: 'assertKeyActive', id: victim.id }], audit: [draft('sign')] }], chain, ts()).catch((e: unknown) => [e]);
    assert.ok(res instanceof CustosError && res.fullCode === 'database_corrupt:row_replayed', String(res));
    // The other process learnt of the disable from the journal: it refuses the copy too.
    await assert.rejects(b.commit([{ mutations: [{ kind: 'assertKeyActive', id: victim.id }], audit: [draft('sign')] }], chain, ts()), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_replayed');
  });
}

/**
 * A process far behind the others (more journal entries than it reads under the write lock,
 * which every node's writes wait for) rolls its write back, reads the journal in a snapshot, and
 * writes: once, with what it read in force. Here the bound is 10 entries instead of 5,000.
 */
async function behindOutsideLock(open: () => Promise<Store>, sql: Sql): Promise<void> {
  await withTwoProcesses(open, [], async ({ a, b }) => {
    const inner = a as unknown as { catchUpInLock: number; transact: (q: unknown, mode: string, c?: unknown) => Promise<unknown> };
    inner.catchUpInLock = 10;
    const modes: string[] = [];
    const transact = inner.transact.bind(a);
    inner.transact = (q, mode, c) => (modes.push(mode), transact(q, mode, c));
    const vote = (height: bigint, fill: number) => ({ height, round: 0, step: 2, signBytes: new Uint8Array(8).fill(fill), signature: null });
    const advance = (s: Store, expected: bigint | null, next: ReturnType<typeof vote>) =>
      s.commit([{ mutations: [{ kind: 'advanceWatermark', keyId: 'val', chainId: 'c', expected: expected === null ? null : { height: expected, round: 0, step: 2 }, next }], audit: [draft('sign_vote', 'val')] }], chain, new Date().toISOString());
    assert.deepEqual(await advance(a, null, vote(1n, 1)), [null]);
    const [old] = await sql('SELECT * FROM watermarks');
    // The other process writes 40 rows, then height 2.
    const keys = Array.from({ length: 40 }, (_, i) => key(`behind-${i}`));
    assert.deepEqual(await b.commit([{ mutations: keys.map((k) => ({ kind: 'insertKey' as const, key: k })), audit: [draft('create')] }], chain, new Date().toISOString()), [null]);
    assert.deepEqual(await advance(b, 1n, vote(2n, 2)), [null]);
    // A write far behind: rolled back, a snapshot reads the journal, then it commits.
    modes.length = 0;
    assert.deepEqual(await a.commit([{ mutations: [{ kind: 'insertKey', key: key('after-behind') }], audit: [draft('create')] }], chain, new Date().toISOString()), [null]);
    assert.deepEqual(modes, ['write', 'snapshot', 'write']);
    // Close behind: read in the lock, one transaction.
    assert.deepEqual(await b.commit([{ mutations: [{ kind: 'insertKey', key: key('few') }], audit: [draft('create')] }], chain, new Date().toISOString()), [null]);
    modes.length = 0;
    assert.deepEqual(await a.commit([{ mutations: [], audit: [draft('op')] }], chain, new Date().toISOString()), [null]);
    assert.deepEqual(modes, ['write']);
    // What the snapshot read is in force: height 2 put back to height 1 is refused.
    await sql('UPDATE watermarks SET height = $1, sign_bytes = $2, signature = $3, mac = $4, wseq = $5', [old!.height, old!.sign_bytes, old!.signature, old!.mac, old!.wseq]);
    await assert.rejects(advance(a, 1n, vote(2n, 9)), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_replayed');
  });
}

/**
 * A database of an older schema (3: row MACs, before the write journal) opens, moves to 4 at
 * once, to 5 (the objects table's count) with its first write, and keeps every row; one of an
 * unknown newer schema is refused with a sentence.
 */
async function upgradeFromSchema3(open: () => Promise<Store>, sql: Sql): Promise<void> {
  const mac = new RowMac(new Uint8Array(32).fill(13), 'schema');
  const s = await open();
  s.setRowAuthenticator(mac, chain);
  await s.migrate();
  await s.sealRows();
  const first = { height: 1n, round: 0, step: 2, signBytes: new Uint8Array([1]), signature: null };
  assert.deepEqual(await s.commit([{ mutations: [{ kind: 'advanceWatermark', keyId: 'val', chainId: 'c', expected: null, next: first }], audit: [draft('sign_vote', 'val')] }], chain, new Date().toISOString()), [null]);
  await s.close();
  // What the previous release left: no journal table, schema 3.
  await sql('DROP TABLE row_writes');
  // (Nor the objects table and its count, which came with 5.)
  await sql('DROP TABLE objects');
  await sql("DELETE FROM meta WHERE name = 'integrity.count.objects'");
  await sql("UPDATE meta SET value = '3' WHERE name = 'schema_version'");
  const again = await open();
  again.setRowAuthenticator(mac, chain);
  try {
    await again.migrate();
    assert.equal(await again.getMeta('schema_version'), '4');
    assert.deepEqual(await again.checkRows(), []);
    const next = { ...first, height: 2n, signBytes: new Uint8Array([2]) };
    assert.deepEqual(await again.commit([{ mutations: [{ kind: 'advanceWatermark', keyId: 'val', chainId: 'c', expected: { height: 1n, round: 0, step: 2 }, next }], audit: [draft('sign_vote', 'val')] }], chain, new Date().toISOString()), [null]);
    assert.equal((await sql('SELECT count(*) AS n FROM row_writes'))[0]!.n !== 0, true, 'the journal is kept from the upgrade on');
    assert.equal(await again.getMeta('schema_version'), '5', 'the first write finished the upgrade');
    assert.deepEqual(await again.checkRows(), []);
    await sql("UPDATE meta SET value = '6' WHERE name = 'schema_version'");
    await assert.rejects(again.migrate(), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:schema_newer' && /newer Custos \(schema 6/.test(e.message));
  } finally {
    await again.close();
  }
}

export type ProcessesFactory = () => Promise<{ open(): Promise<Store>; sql: Sql; dispose(): Promise<void> }>;

/**
 * What several processes (nodes) on one database must get right, and the upgrade from the
 * previous schema; call it from the implementation's test file, like `storeConformance`.
 */
export function processesConformance(name: string, factory: ProcessesFactory): void {
  const each = (title: string, f: (open: () => Promise<Store>, sql: Sql) => Promise<void>) =>
    test(`${name}: ${title}`, async () => {
      const h = await factory();
      try {
        await f(h.open, h.sql);
      } finally {
        await h.dispose();
      }
    });
  each('a row another process wrote newer, put back to an older copy, is refused by this process too (the write journal)', replayAcrossProcesses);
  each('the database put back under two processes and written on by one: the other refuses; a revoked credential put back signs nothing', rollbackAcrossProcesses);
  each('a key row put back after a bulk creation pushed thousands of rows through memory is still refused (only rows merely inserted are forgotten)', replayAfterBulk);
  each('a process far behind reads the journal before it takes the write lock, and still refuses a row put back under it', behindOutsideLock);
  each('a database of schema 3 (before the write journal) opens and moves to 4, then to 5 with its first write; an unknown newer schema is refused', upgradeFromSchema3);
  each('a database of schema 4 (before objects) opens, reads its new objects table as empty (no count row yet), and moves to 5 with its first write', upgradeFromSchema4);
  each('an object row edited, put back older, deleted or forged outside Custos is refused (MAC, write journal, count)', objectsTampered);
  each('object rows written without row MACs are sealed with the rest (`custos upgrade`), and checked from then on', objectsSealed);
  each('the state row and head this process wrote are not hashed again by its next write; the state it remembers, put back after another process moved on, is refused', stateRemembered);
  each('a row whose absence matters, deleted with SQL, is not written again on top of the deletion by a compare-and-set that expected it absent', absentNotRewritten);
}

/**
 * A write that finds the state row and head entry byte for byte as this process left them
 * skips their MAC checks (SqlStore.stateSeen); anything else is checked in full, and the copy
 * remembered is never taken for the state once another process has moved it on.
 */
async function stateRemembered(open: () => Promise<Store>, sql: Sql): Promise<void> {
  await withTwoProcesses(open, [], async ({ a, b, mac }) => {
    const ts = () => new Date().toISOString();
    const checks: string[] = [];
    const check = mac.check.bind(mac);
    mac.check = (table, pk, bytes, m) => (checks.push(`${table}/${pk}`), check(table, pk, bytes, m));
    const stateChecked = () => checks.includes('meta/integrity.state');
    assert.deepEqual(await a.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.m', expected: null, value: '1' }], audit: [draft('a')] }], chain, ts()), [null]);
    checks.length = 0;
    assert.deepEqual(await a.commit([{ mutations: [], audit: [draft('b')] }], chain, ts()), [null]);
    assert.ok(!stateChecked(), `the state row this process wrote is not hashed again: ${checks.join(' ')}`);
    // What this process wrote last, and remembers.
    const [state] = await sql("SELECT * FROM meta WHERE name = 'integrity.state'");
    const head = Number((await sql('SELECT max(seq) AS n FROM audit'))[0]!.n);
    // The other process writes; this one's next transaction checks the state row in full (and fails on its own).
    assert.deepEqual(await b.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.m', expected: '1', value: '2' }], audit: [draft('c')] }], chain, ts()), [null]);
    checks.length = 0;
    const [failed] = await a.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.m', expected: 'nope', value: '3' }], audit: [draft('d')] }], chain, ts());
    assert.ok(failed instanceof CustosError);
    assert.ok(stateChecked(), 'after another writer, the state row is checked');
    // The state this process wrote and remembered, put back (as an older copy of the database would): refused.
    await sql('UPDATE meta SET value = $1, mac = $2, wseq = $3 WHERE name = $4', [state!.value, state!.mac, state!.wseq, state!.name]);
    await sql('DELETE FROM audit WHERE seq > $1', [head]);
    await assert.rejects(a.commit([{ mutations: [], audit: [draft('e')] }], chain, ts()), (e: unknown) => e instanceof CustosError && e.code === 'database_corrupt');
  });
}

/** Written on top of a deletion, a row would make the table's count agree again: the count is checked first. */
async function absentNotRewritten(open: () => Promise<Store>, sql: Sql): Promise<void> {
  await withTwoProcesses(open, [], async ({ a, b }) => {
    const ts = () => new Date().toISOString();
    assert.deepEqual(await a.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'ssh_agent.x.hidden', expected: null, value: '["key_1"]' }], audit: [draft('hide')] }], chain, ts()), [null]);
    await sql("DELETE FROM meta WHERE name = 'ssh_agent.x.hidden'");
    const [res] = await a.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'ssh_agent.x.hidden', expected: null, value: '[]' }], audit: [draft('start')] }], chain, ts()).catch((e: unknown) => [e]);
    assert.ok(res instanceof CustosError && res.fullCode === 'database_corrupt:row_count', String(res));
    // Nor by the other process: the row count it commits against tells of the deletion.
    const [other] = await b.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'ssh_agent.x.hidden', expected: null, value: '[]' }], audit: [draft('start')] }], chain, ts()).catch((e: unknown) => [e]);
    assert.ok(other instanceof CustosError && other.fullCode === 'database_corrupt:row_count', String(other));
  });
}

/** Object rows a store without row MACs wrote get their MACs, write sequences and count from `sealRows`. */
async function objectsSealed(open: () => Promise<Store>, sql: Sql): Promise<void> {
  const bare = await open();
  await bare.migrate();
  const max = (1n << 64n) - 1n;
  for (let i = 0; i < 150; i++) assert.deepEqual(await putObject(bare, `o${i}`, null, i === 0 ? max : BigInt(i), i % 256), [null]);
  await bare.close();
  assert.equal((await sql('SELECT count(*) AS n FROM objects WHERE mac IS NULL'))[0]!.n == 150, true);
  const mac = new RowMac(new Uint8Array(32).fill(15), 'sealed');
  const s = await open();
  s.setRowAuthenticator(mac, chain);
  try {
    await s.migrate();
    assert.ok((await s.sealRows()) >= 150);
    assert.equal((await sql("SELECT value FROM meta WHERE name = 'integrity.count.objects'"))[0]!.value, '150');
    assert.deepEqual(await s.checkRows(), []);
    assert.equal((await s.getObject('ln', 'o0'))!.version, max);
    assert.equal((await s.listObjects('ln', null, 200)).length, 150);
    assert.deepEqual(await putObject(s, 'o1', 1n, 2n, 1), [null]);
    await sql("UPDATE objects SET version = '99' WHERE object_id = 'o2'");
    await assert.rejects(s.getObject('ln', 'o2'), fullCode('database_corrupt:row_mac'));
  } finally {
    await s.close();
  }
}

const putObject = (s: Store, objectId: string, expectedVersion: bigint | null, version: bigint, fill: number) =>
  s.commit([{ mutations: [{ kind: 'putObject', keyId: 'ln', objectId, expectedVersion, version, record: new Uint8Array(64).fill(fill) }], audit: [draft('lightning_put', 'ln')] }], chain, new Date().toISOString());
const fullCode = (code: string) => (e: unknown) => e instanceof CustosError && e.fullCode === code;

/**
 * What a Custos of schema 4 leaves (no objects table, no count row for it) opens under this
 * one: the table is made at migrate, read as empty while its count row is missing, and the
 * first write writes the count and the version 5 together. The row digest (what anchors sign)
 * does not name an empty objects table, so anchors signed before it compare equal.
 */
async function upgradeFromSchema4(open: () => Promise<Store>, sql: Sql): Promise<void> {
  const mac = new RowMac(new Uint8Array(32).fill(14), 'schema4');
  const s = await open();
  s.setRowAuthenticator(mac, chain);
  await s.migrate();
  await s.sealRows();
  assert.deepEqual(await s.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.p', expected: null, value: '1' }], audit: [draft('op')] }], chain, new Date().toISOString()), [null]);
  const before = (await s.rowsDigest()).digest;
  assert.equal(before.tables.objects, undefined, 'an empty objects table is not named in the digest');
  await s.close();
  await sql('DROP TABLE objects');
  await sql("DELETE FROM meta WHERE name = 'integrity.count.objects'");
  await sql("UPDATE meta SET value = '4' WHERE name = 'schema_version'");
  // A tool that does not migrate (`audit verify` against an anchor) digests it as before.
  const tool = await open();
  assert.deepEqual((await tool.rowsDigest()).digest, before);
  await tool.close();
  const again = await open();
  again.setRowAuthenticator(mac, chain);
  const other = await open();
  other.setRowAuthenticator(mac, chain);
  try {
    await again.migrate();
    assert.equal(await again.getMeta('schema_version'), '4', 'the version moves with the count row, at the first write');
    // Before any check or write: the table is empty, its missing count reads as 0.
    assert.equal(await again.getObject('ln', 'c1'), null);
    assert.deepEqual(await again.listObjects('ln', null, 10), []);
    assert.deepEqual(await again.checkRows(), []);
    assert.deepEqual((await again.rowsDigest()).digest, before);
    // A second process (node) opened at schema 4 too.
    await other.migrate();
    assert.deepEqual(await other.checkRows(), []);
    // The first write: the count row (0, then 1 with the object) and version 5, in one transaction.
    assert.deepEqual(await putObject(again, 'c1', null, 1n, 1), [null]);
    assert.equal(await again.getMeta('schema_version'), '5');
    assert.equal((await sql("SELECT value FROM meta WHERE name = 'integrity.count.objects'"))[0]!.value, '1');
    assert.deepEqual(await again.checkRows(), []);
    const after = (await again.rowsDigest()).digest;
    assert.equal(after.counts.objects, 1);
    assert.equal(typeof after.tables.objects, 'string');
    // The other node takes the upgrade as done (from the version): it writes on...
    assert.deepEqual(await putObject(other, 'c2', null, 1n, 2), [null]);
    assert.deepEqual(await other.checkRows(), []);
    assert.equal((await sql("SELECT value FROM meta WHERE name = 'integrity.count.objects'"))[0]!.value, '2');
    // ...and from now on a missing count row is an edit, for every process.
    await sql("DELETE FROM meta WHERE name = 'integrity.count.objects'");
    await assert.rejects(putObject(other, 'c3', null, 1n, 3), fullCode('database_corrupt:row_count'));
    await assert.rejects(putObject(again, 'c3', null, 1n, 3), fullCode('database_corrupt:row_count'));
    const fresh = await open();
    fresh.setRowAuthenticator(mac, chain);
    await fresh.migrate();
    assert.match((await fresh.checkRows()).join('\n'), /count of objects rows is missing/);
    await fresh.close();
  } finally {
    await again.close();
    await other.close();
  }
}

/**
 * Object rows (Lightning channel state) under an attacker with write access to the database:
 * an edited row fails its MAC; an older copy put back is refused by the process that wrote
 * the newer one and, through the write journal, by the other; a deleted row is refused by a
 * process that saw it, by one that learns of it from the journal, and by one that only has the
 * table's count; a forged row is never obeyed. An object another process created is not taken
 * for a deleted one.
 */
async function objectsTampered(open: () => Promise<Store>, sql: Sql): Promise<void> {
  await withTwoProcesses(open, [], async ({ a, b, mac }) => {
    const rowOf = async (objectId: string) => (await sql('SELECT * FROM objects WHERE key_id = $1 AND object_id = $2', ['ln', objectId]))[0]!;
    const putBack = (r: Record<string, unknown>) => sql('UPDATE objects SET version = $1, record = $2, record_sha256 = $3, mac = $4, wseq = $5 WHERE key_id = $6 AND object_id = $7', [r.version, r.record, r.record_sha256, r.mac, r.wseq, r.key_id, r.object_id]);
    assert.deepEqual(await putObject(a, 'c1', null, 1n, 1), [null]);
    assert.deepEqual(await putObject(a, 'c2', null, 1n, 1), [null]);
    const c1v1 = await rowOf('c1');
    assert.deepEqual(await putObject(a, 'c1', 1n, 2n, 2), [null]);
    const c1v2 = await rowOf('c1');
    const c2 = await rowOf('c2');

    // Deleted. The other process never read it and has written nothing since its open: it reads
    // the journal in the snapshot and learns the row was written.
    await sql("DELETE FROM objects WHERE object_id = 'c2'");
    await assert.rejects(b.getObject('ln', 'c2'), fullCode('database_corrupt:row_count'));
    // The process that wrote it, at a read and at a write decided on "no row".
    await assert.rejects(a.getObject('ln', 'c2'), fullCode('database_corrupt:row_count'));
    await assert.rejects(putObject(a, 'c2', null, 1n, 9), fullCode('database_corrupt:row_count'));
    // A process that has checked nothing yet: the table's count.
    const c = await open();
    c.setRowAuthenticator(mac, chain);
    await assert.rejects(c.getObject('ln', 'c2'), fullCode('database_corrupt:row_count'));
    await assert.rejects(c.listObjects('ln', null, 10), fullCode('database_corrupt:row_count'));
    assert.match((await c.checkRows()).join('\n'), /objects table holds 1 protected rows where Custos wrote 2/);
    await c.close();
    await sql('INSERT INTO objects (key_id, object_id, version, record, record_sha256, mac, wseq) VALUES ($1, $2, $3, $4, $5, $6, $7)', [c2.key_id, c2.object_id, c2.version, c2.record, c2.record_sha256, c2.mac, c2.wseq]);

    // An object the other process created is new to this one, not deleted: both write on.
    assert.equal(await b.getObject('ln', 'c3'), null);
    assert.deepEqual(await putObject(b, 'c3', null, 1n, 3), [null]);
    assert.equal((await a.getObject('ln', 'c3'))!.version, 1n);
    assert.deepEqual(await putObject(a, 'c3', 1n, 2n, 4), [null]);

    // Edited: its version, its record, a version that is no number.
    for (const edit of ["UPDATE objects SET version = '3' WHERE object_id = 'c1'", "UPDATE objects SET version = 'x1' WHERE object_id = 'c1'", "UPDATE objects SET version = '02' WHERE object_id = 'c1'"]) {
      await sql(edit);
      await assert.rejects(a.getObject('ln', 'c1'), fullCode('database_corrupt:row_mac'), edit);
      await assert.rejects(b.getObject('ln', 'c1'), fullCode('database_corrupt:row_mac'), edit);
      await putBack(c1v2);
    }
    await sql("UPDATE objects SET record = $1 WHERE object_id = 'c1'", [Buffer.alloc(64, 9)]);
    await assert.rejects(a.getObject('ln', 'c1'), fullCode('database_corrupt:row_mac'));
    // (A write decides on the row's version and MAC, which cover the record's hash, not the
    // record: it does not read the record, so it would replace the altered one. The vault reads
    // the object, checked, before it decides: that read is refused above.)
    await assert.rejects(a.listObjects('ln', null, 10), fullCode('database_corrupt:row_mac'));
    await putBack(c1v2);
    assert.equal((await a.getObject('ln', 'c1'))!.version, 2n);

    // An older copy put back, with its genuine MAC: refused by the writer, and by the other
    // process at its next write (it never read version 2: the journal told it).
    await putBack(c1v1);
    await assert.rejects(a.getObject('ln', 'c1'), fullCode('database_corrupt:row_replayed'));
    await assert.rejects(putObject(b, 'c1', 1n, 2n, 7), fullCode('database_corrupt:row_replayed'));
    await putBack(c1v2);

    // Forged: no MAC, or the MAC of another row.
    await sql("INSERT INTO objects (key_id, object_id, version, record, record_sha256) VALUES ('ln', 'c8', '1', $1, 'x')", [Buffer.alloc(4)]);
    await sql("INSERT INTO objects (key_id, object_id, version, record, record_sha256, mac, wseq) VALUES ('ln', 'c9', $1, $2, $3, $4, $5)", [c1v2.version, c1v2.record, c1v2.record_sha256, c1v2.mac, c1v2.wseq]);
    await assert.rejects(a.getObject('ln', 'c8'), fullCode('database_corrupt:row_mac'));
    await assert.rejects(a.getObject('ln', 'c9'), fullCode('database_corrupt:row_mac'));
    await sql("DELETE FROM objects WHERE object_id IN ('c8', 'c9')");

    // Everything put back as Custos wrote it: sound again, and writable.
    assert.deepEqual(await a.checkRows(), []);
    assert.deepEqual(await putObject(b, 'c1', 2n, 3n, 5), [null]);
    assert.deepEqual(await b.checkRows(), []);
  });
}

/**
 * Two processes on one database (two stores): a row the other process wrote newer, put back
 * to an older copy (its own genuine MAC) with SQL, is refused by this one too, though it never
 * read the newer copy: the write journal told it. `sql` runs a statement as an attacker with
 * write access to the database would.
 */
async function replayAcrossProcesses(open: () => Promise<Store>, sql: Sql): Promise<void> {
  await withTwoProcesses(open, [], async ({ a, b, mac }) => {
    const vote = (height: bigint, fill: number) => ({ height, round: 0, step: 2, signBytes: new Uint8Array(8).fill(fill), signature: null });
    const advance = (s: Store, expected: bigint | null, next: ReturnType<typeof vote>) =>
      s.commit([{ mutations: [{ kind: 'advanceWatermark', keyId: 'val', chainId: 'c', expected: expected === null ? null : { height: expected, round: 0, step: 2 }, next }], audit: [draft('sign_vote', 'val')] }], chain, new Date().toISOString());
    assert.deepEqual(await advance(a, null, vote(1n, 1)), [null]);
    const [old] = await sql('SELECT * FROM watermarks');
    assert.deepEqual(await advance(b, 1n, vote(2n, 2)), [null], 'the other process signs height 2');
    // The attacker puts the height-1 row back, with its genuine MAC and write sequence.
    await sql('UPDATE watermarks SET height = $1, sign_bytes = $2, signature = $3, mac = $4, wseq = $5', [old!.height, old!.sign_bytes, old!.signature, old!.mac, old!.wseq]);
    // This process never read height 2, yet it does not sign height 2 again over other bytes.
    await assert.rejects(advance(a, 1n, vote(2n, 9)), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_replayed');
    // Nor does it get a signature past a journal entry deleted with SQL.
    await sql('DELETE FROM row_writes WHERE wseq = (SELECT max(wseq) FROM row_writes)');
    await sql('UPDATE watermarks SET height = $1', ['3']);
    const c = await open();
    c.setRowAuthenticator(mac, chain);
    assert.ok((await c.checkRows()).length > 0, 'a start finds the edit');
    await c.close();
  });
}

/**
 * The whole database put back to an older copy under two processes, then written on by the
 * one that never saw the lost writes: the one that made them refuses at its next write (the log
 * no longer holds the entry it last saw). And a credential revoked by one process, put back with
 * SQL, signs nothing through the other.
 */
async function rollbackAcrossProcesses(open: () => Promise<Store>, sql: Sql): Promise<void> {
  const now = new Date().toISOString();
  const hash = new Uint8Array(32).fill(3);
  const token = { id: 'tok_r', name: 'wallet', hash, role: 'signer' as const, createdAt: now, terms: {} };
  await withTwoProcesses(open, [{ mutations: [{ kind: 'insertToken', token }], audit: [draft('token')] }], async ({ a, b, mac }) => {
    const credential = `tok_r/${Buffer.from(hash).subarray(0, 8).toString('hex')}`;
    const use = (s: Store) => s.commit([{ mutations: [{ kind: 'assertCredential', credential, now: new Date().toISOString() }], audit: [draft('sign')] }], chain, new Date().toISOString());
    assert.deepEqual(await use(b), [null]);
    // Everything as it is now, kept by the attacker.
    const tables = ['meta', 'keys', 'api_tokens', 'watermarks', 'audit', 'row_writes'];
    const copy: Record<string, Array<Record<string, unknown>>> = {};
    for (const t of tables) copy[t] = await sql(`SELECT * FROM ${t}`);
    // A revokes the credential: B refuses it in its signing transaction.
    assert.deepEqual(await a.commit([{ mutations: [{ kind: 'updateToken', expected: token, token: { ...token, terms: { revoked_at: now } } }], audit: [draft('revoke')] }], chain, now), [null]);
    const [revoked] = await use(b);
    assert.ok(revoked instanceof CustosError && revoked.fullCode === 'unauthorized:credential_moved', String(revoked));
    // The token row alone put back: B, told by the journal, refuses the older copy.
    const [oldToken] = copy.api_tokens!;
    await sql('UPDATE api_tokens SET terms = $1, mac = $2, wseq = $3 WHERE id = $4', [oldToken!.terms, oldToken!.mac, oldToken!.wseq, 'tok_r']);
    await assert.rejects(use(b), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_replayed');
    // The whole database put back, and B writes on top of it: A, which made the lost writes, refuses.
    for (const t of tables) {
      await sql(`DELETE FROM ${t}`);
      for (const r of copy[t]!) {
        const cols = Object.keys(r);
        await sql(`INSERT INTO ${t} (${cols.join(',')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(',')})`, cols.map((c) => r[c]));
      }
    }
    const fresh = await open();
    fresh.setRowAuthenticator(mac, chain);
    assert.deepEqual(await fresh.checkRows(), [], 'the copy is consistent in itself');
    assert.deepEqual(await fresh.commit([{ mutations: [], audit: [draft('x'), draft('y'), draft('z')] }], chain, new Date().toISOString()), [null]);
    await fresh.close();
    await assert.rejects(a.commit([{ mutations: [], audit: [draft('after')] }], chain, new Date().toISOString()), (e: unknown) => e instanceof CustosError && e.code === 'database_corrupt');
  });
}
