/**
 * HTTP API tests: every route through `app.inject` (no network), against a real vault in a
 * temporary directory. Each test uses labels of its own, so tests do not depend on order.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  constants,
  createHash,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { p256 } from '@noble/curves/nist.js';
import { buildHttpServer } from '../../../src/frontends/http/server.js';
import { Metrics } from '../../../src/frontends/http/metrics.js';
import { decodeExportedKey, eciesDecrypt } from '../../../src/crypto/ecies.js';
import { ed25519PrivateKeyObject } from '../../../src/crypto/algorithms.js';
import { makeTestVault, type TestVault } from '../../helpers/vault.js';

// ---------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------

let tv: TestVault;
let app: FastifyInstance;
let metrics: Metrics;
let token: string;
let tmp: string;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-test-files-'));
  metrics = new Metrics();
  // As `custos serve` does: the same Metrics feed the vault (signatures, denials) and the API.
  // Many refused requests from one address: throttling is tested on its own (principals.test.ts).
  tv = await makeTestVault({ metrics, authLimits: { maxFailures: 10_000, windowSeconds: 60 } });
  token = tv.adminToken;
  app = await buildHttpServer({ vault: tv.opened.vault, metrics });
  await app.ready();
});

after(async () => {
  await app?.close();
  await tv?.cleanup();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type Method = 'GET' | 'POST' | 'DELETE';

interface Res {
  status: number;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  headers: Record<string, string | string[] | number | undefined>;
}

interface CallOpts {
  /** undefined: the admin token; null: no Authorization header; a string: that header verbatim. */
  auth?: string | null;
  headers?: Record<string, string>;
  /** A raw body, sent as is (content-type application/json unless headers say otherwise). */
  raw?: string | Buffer;
}

