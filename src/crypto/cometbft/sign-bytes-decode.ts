/**
 * Decodes CometBFT canonical sign bytes back into the vote or proposal they sign: the
 * inverse of `sign-bytes.ts`, for bytes that come from elsewhere (a FilePV or Horcrux
 * `priv_validator_state.json` being imported). Pure: bytes in, a typed value or a
 * `SignBytesDecodeError` out; nothing else is ever thrown.
 *
 * Accepted are exactly the bytes `voteSignBytes` and `proposalSignBytes` produce: a uvarint
 * length prefix covering the rest (`protoio.MarshalDelimited`), then a `CanonicalVote` (type
 * 1 prevote, 2 precommit) or `CanonicalProposal` (type 32) in CometBFT's field order with
 * proto3 zero omission (proto/tendermint/types/canonical.proto, v0.38.x; same field numbers
 * in proto/cometbft/types/v1/canonical.proto). The decoded value is encoded again and must
 * give the same bytes, so unknown or repeated fields, fields out of order, explicit zeros,
 * overlong varints and out-of-range values are all refused (`non_canonical` or `malformed`):
 * a message that decodes here is one CometBFT's own encoder writes, with one meaning.
 * `CanonicalVoteExtension` is not recognised (its field 1 is bytes, not a type).
 */
import { CustosError } from '../../core/errors.js';
import { ProtoDecodeError, ProtoReader, WireType, type FieldTag } from '../protobuf/reader.js';
import { SignedMsgType, proposalSignBytes, voteExtensionSignBytes, voteSignBytes, type BlockId, type ProposalToSign, type Timestamp, type VoteToSign } from './sign-bytes.js';

/**
 * Longer than any canonical vote or proposal can be: length prefix, type, two sfixed64, a
 * ten-byte POL round, a block ID with two 32-byte hashes, a timestamp and a 50-byte chain ID
 * come to under 200 bytes.
 */
export const MAX_SIGN_BYTES = 256;

/**
 * `truncated`: the input ends inside a value; `malformed`: not a canonical vote or proposal
 * at all (bad wire type, unknown type, value out of range); `non_canonical`: it decodes, but
 * CometBFT would have written other bytes for the same content.
 */
export type SignBytesDecodeFailure = 'truncated' | 'malformed' | 'non_canonical';

export class SignBytesDecodeError extends CustosError {
  override readonly code = 'bad_request' as const;
  readonly failure: SignBytesDecodeFailure;

  constructor(failure: SignBytesDecodeFailure, message: string, options?: { cause?: unknown }) {
    super('bad_request', message, { tag: `sign_bytes_${failure}`, ...options });
    this.name = 'SignBytesDecodeError';
    this.failure = failure;
  }
}

export type CanonicalMessage =
  | { kind: 'vote'; chainId: string; vote: VoteToSign }
  | { kind: 'proposal'; chainId: string; proposal: ProposalToSign };

/** The double-sign step a message occupies (CometBFT FilePV, privval/file.go: 1 propose, 2 prevote, 3 precommit). */
export function stepOf(m: CanonicalMessage): 1 | 2 | 3 {
  if (m.kind === 'proposal') return 1;
  return m.vote.type === 'prevote' ? 2 : 3;
}

const INT32_MAX = 2n ** 31n - 1n;

function malformed(message: string): SignBytesDecodeError {
  return new SignBytesDecodeError('malformed', message);
}

/** An sfixed64 round that must fit the int32 it was widened from (types/canonical.go `int64(vote.Round)`). */
function roundOf(v: bigint, what: string, min: bigint): number {
  if (v < min || v > INT32_MAX) throw malformed(`The ${what} ${v} is outside ${min}..2^31-1.`);
  return Number(v);
}

function readBlockId(r: ProtoReader): BlockId {
  const out: BlockId = { hash: new Uint8Array(0), partSetHeader: { total: 0, hash: new Uint8Array(0) } };
  while (!r.done) {
    const tag = r.tag();
    if (tag.field === 1) out.hash = lenField(r, tag, 'block hash');
    else if (tag.field === 2) {
      r.expect(tag, WireType.len, 'part-set header');
      const p = r.message();
      while (!p.done) {
        const t = p.tag();
        if (t.field === 1) {
          p.expect(t, WireType.varint, 'part-set total');
          out.partSetHeader.total = p.uint32();
        } else if (t.field === 2) out.partSetHeader.hash = lenField(p, t, 'part-set hash');
        else p.skip(t.wireType);
      }
    } else r.skip(tag.wireType);
  }
  return out;
}

