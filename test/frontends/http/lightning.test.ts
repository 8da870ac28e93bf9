/**
 * The Lightning routes over the HTTP API (src/frontends/http/lightning.ts) against a real vault:
 * each route's scope (state, ecdh, decrypt, manage), the hsmd hook's answers, reconcile's
 * statuses and fork refusal, and malformed input refused by the schemas.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { buildHttpServer } from '../../../src/frontends/http/server.js';
import { Metrics } from '../../../src/frontends/http/metrics.js';
import { eciesEncrypt } from '../../../src/crypto/ecies.js';
import { generateMnemonic } from '../../../src/wallet/hd.js';
import { makeTestVault, type TestVault } from '../../helpers/vault.js';

let tv: TestVault;
let app: FastifyInstance;
const admin = () => ({ authorization: `Bearer ${tv.adminToken}` });

async function call(method: 'GET' | 'POST' | 'PUT', url: string, body?: unknown, headers: Record<string, string> = admin()) {
  const r = await app.inject({ method, url, headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { payload: JSON.stringify(body) } : {}) });
  return { status: r.statusCode, body: JSON.parse(r.body) as Record<string, unknown> };
}

async function tokenWith(name: string, operations: string[]): Promise<Record<string, string>> {
  const r = await call('POST', '/v1/tokens', { name, role: 'signer', operations, keys: ['ln'] });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return { authorization: `Bearer ${String(r.body.token)}` };
}

before(async () => {
  const metrics = new Metrics();
  tv = await makeTestVault({ metrics });
  app = await buildHttpServer({ vault: tv.opened.vault, metrics });
  await app.ready();
  const r = await call('POST', '/v1/keys/hd', { label: 'ln', curve: 'secp256k1', mnemonic: generateMnemonic(), purpose: 'lightning' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
});

after(async () => {
  await app?.close();
  await tv?.cleanup();
});

test('state, ecdh and decrypt are scopes of their own; restore needs manage', async () => {
  const state = await tokenWith('node-state', ['state']);
  const hook = await tokenWith('node-hook', ['ecdh']);
  assert.equal((await call('PUT', '/v1/lightning/ln/objects/chan-1', { version: '1', state: Buffer.from('s1').toString('base64') }, state)).status, 200);
  const point = Buffer.from(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true)).toString('hex');
  assert.equal((await call('POST', '/v1/lightning/ln/ecdh', { point }, state)).status, 403);
  assert.equal((await call('POST', '/v1/lightning/ln/ecdh', { point }, hook)).status, 200);
  assert.equal((await call('PUT', '/v1/lightning/ln/objects/chan-1', { version: '2', state: 'AA==' }, hook)).status, 403);
  assert.equal((await call('POST', '/v1/lightning/ln/decrypt', { envelope: 'AA==' }, hook)).status, 403);
  const got = await call('GET', '/v1/lightning/ln/objects/chan-1', undefined, state);
  assert.equal((await call('POST', '/v1/lightning/ln/restore', { records: [got.body.record] }, state)).status, 403);
  assert.equal((await call('POST', '/v1/lightning/ln/restore', { records: [got.body.record] })).status, 200);
});

test('the hsmd hook: ECDH is SHA-256 of the compressed product, decryption opens an envelope to the hook key', async () => {
  const key = await call('GET', `/v1/lightning/ln/hook-key?path=${encodeURIComponent("m/9735'/2'/7'")}`);
  assert.equal(key.status, 200);
  const pub = Buffer.from(String(key.body.public_key), 'hex');
  const r = secp256k1.utils.randomSecretKey();
  const ecdh = await call('POST', '/v1/lightning/ln/ecdh', { point: Buffer.from(secp256k1.getPublicKey(r, true)).toString('hex'), path: "m/9735'/2'/7'" });
  assert.equal(ecdh.body.shared, createHash('sha256').update(secp256k1.getSharedSecret(r, pub, true)).digest('hex'));
  const env = eciesEncrypt('secp256k1', pub, Buffer.from('onion'));
  const dec = await call('POST', '/v1/lightning/ln/decrypt', { envelope: Buffer.from(env).toString('base64'), path: "m/9735'/2'/7'" });
  assert.equal(Buffer.from(String(dec.body.plaintext), 'base64').toString(), 'onion');
  // The vault's own backup key is not a hook key.
  assert.equal((await call('POST', '/v1/lightning/ln/ecdh', { point: Buffer.from(secp256k1.getPublicKey(r, true)).toString('hex'), path: "m/9735'/0'" })).status, 400);
});

test('reconcile over HTTP: in sync, node behind (with its state), vault behind, and a fork is 409', async () => {
  const put = async (v: string, s: string) => (await call('PUT', '/v1/lightning/ln/objects/chan-r', { version: v, state: Buffer.from(s).toString('base64') })).body;
  const v1 = await put('1', 'one');
  const v2 = await put('2', 'two');
  assert.equal((await call('POST', '/v1/lightning/ln/reconcile', { object: 'chan-r', version: '2', hash: v2.hash })).body.status, 'in_sync');
  const behind = await call('POST', '/v1/lightning/ln/reconcile', { object: 'chan-r', version: '1', hash: v1.hash });
  assert.deepEqual([behind.body.status, behind.body.version, Buffer.from(String(behind.body.state), 'base64').toString()], ['node_behind', '2', 'two']);
  assert.equal((await call('POST', '/v1/lightning/ln/reconcile', { object: 'chan-r', version: '9', hash: v2.hash })).body.status, 'vault_behind');
  const fork = await call('POST', '/v1/lightning/ln/reconcile', { object: 'chan-r', version: '2', hash: 'ab'.repeat(32) });
  assert.equal(fork.status, 409);
  assert.equal(fork.body.code, 'conflict:fork');
});

test('malformed input is refused by the schemas, never a crash', async () => {
  for (const [method, url, body] of [
    ['PUT', '/v1/lightning/ln/objects/..', { version: '1', state: 'AA==' }],
    ['PUT', '/v1/lightning/ln/objects/chan-x', { version: '-1', state: 'AA==' }],
    ['PUT', '/v1/lightning/ln/objects/chan-x', { version: '1'.repeat(21), state: 'AA==' }],
    ['PUT', '/v1/lightning/ln/objects/chan-x', { version: '1' }],
    ['POST', '/v1/lightning/ln/ecdh', { point: 'zz' }],
    ['POST', '/v1/lightning/ln/reconcile', { object: 'chan-x', version: '1', hash: 'short' }],
    ['POST', '/v1/lightning/ln/reconcile', { object: 'chan-x', version: '1', hash: 'ab'.repeat(32), records: ['not a record'] }],
    ['GET', '/v1/lightning/ln/objects?limit=abc', undefined],
  ] as const) {
    const r = await call(method, url, body);
    assert.ok(r.status === 400 || r.status === 404, `${method} ${url}: ${r.status} ${JSON.stringify(r.body)}`);
  }
  const page = await call('GET', '/v1/lightning/ln/objects?limit=1');
  assert.equal((page.body.objects as unknown[]).length, 1);
  assert.equal(typeof page.body.next, 'string');
});
