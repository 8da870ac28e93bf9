/**
 * HSM-wrapped keys on a real SoftHSM2 token: generated and wrapped inside the token, usable
 * after a restart, useless to anyone without the token's wrapping key.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { Pkcs11Token } from '../../../src/backends/pkcs11/token.js';
import { Pkcs11Module } from '../../../src/backends/pkcs11/module.js';
import { decodeWrapped, encodeWrapped } from '../../../src/backends/pkcs11/wrapped.js';
import { verifySignature } from '../../../src/crypto/algorithms.js';
import { CustosError } from '../../../src/core/errors.js';
import type { Algorithm, SignPayload } from '../../../src/core/types.js';
import { createSoftHsm, type SoftHsm } from '../../helpers/softhsm.js';

const WK = 'custos-wrap';
const msg = (s = 'wrapped'): SignPayload => ({ kind: 'message', bytes: new Uint8Array(Buffer.from(s)) });

function assertCode(e: unknown, fullCode: string): true {
  assert.ok(e instanceof CustosError, `expected CustosError, got ${String(e)}`);
  assert.equal(e.fullCode, fullCode, e.message);
  return true;
}

/** True when some suffix of the blob parses as a PKCS#8 private key. */
function containsPkcs8(blob: Uint8Array): boolean {
  for (let i = 0; i < blob.length; i++) {
    for (const end of [blob.length, ...Array.from({ length: 8 }, (_, k) => blob.length - k - 1)]) {
      if (end <= i) continue;
      try {
        createPrivateKey({ key: Buffer.from(blob.subarray(i, end)), format: 'der', type: 'pkcs8' });
        return true;
      } catch {
        // Not a key: what we expect.
      }
    }
  }
  return false;
}

let hsm: SoftHsm | null = null;
let token: Pkcs11Token;
const OTHER = 'other-token';