function readTimestamp(r: ProtoReader): Timestamp {
  const out: Timestamp = { seconds: 0n, nanos: 0 };
  while (!r.done) {
    const tag = r.tag();
    if (tag.field === 1) {
      r.expect(tag, WireType.varint, 'timestamp seconds');
      out.seconds = r.int64();
    } else if (tag.field === 2) {
      r.expect(tag, WireType.varint, 'timestamp nanos');
      out.nanos = r.int32();
    } else r.skip(tag.wireType);
  }
  return out;
}

function lenField(r: ProtoReader, tag: FieldTag, what: string): Uint8Array {
  r.expect(tag, WireType.len, what);
  return r.bytes();
}

function sfixed64Field(r: ProtoReader, tag: FieldTag, what: string): bigint {
  r.expect(tag, WireType.i64, what);
  return r.sfixed64();
}

function decodeBody(body: Uint8Array): CanonicalMessage {
  // Field 1 (the type) decides what fields 4 to 7 mean, and a canonical message starts with
  // it, so read it first; fields out of order are caught by the re-encoding below.
  const r = new ProtoReader(body);
  if (r.done) throw malformed('The sign bytes hold an empty message: no vote or proposal type.');
  const first = r.tag();
  if (first.field !== 1) throw malformed('The sign bytes do not start with a vote or proposal type (field 1).');
  r.expect(first, WireType.varint, 'type');
  const type = r.int32();
  let height = 0n;
  let round = 0n;
  let chainId = '';
  let blockId: BlockId | null = null;
  let timestamp: Timestamp | undefined;
  if (type === SignedMsgType.prevote || type === SignedMsgType.precommit) {
    while (!r.done) {
      const tag = r.tag();
      if (tag.field === 2) height = sfixed64Field(r, tag, 'height');
      else if (tag.field === 3) round = sfixed64Field(r, tag, 'round');
      else if (tag.field === 4) blockId = readBlockId(new ProtoReader(lenField(r, tag, 'block ID')));
      else if (tag.field === 5) timestamp = readTimestamp(new ProtoReader(lenField(r, tag, 'timestamp')));
      else if (tag.field === 6) {
        r.expect(tag, WireType.len, 'chain ID');
        chainId = r.string();
      } else r.skip(tag.wireType);
    }
    if (!timestamp) throw malformed('The canonical vote has no timestamp (CometBFT always writes one).');
    const vote: VoteToSign = { type: type === SignedMsgType.prevote ? 'prevote' : 'precommit', height, round: roundOf(round, 'round', 0n), blockId, timestamp };
    return { kind: 'vote', chainId, vote };
  }
  if (type === SignedMsgType.proposal) {
    let polRound = 0n;
    while (!r.done) {
      const tag = r.tag();
      if (tag.field === 2) height = sfixed64Field(r, tag, 'height');
      else if (tag.field === 3) round = sfixed64Field(r, tag, 'round');
      else if (tag.field === 4) {
        r.expect(tag, WireType.varint, 'POL round');
        polRound = r.int64();
      } else if (tag.field === 5) blockId = readBlockId(new ProtoReader(lenField(r, tag, 'block ID')));
      else if (tag.field === 6) timestamp = readTimestamp(new ProtoReader(lenField(r, tag, 'timestamp')));
      else if (tag.field === 7) {
        r.expect(tag, WireType.len, 'chain ID');
        chainId = r.string();
      } else r.skip(tag.wireType);
    }
    if (!timestamp) throw malformed('The canonical proposal has no timestamp (CometBFT always writes one).');
    const proposal: ProposalToSign = { height, round: roundOf(round, 'round', 0n), polRound: roundOf(polRound, 'POL round', -1n), blockId, timestamp };
    return { kind: 'proposal', chainId, proposal };
  }
  throw malformed(`The sign bytes are of type ${type}, which is neither a prevote (1), a precommit (2) nor a proposal (32).`);
}

