/**
 * PSBT analysis and signing. The PSBTs are built with bitcoinjs-lib, an implementation
 * independent of the @scure/btc-signer we sign with, and every signature we produce is verified
 * by bitcoinjs-lib (`validateSignaturesOfAllInputs`, with @bitcoinerlab/secp256k1's verifiers)
 * before the transaction is finalized and extracted by bitcoinjs-lib.
 *
 * Published vectors (read from test/wallet/vectors/, copied from bitcoin/bips at commit
 * 7fe0b034ec967b52a5a28276419117326df93263):
 * - BIP174 "Test Vectors" (https://github.com/bitcoin/bips/blob/master/bip-0174.mediawiki): the
 *   invalid PSBTs, the valid ones, the "fails signer checks" ones, and the signer step.
 * - BIP341 wallet test vectors, keyPathSpending
 *   (https://github.com/bitcoin/bips/blob/master/bip-0341/wallet-test-vectors.json).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import * as bitcoin from 'bitcoinjs-lib';
import * as ecc from '@bitcoinerlab/secp256k1';
import { ECPairFactory } from 'ecpair';
import { BIP32Factory } from 'bip32';
import { schnorr } from '@noble/curves/secp256k1.js';
import { Transaction as BtcTransaction } from '@scure/btc-signer';
import { taprootTweakPrivKey } from '@scure/btc-signer/utils.js';
import { CustosError } from '../../src/core/errors.js';
import { bytesToHex, hexToBytes } from '../../src/core/bytes.js';
import { deriveChild, importXprv, masterFingerprint, masterFromSeed } from '../../src/wallet/hd.js';
import {
  analyzePsbt,
  decodePsbt,
  deriveFromMaster,
  ownsKeyFromMaster,
  signPsbt,
  type PsbtContext,
} from '../../src/wallet/psbt.js';
import { exportXpub } from '../../src/wallet/hd.js';

bitcoin.initEccLib(ecc);
const ECPair = ECPairFactory(ecc);
const bip32 = BIP32Factory(ecc);
const network = bitcoin.networks.regtest;

const master = masterFromSeed(hexToBytes('000102030405060708090a0b0c0d0e0f'), 'secp256k1');
const fingerprint = masterFingerprint(master);
const fpBytes = Uint8Array.of(fingerprint >>> 24, (fingerprint >>> 16) & 0xff, (fingerprint >>> 8) & 0xff, fingerprint & 0xff);
const ctx: PsbtContext = { network: 'regtest', ownsKey: ownsKeyFromMaster(master) };
const derive = deriveFromMaster(master);

const pubAt = (path: string) => deriveChild(master, path).publicKey;
const xonly = (pub: Uint8Array) => pub.subarray(1, 33);

const verifier = (pubkey: Uint8Array, msghash: Uint8Array, signature: Uint8Array) =>
  pubkey.length === 32 ? ecc.verifySchnorr(msghash, pubkey, signature) : ecc.verify(msghash, pubkey, signature);

function refusesPsbt(fn: () => unknown, pattern?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CustosError, `expected CustosError, got ${String(e)}`);
    assert.equal(e.code, 'invalid_psbt');
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

let fundingCounter = 0;
/** A previous transaction paying `value` to `script` at output 1 (output 0 is unrelated). */
function fundingTx(script: Uint8Array, value: bigint): bitcoin.Transaction {
  const tx = new bitcoin.Transaction();
  tx.version = 2;
  const prev = new Uint8Array(32).fill(++fundingCounter);
  tx.addInput(prev, 0);
  tx.addOutput(bitcoin.payments.p2wpkh({ pubkey: ECPair.makeRandom().publicKey, network }).output!, 5000n);
  tx.addOutput(script, value);
  return tx;
}

type InputKind = 'p2pkh' | 'p2sh-p2wpkh' | 'p2wpkh' | 'p2wsh-multisig' | 'p2tr';

const foreignKey = ECPair.makeRandom();
const FOREIGN_FP = Uint8Array.of(0xde, 0xad, 0xbe, 0xef);

