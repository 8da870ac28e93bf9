/**
 * Keys made in batches (`vault.createKeys`, what `POST /v1/keys/batch` and `custos keys
 * generate --count` drive), on a real vault on a SQLite file: one transaction with an audit
 * entry per key, all or none; a taken label or a label outside the principal's scope refuses the
 * whole batch (audited); the generator's public key is the seed's own; and Ed25519 generation in
 * bulk never stalls (Node 20 deadlocks when a generated pair is exported afterwards, so the
 * generator asks for both encodings in the same call).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { generateKey, publicKeyFromSecret } from '../../src/crypto/algorithms.js';
import { ALGORITHMS, type Algorithm } from '../../src/core/types.js';
import { isCustosError } from '../../src/core/errors.js';
import { makeVault } from '../helpers/tmpvault.js';

const code = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return isCustosError(e) ? e.fullCode : String(e);
  }
};

test('a generated key pair: the public key is the secret\'s own, for every algorithm', async () => {
  for (const alg of ALGORITHMS.filter((a: Algorithm) => a !== 'rsa-3072' && a !== 'rsa-4096')) {
    const g = await generateKey(alg);
    assert.deepEqual(g.publicKey, publicKeyFromSecret(alg, g.secret), alg);
  }
});

test('Ed25519 generation in bulk finishes (no lock held across a garbage collection)', { timeout: 60_000 }, async () => {
  // 20,000 pairs allocate enough to collect many times mid-generation; the export-afterwards
  // way hung in about one run in three at 3,000.
  const seen = new Set<string>();
  for (let i = 0; i < 20_000; i++) {
    const g = await generateKey('ed25519');
    if (i % 1000 === 0) assert.deepEqual(g.publicKey, publicKeyFromSecret('ed25519', g.secret));
    seen.add(Buffer.from(g.publicKey).toString('hex'));
    g.secret.fill(0);
  }
  assert.equal(seen.size, 20_000);
});

test('a batch is one transaction: every key with its audit entry, or none of them', async () => {
  const v = await makeVault();
  try {
    const labels = Array.from({ length: 250 }, (_, i) => `batch-${i}`);
    // Counts the store's transactions (the group committer calls the store object's own method).
    let commits = 0;
    const commit = v.store.commit.bind(v.store);
    v.store.commit = (...a) => (commits++, commit(...a));
    const made = await v.vault.createKeys(v.ctx(), { labels, algorithm: 'ed25519' });
    assert.equal(made.length, 250);
    assert.equal(commits, 1, 'one transaction for the whole batch');
    const audit = await v.store.auditTail(250);
    assert.deepEqual(new Set(audit.filter((e) => e.operation === 'create' && e.outcome === 'ok').map((e) => e.keyLabel)), new Set(labels));
    assert.equal((await v.vault.getKey('batch-7')).attributes.purpose, 'general');
    await v.vault.createKeys(v.ctx(), { labels: ['ssh-1'], algorithm: 'ed25519', purpose: 'ssh' });
    assert.equal((await v.vault.getKey('ssh-1')).attributes.purpose, 'ssh');
    const sig = await v.vault.sign({ ...v.ctx(), key: 'batch-7', payload: { kind: 'message', bytes: new TextEncoder().encode('m') }, options: {}, context: { protocol: 'test' } });
    assert.ok(sig.signature.length === 64);

    // One taken label in the middle: nothing of the batch is made, and the refusal is audited.
    const clash = ['fresh-1', 'batch-3', 'fresh-2'];
    assert.equal(await code(v.vault.createKeys(v.ctx(), { labels: clash, algorithm: 'ed25519' })), 'label_taken');
    assert.equal(await v.store.findKey('fresh-1'), null);
    assert.equal(await v.store.findKey('fresh-2'), null);
    const [refusal] = await v.store.auditTail(1);
    assert.equal(refusal!.outcome, 'denied');
    assert.equal(refusal!.reason, 'label_taken');
    assert.equal(refusal!.details.batch_first, 'fresh-1');

    // The same label twice in one batch is refused before anything is generated.
    assert.equal(await code(v.vault.createKeys(v.ctx(), { labels: ['twice', 'once', 'twice'], algorithm: 'ed25519' })), 'bad_request');
    assert.equal(await v.store.findKey('twice'), null);

    // Row MACs, counts and the rows' digest hold after the batch and the rolled-back ones.
    assert.deepEqual(await v.store.checkRows(), []);

    for (const bad of [[], Array.from({ length: 1001 }, (_, i) => `x-${i}`)]) assert.equal(await code(v.vault.createKeys(v.ctx(), { labels: bad, algorithm: 'ed25519' })), 'bad_request');
    assert.equal(await code(v.vault.createKeys(v.ctx(), { labels: ['key_abc'], algorithm: 'ed25519' })), 'invalid_label');
    assert.equal(await code(v.vault.createKeys(v.ctx(), { labels: ['c-1'], algorithm: 'p256', purpose: 'consensus' })), 'bad_request');
    assert.equal(await code(v.vault.createKeys(v.ctx(), { labels: ['w-1'], algorithm: 'ed25519', wrapped: true })), 'bad_request');
  } finally {
    await v.dispose();
  }
});

test('a scoped operator makes a batch only within its globs: one label outside refuses it all, audited under its name', async () => {
  const v = await makeVault();
  try {
    const made = await v.vault.createToken(v.ctx(), { name: 'ops', role: 'operator', keys: ['app-*'] });
    const ctx = { principal: await v.vault.authenticate({ token: made.token!, remote: '127.0.0.1' }), requestId: randomUUID() };
    assert.equal((await v.vault.createKeys(ctx, { labels: ['app-1', 'app-2'], algorithm: 'secp256k1' })).length, 2);
    assert.equal(await code(v.vault.createKeys({ ...ctx, requestId: randomUUID() }, { labels: ['app-3', 'treasury-1'], algorithm: 'ed25519' })), 'forbidden:scope');
    assert.equal(await v.store.findKey('app-3'), null);
    const [refusal] = await v.store.auditTail(1);
    assert.equal(refusal!.principal, 'token:ops');
    assert.equal(refusal!.outcome, 'denied');
  } finally {
    await v.dispose();
  }
});