/**
 * Decodes length-delimited canonical sign bytes. Throws `SignBytesDecodeError` (`bad_request`)
 * for anything that is not exactly what CometBFT signs for some vote or proposal.
 */
export function decodeSignBytes(bytes: Uint8Array): CanonicalMessage {
  if (!(bytes instanceof Uint8Array)) throw malformed('The sign bytes must be bytes.');
  if (bytes.length > MAX_SIGN_BYTES) throw malformed(`The sign bytes are ${bytes.length} bytes; a canonical vote or proposal is at most ${MAX_SIGN_BYTES}.`);
  let decoded: CanonicalMessage;
  try {
    const outer = new ProtoReader(bytes);
    const body = outer.bytes();
    if (!outer.done) throw malformed('The sign bytes run on past their length prefix.');
    decoded = decodeBody(body);
  } catch (e) {
    if (e instanceof SignBytesDecodeError) throw e;
    if (e instanceof ProtoDecodeError) throw new SignBytesDecodeError(e.failure, e.message, { cause: e });
    throw e;
  }
  // The encoder checks every range (height ≥ 1, hash sizes, timestamp bounds, chain ID of at
  // most 50 bytes); its refusal means no CometBFT node could have asked for this.
  let again: Uint8Array;
  try {
    again = decoded.kind === 'vote' ? voteSignBytes(decoded.chainId, decoded.vote) : proposalSignBytes(decoded.chainId, decoded.proposal);
  } catch (e) {
    if (e instanceof CustosError && e.code === 'bad_request') throw new SignBytesDecodeError('malformed', e.message, { cause: e });
    throw e;
  }
  if (again.length !== bytes.length || again.some((b, i) => b !== bytes[i])) {
    throw new SignBytesDecodeError('non_canonical', 'The sign bytes decode, but are not in the canonical form CometBFT signs (field order, zero omission or extra fields differ).');
  }
  return decoded;
}

/**
 * Decodes the sign bytes of a vote extension (CanonicalVoteExtension, length-delimited) and
 * accepts them only if they are exactly what `voteExtensionSignBytes` makes of what they say:
 * a cosigner asked to sign "an extension" must never be handed a vote or proposal that way,
 * past its watermark.
 */
export function decodeVoteExtensionSignBytes(bytes: Uint8Array): { chainId: string; height: bigint; round: number; extension: Uint8Array } {
  const fail = (m: string) => malformed(`Not the sign bytes of a vote extension: ${m}`);
  let out: { chainId: string; height: bigint; round: number; extension: Uint8Array };
  try {
    const outer = new ProtoReader(bytes);
    const len = Number(outer.uvarint64());
    const body = bytes.subarray(bytes.length - len);
    if (len > bytes.length || body.length !== len) throw fail('the length prefix does not cover the rest.');
    const r = new ProtoReader(body);
    let extension: Uint8Array = new Uint8Array(0);
    let height = 0n;
    let round = 0n;
    let chainId = '';
    while (!r.done) {
      const { field, wireType } = r.tag();
      if (field === 1 && wireType === WireType.len) extension = r.bytes();
      else if (field === 2 && wireType === WireType.i64) height = r.sfixed64();
      else if (field === 3 && wireType === WireType.i64) round = r.sfixed64();
      else if (field === 4 && wireType === WireType.len) chainId = r.string();
      else throw fail(`unexpected field ${field}.`);
    }
    if (round < 0n || round > INT32_MAX) throw fail('the round is out of range.');
    out = { chainId, height, round: Number(round), extension };
  } catch (e) {
    if (e instanceof SignBytesDecodeError) throw e;
    throw fail((e as Error).message);
  }
  let again: Uint8Array;
  try {
    again = voteExtensionSignBytes(out.chainId, { height: out.height, round: out.round, extension: out.extension });
  } catch (e) {
    throw fail((e as Error).message);
  }
  if (again.length !== bytes.length || again.some((b, i) => b !== bytes[i])) throw fail('they are not in canonical form.');
  return out;
}
