/**
 * privval Message codec and framing against the vectors in the shared folder
 * (`<repo>/../shared/vectors/cometbft/privval/`, see its PROVENANCE.md): CometBFT's
 * `TestPrivvalVectors` for v0.38.25 and v1.0.1, tendermint-rs request encodings, and
 * derived length-delimited frames. The vectors are read in place and never copied into
 * this repository; without them those tests are skipped.
 *
 * Property tests: encode→decode round trips in both dialects; every truncation and
 * random mutation of the vector frames decodes or throws PrivvalCodecError; the
 * MessageReader gives the same bodies for any chunking and never holds more than its
 * limit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { CustosError } from '../../../src/core/errors.js';
import { lengthDelimited } from '../../../src/frontends/privval/proto.js';
import {
  GO_ZERO_TIME,
  MAX_PRIVVAL_MESSAGE_BYTES,
  MessageReader,
  PrivvalCodecError,
  decodeFramedMessage,
  decodeMessage,
  encodeFramedMessage,
  encodeMessage,
  frameMessage,
  readMessageBodies,
  type BlockId,
  type PrivvalDialect,
  type PrivvalMessage,
  type Proposal,
  type PublicKey,
  type RemoteSignerError,
  type Vote,
} from '../../../src/frontends/privval/messages.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const ascii = (s: string) => new TextEncoder().encode(s);
const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
const DIALECTS: readonly PrivvalDialect[] = ['v0.38', 'v1'];

/** Asserts `fn` throws a PrivvalCodecError (and optionally with the given failure). */
function assertCodecError(fn: () => unknown, failure?: PrivvalCodecError['failure']): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PrivvalCodecError, `expected PrivvalCodecError, got ${String(e)}`);
    assert.ok(e instanceof CustosError);
    assert.equal(e.code, 'bad_request');
    if (failure) assert.equal(e.failure, failure);
    return true;
  });
}

/** Decodes, or returns the PrivvalCodecError; anything else fails the test. */
function decodeOrCodecError(fn: () => PrivvalMessage): PrivvalMessage | PrivvalCodecError {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PrivvalCodecError && e.code === 'bad_request') return e;
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Vectors from the shared folder
// ---------------------------------------------------------------------------

const REPO_ROOT = new URL('../../../', import.meta.url);
const VECTOR_DIR = new URL('../shared/vectors/cometbft/privval/', REPO_ROOT);
const UPSTREAM_FILE = new URL('upstream_privval_messages.json', VECTOR_DIR);
const DERIVED_FILE = new URL('derived_privval_framing.json', VECTOR_DIR);
const HAVE_VECTORS = fs.existsSync(fileURLToPath(UPSTREAM_FILE)) && fs.existsSync(fileURLToPath(DERIVED_FILE));
const SKIP_VECTORS = HAVE_VECTORS
  ? false
  : `CometBFT privval vectors not found at ${fileURLToPath(VECTOR_DIR)}; they come from the shared folder ` +
    '(<repo>/../shared/vectors/cometbft/privval) and are never copied into the repo';

interface JsonBlockId {
  hash: string;
  part_set_header: { total: number; hash: string };
}
interface JsonTimestamp {
  seconds: number;
  nanos: number;
}
interface UpstreamCase {
  id: string;
  message: string;
  expected_hex: string;
  decoded?: {
    chain_id: string;
    vote?: {
      type: number;
      height: number;
      round: number;
      block_id: JsonBlockId;
      timestamp: JsonTimestamp;
      validator_address: string;
      validator_index: number;
      signature: string;
    };
    proposal?: {
      type: number;
      height: number;
      round: number;
      pol_round: number;
      block_id: JsonBlockId;
      timestamp: JsonTimestamp;
      signature: string;
    };
  };
}
interface UpstreamFile {
  common_inputs_for_cometbft_cases: {
    ed25519_pubkey: string;
    vote: {
      type: number;
      height: number;
      round: number;
      block_id: JsonBlockId;
      timestamp: JsonTimestamp;
      validator_address: string;
      validator_index: number;
      extension: string;
    };
    proposal: { type: number; height: number; round: number; pol_round: number; signature: string };
    remote_signer_error: { code: number; description: string };
  };
  cases: UpstreamCase[];
}
interface DerivedCase {
  id: string;
  message_hex: string;
  framed_hex: string;
  framed_len: number;
}

const upstream: UpstreamFile | undefined = HAVE_VECTORS
  ? JSON.parse(fs.readFileSync(fileURLToPath(UPSTREAM_FILE), 'utf8'))
  : undefined;
const derived: { cases: DerivedCase[] } | undefined = HAVE_VECTORS
  ? JSON.parse(fs.readFileSync(fileURLToPath(DERIVED_FILE), 'utf8'))
  : undefined;