/** Adds an input of our wallet of the given kind, funded with `value`. */
function addOurInput(psbt: bitcoin.Psbt, kind: InputKind, value: bigint, opts: { witnessUtxoOnly?: boolean; lieAmount?: bigint } = {}): void {
  const der = (path: string, pubkey: Uint8Array) => ({ masterFingerprint: fpBytes, path, pubkey });
  switch (kind) {
    case 'p2pkh': {
      const path = "m/44'/1'/0'/0/0";
      const pay = bitcoin.payments.p2pkh({ pubkey: pubAt(path), network });
      const prev = fundingTx(pay.output!, value);
      psbt.addInput({ hash: prev.getId(), index: 1, nonWitnessUtxo: prev.toBuffer(), bip32Derivation: [der(path, pubAt(path))] });
      return;
    }
    case 'p2sh-p2wpkh': {
      const path = "m/49'/1'/0'/0/0";
      const redeem = bitcoin.payments.p2wpkh({ pubkey: pubAt(path), network });
      const pay = bitcoin.payments.p2sh({ redeem, network });
      const prev = fundingTx(pay.output!, value);
      psbt.addInput({
        hash: prev.getId(), index: 1, nonWitnessUtxo: prev.toBuffer(), witnessUtxo: { script: pay.output!, value },
        redeemScript: redeem.output!, bip32Derivation: [der(path, pubAt(path))],
      });
      return;
    }
    case 'p2wpkh': {
      const path = "m/84'/1'/0'/0/0";
      const pay = bitcoin.payments.p2wpkh({ pubkey: pubAt(path), network });
      const prev = fundingTx(pay.output!, value);
      psbt.addInput({
        hash: prev.getId(), index: 1,
        ...(opts.witnessUtxoOnly ? {} : { nonWitnessUtxo: prev.toBuffer() }),
        witnessUtxo: { script: pay.output!, value: opts.lieAmount ?? value },
        bip32Derivation: [der(path, pubAt(path))],
      });
      return;
    }
    case 'p2wsh-multisig': {
      // 2-of-3: two keys of our tree (two accounts) and one cosigner's.
      const a = "m/48'/1'/0'/2'/0/0";
      const b = "m/48'/1'/1'/2'/0/0";
      const redeem = bitcoin.payments.p2ms({ m: 2, pubkeys: [pubAt(a), pubAt(b), foreignKey.publicKey], network });
      const pay = bitcoin.payments.p2wsh({ redeem, network });
      const prev = fundingTx(pay.output!, value);
      psbt.addInput({
        hash: prev.getId(), index: 1, nonWitnessUtxo: prev.toBuffer(), witnessUtxo: { script: pay.output!, value },
        witnessScript: redeem.output!,
        bip32Derivation: [der(a, pubAt(a)), der(b, pubAt(b)), { masterFingerprint: FOREIGN_FP, path: "m/48'/1'/0'/2'/0/0", pubkey: foreignKey.publicKey }],
      });
      return;
    }
    case 'p2tr': {
      const path = "m/86'/1'/0'/0/0";
      const internal = xonly(pubAt(path));
      const pay = bitcoin.payments.p2tr({ internalPubkey: internal, network });
      const prev = fundingTx(pay.output!, value);
      psbt.addInput({
        hash: prev.getId(), index: 1, witnessUtxo: { script: pay.output!, value }, tapInternalKey: internal,
        tapBip32Derivation: [{ masterFingerprint: fpBytes, path, pubkey: internal, leafHashes: [] }],
      });
      return;
    }
  }
}

function addForeignP2wpkhInput(psbt: bitcoin.Psbt, key: ReturnType<typeof ECPair.makeRandom>, value: bigint): void {
  const pay = bitcoin.payments.p2wpkh({ pubkey: key.publicKey, network });
  const prev = fundingTx(pay.output!, value);
  psbt.addInput({
    hash: prev.getId(), index: 1, nonWitnessUtxo: prev.toBuffer(), witnessUtxo: { script: pay.output!, value },
    bip32Derivation: [{ masterFingerprint: FOREIGN_FP, path: "m/84'/1'/0'/0/0", pubkey: key.publicKey }],
  });
}

