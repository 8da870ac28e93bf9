/**
 * CometBFT privval wire codec: the `Message` oneof a node and its remote signer
 * exchange, in both dialects, and the uvarint length framing around it. Pure: bytes in,
 * typed messages out, and back; no I/O, no keys, no policy.
 *
 * Dialects (field numbers are the wire contract; package names never appear on it):
 * - `'v0.38'`: `tendermint.privval` (v0.34, v0.37, v0.38, v0.39, v0.40).
 * - `'v1'`: `cometbft.privval.v1` (v1.x). Differs only in `PubKeyResponse` (fields 3/4
 *   `pub_key_bytes`/`pub_key_type` instead of field 1 `PublicKey`),
 *   `SignVoteRequest.skip_extension_signing` (field 3) and the `SignBytes*` cases 9/10.
 * - Cases 9/10 in the v0.38 dialect are Celestia's `SignRawBytes*` (celestia-core, a
 *   v0.38 fork; tmkms 0.15): `SignRawBytesRequest{chain_id = 1, raw_bytes = 2,
 *   unique_id = 3}` / `SignedRawBytesResponse{signature = 1, error = 2}`. Stock v0.38
 *   nodes never send them; decoding them lets a signer answer with a refusal instead of
 *   dropping the connection.
 *
 * Decoding follows Go's gogoproto `Unmarshal`, which is what the node runs:
 * - Unknown fields are skipped; a `Message` with no known case set is
 *   `{ kind: 'unknown', field }` (the last unknown field number, 0 if there was none), for
 *   the server to refuse with a `RemoteSignerError`.
 * - A repeated embedded message merges into the earlier one; a repeated oneof case or
 *   timestamp replaces it.
 * - Gogoproto `nullable=false` fields decode their absence as Go's zero value:
 *   `Vote.block_id`/`Proposal.block_id` as the zero BlockID and `timestamp` as Go's zero
 *   time (0001-01-01T00:00:00Z), the time CometBFT would then sign. Timestamps outside
 *   google.protobuf.Timestamp's range are refused, as Go's `StdTimeUnmarshal` does.
 * - Every decode failure is a `PrivvalCodecError` (`bad_request`), whose `failure` says
 *   whether the input was `truncated`, `malformed` or `oversize`.
 *
 * Encoding writes what Go writes, so a message decoded from a Go node re-encodes to the
 * same bytes: fields in number order, proto3 zero omission, `block_id` (with its part-set
 * header) and `timestamp` always present in a Vote or Proposal, and v0.38's non-nullable
 * `PubKeyResponse.pub_key` always present (`0a 00` when there is no key). Optional
 * message fields (`vote`, `proposal`, `error`) are written iff they are set.
 *
 * Reference: proto/tendermint/privval/types.proto (v0.38.25),
 * proto/cometbft/privval/v1/types.proto (v1.0.1); shared/research/cometbft-privval.md §1.3-1.4.
 */
import { CustosError } from '../../core/errors.js';
import { ProtoWriter, lengthDelimited } from '../../crypto/protobuf/writer.js';
import { ProtoDecodeError, ProtoReader, WireType, type FieldTag } from '../../crypto/protobuf/reader.js';
import { MAX_VOTE_EXTENSION_BYTES, type BlockId, type Timestamp } from '../../crypto/cometbft/sign-bytes.js';

export type { BlockId, PartSetHeader, Timestamp } from '../../crypto/cometbft/sign-bytes.js';

export type PrivvalDialect = 'v0.38' | 'v1';

/**
 * Largest message body (without its length prefix) a `MessageReader` accepts by
 * default. The largest request a node sends is a `SignVoteRequest` carrying a vote
 * extension of up to `MaxVoteExtensionSize` (1 MiB, types/vote.go) plus well under 1 KiB
 * of other fields. CometBFT v0.40 sizes its own buffer as extension + 2 signatures +
 * 1024 (PR #5985); 16 KiB of headroom also covers two post-quantum signatures. Horcrux
 * reads up to 1 MiB and tmkms 256 kB, which both refuse a maximal extension.
 */
export const MAX_PRIVVAL_MESSAGE_BYTES = MAX_VOTE_EXTENSION_BYTES + 16 * 1024;

/**
 * `maxRemoteSignerMsgSize` (privval/signer_endpoint.go, v0.38.x, v0.39.x and v1.0.x):
 * the node drops a response whose body exceeds it. A signer should echo votes without
 * their extension to stay below it (research notes §1.7).
 */
export const COMETBFT_MAX_RESPONSE_BYTES = 10 * 1024;

/** Go's zero `time.Time`, which gogoproto decodes an absent non-nullable timestamp to. */
export const GO_ZERO_TIME: Readonly<Timestamp> = Object.freeze({ seconds: -62135596800n, nanos: 0 });

/** google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z. */
const TIMESTAMP_MIN_SECONDS = -62135596800n;
const TIMESTAMP_MAX_SECONDS = 253402300799n;