const blockIdOf = (j: JsonBlockId): BlockId => ({
  hash: hex(j.hash),
  partSetHeader: { total: j.part_set_header.total, hash: hex(j.part_set_header.hash) },
});
const timestampOf = (j: JsonTimestamp) => ({ seconds: BigInt(j.seconds), nanos: j.nanos });
const empty = () => new Uint8Array(0);

const zeroVote = (): Vote => ({
  type: 0,
  height: 0n,
  round: 0,
  blockId: { hash: empty(), partSetHeader: { total: 0, hash: empty() } },
  timestamp: { ...GO_ZERO_TIME },
  validatorAddress: empty(),
  validatorIndex: 0,
  signature: empty(),
  extension: empty(),
  extensionSignature: empty(),
});
const zeroProposal = (): Proposal => ({
  type: 0,
  height: 0n,
  round: 0,
  polRound: 0,
  blockId: { hash: empty(), partSetHeader: { total: 0, hash: empty() } },
  timestamp: { ...GO_ZERO_TIME },
  signature: empty(),
});

/** The message each CometBFT `TestPrivvalVectors` case encodes (privval/msgs_test.go). */
function expectedCometbftMessage(file: UpstreamFile, name: string): PrivvalMessage {
  const common = file.common_inputs_for_cometbft_cases;
  const pub = hex(/pubkey ([0-9a-f]{64})/.exec(common.ed25519_pubkey)![1]!);
  const cv = common.vote;
  const vote: Vote = {
    ...zeroVote(),
    type: cv.type,
    height: BigInt(cv.height),
    round: cv.round,
    blockId: blockIdOf(cv.block_id),
    timestamp: timestampOf(cv.timestamp),
    validatorAddress: hex(cv.validator_address),
    validatorIndex: cv.validator_index,
    extension: hex(cv.extension),
  };
  const cp = common.proposal;
  const proposal: Proposal = {
    type: cp.type,
    height: BigInt(cp.height),
    round: cp.round,
    polRound: cp.pol_round,
    blockId: blockIdOf(cv.block_id),
    timestamp: timestampOf(cv.timestamp),
    signature: hex(cp.signature),
  };
  const error: RemoteSignerError = { ...common.remote_signer_error };
  const table: Record<string, PrivvalMessage> = {
    'ping request': { kind: 'ping_request' },
    'ping response': { kind: 'ping_response' },
    'pubKey request': { kind: 'pub_key_request', chainId: '' },
    'pubKey response': { kind: 'pub_key_response', pubKey: { type: 'ed25519', bytes: pub }, error: undefined },
    'pubKey response with error': { kind: 'pub_key_response', pubKey: undefined, error },
    'Vote Request': { kind: 'sign_vote_request', vote, chainId: '', skipExtensionSigning: false },
    'Vote Response': { kind: 'signed_vote_response', vote, error: undefined },
    'Vote Response with error': { kind: 'signed_vote_response', vote: zeroVote(), error },
    'Proposal Request': { kind: 'sign_proposal_request', proposal, chainId: '' },
    'Proposal Response': { kind: 'signed_proposal_response', proposal, error: undefined },
    'Proposal Response with error': { kind: 'signed_proposal_response', proposal: zeroProposal(), error },
  };
  const m = table[name];
  assert.ok(m, `no expectation for upstream case "${name}"`);
  return m;
}

test('every CometBFT TestPrivvalVectors message (v0.38.25 and v1.0.1) decodes to its content and re-encodes byte-identically', { skip: SKIP_VECTORS }, () => {
  const cases = upstream!.cases.filter((c) => c.id.startsWith('v0.38.25:') || c.id.startsWith('v1.0.1:'));
  assert.equal(cases.length, 22);
  for (const c of cases) {
    const dialect: PrivvalDialect = c.id.startsWith('v1.0.1:') ? 'v1' : 'v0.38';
    const bytes = hex(c.expected_hex);
    const m = decodeMessage(bytes, dialect);
    assert.deepEqual(m, expectedCometbftMessage(upstream!, c.message), c.id);
    assert.equal(toHex(encodeMessage(m, dialect)), c.expected_hex, c.id);
  }
});

