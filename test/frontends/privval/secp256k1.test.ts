/**
 * secp256k1 consensus keys through the privval connector, end to end over SecretConnection
 * (test/helpers/cometbft-node.ts plays the node). What CometBFT expects (crypto/secp256k1,
 * shared/research/cometbft-privval.md §1.8): the 33-byte compressed key in `PublicKey`'s
 * `secp256k1` oneof case (2) for v0.38, `pub_key_type = "secp256k1"` for v1; signatures are
 * ECDSA over SHA-256(sign bytes) with RFC 6979 nonces, low S, 64 bytes r‖s.
 *
 * With the shared vectors present (`<repo>/../shared/vectors/cometbft/sign_bytes/`, read in
 * place), the vector key is imported and every signature must equal the listed one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { makeVault, type TestVault } from '../../helpers/tmpvault.js';
import { TestNode } from '../../helpers/cometbft-node.js';
import { PrivvalConnector } from '../../../src/frontends/privval/connector.js';
import { encodeMessage, type PrivvalDialect, type PrivvalMessage, type Proposal, type Vote } from '../../../src/frontends/privval/messages.js';
import { proposalSignBytes, voteExtensionSignBytes, voteSignBytes, type BlockId, type Timestamp } from '../../../src/frontends/privval/sign-bytes.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const N = secp256k1.Point.CURVE().n;

const DERIVED_FILE = new URL('../../../../shared/vectors/cometbft/sign_bytes/derived_sign_bytes_and_signatures.json', import.meta.url);
const HAVE_VECTORS = fs.existsSync(fileURLToPath(DERIVED_FILE));
const SKIP_VECTORS = HAVE_VECTORS ? false : 'shared CometBFT vectors not found: they are read from <repo>/../shared/vectors/cometbft/sign_bytes and never copied into the repo';

/** CometBFT's check: 64 bytes r‖s, S in the lower half, ECDSA over SHA-256(msg). */
function cometVerify(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  if (sig.length !== 64) return false;
  const s = BigInt('0x' + toHex(sig.subarray(32)));
  if (s === 0n || s > N / 2n) return false;
  return secp256k1.verify(sig, sha256(msg), pub, { prehash: false, lowS: true, format: 'compact' });
}

function blockId(seed: number): BlockId {
  return { hash: new Uint8Array(32).fill(seed), partSetHeader: { total: 1, hash: new Uint8Array(32).fill(seed + 1) } };
}

function vote(type: 1 | 2, height: bigint, round: number, bid: BlockId, ts: Timestamp, extension = new Uint8Array(0)): Vote {
  return { type, height, round, blockId: bid, timestamp: ts, validatorAddress: new Uint8Array(20).fill(1), validatorIndex: 0, signature: new Uint8Array(0), extension, extensionSignature: new Uint8Array(0) };
}

async function withConnector<T>(v: TestVault, dialect: PrivvalDialect, chainId: string, consensusKey: string, body: (node: TestNode) => Promise<T>): Promise<T> {
  const node = await TestNode.listen({ dialect });
  const connector = new PrivvalConnector(v.vault, { name: `k1-${dialect}`, chainId, address: node.address, consensusKey, identityKey: 'identity', dialect });
  try {
    connector.start();
    await node.waitForSigner(15_000);
    return await body(node);
  } finally {
    await connector.stop();
    await node.close();
  }
}