export type PrivvalCodecFailure = 'truncated' | 'malformed' | 'oversize';

/**
 * Every privval decode and framing failure. `failure` (also the error tag, so
 * `fullCode` is e.g. `bad_request:oversize`) tells a server whether it is looking at a
 * short read, garbage, or a peer over the size limit; after a framing error the stream
 * cannot be resynchronised and the connection must be closed.
 */
export class PrivvalCodecError extends CustosError {
  override readonly code = 'bad_request' as const;
  readonly failure: PrivvalCodecFailure;

  constructor(failure: PrivvalCodecFailure, message: string, options?: { cause?: unknown }) {
    super('bad_request', message, { tag: failure, cause: options?.cause });
    this.name = 'PrivvalCodecError';
    this.failure = failure;
  }
}

/** `SignedMsgType` numbers as they appear in `Vote.type` and `Proposal.type`. */
export const SignedMsgTypeNumber = {
  unknown: 0,
  prevote: 1,
  precommit: 2,
  proposal: 32,
} as const;

/**
 * `Vote` (types.proto), as the node sent it. `type` is an open enum: values other than
 * 1 (prevote) and 2 (precommit) are kept for the policy layer to refuse.
 */
export interface Vote {
  type: number;
  /** int64. */
  height: bigint;
  /** int32. */
  round: number;
  blockId: BlockId;
  timestamp: Timestamp;
  validatorAddress: Uint8Array;
  /** int32. */
  validatorIndex: number;
  signature: Uint8Array;
  /** v0.38+: only non-nil precommits carry one (possibly empty). */
  extension: Uint8Array;
  extensionSignature: Uint8Array;
}

/** `Proposal` (types.proto). `type` is 32 from a real node. */
export interface Proposal {
  type: number;
  /** int64. */
  height: bigint;
  /** int32. */
  round: number;
  /** int32; −1 when there is no proof-of-lock round. */
  polRound: number;
  blockId: BlockId;
  timestamp: Timestamp;
  signature: Uint8Array;
}

/** `RemoteSignerError { int32 code = 1; string description = 2; }`. */
export interface RemoteSignerError {
  code: number;
  description: string;
}

/**
 * A consensus public key. v0.38 carries it as the `tendermint.crypto.PublicKey` oneof
 * (`ed25519` = 1, `secp256k1` = 2, `bls12_381` = 3 from v0.39); v1 as
 * `pub_key_bytes` + `pub_key_type` (`"ed25519"`, `"secp256k1"`, `"bls12_381"`). In v1
 * any type string decodes; in v0.38 only the three oneof cases can be encoded.
 */
export interface PublicKey {
  type: string;
  bytes: Uint8Array;
}

export type PrivvalMessage =
  | { kind: 'pub_key_request'; chainId: string }
  | { kind: 'pub_key_response'; pubKey: PublicKey | undefined; error: RemoteSignerError | undefined }
  | {
      kind: 'sign_vote_request';
      vote: Vote | undefined;
      chainId: string;
      /** v1 only (always false in v0.38): the node asks not to sign the extension. */
      skipExtensionSigning: boolean;
    }
  | { kind: 'signed_vote_response'; vote: Vote | undefined; error: RemoteSignerError | undefined }
  | { kind: 'sign_proposal_request'; proposal: Proposal | undefined; chainId: string }
  | { kind: 'signed_proposal_response'; proposal: Proposal | undefined; error: RemoteSignerError | undefined }
  | { kind: 'ping_request' }
  | { kind: 'ping_response' }
  /**
   * v1 only: sign arbitrary bytes with the consensus key, without chain ID or domain
   * separation — a double-sign oracle. Decoded so that the server can refuse it.
   */
  | { kind: 'sign_bytes_request'; value: Uint8Array }
  | { kind: 'sign_bytes_response'; signature: Uint8Array; error: RemoteSignerError | undefined }
  /**
   * v0.38 dialect only (Celestia): sign `"COMET::RAW_BYTES::SIGN" ‖ delimited(request)`
   * with the consensus key. `uniqueId` is a string on the wire.
   */
  | { kind: 'sign_raw_bytes_request'; chainId: string; rawBytes: Uint8Array; uniqueId: string }
  | { kind: 'signed_raw_bytes_response'; signature: Uint8Array; error: RemoteSignerError | undefined }
  /** No case this dialect knows; `field` is the last unknown field number, 0 if none. */
  | { kind: 'unknown'; field: number };

export type PrivvalMessageKind = PrivvalMessage['kind'];

/**
 * `Message.sum` oneof case numbers, identical in both dialects except 9/10: v1's
 * `SignBytes*` and, in the v0.38 dialect, Celestia's `SignRawBytes*`.
 */
const CASE = {
  pub_key_request: 1,
  pub_key_response: 2,
  sign_vote_request: 3,
  signed_vote_response: 4,
  sign_proposal_request: 5,
  signed_proposal_response: 6,
  ping_request: 7,
  ping_response: 8,
  sign_bytes_request: 9,
  sign_bytes_response: 10,
  sign_raw_bytes_request: 9,
  signed_raw_bytes_response: 10,
} as const satisfies Record<Exclude<PrivvalMessageKind, 'unknown'>, number>;

