/**
 * CometBFT/Tendermint v0.34 and v0.37 (the `dialect = "v0.34" | "v0.37"` node versions,
 * which speak the 'v0.38' privval wire dialect and never sign vote extensions) against
 * test/vectors/cometbft-legacy-sign-bytes.json. The vectors were derived by
 * scripts/derive-cometbft-legacy-vectors.ts from the upstream .proto files of
 * cometbft/cometbft v0.34.35 and v0.37.18 (and tendermint/tendermint v0.34.24) with
 * protobufjs, shaped as Go's gogoproto Marshal writes them; the file's `provenance` block
 * names the commits and files.
 *
 * - voteSignBytes / proposalSignBytes produce exactly the upstream sign bytes;
 * - the privval messages decode in the 'v0.38' dialect to what the node meant, and
 *   encodeMessage / encodeFramedMessage give back the same bytes, byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { CustosError } from '../../src/core/errors.js';
import {
  proposalSignBytes,
  voteSignBytes,
  type BlockId,
  type ProposalToSign,
  type Timestamp,
  type VoteToSign,
} from '../../src/crypto/cometbft/sign-bytes.js';
import {
  GO_ZERO_TIME,
  decodeFramedMessage,
  decodeMessage,
  encodeFramedMessage,
  encodeMessage,
  type PrivvalMessage,
  type Proposal,
  type PublicKey,
  type RemoteSignerError,
  type Vote,
} from '../../src/frontends/privval/messages.js';

const VECTOR_FILE = new URL('../vectors/cometbft-legacy-sign-bytes.json', import.meta.url);
const VERSIONS = ['v0.34', 'v0.37'] as const;
const DIALECT = 'v0.38' as const;

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

interface JsonTimestamp {
  seconds: string;
  nanos: number;
}
interface JsonBlockId {
  hash: string;
  part_set_header: { total: number; hash: string };
}
interface VoteCase {
  id: string;
  inputs: {
    chain_id: string;
    vote: { type: number; height: string; round: number; block_id: JsonBlockId | null; timestamp: JsonTimestamp };
  };
  sign_bytes_hex: string;
  shared_vector_id?: string;
  shared_vector_matched?: boolean;
}
interface ProposalCase {
  id: string;
  inputs: {
    chain_id: string;
    proposal: { height: string; round: number; pol_round: number; block_id: JsonBlockId | null; timestamp: JsonTimestamp };
  };
  sign_bytes_hex: string;
  shared_vector_id?: string;
  shared_vector_matched?: boolean;
}
type JsonMessage = Record<string, Record<string, unknown>>;
interface PrivvalCase {
  id: string;
  message: JsonMessage;
  body_hex: string;
  framed_hex: string;
  go_expected_body_hex?: string;
}
interface VersionBlock {
  source: { repo: string; tag: string; commit: string; proto_files: { path: string; from: string; sha256: string | null }[] };
  vote_cases: VoteCase[];
  proposal_cases: ProposalCase[];
  privval_cases: PrivvalCase[];
  shared_v038_cross_check: { all_matched: boolean; cases: { id: string; matched: boolean }[] } | null;
}
interface VectorFile {
  provenance: {
    generator: string;
    generated_at: string;
    protobufjs_version: string;
    upstream: Record<string, { repo: string; tag: string; commit: string; entry_files: string[] }>;
    v034_cases_equal_v037_cases: boolean;
    shared_v038_vectors_all_matched: boolean | null;
  };
  versions: Record<string, VersionBlock>;
}

const doc = JSON.parse(fs.readFileSync(VECTOR_FILE, 'utf8')) as VectorFile;

function blockIdOf(j: JsonBlockId | null | undefined): BlockId | null {
  if (!j) return null;
  return { hash: hex(j.hash), partSetHeader: { total: j.part_set_header.total, hash: hex(j.part_set_header.hash) } };
}

function timestampOf(j: JsonTimestamp): Timestamp {
  return { seconds: BigInt(j.seconds), nanos: j.nanos };
}

/** The inputs a node can produce: what voteSignBytes accepts (types 1/2, height ≥ 1). */
function voteToSign(c: VoteCase): VoteToSign | undefined {
  const v = c.inputs.vote;
  const type = v.type === 1 ? 'prevote' : v.type === 2 ? 'precommit' : undefined;
  if (type === undefined || BigInt(v.height) < 1n) return undefined;
  return { type, height: BigInt(v.height), round: v.round, blockId: blockIdOf(v.block_id), timestamp: timestampOf(v.timestamp) };
}