const CHANGE_PATH = "m/84'/1'/0'/1/0";
const externalKey = ECPair.makeRandom();
const externalScript = bitcoin.payments.p2wpkh({ pubkey: externalKey.publicKey, network }).output!;

function addOutputs(psbt: bitcoin.Psbt, external: bigint, change: bigint): void {
  psbt.addOutput({ script: externalScript, value: external });
  const changePub = pubAt(CHANGE_PATH);
  psbt.addOutput({
    script: bitcoin.payments.p2wpkh({ pubkey: changePub, network }).output!,
    value: change,
    bip32Derivation: [{ masterFingerprint: fpBytes, path: CHANGE_PATH, pubkey: changePub }],
  });
}

function onePsbt(kind: InputKind): bitcoin.Psbt {
  const psbt = new bitcoin.Psbt({ network });
  addOurInput(psbt, kind, 100_000n);
  addOutputs(psbt, 60_000n, 39_000n);
  return psbt;
}

function verifyIndependently(base64: string, extraSigners: Array<(p: bitcoin.Psbt) => void> = []): bitcoin.Transaction {
  const p = bitcoin.Psbt.fromBase64(base64, { network });
  for (const s of extraSigners) s(p);
  assert.equal(p.validateSignaturesOfAllInputs(verifier), true, 'bitcoinjs-lib verifies every signature');
  p.finalizeAllInputs();
  return p.extractTransaction();
}

const SCRIPT_TYPE: Record<InputKind, string> = {
  p2pkh: 'p2pkh', 'p2sh-p2wpkh': 'p2sh-p2wpkh', p2wpkh: 'p2wpkh', 'p2wsh-multisig': 'p2wsh-multisig', p2tr: 'p2tr',
};

for (const kind of ['p2pkh', 'p2sh-p2wpkh', 'p2wpkh', 'p2wsh-multisig', 'p2tr'] as const) {
  test(`signs a ${kind} input; bitcoinjs-lib verifies, finalizes and extracts it`, () => {
    const psbt = onePsbt(kind);
    const a = analyzePsbt(psbt.toBase64(), ctx);
    assert.equal(a.inputs[0]!.scriptType, SCRIPT_TYPE[kind]);
    assert.equal(a.inputs[0]!.ours, true);
    assert.equal(a.inputs[0]!.amount, 100_000n);
    assert.equal(a.inputs[0]!.amountSource, kind === 'p2tr' ? 'witness_utxo' : 'non_witness_utxo');
    assert.equal(a.inputs[0]!.ourKeys.length, kind === 'p2wsh-multisig' ? 2 : 1);
    assert.equal(a.fee, 1_000n);
    assert.equal(a.outputs[1]!.isChange, true);
    assert.equal(a.outputs[0]!.isChange, false);
    assert.equal(a.outputs[0]!.address, bitcoin.address.fromOutputScript(externalScript, network));
    assert.equal(a.sentExternally, 60_000n);
    assert.equal(a.changeTotal, 39_000n);
    assert.equal(a.ourInputTotal, 100_000n);

    const signed = signPsbt(psbt.toBuffer(), ctx, derive);
    assert.deepEqual(signed.signedInputs, [0]);
    const tx = verifyIndependently(signed.base64);
    assert.equal(tx.ins.length, 1);
    assert.equal(tx.outs.length, 2);
    if (kind === 'p2tr') {
      const p = bitcoin.Psbt.fromBase64(signed.base64, { network });
      assert.equal(p.data.inputs[0]!.tapKeySig!.length, 64, 'SIGHASH_DEFAULT: a 64-byte signature');
    } else {
      const p = bitcoin.Psbt.fromBase64(signed.base64, { network });
      for (const ps of p.data.inputs[0]!.partialSig!) assert.equal(ps.signature[ps.signature.length - 1], 0x01, 'SIGHASH_ALL');
    }
  });
}

