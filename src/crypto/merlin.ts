/**
 * Merlin transcripts (https://merlin.cool), the Fiat–Shamir transcript construction that
 * CometBFT's SecretConnection handshake uses to bind both ephemeral keys and the DH secret
 * into the challenge each side signs.
 *
 * Merlin is a thin layer over the subset of STROBE-128 (Hamburg, "The STROBE protocol
 * framework", https://strobe.sourceforge.io/specs/, v1.0.2) that it needs: `meta-AD`, `AD`
 * and `PRF`, over Keccak-f[1600]. The permutation comes from @noble/hashes (`keccakP`); the
 * duplex bookkeeping (position, begin marker, padding) is written here from the STROBE spec.
 *
 * Output is bit-exact with the reference Rust `merlin` crate and with curve25519-voi's Go port
 * that CometBFT links against (checked against their published transcripts in the tests).
 */
import { keccakP } from '@noble/hashes/sha3.js';
import { swap32IfBE, u32 } from '@noble/hashes/utils.js';

/** STROBE-128 rate in bytes: 200-byte Keccak state − 2·128/8 capacity − 2 padding bytes (STROBE spec). */
const STROBE_R = 166;

// Operation flags, as in the STROBE spec. Merlin only ever uses meta-AD (M|A), AD (A) and PRF (I|A|C).
const FLAG_I = 1 << 0;
const FLAG_A = 1 << 1;
const FLAG_C = 1 << 2;
const FLAG_T = 1 << 3;
const FLAG_M = 1 << 4;
const FLAG_K = 1 << 5;

/** Merlin writes every length as a 32-bit little-endian integer (merlin.cool, "Transcript protocol"). */
const MAX_LENGTH = 0xffff_ffff;

const utf8 = new TextEncoder();

function labelBytes(label: string | Uint8Array): Uint8Array {
  return typeof label === 'string' ? utf8.encode(label) : label;
}

function le32(n: number, what: string): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_LENGTH) {
    throw new RangeError(`Merlin ${what} must be an integer in 0..2^32-1, got ${n}`);
  }
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, true);
  return out;
}

/**
 * The STROBE-128 duplex, reduced to what Merlin calls. Not exported: STROBE used any other
 * way (keyed operations, transport flags) needs checks this subset does not make.
 */
class Strobe128 {
  private readonly state = new Uint8Array(200);
  private readonly state32 = u32(this.state);
  private pos = 0;
  private posBegin = 0;
  private curFlags = 0;

  constructor(protocolLabel: Uint8Array) {
    // Initial state (STROBE spec, initialization): the cSHAKE-style domain block
    // [1, R+2, 1, 0, 1, 12·8] ‖ "STROBEv1.0.2", permuted once, then the protocol label as meta-AD.
    this.state.set([1, STROBE_R + 2, 1, 0, 1, 96]);
    this.state.set(utf8.encode('STROBEv1.0.2'), 6);
    this.permute();
    this.metaAd(protocolLabel, false);
  }

  metaAd(data: Uint8Array, more: boolean): void {
    this.beginOp(FLAG_M | FLAG_A, more);
    this.absorb(data);
  }

  ad(data: Uint8Array, more: boolean): void {
    this.beginOp(FLAG_A, more);
    this.absorb(data);
  }

  prf(length: number, more: boolean): Uint8Array {
    this.beginOp(FLAG_I | FLAG_A | FLAG_C, more);
    return this.squeeze(length);
  }

  wipe(): void {
    this.state.fill(0);
    this.pos = 0;
    this.posBegin = 0;
    this.curFlags = 0;
  }

  /** keccakP works on 32-bit lanes in little-endian byte order; STROBE is specified on bytes. */
  private permute(): void {
    swap32IfBE(this.state32);
    keccakP(this.state32);
    swap32IfBE(this.state32);
  }

  /** STROBE spec, `run_f`: pad with the begin marker and the cSHAKE-style 0x04 … 0x80, then permute. */
  private runF(): void {
    this.state[this.pos]! ^= this.posBegin;
    this.state[this.pos + 1]! ^= 0x04;
    this.state[STROBE_R + 1]! ^= 0x80;
    this.permute();
    this.pos = 0;
    this.posBegin = 0;
  }

  private absorb(data: Uint8Array): void {
    for (const byte of data) {
      this.state[this.pos]! ^= byte;
      this.pos += 1;
      if (this.pos === STROBE_R) this.runF();
    }
  }

  /** Squeeze for PRF: output the rate bytes and overwrite them with zeros (STROBE spec, `I|A|C`). */
  private squeeze(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      out[i] = this.state[this.pos]!;
      this.state[this.pos] = 0;
      this.pos += 1;
      if (this.pos === STROBE_R) this.runF();
    }
    return out;
  }

  /**
   * STROBE spec, `begin_op`: absorb the previous begin position and the flags, so every
   * operation is framed. `more` continues the previous operation (Merlin uses it to append the
   * length right after a label) and must repeat the same flags.
   */
  private beginOp(flags: number, more: boolean): void {
    if (more) {
      if (flags !== this.curFlags) throw new Error('STROBE: continued operation with different flags');
      return;
    }
    // Transport (T) operations would need a role; Merlin has none.
    if ((flags & FLAG_T) !== 0) throw new Error('STROBE: transport operations are not supported');
    const oldBegin = this.posBegin;
    this.posBegin = this.pos + 1;
    this.curFlags = flags;
    this.absorb(Uint8Array.of(oldBegin, flags));
    // Cipher and key operations start on a fresh block, so their output depends on everything before.
    if ((flags & (FLAG_C | FLAG_K)) !== 0 && this.pos !== 0) this.runF();
  }
}

/**
 * A Merlin transcript. Labels are ASCII in every protocol we speak; strings are UTF-8 encoded.
 * The state absorbs whatever is appended (in SecretConnection: the DH secret), so call `wipe()`
 * once the last challenge has been drawn.
 */
export class MerlinTranscript {
  private readonly strobe: Strobe128;
  private wiped = false;

  constructor(label: string) {
    // merlin.cool, "Transcript::new": STROBE protocol label "Merlin v1.0", then the
    // application's label appended under "dom-sep".
    this.strobe = new Strobe128(utf8.encode('Merlin v1.0'));
    this.appendMessage('dom-sep', utf8.encode(label));
  }

  /** merlin.cool `append_message`: meta-AD(label) ‖ meta-AD(LE32(len), more) ‖ AD(message). */
  appendMessage(label: string | Uint8Array, message: Uint8Array): void {
    this.assertUsable();
    const length = le32(message.length, 'message length');
    this.strobe.metaAd(labelBytes(label), false);
    this.strobe.metaAd(length, true);
    this.strobe.ad(message, false);
  }

  /** merlin.cool `challenge_bytes`: meta-AD(label) ‖ meta-AD(LE32(length), more) ‖ PRF(length). */
  challengeBytes(label: string | Uint8Array, length: number): Uint8Array {
    this.assertUsable();
    const encodedLength = le32(length, 'challenge length');
    this.strobe.metaAd(labelBytes(label), false);
    this.strobe.metaAd(encodedLength, true);
    return this.strobe.prf(length, false);
  }

  /** Zeroes the sponge state. The transcript must not be used afterwards. */
  wipe(): void {
    this.strobe.wipe();
    this.wiped = true;
  }

  private assertUsable(): void {
    // A wiped sponge would silently yield challenges over an all-zero state.
    if (this.wiped) throw new Error('Merlin transcript used after wipe()');
  }
}
