/**
 * CometBFT canonical sign bytes against the vectors in the shared folder
 * (`<repo>/../shared/vectors/cometbft/sign_bytes/`, see its PROVENANCE.md): upstream
 * encodings from cometbft, tmkms, tendermint-rs and a Horcrux state file, and derived
 * cases with Ed25519 and secp256k1 signatures. The vectors are read in place and never
 * copied into this repository.
 *
 * Property tests decode the output with an independent protobuf reader written here, so
 * field numbers, wire types and proto3 omission are checked for random inputs too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import fc from 'fast-check';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { CustosError } from '../../../src/core/errors.js';
import {
  MAX_CHAIN_ID_BYTES,
  MAX_VOTE_EXTENSION_BYTES,
  proposalSignBytes,
  voteExtensionSignBytes,
  voteSignBytes,
  type BlockId,
  type ProposalToSign,
  type Timestamp,
  type VoteExtensionToSign,
  type VoteToSign,
} from '../../../src/frontends/privval/sign-bytes.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const ascii = (s: string) => new TextEncoder().encode(s);

// ---------------------------------------------------------------------------
// Vectors from the shared folder
// ---------------------------------------------------------------------------

const REPO_ROOT = new URL('../../../', import.meta.url);
const VECTOR_DIR = new URL('../shared/vectors/cometbft/sign_bytes/', REPO_ROOT);
const UPSTREAM_FILE = new URL('upstream_sign_bytes.json', VECTOR_DIR);
const DERIVED_FILE = new URL('derived_sign_bytes_and_signatures.json', VECTOR_DIR);
const HAVE_VECTORS = fs.existsSync(fileURLToPath(UPSTREAM_FILE)) && fs.existsSync(fileURLToPath(DERIVED_FILE));
const SKIP_VECTORS = HAVE_VECTORS
  ? false
  : `CometBFT sign-bytes vectors not found at ${fileURLToPath(VECTOR_DIR)}; they come from the shared folder ` +
    '(<repo>/../shared/vectors/cometbft/sign_bytes) and are never copied into the repo';

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
  kind: 'CanonicalVote' | 'CanonicalProposal';
  chain_id: string;
  type: number;
  height: number;
  round: number;
  pol_round?: number;
  block_id: JsonBlockId | null;
  timestamp: JsonTimestamp;
  length_prefixed: boolean;
  expected_hex: string;
}
interface DerivedCase {
  id: string;
  kind: 'CanonicalVote' | 'CanonicalProposal' | 'CanonicalVoteExtension';
  inputs: {
    chain_id: string;
    type?: number;
    height: number;
    round: number;
    pol_round?: number;
    block_id?: JsonBlockId | null;
    timestamp?: JsonTimestamp;
    extension_ascii?: string;
  };
  sign_bytes_hex: string;
  ed25519_signature_hex: string;
  secp256k1_signature_hex: string;
}
interface DerivedFile {
  keys: {
    ed25519: { seed_hex: string; pubkey_hex: string };
    secp256k1: { privkey_hex: string; pubkey_compressed_hex: string };
  };
  cases: DerivedCase[];
}

function readJson<T>(url: URL): T {
  return JSON.parse(fs.readFileSync(url, 'utf8')) as T;
}

function toBlockId(j: JsonBlockId | null | undefined): BlockId | null {
  if (j === null || j === undefined) return null;
  return { hash: hex(j.hash), partSetHeader: { total: j.part_set_header.total, hash: hex(j.part_set_header.hash) } };
}

function toTimestamp(j: JsonTimestamp): Timestamp {
  return { seconds: BigInt(j.seconds), nanos: j.nanos };
}

function voteTypeOf(n: number | undefined): VoteToSign['type'] {
  if (n === 1) return 'prevote';
  if (n === 2) return 'precommit';
  throw new Error(`not a vote type: ${n}`);
}

/** Strips and checks the uvarint length prefix, for vectors of the bare Canonical* encoding. */
function withoutLengthPrefix(b: Uint8Array): Uint8Array {
  const r = new Reader(b);
  const n = r.varint();
  assert.equal(n, BigInt(b.length - r.offset), 'length prefix equals the body length');
  return b.subarray(r.offset);
}

