/**
 * src/lightning/bolt3.ts against an independent implementation: LDK's own `chan_utils`
 * (lightningdevkit@0.1.0, WASM), over random seeds, keys and HTLCs (fast-check). The shachain
 * secret, the key derivations, the funding, revocable and HTLC scripts, the obscuring factor
 * and the HTLC transactions must be byte for byte LDK's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as ldk from 'lightningdevkit';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { Transaction, OutScript } from '@scure/btc-signer';
import { sha256 } from '@noble/hashes/sha2.js';
import { initLdk, hex } from '../helpers/ldk.js';
import {
  commitmentNumberOf,
  derivePrivateKey,
  derivePublicKey,
  fundingScript,
  htlcScript,
  htlcTransaction,
  obscuringFactor,
  parseTransaction,
  perCommitmentSecret,
  pointOf,
  revocationPublicKey,
  revokeableScript,
  INITIAL_COMMITMENT_NUMBER,
} from '../../src/lightning/bolt3.js';
import { isCustosError } from '../../src/core/errors.js';

const secret = fc.uint8Array({ minLength: 32, maxLength: 32 }).filter((b) => {
  try {
    secp256k1.getPublicKey(b);
    return true;
  } catch {
    return false;
  }
});
const index = fc.bigInt({ min: 0n, max: INITIAL_COMMITMENT_NUMBER });

test('per-commitment secrets, points and derived keys are LDK\'s', async () => {
  await initLdk();
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), index, secret, (seed, idx, base) => {
      const s = perCommitmentSecret(seed, idx);
      assert.equal(hex(s), hex(ldk.UtilMethods.constructor_build_commitment_secret(seed, idx)));
      const pcp = pointOf(s);
      assert.equal(hex(derivePrivateKey(base, pcp)), hex(ldk.UtilMethods.constructor_derive_private_key(pcp, base)));
      assert.equal(hex(derivePublicKey(pointOf(base), pcp)), hex(pointOf(derivePrivateKey(base, pcp))));
      const rev = revocationPublicKey(pointOf(base), pcp);
      assert.equal(hex(rev), hex(ldk.RevocationKey.constructor_from_basepoint(ldk.RevocationBasepoint.constructor_new(pointOf(base)), pcp).to_public_key()));
    }),
    { numRuns: 60 },
  );
});

test('funding, revocable and HTLC scripts, the obscuring factor and HTLC transactions are LDK\'s', async () => {
  await initLdk();
  fc.assert(
    fc.property(
      fc.array(secret, { minLength: 6, maxLength: 6 }),
      fc.boolean(),
      fc.bigInt({ min: 1_000_000n, max: 2_000_000_000n }),
      fc.integer({ min: 0, max: 499_999_999 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.integer({ min: 253, max: 20_000 }),
      fc.integer({ min: 1, max: 2016 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      (keys, offered, amountMsat, cltv, paymentHash, feerate, delay, fakeTxid) => {
        const [fa, fb, rev, bHtlc, cHtlc, bDelayed] = keys.map(pointOf) as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
        assert.equal(hex(fundingScript(fa, fb)), hex(ldk.UtilMethods.constructor_make_funding_redeemscript(fa, fb)));
        assert.equal(hex(revokeableScript(rev, delay, bDelayed)), hex(ldk.UtilMethods.constructor_get_revokeable_redeemscript(ldk.RevocationKey.constructor_new(rev), delay, ldk.DelayedPaymentKey.constructor_new(bDelayed))));
        const opener = obscuringFactor(fa, fb);
        assert.equal(opener, ldk.UtilMethods.constructor_get_commitment_transaction_number_obscure_factor(fa, fb, true));
        assert.equal(opener, ldk.UtilMethods.constructor_get_commitment_transaction_number_obscure_factor(fb, fa, false));

        const h = { offered, amountMsat, cltvExpiry: cltv, paymentHash, outputIndex: 1 };
        const ck = { revocationKey: rev, broadcasterHtlcKey: bHtlc, countersignatoryHtlcKey: cHtlc, broadcasterDelayedKey: bDelayed };
        const lh = ldk.HTLCOutputInCommitment.constructor_new(offered, amountMsat, cltv, paymentHash, ldk.Option_u32Z.constructor_some(1));
        const txKeys = ldk.TxCreationKeys.constructor_new(pointOf(keys[0]!), ldk.RevocationKey.constructor_new(rev), ldk.HtlcKey.constructor_new(bHtlc), ldk.HtlcKey.constructor_new(cHtlc), ldk.DelayedPaymentKey.constructor_new(bDelayed));
        const features = ldk.ChannelTypeFeatures.constructor_only_static_remote_key();
        const script = htlcScript(h, ck);
        assert.equal(hex(script), hex(ldk.UtilMethods.constructor_get_htlc_redeemscript(lh, features, txKeys)));

        // A commitment-shaped transaction whose output 1 is this HTLC.
        const commitment = new Transaction({ version: 2, lockTime: 0x20000000, allowUnknownOutputs: true });
        commitment.addInput({ txid: fakeTxid, index: 0, sequence: 0x80000000 });
        commitment.addOutput({ script: OutScript.encode({ type: 'wsh', hash: sha256(new Uint8Array([1])) }), amount: 1000n });
        commitment.addOutput({ script: OutScript.encode({ type: 'wsh', hash: sha256(script) }), amount: amountMsat / 1000n });
        const fee = (BigInt(feerate) * (offered ? 663n : 703n)) / 1000n;
        if (fee >= amountMsat / 1000n) return;
        const ours = htlcTransaction(commitment, h, ck, feerate, delay);
        const theirs = ldk.UtilMethods.constructor_build_htlc_transaction(Uint8Array.from(Buffer.from(commitment.id, 'hex')).reverse(), feerate, delay, lh, features, ldk.DelayedPaymentKey.constructor_new(bDelayed), ldk.RevocationKey.constructor_new(rev));
        assert.equal(hex(ours.tx.toBytes(true, false)), hex(theirs));
        assert.equal(ours.amount, amountMsat / 1000n);
      },
    ),
    { numRuns: 60 },
  );
});

test('the commitment number comes out of the sequence and locktime; malformed transactions get a typed error', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: INITIAL_COMMITMENT_NUMBER }), fc.bigInt({ min: 0n, max: INITIAL_COMMITMENT_NUMBER }), (n, factor) => {
      const obscured = n ^ factor;
      const tx = new Transaction({ version: 2, lockTime: Number(0x20000000n | (obscured & 0xffffffn)), allowUnknownOutputs: true });
      tx.addInput({ txid: new Uint8Array(32).fill(7), index: 0, sequence: Number(0x80000000n | (obscured >> 24n)) });
      tx.addOutput({ script: OutScript.encode({ type: 'wsh', hash: new Uint8Array(32) }), amount: 1n });
      assert.equal(commitmentNumberOf(parseTransaction(tx.toBytes(true, false)), factor), n);
    }),
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (junk) => {
      try {
        const tx = parseTransaction(junk);
        commitmentNumberOf(tx, 0n);
      } catch (e) {
        assert.ok(isCustosError(e), String(e));
      }
    }),
    { numRuns: 500 },
  );
});
