/**
 * Decoding CometBFT canonical sign bytes (crypto/cometbft/sign-bytes-decode.ts): the shared
 * vectors decode to their inputs (read in place from `<repo>/../shared/vectors/cometbft/
 * sign_bytes/`, never copied here); random votes and proposals survive encode → decode;
 * random bytes, every truncation and random mutations either decode to a message that
 * encodes back to exactly those bytes or throw SignBytesDecodeError, never anything else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import {
  MAX_SIGN_BYTES,
  SignBytesDecodeError,
  decodeSignBytes,
  stepOf,
  type CanonicalMessage,
} from '../../src/crypto/cometbft/sign-bytes-decode.js';
import {
  MAX_CHAIN_ID_BYTES,
  proposalSignBytes,
  voteExtensionSignBytes,
  voteSignBytes,
  type BlockId,
  type ProposalToSign,
  type Timestamp,
  type VoteToSign,
} from '../../src/crypto/cometbft/sign-bytes.js';
import { ProtoWriter, lengthDelimited } from '../../src/crypto/protobuf/writer.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));

const VECTOR_DIR = new URL('../shared/vectors/cometbft/sign_bytes/', new URL('../../', import.meta.url));
const UPSTREAM_FILE = new URL('upstream_sign_bytes.json', VECTOR_DIR);
const DERIVED_FILE = new URL('derived_sign_bytes_and_signatures.json', VECTOR_DIR);
const SKIP_VECTORS =
  fs.existsSync(fileURLToPath(UPSTREAM_FILE)) && fs.existsSync(fileURLToPath(DERIVED_FILE))
    ? false
    : `CometBFT sign-bytes vectors not found at ${fileURLToPath(VECTOR_DIR)}; they are read from the shared folder (<repo>/../shared/vectors/cometbft/sign_bytes) and never copied into the repo`;

interface JsonBlockId {
  hash: string;
  part_set_header: { total: number; hash: string };
}
interface JsonInputs {
  chain_id: string;
  type?: number;
  height: number;
  round: number;
  pol_round?: number;
  block_id?: JsonBlockId | null;
  timestamp?: { seconds: number; nanos: number };
}

function toBlockId(j: JsonBlockId | null | undefined): BlockId | null {
  if (!j) return null;
  return { hash: hex(j.hash), partSetHeader: { total: j.part_set_header.total, hash: hex(j.part_set_header.hash) } };
}

/** What a vector should decode to; undefined where CometBFT could never ask a signer for it. */
function expected(kind: string, i: JsonInputs): CanonicalMessage | undefined {
  if (i.height < 1 || !i.timestamp) return undefined;
  const timestamp = { seconds: BigInt(i.timestamp.seconds), nanos: i.timestamp.nanos };
  if (kind === 'CanonicalVote' && (i.type === 1 || i.type === 2)) {
    return { kind: 'vote', chainId: i.chain_id, vote: { type: i.type === 1 ? 'prevote' : 'precommit', height: BigInt(i.height), round: i.round, blockId: toBlockId(i.block_id), timestamp } };
  }
  if (kind === 'CanonicalProposal') {
    return { kind: 'proposal', chainId: i.chain_id, proposal: { height: BigInt(i.height), round: i.round, polRound: i.pol_round!, blockId: toBlockId(i.block_id), timestamp } };
  }
  return undefined;
}

function isDecodeError(e: unknown): boolean {
  return e instanceof SignBytesDecodeError && e.code === 'bad_request' && ['truncated', 'malformed', 'non_canonical'].includes(e.failure);
}

test('shared vectors: every signable canonical vote and proposal decodes to its inputs and step; vote extensions, type-0 votes and bare bodies are refused', { skip: SKIP_VECTORS }, () => {
  const upstream = JSON.parse(fs.readFileSync(UPSTREAM_FILE, 'utf8')) as { cases: Array<JsonInputs & { id: string; kind: string; length_prefixed: boolean; expected_hex: string }> };
  const derived = JSON.parse(fs.readFileSync(DERIVED_FILE, 'utf8')) as { cases: Array<{ id: string; kind: string; inputs: JsonInputs; sign_bytes_hex: string }> };
  const all = [
    ...upstream.cases.map((c) => ({ id: c.id, kind: c.kind, inputs: c as JsonInputs, bytes: hex(c.expected_hex), prefixed: c.length_prefixed })),
    ...derived.cases.map((c) => ({ id: c.id, kind: c.kind, inputs: c.inputs, bytes: hex(c.sign_bytes_hex), prefixed: true })),
  ];
  let decoded = 0;
  for (const c of all) {
    const want = c.prefixed ? expected(c.kind, c.inputs) : undefined;
    if (!want) {
      assert.throws(() => decodeSignBytes(c.bytes), isDecodeError, c.id);
      continue;
    }
    const got = decodeSignBytes(c.bytes);
    assert.deepEqual(got, want, c.id);
    const type = c.inputs.type;
    assert.equal(stepOf(got), type === 32 ? 1 : type === 1 ? 2 : 3, c.id);
    decoded++;
  }
  // 12 signable upstream encodings (2 of them are bare bodies without the prefix) + 8 derived votes/proposals.
  assert.equal(decoded, 10 + 8);
});