test('signs only our inputs; a foreign input is left for its owner, who completes the transaction', () => {
  const psbt = new bitcoin.Psbt({ network });
  addOurInput(psbt, 'p2wpkh', 100_000n);
  const other = ECPair.makeRandom();
  addForeignP2wpkhInput(psbt, other, 50_000n);
  addOurInput(psbt, 'p2tr', 20_000n);
  addOutputs(psbt, 130_000n, 38_000n);
  const signed = signPsbt(psbt.toBase64(), ctx, derive);
  assert.deepEqual(signed.signedInputs, [0, 2]);
  assert.deepEqual(signed.analysis.inputs.map((i) => i.ours), [true, false, true]);
  assert.equal(signed.analysis.fee, 2_000n);
  assert.equal(signed.analysis.ourInputTotal, 120_000n);
  const p = bitcoin.Psbt.fromBase64(signed.base64, { network });
  assert.equal(p.data.inputs[1]!.partialSig, undefined, 'the foreign input carries no signature of ours');
  verifyIndependently(signed.base64, [(q) => q.signInput(1, other)]);
});

test('a foreign input that lists our key in its derivation fields is not ours, and is not signed', () => {
  const psbt = new bitcoin.Psbt({ network });
  addOurInput(psbt, 'p2wpkh', 100_000n);
  const other = ECPair.makeRandom();
  const pay = bitcoin.payments.p2wpkh({ pubkey: other.publicKey, network });
  const prev = fundingTx(pay.output!, 10_000n);
  // Claims our (real, derivable) key, but the script pays to another key.
  const path = "m/84'/1'/0'/0/7";
  psbt.addInput({
    hash: prev.getId(), index: 1, nonWitnessUtxo: prev.toBuffer(), witnessUtxo: { script: pay.output!, value: 10_000n },
    bip32Derivation: [{ masterFingerprint: fpBytes, path, pubkey: pubAt(path) }],
  });
  addOutputs(psbt, 60_000n, 49_000n);
  const signed = signPsbt(psbt.toBase64(), ctx, derive);
  assert.deepEqual(signed.signedInputs, [0]);
  assert.equal(signed.analysis.inputs[1]!.ours, false);
});

test('change is only what derives from our tree on a change path and pays to that key', () => {
  const changePub = pubAt(CHANGE_PATH);
  const receivePath = "m/84'/1'/0'/0/3";
  const psbt = new bitcoin.Psbt({ network });
  addOurInput(psbt, 'p2wpkh', 100_000n);
  // 0: a lying derivation: our fingerprint and a change path, but a key that is not at that path.
  const liar = ECPair.makeRandom().publicKey;
  psbt.addOutput({
    script: bitcoin.payments.p2wpkh({ pubkey: liar, network }).output!, value: 10_000n,
    bip32Derivation: [{ masterFingerprint: fpBytes, path: CHANGE_PATH, pubkey: liar }],
  });
  // 1: our real change key, but the script pays elsewhere.
  psbt.addOutput({ script: externalScript, value: 10_000n, bip32Derivation: [{ masterFingerprint: fpBytes, path: CHANGE_PATH, pubkey: changePub }] });
  // 2: ours, but on the receive chain: a payment to ourselves, not change.
  psbt.addOutput({
    script: bitcoin.payments.p2wpkh({ pubkey: pubAt(receivePath), network }).output!, value: 10_000n,
    bip32Derivation: [{ masterFingerprint: fpBytes, path: receivePath, pubkey: pubAt(receivePath) }],
  });
  // 3: real change in p2sh-p2wpkh form; 4: real taproot change.
  const nestedChange = "m/49'/1'/0'/1/2";
  psbt.addOutput({
    script: bitcoin.payments.p2sh({ redeem: bitcoin.payments.p2wpkh({ pubkey: pubAt(nestedChange), network }), network }).output!, value: 10_000n,
    bip32Derivation: [{ masterFingerprint: fpBytes, path: nestedChange, pubkey: pubAt(nestedChange) }],
  });
  const trChange = "m/86'/1'/0'/1/0";
  const trInternal = xonly(pubAt(trChange));
  psbt.addOutput({
    script: bitcoin.payments.p2tr({ internalPubkey: trInternal, network }).output!, value: 10_000n, tapInternalKey: trInternal,
    tapBip32Derivation: [{ masterFingerprint: fpBytes, path: trChange, pubkey: trInternal, leafHashes: [] }],
  });
  const a = analyzePsbt(psbt.toBuffer(), ctx);
  assert.deepEqual(a.outputs.map((o) => o.isChange), [false, false, false, true, true]);
  assert.equal(a.changeTotal, 20_000n);
  assert.equal(a.sentExternally, 30_000n);
  assert.equal(a.fee, 50_000n);
  assert.deepEqual(a.outputs[3]!.changeOrigin, { fingerprint, path: [49 + 0x8000_0000, 1 + 0x8000_0000, 0x8000_0000, 1, 2] });
});

