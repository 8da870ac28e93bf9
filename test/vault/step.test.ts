/**
 * The one decide-sign-commit step under contention and races (vault/step.ts): requests that
 * spend one budget take turns instead of starving each other, every way a signature is not
 * released is on the record, and a key changed or destroyed meanwhile keeps nothing prepared.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CustosError } from '../../src/core/errors.js';
import type { Principal } from '../../src/core/types.js';
import type { Store } from '../../src/store/store.js';
import { insertLegacyKey, makeVault } from '../helpers/tmpvault.js';

const HTTP: Principal = { id: 'token:app', kind: 'admin' };
const signReq = (key: string, i: number, principal: Principal = HTTP) => ({
  requestId: `req-${i}`,
  principal,
  key,
  payload: { kind: 'message' as const, bytes: new Uint8Array([i & 255, i >> 8]) },
  options: {},
  context: { protocol: 'http' },
});
const isSignUnit = (u: { mutations: { kind: string }[] }) => u.mutations.some((m) => m.kind === 'assertKeyActive');

/** Counts the signing units that reach the store. */
function countSignUnits(store: Store): () => number {
  const s = store as unknown as { commit: Store['commit'] };
  const orig = s.commit.bind(store);
  let n = 0;
  s.commit = async (units, chain, ts) => {
    n += units.filter(isSignUnit).length;
    return orig(units, chain, ts);
  };
  return () => n;
}

test('24 concurrent signatures against one rate limit: all signed, each made once, the budget spent exactly', async () => {
  const v = await makeVault();
  try {
    await v.vault.createKey(v.ctx(), { label: 'k', algorithm: 'ed25519', exportable: false });
    await v.vault.uploadPolicy(v.ctx(), 'id = "rl"\n[applies_to]\nkeys = ["k"]\n[[rules]]\nid = "per-key"\ntype = "rate_limit"\nlimit = 30\nwindow = "1h"\nper = "key"\nother_payloads = "allow"\n');
    const units = countSignUnits(v.store);
    const r = await Promise.allSettled(Array.from({ length: 24 }, (_, i) => v.vault.sign(signReq('k', i))));
    assert.deepEqual(r.filter((x) => x.status === 'rejected').map((x) => (x as PromiseRejectedResult).reason?.fullCode), []);
    assert.equal(units(), 24, 'no signature was made only to be dropped');
    // The budget counted all 24: 6 more pass, the 7th is refused.
    for (let i = 24; i < 30; i++) await v.vault.sign(signReq('k', i));
    await assert.rejects(v.vault.sign(signReq('k', 30)), (e: CustosError) => e.fullCode === 'policy_denied:rate_limit');
    // A budget refused under contention is refused, and audited, for each request beyond it.
    const more = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => v.vault.sign(signReq('k', 40 + i))));
    assert.ok(more.every((x) => x.status === 'rejected'));
    const tail = await v.store.auditTail(500);
    for (let i = 40; i < 45; i++) assert.ok(tail.some((e) => e.requestId === `req-${i}` && e.outcome === 'denied'), `req-${i} is on the record`);
  } finally {
    await v.dispose();
  }
});

test('a signature whose compare-and-set other processes keep winning is given up, and the failure audited', async () => {
  const v = await makeVault();
  try {
    await v.vault.createKey(v.ctx(), { label: 'k', algorithm: 'ed25519', exportable: false });
    const s = v.store as unknown as { commit: Store['commit'] };
    const orig = s.commit.bind(v.store);
    let lost = 0;
    // Stands in for other processes winning every compare-and-set: signing units come back moved.
    s.commit = async (units, chain, ts) => {
      const res = await orig(units.map((u) => (isSignUnit(u) ? { mutations: [], audit: [] } : u)), chain, ts);
      return res.map((x, i) => (isSignUnit(units[i]!) ? (lost++, new CustosError('storage_unavailable', 'moved', { tag: 'meta_moved' })) : x));
    };
    await assert.rejects(v.vault.sign(signReq('k', 1)), (e: CustosError) => e.code === 'storage_unavailable');
    assert.ok(lost >= 2 && lost <= 8, `bounded retries (${lost})`);
    s.commit = orig;
    const mine = (await v.store.auditTail(50)).filter((e) => e.requestId === 'req-1');
    assert.deepEqual(mine.map((e) => `${e.operation}/${e.outcome}/${e.reason}`), ['sign/failed/storage_unavailable']);
  } finally {
    await v.dispose();
  }
});

