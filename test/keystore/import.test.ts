import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { generateKeyPairSync } from 'node:crypto';
import { importSecret, IMPORT_FORMATS } from '../../src/keystore/import.js';
import { publicKeyFromSecret } from '../../src/crypto/algorithms.js';
import { CustosError } from '../../src/core/errors.js';
import { ALGORITHMS } from '../../src/core/types.js';

test('PKCS#8 PEM from OpenSSL imports to the same public key for ed25519, P-256, secp256k1 and RSA', () => {
  const cases = [
    { alg: 'ed25519', kp: generateKeyPairSync('ed25519') },
    { alg: 'p256', kp: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }) },
    { alg: 'secp256k1', kp: generateKeyPairSync('ec', { namedCurve: 'secp256k1' }) },
    { alg: 'rsa-2048', kp: generateKeyPairSync('rsa', { modulusLength: 2048 }) },
  ] as const;
  for (const c of cases) {
    const pem = new TextEncoder().encode(c.kp.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
    const r = importSecret('pkcs8', pem, undefined);
    assert.equal(r.algorithm, c.alg);
    const jwk = c.kp.publicKey.export({ format: 'jwk' });
    const pub = publicKeyFromSecret(r.algorithm, r.secret);
    if (c.alg === 'ed25519') assert.equal(Buffer.from(pub).toString('base64url'), jwk.x);
    else if (c.alg === 'rsa-2048') assert.deepEqual(Buffer.from(pub), c.kp.publicKey.export({ format: 'der', type: 'spki' }));
    else assert.equal(Buffer.from(pub.subarray(1, 33)).toString('base64url'), jwk.x);
  }
});

test('a secp256k1 PEM can be imported as a BIP340 key, but not as a P-256 key', () => {
  const pem = new TextEncoder().encode(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
  assert.equal(importSecret('pkcs8', pem, 'secp256k1-bip340').algorithm, 'secp256k1-bip340');
  assert.throws(() => importSecret('pkcs8', pem, 'p256'), (e: unknown) => e instanceof CustosError && e.code === 'invalid_key_material');
});

test('out-of-range scalars and wrong lengths are invalid_key_material', () => {
  const n = Buffer.from('fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141', 'hex');
  for (const [alg, bytes] of [
    ['secp256k1', new Uint8Array(32)],
    ['secp256k1', new Uint8Array(n)],
    ['ed25519', new Uint8Array(31)],
    ['p256', new Uint8Array(33)],
  ] as const) {
    assert.throws(() => importSecret('raw', bytes, alg), (e: unknown) => e instanceof CustosError && e.code === 'invalid_key_material', alg);
  }
});

test('random material in every format and algorithm gives a key or a CustosError, never another throw', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...IMPORT_FORMATS),
      fc.option(fc.constantFrom(...ALGORITHMS), { nil: undefined }),
      fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.string({ maxLength: 300 }).map((s) => new TextEncoder().encode(s)), fc.constant(new TextEncoder().encode('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'))),
      (format, alg, material) => {
        try {
          importSecret(format, material, alg);
          return true;
        } catch (e) {
          return e instanceof CustosError;
        }
      },
    ),
    { numRuns: 1000 },
  );
});