test('watched account xpubs give the same ownership as the master', () => {
  const psbt = onePsbt('p2wpkh');
  const watched: PsbtContext = {
    network: 'regtest',
    wallets: [{ masterFingerprint: fingerprint, xpubs: [{ xpub: exportXpub(master, "m/84'/1'/0'", 'testnet'), path: "m/84'/1'/0'" }] }],
  };
  const a = analyzePsbt(psbt.toBase64(), watched);
  assert.equal(a.inputs[0]!.ours, true);
  assert.equal(a.outputs[1]!.isChange, true);
  // An xpub of another account proves nothing about this one.
  const other: PsbtContext = {
    network: 'regtest',
    wallets: [{ masterFingerprint: fingerprint, xpubs: [{ xpub: exportXpub(master, "m/84'/1'/1'", 'testnet'), path: "m/84'/1'/1'" }] }],
  };
  assert.equal(analyzePsbt(psbt.toBase64(), other).inputs[0]!.ours, false);
});

/** Finds `needle` in `hay` (both bytes); -1 when absent. */
function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(hay).indexOf(Buffer.from(needle));
}

test('refuses a witness UTXO whose amount disagrees with the non-witness UTXO (CVE-2020-14199)', () => {
  const psbt = onePsbt('p2wpkh');
  const bytes = psbt.toBuffer();
  const witnessUtxo = psbt.data.inputs[0]!.witnessUtxo!;
  const le = new Uint8Array(8);
  new DataView(le.buffer).setBigUint64(0, witnessUtxo.value, true);
  const serialized = Uint8Array.of(...le, witnessUtxo.script.length, ...witnessUtxo.script);
  const at = indexOf(bytes, serialized);
  assert.ok(at > 0);
  const lying = Uint8Array.from(bytes);
  new DataView(lying.buffer).setBigUint64(at, 1_000n, true); // "this input is only 1000 sat"
  refusesPsbt(() => analyzePsbt(lying, ctx), /witness UTXO disagrees with its non-witness UTXO.*CVE-2020-14199/);
  refusesPsbt(() => signPsbt(lying, ctx, derive), /CVE-2020-14199/);
});

test('refuses a non-witness UTXO that is not the transaction the prevout names', () => {
  const psbt = onePsbt('p2pkh');
  const bytes = psbt.toBuffer();
  const prev = psbt.data.inputs[0]!.nonWitnessUtxo!;
  const at = indexOf(bytes, prev);
  assert.ok(at > 0);
  const forged = Uint8Array.from(bytes);
  forged[at + prev.length - 1]! ^= 0x01; // the previous transaction's locktime: another txid
  refusesPsbt(() => analyzePsbt(forged, ctx), /not the transaction its prevout names/);
});