for (const dialect of ['v0.38', 'v1'] as const) {
  test(`secp256k1 consensus key (${dialect}): the compressed key in the right PubKeyResponse field, low-S r‖s signatures over SHA-256 of the sign bytes`, async () => {
    const v = await makeVault();
    try {
      const key = await v.vault.createKey(v.ctx(), { label: 'val-k1', algorithm: 'secp256k1', exportable: false, purpose: 'consensus' });
      await v.vault.createKey(v.ctx(), { label: 'identity', algorithm: 'ed25519', exportable: false });
      assert.equal(key.publicKey.length, 33);
      assert.ok(key.publicKey[0] === 2 || key.publicKey[0] === 3, 'a compressed SEC1 point');
      const chain = `k1-chain-${dialect}`;
      await withConnector(v, dialect, chain, 'val-k1', async (node) => {
        const pk = await node.request({ kind: 'pub_key_request', chainId: chain });
        assert.ok(pk.kind === 'pub_key_response' && !pk.error && pk.pubKey);
        assert.equal(pk.pubKey.type, 'secp256k1');
        assert.deepEqual(pk.pubKey.bytes, key.publicKey);
        // The bytes on the wire (the codec round-trips byte for byte, see messages.test.ts).
        const wire = toHex(encodeMessage(pk, dialect));
        if (dialect === 'v0.38') {
          // Message.pub_key_response(2){ pub_key(1){ secp256k1(2): 33 bytes } }
          assert.equal(wire, '1225' + '0a23' + '1221' + toHex(key.publicKey));
        } else {
          // Message.pub_key_response(2){ pub_key_bytes(3): 33 bytes, pub_key_type(4): "secp256k1" }
          assert.equal(wire, '122e' + '1a21' + toHex(key.publicKey) + '2209' + toHex(new TextEncoder().encode('secp256k1')));
        }

        const ts = { seconds: 1_710_000_000n, nanos: 42 };
        const ext = new TextEncoder().encode('price:42');
        const prevote = vote(1, 10n, 0, blockId(1), ts);
        const precommit = vote(2, 10n, 0, blockId(1), ts, ext);
        for (const [req, type] of [
          [prevote, 'prevote'],
          [precommit, 'precommit'],
        ] as const) {
          const r = await node.request({ kind: 'sign_vote_request', vote: req, chainId: chain, skipExtensionSigning: false });
          assert.ok(r.kind === 'signed_vote_response' && r.vote && !r.error, JSON.stringify(r.kind === 'signed_vote_response' ? r.error : r.kind));
          const signBytes = voteSignBytes(chain, { type, height: req.height, round: req.round, blockId: req.blockId, timestamp: r.vote.timestamp });
          assert.equal(r.vote.signature.length, 64, 'r‖s, no DER, no recovery byte');
          assert.ok(cometVerify(key.publicKey, signBytes, r.vote.signature), `${type}: verifies as CometBFT does`);
          assert.ok(!secp256k1.verify(r.vote.signature, signBytes, key.publicKey, { prehash: false, lowS: false }), 'not over the raw sign bytes');
          if (type === 'precommit') {
            const extBytes = voteExtensionSignBytes(chain, { height: req.height, round: req.round, extension: ext });
            assert.ok(cometVerify(key.publicKey, extBytes, r.vote.extensionSignature), 'the extension signature too');
          }
        }
        const proposal: Proposal = { type: 32, height: 11n, round: 0, polRound: -1, blockId: blockId(3), timestamp: ts, signature: new Uint8Array(0) };
        const pr = await node.request({ kind: 'sign_proposal_request', proposal, chainId: chain });
        assert.ok(pr.kind === 'signed_proposal_response' && pr.proposal && !pr.error);
        const propBytes = proposalSignBytes(chain, { height: 11n, round: 0, polRound: -1, blockId: proposal.blockId, timestamp: ts });
        assert.ok(cometVerify(key.publicKey, propBytes, pr.proposal.signature), 'the proposal signature verifies');

        // An identical re-request (the node's retry) gets the stored signature, still 64 bytes.
        const again = await node.request({ kind: 'sign_proposal_request', proposal, chainId: chain });
        assert.ok(again.kind === 'signed_proposal_response' && again.proposal && !again.error);
        assert.deepEqual(again.proposal.signature, pr.proposal.signature);
      });
    } finally {
      await v.dispose();
    }
  });
}

interface DerivedCase {
  id: string;
  inputs: {
    chain_id: string;
    type?: number;
    height: number;
    round: number;
    pol_round?: number;
    block_id?: { hash: string; part_set_header: { total: number; hash: string } } | null;
    timestamp?: { seconds: number; nanos: number };
    extension_ascii?: string;
  };
  secp256k1_signature_hex: string;
}