async function call(method: Method, url: string, body?: unknown, opts: CallOpts = {}): Promise<Res> {
  const headers: Record<string, string> = {};
  if (opts.auth === undefined) headers.authorization = `Bearer ${token}`;
  else if (opts.auth !== null) headers.authorization = opts.auth;
  let payload: string | Buffer | undefined;
  if (opts.raw !== undefined) {
    payload = opts.raw;
    headers['content-type'] = 'application/json';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  Object.assign(headers, opts.headers ?? {});
  const r = await app.inject({ method, url, headers, ...(payload !== undefined ? { payload } : {}) });
  let parsed: unknown;
  try {
    parsed = JSON.parse(r.body);
  } catch {
    parsed = undefined;
  }
  return { status: r.statusCode, text: r.body, body: parsed, headers: r.headers };
}

function assertError(r: Res, status: number, code: string): void {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status}: ${r.text}`);
  assert.ok(r.body && typeof r.body === 'object', `error body is JSON: ${r.text}`);
  assert.equal(r.body.code, code, `code: ${r.text}`);
  assert.equal(typeof r.body.message, 'string');
  assert.ok(r.body.message.length > 0, 'message is not empty');
}

let seq = 0;
/** A fresh, valid label (1–64 chars), unique within this run and across runs. */
const uniq = (prefix: string) => `${prefix}-${++seq}-${randomBytes(4).toString('hex')}`;

const b64 = (b: Uint8Array | Buffer) => Buffer.from(b).toString('base64');
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
const sha = (alg: string, b: Uint8Array) => new Uint8Array(createHash(alg).update(b).digest());
const flipBit = (b: Uint8Array, i = 0) => {
  const c = Uint8Array.from(b);
  c[i % c.length]! ^= 1;
  return c;
};
const spkiDer = (k: KeyObject | string) => (typeof k === 'string' || k.type !== 'public' ? createPublicKey(k) : k).export({ format: 'der', type: 'spki' });

const FAST_ALGS = ['ed25519', 'secp256k1', 'secp256k1-bip340', 'p256', 'rsa-2048'] as const;
type FastAlg = (typeof FAST_ALGS)[number];

async function createKey(alg: string, opts: { label?: string; exportable?: boolean } = {}) {
  const label = opts.label ?? uniq(alg.replace(/[^a-z0-9]/g, ''));
  const body: Record<string, unknown> = { label, algorithm: alg };
  if (opts.exportable !== undefined) body.exportable = opts.exportable;
  const r = await call('POST', '/v1/keys', body);
  assert.equal(r.status, 201, r.text);
  return r.body;
}

async function sign(label: string, body: Record<string, unknown>) {
  const r = await call('POST', `/v1/keys/${encodeURIComponent(label)}/sign`, body);
  assert.equal(r.status, 200, r.text);
  return r.body;
}

async function verifyRemote(label: string, body: Record<string, unknown>): Promise<boolean> {
  const r = await call('POST', `/v1/keys/${encodeURIComponent(label)}/verify`, body);
  assert.equal(r.status, 200, r.text);
  assert.equal(typeof r.body.valid, 'boolean');
  return r.body.valid;
}

/** Verifies a message signature outside the vault, with the public key the API showed. */
function verifyMessageLocally(alg: FastAlg, pub: { raw: string; spki_pem: string }, msg: Uint8Array, sig: Uint8Array, o: { hash?: string; padding?: string; encoding?: string } = {}): boolean {
  const raw = unb64(pub.raw);
  switch (alg) {
    case 'ed25519':
      return nodeVerify(null, msg, createPublicKey(pub.spki_pem), sig);
    case 'secp256k1':
      return secp256k1.verify(sig, sha('sha256', msg), raw, { prehash: false, lowS: true, format: o.encoding === 'raw' ? 'compact' : 'der' });
    case 'p256':
      return p256.verify(sig, sha('sha256', msg), raw, { prehash: false, lowS: false, format: o.encoding === 'raw' ? 'compact' : 'der' });
    case 'secp256k1-bip340':
      return schnorr.verify(sig, msg, raw);
    case 'rsa-2048':
      return nodeVerify(o.hash ?? 'sha256', msg, {
        key: createPublicKey(pub.spki_pem),
        padding: o.padding === 'pss' ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING,
        saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
      }, sig);
  }
}

const RAW_PUBLIC_LENGTH: Record<string, number> = { ed25519: 32, secp256k1: 33, 'secp256k1-bip340': 32, p256: 65 };
const OPENSSH_PREFIX: Record<string, string | null> = { ed25519: 'ssh-ed25519 ', secp256k1: null, 'secp256k1-bip340': null, p256: 'ecdsa-sha2-nistp256 ', 'rsa-2048': 'ssh-rsa ', 'rsa-3072': 'ssh-rsa ' };

function assertKeyView(k: any, alg: string, label: string): void {
  assert.match(k.id, /^key_[a-z2-7]{26}$/);
  assert.equal(k.label, label);
  assert.equal(k.algorithm, alg);
  assert.ok(['active', 'disabled', 'destroyed'].includes(k.state));
  assert.equal(typeof k.exportable, 'boolean');
  assert.ok(!Number.isNaN(Date.parse(k.created_at)));
  assert.ok(!Number.isNaN(Date.parse(k.updated_at)));
  const pk = k.public_key;
  assert.equal(typeof pk.raw, 'string');
  assert.equal(typeof pk.raw_hex, 'string');
  assert.equal(Buffer.from(pk.raw, 'base64').toString('hex'), pk.raw_hex);
  assert.match(pk.spki_pem, /^-----BEGIN PUBLIC KEY-----\n/);
  const spki = spkiDer(pk.spki_pem);
  if (alg.startsWith('rsa-')) {
    assert.deepEqual(Buffer.from(pk.raw, 'base64'), spki, 'RSA raw is the SPKI DER');
    assert.equal(createPublicKey(pk.spki_pem).asymmetricKeyDetails?.modulusLength, Number(alg.slice(4)));
  } else {
    assert.equal(unb64(pk.raw).length, RAW_PUBLIC_LENGTH[alg], `raw length for ${alg}`);
  }
  assert.ok('openssh' in pk, 'openssh is present');
  const prefix = OPENSSH_PREFIX[alg];
  if (prefix === null) assert.equal(pk.openssh, null, `${alg} has no OpenSSH form`);
  else {
    assert.equal(typeof pk.openssh, 'string');
    assert.ok(pk.openssh.startsWith(prefix), pk.openssh);
  }
}

// ---------------------------------------------------------------------------
// 1. Happy paths
// ---------------------------------------------------------------------------

describe('keys: create, list, show, sign, verify', () => {
  for (const alg of FAST_ALGS) {
    test(`creates, lists, shows and signs with a ${alg} key, and verifies true and false`, async () => {
      const label = uniq(alg.replace(/[^a-z0-9]/g, ''));
      const created = await createKey(alg, { label });
      assertKeyView(created, alg, label);
      assert.equal(created.state, 'active');
      assert.equal(created.exportable, false, 'exportable defaults to false');
      assert.equal(created.origin, 'generated');

      const list = await call('GET', '/v1/keys');
      assert.equal(list.status, 200);
      const listed = list.body.keys.find((k: any) => k.id === created.id);
      assert.deepEqual(listed, created);

      for (const ref of [label, created.id]) {
        const shown = await call('GET', `/v1/keys/${ref}`);
        assert.equal(shown.status, 200, shown.text);
        assert.deepEqual(shown.body, created);
      }
      if (alg === 'ed25519') {
        // The raw key and the SPKI agree.
        assert.deepEqual(Buffer.from(spkiDer(created.public_key.spki_pem)).subarray(-32), Buffer.from(created.public_key.raw, 'base64'));
      }

      const msg = randomBytes(100);
      const s = await sign(label, { message: b64(msg) });
      assert.equal(s.key_id, created.id);
      assert.equal(s.algorithm, alg);
      assert.equal(typeof s.request_id, 'string');
      const expectedEncoding = { ed25519: 'raw', secp256k1: 'der', p256: 'der', 'secp256k1-bip340': 'bip340', 'rsa-2048': 'pkcs1' }[alg];
      assert.equal(s.encoding, expectedEncoding);
      const sig = unb64(s.signature);
      if (alg === 'ed25519' || alg === 'secp256k1-bip340') assert.equal(sig.length, 64);
      if (alg === 'rsa-2048') assert.equal(sig.length, 256);
      assert.ok(verifyMessageLocally(alg, created.public_key, msg, sig), 'the signature verifies outside the vault');
      if (alg === 'p256' || alg === 'secp256k1') {
        // OpenSSL agrees on DER ECDSA over SHA-256.
        assert.ok(nodeVerify('sha256', msg, createPublicKey(created.public_key.spki_pem), sig));
      }

      assert.equal(await verifyRemote(label, { message: b64(msg), signature: s.signature }), true);
      assert.equal(await verifyRemote(label, { message: b64(msg), signature: b64(flipBit(sig, 5)) }), false, 'flipped signature bit');
      assert.equal(await verifyRemote(label, { message: b64(flipBit(msg)), signature: s.signature }), false, 'flipped message bit');
    });
  }

  test('creates an rsa-3072 key', async () => {
    const started = Date.now();
    const k = await createKey('rsa-3072', { exportable: false });
    assertKeyView(k, 'rsa-3072', k.label);
    const msg = randomBytes(20);
    const s = await sign(k.label, { message: b64(msg), padding: 'pss', hash: 'sha384' });
    assert.equal(unb64(s.signature).length, 384);
    assert.ok(nodeVerify('sha384', msg, { key: createPublicKey(k.public_key.spki_pem), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 }, unb64(s.signature)));
    assert.ok(Date.now() - started < 10_000);
  });

  test('creates an exportable key when asked', async () => {
    const k = await createKey('ed25519', { exportable: true });
    assert.equal(k.exportable, true);
  });

  for (const alg of ['secp256k1', 'p256'] as const) {
    test(`signs a 32-byte digest with ${alg} in raw and der encodings`, async () => {
      const k = await createKey(alg);
      const digest = randomBytes(32);
      const curve = alg === 'p256' ? p256 : secp256k1;
      const raw = unb64(k.public_key.raw);

      const sRaw = await sign(k.label, { digest: b64(digest), encoding: 'raw' });
      assert.equal(sRaw.encoding, 'raw');
      const rawSig = unb64(sRaw.signature);
      assert.equal(rawSig.length, 64);
      assert.ok(curve.verify(rawSig, digest, raw, { prehash: false, lowS: alg === 'secp256k1', format: 'compact' }));

      const sDer = await sign(k.label, { digest: b64(digest), encoding: 'der' });
      assert.equal(sDer.encoding, 'der');
      const derSig = unb64(sDer.signature);
      assert.equal(derSig[0], 0x30, 'DER SEQUENCE');
      assert.ok(derSig.length >= 8 && derSig.length <= 72);
      assert.ok(curve.verify(derSig, digest, raw, { prehash: false, lowS: alg === 'secp256k1', format: 'der' }));
      // RFC 6979: raw and DER carry the same (r, s).
      assert.deepEqual(curve.Signature.fromBytes(derSig, 'der').toBytes('compact'), rawSig);

      // Signing the digest of a message equals signing the message (deterministic nonces).
      const msg = randomBytes(50);
      const viaMessage = await sign(k.label, { message: b64(msg), encoding: 'raw' });
      const viaDigest = await sign(k.label, { digest: b64(sha('sha256', msg)), encoding: 'raw' });
      assert.equal(viaMessage.signature, viaDigest.signature);

      assert.equal(await verifyRemote(k.label, { digest: b64(digest), signature: sRaw.signature }), true);
      assert.equal(await verifyRemote(k.label, { digest: b64(digest), signature: sDer.signature, encoding: 'der' }), true);
      assert.equal(await verifyRemote(k.label, { digest: b64(digest), signature: b64(flipBit(rawSig, 40)) }), false);
      assert.equal(await verifyRemote(k.label, { digest: b64(flipBit(digest)), signature: sDer.signature }), false);
    });
  }

  test('signs with RSA using pss and pkcs1 padding and sha512', async () => {
    const k = await createKey('rsa-2048');
    const msg = randomBytes(64);
    for (const padding of ['pss', 'pkcs1'] as const) {
      const s = await sign(k.label, { message: b64(msg), padding, hash: 'sha512' });
      assert.equal(s.encoding, padding);
      const sig = unb64(s.signature);
      assert.equal(sig.length, 256);
      assert.ok(verifyMessageLocally('rsa-2048', k.public_key, msg, sig, { hash: 'sha512', padding }), `${padding} verifies locally with salt = 64`);
      assert.equal(await verifyRemote(k.label, { message: b64(msg), signature: s.signature, padding, hash: 'sha512' }), true);
      assert.equal(await verifyRemote(k.label, { message: b64(msg), signature: b64(flipBit(sig, 100)), padding, hash: 'sha512' }), false);
      // The wrong hash does not verify.
      assert.equal(await verifyRemote(k.label, { message: b64(msg), signature: s.signature, padding, hash: 'sha256' }), false);
    }
    // PKCS#1 v1.5 is deterministic; PSS is randomised.
    const a = await sign(k.label, { message: b64(msg), padding: 'pkcs1', hash: 'sha512' });
    const b = await sign(k.label, { message: b64(msg), padding: 'pkcs1', hash: 'sha512' });
    assert.equal(a.signature, b.signature);
  });

  test('signs with BIP340 deterministically for a given aux_rand', async () => {
    const k = await createKey('secp256k1-bip340');
    const msg = randomBytes(32);
    const aux = b64(randomBytes(32));
    const a = await sign(k.label, { message: b64(msg), aux_rand: aux });
    const b = await sign(k.label, { message: b64(msg), aux_rand: aux });
    assert.equal(a.signature, b.signature);
    assert.ok(schnorr.verify(unb64(a.signature), msg, unb64(k.public_key.raw)));
  });
});

describe('key states', () => {
  test('refuses to sign with a disabled key with 409 key_disabled, and signs again once enabled', async () => {
    const k = await createKey('ed25519');
    const msg = b64(randomBytes(10));
    const d = await call('POST', `/v1/keys/${k.label}/disable`);
    assert.equal(d.status, 200, d.text);
    assert.equal(d.body.state, 'disabled');
    assert.equal((await call('GET', `/v1/keys/${k.id}`)).body.state, 'disabled');
    assertError(await call('POST', `/v1/keys/${k.label}/sign`, { message: msg }), 409, 'key_disabled');
    // Verification needs only the public key and works on a disabled key.
    const e = await call('POST', `/v1/keys/${k.id}/enable`);
    assert.equal(e.status, 200, e.text);
    assert.equal(e.body.state, 'active');
    const s = await sign(k.label, { message: msg });
    assert.ok(nodeVerify(null, unb64(msg), createPublicKey(k.public_key.spki_pem), unb64(s.signature)));
  });

  test('refuses a destroyed key with 410 key_destroyed, and shows it as destroyed', async () => {
    const k = await createKey('p256', { exportable: true });
    const del = await call('DELETE', `/v1/keys/${k.label}`);
    assert.equal(del.status, 200, del.text);
    assert.equal(del.body.state, 'destroyed');
    assertError(await call('POST', `/v1/keys/${k.label}/sign`, { message: 'aGk=' }), 410, 'key_destroyed');
    const shown = await call('GET', `/v1/keys/${k.label}`);
    assert.equal(shown.status, 200);
    assert.equal(shown.body.state, 'destroyed');
    assert.equal(shown.body.public_key.raw, k.public_key.raw, 'the public key stays visible');
    assertError(await call('DELETE', `/v1/keys/${k.label}`), 410, 'key_destroyed');
    assertError(await call('POST', `/v1/keys/${k.label}/enable`), 410, 'key_destroyed');
    assertError(await call('POST', `/v1/keys/${k.label}/disable`), 410, 'key_destroyed');
    const x = x25519.utils.randomSecretKey();
    assertError(await call('POST', `/v1/keys/${k.label}/export`, { kem: 'x25519', recipient_public_key: b64(x25519.getPublicKey(x)) }), 410, 'key_destroyed');
    // The label stays reserved.
    assertError(await call('POST', '/v1/keys', { label: k.label, algorithm: 'ed25519' }), 409, 'label_taken');
  });
});

describe('export', () => {
  test('exports an exportable ed25519 key wrapped to an X25519 recipient', async () => {
    const k = await createKey('ed25519', { exportable: true });
    const recipientSecret = x25519.utils.randomSecretKey();
    const r = await call('POST', `/v1/keys/${k.label}/export`, { kem: 'x25519', recipient_public_key: b64(x25519.getPublicKey(recipientSecret)) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.key_id, k.id);
    assert.equal(r.body.format, 'custos-ecies-v1');
    const envelope = unb64(r.body.envelope);
    assert.equal(Buffer.from(envelope.subarray(0, 4)).toString(), 'CSTX');
    const exported = decodeExportedKey(eciesDecrypt(recipientSecret, envelope));
    assert.equal(exported.algorithm, 'ed25519');
    assert.equal(b64(exported.publicKey), k.public_key.raw);
    assert.equal(exported.secret.length, 32);
    assert.equal(b64(ed25519.getPublicKey(exported.secret)), k.public_key.raw, 'the secret belongs to the public key');
    const msg = randomBytes(40);
    const sig = nodeSign(null, msg, ed25519PrivateKeyObject(exported.secret));
    assert.ok(nodeVerify(null, msg, createPublicKey(k.public_key.spki_pem), sig));
    assert.equal(await verifyRemote(k.label, { message: b64(msg), signature: b64(sig) }), true);
    // Another recipient cannot open it.
    assert.throws(() => eciesDecrypt(x25519.utils.randomSecretKey(), envelope));
  });

  test('exports an exportable secp256k1 key wrapped to a secp256k1 recipient', async () => {
    const k = await createKey('secp256k1', { exportable: true });
    const recipientSecret = secp256k1.utils.randomSecretKey();
    const r = await call('POST', `/v1/keys/${k.id}/export`, { kem: 'secp256k1', recipient_public_key: b64(secp256k1.getPublicKey(recipientSecret, false)) });
    assert.equal(r.status, 200, r.text);
    const exported = decodeExportedKey(eciesDecrypt(recipientSecret, unb64(r.body.envelope)));
    assert.equal(exported.algorithm, 'secp256k1');
    assert.equal(b64(exported.publicKey), k.public_key.raw);
    const digest = randomBytes(32);
    const sig = secp256k1.sign(digest, exported.secret, { prehash: false });
    assert.equal(await verifyRemote(k.label, { digest: b64(digest), signature: b64(sig) }), true);
  });

  test('refuses to export a non-exportable key with 403 key_not_exportable', async () => {
    const k = await createKey('ed25519');
    const r = await call('POST', `/v1/keys/${k.label}/export`, { kem: 'x25519', recipient_public_key: b64(x25519.getPublicKey(x25519.utils.randomSecretKey())) });
    assertError(r, 403, 'key_not_exportable');
    assert.ok(!('envelope' in r.body));
  });

  test('refuses a malformed recipient key with 400 bad_request', async () => {
    const k = await createKey('ed25519', { exportable: true });
    assertError(await call('POST', `/v1/keys/${k.label}/export`, { kem: 'x25519', recipient_public_key: b64(randomBytes(31)) }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${k.label}/export`, { kem: 'secp256k1', recipient_public_key: b64(new Uint8Array(33)) }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${k.label}/export`, { kem: 'x448', recipient_public_key: b64(randomBytes(32)) }), 400, 'bad_request');
  });
});

describe('import', () => {
  const imp = (body: Record<string, unknown>) => call('POST', '/v1/keys/import', body);

  test('imports a raw (base64) ed25519 seed and a raw secp256k1 scalar', async () => {
    const seed = randomBytes(32);
    const label = uniq('raw-ed');
    const r = await imp({ label, format: 'raw', algorithm: 'ed25519', material: b64(seed) });
    assert.equal(r.status, 201, r.text);
    assertKeyView(r.body, 'ed25519', label);
    assert.equal(r.body.origin, 'imported');
    assert.equal(r.body.public_key.raw, b64(ed25519.getPublicKey(seed)));
    const msg = randomBytes(16);
    const s = await sign(label, { message: b64(msg) });
    assert.deepEqual(unb64(s.signature), ed25519.sign(msg, seed), 'Ed25519 is deterministic: same signature as the source key');

    const sk = secp256k1.utils.randomSecretKey();
    const r2 = await imp({ label: uniq('raw-k1'), format: 'raw', algorithm: 'secp256k1', material: b64(sk) });
    assert.equal(r2.status, 201, r2.text);
    assert.equal(r2.body.public_key.raw, b64(secp256k1.getPublicKey(sk, true)));
    const r3 = await imp({ label: uniq('raw-bip'), format: 'raw', algorithm: 'secp256k1-bip340', material: Buffer.from(sk).toString('base64url') });
    assert.equal(r3.status, 201, r3.text);
    assert.equal(r3.body.public_key.raw, b64(schnorr.getPublicKey(sk)));
  });

  test('imports a hex p256 scalar, with and without 0x', async () => {
    const sk = p256.utils.randomSecretKey();
    const hex = Buffer.from(sk).toString('hex');
    for (const material of [hex, `0x${hex.toUpperCase()}`]) {
      const r = await imp({ label: uniq('hex-p256'), format: 'hex', algorithm: 'p256', material });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.body.public_key.raw, b64(p256.getPublicKey(sk, false)));
    }
  });

  const pkcs8Cases: Array<[string, () => { privateKey: KeyObject; publicKey: KeyObject }, FastAlg]> = [
    ['ed25519', () => generateKeyPairSync('ed25519'), 'ed25519'],
    ['p256', () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }), 'p256'],
    ['secp256k1', () => generateKeyPairSync('ec', { namedCurve: 'secp256k1' }), 'secp256k1'],
    ['rsa-2048', () => generateKeyPairSync('rsa', { modulusLength: 2048 }), 'rsa-2048'],
  ];
  for (const [name, gen, alg] of pkcs8Cases) {
    test(`imports a PKCS#8 PEM ${name} key with the source's public key`, async () => {
      const { privateKey, publicKey } = gen();
      const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
      const label = uniq(`p8-${name}`);
      const r = await imp({ label, format: 'pkcs8', material: pem });
      assert.equal(r.status, 201, r.text);
      assertKeyView(r.body, alg, label);
      assert.equal(r.body.origin, 'imported');
      assert.deepEqual(spkiDer(r.body.public_key.spki_pem), spkiDer(publicKey), 'same public key as the source');
      // And it signs as the source key.
      const msg = randomBytes(30);
      const s = await sign(label, { message: b64(msg) });
      const nodeAlg = alg === 'ed25519' ? null : 'sha256';
      assert.ok(nodeVerify(nodeAlg, msg, publicKey, unb64(s.signature)), 'verifies with the source public key');
    });
  }

  test('imports a PKCS#8 secp256k1 key as secp256k1-bip340 when asked', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    const r = await imp({ label: uniq('p8-bip'), format: 'pkcs8', algorithm: 'secp256k1-bip340', material: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() });
    assert.equal(r.status, 201, r.text);
    const x = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
    assert.equal(r.body.public_key.raw, b64(x));
  });

  for (const [type, alg, prefix] of [['ed25519', 'ed25519', 'ssh-ed25519'], ['ecdsa', 'p256', 'ecdsa-sha2-nistp256']] as const) {
    test(`imports an OpenSSH ${type} private key made by ssh-keygen`, async (t) => {
      const file = path.join(tmp, uniq(`id_${type}`));
      const args = ['-q', '-t', type, ...(type === 'ecdsa' ? ['-b', '256'] : []), '-N', '', '-C', 'test@custos', '-f', file];
      const gen = spawnSync('ssh-keygen', args, { encoding: 'utf8' });
      if (gen.error || gen.status !== 0) {
        t.skip(`ssh-keygen unavailable: ${gen.error?.message ?? gen.stderr}`);
        return;
      }
      const material = fs.readFileSync(file, 'utf8');
      const [pubType, pubBlob] = fs.readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/);
      assert.equal(pubType, prefix);
      const label = uniq(`ssh-${type}`);
      const r = await imp({ label, format: 'openssh', material });
      assert.equal(r.status, 201, r.text);
      assertKeyView(r.body, alg, label);
      const [gotType, gotBlob] = r.body.public_key.openssh.split(' ');
      assert.equal(gotType, pubType);
      assert.equal(gotBlob, pubBlob, 'same public key as ssh-keygen wrote');
    });
  }
});