/**
 * CometBFT's own test vectors include votes of type 0 (SignedMsgType UNKNOWN), which
 * only show that proto3 omits the field. A signer never signs such a vote and the typed
 * API cannot express one: for those the test checks that the API refuses the type.
 */
const UNSIGNABLE_TYPE = 0;

test('upstream vectors: our sign bytes equal CometBFT, tmkms, tendermint-rs and Horcrux bytes', { skip: SKIP_VECTORS }, async (t) => {
  const file = readJson<{ cases: UpstreamCase[] }>(UPSTREAM_FILE);
  assert.equal(file.cases.length, 16, 'the vector file holds the 16 cases PROVENANCE.md lists');
  let checked = 0;
  for (const c of file.cases) {
    await t.test(c.id, (tc) => {
      if (c.kind === 'CanonicalVote' && c.type === UNSIGNABLE_TYPE) {
        assert.throws(
          () => voteSignBytes(c.chain_id, { type: 'unknown' as never, height: 1n, round: c.round, blockId: toBlockId(c.block_id), timestamp: toTimestamp(c.timestamp) }),
          (e: unknown) => (e as { code?: string }).code === 'bad_request',
          'a type 0 (UNKNOWN) vote is not signable',
        );
        return;
      }
      let got: Uint8Array;
      if (c.kind === 'CanonicalVote') {
        got = voteSignBytes(c.chain_id, {
          type: voteTypeOf(c.type),
          height: BigInt(c.height),
          round: c.round,
          blockId: toBlockId(c.block_id),
          timestamp: toTimestamp(c.timestamp),
        });
      } else {
        assert.equal(c.type, 32);
        assert.ok(c.pol_round !== undefined);
        got = proposalSignBytes(c.chain_id, {
          height: BigInt(c.height),
          round: c.round,
          polRound: c.pol_round,
          blockId: toBlockId(c.block_id),
          timestamp: toTimestamp(c.timestamp),
        });
      }
      assert.equal(toHex(c.length_prefixed ? got : withoutLengthPrefix(got)), c.expected_hex);
      checked++;
    });
  }
  assert.equal(checked, 12, 'every upstream vector except the four type-0 votes is checked');
});

function derivedSignBytes(c: DerivedCase): Uint8Array {
  const i = c.inputs;
  switch (c.kind) {
    case 'CanonicalVote':
      assert.ok(i.timestamp);
      return voteSignBytes(i.chain_id, {
        type: voteTypeOf(i.type),
        height: BigInt(i.height),
        round: i.round,
        blockId: toBlockId(i.block_id),
        timestamp: toTimestamp(i.timestamp),
      });
    case 'CanonicalProposal':
      assert.ok(i.timestamp && i.pol_round !== undefined);
      assert.equal(i.type, 32);
      return proposalSignBytes(i.chain_id, {
        height: BigInt(i.height),
        round: i.round,
        polRound: i.pol_round,
        blockId: toBlockId(i.block_id),
        timestamp: toTimestamp(i.timestamp),
      });
    case 'CanonicalVoteExtension':
      assert.ok(i.extension_ascii !== undefined);
      return voteExtensionSignBytes(i.chain_id, { height: BigInt(i.height), round: i.round, extension: ascii(i.extension_ascii) });
  }
}

