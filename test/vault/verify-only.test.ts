/**
 * Verify-only keys: bare public keys in every form people hand over (SPKI PEM and DER, raw
 * Ed25519, SEC1 compressed and uncompressed, BIP340 x-only) check signatures made elsewhere,
 * and never sign, export or open an envelope, whatever path asks. Malformed, truncated and
 * oversized material gets a typed error, never a crash.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign as nodeSign, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { secp256k1, schnorr } from '@noble/curves/secp256k1.js';
import { p256 } from '@noble/curves/nist.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { isCustosError } from '../../src/core/errors.js';
import { parsePublicKey } from '../../src/crypto/public-keys.js';
import { Keyring } from '../../src/keystore/keyring.js';
import { makeVault } from '../helpers/tmpvault.js';
import { custos, serve } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';

const message = new TextEncoder().encode('approve payout 42');
const payload = { kind: 'message' as const, bytes: message };

test('imports bare public keys in every form and verifies signatures made elsewhere', async () => {
  const v = await makeVault();
  try {
    const ctx = v.ctx;
    const ed = generateKeyPairSync('ed25519');
    const edSig = new Uint8Array(nodeSign(null, message, ed.privateKey));
    const edPem = new TextEncoder().encode(ed.publicKey.export({ format: 'pem', type: 'spki' }).toString());
    const edDer = new Uint8Array(ed.publicKey.export({ format: 'der', type: 'spki' }));
    const edRaw = new Uint8Array(Buffer.from((ed.publicKey.export({ format: 'jwk' }) as { x: string }).x, 'base64url'));
    const kSk = secp256k1.utils.randomSecretKey();
    const kSig = secp256k1.sign(message, kSk, { prehash: true, lowS: true, format: 'compact' });
    const pSk = p256.utils.randomSecretKey();
    const pSig = p256.sign(message, pSk, { prehash: true, format: 'der' });
    const sSk = schnorr.utils.randomSecretKey();
    const sSig = schnorr.sign(message, sSk, randomBytes(32));
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rsaSig = new Uint8Array(nodeSign('sha256', message, rsa.privateKey));
    const cases: Array<[string, Parameters<typeof v.vault.importPublicKey>[1], Uint8Array, Record<string, string>]> = [
      ['ed25519 PEM', { label: 'ed-pem', format: 'spki-pem', material: edPem }, edSig, {}],
      ['ed25519 DER', { label: 'ed-der', format: 'spki-der', material: edDer }, edSig, {}],
      ['ed25519 raw', { label: 'ed-raw', format: 'raw', material: edRaw, algorithm: 'ed25519' }, edSig, {}],
      ['secp256k1 compressed', { label: 'k-33', format: 'raw', material: secp256k1.getPublicKey(kSk, true), algorithm: 'secp256k1' }, kSig, { encoding: 'raw' }],
      ['secp256k1 uncompressed', { label: 'k-65', format: 'raw', material: secp256k1.getPublicKey(kSk, false), algorithm: 'secp256k1' }, kSig, { encoding: 'raw' }],
      ['p256 compressed', { label: 'p-33', format: 'raw', material: p256.getPublicKey(pSk, true), algorithm: 'p256' }, pSig, { encoding: 'der' }],
      ['p256 uncompressed', { label: 'p-65', format: 'raw', material: p256.getPublicKey(pSk, false), algorithm: 'p256' }, pSig, { encoding: 'der' }],
      ['bip340 x-only', { label: 's-32', format: 'raw', material: schnorr.getPublicKey(sSk), algorithm: 'secp256k1-bip340' }, sSig, {}],
      ['rsa PEM', { label: 'rsa', format: 'spki-pem', material: new TextEncoder().encode(rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString()) }, rsaSig, { hash: 'sha256' }],
    ];
    for (const [what, req, sig, opts] of cases) {
      const k = await v.vault.importPublicKey(ctx(), req);
      assert.equal(k.attributes.purpose, 'verify', what);
      assert.equal(k.exportable, false);
      assert.equal((await v.vault.verify(ctx(), k.label, payload, sig, opts)).valid, true, what);
      const bad = sig.slice();
      bad[bad.length - 1] = bad[bad.length - 1]! ^ 1;
      assert.equal((await v.vault.verify(ctx(), k.label, payload, bad, opts)).valid, false, `${what}: a changed signature`);
    }
    // The compressed and uncompressed forms are the same key.
    assert.deepEqual((await v.vault.getKey('k-33')).publicKey, (await v.vault.getKey('k-65')).publicKey);
    assert.equal(sha256(message).length, 32);
  } finally {
    await v.dispose();
  }
});

test('a verify-only key never signs, exports or opens its envelope, whichever path asks', async () => {
  const v = await makeVault();
  try {
    const ed = generateKeyPairSync('ed25519');
    const k = await v.vault.importPublicKey(v.ctx(), { label: 'partner', format: 'spki-der', material: new Uint8Array(ed.publicKey.export({ format: 'der', type: 'spki' })) });
    const refused = async (p: Promise<unknown>) => {
      try {
        await p;
        return 'signed';
      } catch (e) {
        return isCustosError(e) ? e.fullCode : String(e);
      }
    };
    assert.equal(await refused(v.vault.sign({ ...v.ctx(), key: 'partner', payload, options: {}, context: {} })), 'key_purpose');
    assert.equal(await refused(v.vault.sign({ ...v.ctx(), key: 'partner', payload, options: {}, context: {}, use: 'ssh' })), 'key_purpose');
    assert.match(await refused(v.vault.sign({ ...v.ctx(), key: 'partner', payload, options: {}, context: {}, path: 'm/0' })), /^(key_purpose|bad_request)$/, 'not an HD key either');
    assert.equal(await refused(v.vault.exportKey(v.ctx(), 'partner', { kem: 'x25519', publicKey: new Uint8Array(32).fill(9) })), 'key_not_exportable');
    assert.throws(() => new Keyring(new Uint8Array(32), 'any').openSecret(k), /no private key/, 'refused before any decryption');
    assert.equal(await refused(v.vault.setPurpose(v.ctx(), 'partner', 'general')), 'key_purpose', 'a verify key cannot be given a signing purpose');
    assert.equal(await refused(v.vault.createKey(v.ctx(), { label: 'gen', algorithm: 'ed25519', exportable: false, purpose: 'verify' })), 'bad_request', 'no generated key is verify-only');
    const audit = await v.vault.auditTail(20);
    assert.ok(audit.some((e) => e.operation === 'import' && e.keyLabel === 'partner' && e.details.purpose === 'verify'));
  } finally {
    await v.dispose();
  }
});

test('malformed, truncated, private and oversized public key material gets a typed error', () => {
  const ed = generateKeyPairSync('ed25519');
  const der = new Uint8Array(ed.publicKey.export({ format: 'der', type: 'spki' }));
  const typed = (f: () => unknown) => {
    try {
      f();
      return 'ok';
    } catch (e) {
      assert.ok(isCustosError(e), `typed: ${String(e)}`);
      assert.ok(['invalid_key_material', 'bad_request'].includes(e.code), e.fullCode);
      return e.code;
    }
  };
  for (let n = 0; n < der.length; n++) assert.notEqual(typed(() => parsePublicKey('spki-der', der.subarray(0, n))), 'ok', `truncated to ${n}`);
  assert.equal(typed(() => parsePublicKey('spki-pem', new TextEncoder().encode(ed.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()))), 'invalid_key_material', 'a private key is not a public key');
  assert.equal(typed(() => parsePublicKey('raw', new Uint8Array(1 << 20), 'ed25519')), 'invalid_key_material');
  assert.equal(typed(() => parsePublicKey('raw', new Uint8Array(32))), 'bad_request', 'raw needs the algorithm');
  // Small-order Ed25519 points (review M3): under the identity one signature verifies everything.
  const identity = new Uint8Array(32);
  identity[0] = 1;
  assert.equal(typed(() => parsePublicKey('raw', identity, 'ed25519')), 'invalid_key_material', 'the identity point');
  const identitySpki = new Uint8Array([...Buffer.from('302a300506032b6570032100', 'hex'), ...identity]);
  assert.equal(typed(() => parsePublicKey('spki-der', identitySpki)), 'invalid_key_material', 'the identity point in an SPKI');
  assert.equal(typed(() => parsePublicKey('raw', Uint8Array.from([2, ...new Uint8Array(32).fill(0xff)]), 'secp256k1')), 'invalid_key_material', 'not on the curve');
  const x = generateKeyPairSync('x25519');
  assert.equal(typed(() => parsePublicKey('spki-der', new Uint8Array(x.publicKey.export({ format: 'der', type: 'spki' })))), 'invalid_key_material', 'x25519 is not a signing key');
  fc.assert(
    fc.property(fc.constantFrom('spki-pem', 'spki-der', 'raw') as fc.Arbitrary<'spki-pem' | 'spki-der' | 'raw'>, fc.uint8Array({ maxLength: 600 }), fc.constantFrom(undefined, 'ed25519', 'secp256k1', 'p256', 'secp256k1-bip340') as fc.Arbitrary<'ed25519' | undefined>, (format, bytes, alg) => {
      typed(() => parsePublicKey(format, bytes, alg));
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: der.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
      const m = der.slice();
      m[i] = m[i]! ^ x;
      typed(() => parsePublicKey('spki-der', m));
    }),
    { numRuns: 1000 },
  );
});

test('custos keys import-public, then verify over the API: a PEM file and a hex secp256k1 point', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    const tokenFile = join(dir, 'admin.token');
    const env = { CUSTOS_PASSPHRASE: 'verify-only test' };
    assert.equal(custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12', '--admin-token-file', tokenFile], env).status, 0);
    const s = await serve(['--data-dir', dataDir], env);
    try {
      const ed = generateKeyPairSync('ed25519');
      writeFileSync(join(dir, 'partner.pem'), ed.publicKey.export({ format: 'pem', type: 'spki' }));
      const r = custos(['keys', 'import-public', '--label', 'partner', '--in', join(dir, 'partner.pem'), '--tags', 'partners', '--addr', s.url, '--json'], { CUSTOS_TOKEN_FILE: tokenFile });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).purpose, 'verify');
      const sk = secp256k1.utils.randomSecretKey();
      writeFileSync(join(dir, 'k.hex'), `${Buffer.from(secp256k1.getPublicKey(sk, true)).toString('hex')}\n`);
      const r2 = custos(['keys', 'import-public', '--label', 'approver-k', '--in', join(dir, 'k.hex'), '--algorithm', 'secp256k1', '--addr', s.url], { CUSTOS_TOKEN_FILE: tokenFile });
      assert.equal(r2.status, 0, r2.stderr);
      writeFileSync(join(dir, 'msg'), message);
      writeFileSync(join(dir, 'sig'), nodeSign(null, message, ed.privateKey));
      const ok = custos(['verify', '--key', 'partner', '--in', join(dir, 'msg'), '--signature-file', join(dir, 'sig'), '--addr', s.url], { CUSTOS_TOKEN_FILE: tokenFile });
      assert.equal(ok.status, 0, ok.stderr + ok.stdout);
      const sign = custos(['sign', '--key', 'partner', '--in', join(dir, 'msg'), '--addr', s.url], { CUSTOS_TOKEN_FILE: tokenFile });
      assert.notEqual(sign.status, 0);
      assert.match(sign.stderr, /imported to verify signatures: there is no private key/);
      const bad = custos(['keys', 'import-public', '--label', 'junk', '--in', join(dir, 'msg'), '--algorithm', 'ed25519', '--addr', s.url], { CUSTOS_TOKEN_FILE: tokenFile });
      assert.notEqual(bad.status, 0);
      assert.match(bad.stderr, /not a valid ed25519 public key/);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  } finally {
    cleanup();
  }
});
