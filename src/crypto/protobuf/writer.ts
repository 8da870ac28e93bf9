/**
 * A minimal protobuf (proto3) writer for the few messages that must be produced
 * byte-exactly: CometBFT's canonical sign bytes (`crypto/cometbft/`) and the privval
 * messages of the front end. Pure: no I/O.
 *
 * - proto3 implicit presence: every scalar writer omits its field when the value is
 *   the default (0, empty bytes, empty string), exactly as Go's gogoproto marshaller
 *   does. Embedded messages are written whenever asked for; whether a message field is
 *   present is the caller's decision (gogoproto `nullable=false` fields always are).
 * - Fields are written in the order the caller writes them; CometBFT's Go code emits
 *   them in field-number order, so callers must do the same for identical bytes.
 * - Every value is range-checked for its wire type; a value that does not fit is a
 *   `CustosError('bad_request')`, never a silent truncation.
 *
 * Encoding reference: https://protobuf.dev/programming-guides/encoding/
 */
import { concatBytes } from '../../core/bytes.js';
import { CustosError } from '../../core/errors.js';

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;

const MAX_FIELD_NUMBER = 2 ** 29 - 1;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const UINT32_MAX = 2 ** 32 - 1;
/** Protobuf messages are limited to 2 GiB; lengths above it are not representable by other parsers. */
const MAX_LENGTH = 2 ** 31 - 1;

const utf8Encoder = new TextEncoder();
/** In a `u` regex, `\p{Cs}` matches only unpaired surrogates, which TextEncoder would silently replace with U+FFFD. */
const LONE_SURROGATE = /\p{Cs}/u;

function outOfRange(what: string): CustosError {
  return new CustosError('bad_request', `The ${what} is out of range for its protobuf type.`);
}

function checkField(field: number): void {
  if (!Number.isInteger(field) || field < 1 || field > MAX_FIELD_NUMBER) throw outOfRange(`field number ${field}`);
}

/** Base-128 varint of an unsigned 64-bit value. */
function uvarint(v: bigint): Uint8Array {
  if (v < 0n || v > UINT64_MAX) throw outOfRange('varint');
  const out: number[] = [];
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

/** uvarint(length) ‖ body, as Go's `protoio.MarshalDelimited` (and `binary.PutUvarint`) writes it. */
export function lengthDelimited(body: Uint8Array): Uint8Array {
  if (body.length > MAX_LENGTH) throw outOfRange('message length');
  const prefix = uvarint(BigInt(body.length));
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix, 0);
  out.set(body, prefix.length);
  return out;
}

export class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;

  private push(b: Uint8Array): void {
    if (this.length + b.length > MAX_LENGTH) throw outOfRange('message length');
    this.chunks.push(b);
    this.length += b.length;
  }

  private tag(field: number, wireType: number): void {
    checkField(field);
    this.push(uvarint((BigInt(field) << 3n) | BigInt(wireType)));
  }

  /** `uint32` (and non-negative enums): plain varint. */
  uint32(field: number, v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > UINT32_MAX) throw outOfRange(`uint32 field ${field}`);
    if (v === 0) return this;
    this.tag(field, WIRE_VARINT);
    this.push(uvarint(BigInt(v)));
    return this;
  }

  /**
   * `int32` and enums. A negative int32 is sign-extended to 64 bits before varint
   * encoding, so it always takes 10 bytes (protobuf encoding guide, "Signed Integers").
   */
  int32(field: number, v: number): this {
    if (!Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) throw outOfRange(`int32 field ${field}`);
    return this.int64(field, BigInt(v));
  }

  /** `int64`: two's-complement varint, 10 bytes for any negative value. */
  int64(field: number, v: bigint): this {
    if (typeof v !== 'bigint' || v < INT64_MIN || v > INT64_MAX) throw outOfRange(`int64 field ${field}`);
    if (v === 0n) return this;
    this.tag(field, WIRE_VARINT);
    this.push(uvarint(BigInt.asUintN(64, v)));
    return this;
  }

  /** `sfixed64`: 8 bytes, little-endian two's complement. */
  sfixed64(field: number, v: bigint): this {
    if (typeof v !== 'bigint' || v < INT64_MIN || v > INT64_MAX) throw outOfRange(`sfixed64 field ${field}`);
    if (v === 0n) return this;
    this.tag(field, WIRE_I64);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigInt64(0, v, true);
    this.push(b);
    return this;
  }

  bytes(field: number, v: Uint8Array): this {
    if (!(v instanceof Uint8Array)) throw outOfRange(`bytes field ${field}`);
    if (v.length === 0) return this;
    this.tag(field, WIRE_LEN);
    this.push(lengthDelimited(v));
    return this;
  }

  /** `string`: UTF-8. Unpaired surrogates are refused rather than replaced, so what is signed is what was asked for. */
  string(field: number, v: string): this {
    if (typeof v !== 'string' || LONE_SURROGATE.test(v)) throw outOfRange(`string field ${field}`);
    if (v.length === 0) return this;
    this.tag(field, WIRE_LEN);
    this.push(lengthDelimited(utf8Encoder.encode(v)));
    return this;
  }

  /** An embedded message, written even when empty (its presence is then `tag 00`). */
  message(field: number, body: ProtoWriter): this {
    this.tag(field, WIRE_LEN);
    this.push(lengthDelimited(body.finish()));
    return this;
  }

  finish(): Uint8Array {
    return concatBytes(...this.chunks);
  }
}