function proposalToSign(c: ProposalCase): ProposalToSign {
  const p = c.inputs.proposal;
  return {
    height: BigInt(p.height),
    round: p.round,
    polRound: p.pol_round,
    blockId: blockIdOf(p.block_id),
    timestamp: timestampOf(p.timestamp),
  };
}

// --- proto JSON (as in the vector file) → the codec's typed message, with Go's zero values ---

type J = Record<string, unknown>;
const str = (v: unknown): string => (v === undefined ? '' : (v as string));
const num = (v: unknown): number => (v === undefined ? 0 : (v as number));
const bytes = (v: unknown): Uint8Array => (v === undefined ? new Uint8Array(0) : hex(v as string));

function zeroFilledBlockId(j: unknown): BlockId {
  const b = (j ?? {}) as J;
  const psh = (b.part_set_header ?? {}) as J;
  return { hash: bytes(b.hash), partSetHeader: { total: num(psh.total), hash: bytes(psh.hash) } };
}

function timestampOrZero(j: unknown): Timestamp {
  if (j === undefined) return { ...GO_ZERO_TIME };
  const t = j as J;
  return { seconds: BigInt(str(t.seconds) || '0'), nanos: num(t.nanos) };
}

function voteOf(j: unknown): Vote {
  const v = (j ?? {}) as J;
  return {
    type: num(v.type),
    height: BigInt(str(v.height) || '0'),
    round: num(v.round),
    blockId: zeroFilledBlockId(v.block_id),
    timestamp: timestampOrZero(v.timestamp),
    validatorAddress: bytes(v.validator_address),
    validatorIndex: num(v.validator_index),
    signature: bytes(v.signature),
    extension: new Uint8Array(0),
    extensionSignature: new Uint8Array(0),
  };
}

function proposalOf(j: unknown): Proposal {
  const p = (j ?? {}) as J;
  return {
    type: num(p.type),
    height: BigInt(str(p.height) || '0'),
    round: num(p.round),
    polRound: num(p.pol_round),
    blockId: zeroFilledBlockId(p.block_id),
    timestamp: timestampOrZero(p.timestamp),
    signature: bytes(p.signature),
  };
}

function errorOf(j: unknown): RemoteSignerError | undefined {
  if (j === undefined) return undefined;
  const e = j as J;
  return { code: num(e.code), description: str(e.description) };
}

function pubKeyOf(j: unknown): PublicKey | undefined {
  const k = (j ?? {}) as J;
  const entries = Object.entries(k);
  assert.ok(entries.length <= 1, 'one PublicKey oneof case at most');
  if (entries.length === 0) return undefined;
  const [type, value] = entries[0]!;
  return { type, bytes: bytes(value) };
}

/**
 * What a v0.34/v0.37 node means by the message. Non-nullable fields the JSON leaves out
 * (SignedVoteResponse.vote, SignedProposalResponse.proposal) are Go's zero values, which
 * Go writes and the codec decodes as present.
 */
function expectedMessage(m: JsonMessage): PrivvalMessage {
  const keys = Object.keys(m);
  assert.equal(keys.length, 1, 'one Message oneof case');
  const kind = keys[0]!;
  const body = m[kind]!;
  switch (kind) {
    case 'pub_key_request':
      return { kind, chainId: str(body.chain_id) };
    case 'pub_key_response':
      return { kind, pubKey: pubKeyOf(body.pub_key), error: errorOf(body.error) };
    case 'sign_vote_request':
      return { kind, vote: body.vote === undefined ? undefined : voteOf(body.vote), chainId: str(body.chain_id), skipExtensionSigning: false };
    case 'signed_vote_response':
      return { kind, vote: voteOf(body.vote), error: errorOf(body.error) };
    case 'sign_proposal_request':
      return { kind, proposal: body.proposal === undefined ? undefined : proposalOf(body.proposal), chainId: str(body.chain_id) };
    case 'signed_proposal_response':
      return { kind, proposal: proposalOf(body.proposal), error: errorOf(body.error) };
    case 'ping_request':
    case 'ping_response':
      return { kind };
    default:
      throw new Error(`no mapping for privval case ${kind}`);
  }
}

// ---------------------------------------------------------------------------

