/**
 * Key purpose, fixed at creation and bound into the envelope: each signing path asks for its
 * use and a key signs only for what its purpose allows, whatever front end asks. Keys made
 * before purposes (`legacy`) keep their uses but consensus; one with a consensus watermark
 * becomes a consensus key when the vault opens.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { insertLegacyKey, makeVault, PASS } from '../helpers/tmpvault.js';
import { CustosError } from '../../src/core/errors.js';
import { openVault } from '../../src/vault/open.js';
import { chainHash } from '../../src/audit/chain.js';
import type { TestVault } from '../helpers/tmpvault.js';

const isCode = (code: string) => (e: unknown) => e instanceof CustosError && e.fullCode === code;
const msg = { kind: 'message' as const, bytes: new TextEncoder().encode('hello') };
const vote = (v: TestVault, key: string, height: bigint) =>
  v.vault.signConsensus({
    ...v.ctx(),
    key,
    chainId: 'purpose-chain',
    position: { height, round: 0, step: 2 },
    signBytes: new TextEncoder().encode(`prevote ${height}`),
    onlyTimestampDiffers: () => false,
    context: { protocol: 'privval' },
  });

test('each purpose signs only its own use, from any front end', async () => {
  const v = await makeVault();
  try {
    await v.vault.createKey(v.ctx(), { label: 'api', algorithm: 'ed25519', exportable: false });
    await v.vault.createKey(v.ctx(), { label: 'login', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
    await v.vault.createKey(v.ctx(), { label: 'val', algorithm: 'ed25519', exportable: false, purpose: 'consensus' });
    await v.vault.createKey(v.ctx(), { label: 'btc', algorithm: 'secp256k1', exportable: false, purpose: 'bitcoin' });
    assert.equal((await v.vault.getKey('api')).attributes.purpose, 'general', 'general is the default');
    const raw = (key: string) => v.vault.sign({ ...v.ctx(), key, payload: msg, options: {}, context: { protocol: 'http' } });
    const ssh = (key: string) => v.vault.sign({ ...v.ctx(), key, payload: msg, options: {}, context: { protocol: 'ssh-agent', socket: 'default' } });
    await raw('api');
    await assert.rejects(ssh('api'), isCode('key_purpose'));
    await ssh('login');
    await assert.rejects(raw('login'), isCode('key_purpose'));
    await assert.rejects(raw('val'), isCode('key_purpose'));
    await assert.rejects(ssh('val'), isCode('key_purpose'));
    await vote(v, 'val', 5n);
    await assert.rejects(vote(v, 'api', 5n), isCode('key_purpose'));
    await assert.rejects(raw('btc'), isCode('key_purpose'));
    // The privval connector asks for `consensus` for vote extensions: only consensus keys answer.
    await v.vault.sign({ ...v.ctx(), key: 'val', payload: msg, options: {}, context: { protocol: 'privval' }, use: 'consensus' });
    await assert.rejects(v.vault.sign({ ...v.ctx(), key: 'api', payload: msg, options: {}, context: { protocol: 'privval' }, use: 'consensus' }), isCode('key_purpose'));
    // Purposes fit their algorithms, and cannot be changed once given.
    await assert.rejects(v.vault.createKey(v.ctx(), { label: 'p256-val', algorithm: 'p256', exportable: false, purpose: 'consensus' }), isCode('bad_request'));
    await assert.rejects(v.vault.createKey(v.ctx(), { label: 'huh', algorithm: 'ed25519', exportable: false, purpose: 'everything' }), isCode('bad_request'));
    await assert.rejects(v.vault.setPurpose(v.ctx(), 'api', 'consensus'), isCode('key_purpose'));
    const denied = (await v.store.auditTail(40)).filter((e) => e.outcome === 'denied' && e.reason === 'key_purpose');
    assert.ok(denied.length >= 7, 'every refusal is on the record');
  } finally {
    await v.dispose();
  }
});

test('legacy keys: a watermarked one becomes a consensus key at open; others keep their uses but consensus, until set-purpose', async () => {
  const v = await makeVault();
  try {
    const old = await insertLegacyKey(v, 'old-validator');
    await insertLegacyKey(v, 'old-api');
    // An old vault's validator: it has signed votes, so it has a watermark (written as the old
    // vault wrote it; import-state now takes only consensus keys).
    const [err] = await v.store.commit(
      [{ mutations: [{ kind: 'advanceWatermark', keyId: old.id, chainId: 'purpose-chain', expected: null, next: { height: 100n, round: 0, step: 2, signBytes: new Uint8Array(0), signature: null } }], audit: [] }],
      chainHash,
      new Date().toISOString(),
    );
    assert.equal(err, null);
    await assert.rejects(v.vault.importWatermark(v.ctx(), 'old-api', 'purpose-chain', { height: 1n, round: 0, step: 2 }), isCode('key_purpose'));
    assert.equal((await v.vault.getKey('old-api')).attributes.purpose, undefined);
    await v.close();
    const re = await openVault({ dataDir: v.dataDir, passphrase: PASS });
    try {
      const k = await re.vault.getKey('old-validator');
      assert.equal(k.attributes.purpose, 'consensus');
      assert.equal(k.version, old.version + 1, 'sealed again, with the purpose bound into the envelope');
      const migrated = (await re.store.auditTail(20)).find((e) => e.operation === 'set_purpose');
      assert.equal(migrated?.details.migrated, true);
      const ctx = { principal: { id: 'token:admin', kind: 'admin' as const }, requestId: 'r' };
      await assert.rejects(re.vault.sign({ ...ctx, key: 'old-validator', payload: msg, options: {}, context: { protocol: 'http' } }), isCode('key_purpose'));
      // The legacy key without a watermark signs raw and SSH payloads as before...
      await re.vault.sign({ ...ctx, key: 'old-api', payload: msg, options: {}, context: { protocol: 'http' } });
      await re.vault.sign({ ...ctx, key: 'old-api', payload: msg, options: {}, context: { protocol: 'ssh-agent' } });
      // ...but no consensus vote, and the refusal says how to give it the purpose.
      const cons = (key: string) =>
        re.vault.signConsensus({ ...ctx, key, chainId: 'c', position: { height: 1n, round: 0, step: 2 }, signBytes: new Uint8Array([1]), onlyTimestampDiffers: () => false, context: {} });
      await assert.rejects(cons('old-api'), (e: unknown) => isCode('key_purpose')(e) && /custos keys set-purpose old-api consensus/.test((e as Error).message));
      await re.vault.setPurpose(ctx, 'old-api', 'consensus');
      await cons('old-api');
      await assert.rejects(re.vault.sign({ ...ctx, key: 'old-api', payload: msg, options: {}, context: { protocol: 'http' } }), isCode('key_purpose'));
      await assert.rejects(re.vault.setPurpose(ctx, 'old-api', 'general'), isCode('key_purpose'), 'once only');
    } finally {
      await re.close();
    }
  } finally {
    await v.dispose();
  }
});