test('derived vectors: sign bytes match and the listed Ed25519 and secp256k1 signatures verify over them', { skip: SKIP_VECTORS }, async (t) => {
  const file = readJson<DerivedFile>(DERIVED_FILE);
  assert.equal(file.cases.length, 10);

  // RFC 8410 DER wrappers around the raw 32-byte Ed25519 seed and public key.
  const edPriv = createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), hex(file.keys.ed25519.seed_hex)]),
    format: 'der',
    type: 'pkcs8',
  });
  const edPub = createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), hex(file.keys.ed25519.pubkey_hex)]),
    format: 'der',
    type: 'spki',
  });
  assert.equal(
    toHex(createPublicKey(edPriv).export({ format: 'der', type: 'spki' }).subarray(12)),
    file.keys.ed25519.pubkey_hex,
    'the Ed25519 seed belongs to the listed public key',
  );
  const kPriv = hex(file.keys.secp256k1.privkey_hex);
  const kPub = hex(file.keys.secp256k1.pubkey_compressed_hex);
  assert.equal(toHex(secp256k1.getPublicKey(kPriv, true)), file.keys.secp256k1.pubkey_compressed_hex);

  for (const c of file.cases) {
    await t.test(c.id, () => {
      const bytes = derivedSignBytes(c);
      assert.equal(toHex(bytes), c.sign_bytes_hex);

      const edSig = hex(c.ed25519_signature_hex);
      assert.ok(nodeVerify(null, bytes, edPub, edSig), 'Ed25519 signature verifies');
      // Ed25519 is deterministic (RFC 8032 §5.1.6), so re-signing must give the same bytes.
      assert.equal(toHex(nodeSign(null, bytes, edPriv)), c.ed25519_signature_hex);

      // CometBFT secp256k1: ECDSA over SHA-256(sign bytes), 64-byte r‖s, low-S
      // (crypto/secp256k1 Sign). noble hashes with SHA-256 by default (prehash).
      const kSig = hex(c.secp256k1_signature_hex);
      assert.ok(secp256k1.verify(kSig, bytes, kPub, { prehash: true, lowS: true }), 'secp256k1 signature verifies');
      assert.equal(toHex(secp256k1.sign(bytes, kPriv, { prehash: true, lowS: true })), c.secp256k1_signature_hex);
    });
  }
});

// ---------------------------------------------------------------------------
// An independent protobuf reader for the property tests
// ---------------------------------------------------------------------------

class Reader {
  offset = 0;
  constructor(private readonly b: Uint8Array) {}
  get done(): boolean {
    return this.offset >= this.b.length;
  }
  varint(): bigint {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const byte = this.b[this.offset++];
      if (byte === undefined) throw new Error('truncated varint');
      v |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return v;
    }
    throw new Error('varint too long');
  }
  take(n: number): Uint8Array {
    if (this.offset + n > this.b.length) throw new Error('truncated field');
    const out = this.b.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }
}

type Field = { field: number; varint?: bigint; fixed64?: bigint; bytes?: Uint8Array };