test('tendermint-rs SignVoteRequest and SignProposalRequest decode to their content and re-encode byte-identically', { skip: SKIP_VECTORS }, () => {
  const cases = upstream!.cases.filter((c) => c.id.startsWith('tendermint-rs:'));
  assert.equal(cases.length, 2);
  for (const c of cases) {
    // The vectors are the bare request; wrap it in its Message case (3 or 5).
    const isVote = c.id.endsWith('SignVoteRequest');
    const body = concat(Uint8Array.of(isVote ? 0x1a : 0x2a), lengthDelimited(hex(c.expected_hex)));
    const d = c.decoded!;
    let expected: PrivvalMessage;
    if (isVote) {
      const v = d.vote!;
      expected = {
        kind: 'sign_vote_request',
        chainId: d.chain_id,
        skipExtensionSigning: false,
        vote: {
          ...zeroVote(),
          type: v.type,
          height: BigInt(v.height),
          round: v.round,
          blockId: blockIdOf(v.block_id),
          timestamp: timestampOf(v.timestamp),
          validatorAddress: hex(v.validator_address),
          validatorIndex: v.validator_index,
          signature: hex(v.signature),
        },
      };
    } else {
      const p = d.proposal!;
      expected = {
        kind: 'sign_proposal_request',
        chainId: d.chain_id,
        proposal: {
          type: p.type,
          height: BigInt(p.height),
          round: p.round,
          polRound: p.pol_round,
          blockId: blockIdOf(p.block_id),
          timestamp: timestampOf(p.timestamp),
          signature: hex(p.signature),
        },
      };
    }
    for (const dialect of DIALECTS) {
      const m = decodeMessage(body, dialect);
      assert.deepEqual(m, expected, `${c.id} ${dialect}`);
      assert.equal(toHex(encodeMessage(m, dialect)), toHex(body), `${c.id} ${dialect}`);
    }
  }
});

/** The dialects each derived case belongs to, from its id. */
function dialectsOf(id: string): readonly PrivvalDialect[] {
  if (id.includes('v038')) return ['v0.38'];
  if (id.includes('-v1')) return ['v1'];
  return DIALECTS;
}

/** Content of the derived cases, transcribed from their descriptions and the key file. */
function checkDerivedContent(id: string, m: PrivvalMessage, dialect: PrivvalDialect): void {
  const ed = '556a436f1218d30942efe798420f51dc9b6a311b929c578257457d05c5fcf230';
  const secp = '0385d3a81a50c5d1752647dfcae5dbfbd91bdfb7ce6d84e5e0ccb133a069ada702';
  const blockId: BlockId = {
    hash: hex('496aca80e4d8f29fb8e8cd816c3afb48d3f103970b3a2ee1600c08ca67326dee'),
    partSetHeader: { total: 2, hash: hex('d887db09649dab0d83951d8d5d69b2e7d8bb70e79daa2a3a279b4fd6b8346cea') },
  };
  const timestamp = { seconds: 1704164645n, nanos: 123456789 };
  const vote = (extension: Uint8Array): Vote => ({
    ...zeroVote(),
    type: 2,
    height: 1000000n,
    round: 3,
    blockId,
    timestamp,
    validatorAddress: hex('dc52d5cf8dfd1793d71038b342a29b01ad8a5d63'),
    validatorIndex: 7,
    extension,
  });
  const proposal: Proposal = { ...zeroProposal(), type: 32, height: 1000000n, round: 0, polRound: -1, blockId, timestamp };
  const chainId = 'cosmoshub-4';
  switch (id) {
    case 'ping-request':
      return assert.deepEqual(m, { kind: 'ping_request' });
    case 'ping-response':
      return assert.deepEqual(m, { kind: 'ping_response' });
    case 'pubkey-request':
      return assert.deepEqual(m, { kind: 'pub_key_request', chainId });
    case 'pubkey-response-v038-ed25519':
    case 'pubkey-response-v1-ed25519':
      return assert.deepEqual(m, { kind: 'pub_key_response', pubKey: { type: 'ed25519', bytes: hex(ed) }, error: undefined });
    case 'pubkey-response-v038-secp256k1':
    case 'pubkey-response-v1-secp256k1':
      return assert.deepEqual(m, { kind: 'pub_key_response', pubKey: { type: 'secp256k1', bytes: hex(secp) }, error: undefined });
    case 'sign-vote-request-v038':
      return assert.deepEqual(m, {
        kind: 'sign_vote_request',
        vote: vote(ascii('oracle-prices:v1')),
        chainId,
        skipExtensionSigning: false,
      });
    case 'sign-vote-request-v1-skip-ext':
      return assert.deepEqual(m, {
        kind: 'sign_vote_request',
        vote: vote(ascii('oracle-prices:v1')),
        chainId,
        skipExtensionSigning: true,
      });
    case 'signed-vote-response': {
      assert.equal(m.kind, 'signed_vote_response');
      if (m.kind !== 'signed_vote_response') return;
      assert.equal(m.error, undefined);
      const { signature, extensionSignature, ...rest } = m.vote!;
      const { signature: _s, extensionSignature: _e, ...want } = vote(ascii('oracle-prices:v1'));
      assert.deepEqual(rest, want);
      assert.equal(signature.length, 64);
      assert.equal(extensionSignature.length, 64);
      return;
    }
    case 'sign-proposal-request':
      return assert.deepEqual(m, { kind: 'sign_proposal_request', proposal, chainId });
    case 'signed-proposal-response': {
      assert.equal(m.kind, 'signed_proposal_response');
      if (m.kind !== 'signed_proposal_response') return;
      assert.equal(m.error, undefined);
      assert.deepEqual({ ...m.proposal!, signature: empty() }, proposal);
      assert.equal(m.proposal!.signature.length, 64);
      return;
    }
    case 'double-sign-error-tmkms-style':
      return assert.deepEqual(m, {
        kind: 'signed_vote_response',
        vote: undefined,
        error: { code: 2, description: 'double signing requested at height: 1000000' },
      });
    case 'sign-vote-request-large-ext':
      return assert.deepEqual(m, {
        kind: 'sign_vote_request',
        vote: vote(new Uint8Array(3000).fill(0xab)),
        chainId,
        skipExtensionSigning: false,
      });
    default:
      assert.fail(`no expectation for derived case ${id} (${dialect})`);
  }
}