describe('conflicts and unknown keys', () => {
  test('refuses a taken label with 409 label_taken', async () => {
    const k = await createKey('ed25519');
    assertError(await call('POST', '/v1/keys', { label: k.label, algorithm: 'p256' }), 409, 'label_taken');
    assertError(await call('POST', '/v1/keys/import', { label: k.label, format: 'raw', algorithm: 'ed25519', material: b64(randomBytes(32)) }), 409, 'label_taken');
    // The original key is untouched.
    const shown = await call('GET', `/v1/keys/${k.label}`);
    assert.deepEqual(shown.body, k);
  });

  test('refuses concurrent creations of one label with 409 label_taken, except one', async () => {
    const label = uniq('race');
    const others = Array.from({ length: 3 }, () => uniq('race-other'));
    const rs = await Promise.all([
      ...Array.from({ length: 6 }, () => call('POST', '/v1/keys', { label, algorithm: 'ed25519' })),
      ...others.map((l) => call('POST', '/v1/keys', { label: l, algorithm: 'ed25519' })),
    ]);
    const same = rs.slice(0, 6);
    assert.equal(same.filter((r) => r.status === 201).length, 1, same.map((r) => r.status).join(','));
    for (const r of same.filter((r) => r.status !== 201)) assertError(r, 409, 'label_taken');
    for (const r of rs.slice(6)) assert.equal(r.status, 201, 'unrelated creations in the same batch succeed');
  });

  test('refuses an unknown key with 404 key_not_found on every key route', async () => {
    const ref = uniq('nope');
    const x = b64(x25519.getPublicKey(x25519.utils.randomSecretKey()));
    const routes: Array<[Method, string, unknown]> = [
      ['GET', `/v1/keys/${ref}`, undefined],
      ['DELETE', `/v1/keys/${ref}`, undefined],
      ['POST', `/v1/keys/${ref}/disable`, undefined],
      ['POST', `/v1/keys/${ref}/enable`, undefined],
      ['POST', `/v1/keys/${ref}/sign`, { message: 'aGk=' }],
      ['POST', `/v1/keys/${ref}/verify`, { message: 'aGk=', signature: b64(randomBytes(64)) }],
      ['POST', `/v1/keys/${ref}/export`, { kem: 'x25519', recipient_public_key: x }],
      ['GET', '/v1/keys/key_aaaaaaaaaaaaaaaaaaaaaaaaaa', undefined],
    ];
    for (const [m, u, b] of routes) assertError(await call(m, u, b), 404, 'key_not_found');
    assertError(await call('GET', '/v1/nothing-here'), 404, 'not_found');
  });
});

