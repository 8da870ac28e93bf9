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

test('secp256k1 through OpenSSL: an envelope made with the pure-JS curve (as before) decrypts, and ours decrypt with it', async () => {
  const { secp256k1 } = await import('@noble/curves/secp256k1.js');
  const { hkdf } = await import('@noble/hashes/hkdf.js');
  const { sha256 } = await import('@noble/hashes/sha2.js');
  const { chacha20poly1305 } = await import('@noble/ciphers/chacha.js');
  for (let i = 0; i < 20; i++) {
    const sk = secp256k1.utils.randomSecretKey();
    const pub = secp256k1.getPublicKey(sk, true);
    // Built byte by byte with noble alone, as the envelope's definition says.
    const eph = secp256k1.utils.randomSecretKey();
    const ephPub = secp256k1.getPublicKey(eph, true);
    const shared = secp256k1.getSharedSecret(eph, pub, true).subarray(1);
    const okm = hkdf(sha256, shared, Uint8Array.from([...ephPub, ...pub]), new TextEncoder().encode('custos-ecies-v1'), 44);
    const header = Uint8Array.from([...new TextEncoder().encode('CSTX'), 1, 2, ...ephPub]);
    const env = Uint8Array.from([...header, ...chacha20poly1305(okm.subarray(0, 32), okm.subarray(32), header).encrypt(Uint8Array.of(i, 1, 2))]);
    assert.deepEqual(eciesDecrypt(sk, env), Uint8Array.of(i, 1, 2));
    // And ours, opened by hand with noble.
    const ours = eciesEncrypt('secp256k1', pub, Uint8Array.of(9, i));
    const e2 = ours.subarray(6, 39);
    const s2 = secp256k1.getSharedSecret(sk, e2, true).subarray(1);
    const k2 = hkdf(sha256, s2, Uint8Array.from([...e2, ...pub]), new TextEncoder().encode('custos-ecies-v1'), 44);
    assert.deepEqual(chacha20poly1305(k2.subarray(0, 32), k2.subarray(32), ours.subarray(0, 39)).decrypt(ours.subarray(39)), Uint8Array.of(9, i));
  }
});