/** v0.38 `tendermint.crypto.PublicKey` oneof case numbers. */
const PUBKEY_CASE: Readonly<Record<string, number>> = { ed25519: 1, secp256k1: 2, bls12_381: 3 };
const PUBKEY_TYPE_BY_CASE: Readonly<Record<number, string>> = { 1: 'ed25519', 2: 'secp256k1', 3: 'bls12_381' };

function malformed(message: string): PrivvalCodecError {
  return new PrivvalCodecError('malformed', message);
}

function unencodable(message: string): CustosError {
  return new CustosError('bad_request', message);
}

// ---------------------------------------------------------------------------
// Zero values
// ---------------------------------------------------------------------------

function zeroBlockId(): BlockId {
  return { hash: new Uint8Array(0), partSetHeader: { total: 0, hash: new Uint8Array(0) } };
}

function zeroVote(): Vote {
  return {
    type: 0,
    height: 0n,
    round: 0,
    blockId: zeroBlockId(),
    timestamp: { ...GO_ZERO_TIME },
    validatorAddress: new Uint8Array(0),
    validatorIndex: 0,
    signature: new Uint8Array(0),
    extension: new Uint8Array(0),
    extensionSignature: new Uint8Array(0),
  };
}

function zeroProposal(): Proposal {
  return {
    type: 0,
    height: 0n,
    round: 0,
    polRound: 0,
    blockId: zeroBlockId(),
    timestamp: { ...GO_ZERO_TIME },
    signature: new Uint8Array(0),
  };
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/**
 * Runs `onField` for every field of the message in `r`, skipping the ones it does not
 * claim (returns false).
 */
function eachField(r: ProtoReader, onField: (tag: FieldTag) => boolean): void {
  while (!r.done) {
    const tag = r.tag();
    if (!onField(tag)) r.skip(tag.wireType);
  }
}

function readPartSetHeader(r: ProtoReader, into: BlockId['partSetHeader']): void {
  eachField(r, (t) => {
    if (t.field === 1) {
      r.expect(t, WireType.varint, 'PartSetHeader.total');
      into.total = r.uint32();
    } else if (t.field === 2) {
      r.expect(t, WireType.len, 'PartSetHeader.hash');
      into.hash = r.bytes();
    } else return false;
    return true;
  });
}

function readBlockId(r: ProtoReader, into: BlockId): void {
  eachField(r, (t) => {
    if (t.field === 1) {
      r.expect(t, WireType.len, 'BlockID.hash');
      into.hash = r.bytes();
    } else if (t.field === 2) {
      r.expect(t, WireType.len, 'BlockID.part_set_header');
      readPartSetHeader(r.message(), into.partSetHeader);
    } else return false;
    return true;
  });
}

/** google.protobuf.Timestamp, validated as gogoproto's `StdTimeUnmarshal` does. */
function readTimestamp(r: ProtoReader): Timestamp {
  const ts: Timestamp = { seconds: 0n, nanos: 0 };
  eachField(r, (t) => {
    if (t.field === 1) {
      r.expect(t, WireType.varint, 'Timestamp.seconds');
      ts.seconds = r.int64();
    } else if (t.field === 2) {
      r.expect(t, WireType.varint, 'Timestamp.nanos');
      ts.nanos = r.int32();
    } else return false;
    return true;
  });
  checkTimestamp(ts, malformed);
  return ts;
}

function checkTimestamp(ts: Timestamp, fail: (message: string) => CustosError): void {
  if (typeof ts.seconds !== 'bigint' || ts.seconds < TIMESTAMP_MIN_SECONDS || ts.seconds > TIMESTAMP_MAX_SECONDS) {
    throw fail('A timestamp lies outside years 0001 to 9999.');
  }
  if (!Number.isInteger(ts.nanos) || ts.nanos < 0 || ts.nanos > 999_999_999) {
    throw fail('A timestamp has nanos outside [0, 1e9).');
  }
}

function readVote(r: ProtoReader, into: Vote): void {
  eachField(r, (t) => {
    switch (t.field) {
      case 1:
        r.expect(t, WireType.varint, 'Vote.type');
        into.type = r.int32();
        return true;
      case 2:
        r.expect(t, WireType.varint, 'Vote.height');
        into.height = r.int64();
        return true;
      case 3:
        r.expect(t, WireType.varint, 'Vote.round');
        into.round = r.int32();
        return true;
      case 4:
        r.expect(t, WireType.len, 'Vote.block_id');
        readBlockId(r.message(), into.blockId);
        return true;
      case 5:
        r.expect(t, WireType.len, 'Vote.timestamp');
        into.timestamp = readTimestamp(r.message());
        return true;
      case 6:
        r.expect(t, WireType.len, 'Vote.validator_address');
        into.validatorAddress = r.bytes();
        return true;
      case 7:
        r.expect(t, WireType.varint, 'Vote.validator_index');
        into.validatorIndex = r.int32();
        return true;
      case 8:
        r.expect(t, WireType.len, 'Vote.signature');
        into.signature = r.bytes();
        return true;
      case 9:
        r.expect(t, WireType.len, 'Vote.extension');
        into.extension = r.bytes();
        return true;
      case 10:
        r.expect(t, WireType.len, 'Vote.extension_signature');
        into.extensionSignature = r.bytes();
        return true;
      default:
        return false;
    }
  });
}

function readProposal(r: ProtoReader, into: Proposal): void {
  eachField(r, (t) => {
    switch (t.field) {
      case 1:
        r.expect(t, WireType.varint, 'Proposal.type');
        into.type = r.int32();
        return true;
      case 2:
        r.expect(t, WireType.varint, 'Proposal.height');
        into.height = r.int64();
        return true;
      case 3:
        r.expect(t, WireType.varint, 'Proposal.round');
        into.round = r.int32();
        return true;
      case 4:
        r.expect(t, WireType.varint, 'Proposal.pol_round');
        into.polRound = r.int32();
        return true;
      case 5:
        r.expect(t, WireType.len, 'Proposal.block_id');
        readBlockId(r.message(), into.blockId);
        return true;
      case 6:
        r.expect(t, WireType.len, 'Proposal.timestamp');
        into.timestamp = readTimestamp(r.message());
        return true;
      case 7:
        r.expect(t, WireType.len, 'Proposal.signature');
        into.signature = r.bytes();
        return true;
      default:
        return false;
    }
  });
}

function readRemoteSignerError(r: ProtoReader, into: RemoteSignerError): void {
  eachField(r, (t) => {
    if (t.field === 1) {
      r.expect(t, WireType.varint, 'RemoteSignerError.code');
      into.code = r.int32();
    } else if (t.field === 2) {
      r.expect(t, WireType.len, 'RemoteSignerError.description');
      into.description = r.string();
    } else return false;
    return true;
  });
}

/** The `error` field of a response: a nullable message, merged if repeated. */
function mergeError(r: ProtoReader, prev: RemoteSignerError | undefined): RemoteSignerError {
  const into = prev ?? { code: 0, description: '' };
  readRemoteSignerError(r.message(), into);
  return into;
}

/** v0.38 `tendermint.crypto.PublicKey`: the last oneof case wins; no case is `undefined`. */
function readPublicKeyOneof(r: ProtoReader, prev: PublicKey | undefined): PublicKey | undefined {
  let key = prev;
  eachField(r, (t) => {
    const type = PUBKEY_TYPE_BY_CASE[t.field];
    if (type === undefined) return false;
    r.expect(t, WireType.len, `PublicKey.${type}`);
    key = { type, bytes: r.bytes() };
    return true;
  });
  return key;
}

function readPubKeyResponse(r: ProtoReader, dialect: PrivvalDialect): PrivvalMessage {
  let pubKey: PublicKey | undefined;
  let error: RemoteSignerError | undefined;
  // v1 fields 3/4 are two independent proto3 scalars.
  let v1Bytes: Uint8Array = new Uint8Array(0);
  let v1Type = '';
  eachField(r, (t) => {
    if (t.field === 2) {
      r.expect(t, WireType.len, 'PubKeyResponse.error');
      error = mergeError(r, error);
    } else if (dialect === 'v0.38' && t.field === 1) {
      r.expect(t, WireType.len, 'PubKeyResponse.pub_key');
      pubKey = readPublicKeyOneof(r.message(), pubKey);
    } else if (dialect === 'v1' && t.field === 3) {
      r.expect(t, WireType.len, 'PubKeyResponse.pub_key_bytes');
      v1Bytes = r.bytes();
    } else if (dialect === 'v1' && t.field === 4) {
      r.expect(t, WireType.len, 'PubKeyResponse.pub_key_type');
      v1Type = r.string();
    } else return false;
    return true;
  });
  if (dialect === 'v1' && (v1Bytes.length > 0 || v1Type !== '')) pubKey = { type: v1Type, bytes: v1Bytes };
  return { kind: 'pub_key_response', pubKey, error };
}

function readPubKeyRequest(r: ProtoReader): PrivvalMessage {
  let chainId = '';
  eachField(r, (t) => {
    if (t.field !== 1) return false;
    r.expect(t, WireType.len, 'PubKeyRequest.chain_id');
    chainId = r.string();
    return true;
  });
  return { kind: 'pub_key_request', chainId };
}

function readSignVoteRequest(r: ProtoReader, dialect: PrivvalDialect): PrivvalMessage {
  let vote: Vote | undefined;
  let chainId = '';
  let skipExtensionSigning = false;
  eachField(r, (t) => {
    if (t.field === 1) {
      r.expect(t, WireType.len, 'SignVoteRequest.vote');
      vote ??= zeroVote();
      readVote(r.message(), vote);
    } else if (t.field === 2) {
      r.expect(t, WireType.len, 'SignVoteRequest.chain_id');
      chainId = r.string();
    } else if (dialect === 'v1' && t.field === 3) {
      r.expect(t, WireType.varint, 'SignVoteRequest.skip_extension_signing');
      skipExtensionSigning = r.bool();
    } else return false;
    return true;
  });
  return { kind: 'sign_vote_request', vote, chainId, skipExtensionSigning };
}

function readSignedVoteResponse(r: ProtoReader): PrivvalMessage {
  let vote: Vote | undefined;
  let error: RemoteSignerError | undefined;
  eachField(r, (t) => {
    if (t.field === 1) {
      r.expect(t, WireType.len, 'SignedVoteResponse.vote');
      vote ??= zeroVote();
      readVote(r.message(), vote);
    } else if (t.field === 2) {
      r.expect(t, WireType.len, 'SignedVoteResponse.error');
      error = mergeError(r, error);
    } else return false;
    return true;
  });
  return { kind: 'signed_vote_response', vote, error };
}

function readSignProposalRequest(r: ProtoReader): PrivvalMessage {
  let proposal: Proposal | undefined;
  let chainId = '';
  eachField(r, (t) => {
    if (t.field === 1) {
      r.expect(t, WireType.len, 'SignProposalRequest.proposal');
      proposal ??= zeroProposal();
      readProposal(r.message(), proposal);
    } else if (t.field === 2) {
      r.expect(t, WireType.len, 'SignProposalRequest.chain_id');
      chainId = r.string();
    } else return false;
    return true;
  });
  return { kind: 'sign_proposal_request', proposal, chainId };
}

function readSignedProposalResponse(r: ProtoReader): PrivvalMessage {
  let proposal: Proposal | undefined;
  let error: RemoteSignerError | undefined;
  eachField(r, (t) => {
    if (t.field === 1) {
      r.expect(t, WireType.len, 'SignedProposalResponse.proposal');
      proposal ??= zeroProposal();
      readProposal(r.message(), proposal);
    } else if (t.field === 2) {
      r.expect(t, WireType.len, 'SignedProposalResponse.error');
      error = mergeError(r, error);
    } else return false;
    return true;
  });
  return { kind: 'signed_proposal_response', proposal, error };
}

function readEmpty(r: ProtoReader, kind: 'ping_request' | 'ping_response'): PrivvalMessage {
  eachField(r, () => false);
  return { kind };
}

function readSignBytesRequest(r: ProtoReader): PrivvalMessage {
  let value: Uint8Array = new Uint8Array(0);
  eachField(r, (t) => {
    if (t.field !== 1) return false;
    r.expect(t, WireType.len, 'SignBytesRequest.value');
    value = r.bytes();
    return true;
  });
  return { kind: 'sign_bytes_request', value };
}

/** `SignBytesResponse` (v1) and Celestia's `SignedRawBytesResponse`: `{bytes signature = 1; RemoteSignerError error = 2}`. */
function readSignatureResponse(r: ProtoReader, name: string): { signature: Uint8Array; error: RemoteSignerError | undefined } {
  let signature: Uint8Array = new Uint8Array(0);
  let error: RemoteSignerError | undefined;
  eachField(r, (t) => {
    if (t.field === 1) {
      r.expect(t, WireType.len, `${name}.signature`);
      signature = r.bytes();
    } else if (t.field === 2) {
      r.expect(t, WireType.len, `${name}.error`);
      error = mergeError(r, error);
    } else return false;
    return true;
  });
  return { signature, error };
}

function readSignRawBytesRequest(r: ProtoReader): PrivvalMessage {
  let chainId = '';
  let rawBytes: Uint8Array = new Uint8Array(0);
  let uniqueId = '';
  eachField(r, (t) => {
    if (t.field === 1) {
      r.expect(t, WireType.len, 'SignRawBytesRequest.chain_id');
      chainId = r.string();
    } else if (t.field === 2) {
      r.expect(t, WireType.len, 'SignRawBytesRequest.raw_bytes');
      rawBytes = r.bytes();
    } else if (t.field === 3) {
      r.expect(t, WireType.len, 'SignRawBytesRequest.unique_id');
      uniqueId = r.string();
    } else return false;
    return true;
  });
  return { kind: 'sign_raw_bytes_request', chainId, rawBytes, uniqueId };
}


function readCase(field: number, r: ProtoReader, dialect: PrivvalDialect): PrivvalMessage | undefined {
  switch (field) {
    case CASE.pub_key_request:
      return readPubKeyRequest(r);
    case CASE.pub_key_response:
      return readPubKeyResponse(r, dialect);
    case CASE.sign_vote_request:
      return readSignVoteRequest(r, dialect);
    case CASE.signed_vote_response:
      return readSignedVoteResponse(r);
    case CASE.sign_proposal_request:
      return readSignProposalRequest(r);
    case CASE.signed_proposal_response:
      return readSignedProposalResponse(r);
    case CASE.ping_request:
      return readEmpty(r, 'ping_request');
    case CASE.ping_response:
      return readEmpty(r, 'ping_response');
    case CASE.sign_bytes_request:
      return dialect === 'v1' ? readSignBytesRequest(r) : readSignRawBytesRequest(r);
    case CASE.sign_bytes_response:
      return dialect === 'v1'
        ? { kind: 'sign_bytes_response', ...readSignatureResponse(r, 'SignBytesResponse') }
        : { kind: 'signed_raw_bytes_response', ...readSignatureResponse(r, 'SignedRawBytesResponse') };
    default:
      return undefined;
  }
}

function isKnownCase(field: number, dialect: PrivvalDialect): boolean {
  return field >= CASE.pub_key_request && field <= CASE.sign_bytes_response;
}

function checkDialect(dialect: unknown): PrivvalDialect {
  if (dialect !== 'v0.38' && dialect !== 'v1') throw unencodable(`Unknown privval dialect ${String(dialect)}.`);
  return dialect;
}

/**
 * Decodes one privval `Message` body (without its length prefix). Byte fields of the
 * result are copies, never views into `body`.
 */
export function decodeMessage(body: Uint8Array, dialect: PrivvalDialect): PrivvalMessage {
  checkDialect(dialect);
  if (!(body instanceof Uint8Array)) throw malformed('A privval message must be bytes.');
  try {
    const r = new ProtoReader(body);
    let message: PrivvalMessage | undefined;
    let lastUnknown = 0;
    while (!r.done) {
      const tag = r.tag();
      if (tag.wireType === WireType.len) {
        // Read the payload first, so an unknown case is skipped whole.
        const sub = r.message();
        const decoded = readCase(tag.field, sub, dialect);
        if (decoded !== undefined) message = decoded;
        else lastUnknown = tag.field;
      } else {
        if (isKnownCase(tag.field, dialect)) {
          throw malformed(`Privval message case ${tag.field} has wire type ${tag.wireType}, expected 2.`);
        }
        r.skip(tag.wireType);
        lastUnknown = tag.field;
      }
    }
    return message ?? { kind: 'unknown', field: lastUnknown };
  } catch (e) {
    if (e instanceof ProtoDecodeError) throw new PrivvalCodecError(e.failure, e.message, { cause: e });
    throw e;
  }
}


// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

function writeBlockId(w: ProtoWriter, field: number, b: BlockId): void {
  if (b === null || typeof b !== 'object' || b.partSetHeader === null || typeof b.partSetHeader !== 'object') {
    throw unencodable('A block ID must have a part-set header.');
  }
  // Non-nullable in Vote/Proposal and inside BlockID: always written, as Go does.
  const psh = new ProtoWriter().uint32(1, b.partSetHeader.total).bytes(2, b.partSetHeader.hash);
  w.message(field, new ProtoWriter().bytes(1, b.hash).message(2, psh));
}

function writeTimestamp(w: ProtoWriter, field: number, ts: Timestamp): void {
  if (ts === null || typeof ts !== 'object') throw unencodable('A timestamp is missing.');
  checkTimestamp(ts, unencodable);
  w.message(field, new ProtoWriter().int64(1, ts.seconds).int32(2, ts.nanos));
}

function voteWriter(v: Vote): ProtoWriter {
  if (v === null || typeof v !== 'object') throw unencodable('A vote must be an object.');
  const w = new ProtoWriter().int32(1, v.type).int64(2, v.height).int32(3, v.round);
  writeBlockId(w, 4, v.blockId);
  writeTimestamp(w, 5, v.timestamp);
  return w
    .bytes(6, v.validatorAddress)
    .int32(7, v.validatorIndex)
    .bytes(8, v.signature)
    .bytes(9, v.extension)
    .bytes(10, v.extensionSignature);
}

function proposalWriter(p: Proposal): ProtoWriter {
  if (p === null || typeof p !== 'object') throw unencodable('A proposal must be an object.');
  const w = new ProtoWriter().int32(1, p.type).int64(2, p.height).int32(3, p.round).int32(4, p.polRound);
  writeBlockId(w, 5, p.blockId);
  writeTimestamp(w, 6, p.timestamp);
  return w.bytes(7, p.signature);
}

function writeError(w: ProtoWriter, field: number, e: RemoteSignerError | undefined): void {
  if (e === undefined) return;
  if (e === null || typeof e !== 'object') throw unencodable('A remote signer error must be an object.');
  w.message(field, new ProtoWriter().int32(1, e.code).string(2, e.description));
}

/** A oneof member has explicit presence: empty bytes are still written (`tag 00`). */
function oneofBytes(w: ProtoWriter, field: number, v: Uint8Array): void {
  if (!(v instanceof Uint8Array)) throw unencodable('A public key must be bytes.');
  // An empty embedded message and empty bytes are the same bytes on the wire.
  if (v.length === 0) w.message(field, new ProtoWriter());
  else w.bytes(field, v);
}

function pubKeyResponseWriter(
  m: Extract<PrivvalMessage, { kind: 'pub_key_response' }>,
  dialect: PrivvalDialect,
): ProtoWriter {
  const w = new ProtoWriter();
  const key = m.pubKey;
  if (key !== undefined && (key === null || typeof key !== 'object')) throw unencodable('A public key must be an object.');
  if (dialect === 'v0.38') {
    // `pub_key` is gogoproto non-nullable: Go writes it even on error (`0a 00`).
    const pk = new ProtoWriter();
    if (key !== undefined) {
      const n = PUBKEY_CASE[key.type];
      if (n === undefined) throw unencodable(`A ${key.type || 'typeless'} public key has no v0.38 encoding.`);
      oneofBytes(pk, n, key.bytes);
    }
    w.message(1, pk);
    writeError(w, 2, m.error);
  } else {
    writeError(w, 2, m.error);
    if (key !== undefined) w.bytes(3, key.bytes).string(4, key.type);
  }
  return w;
}

function caseWriter(m: PrivvalMessage, dialect: PrivvalDialect): ProtoWriter {
  switch (m.kind) {
    case 'pub_key_request':
      return new ProtoWriter().string(1, m.chainId);
    case 'pub_key_response':
      return pubKeyResponseWriter(m, dialect);
    case 'sign_vote_request': {
      const w = new ProtoWriter();
      if (m.vote !== undefined) w.message(1, voteWriter(m.vote));
      w.string(2, m.chainId);
      if (m.skipExtensionSigning === true) {
        if (dialect !== 'v1') throw unencodable('skip_extension_signing exists only in the v1 dialect.');
        w.uint32(3, 1);
      } else if (m.skipExtensionSigning !== false) throw unencodable('skipExtensionSigning must be a boolean.');
      return w;
    }
    case 'signed_vote_response': {
      const w = new ProtoWriter();
      if (m.vote !== undefined) w.message(1, voteWriter(m.vote));
      writeError(w, 2, m.error);
      return w;
    }
    case 'sign_proposal_request': {
      const w = new ProtoWriter();
      if (m.proposal !== undefined) w.message(1, proposalWriter(m.proposal));
      return w.string(2, m.chainId);
    }
    case 'signed_proposal_response': {
      const w = new ProtoWriter();
      if (m.proposal !== undefined) w.message(1, proposalWriter(m.proposal));
      writeError(w, 2, m.error);
      return w;
    }
    case 'ping_request':
    case 'ping_response':
      return new ProtoWriter();
    case 'sign_bytes_request':
      if (dialect !== 'v1') throw unencodable('SignBytesRequest exists only in the v1 dialect.');
      return new ProtoWriter().bytes(1, m.value);
    case 'sign_bytes_response': {
      if (dialect !== 'v1') throw unencodable('SignBytesResponse exists only in the v1 dialect.');
      const w = new ProtoWriter().bytes(1, m.signature);
      writeError(w, 2, m.error);
      return w;
    }
    case 'sign_raw_bytes_request':
      if (dialect !== 'v0.38') throw unencodable('SignRawBytesRequest exists only in the v0.38 (Celestia) dialect.');
      return new ProtoWriter().string(1, m.chainId).bytes(2, m.rawBytes).string(3, m.uniqueId);
    case 'signed_raw_bytes_response': {
      if (dialect !== 'v0.38') throw unencodable('SignedRawBytesResponse exists only in the v0.38 (Celestia) dialect.');
      const w = new ProtoWriter().bytes(1, m.signature);
      writeError(w, 2, m.error);
      return w;
    }
    case 'unknown':
      throw unencodable('An unknown privval message cannot be encoded.');
    default:
      throw unencodable(`Unknown privval message kind ${String((m as { kind: unknown }).kind)}.`);
  }
}

/**
 * Encodes one privval `Message` body (without its length prefix). Throws a
 * `CustosError('bad_request')` for a value its protobuf type cannot hold, or a message the
 * dialect cannot express (v0.38 has no `skip_extension_signing` and no `SignBytes*`; v1
 * has no `SignRawBytes*`).
 */
export function encodeMessage(m: PrivvalMessage, dialect: PrivvalDialect): Uint8Array {
  checkDialect(dialect);
  if (m === null || typeof m !== 'object') throw unencodable('A privval message must be an object.');
  const body = caseWriter(m, dialect);
  const field = CASE[m.kind as Exclude<PrivvalMessageKind, 'unknown'>];
  return new ProtoWriter().message(field, body).finish();
}

// ---------------------------------------------------------------------------
// Framing: uvarint(length) ‖ body, as libs/protoio's delimited writer and reader do.
// ---------------------------------------------------------------------------

/** uvarint(body length) ‖ body: what goes on the wire for one message. */
export function frameMessage(body: Uint8Array): Uint8Array {
  return lengthDelimited(body);
}

/** `frameMessage(encodeMessage(m, dialect))`. */
export function encodeFramedMessage(m: PrivvalMessage, dialect: PrivvalDialect): Uint8Array {
  return frameMessage(encodeMessage(m, dialect));
}

/** A uvarint length prefix is at most ten bytes; a real one for ≤ 2 GiB at most five. */
const MAX_PREFIX_BYTES = 10;

/**
 * Splits a byte stream into message bodies. Push chunks as they arrive (any sizes, any
 * boundaries); each call returns the bodies completed by that chunk, in order. It holds
 * at most one partial length prefix or one partial body, so it never buffers more than
 * `maxMessageBytes` (and a prefix declaring more is refused before any body byte is
 * kept). After an error every further call throws the same error: the stream cannot be
 * resynchronised and the connection must be closed. Bodies completed earlier in the
 * failing chunk are dropped with it; a CometBFT node sends one request at a time and
 * waits for the answer, so a well-behaved peer never has one in flight then.
 */
export class MessageReader {
  readonly maxMessageBytes: number;
  private prefix = 0n;
  private prefixBytes = 0;
  /** The body being assembled, allocated once its length is known. */
  private body: Uint8Array | undefined;
  private bodyFill = 0;
  private failed: PrivvalCodecError | undefined;

  constructor(options?: { maxMessageBytes?: number }) {
    const max = options?.maxMessageBytes ?? MAX_PRIVVAL_MESSAGE_BYTES;
    if (!Number.isSafeInteger(max) || max < 0 || max > 2 ** 31 - 1) {
      throw new CustosError('bad_request', 'The maximum privval message size must be an integer between 0 and 2^31-1.');
    }
    this.maxMessageBytes = max;
  }

  /**
   * Body bytes currently held. A partial length prefix is accumulated into a number,
   * not kept as bytes, and the body buffer is only allocated once its length is known
   * to be within the limit.
   */
  get bufferedBytes(): number {
    return this.body === undefined ? 0 : this.bodyFill;
  }

  /** True when the stream is between messages, i.e. it may end here. */
  get idle(): boolean {
    return this.failed === undefined && this.prefixBytes === 0 && this.body === undefined;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failed) throw this.failed;
    if (!(chunk instanceof Uint8Array)) throw this.fail('malformed', 'A privval stream chunk must be bytes.');
    const out: Uint8Array[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.body === undefined) {
        const b = chunk[i++] as number;
        this.prefix |= BigInt(b & 0x7f) << BigInt(7 * this.prefixBytes);
        this.prefixBytes++;
        // The value read so far is a lower bound of the final length.
        if (this.prefix > BigInt(this.maxMessageBytes)) {
          throw this.fail('oversize', `A privval message declares more than the ${this.maxMessageBytes}-byte limit.`);
        }
        if (b & 0x80) {
          if (this.prefixBytes >= MAX_PREFIX_BYTES) throw this.fail('malformed', 'A privval length prefix is too long.');
          continue;
        }
        const len = Number(this.prefix);
        this.prefix = 0n;
        this.prefixBytes = 0;
        if (len === 0) out.push(new Uint8Array(0));
        else {
          this.body = new Uint8Array(len);
          this.bodyFill = 0;
        }
      } else {
        const n = Math.min(this.body.length - this.bodyFill, chunk.length - i);
        this.body.set(chunk.subarray(i, i + n), this.bodyFill);
        this.bodyFill += n;
        i += n;
        if (this.bodyFill === this.body.length) {
          out.push(this.body);
          this.body = undefined;
          this.bodyFill = 0;
        }
      }
    }
    return out;
  }

  /** Call when the stream ends: throws if it ended inside a message. */
  end(): void {
    if (this.failed) throw this.failed;
    if (!this.idle) {
      throw this.fail('truncated', 'The privval stream ended inside a message.');
    }
  }

  private fail(failure: PrivvalCodecFailure, message: string): PrivvalCodecError {
    this.failed = new PrivvalCodecError(failure, message);
    this.body = undefined;
    return this.failed;
  }
}

/** Yields each message body of a byte stream (e.g. a socket); throws if it ends mid-message. */
export async function* readMessageBodies(
  source: AsyncIterable<Uint8Array>,
  options?: { maxMessageBytes?: number },
): AsyncGenerator<Uint8Array> {
  const reader = new MessageReader(options);
  for await (const chunk of source) yield* reader.push(chunk);
  reader.end();
}

/**
 * Decodes one complete frame, `uvarint(len) ‖ body`, with nothing after it (a test and
 * single-shot helper; streams go through `MessageReader`).
 */
export function decodeFramedMessage(
  frame: Uint8Array,
  dialect: PrivvalDialect,
  options?: { maxMessageBytes?: number },
): PrivvalMessage {
  const reader = new MessageReader(options);
  const bodies = reader.push(frame);
  reader.end();
  if (bodies.length === 0) throw new PrivvalCodecError('truncated', 'The privval frame is empty.');
  if (bodies.length > 1) throw new PrivvalCodecError('malformed', `Expected one privval message, found ${bodies.length}.`);
  return decodeMessage(bodies[0] as Uint8Array, dialect);
}
