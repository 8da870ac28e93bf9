/**
 * A minimal, bounds-checked protobuf (proto3) reader: the counterpart of `writer.ts`, for
 * the privval messages a CometBFT node sends and for canonical sign bytes handed to the
 * vault (imported double-sign state). Pure: no I/O. It lives in crypto/ so that the vault
 * can decode sign bytes without importing a front end.
 *
 * - Every read goes through `ProtoReader`, so a hostile length or varint can never read
 *   past the end of its (sub-)message or size an allocation beyond the input. Every
 *   failure is a `ProtoDecodeError` (`bad_request`), never a RangeError or TypeError.
 * - Scalars decode as Go's gogoproto `Unmarshal` does: `int32`, `uint32` and enums are
 *   64-bit varints truncated to 32 bits; `bool` is any non-zero varint. Varints longer
 *   than ten bytes, or whose tenth byte carries more than the 64th bit, are refused.
 * - Byte fields are copies, never views into the input, so a socket buffer can be
 *   reused or wiped independently of the decoded message.
 * - Strings must be valid UTF-8 (what is signed is what was asked for).
 * - Unknown fields are skipped by wire type (varint, i64, len, i32). Groups (wire types
 *   3 and 4, deprecated and never used by CometBFT) and wire types 6 and 7 are refused.
 *
 * Encoding reference: https://protobuf.dev/programming-guides/encoding/
 */
import { CustosError } from '../../core/errors.js';

export const WireType = {
  varint: 0,
  i64: 1,
  len: 2,
  i32: 5,
} as const;

/**
 * `truncated`: the input ended inside a value; `malformed`: the bytes can never be a
 * valid encoding (overlong varint, bad wire type, invalid UTF-8, ...).
 */
export type ProtoDecodeFailure = 'truncated' | 'malformed';

export class ProtoDecodeError extends CustosError {
  override readonly code = 'bad_request' as const;
  readonly failure: ProtoDecodeFailure;

  constructor(failure: ProtoDecodeFailure, message: string) {
    super('bad_request', message, { tag: failure });
    this.name = 'ProtoDecodeError';
    this.failure = failure;
  }
}

export interface FieldTag {
  field: number;
  wireType: number;
}

const MAX_FIELD_NUMBER = 2 ** 29 - 1;
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class ProtoReader {
  private pos = 0;

  constructor(private readonly buf: Uint8Array) {}

  /** True once every byte has been consumed. */
  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** Reads a base-128 varint as an unsigned 64-bit value. */
  uvarint64(): bigint {
    // Fast path for the common case of at most four bytes (values below 2^28).
    let small = 0;
    for (let i = 0; i < 4; i++) {
      const b = this.byte('varint');
      small |= (b & 0x7f) << (7 * i);
      if ((b & 0x80) === 0) return BigInt(small >>> 0);
    }
    let v = BigInt(small >>> 0);
    for (let i = 4; i < 10; i++) {
      const b = this.byte('varint');
      if (i === 9 && b > 1) throw new ProtoDecodeError('malformed', 'A protobuf varint overflows 64 bits.');
      v |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) return v;
    }
    throw new ProtoDecodeError('malformed', 'A protobuf varint is longer than ten bytes.');
  }

  /** Reads a field key. Field number 0 and the unusable wire types are refused here. */
  tag(): FieldTag {
    const key = this.uvarint64();
    const field = key >> 3n;
    const wireType = Number(key & 7n);
    if (field < 1n || field > BigInt(MAX_FIELD_NUMBER)) {
      throw new ProtoDecodeError('malformed', `A protobuf field number ${field} is out of range.`);
    }
    if (wireType !== WireType.varint && wireType !== WireType.i64 && wireType !== WireType.len && wireType !== WireType.i32) {
      throw new ProtoDecodeError('malformed', `Protobuf wire type ${wireType} is not supported.`);
    }
    return { field: Number(field), wireType };
  }

  /** `int64`: two's-complement varint. */
  int64(): bigint {
    return BigInt.asIntN(64, this.uvarint64());
  }

  /** `uint64`. */
  uint64(): bigint {
    return this.uvarint64();
  }

  /** `int32` and enums: the varint truncated to its low 32 bits, as Go does. */
  int32(): number {
    return Number(BigInt.asIntN(32, this.uvarint64()));
  }

  /** `uint32`: the varint truncated to its low 32 bits, as Go does. */
  uint32(): number {
    return Number(BigInt.asUintN(32, this.uvarint64()));
  }

  bool(): boolean {
    return this.uvarint64() !== 0n;
  }

  /** `sfixed64`: 8 bytes, little-endian two's complement. */
  sfixed64(): bigint {
    const b = this.take(8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigInt64(0, true);
  }

  /** The payload of a length-delimited field, copied. */
  bytes(): Uint8Array {
    return this.lengthDelimited().slice();
  }

  string(): string {
    const raw = this.lengthDelimited();
    try {
      return utf8Decoder.decode(raw);
    } catch {
      throw new ProtoDecodeError('malformed', 'A protobuf string is not valid UTF-8.');
    }
  }

  /** A reader over an embedded message; it can never read beyond that message. */
  message(): ProtoReader {
    return new ProtoReader(this.lengthDelimited());
  }

  /** Skips the value of an unknown field. */
  skip(wireType: number): void {
    switch (wireType) {
      case WireType.varint:
        this.uvarint64();
        return;
      case WireType.i64:
        this.take(8);
        return;
      case WireType.len:
        this.lengthDelimited();
        return;
      case WireType.i32:
        this.take(4);
        return;
      default:
        throw new ProtoDecodeError('malformed', `Protobuf wire type ${wireType} cannot be skipped.`);
    }
  }

  /** Refuses a known field sent with the wrong wire type, as gogoproto's `Unmarshal` does. */
  expect(tag: FieldTag, wireType: number, what: string): void {
    if (tag.wireType !== wireType) {
      throw new ProtoDecodeError('malformed', `The ${what} field has wire type ${tag.wireType}, expected ${wireType}.`);
    }
  }

  private byte(what: string): number {
    const b = this.buf[this.pos];
    if (b === undefined) throw new ProtoDecodeError('truncated', `A protobuf ${what} ends early.`);
    this.pos++;
    return b;
  }

  private take(n: number): Uint8Array {
    if (n > this.buf.length - this.pos) {
      throw new ProtoDecodeError('truncated', `A protobuf field of ${n} bytes runs past the end of its message.`);
    }
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  private lengthDelimited(): Uint8Array {
    const len = this.uvarint64();
    if (len > BigInt(this.buf.length - this.pos)) {
      throw new ProtoDecodeError('truncated', `A protobuf field of ${len} bytes runs past the end of its message.`);
    }
    return this.take(Number(len));
  }
}