test('our segwit v0 input without its previous transaction is refused unless the caller opts out', () => {
  const psbt = new bitcoin.Psbt({ network });
  addOurInput(psbt, 'p2wpkh', 100_000n, { witnessUtxoOnly: true });
  addOutputs(psbt, 60_000n, 39_000n);
  refusesPsbt(() => analyzePsbt(psbt.toBase64(), ctx), /no non-witness UTXO.*CVE-2020-14199/);
  const relaxed = { ...ctx, requireNonWitnessUtxo: false };
  const a = analyzePsbt(psbt.toBase64(), relaxed);
  assert.equal(a.inputs[0]!.amountSource, 'witness_utxo');
  verifyIndependently(signPsbt(psbt.toBase64(), relaxed, derive).base64);
});

test('refuses a negative fee, an input of unknown amount and an unsupported input type', () => {
  const over = new bitcoin.Psbt({ network });
  addOurInput(over, 'p2wpkh', 100_000n);
  addOutputs(over, 90_000n, 20_000n);
  refusesPsbt(() => analyzePsbt(over.toBase64(), ctx), /fee would be negative/);

  const unknown = new bitcoin.Psbt({ network });
  unknown.addInput({ hash: '11'.repeat(32), index: 0 });
  addOutputs(unknown, 1_000n, 1_000n);
  refusesPsbt(() => analyzePsbt(unknown.toBase64(), ctx), /amount is unknown/);

  // Bare pay-to-pubkey: a script type Custos does not sign.
  const p2pk = bitcoin.payments.p2pk({ pubkey: pubAt("m/0'/0"), network });
  const prev = fundingTx(p2pk.output!, 50_000n);
  const bare = new bitcoin.Psbt({ network });
  bare.addInput({ hash: prev.getId(), index: 1, nonWitnessUtxo: prev.toBuffer() });
  addOutputs(bare, 10_000n, 10_000n);
  refusesPsbt(() => analyzePsbt(bare.toBase64(), ctx));
});

test('refuses to sign our input under a sighash other than ALL (DEFAULT for taproot)', () => {
  const psbt = onePsbt('p2wpkh');
  psbt.updateInput(0, { sighashType: bitcoin.Transaction.SIGHASH_NONE });
  refusesPsbt(() => signPsbt(psbt.toBase64(), ctx, derive), /sighash type 2/);
  const anyone = onePsbt('p2tr');
  anyone.updateInput(0, { sighashType: bitcoin.Transaction.SIGHASH_ALL | bitcoin.Transaction.SIGHASH_ANYONECANPAY });
  refusesPsbt(() => signPsbt(anyone.toBase64(), ctx, derive), /sighash type 129/);
});

test('enforces size and count limits before the full parse, for bytes and base64', () => {
  const psbt = onePsbt('p2wpkh');
  const bytes = psbt.toBuffer();
  refusesPsbt(() => analyzePsbt(bytes, { ...ctx, limits: { maxBytes: bytes.length - 1 } }), /at most/);
  refusesPsbt(() => analyzePsbt(psbt.toBase64(), { ...ctx, limits: { maxBytes: 100 } }), /larger than 100 bytes/);
  refusesPsbt(() => analyzePsbt(new Uint8Array((1 << 20) + 1), ctx), /at most 1048576/);
  const many = new bitcoin.Psbt({ network });
  for (let i = 0; i < 3; i++) addOurInput(many, 'p2wpkh', 10_000n);
  addOutputs(many, 1_000n, 1_000n);
  refusesPsbt(() => analyzePsbt(many.toBuffer(), { ...ctx, limits: { maxInputs: 2 } }), /3 inputs; at most 2/);
  refusesPsbt(() => analyzePsbt(many.toBuffer(), { ...ctx, limits: { maxOutputs: 1 } }), /2 outputs; at most 1/);
  refusesPsbt(() => analyzePsbt('not base64!', ctx), /base64/);
  // A global map declaring 2^32 inputs in a few bytes is refused by the count, not by allocating.
  const huge = hexToBytes('70736274ff01000902000000feffffffff00');
  refusesPsbt(() => analyzePsbt(huge, ctx));
});