/** Decodes one message into its fields, in wire order; only the wire types CometBFT's canonical messages use. */
function fields(b: Uint8Array): Field[] {
  const r = new Reader(b);
  const out: Field[] = [];
  while (!r.done) {
    const key = r.varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (wire === 0) out.push({ field, varint: r.varint() });
    else if (wire === 1) out.push({ field, fixed64: new DataView(r.take(8).slice().buffer).getBigInt64(0, true) });
    else if (wire === 2) out.push({ field, bytes: r.take(Number(r.varint())).slice() });
    else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

function byNumber(fs: Field[]): Map<number, Field> {
  const m = new Map<number, Field>();
  let last = 0;
  for (const f of fs) {
    assert.ok(f.field > last, 'fields are written once each, in field-number order');
    last = f.field;
    m.set(f.field, f);
  }
  return m;
}

function decodeTimestamp(b: Uint8Array): Timestamp {
  const m = byNumber(fields(b));
  return {
    seconds: BigInt.asIntN(64, m.get(1)?.varint ?? 0n),
    nanos: Number(BigInt.asIntN(32, m.get(2)?.varint ?? 0n)),
  };
}

function isZeroBlockId(b: BlockId | null): boolean {
  return b === null || (b.hash.length === 0 && b.partSetHeader.total === 0 && b.partSetHeader.hash.length === 0);
}

function checkBlockIdField(f: Field | undefined, want: BlockId | null): void {
  if (isZeroBlockId(want)) {
    assert.equal(f, undefined, 'a zero block ID is omitted');
    return;
  }
  assert.ok(f?.bytes, 'a non-zero block ID is present');
  const m = byNumber(fields(f.bytes));
  assert.deepEqual(m.get(1)?.bytes ?? new Uint8Array(), want!.hash);
  const psh = m.get(2)?.bytes;
  assert.ok(psh, 'the part-set header is always present inside a block ID');
  const pm = byNumber(fields(psh));
  assert.equal(pm.get(1)?.varint ?? 0n, BigInt(want!.partSetHeader.total));
  assert.deepEqual(pm.get(2)?.bytes ?? new Uint8Array(), want!.partSetHeader.hash);
}

/** Checks the parts shared by all three messages and returns the body's fields. */
function body(signBytes: Uint8Array): Map<number, Field> {
  return byNumber(fields(withoutLengthPrefix(signBytes)));
}

function checkScalar(f: Field | undefined, kind: 'varint' | 'fixed64', want: bigint): void {
  if (want === 0n) assert.equal(f, undefined, 'zero scalars are omitted');
  else {
    const got = f?.[kind];
    assert.ok(got !== undefined, `field is a ${kind}`);
    assert.equal(kind === 'varint' ? BigInt.asIntN(64, got) : got, want);
  }
}

function checkChainField(f: Field | undefined, chainId: string): void {
  assert.equal(new TextDecoder().decode(f?.bytes ?? new Uint8Array()), chainId);
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

const INT64_MAX = 2n ** 63n - 1n;
const INT32_MAX = 2 ** 31 - 1;

const arbHash = fc.oneof(fc.constant(new Uint8Array()), fc.uint8Array({ minLength: 32, maxLength: 32 }));
const arbBlockId: fc.Arbitrary<BlockId | null> = fc.oneof(
  fc.constant(null),
  fc.record({
    hash: arbHash,
    partSetHeader: fc.record({ total: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 32 - 1 })), hash: arbHash }),
  }),
);
const arbTimestamp: fc.Arbitrary<Timestamp> = fc.record({
  seconds: fc.oneof(fc.constant(0n), fc.constant(-62135596800n), fc.bigInt({ min: -62135596800n, max: 253402300799n })),
  nanos: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 999_999_999 })),
});
const arbHeight = fc.oneof(fc.constant(1n), fc.constant(INT64_MAX), fc.bigInt({ min: 1n, max: INT64_MAX }));
const arbRound = fc.oneof(fc.constant(0), fc.constant(INT32_MAX), fc.integer({ min: 0, max: INT32_MAX }));
const arbChainId = fc
  .string({ unit: 'grapheme', maxLength: MAX_CHAIN_ID_BYTES })
  .filter((s) => Buffer.byteLength(s, 'utf8') <= MAX_CHAIN_ID_BYTES);

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
const arbExtension: fc.Arbitrary<VoteExtensionToSign> = fc.record({
  height: arbHeight,
  round: arbRound,
  extension: fc.uint8Array({ maxLength: 300 }),
});

test('vote sign bytes never throw for valid input, are deterministic, and decode back to the vote', () => {
  fc.assert(
    fc.property(arbChainId, arbVote, (chainId, vote) => {
      const a = voteSignBytes(chainId, vote);
      assert.deepEqual(voteSignBytes(chainId, structuredClone(vote)), a);
      const m = body(a);
      assert.equal(m.get(1)?.varint, vote.type === 'prevote' ? 1n : 2n);
      checkScalar(m.get(2), 'fixed64', vote.height);
      checkScalar(m.get(3), 'fixed64', BigInt(vote.round));
      checkBlockIdField(m.get(4), vote.blockId);
      const ts = m.get(5)?.bytes;
      assert.ok(ts, 'the timestamp is always present');
      assert.deepEqual(decodeTimestamp(ts), { seconds: vote.timestamp.seconds, nanos: vote.timestamp.nanos });
      checkChainField(m.get(6), chainId);
      assert.deepEqual([...m.keys()].filter((k) => k > 6), []);
    }),
    { numRuns: 500 },
  );
});