describe('wrapped keys on SoftHSM2', () => {
  before(async (t) => {
    hsm = createSoftHsm(t as never);
    if (!hsm) return;
    hsm.addToken(OTHER); // Before the module initialises, so it sees both tokens.
    token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin });
  });
  after(async () => {
    await token?.close();
    hsm?.cleanup();
  });

  test('the wrapping key is created once, on the token, and cannot be read', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const ids = await Promise.all([token.ensureWrappingKey(WK), token.ensureWrappingKey(WK), token.ensureWrappingKey(WK)]);
    assert.deepEqual(ids[0], ids[1]);
    assert.deepEqual(ids[0], ids[2]);
    assert.deepEqual(await token.ensureWrappingKey(WK), ids[0]);
    const m = Pkcs11Module.acquire(hsm.module);
    try {
      const lib = m.lib;
      const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trimEnd() === hsm!.label)!;
      const s = lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
      try {
        lib.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_LABEL, value: WK }]);
        const found = lib.C_FindObjects(s, 10);
        lib.C_FindObjectsFinal(s);
        assert.equal(found.length, 1);
        assert.throws(() => lib.C_GetAttributeValue(s, found[0]!, [{ type: pkcs11js.CKA_VALUE }]), /CKR_ATTRIBUTE_SENSITIVE/);
        const [tok, ext] = lib.C_GetAttributeValue(s, found[0]!, [{ type: pkcs11js.CKA_TOKEN }, { type: pkcs11js.CKA_EXTRACTABLE }]);
        assert.equal(tok!.value[0], 1);
        assert.equal(ext!.value[0], 0);
      } finally {
        lib.C_CloseSession(s);
      }
    } finally {
      m.release();
    }
  });

  const stored = new Map<Algorithm, { wrapped: Uint8Array; publicKey: Uint8Array }>();
  for (const alg of ['secp256k1', 'p256', 'rsa-2048'] as const) {
    test(`a wrapped ${alg} key signs, and its blob holds no plaintext key`, async (t) => {
      if (!hsm) return t.skip('no SoftHSM2');
      await token.ensureWrappingKey(WK);
      const before = (await token.list()).length;
      const w = await token.generateWrapped(alg, WK);
      stored.set(alg, w);
      for (const options of alg.startsWith('rsa') ? [{}, { padding: 'pss' as const }] : [{}, { encoding: 'raw' as const }]) {
        const { signature } = await token.signWrapped(w.wrapped, alg, WK, msg(alg), options);
        assert.ok(verifySignature(alg, w.publicKey, msg(alg), signature, options));
      }
      // Neither generation nor signing leaves a key object behind.
      assert.equal((await token.list()).length, before);
      assert.ok(!containsPkcs8(w.wrapped), 'the blob must not contain a PKCS#8 key');
      assert.notEqual(decodeWrapped(w.wrapped).wrapped.length % 8, 1);
    });
  }

  test('Ed25519 cannot be wrapped by SoftHSM 2.6 and says so', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    await token.ensureWrappingKey(WK);
    try {
      const w = await token.generateWrapped('ed25519', WK);
      // A newer module that wraps EdDSA keys: then it must work end to end.
      const { signature } = await token.signWrapped(w.wrapped, 'ed25519', WK, msg(), {});
      assert.ok(verifySignature('ed25519', w.publicKey, msg(), signature, {}));
    } catch (e) {
      assertCode(e, 'unsupported_algorithm');
    }
  });

  test('wrapped keys still sign after the token is closed and reopened (a restart)', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    assert.ok(stored.size > 0);
    await token.close();
    token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin });
    for (const [alg, w] of stored) {
      const { signature } = await token.signWrapped(w.wrapped, alg, WK, msg('after restart'), {});
      assert.ok(verifySignature(alg, w.publicKey, msg('after restart'), signature, {}));
    }
  });

  test('an altered blob, the wrong algorithm or another token is refused', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const w = stored.get('p256')!;
    const bad = Uint8Array.from(w.wrapped);
    bad[bad.length - 5]! ^= 0x01;
    await assert.rejects(token.signWrapped(bad, 'p256', WK, msg(), {}), (e) => assertCode(e, 'key_record_corrupt'));
    await assert.rejects(token.signWrapped(w.wrapped, 'secp256k1', WK, msg(), {}), (e) => assertCode(e, 'key_record_corrupt'));
    await assert.rejects(token.signWrapped(w.wrapped.subarray(0, 10), 'p256', WK, msg(), {}), (e) => assertCode(e, 'key_record_corrupt'));
    await assert.rejects(token.signWrapped(w.wrapped, 'p256', 'no-such-wrapping-key', msg(), {}), (e) => assertCode(e, 'key_not_found'));
    assert.equal(token.status().state, 'ready');

    // Another token, with its own wrapping key of the same label: neither as stored nor with
    // the header rewritten to name its key can it unwrap the blob.
    const other = await Pkcs11Token.open({ module: hsm.module, tokenLabel: OTHER, pin: hsm.pin });
    try {
      const otherId = await other.ensureWrappingKey(WK);
      await assert.rejects(other.signWrapped(w.wrapped, 'p256', WK, msg(), {}), (e) => assertCode(e, 'key_record_corrupt'));
      const forged = encodeWrapped({ ...decodeWrapped(w.wrapped), wrappingKeyId: otherId });
      await assert.rejects(other.signWrapped(forged, 'p256', WK, msg(), {}), (e) => assertCode(e, 'key_record_corrupt'));
      assert.equal(other.status().state, 'ready');
    } finally {
      await other.close();
    }
    // The first token is unaffected by the second one's life cycle.
    const { signature } = await token.signWrapped(w.wrapped, 'p256', WK, msg(), {});
    assert.ok(verifySignature('p256', w.publicKey, msg(), signature, {}));
  });

  test('concurrent wrapped signatures each get their own session', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const w = stored.get('secp256k1')!;
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const { signature } = await token.signWrapped(w.wrapped, 'secp256k1', WK, msg(`c${i}`), {});
        return verifySignature('secp256k1', w.publicKey, msg(`c${i}`), signature, {});
      }),
    );
    assert.ok(results.every(Boolean));
  });
});