test('every derived privval frame decodes to its content and re-encodes byte-identically, framed and unframed', { skip: SKIP_VECTORS }, () => {
  assert.equal(derived!.cases.length, 14);
  for (const c of derived!.cases) {
    const framed = hex(c.framed_hex);
    assert.equal(framed.length, c.framed_len, c.id);
    for (const dialect of dialectsOf(c.id)) {
      const m = decodeFramedMessage(framed, dialect);
      checkDerivedContent(c.id, m, dialect);
      assert.deepEqual(decodeMessage(hex(c.message_hex), dialect), m, c.id);
      assert.equal(toHex(encodeMessage(m, dialect)), c.message_hex, `${c.id} ${dialect}`);
      assert.equal(toHex(encodeFramedMessage(m, dialect)), c.framed_hex, `${c.id} ${dialect}`);
    }
  }
});

test("each dialect skips the other's PubKeyResponse and skip_extension_signing fields without failing", { skip: SKIP_VECTORS }, () => {
  const byId = new Map(derived!.cases.map((c) => [c.id, c]));
  const v038 = hex(byId.get('pubkey-response-v038-ed25519')!.message_hex);
  const v1 = hex(byId.get('pubkey-response-v1-ed25519')!.message_hex);
  assert.deepEqual(decodeMessage(v038, 'v1'), { kind: 'pub_key_response', pubKey: undefined, error: undefined });
  assert.deepEqual(decodeMessage(v1, 'v0.38'), { kind: 'pub_key_response', pubKey: undefined, error: undefined });

  // A response carrying both forms (research notes §1.9) decodes on both.
  const both = concat(Uint8Array.of(0x12), lengthDelimited(concat(v038.subarray(2), v1.subarray(2))));
  for (const dialect of DIALECTS) {
    const m = decodeMessage(both, dialect);
    assert.equal(m.kind, 'pub_key_response');
    if (m.kind === 'pub_key_response') assert.equal(m.pubKey?.type, 'ed25519');
  }

  const skip = decodeMessage(hex(byId.get('sign-vote-request-v1-skip-ext')!.message_hex), 'v0.38');
  assert.equal(skip.kind === 'sign_vote_request' && skip.skipExtensionSigning, false);
});

test('the 3,143-byte frame arrives whole through SecretConnection-sized 1024-byte chunks', { skip: SKIP_VECTORS }, () => {
  const c = derived!.cases.find((x) => x.id === 'sign-vote-request-large-ext')!;
  const framed = hex(c.framed_hex);
  const reader = new MessageReader();
  const sizes: number[] = [];
  const bodies: Uint8Array[] = [];
  for (let i = 0; i < framed.length; i += 1024) {
    const chunk = framed.subarray(i, i + 1024);
    sizes.push(chunk.length);
    bodies.push(...reader.push(chunk));
  }
  reader.end();
  assert.deepEqual(sizes, [1024, 1024, 1024, 71]);
  assert.equal(bodies.length, 1);
  assert.equal(toHex(bodies[0]!), c.message_hex);
});

// ---------------------------------------------------------------------------
// Behaviour without vectors
// ---------------------------------------------------------------------------