test('proposal sign bytes never throw for valid input, are deterministic, and decode back to the proposal', () => {
  fc.assert(
    fc.property(arbChainId, arbProposal, (chainId, p) => {
      const a = proposalSignBytes(chainId, p);
      assert.deepEqual(proposalSignBytes(chainId, structuredClone(p)), a);
      const m = body(a);
      assert.equal(m.get(1)?.varint, 32n);
      checkScalar(m.get(2), 'fixed64', p.height);
      checkScalar(m.get(3), 'fixed64', BigInt(p.round));
      checkScalar(m.get(4), 'varint', BigInt(p.polRound));
      checkBlockIdField(m.get(5), p.blockId);
      const ts = m.get(6)?.bytes;
      assert.ok(ts, 'the timestamp is always present');
      assert.deepEqual(decodeTimestamp(ts), { seconds: p.timestamp.seconds, nanos: p.timestamp.nanos });
      checkChainField(m.get(7), chainId);
      assert.deepEqual([...m.keys()].filter((k) => k > 7), []);
    }),
    { numRuns: 500 },
  );
});

test('vote extension sign bytes never throw for valid input, are deterministic, and decode back to the extension', () => {
  fc.assert(
    fc.property(arbChainId, arbExtension, (chainId, e) => {
      const a = voteExtensionSignBytes(chainId, e);
      assert.deepEqual(voteExtensionSignBytes(chainId, structuredClone(e)), a);
      const m = body(a);
      assert.deepEqual(m.get(1)?.bytes ?? new Uint8Array(), e.extension);
      checkScalar(m.get(2), 'fixed64', e.height);
      checkScalar(m.get(3), 'fixed64', BigInt(e.round));
      checkChainField(m.get(4), chainId);
      assert.deepEqual([...m.keys()].filter((k) => k > 4), []);
    }),
    { numRuns: 300 },
  );
});

function assertBadRequest(fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => e instanceof CustosError && e.code === 'bad_request');
}

const validVote: VoteToSign = {
  type: 'precommit',
  height: 10n,
  round: 0,
  blockId: { hash: new Uint8Array(32).fill(1), partSetHeader: { total: 1, hash: new Uint8Array(32).fill(2) } },
  timestamp: { seconds: 1_700_000_000n, nanos: 5 },
};
const validProposal: ProposalToSign = { ...validVote, round: 1, polRound: -1 };
const validExtension: VoteExtensionToSign = { height: 10n, round: 0, extension: ascii('ext') };

const arbBadHeight = fc.oneof(
  fc.constant(0n),
  fc.constant(-1n),
  fc.constant(2n ** 63n),
  fc.bigInt({ min: -(2n ** 70n), max: 0n }),
  fc.bigInt({ min: 2n ** 63n, max: 2n ** 70n }),
);
const arbBadRound = fc.oneof(
  fc.constant(-1),
  fc.constant(2 ** 31),
  fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 }),
  fc.integer({ min: 2 ** 31, max: Number.MAX_SAFE_INTEGER }),
  fc.double({ noInteger: true }),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
);

test('heights outside 1..2^63-1 are refused with bad_request by all three encoders', () => {
  fc.assert(
    fc.property(arbBadHeight, (height) => {
      assertBadRequest(() => voteSignBytes('c', { ...validVote, height }));
      assertBadRequest(() => proposalSignBytes('c', { ...validProposal, height }));
      assertBadRequest(() => voteExtensionSignBytes('c', { ...validExtension, height }));
    }),
  );
  // A JS number is not accepted as a height: it cannot carry every int64 exactly.
  assertBadRequest(() => voteSignBytes('c', { ...validVote, height: 10 as unknown as bigint }));
});

