/**
 * The policy engine on the vault's request path, with a real vault on a SQLite file: PSBTs
 * signed with an HD key (built and verified with bitcoinjs-lib, independent of the signer),
 * amount, destination, velocity and approval rules, budgets that survive a restart, a rate
 * limit on raw signing, and `testPolicy` explaining a decision.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as bitcoin from 'bitcoinjs-lib';
import * as ecc from '@bitcoinerlab/secp256k1';
import { ECPairFactory } from 'ecpair';
import { makeVault, PASS, ADMIN } from '../helpers/tmpvault.js';
import { openVault } from '../../src/vault/open.js';
import { deriveChild, masterFingerprint, masterFromSeed, seedFromMnemonic } from '../../src/wallet/hd.js';
import { isCustosError } from '../../src/core/errors.js';
import type { Principal } from '../../src/core/types.js';

bitcoin.initEccLib(ecc);
const ECPair = ECPairFactory(ecc);
const network = bitcoin.networks.regtest;
const MNEMONIC = 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about';
const master = masterFromSeed(seedFromMnemonic(MNEMONIC), 'secp256k1');
const fp = masterFingerprint(master);
const fpBytes = Uint8Array.of(fp >>> 24, (fp >>> 16) & 0xff, (fp >>> 8) & 0xff, fp & 0xff);
const pubAt = (path: string) => deriveChild(master, path).publicKey;
const EXTERNAL = bitcoin.payments.p2wpkh({ pubkey: ECPair.makeRandom().publicKey, network });
const BLOCKED = bitcoin.payments.p2wpkh({ pubkey: ECPair.makeRandom().publicKey, network });
const code = (c: string) => (e: unknown) => isCustosError(e) && e.fullCode === c;
const who = (id: string): Principal => ({ id, kind: 'token', role: 'approver', scope: { operations: ['approve'], keys: [], tags: [] } });
let counter = 0;

/** A P2WPKH spend of 1,000,000 sats of ours: `pay` to `to`, the rest minus 1,000 fee back to our change path. */
function spend(pay: bigint, to = EXTERNAL.output!): Uint8Array {
  const inPath = "m/84'/1'/0'/0/3";
  const ours = bitcoin.payments.p2wpkh({ pubkey: pubAt(inPath), network });
  const prev = new bitcoin.Transaction();
  prev.version = 2;
  prev.addInput(new Uint8Array(32).fill(++counter), 0);
  prev.addOutput(ours.output!, 1_000_000n);
  const psbt = new bitcoin.Psbt({ network });
  psbt.addInput({ hash: prev.getId(), index: 0, nonWitnessUtxo: prev.toBuffer(), witnessUtxo: { script: ours.output!, value: 1_000_000n }, bip32Derivation: [{ masterFingerprint: fpBytes, path: inPath, pubkey: pubAt(inPath) }] });
  psbt.addOutput({ script: to, value: pay });
  const changePath = "m/84'/1'/0'/1/0";
  psbt.addOutput({ script: bitcoin.payments.p2wpkh({ pubkey: pubAt(changePath), network }).output!, value: 1_000_000n - pay - 1_000n, bip32Derivation: [{ masterFingerprint: fpBytes, path: changePath, pubkey: pubAt(changePath) }] });
  return psbt.toBuffer();
}

const POLICY = (blocked: string) => `
id = "hot-wallet"
[applies_to]
tags = ["hot"]
[[rules]]
type = "amount_limit"
limit = 150_000
[[rules]]
type = "destinations"
deny = ["${blocked}"]
[[rules]]
id = "daily"
type = "velocity"
limit = 100_000
window = "24h"
buckets = 24
[[rules]]
type = "approval"
approvers = ["token:alice", "token:bob", "token:carol"]
required = 2
when = { amount_above = 50_000 }
`;

