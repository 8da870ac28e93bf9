/**
 * The vault's channel signer (src/vault/lightning-signer.ts, in a real vault on SQLite) against
 * LDK's own `InMemorySigner` holding the same channel secrets: the same public keys, points and
 * secrets; and for every signature (holder commitment, justice on a revoked output and HTLC,
 * an HTLC transaction of the holder's, a claim on the counterparty's HTLC), LDK's signature and
 * the vault's both verify over the digest and key built here with LDK's chan_utils, so the vault
 * signs exactly what LDK would, with the key LDK would. The rules around them refuse.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as ldk from 'lightningdevkit';
import { Transaction, OutScript } from '@scure/btc-signer';
import { sha256 } from '@noble/hashes/sha2.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { makeVault, type TestVault } from '../helpers/tmpvault.js';
import { initLdk, hex, unwrap } from '../helpers/ldk.js';
import { generateMnemonic, masterFromSeed, seedFromMnemonic } from '../../src/wallet/hd.js';
import { channelSecrets, p2wpkh } from '../../src/lightning/channel-keys.js';
import { INITIAL_COMMITMENT_NUMBER, obscuringFactor, perCommitmentSecret, pointOf, signDigest, verifyDigest } from '../../src/lightning/bolt3.js';
import { isCustosError } from '../../src/core/errors.js';

const denied = (tag: string) => (e: unknown) => isCustosError(e) && e.fullCode === `policy_denied:${tag}`;
const sigOf = (r: ldk.Result_ECDSASignatureNoneZ, what: string) => unwrap(r, ldk.Result_ECDSASignatureNoneZ_OK, what).res;
const features = () => ldk.ChannelTypeFeatures.constructor_only_static_remote_key();

/** A counterparty: its secrets and LDK public keys. */
function party() {
  const s = Array.from({ length: 5 }, () => secp256k1.utils.randomSecretKey());
  const [funding, revocation, payment, delayed, htlc] = s as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  const pub = ldk.ChannelPublicKeys.constructor_new(pointOf(funding), ldk.RevocationBasepoint.constructor_new(pointOf(revocation)), pointOf(payment), ldk.DelayedPaymentBasepoint.constructor_new(pointOf(delayed)), ldk.HtlcBasepoint.constructor_new(pointOf(htlc)));
  return { funding, pub };
}

/** A transaction spending `prev:index` with the given sequence and locktime, paying `script`. */
function spend(prev: Uint8Array | string, index: number, sequence: number, lockTime: number, script = OutScript.encode({ type: 'wsh', hash: new Uint8Array(32).fill(9) }), amount = 900_000n): Transaction {
  const tx = new Transaction({ version: 2, lockTime, allowUnknownOutputs: true });
  tx.addInput({ txid: prev, index, sequence });
  tx.addOutput({ script, amount });
  return tx;
}

