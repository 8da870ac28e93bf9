import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { x25519 } from '@noble/curves/ed25519.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { eciesDecrypt, eciesEncrypt, encodeExportedKey, decodeExportedKey } from '../../src/crypto/ecies.js';
import { CustosError } from '../../src/core/errors.js';

test('custos-ecies-v1 round-trips with X25519 and secp256k1 recipients, and binds the header', () => {
  for (const kem of ['x25519', 'secp256k1'] as const) {
    const sk = kem === 'x25519' ? x25519.utils.randomSecretKey() : secp256k1.utils.randomSecretKey();
    const pk = kem === 'x25519' ? x25519.getPublicKey(sk) : secp256k1.getPublicKey(sk, false);
    const pt = new Uint8Array([1, 2, 3, 4, 5]);
    const env = eciesEncrypt(kem, pk, pt);
    assert.equal(Buffer.from(env.subarray(0, 4)).toString(), 'CSTX');
    assert.deepEqual(eciesDecrypt(sk, env), pt);
    for (const i of [5, 7, env.length - 1]) {
      const bad = Uint8Array.from(env);
      bad[i]! ^= 1;
      assert.throws(() => eciesDecrypt(sk, bad), CustosError);
    }
    const other = kem === 'x25519' ? x25519.utils.randomSecretKey() : secp256k1.utils.randomSecretKey();
    assert.throws(() => eciesDecrypt(other, env), CustosError);
  }
});

test('export payload encoding round-trips and rejects every truncation', () => {
  const enc = encodeExportedKey('ed25519', new Uint8Array(32).fill(1), new Uint8Array(32).fill(2));
  const dec = decodeExportedKey(enc);
  assert.equal(dec.algorithm, 'ed25519');
  for (let i = 0; i < enc.length; i++) assert.throws(() => decodeExportedKey(enc.subarray(0, i)), CustosError);
});

test('random envelopes and recipient keys only ever give CustosError', () => {
  const sk = x25519.utils.randomSecretKey();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      try {
        eciesDecrypt(sk, bytes);
        return false;
      } catch (e) {
        return e instanceof CustosError;
      }
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.constantFrom('x25519' as const, 'secp256k1' as const), fc.uint8Array({ maxLength: 70 }), (kem, pub) => {
      try {
        eciesEncrypt(kem, pub, new Uint8Array(4));
        return true;
      } catch (e) {
        return e instanceof CustosError;
      }
    }),
    { numRuns: 300 },
  );
});