describe('audit', () => {
  test('lists audit entries, denied ones with their reasons', async () => {
    const k = await createKey('ed25519');
    const rid = `audit-${randomBytes(6).toString('hex')}`;
    const missing = uniq('audit-missing');
    assertError(await call('POST', `/v1/keys/${missing}/sign`, { message: 'aGk=' }, { headers: { 'x-request-id': rid } }), 404, 'key_not_found');
    await call('POST', `/v1/keys/${k.label}/disable`);
    const rid2 = `audit-${randomBytes(6).toString('hex')}`;
    assertError(await call('POST', `/v1/keys/${k.label}/sign`, { message: 'aGk=' }, { headers: { 'x-request-id': rid2 } }), 409, 'key_disabled');
    const rid3 = `audit-${randomBytes(6).toString('hex')}`;
    await call('POST', `/v1/keys/${k.label}/enable`);
    await call('POST', `/v1/keys/${k.label}/sign`, { message: 'aGk=' }, { headers: { 'x-request-id': rid3 } });

    const r = await call('GET', '/v1/audit?limit=1000');
    assert.equal(r.status, 200, r.text);
    const entries: any[] = r.body.entries;
    assert.ok(Array.isArray(entries) && entries.length > 0);
    for (const e of entries) {
      assert.equal(typeof e.seq, 'number');
      assert.match(e.hash, /^[0-9a-f]{64}$/);
      assert.ok(['ok', 'denied', 'failed', 'decided'].includes(e.outcome));
    }
    const d1 = entries.find((e) => e.request_id === rid);
    assert.ok(d1, 'the denied sign of an unknown key is audited');
    assert.equal(d1.operation, 'sign');
    assert.equal(d1.outcome, 'denied');
    assert.equal(d1.reason, 'key_not_found');
    assert.equal(d1.key_label, missing);
    assert.equal(d1.principal, 'token:admin');
    const d2 = entries.find((e) => e.request_id === rid2);
    assert.ok(d2);
    assert.equal(d2.outcome, 'denied');
    assert.equal(d2.reason, 'key_disabled');
    assert.equal(d2.key_id, k.id);
    const ok = entries.filter((e) => e.request_id === rid3).map((e) => e.outcome);
    assert.deepEqual(ok.sort(), ['decided', 'ok']);
    assert.ok(entries.some((e) => e.operation === 'create' && e.key_id === k.id && e.outcome === 'ok'));
    // The entries are in chain order.
    const seqs = entries.map((e) => e.seq);
    assert.equal(new Set(seqs).size, seqs.length);

    const limited = await call('GET', '/v1/audit?limit=2');
    assert.equal(limited.status, 200);
    assert.equal(limited.body.entries.length, 2);
    assertError(await call('GET', '/v1/audit?limit=abc'), 400, 'bad_request');
    assertError(await call('GET', '/v1/audit?limit=5&extra=1'), 400, 'bad_request');
  });
});