const INT64_MAX = 2n ** 63n - 1n;
const INT32_MAX = 2 ** 31 - 1;
const arbHash = fc.oneof(fc.constant(new Uint8Array()), fc.uint8Array({ minLength: 32, maxLength: 32 }));
const arbBlockId: fc.Arbitrary<BlockId | null> = fc.oneof(
  fc.constant(null),
  fc.record({ hash: arbHash, partSetHeader: fc.record({ total: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 32 - 1 })), hash: arbHash }) }),
);
const arbTimestamp: fc.Arbitrary<Timestamp> = fc.record({
  seconds: fc.oneof(fc.constant(0n), fc.constant(-62135596800n), fc.bigInt({ min: -62135596800n, max: 253402300799n })),
  nanos: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 999_999_999 })),
});
const arbHeight = fc.oneof(fc.constant(1n), fc.constant(INT64_MAX), fc.bigInt({ min: 1n, max: INT64_MAX }));
const arbRound = fc.oneof(fc.constant(0), fc.constant(INT32_MAX), fc.integer({ min: 0, max: INT32_MAX }));
const arbChainId = fc.string({ unit: 'grapheme', maxLength: MAX_CHAIN_ID_BYTES }).filter((s) => Buffer.byteLength(s, 'utf8') <= MAX_CHAIN_ID_BYTES);
const arbVote: fc.Arbitrary<VoteToSign> = fc.record({
  type: fc.constantFrom('prevote' as const, 'precommit' as const),
  height: arbHeight,
  round: arbRound,
  blockId: arbBlockId,
  timestamp: arbTimestamp,
});
const arbProposal: fc.Arbitrary<ProposalToSign> = fc.record({
  height: arbHeight,
  round: arbRound,
  polRound: fc.oneof(fc.constant(-1), fc.constant(0), fc.integer({ min: -1, max: INT32_MAX })),
  blockId: arbBlockId,
  timestamp: arbTimestamp,
});
const arbMessage: fc.Arbitrary<CanonicalMessage> = fc.oneof(
  fc.record({ kind: fc.constant('vote' as const), chainId: arbChainId, vote: arbVote }),
  fc.record({ kind: fc.constant('proposal' as const), chainId: arbChainId, proposal: arbProposal }),
);

const encode = (m: CanonicalMessage) => (m.kind === 'vote' ? voteSignBytes(m.chainId, m.vote) : proposalSignBytes(m.chainId, m.proposal));

/**
 * CometBFT signs an all-zero block ID as nil (types/canonical.go), so that is what decodes.
 * (structuredClone: fast-check records may have a null prototype, which deepEqual compares.)
 */
function canonical(generated: CanonicalMessage): CanonicalMessage {
  const m = structuredClone(generated);
  const zero = (b: BlockId | null) => b === null || (b.hash.length === 0 && b.partSetHeader.total === 0 && b.partSetHeader.hash.length === 0);
  if (m.kind === 'vote') return { ...m, vote: { ...m.vote, blockId: zero(m.vote.blockId) ? null : m.vote.blockId } };
  return { ...m, proposal: { ...m.proposal, blockId: zero(m.proposal.blockId) ? null : m.proposal.blockId } };
}

/** Decodes or throws SignBytesDecodeError; a success must encode back to exactly the input. */
function decodesOrRefuses(bytes: Uint8Array): void {
  let m: CanonicalMessage;
  try {
    m = decodeSignBytes(bytes);
  } catch (e) {
    assert.ok(isDecodeError(e), `unexpected ${(e as Error)?.name}: ${(e as Error)?.message}`);
    return;
  }
  assert.deepEqual(encode(m), bytes, 'what decodes is exactly what CometBFT would sign');
}

test('property: random votes and proposals survive encode → decode, with the step FilePV gives them', () => {
  fc.assert(
    fc.property(arbMessage, (m) => {
      const got = decodeSignBytes(encode(m));
      assert.deepEqual(got, canonical(m));
      assert.equal(stepOf(got), m.kind === 'proposal' ? 1 : m.vote.type === 'prevote' ? 2 : 3);
    }),
    { numRuns: 500 },
  );
});

test('property: random bytes, and random bodies under a correct length prefix, decode or throw SignBytesDecodeError, nothing else', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: MAX_SIGN_BYTES + 20 }), decodesOrRefuses), { numRuns: 2000 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (body) => decodesOrRefuses(lengthDelimited(body))), { numRuns: 2000 });
});

test('every truncation of a valid encoding throws SignBytesDecodeError', () => {
  fc.assert(
    fc.property(arbMessage, (m) => {
      const bytes = encode(m);
      for (let n = 0; n < bytes.length; n++) assert.throws(() => decodeSignBytes(bytes.subarray(0, n)), isDecodeError, `truncated to ${n} of ${bytes.length}`);
    }),
    { numRuns: 200 },
  );
});