test("v1 SignBytesRequest decodes so that it can be refused; in v0.38 cases 9 and 10 are Celestia's SignRawBytes", () => {
  const req = hex('4a06' + '0a04deadbeef');
  assert.deepEqual(decodeMessage(req, 'v1'), { kind: 'sign_bytes_request', value: hex('deadbeef') });
  // Read as Celestia's SignRawBytesRequest, field 1 is the chain ID, and de ad be ef is not UTF-8.
  assertCodecError(() => decodeMessage(req, 'v0.38'), 'malformed');
  const res = hex('5200');
  assert.deepEqual(decodeMessage(res, 'v1'), { kind: 'sign_bytes_response', signature: empty(), error: undefined });
  assert.deepEqual(decodeMessage(res, 'v0.38'), { kind: 'signed_raw_bytes_response', signature: empty(), error: undefined });
  assert.throws(() => encodeMessage({ kind: 'sign_bytes_request', value: hex('00') }, 'v0.38'), CustosError);
  assert.throws(() => encodeMessage({ kind: 'sign_raw_bytes_request', chainId: 'c', rawBytes: hex('00'), uniqueId: 'u' }, 'v1'), CustosError);
  assert.throws(() => encodeMessage({ kind: 'signed_raw_bytes_response', signature: empty(), error: undefined }, 'v1'), CustosError);
});

test("Celestia's SignRawBytesRequest and SignedRawBytesResponse have the field numbers of celestia-core", () => {
  // SignRawBytesRequest{chain_id = 1 "c1", raw_bytes = 2 0102, unique_id = 3 "u"} in case 9.
  const req = hex('4a0b' + '0a026331' + '12020102' + '1a0175');
  const m = { kind: 'sign_raw_bytes_request', chainId: 'c1', rawBytes: hex('0102'), uniqueId: 'u' } as const;
  assert.deepEqual(decodeMessage(req, 'v0.38'), m);
  assert.equal(toHex(encodeMessage(m, 'v0.38')), toHex(req));
  // SignedRawBytesResponse{error = 2 {code 1, description "no"}} in case 10: an empty signature is omitted.
  const res = hex('5208' + '1206' + '0801' + '12026e6f');
  const r = { kind: 'signed_raw_bytes_response', signature: empty(), error: { code: 1, description: 'no' } } as const;
  assert.deepEqual(decodeMessage(res, 'v0.38'), r);
  assert.equal(toHex(encodeMessage(r, 'v0.38')), toHex(res));
  // Case 9 with a varint wire type is malformed, as for every known case.
  assertCodecError(() => decodeMessage(hex('4801'), 'v0.38'), 'malformed');
});

test('a message with no known case is unknown, naming the last unknown field', () => {
  assert.deepEqual(decodeMessage(empty(), 'v0.38'), { kind: 'unknown', field: 0 });
  // field 11 as varint, i64, len and i32
  for (const h of ['5801', '590102030405060708', '5a03010203', '5d01020304']) {
    assert.deepEqual(decodeMessage(hex(h), 'v1'), { kind: 'unknown', field: 11 });
  }
  // An unknown field next to a known case does not hide it.
  assert.deepEqual(decodeMessage(hex('5801' + '3a00'), 'v1'), { kind: 'ping_request' });
  assert.throws(() => encodeMessage({ kind: 'unknown', field: 11 }, 'v1'), CustosError);
});

test('unknown fields of every skippable wire type inside a vote are ignored', () => {
  // SignVoteRequest{vote{type=2, f20 varint, f21 i64, f22 len, f23 i32, height=5}, chain_id="c"}
  const vote = hex('0802' + 'a00196' + '01' + 'a9010102030405060708' + 'b20102abcd' + 'bd0101020304' + '1005');
  const req = concat(hex('0a'), lengthDelimited(vote), hex('120163'));
  const m = decodeMessage(concat(hex('1a'), lengthDelimited(req)), 'v0.38');
  assert.equal(m.kind, 'sign_vote_request');
  if (m.kind !== 'sign_vote_request') return;
  assert.equal(m.vote!.type, 2);
  assert.equal(m.vote!.height, 5n);
  assert.equal(m.chainId, 'c');
  // Absent non-nullable fields decode as Go's zero values.
  assert.deepEqual(m.vote!.timestamp, GO_ZERO_TIME);
  assert.equal(m.vote!.blockId.partSetHeader.total, 0);
});

