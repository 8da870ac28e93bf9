/**
 * CometBFT canonical sign bytes: the exact byte strings a validator key signs for a
 * vote, a proposal and a vote extension. Pure: typed values in, bytes out; no I/O,
 * no keys.
 *
 * Each function builds CometBFT's `CanonicalVote`, `CanonicalProposal` or
 * `CanonicalVoteExtension` (proto/tendermint/types/canonical.proto in v0.38.x,
 * proto/cometbft/types/v1/canonical.proto in v1.x; same field numbers in both) and
 * prefixes it with its uvarint length, as `VoteSignBytes`, `ProposalSignBytes` and
 * `VoteExtensionSignBytes` do through `protoio.MarshalDelimited` (types/vote.go,
 * types/proposal.go). The prefix is a leftover of the Amino encoding that hardware
 * signers still rely on; it is part of what is signed.
 *
 * The v0.38 and v1 wire dialects differ in privval messages, not here: both sign the
 * same bytes.
 *
 * Inputs are checked against the ranges a CometBFT node can produce (its
 * `ValidateBasic` rules); anything else is a `CustosError('bad_request')`, thrown before
 * any byte is produced, so the caller never signs a value it did not mean.
 */
import { CustosError } from '../../core/errors.js';
import { ProtoWriter, lengthDelimited } from '../protobuf/writer.js';

/** `SignedMsgType` (types.proto): the numbers that appear in sign bytes. */
export const SignedMsgType = {
  prevote: 1,
  precommit: 2,
  proposal: 32,
} as const;

export type VoteType = 'prevote' | 'precommit';

/** types/genesis.go `MaxChainIDLen`, counted in bytes (Go `len` of the string). */
export const MAX_CHAIN_ID_BYTES = 50;
/** types/vote.go `MaxVoteExtensionSize`. */
export const MAX_VOTE_EXTENSION_BYTES = 1024 * 1024;
/** tmhash.Size: a block or part-set hash is empty or SHA-256 sized (types/block.go `ValidateHash`). */
export const HASH_BYTES = 32;

const INT64_MAX = 2n ** 63n - 1n;
const INT32_MAX = 2 ** 31 - 1;
const UINT32_MAX = 2 ** 32 - 1;
/**
 * google.protobuf.Timestamp's valid range, 0001-01-01T00:00:00Z to
 * 9999-12-31T23:59:59.999999999Z. The lower bound is also Go's zero `time.Time`, which
 * CometBFT signs when a vote carries no time (types/vote_test.go vectors).
 */
const TIMESTAMP_MIN_SECONDS = -62135596800n;
const TIMESTAMP_MAX_SECONDS = 253402300799n;

export interface PartSetHeader {
  /** uint32 on the wire. */
  total: number;
  hash: Uint8Array;
}

export interface BlockId {
  hash: Uint8Array;
  partSetHeader: PartSetHeader;
}

/**
 * google.protobuf.Timestamp as the node sent it: nanosecond precision, `nanos` in
 * [0, 1e9) also before 1970 (1969-12-31T23:59:59.5Z is seconds −1, nanos 5e8). Never
 * round-trip through `Date`, which keeps milliseconds.
 */
export interface Timestamp {
  seconds: bigint;
  nanos: number;
}

export interface VoteToSign {
  type: VoteType;
  height: bigint;
  round: number;
  /** `null` for a vote for nil. An all-zero BlockId is treated the same, as CometBFT does. */
  blockId: BlockId | null;
  timestamp: Timestamp;
}

export interface ProposalToSign {
  height: bigint;
  round: number;
  /** The proof-of-lock round, −1 when there is none. */
  polRound: number;
  blockId: BlockId | null;
  timestamp: Timestamp;
}

export interface VoteExtensionToSign {
  /** Height and round of the (non-nil) precommit the extension belongs to. */
  height: bigint;
  round: number;
  /** May be empty: an empty extension is still signed (types/vote.go `SignAndCheckVote`). */
  extension: Uint8Array;
}

function bad(message: string): CustosError {
  return new CustosError('bad_request', message);
}

