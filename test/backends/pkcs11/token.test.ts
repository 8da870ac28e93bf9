/**
 * The PKCS#11 token layer against a real SoftHSM2 token: every algorithm generates and signs
 * what crypto/algorithms.ts verifies, keys stay inside the token, wrapped keys work after a
 * restart, and a lost token fails closed and recovers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { Pkcs11Token } from '../../../src/backends/pkcs11/token.js';
import { Pkcs11Module } from '../../../src/backends/pkcs11/module.js';
import { verifySignature } from '../../../src/crypto/algorithms.js';
import { CustosError } from '../../../src/core/errors.js';
import type { Algorithm, SignOptions, SignPayload } from '../../../src/core/types.js';
import { createSoftHsm, type SoftHsm } from '../../helpers/softhsm.js';

const msg = (s = 'custos pkcs11 test'): SignPayload => ({ kind: 'message', bytes: new Uint8Array(Buffer.from(s)) });

function assertCode(e: unknown, fullCode: string): true {
  assert.ok(e instanceof CustosError, `expected CustosError, got ${String(e)}`);
  assert.equal(e.fullCode, fullCode, e.message);
  return true;
}

let hsm: SoftHsm | null = null;
let token: Pkcs11Token;

describe('Pkcs11Token on SoftHSM2', () => {
  before(async (t) => {
    hsm = createSoftHsm(t as never);
    if (!hsm) return;
    token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin, sessions: 4 });
  });
  after(async () => {
    await token?.close();
    hsm?.cleanup();
  });

  const cases: Array<[Algorithm, SignOptions[]]> = [
    ['ed25519', [{}]],
    ['secp256k1', [{}, { encoding: 'der' }, { encoding: 'raw' }]],
    ['p256', [{}, { encoding: 'der' }, { encoding: 'raw' }]],
    ['rsa-2048', [{}, { hash: 'sha512' }, { padding: 'pss' }, { padding: 'pss', hash: 'sha384' }, { hash: 'sha1' }]],
    ['rsa-3072', [{}]],
  ];
  for (const [alg, optionSets] of cases) {
    test(`generates a ${alg} key whose signatures verify with verifySignature`, async (t) => {
      if (!hsm) return t.skip('no SoftHSM2');
      const { id, publicKey } = await token.generateKeyPair(alg, { label: `gen-${alg}` });
      for (const options of optionSets) {
        const payload = msg(`${alg} ${JSON.stringify(options)}`);
        const { signature, encoding } = await token.sign(id, alg, payload, options);
        assert.ok(verifySignature(alg, publicKey, payload, signature, options), `${alg} ${JSON.stringify(options)}`);
        if (alg === 'ed25519') assert.equal(signature.length, 64);
        if (options.encoding === 'raw') assert.equal(signature.length, 64);
        if (alg.startsWith('rsa')) assert.equal(encoding, options.padding ?? 'pkcs1');
        else if (alg !== 'ed25519') assert.equal(encoding, options.encoding ?? 'der');
        // A different message does not verify.
        assert.ok(!verifySignature(alg, publicKey, msg('other'), signature, options));
      }
    });
  }

  test('ECDSA signs a pre-computed SHA-256 digest', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    for (const alg of ['secp256k1', 'p256'] as const) {
      const { id, publicKey } = await token.generateKeyPair(alg, { label: `digest-${alg}` });
      const digest: SignPayload = { kind: 'digest', bytes: new Uint8Array(randomBytes(32)) };
      const { signature } = await token.sign(id, alg, digest, { encoding: 'raw' });
      assert.ok(verifySignature(alg, publicKey, digest, signature, { encoding: 'raw' }));
    }
  });

  test('secp256k1 signatures are always low-S', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const { id, publicKey } = await token.generateKeyPair('secp256k1', { label: 'lows' });
    const half = secp256k1.Point.Fn.ORDER >> 1n;
    for (let i = 0; i < 64; i++) {
      const payload = msg(`low-s ${i}`);
      const { signature } = await token.sign(id, 'secp256k1', payload, { encoding: 'raw' });
      const sig = secp256k1.Signature.fromBytes(signature, 'compact');
      assert.ok(sig.s <= half, 'high S');
      assert.ok(verifySignature('secp256k1', publicKey, payload, signature, { encoding: 'raw' }));
    }
  });

  test('refuses options the software path refuses', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const { id } = await token.generateKeyPair('ed25519', { label: 'opts' });
    await assert.rejects(token.sign(id, 'ed25519', { kind: 'digest', bytes: new Uint8Array(32) }, {}), (e) => assertCode(e, 'digest_not_supported'));
    await assert.rejects(token.sign(id, 'ed25519', msg(), { encoding: 'der' }), (e) => assertCode(e, 'unsupported_option'));
    await assert.rejects(token.generateKeyPair('secp256k1-bip340', { label: 'x' }), (e) => assertCode(e, 'unsupported_algorithm'));
    await assert.rejects(token.sign(id, 'p256', msg(), {}), (e) => assertCode(e, 'key_record_corrupt'));
    await assert.rejects(token.sign(new Uint8Array(16), 'ed25519', msg(), {}), (e) => assertCode(e, 'key_not_found'));
  });

  test('a token key cannot be read or wrapped out of the token', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const { id } = await token.generateKeyPair('p256', { label: 'sealed' });
    const info = await token.findById(id);
    assert.ok(info);
    assert.equal(info.extractable, false);
    assert.equal(info.sensitive, true);
    // Straight at the module, around Pkcs11Token: the attributes a thief would ask for.
    const m = Pkcs11Module.acquire(hsm.module);
    try {
      const lib = m.lib;
      const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trimEnd() === hsm!.label)!;
      const s = lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      try {
        lib.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }, { type: pkcs11js.CKA_ID, value: Buffer.from(id) }]);
        const [h] = lib.C_FindObjects(s, 1);
        lib.C_FindObjectsFinal(s);
        assert.ok(h);
        assert.throws(() => lib.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_VALUE }]), /CKR_ATTRIBUTE_SENSITIVE/);
        const aes = lib.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
          { type: pkcs11js.CKA_WRAP, value: true },
        ]);
        for (const mechanism of [pkcs11js.CKM_AES_KEY_WRAP_PAD, pkcs11js.CKM_AES_KEY_WRAP]) {
          assert.throws(() => lib.C_WrapKey(s, { mechanism }, aes, h, Buffer.alloc(4096)), /CKR_KEY_UNEXTRACTABLE/);
        }
        // Nor can it be made extractable afterwards (PKCS#11 §4.9: false → true is refused).
        assert.throws(() => lib.C_SetAttributeValue(s, h, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]), /CKR_ATTRIBUTE_READ_ONLY|CKR_ATTRIBUTE_VALUE_INVALID/);
      } finally {
        lib.C_CloseSession(s);
      }
    } finally {
      m.release();
    }
  });

  test('lists keys and adopts one by label or id; destroy removes both halves', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const { id, publicKey } = await token.generateKeyPair('secp256k1', { label: 'adopt-me' });
    const listed = (await token.list()).find((k) => Buffer.from(k.id).equals(Buffer.from(id)));
    assert.ok(listed);
    assert.equal(listed.label, 'adopt-me');
    assert.equal(listed.algorithm, 'secp256k1');
    assert.deepEqual(listed.publicKey, publicKey);
    const byLabel = await token.findByLabel('adopt-me');
    assert.deepEqual(byLabel?.id, id);
    assert.deepEqual(byLabel?.publicKey, publicKey);
    const rsa = await token.generateKeyPair('rsa-2048', { label: 'adopt-rsa' });
    assert.deepEqual((await token.findByLabel('adopt-rsa'))?.publicKey, rsa.publicKey);
    assert.equal((await token.findByLabel('adopt-rsa'))?.algorithm, 'rsa-2048');
    assert.equal(await token.findByLabel('nobody'), null);
    await token.generateKeyPair('p256', { label: 'twice' });
    await token.generateKeyPair('p256', { label: 'twice' });
    await assert.rejects(token.findByLabel('twice'), (e) => assertCode(e, 'bad_request'));

    await token.destroy(id);
    assert.equal(await token.findById(id), null);
    await assert.rejects(token.sign(id, 'secp256k1', msg(), {}), (e) => assertCode(e, 'key_not_found'));
    await assert.rejects(token.destroy(id), (e) => assertCode(e, 'key_not_found'));
  });

  test('many concurrent callers sign safely', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const keys = await Promise.all((['ed25519', 'secp256k1', 'p256'] as const).map(async (alg) => ({ alg, ...(await token.generateKeyPair(alg, { label: `conc-${alg}` })) })));
    const jobs = Array.from({ length: 300 }, async (_, i) => {
      const k = keys[i % keys.length]!;
      const payload = msg(`concurrent ${i}`);
      const { signature } = await token.sign(k.id, k.alg, payload, {});
      return verifySignature(k.alg, k.publicKey, payload, signature, {});
    });
    const results = await Promise.all(jobs);
    assert.ok(results.every(Boolean));
    assert.equal(token.status().state, 'ready');
  });

  test('a wrong PIN fails with hsm_login_failed:pin_incorrect and the right PIN still works', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const other = hsm.label;
    const wrong = new Uint8Array(Buffer.from('000000'));
    // A second instance on the same token shares login state; close ours first (see token.ts).
    await token.close();
    await assert.rejects(Pkcs11Token.open({ module: hsm.module, tokenLabel: other, pin: wrong }), (e) => {
      assertCode(e, 'hsm_login_failed:pin_incorrect');
      assert.ok(!(e as Error).message.includes('000000') && !(e as Error).message.includes('123456'));
      return true;
    });
    await assert.rejects(Pkcs11Token.open({ module: hsm.module, tokenLabel: 'no-such-token', pin: hsm.pin }), (e) => assertCode(e, 'hsm_unavailable'));
    token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: other, pin: hsm.pin });
    const { id, publicKey } = await token.generateKeyPair('ed25519', { label: 'after-wrong-pin' });
    const { signature } = await token.sign(id, 'ed25519', msg(), {});
    assert.ok(verifySignature('ed25519', publicKey, msg(), signature, {}));
  });

  test('opens by serial number and wipes its copy of the PIN on close', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    await token.close();
    const lib = Pkcs11Module.acquire(hsm.module);
    const serial = lib.lib.C_GetSlotList(true).map((s) => lib.lib.C_GetTokenInfo(s)).find((i) => i.label.trimEnd() === hsm!.label)!.serialNumber.trim();
    lib.release();
    const pin = Uint8Array.from(hsm.pin);
    token = await Pkcs11Token.open({ module: hsm.module, serial, pin });
    pin.fill(0); // The caller's buffer is its own: the token keeps a copy.
    const { id } = await token.generateKeyPair('p256', { label: 'by-serial' });
    await token.sign(id, 'p256', msg(), {});
    const internal = (token as unknown as { pin: Uint8Array }).pin;
    await token.close();
    assert.ok(internal.every((b) => b === 0));
    assert.equal(token.status().state, 'unavailable');
    await assert.rejects(token.sign(id, 'p256', msg(), {}), (e) => assertCode(e, 'hsm_unavailable'));
    token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin });
  });

  test('RSA-4096 generation runs off the event loop', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const { id, publicKey } = await token.generateKeyPair('rsa-4096', { label: 'big' });
    clearInterval(timer);
    assert.ok(ticks > 0, 'the event loop ran while the key was generated');
    const { signature } = await token.sign(id, 'rsa-4096', msg(), { padding: 'pss' });
    assert.ok(verifySignature('rsa-4096', publicKey, msg(), signature, { padding: 'pss' }));
  });
});