// ---------------------------------------------------------------------------------------------
// Published vectors

interface Bip174Case { case: string; hex: string }
const BIP174 = JSON.parse(readFileSync(new URL('./vectors/bip174.json', import.meta.url), 'utf8')) as {
  invalid: Bip174Case[];
  valid: Bip174Case[];
  failsSignerChecks: Bip174Case[];
  signer: { masterTprv: string; updatedWithSighashAll: string; signers: Array<{ paths: string[]; expected: string }> };
};

test('BIP174: every invalid PSBT is refused with invalid_psbt', () => {
  assert.equal(BIP174.invalid.length, 20);
  for (const c of BIP174.invalid) refusesPsbt(() => decodePsbt(hexToBytes(c.hex)));
});

test('BIP174: the valid PSBTs parse (except the two with no inputs, which a signer refuses)', () => {
  for (const c of BIP174.valid) {
    if (/0 inputs/.test(c.case)) {
      refusesPsbt(() => decodePsbt(hexToBytes(c.hex)), /no inputs/);
      continue;
    }
    const tx = decodePsbt(hexToBytes(c.hex));
    assert.ok(tx.inputsLength > 0, c.case);
    // Base64 gives the same.
    assert.equal(decodePsbt(Buffer.from(c.hex, 'hex').toString('base64')).id, tx.id);
  }
});

test('BIP174: the PSBTs that fail signer checks are refused by the analysis', () => {
  for (const c of BIP174.failsSignerChecks) refusesPsbt(() => analyzePsbt(hexToBytes(c.hex), { network: 'testnet' }), undefined);
});

test('BIP174 signer step: our signatures equal the published ones (RFC 6979 nonces, no low-R grinding)', () => {
  const root = importXprv(BIP174.signer.masterTprv);
  assert.equal(root.network, 'testnet');
  const signerCtx: PsbtContext = {
    network: 'testnet',
    ownsKey: ownsKeyFromMaster(root.master),
    // The vector's P2SH-P2WSH input carries only a witness UTXO.
    requireNonWitnessUtxo: false,
  };
  const bip32Root = bip32.fromBase58(BIP174.signer.masterTprv, bitcoin.networks.testnet);
  for (const signer of BIP174.signer.signers) {
    // This signer holds only two keys: ownership is limited to them.
    const allowed = signer.paths.map((p) => bytesToHex(bip32Root.derivePath(p).publicKey));
    const ownsKey = signerCtx.ownsKey!;
    const ctxOne: PsbtContext = { ...signerCtx, ownsKey: (pub, origin) => allowed.includes(bytesToHex(pub)) && ownsKey(pub, origin) };
    const out = signPsbt(hexToBytes(BIP174.signer.updatedWithSighashAll), ctxOne, deriveFromMaster(root.master));
    assert.deepEqual(out.signedInputs, [0, 1]);
    const ours = BtcTransaction.fromPSBT(out.psbt);
    const expected = BtcTransaction.fromPSBT(hexToBytes(signer.expected));
    for (let i = 0; i < 2; i++) {
      const sigs = (t: BtcTransaction) => (t.getInput(i).partialSig ?? []).map(([k, s]) => `${bytesToHex(k)}:${bytesToHex(s)}`).sort();
      assert.deepEqual(sigs(ours), sigs(expected), `input ${i}`);
    }
  }
});

interface KeyPathCase {
  given: { rawUnsignedTx: string; utxosSpent: Array<{ scriptPubKey: string; amountSats: number }> };
  inputSpending: Array<{
    given: { txinIndex: number; internalPrivkey: string; merkleRoot: string | null; hashType: number };
    intermediary: { internalPubkey: string; tweak: string; tweakedPrivkey: string; sigHash: string };
    expected: { witness: string[] };
  }>;
}
const BIP341 = JSON.parse(readFileSync(new URL('./vectors/bip341-keypath.json', import.meta.url), 'utf8')) as { keyPathSpending: KeyPathCase[] };