function checkChainId(chainId: unknown): string {
  if (typeof chainId !== 'string' || /\p{Cs}/u.test(chainId)) throw bad('The chain ID must be a well-formed string.');
  // An empty chain ID is representable (proto3 omits it; CometBFT's own vectors use
  // it) and refused only by genesis validation; matching the configured chain is the
  // connector's job, not the encoder's.
  if (Buffer.byteLength(chainId, 'utf8') > MAX_CHAIN_ID_BYTES) {
    throw bad(`The chain ID is longer than ${MAX_CHAIN_ID_BYTES} bytes.`);
  }
  return chainId;
}

/** Vote.ValidateBasic and Proposal.ValidateBasic both refuse heights ≤ 0. */
function checkHeight(height: unknown, what: string): bigint {
  if (typeof height !== 'bigint' || height < 1n || height > INT64_MAX) {
    throw bad(`The ${what} height must be an integer between 1 and 2^63-1.`);
  }
  return height;
}

/**
 * Rounds are int32 in `Vote`/`Proposal` and widened to int64 only for the canonical
 * form (`int64(vote.Round)` in types/canonical.go), so the int32 range is the real one.
 */
function checkRound(round: unknown, what: string, min = 0): number {
  if (typeof round !== 'number' || !Number.isInteger(round) || round < min || round > INT32_MAX) {
    throw bad(`The ${what} must be an integer between ${min} and 2^31-1.`);
  }
  return round;
}

function checkHash(hash: unknown, what: string): Uint8Array {
  if (!(hash instanceof Uint8Array) || (hash.length !== 0 && hash.length !== HASH_BYTES)) {
    throw bad(`The ${what} must be empty or ${HASH_BYTES} bytes.`);
  }
  return hash;
}

function checkBlockId(blockId: unknown): BlockId | null {
  if (blockId === null) return null;
  if (typeof blockId !== 'object') throw bad('The block ID must be an object or null.');
  const { hash, partSetHeader } = blockId as Partial<BlockId>;
  if (typeof partSetHeader !== 'object' || partSetHeader === null) throw bad('The block ID has no part-set header.');
  const { total } = partSetHeader;
  if (typeof total !== 'number' || !Number.isInteger(total) || total < 0 || total > UINT32_MAX) {
    throw bad('The part-set total must be an integer between 0 and 2^32-1.');
  }
  return {
    hash: checkHash(hash, 'block hash'),
    partSetHeader: { total, hash: checkHash(partSetHeader.hash, 'part-set hash') },
  };
}

function checkTimestamp(ts: unknown): Timestamp {
  if (typeof ts !== 'object' || ts === null) throw bad('The timestamp is missing.');
  const { seconds, nanos } = ts as Partial<Timestamp>;
  if (typeof seconds !== 'bigint' || seconds < TIMESTAMP_MIN_SECONDS || seconds > TIMESTAMP_MAX_SECONDS) {
    throw bad('The timestamp seconds must lie between years 0001 and 9999.');
  }
  if (typeof nanos !== 'number' || !Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) {
    throw bad('The timestamp nanos must be an integer between 0 and 999999999.');
  }
  return { seconds, nanos };
}

/**
 * Writes `CanonicalBlockID { bytes hash = 1; CanonicalPartSetHeader part_set_header = 2 }`
 * into `field`, or nothing for a zero BlockID. types/canonical.go `CanonicalizeBlockID`
 * maps a BlockID whose hash is empty *and* whose part-set header is zero to nil, so
 * the field disappears; an empty hash with a non-zero header is still written
 * (tendermint-rs `test_vote_encoding_with_empty_block_id`). Inside a present
 * CanonicalBlockID the part-set header is non-nullable and always written, even when
 * it encodes to nothing.
 */
function writeBlockId(w: ProtoWriter, field: number, blockId: BlockId | null): void {
  if (blockId === null) return;
  const psh = blockId.partSetHeader;
  if (blockId.hash.length === 0 && psh.total === 0 && psh.hash.length === 0) return;
  const pshBody = new ProtoWriter().uint32(1, psh.total).bytes(2, psh.hash);
  w.message(field, new ProtoWriter().bytes(1, blockId.hash).message(2, pshBody));
}

/**
 * Timestamps are gogoproto `stdtime, nullable=false` in the canonical messages, so the
 * field is always present, even at the Unix epoch (`2a 00` in a vote).
 */