test('malformed input is a PrivvalCodecError naming the failure', () => {
  assertCodecError(() => decodeMessage(hex('3b'), 'v1'), 'malformed'); // group start (wire type 3)
  assertCodecError(() => decodeMessage(hex('5e'), 'v1'), 'malformed'); // wire type 6
  assertCodecError(() => decodeMessage(hex('3801'), 'v1'), 'malformed'); // ping_request as varint
  assertCodecError(() => decodeMessage(hex('02'), 'v1'), 'malformed'); // field number 0
  assertCodecError(() => decodeMessage(hex('58ffffffffffffffffff7f'), 'v1'), 'malformed'); // 10-byte varint over 64 bits
  assertCodecError(() => decodeMessage(hex('58ffffffffffffffffffff01'), 'v1'), 'malformed'); // 11-byte varint
  assertCodecError(() => decodeMessage(hex('0a030a01ff'), 'v1'), 'malformed'); // chain_id not UTF-8
  assertCodecError(() => decodeMessage(hex('3a05'), 'v1'), 'truncated');
  assertCodecError(() => decodeMessage(hex('58'), 'v1'), 'truncated');
  // Vote with timestamp nanos = 1e9 (Go's StdTimeUnmarshal refuses it).
  const ts = hex('2a06' + '108094ebdc03');
  assertCodecError(() => decodeMessage(concat(hex('1a'), lengthDelimited(concat(hex('0a'), lengthDelimited(ts)))), 'v1'), 'malformed');
  // Vote.height sent as i64 instead of varint.
  const bad = hex('11' + '0100000000000000');
  assertCodecError(() => decodeMessage(concat(hex('22'), lengthDelimited(concat(hex('0a'), lengthDelimited(bad)))), 'v1'), 'malformed');
});

test('a repeated vote merges field by field, as gogoproto does', () => {
  const v1 = hex('0802' + '1005'); // type 2, height 5
  const v2 = hex('1807'); // round 7
  const req = concat(hex('0a'), lengthDelimited(v1), hex('0a'), lengthDelimited(v2));
  const m = decodeMessage(concat(hex('1a'), lengthDelimited(req)), 'v0.38');
  assert.ok(m.kind === 'sign_vote_request' && m.vote);
  assert.deepEqual([m.vote.type, m.vote.height, m.vote.round], [2, 5n, 7]);
});

test('encoding refuses what the dialect or the protobuf type cannot hold', () => {
  const vote = zeroVote();
  assert.throws(
    () => encodeMessage({ kind: 'sign_vote_request', vote, chainId: 'c', skipExtensionSigning: true }, 'v0.38'),
    CustosError,
  );
  assert.throws(() => encodeMessage({ kind: 'signed_vote_response', vote: { ...vote, round: 2 ** 31 }, error: undefined }, 'v1'), CustosError);
  assert.throws(
    () => encodeMessage({ kind: 'signed_vote_response', vote: { ...vote, timestamp: { seconds: 0n, nanos: -1 } }, error: undefined }, 'v1'),
    CustosError,
  );
  assert.throws(
    () => encodeMessage({ kind: 'pub_key_response', pubKey: { type: 'sr25519', bytes: hex('00') }, error: undefined }, 'v0.38'),
    CustosError,
  );
  // v0.38 writes the non-nullable pub_key even when there is none.
  assert.equal(toHex(encodeMessage({ kind: 'pub_key_response', pubKey: undefined, error: undefined }, 'v0.38')), '12020a00');
  assert.equal(toHex(encodeMessage({ kind: 'pub_key_response', pubKey: undefined, error: undefined }, 'v1')), '1200');
});

test('MessageReader refuses a declared length over its limit before holding any of it, and stays failed', () => {
  const reader = new MessageReader({ maxMessageBytes: 100 });
  assert.deepEqual(reader.push(hex('023a00')), [hex('3a00')]);
  assertCodecError(() => reader.push(hex('65')), 'oversize'); // 101
  assert.equal(reader.bufferedBytes, 0);
  assertCodecError(() => reader.push(hex('023a00')), 'oversize');
  assertCodecError(() => reader.end(), 'oversize');

  // A huge prefix is refused as soon as its lower bound passes the limit.
  const big = new MessageReader();
  assertCodecError(() => big.push(hex('ffffffff')), 'oversize');
  assert.equal(MAX_PRIVVAL_MESSAGE_BYTES >= 1024 * 1024 + 1024, true);

  const trunc = new MessageReader();
  assert.deepEqual(trunc.push(hex('053a')), []);
  assert.equal(trunc.bufferedBytes, 1);
  assertCodecError(() => trunc.end(), 'truncated');
  assertCodecError(() => decodeFramedMessage(hex('80'), 'v1'), 'truncated');
  assertCodecError(() => new MessageReader({ maxMessageBytes: 1 << 20 }).push(hex('8080808080808080808080')), 'malformed');
});

test('a zero-length frame is an empty message, which is unknown', () => {
  const reader = new MessageReader();
  const bodies = reader.push(hex('00023a00'));
  assert.deepEqual(bodies, [empty(), hex('3a00')]);
  assert.deepEqual(decodeMessage(bodies[0]!, 'v1'), { kind: 'unknown', field: 0 });
});