test('PSBTs pass amount, destination, velocity and 2-of-3 approval rules; budgets survive a restart', async () => {
  const v = await makeVault({ approvalTimeoutMs: 10_000 });
  try {
    const ctx = () => ({ principal: ADMIN, requestId: randomUUID() });
    await v.vault.uploadPolicy(ctx(), POLICY(BLOCKED.address!));
    const key = await v.vault.createHdKey(ctx(), { label: 'hot-1', curve: 'secp256k1', mnemonic: MNEMONIC, allowedPaths: ["m/84'/1'"], tags: ['hot', 'btc'] });
    assert.equal(key.attributes.hd, 'bip32');
    assert.equal(key.attributes.tags, 'hot,btc');

    // 30,000 out: allowed, signed; bitcoinjs-lib verifies and finalises it.
    const ok = await v.vault.signPsbt(ctx(), { key: 'hot-1', psbt: spend(30_000n), network: 'regtest' });
    assert.deepEqual(ok.signedInputs, [0]);
    assert.equal(ok.analysis.fee, 1_000n);
    assert.equal(ok.analysis.sentExternally, 30_000n);
    assert.deepEqual(ok.analysis.outputs.map((o) => o.isChange), [false, true]);
    const p = bitcoin.Psbt.fromBuffer(Buffer.from(ok.psbt), { network });
    assert.ok(p.validateSignaturesOfAllInputs((pub, h, sig) => ecc.verify(h, pub, sig)));
    p.finalizeAllInputs();
    assert.ok(p.extractTransaction().getId());

    await assert.rejects(v.vault.signPsbt(ctx(), { key: 'hot-1', psbt: spend(200_000n), network: 'regtest' }), code('policy_denied:amount_limit'));
    await assert.rejects(v.vault.signPsbt(ctx(), { key: 'hot-1', psbt: spend(1_000n, BLOCKED.output!), network: 'regtest' }), code('policy_denied:destinations'));

    // 60,000 needs two of alice, bob, carol; dave is not an approver; alice cannot count twice.
    const pending = v.vault.signPsbt(ctx(), { key: 'hot-1', psbt: spend(60_000n), network: 'regtest' });
    let req;
    for (let i = 0; i < 100 && !(req = v.vault.approvals.pending()[0]); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(req, 'the request waits for approval');
    assert.equal(req.summary.sent_externally_sats, '60000');
    assert.deepEqual(req.approvers, ['token:alice', 'token:bob', 'token:carol']);
    await assert.rejects(v.vault.decideApproval({ principal: who('token:dave'), requestId: 'd' }, req.id, true), code('forbidden'));
    await v.vault.decideApproval({ principal: who('token:alice'), requestId: 'a' }, req.id, true);
    await assert.rejects(v.vault.decideApproval({ principal: who('token:alice'), requestId: 'a2' }, req.id, true), code('forbidden'));
    await v.vault.decideApproval({ principal: who('token:bob'), requestId: 'b' }, req.id, true);
    assert.deepEqual((await pending).signedInputs, [0]);

    // 90,000 of the 100,000 daily budget is spent: 20,000 more is refused, 5,000 is not.
    await assert.rejects(v.vault.signPsbt(ctx(), { key: 'hot-1', psbt: spend(20_000n), network: 'regtest' }), code('policy_denied:velocity'));
    await v.close();
    const again = await openVault({ dataDir: v.dataDir, passphrase: PASS });
    try {
      await assert.rejects(again.vault.signPsbt(ctx(), { key: 'hot-1', psbt: spend(20_000n), network: 'regtest' }), code('policy_denied:velocity'), 'the budget survives a restart');
      await again.vault.signPsbt(ctx(), { key: 'hot-1', psbt: spend(5_000n), network: 'regtest' });
      // 95,000 spent: 6,000 more would pass 100,000.
      await assert.rejects(again.vault.signPsbt(ctx(), { key: 'hot-1', psbt: spend(6_000n), network: 'regtest' }), code('policy_denied:velocity'));
      // Paths outside the key's allowed subtree are refused before anything is signed.
      await assert.rejects(again.vault.sign({ ...ctx(), key: 'hot-1', path: "m/44'/0'/0'/0/0", payload: { kind: 'message', bytes: new Uint8Array([1]) }, options: {}, context: {} }), code('policy_denied:path'));
      // The PSBT rules cannot judge raw bytes, so they refuse them (fail closed) until the
      // document says other_payloads = "allow".
      await assert.rejects(again.vault.sign({ ...ctx(), key: 'hot-1', path: "m/84'/1'/0'/0/9", payload: { kind: 'message', bytes: new Uint8Array([1]) }, options: { encoding: 'der' }, context: {} }), code('policy_denied:amount_limit'));
      await again.vault.uploadPolicy(ctx(), POLICY(BLOCKED.address!).replace('[applies_to]', 'other_payloads = "allow"\n[applies_to]'));
      const raw = await again.vault.sign({ ...ctx(), key: 'hot-1', path: "m/84'/1'/0'/0/9", payload: { kind: 'message', bytes: new Uint8Array([1]) }, options: { encoding: 'der' }, context: {} });
      assert.ok(ecc.verify(bitcoin.crypto.sha256(Buffer.from([1])), pubAt("m/84'/1'/0'/0/9"), bitcoin.script.signature.decode(Buffer.concat([Buffer.from(raw.signature), Buffer.from([1])])).signature));
      await assert.rejects(again.vault.sign({ ...ctx(), key: 'hot-1', payload: { kind: 'message', bytes: new Uint8Array([1]) }, options: {}, context: {} }), code('bad_request'), 'an HD master never signs without a path');
      const tail = await again.vault.auditTail(200);
      assert.ok(tail.some((e) => e.operation === 'sign_psbt' && e.outcome === 'ok'));
      assert.ok(tail.some((e) => e.outcome === 'denied' && e.reason === 'policy_denied:velocity'));
      assert.ok(tail.some((e) => e.operation === 'policy_upload'));
    } finally {
      await again.close();
    }
  } finally {
    await v.dispose();
  }
});

test('a rate limit on raw signing counts only allowed requests, and testPolicy explains each rule', async () => {
  const v = await makeVault();
  try {
    const ctx = () => ({ principal: ADMIN, requestId: randomUUID() });
    await v.vault.createKey(ctx(), { label: 'api', algorithm: 'ed25519', exportable: false });
    await v.vault.uploadPolicy(ctx(), JSON.stringify({ id: 'api-limits', applies_to: { keys: ['api'] }, rules: [{ id: 'burst', type: 'rate_limit', limit: 3, window: '1h', per: 'key' }, { type: 'payload_format', max_length: 16 }] }), 'json');
    const sign = (n: number) => v.vault.sign({ ...ctx(), key: 'api', payload: { kind: 'message', bytes: new Uint8Array(n) }, options: {}, context: { protocol: 'http' } });
    await assert.rejects(sign(17), code('policy_denied:payload_format'));
    await Promise.all([sign(1), sign(2), sign(3)]);
    await assert.rejects(sign(4), code('policy_denied:rate_limit'));
    const t = await v.vault.testPolicy(ctx(), 'api', 'sign', { payloadType: 'raw', facts: {}, payload: new Uint8Array(4) });
    assert.equal(t.evaluation.decision.kind, 'deny');
    assert.match(t.explanation, /burst/);
    assert.match(t.explanation, /payload_format/);
    await assert.rejects(v.vault.uploadPolicy(ctx(), 'id = "x"\n[[rules]]\ntype = "velocity"\nlimit = -1\n'), code('invalid_policy'));
  } finally {
    await v.dispose();
  }
});

test('policy documents reach consensus signing, and a second process sees an upload at once', async () => {
  const v = await makeVault();
  const other = await openVault({ dataDir: v.dataDir, passphrase: PASS });
  try {
    const ctx = () => ({ principal: ADMIN, requestId: randomUUID() });
    await v.vault.createKey(ctx(), { label: 'val', algorithm: 'ed25519', exportable: false, purpose: 'consensus' });
    const validator: Principal = { id: 'privval:hub', kind: 'privval' };
    let h = 1n;
    const vote = (principal: Principal) =>
      other.vault.signConsensus({
        requestId: randomUUID(),
        principal,
        key: 'val',
        chainId: 'hub-1',
        position: { height: h++, round: 0, step: 2 },
        signBytes: new Uint8Array([Number(h % 256n)]),
        onlyTimestampDiffers: () => false,
        context: { protocol: 'privval' },
      });
    await vote(validator);
    // Uploaded through the first process; enforced by the second without a restart.
    await v.vault.uploadPolicy(ctx(), `id = "validators"\n[applies_to]\nkeys = ["val"]\n[[rules]]\ntype = "principals"\nallow = ["privval:hub"]\n[[rules]]\nid = "votes"\ntype = "rate_limit"\nlimit = 3\nwindow = "1h"\n`);
    await assert.rejects(vote({ id: 'privval:rogue', kind: 'privval' }), code('policy_denied:principals'));
    await vote(validator);
    await vote(validator);
    await vote(validator);
    await assert.rejects(vote(validator), code('policy_denied:rate_limit'));
    // Retired through the first: the second, which refused on the documents it had loaded,
    // signs at once (a refusal on stale documents is never made).
    await v.vault.retirePolicy(ctx(), 'validators');
    await vote({ id: 'privval:rogue', kind: 'privval' });
    // And uploaded again through the second, retired there: the first sees it too.
    await other.vault.uploadPolicy(ctx(), `id = "validators"\n[applies_to]\nkeys = ["val"]\n[[rules]]\ntype = "principals"\nallow = ["privval:hub"]\n`);
    await other.vault.retirePolicy(ctx(), 'validators');
    const t = await v.vault.testPolicy(ctx(), 'val', 'sign', { payloadType: 'consensus', facts: {} });
    assert.equal(t.evaluation.decision.kind, 'allow');
  } finally {
    await other.close();
    await v.dispose();
  }
});

test('a paths rule gives each service its own subtree of one seed; SLIP-10 ed25519 children sign and verify', async () => {
  const v = await makeVault();
  try {
    const ctx = (id = 'token:admin') => ({ principal: id === 'token:admin' ? ADMIN : ({ id, kind: 'token', role: 'signer', scope: { operations: ['read', 'sign', 'verify'], keys: [], tags: [] } } as Principal), requestId: randomUUID() });
    await v.vault.createHdKey(ctx(), { label: 'shops', curve: 'secp256k1', mnemonic: MNEMONIC });
    await v.vault.uploadPolicy(ctx(), `id = "subtrees"\n[applies_to]\nkeys = ["shops"]\n[[rules]]\ntype = "paths"\nallow = ["m/84'/0'/1'"]\nprincipals = ["token:shop-1"]\n[[rules]]\ntype = "paths"\nallow = ["m/84'/0'/2'"]\nprincipals = ["token:shop-2"]\n`);
    const sign = (who: string, path: string) => v.vault.sign({ ...ctx(who), key: 'shops', path, payload: { kind: 'message', bytes: new Uint8Array([7]) }, options: {}, context: {} });
    await sign('token:shop-1', "m/84'/0'/1'/0/5");
    await sign('token:shop-2', "m/84'/0'/2'/0/5");
    await assert.rejects(sign('token:shop-1', "m/84'/0'/2'/0/5"), code('policy_denied:paths'));
    await assert.rejects(v.vault.uploadPolicy(ctx(), `id = "bad"\n[[rules]]\ntype = "paths"\nallow = ["m/x"]\n`), code('invalid_policy'));

    const ed = await v.vault.createHdKey(ctx(), { label: 'ed-tree', curve: 'ed25519' });
    assert.equal(ed.attributes.hd, 'slip10');
    const path = "m/44'/1237'/0'/0'/3'";
    const { publicKey } = await v.vault.hdPublicKey(ctx(), 'ed-tree', path);
    const msg = new TextEncoder().encode('slip-10');
    const sig = await v.vault.sign({ ...ctx(), key: 'ed-tree', path, payload: { kind: 'message', bytes: msg }, options: {}, context: {} });
    const { verifySignature } = await import('../../src/crypto/algorithms.js');
    assert.ok(verifySignature('ed25519', publicKey, { kind: 'message', bytes: msg }, sig.signature, {}));
  } finally {
    await v.dispose();
  }
});

test('a stand-alone secp256k1 key signs the PSBT inputs that name its public key', async () => {
  const v = await makeVault();
  try {
    const ctx = () => ({ principal: ADMIN, requestId: randomUUID() });
    const key = await v.vault.createKey(ctx(), { label: 'solo', algorithm: 'secp256k1', exportable: false, purpose: 'bitcoin' });
    const pay = bitcoin.payments.p2wpkh({ pubkey: key.publicKey, network });
    const prev = new bitcoin.Transaction();
    prev.addInput(new Uint8Array(32).fill(0x5a), 0);
    prev.addOutput(pay.output!, 70_000n);
    const psbt = new bitcoin.Psbt({ network });
    psbt.addInput({ hash: prev.getId(), index: 0, nonWitnessUtxo: prev.toBuffer(), witnessUtxo: { script: pay.output!, value: 70_000n }, bip32Derivation: [{ masterFingerprint: Uint8Array.of(1, 2, 3, 4), path: "m/0'", pubkey: key.publicKey }] });
    psbt.addOutput({ script: EXTERNAL.output!, value: 69_000n });
    const r = await v.vault.signPsbt(ctx(), { key: 'solo', psbt: psbt.toBuffer(), network: 'regtest' });
    assert.deepEqual(r.signedInputs, [0]);
    const out = bitcoin.Psbt.fromBuffer(Buffer.from(r.psbt), { network });
    assert.ok(out.validateSignaturesOfAllInputs((p, h, sig) => ecc.verify(h, p, sig)), 'bitcoinjs-lib verifies it');
    // A PSBT that names another key is not ours: nothing to sign.
    const other = new bitcoin.Psbt({ network });
    const foreign = ECPair.makeRandom();
    const fpay = bitcoin.payments.p2wpkh({ pubkey: foreign.publicKey, network });
    const fprev = new bitcoin.Transaction();
    fprev.addInput(new Uint8Array(32).fill(0x5b), 0);
    fprev.addOutput(fpay.output!, 10_000n);
    other.addInput({ hash: fprev.getId(), index: 0, nonWitnessUtxo: fprev.toBuffer(), witnessUtxo: { script: fpay.output!, value: 10_000n }, bip32Derivation: [{ masterFingerprint: Uint8Array.of(1, 2, 3, 4), path: "m/0'", pubkey: foreign.publicKey }] });
    other.addOutput({ script: EXTERNAL.output!, value: 9_000n });
    await assert.rejects(v.vault.signPsbt(ctx(), { key: 'solo', psbt: other.toBuffer(), network: 'regtest' }), code('invalid_psbt'));
  } finally {
    await v.dispose();
  }
});

test('a policy row altered in the database stops the vault from opening, with a sentence', async () => {
  const v = await makeVault();
  try {
    await v.vault.uploadPolicy({ principal: ADMIN, requestId: randomUUID() }, 'id = "p"\n[applies_to]\nall_keys = true\n[[rules]]\ntype = "operations"\noperations = ["sign"]\n');
    const [row] = await v.store.listMeta('policy.');
    await v.store.setMeta(row!.name, row!.value.replace('operations = [\\"sign\\"]', 'operations = [\\"teleport\\"]'));
    await v.close();
    await assert.rejects(openVault({ dataDir: v.dataDir, passphrase: PASS }), (e) => isCustosError(e) && e.code === 'database_corrupt' && /policy document/.test(e.message));
  } finally {
    await v.dispose();
  }
});