test('property: byte mutations, insertions and deletions of valid encodings decode to exactly themselves or throw SignBytesDecodeError', () => {
  fc.assert(
    fc.property(arbMessage, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), { minLength: 1, maxLength: 4 }), (m, edits) => {
      let bytes = Array.from(encode(m));
      for (const [at, value, op] of edits) {
        const i = at % (bytes.length + 1);
        if (op === 'set' && i < bytes.length) bytes[i] = value;
        else if (op === 'insert') bytes.splice(i, 0, value);
        else if (op === 'delete' && i < bytes.length) bytes.splice(i, 1);
      }
      decodesOrRefuses(Uint8Array.from(bytes));
    }),
    { numRuns: 2000 },
  );
});

test('what CometBFT would never write is refused, saying why', () => {
  const ts = new ProtoWriter().int64(1, 1_700_000_000n);
  const vote = (f: (w: ProtoWriter) => ProtoWriter) => lengthDelimited(f(new ProtoWriter()).finish());
  const good = vote((w) => w.int32(1, 1).sfixed64(2, 5n).message(5, ts).string(6, 'c'));
  assert.deepEqual(decodeSignBytes(good), { kind: 'vote', chainId: 'c', vote: { type: 'prevote', height: 5n, round: 0, blockId: null, timestamp: { seconds: 1_700_000_000n, nanos: 0 } } });
  const cases: Array<[string, Uint8Array, string, RegExp]> = [
    ['fields out of order', vote((w) => w.int32(1, 1).message(5, ts).sfixed64(2, 5n).string(6, 'c')), 'non_canonical', /canonical form/],
    ['an unknown field', vote((w) => w.int32(1, 1).sfixed64(2, 5n).message(5, ts).string(6, 'c').uint32(9, 1)), 'non_canonical', /canonical form/],
    ['an all-zero block ID written out', vote((w) => w.int32(1, 1).sfixed64(2, 5n).message(4, new ProtoWriter().message(2, new ProtoWriter())).message(5, ts).string(6, 'c')), 'non_canonical', /canonical form/],
    ['no timestamp', vote((w) => w.int32(1, 1).sfixed64(2, 5n).string(6, 'c')), 'malformed', /no timestamp/],
    ['height 0', vote((w) => w.int32(1, 1).message(5, ts).string(6, 'c')), 'malformed', /height/],
    ['type 0 first field missing', vote((w) => w.sfixed64(2, 5n).message(5, ts).string(6, 'c')), 'malformed', /type/],
    ['type 3', vote((w) => w.int32(1, 3).sfixed64(2, 5n).message(5, ts).string(6, 'c')), 'malformed', /type 3/],
    ['a negative round', vote((w) => w.int32(1, 1).sfixed64(2, 5n).sfixed64(3, -1n).message(5, ts).string(6, 'c')), 'malformed', /round -1/],
    ['a round beyond int32', vote((w) => w.int32(1, 1).sfixed64(2, 5n).sfixed64(3, 2n ** 31n).message(5, ts).string(6, 'c')), 'malformed', /round/],
    ['a 51-byte chain ID', vote((w) => w.int32(1, 1).sfixed64(2, 5n).message(5, ts).string(6, 'c'.repeat(51))), 'malformed', /chain ID/],
    ['a 31-byte block hash', vote((w) => w.int32(1, 1).sfixed64(2, 5n).message(4, new ProtoWriter().bytes(1, new Uint8Array(31)).message(2, new ProtoWriter())).message(5, ts).string(6, 'c')), 'malformed', /block hash/],
    ['height sent as a varint', vote((w) => w.int32(1, 1).int64(2, 5n).message(5, ts).string(6, 'c')), 'malformed', /wire type/],
    ['a vote extension', voteExtensionSignBytes('c', { height: 5n, round: 0, extension: new Uint8Array([1]) }), 'malformed', /type/],
    ['bytes after the message', Uint8Array.from([...good, 0]), 'malformed', /past their length prefix/],
    ['a length prefix beyond the end', Uint8Array.from([good[0]! + 1, ...good.subarray(1)]), 'truncated', /runs past/],
    ['an overlong length prefix', Uint8Array.from([good[0]! | 0x80, 0x00, ...good.subarray(1)]), 'non_canonical', /canonical form/],
    ['more than MAX_SIGN_BYTES', new Uint8Array(MAX_SIGN_BYTES + 1), 'malformed', /at most/],
    ['nothing', new Uint8Array(0), 'truncated', /ends early/],
  ];
  for (const [what, bytes, failure, re] of cases) {
    assert.throws(
      () => decodeSignBytes(bytes),
      (e: unknown) => e instanceof SignBytesDecodeError && e.failure === failure && e.fullCode === `bad_request:sign_bytes_${failure}` && re.test(e.message),
      what,
    );
  }
});