test('rounds outside 0..2^31-1 (and POL rounds below -1) are refused with bad_request', () => {
  fc.assert(
    fc.property(arbBadRound, (round) => {
      assertBadRequest(() => voteSignBytes('c', { ...validVote, round }));
      assertBadRequest(() => proposalSignBytes('c', { ...validProposal, round }));
      assertBadRequest(() => voteExtensionSignBytes('c', { ...validExtension, round }));
      if (round !== -1) assertBadRequest(() => proposalSignBytes('c', { ...validProposal, polRound: round }));
    }),
  );
  assertBadRequest(() => proposalSignBytes('c', { ...validProposal, polRound: -2 }));
  assertBadRequest(() => voteSignBytes('c', { ...validVote, round: 10n as unknown as number }));
});

test('other out-of-range fields are refused with bad_request', () => {
  const bid = validVote.blockId!;
  const cases: Array<[string, () => unknown]> = [
    ['vote type', () => voteSignBytes('c', { ...validVote, type: 'proposal' as unknown as 'prevote' })],
    ['chain ID over 50 bytes', () => voteSignBytes('c'.repeat(51), validVote)],
    ['chain ID of 17 three-byte characters', () => voteSignBytes('€'.repeat(17), validVote)],
    ['lone surrogate in chain ID', () => voteSignBytes('a\ud800', validVote)],
    ['31-byte block hash', () => voteSignBytes('c', { ...validVote, blockId: { ...bid, hash: new Uint8Array(31) } })],
    [
      '33-byte part-set hash',
      () => voteSignBytes('c', { ...validVote, blockId: { ...bid, partSetHeader: { total: 1, hash: new Uint8Array(33) } } }),
    ],
    ['part-set total 2^32', () => voteSignBytes('c', { ...validVote, blockId: { ...bid, partSetHeader: { ...bid.partSetHeader, total: 2 ** 32 } } })],
    ['negative part-set total', () => voteSignBytes('c', { ...validVote, blockId: { ...bid, partSetHeader: { ...bid.partSetHeader, total: -1 } } })],
    ['nanos = 1e9', () => voteSignBytes('c', { ...validVote, timestamp: { seconds: 0n, nanos: 1_000_000_000 } })],
    ['negative nanos', () => voteSignBytes('c', { ...validVote, timestamp: { seconds: 0n, nanos: -1 } })],
    ['seconds before year 1', () => voteSignBytes('c', { ...validVote, timestamp: { seconds: -62135596801n, nanos: 0 } })],
    ['seconds after year 9999', () => proposalSignBytes('c', { ...validProposal, timestamp: { seconds: 253402300800n, nanos: 0 } })],
    ['missing timestamp', () => voteSignBytes('c', { ...validVote, timestamp: undefined as unknown as Timestamp })],
    ['oversized extension', () => voteExtensionSignBytes('c', { ...validExtension, extension: new Uint8Array(MAX_VOTE_EXTENSION_BYTES + 1) })],
    ['extension given as a string', () => voteExtensionSignBytes('c', { ...validExtension, extension: 'x' as unknown as Uint8Array })],
  ];
  for (const [what, fn] of cases) {
    assert.throws(fn, (e: unknown) => e instanceof CustosError && e.code === 'bad_request', what);
  }
  // The bounds themselves are accepted.
  voteSignBytes('c'.repeat(MAX_CHAIN_ID_BYTES), validVote);
  voteExtensionSignBytes('c', { ...validExtension, extension: new Uint8Array(MAX_VOTE_EXTENSION_BYTES) });
});

test('an all-zero block ID is signed as a vote for nil, like CometBFT canonicalizeBlockID', () => {
  const zero: BlockId = { hash: new Uint8Array(), partSetHeader: { total: 0, hash: new Uint8Array() } };
  assert.deepEqual(voteSignBytes('c', { ...validVote, blockId: zero }), voteSignBytes('c', { ...validVote, blockId: null }));
});