test('secp256k1 through the connector reproduces the derived vector signatures exactly (RFC 6979, low S)', { skip: SKIP_VECTORS }, async () => {
  const file = JSON.parse(fs.readFileSync(DERIVED_FILE, 'utf8')) as { keys: { secp256k1: { privkey_hex: string; pubkey_compressed_hex: string } }; cases: DerivedCase[] };
  const byId = new Map(file.cases.map((c) => [c.id, c]));
  const c = (id: string) => byId.get(id) ?? assert.fail(`vector ${id} missing`);
  const v = await makeVault();
  try {
    const material = new TextEncoder().encode(file.keys.secp256k1.privkey_hex);
    const key = await v.vault.importKey(v.ctx(), { label: 'vector-k1', algorithm: 'secp256k1', format: 'hex', material, exportable: false, purpose: 'consensus' });
    material.fill(0);
    assert.equal(toHex(key.publicKey), file.keys.secp256k1.pubkey_compressed_hex);
    await v.vault.createKey(v.ctx(), { label: 'identity', algorithm: 'ed25519', exportable: false });
    const toBlock = (b: DerivedCase['inputs']['block_id']): BlockId =>
      b ? { hash: hex(b.hash), partSetHeader: { total: b.part_set_header.total, hash: hex(b.part_set_header.hash) } } : { hash: new Uint8Array(0), partSetHeader: { total: 0, hash: new Uint8Array(0) } };
    const toVote = (x: DerivedCase, extension = new Uint8Array(0)): Vote =>
      vote(x.inputs.type as 1 | 2, BigInt(x.inputs.height), x.inputs.round, toBlock(x.inputs.block_id), { seconds: BigInt(x.inputs.timestamp!.seconds), nanos: x.inputs.timestamp!.nanos }, extension);
    const toProposal = (x: DerivedCase): Proposal => ({
      type: 32,
      height: BigInt(x.inputs.height),
      round: x.inputs.round,
      polRound: x.inputs.pol_round!,
      blockId: toBlock(x.inputs.block_id),
      timestamp: { seconds: BigInt(x.inputs.timestamp!.seconds), nanos: x.inputs.timestamp!.nanos },
      signature: new Uint8Array(0),
    });

    await withConnector(v, 'v0.38', 'cosmoshub-4', 'vector-k1', async (node) => {
      // In consensus order, so that the watermark only moves forward.
      const steps: Array<{ id: string; msg: PrivvalMessage; ext?: string }> = [
        { id: 'prevote-zero-nanos', msg: { kind: 'sign_vote_request', vote: toVote(c('prevote-zero-nanos')), chainId: 'cosmoshub-4', skipExtensionSigning: false } },
        { id: 'proposal-pol-minus1', msg: { kind: 'sign_proposal_request', proposal: toProposal(c('proposal-pol-minus1')), chainId: 'cosmoshub-4' } },
        { id: 'prevote-nil', msg: { kind: 'sign_vote_request', vote: toVote(c('prevote-nil')), chainId: 'cosmoshub-4', skipExtensionSigning: false } },
        {
          id: 'precommit-block',
          msg: { kind: 'sign_vote_request', vote: toVote(c('precommit-block'), new TextEncoder().encode(c('vote-extension').inputs.extension_ascii!)), chainId: 'cosmoshub-4', skipExtensionSigning: false },
          ext: 'vote-extension',
        },
        { id: 'proposal-pol-2', msg: { kind: 'sign_proposal_request', proposal: toProposal(c('proposal-pol-2')), chainId: 'cosmoshub-4' } },
        { id: 'precommit-height-over-2^32', msg: { kind: 'sign_vote_request', vote: toVote(c('precommit-height-over-2^32')), chainId: 'cosmoshub-4', skipExtensionSigning: false } },
      ];
      for (const step of steps) {
        const r = await node.request(step.msg);
        if (r.kind === 'signed_vote_response') {
          assert.ok(r.vote && !r.error, `${step.id}: ${JSON.stringify(r.error)}`);
          assert.equal(toHex(r.vote.signature), c(step.id).secp256k1_signature_hex, step.id);
          if (step.ext) assert.equal(toHex(r.vote.extensionSignature), c(step.ext).secp256k1_signature_hex, step.ext);
        } else {
          assert.ok(r.kind === 'signed_proposal_response' && r.proposal && !r.error, step.id);
          assert.equal(toHex(r.proposal.signature), c(step.id).secp256k1_signature_hex, step.id);
        }
      }
    });
  } finally {
    await v.dispose();
  }
});
