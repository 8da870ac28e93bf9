/**
 * Tor's Ed25519 certificates and tagged key files (src/crypto/tor-cert.ts): round trips, and
 * malformed, truncated and oversized input refused with a typed error (fast-check), never a
 * crash. (Byte-for-byte agreement with tor's own files is in test/tor/relay.test.ts, against
 * `tor --keygen`.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ed25519 } from '@noble/curves/ed25519.js';
import { decodeCert, decodeTagged, encodeTagged, relayCertBody, CERT_TYPE_SIGNING } from '../../src/crypto/tor-cert.js';
import { isCustosError } from '../../src/core/errors.js';

const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

test('a relay signing certificate round-trips and verifies under the master', () => {
  fc.assert(
    fc.property(key32, key32, fc.integer({ min: 0, max: 0xffffffff }), (seed, certified, hours) => {
      const master = ed25519.getPublicKey(seed);
      const body = relayCertBody(certified, master, hours);
      const sig = ed25519.sign(body, seed);
      const c = decodeCert(new Uint8Array([...body, ...sig]));
      assert.equal(c.certType, CERT_TYPE_SIGNING);
      assert.equal(c.expiresHours, hours);
      assert.deepEqual(c.certifiedKey, certified);
      assert.deepEqual(c.signingKey, master);
      assert.ok(ed25519.verify(c.signature, c.signed, master));
      const file = encodeTagged('ed25519v1-cert', 'type4', new Uint8Array([...body, ...sig]));
      assert.deepEqual(decodeTagged(file, 'ed25519v1-cert', 'type4').body, new Uint8Array([...body, ...sig]));
    }),
    { numRuns: 50 },
  );
});

test('malformed, truncated or oversized certificates and key files get a typed error', () => {
  const seed = new Uint8Array(32).fill(3);
  const body = relayCertBody(new Uint8Array(32).fill(1), ed25519.getPublicKey(seed), 500_000);
  const cert = new Uint8Array([...body, ...ed25519.sign(body, seed)]);
  const typed = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      assert.ok(isCustosError(e) && e.code === 'bad_request', String(e));
    }
  };
  fc.assert(
    fc.property(fc.integer({ min: 0, max: cert.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: cert.length }), (at, byte, cut) => {
      const m = Uint8Array.from(cert);
      m[at] = byte;
      typed(() => decodeCert(m));
      typed(() => decodeCert(cert.subarray(0, cut)));
      typed(() => decodeTagged(encodeTagged('ed25519v1-cert', 'type4', m).subarray(0, cut + 32), 'ed25519v1-cert'));
    }),
    { numRuns: 2000 },
  );
  fc.assert(fc.property(fc.uint8Array({ maxLength: 9000 }), (junk) => (typed(() => decodeCert(junk)), typed(() => decodeTagged(junk, 'ed25519v1-secret')))), { numRuns: 2000 });
  assert.throws(() => decodeCert(new Uint8Array(5000)), (e: unknown) => isCustosError(e) && /too large/.test(e.message));
  assert.throws(() => decodeTagged(encodeTagged('ed25519v1-public', 'type0', new Uint8Array(32)), 'ed25519v1-secret'), (e: unknown) => isCustosError(e) && /ed25519v1-public file, not ed25519v1-secret/.test(e.message));
  assert.throws(() => decodeTagged(encodeTagged('ed25519v1-secret', 'type4', new Uint8Array(64)), 'ed25519v1-secret', 'type0'), (e: unknown) => isCustosError(e) && /tagged type4, not type0/.test(e.message));
  const boxed = new Uint8Array(96);
  boxed.set(new TextEncoder().encode('== Boxed Ed25519 key: master =='));
  assert.throws(() => decodeTagged(boxed, 'ed25519v1-secret'), (e: unknown) => isCustosError(e) && /encrypted with a passphrase/.test(e.message));
});