test('readMessageBodies yields the bodies of an async byte stream and fails on a cut-off message', async () => {
  async function* source(chunks: string[]) {
    for (const c of chunks) yield hex(c);
  }
  const got: string[] = [];
  for await (const b of readMessageBodies(source(['02', '3a', '0002', '42', '00']))) got.push(toHex(b));
  assert.deepEqual(got, ['3a00', '4200']);
  await assert.rejects(async () => {
    for await (const _ of readMessageBodies(source(['023a']))) void _;
  }, PrivvalCodecError);
});

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/** fc.record with ordinary prototypes, so that deepStrictEqual compares it with decoded objects. */
function rec<T extends object>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model as never, { noNullPrototype: true }) as unknown as fc.Arbitrary<T>;
}

const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const uint32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const bytes = (maxLength = 80) => fc.uint8Array({ maxLength });
const str = fc.string({ unit: 'binary', maxLength: 30 });
const timestamp = rec({
  seconds: fc.bigInt({ min: -62135596800n, max: 253402300799n }),
  nanos: fc.integer({ min: 0, max: 999_999_999 }),
});
const blockId: fc.Arbitrary<BlockId> = rec({
  hash: bytes(40),
  partSetHeader: rec({ total: uint32, hash: bytes(40) }),
});
const voteArb: fc.Arbitrary<Vote> = rec({
  type: fc.oneof(fc.constantFrom(0, 1, 2, 32), int32),
  height: int64,
  round: int32,
  blockId,
  timestamp,
  validatorAddress: bytes(20),
  validatorIndex: int32,
  signature: bytes(64),
  extension: bytes(200),
  extensionSignature: bytes(64),
});
const proposalArb: fc.Arbitrary<Proposal> = rec({
  type: fc.oneof(fc.constant(32), int32),
  height: int64,
  round: int32,
  polRound: int32,
  blockId,
  timestamp,
  signature: bytes(64),
});
const errorArb = fc.option(rec({ code: int32, description: str }), { nil: undefined });

function pubKeyArb(dialect: PrivvalDialect): fc.Arbitrary<PublicKey | undefined> {
  const key: fc.Arbitrary<PublicKey> =
    dialect === 'v0.38'
      ? rec({ type: fc.constantFrom('ed25519', 'secp256k1', 'bls12_381'), bytes: bytes(96) })
      : rec<PublicKey>({ type: fc.oneof(fc.constantFrom('ed25519', 'secp256k1', 'bls12_381'), str), bytes: bytes(96) })
          .filter((k) => k.type !== '' || k.bytes.length > 0);
  return fc.option(key, { nil: undefined });
}

function messageArb(dialect: PrivvalDialect): fc.Arbitrary<PrivvalMessage> {
  const cases: fc.Arbitrary<PrivvalMessage>[] = [
    rec({ kind: fc.constant('pub_key_request' as const), chainId: str }),
    rec({ kind: fc.constant('pub_key_response' as const), pubKey: pubKeyArb(dialect), error: errorArb }),
    rec({
      kind: fc.constant('sign_vote_request' as const),
      vote: fc.option(voteArb, { nil: undefined }),
      chainId: str,
      skipExtensionSigning: dialect === 'v1' ? fc.boolean() : fc.constant(false),
    }),
    rec({ kind: fc.constant('signed_vote_response' as const), vote: fc.option(voteArb, { nil: undefined }), error: errorArb }),
    rec({
      kind: fc.constant('sign_proposal_request' as const),
      proposal: fc.option(proposalArb, { nil: undefined }),
      chainId: str,
    }),
    rec({
      kind: fc.constant('signed_proposal_response' as const),
      proposal: fc.option(proposalArb, { nil: undefined }),
      error: errorArb,
    }),
    fc.constant({ kind: 'ping_request' as const }),
    fc.constant({ kind: 'ping_response' as const }),
  ];
  if (dialect === 'v1') {
    cases.push(
      rec({ kind: fc.constant('sign_bytes_request' as const), value: bytes(100) }),
      rec({ kind: fc.constant('sign_bytes_response' as const), signature: bytes(64), error: errorArb }),
    );
  } else {
    cases.push(
      rec({ kind: fc.constant('sign_raw_bytes_request' as const), chainId: str, rawBytes: bytes(100), uniqueId: str }),
      rec({ kind: fc.constant('signed_raw_bytes_response' as const), signature: bytes(64), error: errorArb }),
    );
  }
  return fc.oneof(...cases);
}

