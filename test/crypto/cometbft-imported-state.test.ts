/**
 * The check an imported double-sign state passes before its sign bytes and signature are
 * kept (crypto/cometbft/imported-state.ts): genuine pairs from the shared vectors and from
 * fresh keys pass (Ed25519, secp256k1 64-byte low-S r‖s over SHA-256); a forged or foreign
 * signature, sign bytes of another chain, height, round or step, and half a pair are refused
 * with bad_request and a tag and sentence naming what is wrong.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync, randomBytes, sign as nodeSign } from 'node:crypto';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { CustosError } from '../../src/core/errors.js';
import type { Algorithm } from '../../src/core/types.js';
import { checkImportedState, type ImportedState } from '../../src/crypto/cometbft/imported-state.js';
import { proposalSignBytes, voteSignBytes, type BlockId } from '../../src/crypto/cometbft/sign-bytes.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const DERIVED_FILE = new URL('../shared/vectors/cometbft/sign_bytes/derived_sign_bytes_and_signatures.json', new URL('../../', import.meta.url));
const SKIP_VECTORS = fs.existsSync(fileURLToPath(DERIVED_FILE))
  ? false
  : `CometBFT derived vectors not found at ${fileURLToPath(DERIVED_FILE)}; they are read from the shared folder (<repo>/../shared/vectors/cometbft/sign_bytes) and never copied into the repo`;

const CHAIN = 'cosmoshub-4';
const TS = { seconds: 1_704_164_645n, nanos: 123_456_789 };
const BLOCK: BlockId = { hash: new Uint8Array(32).fill(7), partSetHeader: { total: 1, hash: new Uint8Array(32).fill(8) } };

function ed25519Key(): { key: { algorithm: Algorithm; publicKey: Uint8Array }; sign(m: Uint8Array): Uint8Array } {
  const kp = generateKeyPairSync('ed25519');
  const publicKey = new Uint8Array(kp.publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
  return { key: { algorithm: 'ed25519', publicKey }, sign: (m) => new Uint8Array(nodeSign(null, m, kp.privateKey)) };
}

function secpKey(): { key: { algorithm: Algorithm; publicKey: Uint8Array }; sign(m: Uint8Array): Uint8Array; priv: Uint8Array } {
  const priv = secp256k1.utils.randomSecretKey();
  return { key: { algorithm: 'secp256k1', publicKey: secp256k1.getPublicKey(priv, true) }, priv, sign: (m) => secp256k1.sign(m, priv, { prehash: true, lowS: true }) };
}

const precommit = (height: bigint, round = 0, chainId = CHAIN) => voteSignBytes(chainId, { type: 'precommit', height, round, blockId: BLOCK, timestamp: TS });

function refused(tag: string, re: RegExp) {
  return (e: unknown) => e instanceof CustosError && e.fullCode === `bad_request:${tag}` && re.test(e.message);
}

test('a genuine pair passes: Ed25519 and secp256k1, votes (steps 2, 3) and proposals (step 1); a state without sign bytes and signature needs no check', () => {
  for (const k of [ed25519Key(), secpKey()]) {
    const prevote = voteSignBytes(CHAIN, { type: 'prevote', height: 7001n, round: 2, blockId: null, timestamp: TS });
    checkImportedState(k.key, CHAIN, { height: 7001n, round: 2, step: 2, signBytes: prevote, signature: k.sign(prevote) });
    const pc = precommit(7001n, 2);
    checkImportedState(k.key, CHAIN, { height: 7001n, round: 2, step: 3, signBytes: pc, signature: k.sign(pc) });
    const prop = proposalSignBytes(CHAIN, { height: 7001n, round: 2, polRound: -1, blockId: BLOCK, timestamp: TS });
    checkImportedState(k.key, CHAIN, { height: 7001n, round: 2, step: 1, signBytes: prop, signature: k.sign(prop) });
    checkImportedState(k.key, CHAIN, { height: 7001n, round: 2, step: 3 });
    checkImportedState(k.key, CHAIN, { height: 0n, round: 0, step: 0, signBytes: new Uint8Array(0), signature: new Uint8Array(0) });
  }
});

test('the shared derived vectors pass with their own keys and signatures, and fail with the other algorithm\'s signature', { skip: SKIP_VECTORS }, () => {
  const file = JSON.parse(fs.readFileSync(DERIVED_FILE, 'utf8')) as {
    keys: { ed25519: { pubkey_hex: string }; secp256k1: { pubkey_compressed_hex: string } };
    cases: Array<{ id: string; kind: string; inputs: { chain_id: string; type?: number; height: number; round: number }; sign_bytes_hex: string; ed25519_signature_hex: string; secp256k1_signature_hex: string }>;
  };
  const ed = { algorithm: 'ed25519' as const, publicKey: hex(file.keys.ed25519.pubkey_hex) };
  const k1 = { algorithm: 'secp256k1' as const, publicKey: hex(file.keys.secp256k1.pubkey_compressed_hex) };
  let checked = 0;
  for (const c of file.cases) {
    if (c.kind === 'CanonicalVoteExtension') continue; // not a double-sign position
    const state: ImportedState = { height: BigInt(c.inputs.height), round: c.inputs.round, step: c.inputs.type === 32 ? 1 : c.inputs.type === 1 ? 2 : 3, signBytes: hex(c.sign_bytes_hex) };
    checkImportedState(ed, c.inputs.chain_id, { ...state, signature: hex(c.ed25519_signature_hex) });
    checkImportedState(k1, c.inputs.chain_id, { ...state, signature: hex(c.secp256k1_signature_hex) });
    assert.throws(() => checkImportedState(ed, c.inputs.chain_id, { ...state, signature: hex(c.secp256k1_signature_hex) }), refused('bad_signature', /does not verify/), c.id);
    checked++;
  }
  assert.equal(checked, 8);
});

test('finding 14: a random 64-byte signature, another chain\'s sign bytes, and height 7000 under a state of 7001 are refused, naming what differs', () => {
  const k = ed25519Key();
  const pc = precommit(7001n);
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: pc, signature: new Uint8Array(randomBytes(64)) }), refused('bad_signature', /does not verify under this key/));
  const other = precommit(7001n, 0, 'osmosis-1');
  assert.throws(
    () => checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: other, signature: k.sign(other) }),
    refused('state_mismatch', /chain ID "osmosis-1" in the sign bytes, "cosmoshub-4" in the state/),
  );
  const old = precommit(7000n);
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: old, signature: k.sign(old) }), refused('state_mismatch', /height 7000 in the sign bytes, 7001 in the state/));
});

test('round and step must match too; several differences are all named', () => {
  const k = ed25519Key();
  const pc = precommit(7001n, 1);
  const sig = k.sign(pc);
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 2, step: 3, signBytes: pc, signature: sig }), refused('state_mismatch', /round 1 in the sign bytes, 2 in the state/));
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 1, step: 2, signBytes: pc, signature: sig }), refused('state_mismatch', /step 3 \(precommit\) in the sign bytes, 2 \(prevote\) in the state/));
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 1, step: 0, signBytes: pc, signature: sig }), refused('state_mismatch', /step 3 \(precommit\) in the sign bytes, 0 \(none\) in the state/));
  assert.throws(() => checkImportedState(k.key, 'c-2', { height: 9n, round: 0, step: 1, signBytes: pc, signature: sig }), refused('state_mismatch', /chain ID .*; height .*; round .*; step 3 \(precommit\) in the sign bytes, 1 \(proposal\)/));
});

test('half a pair, undecodable sign bytes, a signature of another key, and a non-consensus key are refused', () => {
  const k = ed25519Key();
  const pc = precommit(7001n);
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signature: k.sign(pc) }), refused('missing_sign_bytes', /signature but no sign bytes/));
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: pc }), refused('missing_signature', /sign bytes but no signature/));
  const junk = new Uint8Array(randomBytes(40));
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: junk, signature: k.sign(junk) }), refused('bad_sign_bytes', /not a CometBFT canonical vote or proposal/));
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: pc, signature: ed25519Key().sign(pc) }), refused('bad_signature', /does not verify/));
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: pc, signature: k.sign(pc).subarray(0, 63) }), refused('bad_signature', /63 bytes/));
  assert.throws(
    () => checkImportedState({ algorithm: 'p256', publicKey: new Uint8Array(33) }, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: pc, signature: new Uint8Array(64) }),
    (e: unknown) => e instanceof CustosError && e.code === 'unsupported_algorithm',
  );
});

test('secp256k1: only 64-byte low-S r‖s over SHA-256 of the sign bytes, as CometBFT signs; high S, DER and a signature over the raw bytes are refused', () => {
  const k = secpKey();
  const pc = precommit(7001n);
  const good = k.sign(pc);
  checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: pc, signature: good });
  const sig = secp256k1.Signature.fromBytes(good, 'compact');
  const high = new secp256k1.Signature(sig.r, secp256k1.Point.Fn.ORDER - sig.s).toBytes('compact');
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: pc, signature: high }), refused('bad_signature', /does not verify/), 'high S');
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: pc, signature: sig.toBytes('der') }), refused('bad_signature', /bytes; a CometBFT secp256k1 signature \(r‖s\) is 64/), 'DER');
  const overRaw = secp256k1.sign(pc.subarray(0, 32), k.priv, { prehash: false, lowS: true });
  assert.throws(() => checkImportedState(k.key, CHAIN, { height: 7001n, round: 0, step: 3, signBytes: pc, signature: overRaw }), refused('bad_signature', /does not verify/), 'not over SHA-256');
});