test('BIP341 key path vectors: the sighash, tweaked key and signature of the btc-signer path we sign with', () => {
  let checked = 0;
  for (const v of BIP341.keyPathSpending) {
    const tx = BtcTransaction.fromRaw(hexToBytes(v.given.rawUnsignedTx), { allowUnknownOutputs: true, allowUnknownInputs: true, disableScriptCheck: true });
    const scripts = v.given.utxosSpent.map((u) => hexToBytes(u.scriptPubKey));
    const amounts = v.given.utxosSpent.map((u) => BigInt(u.amountSats));
    for (const s of v.inputSpending) {
      const sigHash = tx.preimageWitnessV1(s.given.txinIndex, scripts, s.given.hashType, amounts);
      assert.equal(bytesToHex(sigHash), s.intermediary.sigHash, `input ${s.given.txinIndex} sighash`);
      const merkle = s.given.merkleRoot ? hexToBytes(s.given.merkleRoot) : new Uint8Array(0);
      const tweaked = taprootTweakPrivKey(hexToBytes(s.given.internalPrivkey), merkle);
      assert.equal(bytesToHex(tweaked), s.intermediary.tweakedPrivkey, `input ${s.given.txinIndex} tweaked key`);
      // The published signatures use all-zero auxiliary randomness.
      const sig = schnorr.sign(sigHash, tweaked, new Uint8Array(32));
      const withType = s.given.hashType === 0 ? sig : Uint8Array.of(...sig, s.given.hashType);
      assert.equal(bytesToHex(withType), s.expected.witness[0], `input ${s.given.txinIndex} signature`);
      checked++;
    }
  }
  assert.equal(checked, 7);
});

// ---------------------------------------------------------------------------------------------
// Robustness

test('mutated and truncated PSBTs give only invalid_psbt, never another error, never a hang (property)', () => {
  const psbt = new bitcoin.Psbt({ network });
  addOurInput(psbt, 'p2wpkh', 100_000n);
  addOurInput(psbt, 'p2tr', 50_000n);
  addOurInput(psbt, 'p2wsh-multisig', 50_000n);
  addOutputs(psbt, 60_000n, 130_000n);
  const base = psbt.toBuffer();
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(base.length - 1), value: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat(base.length - 1), value: fc.constant(0) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(base.length - 1), value: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(base.length - 1), value: fc.constant(0) }),
  );
  fc.assert(
    fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => {
      let b = Uint8Array.from(base);
      for (const m of ms) {
        const at = Math.min(m.at, b.length - 1);
        if (m.kind === 'flip') b[at] = m.value;
        else if (m.kind === 'cut') b = b.subarray(0, at);
        else if (m.kind === 'insert') b = Uint8Array.of(...b.subarray(0, at), m.value, ...b.subarray(at));
        else b = Uint8Array.of(...b.subarray(0, at), ...b.subarray(at + 1));
        if (b.length === 0) break;
      }
      const started = performance.now();
      try {
        signPsbt(b, ctx, derive);
      } catch (e) {
        assert.ok(e instanceof CustosError && e.code === 'invalid_psbt', `unexpected ${e instanceof Error ? e.stack : String(e)}`);
      }
      assert.ok(performance.now() - started < 2_000, 'each PSBT is handled quickly');
    }),
    { numRuns: 400 },
  );
  // And every truncation of the valid PSBT.
  for (let i = 0; i < base.length; i++) refusesPsbt(() => analyzePsbt(base.subarray(0, i), ctx));
});

test('random bytes after the PSBT magic give only invalid_psbt (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (tail) => {
      try {
        analyzePsbt(Uint8Array.of(0x70, 0x73, 0x62, 0x74, 0xff, ...tail), ctx);
      } catch (e) {
        assert.ok(e instanceof CustosError && e.code === 'invalid_psbt', String(e));
      }
    }),
    { numRuns: 500 },
  );
});