function writeTimestamp(w: ProtoWriter, field: number, ts: Timestamp): void {
  w.message(field, new ProtoWriter().int64(1, ts.seconds).int32(2, ts.nanos));
}

/**
 * `CanonicalVote { SignedMsgType type = 1; sfixed64 height = 2; sfixed64 round = 3;
 * CanonicalBlockID block_id = 4; Timestamp timestamp = 5; string chain_id = 6 }`.
 *
 * Height and round are `sfixed64` so that a hardware signer can find them at fixed
 * offsets, but proto3 still omits them when zero: round 0, the common case, is absent.
 * Validator address and index, and the vote extension, are not signed here.
 */
export function voteSignBytes(chainId: string, vote: VoteToSign): Uint8Array {
  const chain = checkChainId(chainId);
  if (vote === null || typeof vote !== 'object') throw bad('The vote is missing.');
  if (vote.type !== 'prevote' && vote.type !== 'precommit') throw bad('The vote type must be prevote or precommit.');
  const height = checkHeight(vote.height, 'vote');
  const round = checkRound(vote.round, 'vote round');
  const blockId = checkBlockId(vote.blockId);
  const timestamp = checkTimestamp(vote.timestamp);

  const w = new ProtoWriter()
    .int32(1, SignedMsgType[vote.type])
    .sfixed64(2, height)
    .sfixed64(3, BigInt(round));
  writeBlockId(w, 4, blockId);
  writeTimestamp(w, 5, timestamp);
  w.string(6, chain);
  return lengthDelimited(w.finish());
}

/**
 * `CanonicalProposal { SignedMsgType type = 1; sfixed64 height = 2; sfixed64 round = 3;
 * int64 pol_round = 4; CanonicalBlockID block_id = 5; Timestamp timestamp = 6;
 * string chain_id = 7 }`.
 *
 * `pol_round` is a plain int64 varint, so the usual −1 takes ten bytes
 * (`20 ff ff ff ff ff ff ff ff ff 01`), and a POL round of 0 is omitted.
 */
export function proposalSignBytes(chainId: string, proposal: ProposalToSign): Uint8Array {
  const chain = checkChainId(chainId);
  if (proposal === null || typeof proposal !== 'object') throw bad('The proposal is missing.');
  const height = checkHeight(proposal.height, 'proposal');
  const round = checkRound(proposal.round, 'proposal round');
  const polRound = checkRound(proposal.polRound, 'proof-of-lock round', -1);
  const blockId = checkBlockId(proposal.blockId);
  const timestamp = checkTimestamp(proposal.timestamp);

  const w = new ProtoWriter()
    .int32(1, SignedMsgType.proposal)
    .sfixed64(2, height)
    .sfixed64(3, BigInt(round))
    .int64(4, BigInt(polRound));
  writeBlockId(w, 5, blockId);
  writeTimestamp(w, 6, timestamp);
  w.string(7, chain);
  return lengthDelimited(w.finish());
}

/**
 * `CanonicalVoteExtension { bytes extension = 1; sfixed64 height = 2;
 * sfixed64 round = 3; string chain_id = 4 }` (v0.38+), signed with the consensus key
 * for every non-nil precommit. It is not covered by double-sign protection: extensions
 * are non-deterministic and FilePV re-signs them on every request (privval/file.go).
 */
export function voteExtensionSignBytes(chainId: string, ext: VoteExtensionToSign): Uint8Array {
  const chain = checkChainId(chainId);
  if (ext === null || typeof ext !== 'object') throw bad('The vote extension is missing.');
  const height = checkHeight(ext.height, 'vote extension');
  const round = checkRound(ext.round, 'vote extension round');
  if (!(ext.extension instanceof Uint8Array)) throw bad('The vote extension must be bytes.');
  if (ext.extension.length > MAX_VOTE_EXTENSION_BYTES) {
    throw bad(`The vote extension is larger than ${MAX_VOTE_EXTENSION_BYTES} bytes.`);
  }

  const w = new ProtoWriter()
    .bytes(1, ext.extension)
    .sfixed64(2, height)
    .sfixed64(3, BigInt(round))
    .string(4, chain);
  return lengthDelimited(w.finish());
}