// ---------------------------------------------------------------------------
// 2. Authentication
// ---------------------------------------------------------------------------

describe('authentication', () => {
  test('refuses every /v1 route without a valid bearer token with 401 unauthorized', async () => {
    const k = await createKey('ed25519', { exportable: true });
    const x = b64(x25519.getPublicKey(x25519.utils.randomSecretKey()));
    const routes: Array<[Method, string, unknown]> = [
      ['GET', '/v1/keys', undefined],
      ['POST', '/v1/keys', { label: uniq('unauth'), algorithm: 'ed25519' }],
      ['POST', '/v1/keys/import', { label: uniq('unauth'), format: 'raw', algorithm: 'ed25519', material: b64(randomBytes(32)) }],
      ['GET', `/v1/keys/${k.label}`, undefined],
      ['POST', `/v1/keys/${k.label}/disable`, undefined],
      ['POST', `/v1/keys/${k.label}/enable`, undefined],
      ['POST', `/v1/keys/${k.label}/sign`, { message: 'aGk=' }],
      ['POST', `/v1/keys/${k.label}/verify`, { message: 'aGk=', signature: b64(randomBytes(64)) }],
      ['POST', `/v1/keys/${k.label}/export`, { kem: 'x25519', recipient_public_key: x }],
      ['DELETE', `/v1/keys/${k.label}`, undefined],
      ['GET', '/v1/audit', undefined],
    ];
    const wrong = `custos_${randomBytes(32).toString('base64url')}`;
    const badAuth: Array<string | null> = [
      null,
      `Basic ${Buffer.from('admin:test-pass').toString('base64')}`,
      `Token ${token}`,
      `Bearer ${wrong}`,
      `Bearer ${token}x`,
      `Bearer ${token.slice(0, -1)}`,
      'Bearer ',
      'Bearer short',
      `Bearer  ${token}`,
      `Bearer ${token} extra`,
    ];
    for (const [m, u, b] of routes) {
      for (const auth of badAuth) {
        const r = await call(m, u, b, { auth });
        assertError(r, 401, 'unauthorized');
      }
    }
    // Nothing happened to the key.
    const shown = await call('GET', `/v1/keys/${k.label}`);
    assert.equal(shown.body.state, 'active');
    const list = await call('GET', '/v1/keys');
    assert.ok(!list.body.keys.some((kk: any) => kk.label.startsWith('unauth-')));
  });

  test('serves /v1/openapi.json, /healthz and /metrics without a token', async () => {
    for (const url of ['/v1/openapi.json', '/healthz', '/metrics']) {
      const r = await call('GET', url, undefined, { auth: null });
      assert.equal(r.status, 200, `${url}: ${r.text}`);
    }
    const h = await call('GET', '/healthz', undefined, { auth: null });
    assert.deepEqual(h.body, { status: 'ok', sealed: false, components: [] });
    const s = await call('GET', '/v1/sys/seal-status', undefined, { auth: null });
    assert.deepEqual(s.body, { sealed: false, seal: 'passphrase' });
  });

  test('refuses percent-encoded /v1 paths without a token with 401 unauthorized', async () => {
    // "%76" is "v" and "%31" is "1": the router decodes them and serves the /v1 routes, so
    // the token check must apply to them too.
    const k = await createKey('ed25519');
    const sig = await sign(k.label, { message: 'aGk=' });
    const routes: Array<[Method, string, unknown]> = [
      ['GET', '/%761/keys', undefined],
      ['GET', `/v%31/keys/${k.label}`, undefined],
      ['GET', '/%761/audit', undefined],
      ['POST', `/%761/keys/${k.label}/verify`, { message: 'aGk=', signature: sig.signature }],
      ['POST', `/%761/keys/${k.label}/sign`, { message: 'aGk=' }],
      ['POST', '/%761/keys', { label: uniq('bypass'), algorithm: 'ed25519' }],
      ['POST', `/%761/keys/${k.label}/disable`, undefined],
      ['DELETE', `/%761/keys/${k.label}`, undefined],
    ];
    const wrong: string[] = [];
    for (const [m, u, b] of routes) {
      const r = await call(m, u, b, { auth: null });
      if (r.status !== 401 && r.status !== 404) wrong.push(`${m} ${u} → ${r.status} ${r.text.slice(0, 60)}`);
    }
    const state = (await call('GET', `/v1/keys/${k.label}`)).body.state;
    assert.deepEqual(wrong, [], `answered without a token:\n${wrong.join('\n')}`);
    assert.equal(state, 'active', 'the key was not changed');
  });
});

// ---------------------------------------------------------------------------
// 3. Bad input
// ---------------------------------------------------------------------------