test('the vault signs what LDK\'s InMemorySigner signs, with the same keys, and refuses around it', async (t) => {
  await initLdk();
  const mnemonic = generateMnemonic();
  const v: TestVault = await makeVault();
  t.after(() => v.dispose());
  await v.vault.createHdKey(v.ctx(), { label: 'ln', curve: 'secp256k1', mnemonic, purpose: 'lightning' });
  const ch = v.vault.channels;
  const keysId = hex(randomBytes(32));
  const secrets = channelSecrets(masterFromSeed(seedFromMnemonic(mnemonic), 'secp256k1'), keysId);
  const value = 1_000_000n;
  const ims = ldk.InMemorySigner.constructor_new(secrets.funding, secrets.revocation, secrets.payment, secrets.delayed, secrets.htlc, secrets.commitment, value, Buffer.from(keysId, 'hex'), randomBytes(32));
  const cs = ims.as_ChannelSigner();
  const es = ims.as_EcdsaChannelSigner();
  const ours = cs.get_pubkeys();

  // Public keys, points and secrets.
  const pk = await ch.publicKeys(v.ctx(), 'ln', keysId);
  assert.equal(hex(pk.funding), hex(ours.get_funding_pubkey()));
  assert.equal(hex(pk.revocation), hex(ours.get_revocation_basepoint().to_public_key()));
  assert.equal(hex(pk.payment), hex(ours.get_payment_point()));
  assert.equal(hex(pk.delayed), hex(ours.get_delayed_payment_basepoint().to_public_key()));
  assert.equal(hex(pk.htlc), hex(ours.get_htlc_basepoint().to_public_key()));
  for (const idx of [INITIAL_COMMITMENT_NUMBER, INITIAL_COMMITMENT_NUMBER - 1n, 12345n]) {
    const p = await ch.perCommitmentPoint(v.ctx(), 'ln', keysId, idx);
    assert.equal(hex(p), hex(unwrap(cs.get_per_commitment_point(idx), ldk.Result_PublicKeyNoneZ_OK, 'point').res));
  }

  // The channel: this node opened it; the counterparty's keys.
  const them = party();
  const fundingTxid = randomBytes(32); // display order
  const holderDelay = 144;
  const counterpartyDelay = 720;
  const params = ldk.ChannelTransactionParameters.constructor_new(ours, holderDelay, true, ldk.CounterpartyChannelTransactionParameters.constructor_new(them.pub, counterpartyDelay), ldk.OutPoint.constructor_new(Uint8Array.from(fundingTxid).reverse(), 0), features());
  cs.provide_channel_parameters(params);
  const tp = them.pub;
  await ch.setup(v.ctx(), 'ln', keysId, {
    channelType: 'static_remotekey',
    outbound: true,
    holderDelay,
    counterpartyDelay,
    counterparty: { funding: hex(tp.get_funding_pubkey()), revocation: hex(tp.get_revocation_basepoint().to_public_key()), payment: hex(tp.get_payment_point()), delayed: hex(tp.get_delayed_payment_basepoint().to_public_key()), htlc: hex(tp.get_htlc_basepoint().to_public_key()) },
    fundingTxid: hex(fundingTxid),
    fundingIndex: 0,
    valueSat: value.toString(),
  });
  const fundingScript = ldk.UtilMethods.constructor_make_funding_redeemscript(ours.get_funding_pubkey(), tp.get_funding_pubkey());
  const factor = obscuringFactor(ours.get_payment_point(), tp.get_payment_point());
  // (Paying this node's to_remote: the only output a counterparty commitment may carry without a to_local or HTLCs.)
  const commitment = (n: bigint) => {
    const o = BigInt(n) ^ factor;
    return spend(fundingTxid, 0, Number(0x80000000n | (o >> 24n)), Number(0x20000000n | (o & 0xffffffn)), p2wpkh(ours.get_payment_point()));
  };
  const wallet = (await ch.walletScript(v.ctx(), 'ln')).script;
  const digest = (tx: Transaction, input: number, script: Uint8Array, amount: bigint) => tx.preimageWitnessV0(input, script, 1, amount);

  // Holder commitments 0 and 1, signed by the counterparty; 0 is then revoked.
  const holder = [0n, 1n].map((n) => {
    const tx = commitment(n);
    return { tx, sig: signDigest(digest(tx, 0, fundingScript, value), them.funding) };
  });
  await assert.rejects(ch.validateHolder(v.ctx(), 'ln', keysId, { tx: holder[1]!.tx.toBytes(true, false), counterpartySignature: holder[1]!.sig }), denied('lightning_commitment'), 'out of order');
  await assert.rejects(ch.validateHolder(v.ctx(), 'ln', keysId, { tx: holder[0]!.tx.toBytes(true, false), counterpartySignature: holder[1]!.sig }), denied('lightning_signature'), 'a signature of another transaction');
  for (const h of holder) await ch.validateHolder(v.ctx(), 'ln', keysId, { tx: h.tx.toBytes(true, false), counterpartySignature: h.sig });
  await assert.rejects(ch.releaseSecret(v.ctx(), 'ln', keysId, INITIAL_COMMITMENT_NUMBER - 1n), denied('lightning_revoke_current'));
  const secret0 = await ch.releaseSecret(v.ctx(), 'ln', keysId, INITIAL_COMMITMENT_NUMBER);
  assert.equal(hex(secret0), hex(unwrap(cs.release_commitment_secret(INITIAL_COMMITMENT_NUMBER), ldk.Result__u832NoneZ_OK, 'secret').res));
  await assert.rejects(ch.signHolder(v.ctx(), 'ln', keysId, holder[0]!.tx.toBytes(true, false)), denied('lightning_revoked'));

  const htlc = ldk.HTLCOutputInCommitment.constructor_new(true, 5_000_000n, 800_100, randomBytes(32), ldk.Option_u32Z.constructor_some(0));
  const htlcJs = { offered: true, amountMsat: 5_000_000n, cltvExpiry: 800_100, paymentHash: htlc.get_payment_hash(), outputIndex: 0 };

  // Counterparty commitment 0, signed; its HTLC claimed; then revoked, and its outputs taken with the revocation key.
  const theirSecret = secp256k1.utils.randomSecretKey();
  const theirPoint = pointOf(theirSecret);
  const cp0 = commitment(0n);
  await ch.signCounterparty(v.ctx(), 'ln', keysId, { tx: cp0.toBytes(true, false), perCommitmentPoint: theirPoint, feeratePerKw: 1000, htlcs: [] });
  const ck = ldk.TxCreationKeys.constructor_from_channel_static_keys(theirPoint, tp, ours);
  const cScript = ldk.UtilMethods.constructor_get_htlc_redeemscript(htlc, features(), ck);
  const claim = spend(randomBytes(32), 1, 0, 0, wallet);
  const dc = digest(claim, 0, cScript, 5_000n);
  const ourKeyThere = ck.get_countersignatory_htlc_key().to_public_key();
  const ldkClaim = sigOf(es.sign_counterparty_htlc_transaction(claim.toBytes(true, false), 0, 5_000n, theirPoint, htlc), 'LDK counterparty HTLC');
  const vaultClaim = await ch.signCounterpartyHtlc(v.ctx(), 'ln', keysId, { tx: claim.toBytes(true, false), input: 0, amount: 5_000n, perCommitmentPoint: theirPoint, htlc: htlcJs });
  assert.ok(verifyDigest(ldkClaim, dc, ourKeyThere) && verifyDigest(vaultClaim, dc, ourKeyThere), 'counterparty HTLC claim: same digest, same key');
  await assert.rejects(ch.signCounterpartyHtlc(v.ctx(), 'ln', keysId, { tx: claim.toBytes(true, false), input: 0, amount: 5_000n, perCommitmentPoint: pointOf(secp256k1.utils.randomSecretKey()), htlc: htlcJs }), denied('lightning_commitment'), 'not of a commitment it signed');

  await ch.signCounterparty(v.ctx(), 'ln', keysId, { tx: commitment(1n).toBytes(true, false), perCommitmentPoint: pointOf(secp256k1.utils.randomSecretKey()), feeratePerKw: 1000, htlcs: [] });
  await assert.rejects(ch.validateRevocation(v.ctx(), 'ln', keysId, INITIAL_COMMITMENT_NUMBER, secp256k1.utils.randomSecretKey()), denied('lightning_revocation'), 'a secret that does not open the point');
  await ch.validateRevocation(v.ctx(), 'ln', keysId, INITIAL_COMMITMENT_NUMBER, theirSecret);
  await assert.rejects(ch.signCounterpartyHtlc(v.ctx(), 'ln', keysId, { tx: claim.toBytes(true, false), input: 0, amount: 5_000n, perCommitmentPoint: theirPoint, htlc: htlcJs }), denied('lightning_commitment'), 'not of a revoked commitment');

  const revKey = ck.get_revocation_key().to_public_key();
  const toLocal = ldk.UtilMethods.constructor_get_revokeable_redeemscript(ck.get_revocation_key(), holderDelay, ck.get_broadcaster_delayed_payment_key());
  await assert.rejects(ch.signJustice(v.ctx(), 'ln', keysId, { tx: spend(randomBytes(32), 0, 0xffffffff, 0).toBytes(true, false), input: 0, amount: 700_000n, perCommitmentSecret: theirSecret }), denied('lightning_destination'), 'justice pays the wallet only');
  const justice = spend(randomBytes(32), 0, 0xffffffff, 0, wallet);
  const dj = digest(justice, 0, toLocal, 700_000n);
  const ldkJ = sigOf(es.sign_justice_revoked_output(justice.toBytes(true, false), 0, 700_000n, theirSecret), 'LDK justice');
  const vaultJ = await ch.signJustice(v.ctx(), 'ln', keysId, { tx: justice.toBytes(true, false), input: 0, amount: 700_000n, perCommitmentSecret: theirSecret });
  assert.ok(verifyDigest(ldkJ, dj, revKey) && verifyDigest(vaultJ, dj, revKey), 'justice on to_local: same digest, same key');
  const djh = digest(justice, 0, cScript, 5_000n);
  const ldkJh = sigOf(es.sign_justice_revoked_htlc(justice.toBytes(true, false), 0, 5_000n, theirSecret, htlc), 'LDK justice HTLC');
  const vaultJh = await ch.signJustice(v.ctx(), 'ln', keysId, { tx: justice.toBytes(true, false), input: 0, amount: 5_000n, perCommitmentSecret: theirSecret, htlc: htlcJs });
  assert.ok(verifyDigest(ldkJh, djh, revKey) && verifyDigest(vaultJh, djh, revKey), 'justice on an HTLC: same digest, same key');

  // The latest holder commitment, for broadcast: LDK's and the vault's signatures over the same digest and key.
  const d1 = digest(holder[1]!.tx, 0, fundingScript, value);
  const vaultSig = await ch.signHolder(v.ctx(), 'ln', keysId, holder[1]!.tx.toBytes(true, false));
  assert.ok(verifyDigest(vaultSig, d1, ours.get_funding_pubkey()), 'holder commitment signature');
  await assert.rejects(ch.releaseSecret(v.ctx(), 'ln', keysId, INITIAL_COMMITMENT_NUMBER - 1n), denied('lightning_revoke_signed'));

  // An HTLC transaction of that commitment (HTLC-timeout of an offered HTLC), built by LDK.
  const pcp1 = pointOf(perCommitmentSecret(secrets.commitment, INITIAL_COMMITMENT_NUMBER - 1n));
  const hk = ldk.TxCreationKeys.constructor_from_channel_static_keys(pcp1, ours, tp);
  const commitTxid = Uint8Array.from(Buffer.from(holder[1]!.tx.id, 'hex')).reverse(); // the broadcast commitment (internal order)
  const htlcTx = Transaction.fromRaw(ldk.UtilMethods.constructor_build_htlc_transaction(commitTxid, 1000, counterpartyDelay, htlc, features(), hk.get_broadcaster_delayed_payment_key(), hk.get_revocation_key()), { allowUnknownOutputs: true, disableScriptCheck: true });
  const htlcScript = ldk.UtilMethods.constructor_get_htlc_redeemscript(htlc, features(), hk);
  const dh = digest(htlcTx, 0, htlcScript, 5_000n);
  const ourHtlcKey = hk.get_broadcaster_htlc_key().to_public_key();
  const desc = ldk.HTLCDescriptor.constructor_new(ldk.ChannelDerivationParameters.constructor_new(value, Buffer.from(keysId, 'hex'), params), commitTxid, INITIAL_COMMITMENT_NUMBER - 1n, pcp1, 1000, htlc, ldk.Option_ThirtyTwoBytesZ.constructor_none(), new Uint8Array(64));
  const ldkHtlcSig = sigOf(es.sign_holder_htlc_transaction(htlcTx.toBytes(true, false), 0, desc), 'LDK holder HTLC');
  const vaultHtlcSig = await ch.signHolderHtlc(v.ctx(), 'ln', keysId, { tx: htlcTx.toBytes(true, false), input: 0, index: INITIAL_COMMITMENT_NUMBER - 1n, htlc: htlcJs });
  assert.ok(verifyDigest(ldkHtlcSig, dh, ourHtlcKey) && verifyDigest(vaultHtlcSig, dh, ourHtlcKey), 'holder HTLC transaction: same digest, same key');
  await assert.rejects(ch.signHolderHtlc(v.ctx(), 'ln', keysId, { tx: htlcTx.toBytes(true, false), input: 0, index: INITIAL_COMMITMENT_NUMBER, htlc: htlcJs }), denied('lightning_revoked'), 'not of a revoked commitment');
  const elsewhere = Transaction.fromRaw(ldk.UtilMethods.constructor_build_htlc_transaction(randomBytes(32), 1000, counterpartyDelay, htlc, features(), hk.get_broadcaster_delayed_payment_key(), hk.get_revocation_key()), { allowUnknownOutputs: true, disableScriptCheck: true });
  await assert.rejects(ch.signHolderHtlc(v.ctx(), 'ln', keysId, { tx: elsewhere.toBytes(true, false), input: 0, index: INITIAL_COMMITMENT_NUMBER - 1n, htlc: htlcJs }), denied('lightning_commitment'), 'only spending the broadcast commitment');

  // A sweep of this node's to_remote (P2WPKH of its payment point) on the counterparty's commitment, to the wallet.
  const prevTx = randomBytes(32); // display order
  const sweep = spend(prevTx, 0, 0xffffffff, 0, wallet, 99_000n);
  const spo = ldk.StaticPaymentOutputDescriptor.constructor_new(ldk.OutPoint.constructor_new(Uint8Array.from(prevTx).reverse(), 0), ldk.TxOut.constructor_new(100_000n, p2wpkh(ours.get_payment_point())), Buffer.from(keysId, 'hex'), value, params);
  const witness = unwrap(ims.sign_counterparty_payment_input(sweep.toBytes(true, false), 0, spo), ldk.Result_WitnessNoneZ_OK, 'LDK to_remote sweep').res;
  const ldkSweep = secp256k1.Signature.fromBytes(witness.subarray(2, 2 + witness[1]! - 1), 'der').toBytes('compact');
  const ds = digest(sweep, 0, OutScript.encode({ type: 'pkh', hash: p2wpkh(ours.get_payment_point()).subarray(2) }), 100_000n);
  const vaultSweep = await ch.signSweep(v.ctx(), 'ln', keysId, { tx: sweep.toBytes(true, false), input: 0, amount: 100_000n, output: 'to_remote' });
  assert.ok(verifyDigest(ldkSweep, ds, ours.get_payment_point()) && verifyDigest(vaultSweep, ds, ours.get_payment_point()), 'to_remote sweep: same digest, same key');
  await assert.rejects(ch.signSweep(v.ctx(), 'ln', keysId, { tx: spend(prevTx, 0, 0xffffffff, 0, wallet, 1n).toBytes(true, false), input: 0, amount: 100_000n, output: 'to_remote' }), denied('lightning_fee'), 'a sweep burning its input in fees');

  // Malformed input: typed errors, nothing signed.
  await assert.rejects(ch.signJustice(v.ctx(), 'ln', keysId, { tx: justice.toBytes(true, false), input: 3, amount: 700_000n, perCommitmentSecret: theirSecret }), (e: unknown) => isCustosError(e) && e.code === 'bad_request');
  await assert.rejects(ch.signHolder(v.ctx(), 'ln', keysId, spend(randomBytes(32), 0, 0x80000000, 0x20000000).toBytes(true, false)), (e: unknown) => isCustosError(e) && e.code === 'bad_request', 'not the funding output');
  void sha256;
});