test('legacy vector file: provenance names upstream commits and files, both versions present, all cross-checks passed', () => {
  const p = doc.provenance;
  assert.equal(p.generator, 'scripts/derive-cometbft-legacy-vectors.ts');
  assert.match(p.protobufjs_version, /^\d+\.\d+\.\d+$/);
  assert.match(p.generated_at, /^\d{4}-\d{2}-\d{2}$/);
  assert.equal(p.v034_cases_equal_v037_cases, true);
  assert.equal(p.shared_v038_vectors_all_matched, true);
  for (const v of VERSIONS) {
    const up = p.upstream[v];
    assert.ok(up, `provenance for ${v}`);
    assert.match(up.commit, /^[0-9a-f]{40}$/);
    assert.ok(up.tag.startsWith(`${v}.`), `${v} comes from a ${v}.x tag, not ${up.tag}`);
    const block = doc.versions[v];
    assert.ok(block, `cases for ${v}`);
    assert.equal(block.source.commit, up.commit);
    const files = block.source.proto_files.map((f) => f.path);
    for (const f of ['tendermint/types/canonical.proto', 'tendermint/types/types.proto', 'tendermint/privval/types.proto', 'tendermint/crypto/keys.proto']) {
      assert.ok(files.includes(f), `${v} loaded ${f}`);
    }
    assert.ok(block.vote_cases.length >= 6 && block.proposal_cases.length >= 3 && block.privval_cases.length >= 6);
    assert.ok(block.shared_v038_cross_check?.all_matched, `${v}: shared v0.38 sign-bytes vectors re-encoded identically`);
    for (const c of [...block.vote_cases, ...block.proposal_cases]) {
      if (c.shared_vector_id !== undefined) assert.equal(c.shared_vector_matched, true, `${v} ${c.id} vs shared ${c.shared_vector_id}`);
    }
    // The upstream Go test vectors (privval/msgs_test.go) were reproduced by the generator.
    for (const c of block.privval_cases) {
      if (c.go_expected_body_hex !== undefined) assert.equal(c.body_hex, c.go_expected_body_hex, `${v} ${c.id}`);
    }
  }
});

for (const v of VERSIONS) {
  test(`${v}: voteSignBytes gives the upstream CanonicalVote sign bytes (and refuses what a node never signs)`, () => {
    const cases = doc.versions[v]!.vote_cases;
    let encoded = 0;
    for (const c of cases) {
      const vote = voteToSign(c);
      if (vote === undefined) {
        // Go's zero Vote{} and type-0 vectors (types/vote_test.go): kept for provenance;
        // our encoder refuses them before producing any byte.
        assert.throws(
          () => voteSignBytes(c.inputs.chain_id, { ...voteToSignLoose(c) }),
          (e: unknown) => e instanceof CustosError && e.code === 'bad_request',
          `${v} ${c.id} is refused`,
        );
        continue;
      }
      assert.equal(toHex(voteSignBytes(c.inputs.chain_id, vote)), c.sign_bytes_hex, `${v} ${c.id}`);
      encoded++;
    }
    assert.ok(encoded >= 6, `${v}: ${encoded} vote cases encoded`);
  });

  test(`${v}: proposalSignBytes gives the upstream CanonicalProposal sign bytes`, () => {
    const cases = doc.versions[v]!.proposal_cases;
    for (const c of cases) {
      assert.equal(toHex(proposalSignBytes(c.inputs.chain_id, proposalToSign(c))), c.sign_bytes_hex, `${v} ${c.id}`);
    }
    assert.ok(cases.length >= 3);
  });

  test(`${v}: privval messages decode in the '${DIALECT}' dialect and re-encode byte for byte`, () => {
    const cases = doc.versions[v]!.privval_cases;
    for (const c of cases) {
      const body = hex(c.body_hex);
      const framed = hex(c.framed_hex);
      const decoded = decodeMessage(body, DIALECT);
      assert.deepEqual(decoded, expectedMessage(c.message), `${v} ${c.id}: decoded message`);
      assert.equal(toHex(encodeMessage(decoded, DIALECT)), c.body_hex, `${v} ${c.id}: decode → encode`);
      assert.equal(toHex(encodeMessage(expectedMessage(c.message), DIALECT)), c.body_hex, `${v} ${c.id}: encode from inputs`);
      assert.equal(toHex(encodeFramedMessage(decoded, DIALECT)), c.framed_hex, `${v} ${c.id}: framing`);
      assert.deepEqual(decodeFramedMessage(framed, DIALECT), decoded, `${v} ${c.id}: framed decode`);
    }
    assert.ok(cases.length >= 6);
  });
}

/** A case's vote as typed input even when its values are out of range (for the refusal check). */
function voteToSignLoose(c: VoteCase): VoteToSign {
  const v = c.inputs.vote;
  return {
    type: (v.type === 1 ? 'prevote' : v.type === 2 ? 'precommit' : `type-${v.type}`) as VoteToSign['type'],
    height: BigInt(v.height),
    round: v.round,
    blockId: blockIdOf(v.block_id),
    timestamp: timestampOf(v.timestamp),
  };
}