describe('bad input', () => {
  let ed: any;
  let p: any;
  before(async () => {
    ed = await createKey('ed25519');
    p = await createKey('p256');
  });

  test('refuses malformed JSON with 400 bad_request', async () => {
    for (const raw of ['{"label":', '{label: "x"}', "{'a':1}", '[1,2', 'nul', '{"a":1}}']) {
      assertError(await call('POST', '/v1/keys', undefined, { raw }), 400, 'bad_request');
      assertError(await call('POST', `/v1/keys/${ed.label}/sign`, undefined, { raw }), 400, 'bad_request');
    }
    assertError(await call('POST', '/v1/keys', undefined, { raw: '' }), 400, 'bad_request');
  });

  test('refuses unknown fields with 400 bad_request', async () => {
    const label = uniq('extra');
    assertError(await call('POST', '/v1/keys', { label, algorithm: 'ed25519', extra: 1 }), 400, 'bad_request');
    assertError(await call('GET', `/v1/keys/${label}`), 404, 'key_not_found');
    assertError(await call('POST', `/v1/keys/${ed.label}/sign`, { message: 'aGk=', extra: true }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${ed.label}/verify`, { message: 'aGk=', signature: 'aGk=', aux_rand: 'aGk=' }), 400, 'bad_request');
    assertError(await call('POST', '/v1/keys/import', { label: uniq('x'), format: 'raw', algorithm: 'ed25519', material: b64(randomBytes(32)), password: 'x' }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${ed.label}/export`, { kem: 'x25519', recipient_public_key: b64(randomBytes(32)), format: 'pem' }), 400, 'bad_request');
  });

  test('refuses wrong types with 400 bad_request', async () => {
    const cases: unknown[] = [
      { label: uniq('t'), algorithm: 'ed25519', exportable: 'true' },
      { label: uniq('t'), algorithm: 'ed25519', exportable: 1 },
      { label: 5, algorithm: 'ed25519' },
      { label: uniq('t'), algorithm: 'rsa-1024' },
      { label: uniq('t'), algorithm: ['ed25519'] },
      { label: uniq('t') },
      { algorithm: 'ed25519' },
      [],
      'ed25519',
      null,
      42,
    ];
    for (const c of cases) assertError(await call('POST', '/v1/keys', c), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${ed.label}/sign`, { message: 5 }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${p.label}/sign`, { message: 'aGk=', encoding: 'pem' }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${p.label}/sign`, { message: 'aGk=', hash: 'md5' }), 400, 'bad_request');
    assertError(await call('POST', '/v1/keys/import', { label: uniq('t'), format: 'raw', algorithm: 'ed25519', material: 123 }), 400, 'bad_request');
    assertError(await call('POST', '/v1/keys/import', { label: uniq('t'), format: 'der', material: 'AAAA' }), 400, 'bad_request');
  });

  test('refuses an oversize body with 413 payload_too_large', async () => {
    const big = JSON.stringify({ message: 'A'.repeat(600 * 1024) });
    assertError(await call('POST', `/v1/keys/${ed.label}/sign`, undefined, { raw: big }), 413, 'payload_too_large');
    assertError(await call('POST', '/v1/keys', undefined, { raw: big }), 413, 'payload_too_large');
    // Just under the limit is parsed (and refused for its own reasons, not its size).
    const r = await call('POST', `/v1/keys/${ed.label}/sign`, undefined, { raw: JSON.stringify({ message: 'A'.repeat(400 * 1024) }) });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.body.code, 'bad_request');
  });

  test('refuses invalid key material on import with 400 invalid_key_material or bad_request', async () => {
    const imp = (body: Record<string, unknown>) => call('POST', '/v1/keys/import', { label: uniq('bad-imp'), ...body });
    assertError(await imp({ format: 'raw', algorithm: 'ed25519', material: b64(randomBytes(31)) }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'raw', algorithm: 'ed25519', material: b64(randomBytes(33)) }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'raw', algorithm: 'secp256k1', material: b64(new Uint8Array(32)) }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'raw', algorithm: 'p256', material: b64(new Uint8Array(32).fill(0xff)) }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'raw', algorithm: 'secp256k1-bip340', material: b64(new Uint8Array(32)) }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'raw', algorithm: 'rsa-2048', material: b64(randomBytes(32)) }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'raw', material: b64(randomBytes(32)) }), 400, 'bad_request');
    assertError(await imp({ format: 'raw', algorithm: 'ed25519', material: '!!!!' }), 400, 'bad_request');
    assertError(await imp({ format: 'hex', algorithm: 'ed25519', material: 'abc' }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'hex', algorithm: 'ed25519', material: 'zz'.repeat(32) }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'hex', algorithm: 'ed25519', material: 'ab'.repeat(31) }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'pkcs8', material: 'not a pem' }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'pkcs8', material: '-----BEGIN PRIVATE KEY-----\nAAAAgarbage\n-----END PRIVATE KEY-----\n' }), 400, 'invalid_key_material');
    const spki = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
    assertError(await imp({ format: 'pkcs8', material: spki }), 400, 'invalid_key_material');
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    assertError(await imp({ format: 'pkcs8', material: p384 }), 400, 'invalid_key_material');
    const x = generateKeyPairSync('x25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    assertError(await imp({ format: 'pkcs8', material: x }), 400, 'invalid_key_material');
    const encPem = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw' }).toString();
    assertError(await imp({ format: 'pkcs8', material: encPem }), 400, 'invalid_key_material');
    const edPem = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    assertError(await imp({ format: 'pkcs8', algorithm: 'p256', material: edPem }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'openssh', material: 'garbage' }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'openssh', material: '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n' }), 400, 'invalid_key_material');
    assertError(await imp({ format: 'openssh', material: edPem }), 400, 'invalid_key_material');
    const file = path.join(tmp, uniq('enc'));
    const gen = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret-pass', '-f', file], { encoding: 'utf8' });
    if (!gen.error && gen.status === 0) {
      assertError(await imp({ format: 'openssh', material: fs.readFileSync(file, 'utf8') }), 400, 'invalid_key_material');
    }
    assertError(await imp({ format: 'openssh', material: '' }), 400, 'bad_request');
  });

  test('refuses a wrong-length digest with 400 invalid_digest', async () => {
    assertError(await call('POST', `/v1/keys/${p.label}/sign`, { digest: b64(randomBytes(31)) }), 400, 'invalid_digest');
    assertError(await call('POST', `/v1/keys/${p.label}/sign`, { digest: b64(randomBytes(33)) }), 400, 'invalid_digest');
    assertError(await call('POST', `/v1/keys/${p.label}/sign`, { digest: '' }), 400, 'invalid_digest');
    assertError(await call('POST', `/v1/keys/${p.label}/verify`, { digest: b64(randomBytes(31)), signature: b64(randomBytes(64)) }), 400, 'invalid_digest');
  });

  test('refuses a digest for ed25519 with 400 digest_not_supported', async () => {
    assertError(await call('POST', `/v1/keys/${ed.label}/sign`, { digest: b64(randomBytes(32)) }), 400, 'digest_not_supported');
    const rsa = await createKey('rsa-2048');
    assertError(await call('POST', `/v1/keys/${rsa.label}/sign`, { digest: b64(randomBytes(32)) }), 400, 'digest_not_supported');
    const bip = await createKey('secp256k1-bip340');
    assertError(await call('POST', `/v1/keys/${bip.label}/sign`, { digest: b64(randomBytes(32)) }), 400, 'digest_not_supported');
  });

  test('refuses options that do not apply with 400 unsupported_option', async () => {
    assertError(await call('POST', `/v1/keys/${ed.label}/sign`, { message: 'aGk=', encoding: 'raw' }), 400, 'unsupported_option');
    assertError(await call('POST', `/v1/keys/${ed.label}/sign`, { message: 'aGk=', padding: 'pss' }), 400, 'unsupported_option');
    assertError(await call('POST', `/v1/keys/${ed.label}/sign`, { message: 'aGk=', hash: 'sha256' }), 400, 'unsupported_option');
    assertError(await call('POST', `/v1/keys/${p.label}/sign`, { message: 'aGk=', hash: 'sha512' }), 400, 'unsupported_option');
    assertError(await call('POST', `/v1/keys/${p.label}/sign`, { message: 'aGk=', aux_rand: b64(randomBytes(32)) }), 400, 'unsupported_option');
  });

  test('refuses both message and digest, or neither, with 400 bad_request', async () => {
    assertError(await call('POST', `/v1/keys/${p.label}/sign`, { message: 'aGk=', digest: b64(randomBytes(32)) }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${p.label}/sign`, {}), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${p.label}/sign`, { encoding: 'raw' }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${p.label}/verify`, { signature: b64(randomBytes(64)) }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${p.label}/verify`, { message: 'aGk=', digest: b64(randomBytes(32)), signature: b64(randomBytes(64)) }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${p.label}/verify`, { message: 'aGk=' }), 400, 'bad_request');
  });

  test('refuses invalid base64 with 400 bad_request', async () => {
    for (const bad of ['!!!!', 'aGk', 'a', 'abcde', 'aGk=\n', 'a b c d', 'aG=k', '====']) {
      const r = await call('POST', `/v1/keys/${ed.label}/sign`, { message: bad });
      // 'aGk' (unpadded) is accepted by the strict decoder; everything else is refused.
      if (bad === 'aGk' || bad === '====') {
        assert.ok(r.status === 200 || r.status === 400, `${bad}: ${r.status}`);
        if (r.status === 400) assertError(r, 400, 'bad_request');
        continue;
      }
      assertError(r, 400, 'bad_request');
    }
    assertError(await call('POST', `/v1/keys/${ed.label}/verify`, { message: 'aGk=', signature: '@@' }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${ed.label}/verify`, { message: 'aGk=', signature: 'abcde' }), 400, 'bad_request');
    const bip = await createKey('secp256k1-bip340');
    assertError(await call('POST', `/v1/keys/${bip.label}/sign`, { message: 'aGk=', aux_rand: 'abcde' }), 400, 'bad_request');
    assertError(await call('POST', `/v1/keys/${ed.label}/export`, { kem: 'x25519', recipient_public_key: '%%%' }), 400, 'bad_request');
  });

  test('refuses bad labels with 400 invalid_label (or bad_request where the schema catches them)', async () => {
    for (const label of ['key_abc', 'has space', '-leading-dash', '.dot', 'tab\there', 'ünïcode', 'a/b', 'a?b']) {
      assertError(await call('POST', '/v1/keys', { label, algorithm: 'ed25519' }), 400, 'invalid_label');
      assertError(await call('POST', '/v1/keys/import', { label, format: 'raw', algorithm: 'ed25519', material: b64(randomBytes(32)) }), 400, 'invalid_label');
    }
    // Empty and over-long labels fail the request schema (minLength 1, maxLength 64) first.
    for (const label of ['', 'a'.repeat(65)]) {
      const r = await call('POST', '/v1/keys', { label, algorithm: 'ed25519' });
      assert.equal(r.status, 400, r.text);
      assert.ok(['invalid_label', 'bad_request'].includes(r.body.code), r.text);
      assert.equal(typeof r.body.message, 'string');
    }
    // 64 characters is fine.
    const max = `m${randomBytes(16).toString('hex')}`.padEnd(64, 'x');
    assert.equal((await call('POST', '/v1/keys', { label: max, algorithm: 'ed25519' })).status, 201);
  });

  test('refuses a text/plain body with 415 unsupported_media_type', async () => {
    const r = await call('POST', '/v1/keys', undefined, { raw: JSON.stringify({ label: uniq('tp'), algorithm: 'ed25519' }), headers: { 'content-type': 'text/plain' } });
    assertError(r, 415, 'unsupported_media_type');
    assertError(await call('POST', `/v1/keys/${ed.label}/sign`, undefined, { raw: 'hi', headers: { 'content-type': 'text/plain; charset=utf-8' } }), 415, 'unsupported_media_type');
  });

  test('refuses other non-JSON bodies with 415 unsupported_media_type', async () => {
    for (const type of ['application/x-www-form-urlencoded', 'application/octet-stream', 'multipart/form-data; boundary=x', 'application/xml']) {
      assertError(await call('POST', `/v1/keys/${ed.label}/sign`, undefined, { raw: 'message=aGk%3D', headers: { 'content-type': type } }), 415, 'unsupported_media_type');
    }
    // JSON with a charset parameter is JSON.
    const ok = await call('POST', `/v1/keys/${ed.label}/sign`, undefined, { raw: '{"message":"aGk="}', headers: { 'content-type': 'application/json; charset=utf-8' } });
    assert.equal(ok.status, 200, ok.text);
  });

  for (const [what, url] of [
    ['a malformed percent-encoded URL', '/v1/keys/%E0%A4%A'],
    ['a lone percent sign in the URL', '/v1/keys/%'],
    ['a key reference longer than the router allows (101–128 characters)', `/v1/keys/${'a'.repeat(120)}`],
  ] as const) {
    test(`refuses ${what} with a stable 4xx code and an x-request-id`, async () => {
      const r = await call('GET', url);
      assert.ok(r.status >= 400 && r.status < 500, `${url}: ${r.status}`);
      assert.ok(['bad_request', 'not_found', 'key_not_found'].includes(r.body?.code), `${url}: code ${r.body?.code} is not one of the API's codes (${r.text.slice(0, 160)})`);
      assert.equal(typeof r.headers['x-request-id'], 'string', `${url}: response has no x-request-id header`);
      assert.equal(r.body.request_id, r.headers['x-request-id']);
    });
  }
});