for (const dialect of DIALECTS) {
  test(`property: random ${dialect} messages survive encode → decode → encode unchanged`, () => {
    fc.assert(
      fc.property(messageArb(dialect), (m) => {
        const encoded = encodeMessage(m, dialect);
        const decoded = decodeMessage(encoded, dialect);
        assert.deepEqual(decoded, m);
        assert.deepEqual(encodeMessage(decoded, dialect), encoded);
        assert.deepEqual(decodeFramedMessage(encodeFramedMessage(m, dialect), dialect), m);
      }),
      { numRuns: 400 },
    );
  });
}

/** Frames of every vector message, or of a few encoded messages when the vectors are absent. */
function corpusFrames(): Uint8Array[] {
  if (upstream && derived) {
    return [
      ...derived.cases.map((c) => hex(c.framed_hex)),
      ...upstream.cases.filter((c) => !c.id.startsWith('tendermint-rs:')).map((c) => frameMessage(hex(c.expected_hex))),
    ];
  }
  return fc.sample(messageArb('v1'), { numRuns: 20, seed: 42 }).map((m) => encodeFramedMessage(m, 'v1'));
}

test('every truncation of every vector frame throws PrivvalCodecError; every truncated body decodes or throws it', () => {
  const frames = corpusFrames();
  let checked = 0;
  for (const frame of frames) {
    const body = new MessageReader().push(frame)[0]!;
    for (let n = 0; n < frame.length; n++) {
      for (const dialect of DIALECTS) {
        assertCodecError(() => decodeFramedMessage(frame.subarray(0, n), dialect), 'truncated');
        if (n <= body.length) decodeOrCodecError(() => decodeMessage(body.subarray(0, n), dialect));
        checked++;
      }
    }
  }
  assert.ok(checked > 1000);
});

test('property: random mutations of vector frames decode or throw PrivvalCodecError, nothing else', () => {
  const frames = corpusFrames();
  const mutation = fc.oneof(
    rec({ op: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    rec({ op: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    rec({ op: fc.constant('delete' as const), at: fc.nat(), value: fc.constant(0) }),
  );
  fc.assert(
    fc.property(
      fc.nat({ max: frames.length - 1 }),
      fc.array(mutation, { minLength: 1, maxLength: 6 }),
      fc.constantFrom(...DIALECTS),
      (index, mutations, dialect) => {
        const b = Array.from(frames[index]!);
        for (const mu of mutations) {
          const at = mu.at % (b.length + 1);
          if (mu.op === 'set' && at < b.length) b[at] = mu.value;
          else if (mu.op === 'insert') b.splice(at, 0, mu.value);
          else if (mu.op === 'delete' && at < b.length) b.splice(at, 1);
        }
        const frame = Uint8Array.from(b);
        decodeOrCodecError(() => decodeFramedMessage(frame, dialect));
        decodeOrCodecError(() => decodeMessage(frame.subarray(1), dialect));
      },
    ),
    { numRuns: 3000 },
  );
});

test('property: MessageReader yields the same bodies for any chunking and never holds more than its limit', () => {
  const frames = corpusFrames();
  const bodyArb = fc.oneof(
    fc.nat({ max: frames.length - 1 }).map((i) => new MessageReader().push(frames[i]!)[0]!),
    bytes(300),
  );
  fc.assert(
    fc.property(
      fc.array(bodyArb, { minLength: 1, maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      fc.option(fc.integer({ min: 0, max: 400 }), { nil: undefined }),
      (bodies, cutSeeds, max) => {
        const stream = concat(...bodies.map(frameMessage));
        const cuts = [...new Set(cutSeeds.map((s) => s % (stream.length + 1)))].sort((a, b) => a - b);
        const bounds = [0, ...cuts, stream.length];
        const reader = new MessageReader(max === undefined ? undefined : { maxMessageBytes: max });
        const limit = reader.maxMessageBytes;
        const got: Uint8Array[] = [];
        let error: PrivvalCodecError | undefined;
        for (let i = 0; i + 1 < bounds.length && !error; i++) {
          try {
            got.push(...reader.push(stream.subarray(bounds[i], bounds[i + 1])));
          } catch (e) {
            if (!(e instanceof PrivvalCodecError)) throw e;
            error = e;
          }
          assert.ok(reader.bufferedBytes <= limit, `holds ${reader.bufferedBytes} > ${limit}`);
        }
        const firstTooBig = bodies.findIndex((b) => b.length > limit);
        if (firstTooBig === -1) {
          assert.equal(error, undefined);
          reader.end();
          assert.deepEqual(got, bodies);
        } else {
          assert.equal(error?.failure, 'oversize');
          assert.deepEqual(got, bodies.slice(0, got.length));
          assert.ok(got.length <= firstTooBig);
        }
      },
    ),
    { numRuns: 500 },
  );
});