test('the request refused because too many wait for approval is on the record', async () => {
  const v = await makeVault({ approvalTimeoutMs: 10_000 });
  try {
    await v.vault.createKey(v.ctx(), { label: 'c', algorithm: 'ed25519', exportable: false, attributes: { confirm: true } });
    const agent: Principal = { id: 'ssh-agent:x', kind: 'agent' };
    const waiting = Array.from({ length: 32 }, (_, i) => v.vault.sign(signReq('c', i, agent)).catch((e: unknown) => e));
    for (let i = 0; i < 100 && v.vault.approvals.pending().length < 32; i++) await new Promise((r) => setTimeout(r, 20));
    await assert.rejects(v.vault.sign(signReq('c', 99, agent)), (e: CustosError) => e.fullCode === 'policy_denied:approval');
    const mine = (await v.store.auditTail(200)).filter((e) => e.requestId === 'req-99');
    assert.deepEqual(mine.map((e) => `${e.operation}/${e.outcome}`), ['sign/denied']);
    v.vault.approvals.close();
    await Promise.all(waiting);
  } finally {
    await v.dispose();
  }
});

test('an xpub racing the destroy of its HD key is refused, and no derived node stays in memory', async () => {
  const v = await makeVault();
  try {
    await v.vault.createHdKey(v.ctx(), { label: 'hd', curve: 'secp256k1' });
    const core = (v.vault as unknown as { core: { hdCache: { stats: { size: number } } } }).core;
    const [d, x] = await Promise.allSettled([v.vault.destroyKey(v.ctx(), 'hd'), v.vault.hdPublicKey(v.ctx(), 'hd', "m/84'/0'/0'/0/1")]);
    assert.equal(d.status, 'fulfilled');
    assert.equal(x.status, 'rejected', 'no xpub of a destroyed key');
    assert.equal(core.hdCache.stats.size, 0);
    const ops = (await v.store.auditTail(5)).map((e) => `${e.operation}/${e.outcome}`);
    assert.deepEqual(ops.slice(-2), ['destroy/ok', 'xpub/denied']);
  } finally {
    await v.dispose();
  }
});

test('a key given its purpose while a signature waited for approval: that signature is dropped, and audited', async () => {
  const v = await makeVault({ approvalTimeoutMs: 10_000 });
  try {
    await insertLegacyKey(v, 'old');
    await v.vault.uploadPolicy(v.ctx(), 'id = "ask"\n[applies_to]\nkeys = ["old"]\n[[rules]]\ntype = "approval"\napprovers = ["token:alice"]\nrequired = 1\nother_payloads = "allow"\n');
    const pending = v.vault.sign(signReq('old', 7)).catch((e: unknown) => e);
    let req;
    for (let i = 0; i < 100 && !(req = v.vault.approvals.pending()[0]); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(req, 'the signature waits for approval');
    await v.vault.setPurpose(v.ctx(), 'old', 'consensus');
    await v.vault.decideApproval({ principal: { id: 'token:alice', kind: 'admin' }, requestId: 'a' }, req.id, true);
    const e = (await pending) as CustosError;
    assert.equal(e.fullCode, 'storage_unavailable:key_moved', 'decided on the key as it was: nothing released');
    const mine = (await v.store.auditTail(50)).filter((x) => x.requestId === 'req-7').map((x) => `${x.operation}/${x.outcome}`);
    assert.deepEqual(mine, ['sign/decided', 'sign/denied']);
  } finally {
    await v.dispose();
  }
});