// ---------------------------------------------------------------------------
// 4. Property: no input makes the API fail with a 5xx or an unstructured error
// ---------------------------------------------------------------------------

describe('robustness', () => {
  const ROUTES: Array<[Method, string]> = [
    ['GET', '/v1/keys'],
    ['POST', '/v1/keys'],
    ['POST', '/v1/keys/import'],
    ['GET', '/v1/keys/:key'],
    ['DELETE', '/v1/keys/:key'],
    ['POST', '/v1/keys/:key/disable'],
    ['POST', '/v1/keys/:key/enable'],
    ['POST', '/v1/keys/:key/sign'],
    ['POST', '/v1/keys/:key/verify'],
    ['POST', '/v1/keys/:key/export'],
    ['GET', '/v1/audit'],
    ['GET', '/v1/openapi.json'],
    ['GET', '/healthz'],
    ['GET', '/metrics'],
  ];
  const labels: string[] = [];

  before(async () => {
    for (const alg of FAST_ALGS) {
      labels.push((await createKey(alg, { label: uniq(`prop-${alg.replace(/[^a-z0-9]/g, '')}`), exportable: true })).label);
    }
  });

  const safeEncode = (s: string) => {
    try {
      return encodeURIComponent(s);
    } catch {
      return 'x';
    }
  };
  const keyArb = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 0, max: FAST_ALGS.length - 1 }).map((i) => labels[i]!) },
    { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
    { weight: 1, arbitrary: fc.constantFrom('import', 'key_', 'key_aaaaaaaaaaaaaaaaaaaaaaaaaa', '..', '.', '%', 'openapi.json') },
  );
  const b64Arb = fc.oneof(fc.tuple(fc.uint8Array({ maxLength: 80 }), fc.boolean()).map(([b, url]) => Buffer.from(b).toString(url ? 'base64url' : 'base64')), fc.string({ maxLength: 20 }));
  const structured = fc.oneof(
    fc.record(
      { message: b64Arb, digest: fc.oneof(b64Arb, fc.uint8Array({ minLength: 32, maxLength: 32 }).map(b64)), aux_rand: b64Arb, encoding: fc.constantFrom('raw', 'der', 'x'), hash: fc.constantFrom('sha256', 'sha384', 'sha512'), padding: fc.constantFrom('pkcs1', 'pss'), signature: b64Arb },
      { requiredKeys: [] },
    ),
    fc.record(
      {
        label: fc.oneof(fc.string({ maxLength: 70 }), fc.stringMatching(/^[a-z][a-z0-9]{0,10}$/).map((s) => `prop-${s}`)),
        algorithm: fc.constantFrom('ed25519', 'secp256k1', 'secp256k1-bip340', 'p256', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'dsa'),
        format: fc.constantFrom('raw', 'hex', 'pkcs8', 'openssh'),
        material: fc.oneof(
          b64Arb,
          fc.uint8Array({ minLength: 0, maxLength: 40 }).map((b) => Buffer.from(b).toString('hex')),
          fc.uint8Array({ maxLength: 200 }).map((b) => `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64(Buffer.concat([Buffer.from('openssh-key-v1\0'), b]))}\n-----END OPENSSH PRIVATE KEY-----\n`),
          fc.uint8Array({ maxLength: 200 }).map((b) => `-----BEGIN PRIVATE KEY-----\n${b64(b)}\n-----END PRIVATE KEY-----\n`),
        ),
        exportable: fc.oneof(fc.boolean(), fc.constant('yes')),
      },
      { requiredKeys: ['label', 'format', 'material'] },
    ),
    fc.record({ kem: fc.constantFrom('x25519', 'secp256k1'), recipient_public_key: fc.oneof(b64Arb, fc.uint8Array({ minLength: 31, maxLength: 66 }).map(b64), fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => b64(Buffer.concat([Buffer.from([2 + (b[0]! & 1)]), b])))) }, { requiredKeys: [] }),
  );
  type Body = { kind: 'none' } | { kind: 'json'; value: unknown } | { kind: 'raw'; text: string };
  const bodyArb: fc.Arbitrary<Body> = fc.oneof(
    fc.constant<Body>({ kind: 'none' }),
    fc.anything().map<Body>((value) => ({ kind: 'json', value })),
    fc.object().map<Body>((value) => ({ kind: 'json', value })),
    fc.string({ maxLength: 60 }).map<Body>((text) => ({ kind: 'raw', text })),
    { weight: 3, arbitrary: structured.map<Body>((value) => ({ kind: 'json', value })) },
  );
  const queryArb = fc.oneof(fc.constant(''), fc.constant('?limit=3'), fc.string({ maxLength: 10 }).map((s) => `?limit=${safeEncode(s)}`), fc.string({ maxLength: 10 }).map((s) => `?${safeEncode(s)}=1`));

  test('never answers a 5xx, and every error has a string code and message', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ROUTES), keyArb, bodyArb, queryArb, async ([method, route], key, body, query) => {
        const url = route.replace(':key', safeEncode(key)) + (route === '/v1/audit' ? query : '');
        const headers: Record<string, string> = { authorization: `Bearer ${token}` };
        let payload: string | undefined;
        if (body.kind === 'json') {
          const s = JSON.stringify(body.value);
          if (s !== undefined) payload = s;
          headers['content-type'] = 'application/json';
        } else if (body.kind === 'raw') {
          payload = body.text;
          headers['content-type'] = 'application/json';
        }
        const r = await app.inject({ method, url, headers, ...(payload !== undefined ? { payload } : {}) });
        assert.ok(r.statusCode < 500, `${method} ${url} ${payload ?? ''} → ${r.statusCode} ${r.body.slice(0, 200)}`);
        if (r.statusCode >= 400) {
          const parsed = JSON.parse(r.body);
          assert.equal(typeof parsed.code, 'string', r.body);
          assert.equal(typeof parsed.message, 'string', r.body);
        }
      }),
      { numRuns: Number(process.env.CUSTOS_PROP_RUNS ?? 300) },
    );
  });
});

// ---------------------------------------------------------------------------
// 5. OpenAPI
// ---------------------------------------------------------------------------

describe('openapi', () => {
  test('serves an OpenAPI 3 document with the key routes and bearer security', async () => {
    const r = await call('GET', '/v1/openapi.json', undefined, { auth: null });
    assert.equal(r.status, 200, r.text);
    assert.match(String(r.headers['content-type']), /application\/json/);
    const doc = r.body;
    assert.equal(typeof doc.openapi, 'string');
    assert.ok(doc.openapi.startsWith('3.'), doc.openapi);
    for (const p of ['/v1/keys', '/v1/keys/{key}', '/v1/keys/{key}/sign', '/v1/keys/{key}/verify', '/v1/keys/import', '/v1/keys/{key}/export', '/v1/audit']) {
      assert.ok(doc.paths[p], `path ${p} is documented (have: ${Object.keys(doc.paths).join(', ')})`);
    }
    assert.ok(doc.paths['/v1/keys'].post && doc.paths['/v1/keys'].get);
    assert.ok(doc.paths['/v1/keys/{key}/sign'].post);
    assert.deepEqual(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer' });
    assert.deepEqual(doc.paths['/v1/keys/{key}/sign'].post.security, [{ bearer: [] }]);
    assert.ok(!doc.paths['/v1/openapi.json'], 'the document hides itself');
  });
});

// ---------------------------------------------------------------------------
// 6. Metrics
// ---------------------------------------------------------------------------

describe('metrics', () => {
  test('counts signatures, request latency and denials', async () => {
    const k = await createKey('ed25519');
    for (let i = 0; i < 3; i++) await sign(k.label, { message: b64(randomBytes(8)) });
    assertError(await call('POST', `/v1/keys/${uniq('metrics-missing')}/sign`, { message: 'aGk=' }), 404, 'key_not_found');
    const r = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers['content-type']), /text\/plain/);
    const text = r.body;
    const sigs = /^custos_signatures_total\{algorithm="ed25519"\} (\d+(?:\.\d+)?)$/m.exec(text);
    assert.ok(sigs, 'custos_signatures_total{algorithm="ed25519"} is exported');
    assert.ok(Number(sigs[1]) >= 3);
    assert.match(text, /^custos_http_request_duration_seconds_bucket\{le="[^"]+",route="\/v1\/keys\/:key\/sign"\} \d+/m);
    const denials = /^custos_denials_total\{reason="key_not_found"\} (\d+)$/m.exec(text);
    assert.ok(denials, 'custos_denials_total{reason="key_not_found"} is exported');
    assert.ok(Number(denials[1]) >= 1);
    assert.match(text, /^custos_http_requests_total\{route="\/v1\/keys\/:key\/sign",method="POST",status="200"\} \d+/m);
  });
});

// ---------------------------------------------------------------------------
// 7. Request ids
// ---------------------------------------------------------------------------

describe('request ids', () => {
  test('puts an x-request-id on every response and echoes a valid incoming one', async () => {
    const k = await createKey('ed25519');
    const cases: Array<[Method, string, unknown, CallOpts]> = [
      ['GET', '/healthz', undefined, { auth: null }],
      ['GET', '/metrics', undefined, { auth: null }],
      ['GET', '/v1/openapi.json', undefined, { auth: null }],
      ['GET', '/v1/keys', undefined, {}],
      ['GET', '/v1/keys', undefined, { auth: null }],
      ['GET', `/v1/keys/${k.label}`, undefined, {}],
      ['POST', `/v1/keys/${k.label}/sign`, { message: 'aGk=' }, {}],
      ['POST', `/v1/keys/${k.label}/sign`, {}, {}],
      ['POST', '/v1/keys', undefined, { raw: '{' }],
      ['POST', '/v1/keys', undefined, { raw: 'x', headers: { 'content-type': 'text/plain' } }],
      ['GET', '/v1/nope', undefined, {}],
      ['GET', '/nope', undefined, { auth: null }],
      ['GET', '/v1/audit?limit=1', undefined, {}],
    ];
    for (const [m, u, b, o] of cases) {
      const r = await call(m, u, b, o);
      const id = r.headers['x-request-id'];
      assert.equal(typeof id, 'string', `${m} ${u} → ${r.status} has an x-request-id`);
      assert.match(id as string, /^[A-Za-z0-9._-]{1,64}$/);
      if (r.status >= 400) assert.equal(r.body.request_id, id, 'the error body carries the same id');

      const given = `req-${randomBytes(8).toString('hex')}`;
      const echoed = await call(m, u, b, { ...o, headers: { ...(o.headers ?? {}), 'x-request-id': given } });
      assert.equal(echoed.headers['x-request-id'], given, `${m} ${u} echoes a valid x-request-id`);
    }
    const s = await call('POST', `/v1/keys/${k.label}/sign`, { message: 'aGk=' }, { headers: { 'x-request-id': 'abc.DEF_123-x' } });
    assert.equal(s.body.request_id, 'abc.DEF_123-x');
    // Invalid incoming ids are replaced, not echoed.
    for (const bad of ['has space', 'a'.repeat(65), 'semi;colon', '<script>']) {
      const r = await call('GET', '/healthz', undefined, { auth: null, headers: { 'x-request-id': bad } });
      assert.notEqual(r.headers['x-request-id'], bad);
      assert.match(String(r.headers['x-request-id']), /^[A-Za-z0-9._-]{1,64}$/);
    }
  });
});

describe('keys in batches', () => {
  test('POST /v1/keys/batch makes every key in units of 100; a taken label refuses its unit, and the error names the labels not made', async () => {
    const prefix = uniq('bt');
    const ok = await call('POST', '/v1/keys/batch', { label_prefix: prefix, start: 0, count: 250, algorithm: 'ed25519' });
    assert.equal(ok.status, 201, ok.text);
    assert.deepEqual(ok.body, { created: 250, first: `${prefix}-0`, last: `${prefix}-249` });
    assert.equal((await call('GET', `/v1/keys/${prefix}-249`)).status, 200);
    // prefix-450 is taken: the unit 400 … 499 is refused whole; the others are made.
    assert.equal((await call('POST', '/v1/keys', { label: `${prefix}-450`, algorithm: 'ed25519' })).status, 201);
    const clash = await call('POST', '/v1/keys/batch', { label_prefix: prefix, start: 300, count: 300, algorithm: 'ed25519' });
    assertError(clash, 409, 'label_taken');
    assert.match(clash.body.message, new RegExp(`200 of 300 keys were created; not created: ${prefix}-400 … ${prefix}-499\\.`));
    assert.equal((await call('GET', `/v1/keys/${prefix}-400`)).status, 404);
    assert.equal((await call('GET', `/v1/keys/${prefix}-599`)).status, 200);
    assertError(await call('POST', '/v1/keys/batch', { label_prefix: prefix, start: 0, count: 1001, algorithm: 'ed25519' }), 400, 'bad_request');
  });
});
