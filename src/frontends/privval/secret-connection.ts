/**
 * CometBFT's SecretConnection over a Node `Duplex`: the authenticated, encrypted transport a
 * node and its remote signer speak on `tcp://` privval addresses.
 *
 * Behaviour follows cometbft `p2p/conn/secret_connection.go` (v0.38.x / v1.0.x), cross-checked
 * with tmkms-p2p; see shared/research/cometbft-privval.md §1.2:
 *
 *   1. both sides send `uvarint(34) ‖ 0a 20 ‖ ephemeral X25519 public key` (a length-delimited
 *      `google.protobuf.BytesValue`) in clear, and read the peer's;
 *   2. the key schedule (../../crypto/secret-connection-kdf.ts) yields one ChaCha20-Poly1305
 *      key per direction and a Merlin challenge;
 *   3. both sides send, as the first encrypted frame, a length-delimited
 *      `AuthSigMessage { PublicKey pub_key = 1 (oneof ed25519 = 1); bytes sig = 2 }` whose
 *      signature covers the challenge, and verify the peer's;
 *   4. afterwards the connection is a byte stream cut into 1044-byte sealed frames:
 *      ChaCha20-Poly1305(key, nonce = 0⁴ ‖ u64-LE counter, `u32-LE length ‖ ≤1024 data ‖ padding`).
 *
 * There is no close message and no re-keying: a session ends with the transport. Any frame that
 * fails authentication or carries an impossible length ends it too, with a
 * `SecretConnectionError`, because a stream cipher session cannot skip a bad frame and resync.
 */
import type { Duplex } from 'node:stream';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { equalBytes } from '../../core/bytes.js';
import { CustosError, type ErrorCode } from '../../core/errors.js';
import { deriveSessionSecrets } from '../../crypto/secret-connection-kdf.js';

/** Data bytes per frame (cometbft `dataMaxSize`). */
export const FRAME_DATA_MAX = 1024;
/** `u32 LE length ‖ data ‖ padding` before sealing (cometbft `totalFrameSize`). */
export const FRAME_SIZE = 4 + FRAME_DATA_MAX;
/** Poly1305 tag appended by the AEAD. */
export const TAG_SIZE = 16;
/** What one frame occupies on the wire. */
export const SEALED_FRAME_SIZE = FRAME_SIZE + TAG_SIZE;

const KEY_SIZE = 32;
const SIGNATURE_SIZE = 64;
const NONCE_SIZE = 12;
const MAX_COUNTER = 2n ** 64n - 1n;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * Cap on the length prefix of the two handshake messages. Go allows 1 MiB, but an Ed25519
 * AuthSigMessage is 102 bytes and a BytesValue 34: anything near the cap is not a peer we can talk to.
 */
const MAX_HANDSHAKE_MESSAGE = 1024;
/** Raw bytes buffered ahead of the reader before the socket is paused (backpressure). */
const READ_HIGH_WATER = 64 * SEALED_FRAME_SIZE;
/** How long `close()` waits for the peer to finish the TCP close before destroying the socket. */
const CLOSE_GRACE_MS = 2_000;

export type SecretConnectionErrorTag =
  | 'handshake_timeout'
  | 'bad_handshake_message'
  | 'unsupported_key_type'
  | 'bad_signature'
  | 'remote_key_mismatch'
  | 'bad_frame'
  | 'bad_length'
  | 'oversize'
  | 'truncated_frame'
  | 'nonce_exhausted'
  | 'connection_closed'
  | 'transport_error'
  | 'bad_identity'
  | 'bad_option';

/**
 * Why a SecretConnection was refused or ended. `unauthorized` for a peer that failed to prove its
 * identity (bad signature, wrong pinned key); `bad_request` for everything else. Messages never
 * carry key material or frame contents.
 */
export class SecretConnectionError extends CustosError {
  override readonly tag: SecretConnectionErrorTag;

  constructor(code: Extract<ErrorCode, 'bad_request' | 'unauthorized'>, tag: SecretConnectionErrorTag, message: string, options?: { cause?: unknown }) {
    super(code, message, { tag, ...options });
    this.name = 'SecretConnectionError';
    this.tag = tag;
  }
}

const protocolError = (tag: SecretConnectionErrorTag, message: string, cause?: unknown) =>
  new SecretConnectionError('bad_request', tag, message, cause === undefined ? undefined : { cause });

/** The long-term key a side proves possession of. Only Ed25519 is spoken by CometBFT privval. */
export interface SecretConnectionIdentity {
  /** Ed25519 signature (64 bytes) over `msg`; may be asynchronous (HSM, remote backend). */
  sign(msg: Uint8Array): Promise<Uint8Array> | Uint8Array;
  /** Ed25519 public key, 32 bytes. */
  publicKey: Uint8Array;
}

export interface HandshakeOptions {
  /** The whole handshake, signing included, must finish within this; default 10 s. */
  timeoutMs?: number;
  /**
   * The peer's Ed25519 identity key, if known. Note that a CometBFT node generates a fresh
   * privval identity on every start (cometbft `privval/utils.go`), so pinning only works with
   * peers that persist theirs.
   */
  expectedRemoteKey?: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Frames

/**
 * One direction of the session: its key and its nonce counter. Pure; the transport feeds it
 * whole sealed frames. The counter is never reused: once 2^64 − 1 has been used the cipher
 * refuses to go on (cometbft `incrNonce` panics there too).
 */
export class FrameCipher {
  private readonly key: Uint8Array;
  private readonly nonce = new Uint8Array(NONCE_SIZE);
  private next: bigint;
  private wiped = false;

  /** Copies `key`; the caller may wipe its own copy. `initialCounter` exists for tests of exhaustion. */
  constructor(key: Uint8Array, initialCounter = 0n) {
    if (!(key instanceof Uint8Array) || key.length !== KEY_SIZE) {
      throw protocolError('bad_identity', `A frame key must be ${KEY_SIZE} bytes.`);
    }
    if (initialCounter < 0n || initialCounter > MAX_COUNTER) {
      throw protocolError('nonce_exhausted', 'The initial frame counter is out of range.');
    }
    this.key = key.slice();
    this.next = initialCounter;
  }

  /** The counter the next frame will use. */
  get counter(): bigint {
    return this.next;
  }

  /** Seals ≤ 1024 data bytes into one 1044-byte frame; padding is zero. */
  seal(data: Uint8Array): Uint8Array {
    if (data.length > FRAME_DATA_MAX) {
      throw protocolError('oversize', `A frame carries at most ${FRAME_DATA_MAX} bytes.`);
    }
    const frame = new Uint8Array(FRAME_SIZE);
    new DataView(frame.buffer).setUint32(0, data.length, true);
    frame.set(data, 4);
    try {
      return chacha20poly1305(this.key, this.useNonce()).encrypt(frame);
    } finally {
      frame.fill(0);
    }
  }

  /** Opens one sealed frame and returns a copy of its data, ignoring padding (Go does not zero it). */
  open(sealed: Uint8Array): Uint8Array {
    if (sealed.length !== SEALED_FRAME_SIZE) {
      throw protocolError('bad_frame', `A sealed frame is ${SEALED_FRAME_SIZE} bytes.`);
    }
    const nonce = this.useNonce();
    let frame: Uint8Array;
    try {
      frame = chacha20poly1305(this.key, nonce).decrypt(sealed);
    } catch (cause) {
      throw protocolError('bad_frame', 'A frame failed authentication.', cause);
    }
    try {
      const length = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(0, true);
      if (length > FRAME_DATA_MAX) {
        throw protocolError('bad_length', `A frame declared more than ${FRAME_DATA_MAX} data bytes.`);
      }
      return frame.slice(4, 4 + length);
    } finally {
      frame.fill(0);
    }
  }

  wipe(): void {
    this.key.fill(0);
    this.wiped = true;
  }

  private useNonce(): Uint8Array {
    if (this.wiped) throw protocolError('connection_closed', 'The session keys have been wiped.');
    if (this.next > MAX_COUNTER) {
      throw protocolError('nonce_exhausted', 'The frame counter is exhausted; the session must end.');
    }
    new DataView(this.nonce.buffer).setBigUint64(4, this.next, true);
    this.next += 1n;
    return this.nonce;
  }
}

// ---------------------------------------------------------------------------------------------
// Handshake messages (protobuf, hand-written: two fixed shapes)

function uvarint(n: number): Uint8Array {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Uint8Array.from(out);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function delimited(body: Uint8Array): Uint8Array {
  return concat(uvarint(body.length), body);
}

function bytesField(field: number, value: Uint8Array): Uint8Array {
  return concat(uvarint((field << 3) | 2), uvarint(value.length), value);
}

/**
 * A bounds-checked protobuf reader for the handshake messages. Unknown fields are skipped as
 * proto3 requires; every malformation is a `SecretConnectionError`, never a RangeError.
 */
class ProtoCursor {
  private pos = 0;
  constructor(private readonly bytes: Uint8Array, private readonly what: string) {}

  get done(): boolean {
    return this.pos >= this.bytes.length;
  }

  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.bytes[this.pos++];
      if (b === undefined) throw this.bad();
      value += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return value;
    }
    throw this.bad(); // longer than any length or tag we accept
  }

  /** Returns [field number, wire type]. */
  tag(): [number, number] {
    const t = this.varint();
    const field = Math.floor(t / 8);
    if (field === 0) throw this.bad();
    return [field, t % 8];
  }

  lengthDelimited(): Uint8Array {
    const n = this.varint();
    if (n > this.bytes.length - this.pos) throw this.bad();
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.advance(8);
        return;
      case 2:
        this.lengthDelimited();
        return;
      case 5:
        this.advance(4);
        return;
      default:
        throw this.bad(); // groups (3, 4) and reserved types never appear here
    }
  }

  private advance(n: number): void {
    if (n > this.bytes.length - this.pos) throw this.bad();
    this.pos += n;
  }

  bad(): SecretConnectionError {
    return protocolError('bad_handshake_message', `The peer's ${this.what} is malformed.`);
  }
}

/** `uvarint(34) ‖ 0a 20 ‖ key`: the ephemeral key as a length-delimited `google.protobuf.BytesValue`. */
export function encodeEphemeralKeyMessage(ephemeralPublic: Uint8Array): Uint8Array {
  return delimited(bytesField(1, ephemeralPublic));
}

/** The body (without length prefix) of the peer's BytesValue; the key must be 32 bytes. */
export function decodeEphemeralKeyMessage(body: Uint8Array): Uint8Array {
  const cur = new ProtoCursor(body, 'ephemeral key message');
  let key: Uint8Array | undefined;
  while (!cur.done) {
    const [field, wire] = cur.tag();
    if (field === 1 && wire === 2) key = cur.lengthDelimited();
    else cur.skip(wire);
  }
  // Go copies whatever arrives into a [32]byte; a short or long key can only be a broken peer.
  if (key === undefined || key.length !== KEY_SIZE) throw cur.bad();
  return key.slice();
}

export interface AuthSigMessage {
  /** Ed25519 identity key, 32 bytes. */
  publicKey: Uint8Array;
  /** Ed25519 signature over the challenge, 64 bytes. */
  signature: Uint8Array;
}

/** Length-delimited `AuthSigMessage` with an Ed25519 key: 103 bytes, `66 0a 22 0a 20 <pub> 12 40 <sig>`. */
export function encodeAuthSigMessage(msg: AuthSigMessage): Uint8Array {
  const publicKey = bytesField(1, msg.publicKey); // crypto.PublicKey, oneof sum: ed25519 = 1
  return delimited(concat(bytesField(1, publicKey), bytesField(2, msg.signature)));
}

/** Parses an AuthSigMessage body (without length prefix). Only Ed25519 keys are accepted. */
export function decodeAuthSigMessage(body: Uint8Array): AuthSigMessage {
  const cur = new ProtoCursor(body, 'authentication message');
  let pubKeyMsg: Uint8Array | undefined;
  let signature: Uint8Array | undefined;
  while (!cur.done) {
    const [field, wire] = cur.tag();
    if (field === 1 && wire === 2) pubKeyMsg = cur.lengthDelimited();
    else if (field === 2 && wire === 2) signature = cur.lengthDelimited();
    else cur.skip(wire);
  }
  if (pubKeyMsg === undefined || signature === undefined || signature.length !== SIGNATURE_SIZE) throw cur.bad();

  const keyCur = new ProtoCursor(pubKeyMsg, 'authentication message key');
  let publicKey: Uint8Array | undefined;
  let otherKeyType = false;
  while (!keyCur.done) {
    const [field, wire] = keyCur.tag();
    if (field === 1 && wire === 2) {
      publicKey = keyCur.lengthDelimited();
      otherKeyType = false;
    } else {
      keyCur.skip(wire);
      // A oneof: the last member seen wins. secp256k1 (2), bls12_381 (3, v1) … are not privval identities.
      if (wire === 2) {
        publicKey = undefined;
        otherKeyType = true;
      }
    }
  }
  if (publicKey === undefined) {
    if (otherKeyType) throw protocolError('unsupported_key_type', 'The peer authenticated with a key type other than Ed25519.');
    throw keyCur.bad();
  }
  if (publicKey.length !== KEY_SIZE) throw keyCur.bad();
  return { publicKey: publicKey.slice(), signature: signature.slice() };
}

/**
 * Checks the peer's proof of identity: an Ed25519 signature over our shared challenge, then the
 * optional pin. Returns the authenticated key. Small-order keys are refused: under them a
 * signature over a fresh challenge can be forged with probability 1/8.
 */
export function authenticatePeer(msg: AuthSigMessage, challenge: Uint8Array, expectedRemoteKey?: Uint8Array): Uint8Array {
  let valid = false;
  try {
    valid =
      !ed25519.Point.fromBytes(msg.publicKey).isSmallOrder() &&
      ed25519.verify(msg.signature, challenge, msg.publicKey, { zip215: false });
  } catch {
    valid = false; // undecodable point or signature: same answer as a wrong one
  }
  if (!valid) {
    throw new SecretConnectionError('unauthorized', 'bad_signature', "The peer's handshake signature does not verify.");
  }
  if (expectedRemoteKey !== undefined && !equalBytes(msg.publicKey, expectedRemoteKey)) {
    throw new SecretConnectionError('unauthorized', 'remote_key_mismatch', 'The peer is not the expected remote signer identity.');
  }
  return msg.publicKey;
}

// ---------------------------------------------------------------------------------------------
// Raw byte intake

/**
 * Buffers what the stream delivers and hands it out in exact sizes. Pauses the stream when the
 * consumer falls behind, so a peer cannot make us buffer without bound.
 */
class StreamIntake {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private ended = false;
  private failure: Error | undefined;
  private waiter: { n: number; resolve: (b: Uint8Array | null) => void; reject: (e: Error) => void } | undefined;

  private readonly onData = (chunk: unknown) => {
    if (!(chunk instanceof Uint8Array)) {
      this.fail(protocolError('transport_error', 'The transport delivered something other than bytes.'));
      return;
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered > READ_HIGH_WATER) this.stream.pause();
    this.settle();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.settle();
  };
  private readonly onError = (cause: unknown) => {
    this.fail(protocolError('transport_error', 'The transport failed.', cause));
  };
  private readonly onClose = () => {
    this.ended = true;
    this.settle();
  };

  constructor(private readonly stream: Duplex) {
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('error', this.onError);
    stream.on('close', this.onClose);
  }

  /**
   * Exactly `n` bytes; `null` if the stream ended cleanly before any of them arrived, a
   * `truncated_frame` error if it ended part-way.
   */
  take(n: number): Promise<Uint8Array | null> {
    if (this.waiter) return Promise.reject(new Error('StreamIntake: concurrent take()'));
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.settle();
    });
  }

  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.discard();
    this.settle();
  }

  /** Stops listening for data; keeps an error listener so a late ECONNRESET cannot crash the process. */
  detach(): void {
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('close', this.onClose);
    this.stream.off('error', this.onError);
    this.stream.on('error', () => {});
    this.discard();
    this.ended = true;
    this.settle();
  }

  private discard(): void {
    for (const c of this.chunks) c.fill(0);
    this.chunks = [];
    this.buffered = 0;
  }

  private settle(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.failure) {
      this.waiter = undefined;
      w.reject(this.failure);
      return;
    }
    if (this.buffered >= w.n) {
      this.waiter = undefined;
      w.resolve(this.consume(w.n));
      if (this.buffered <= READ_HIGH_WATER && this.stream.isPaused()) this.stream.resume();
      return;
    }
    if (this.ended) {
      this.waiter = undefined;
      if (this.buffered === 0) w.resolve(null);
      else w.reject(protocolError('truncated_frame', 'The peer closed the connection in the middle of a message.'));
      return;
    }
    if (this.stream.isPaused()) this.stream.resume();
  }

  private consume(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const head = this.chunks[0]!;
      const k = Math.min(head.length, n - o);
      out.set(head.subarray(0, k), o);
      o += k;
      if (k === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(k);
    }
    this.buffered -= n;
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// The connection

function writeRaw(stream: Duplex, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.destroyed || stream.writableEnded) {
      reject(protocolError('connection_closed', 'The connection is closed.'));
      return;
    }
    const ok = stream.write(bytes);
    if (ok) {
      resolve();
      return;
    }
    const cleanup = () => {
      stream.off('drain', onDrain);
      stream.off('close', onClose);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = () => {
      cleanup();
      reject(protocolError('connection_closed', 'The connection closed while writing.'));
    };
    stream.on('drain', onDrain);
    stream.on('close', onClose);
  });
}

async function readDelimitedHandshakeMessage(next: () => Promise<number | null>, what: string): Promise<Uint8Array> {
  const truncated = () => protocolError('connection_closed', `The peer closed the connection before sending its ${what}.`);
  let length = 0;
  for (let shift = 0; ; shift += 7) {
    const b = await next();
    if (b === null) throw truncated();
    length += (b & 0x7f) * 2 ** shift;
    if (length > MAX_HANDSHAKE_MESSAGE) throw protocolError('bad_handshake_message', `The peer's ${what} is too long.`);
    if ((b & 0x80) === 0) break;
  }
  const body = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const b = await next();
    if (b === null) throw truncated();
    body[i] = b;
  }
  return body;
}

export class SecretConnection implements AsyncIterable<Uint8Array> {
  private pending: Uint8Array;
  private closed = false;
  private failure: Error | undefined;
  private readChain: Promise<unknown> = Promise.resolve();
  private writeChain: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly stream: Duplex,
    private readonly intake: StreamIntake,
    private readonly sendCipher: FrameCipher,
    private readonly recvCipher: FrameCipher,
    /** The peer's authenticated Ed25519 identity key. */
    readonly remotePublicKey: Uint8Array,
    leftover: Uint8Array,
  ) {
    this.pending = leftover;
  }

  /**
   * Runs the handshake on `stream` (which must not be read by anyone else) and resolves once the
   * peer has proven its identity. Once the exchange has started, any failure destroys the stream
   * and rejects with a `SecretConnectionError` (or the identity's own error if signing fails);
   * invalid arguments are refused before the stream is touched.
   */
  static async handshake(stream: Duplex, localIdentity: SecretConnectionIdentity, options: HandshakeOptions = {}): Promise<SecretConnection> {
    if (!(localIdentity.publicKey instanceof Uint8Array) || localIdentity.publicKey.length !== KEY_SIZE) {
      throw protocolError('bad_identity', `The local identity key must be a ${KEY_SIZE}-byte Ed25519 public key.`);
    }
    if (options.expectedRemoteKey !== undefined && options.expectedRemoteKey.length !== KEY_SIZE) {
      throw protocolError('bad_option', `The expected remote key must be a ${KEY_SIZE}-byte Ed25519 public key.`);
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw protocolError('bad_option', 'The handshake timeout must be a positive number of milliseconds.');
    }

    const intake = new StreamIntake(stream);
    const abort = { error: undefined as Error | undefined };
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(protocolError('handshake_timeout', `The peer did not complete the handshake within ${timeoutMs} ms.`)),
        timeoutMs,
      );
    });
    const work = SecretConnection.runHandshake(stream, intake, localIdentity, options.expectedRemoteKey, abort);
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      abort.error = error;
      intake.fail(error);
      // The losing branch still settles (or its pending read is rejected just above); it wipes its own keys.
      work.then((conn) => conn.destroyWith(error)).catch(() => {});
      intake.detach();
      stream.destroy();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  private static async runHandshake(
    stream: Duplex,
    intake: StreamIntake,
    identity: SecretConnectionIdentity,
    expectedRemoteKey: Uint8Array | undefined,
    abort: { error: Error | undefined },
  ): Promise<SecretConnection> {
    const checkAbort = () => {
      if (abort.error) throw abort.error;
    };
    const nextRawByte = async () => {
      const b = await intake.take(1);
      return b === null ? null : b[0]!;
    };

    // 1. Ephemeral keys, in clear. Both sides write before reading, so neither waits on the other.
    const ephemeralSecret = x25519.utils.randomSecretKey();
    const ephemeralPublic = x25519.getPublicKey(ephemeralSecret);
    let secrets: ReturnType<typeof deriveSessionSecrets>;
    try {
      const sent = writeRaw(stream, encodeEphemeralKeyMessage(ephemeralPublic));
      const remoteBody = await readDelimitedHandshakeMessage(nextRawByte, 'ephemeral key');
      await sent;
      checkAbort();
      const remoteEphemeral = decodeEphemeralKeyMessage(remoteBody);
      // 2. Key schedule; rejects low-order and reflected keys with its own typed error.
      secrets = deriveSessionSecrets({ localEphemeralSecret: ephemeralSecret, localEphemeralPublic: ephemeralPublic, remoteEphemeralPublic: remoteEphemeral });
    } finally {
      ephemeralSecret.fill(0);
    }

    const sendCipher = new FrameCipher(secrets.sendSecret);
    const recvCipher = new FrameCipher(secrets.recvSecret);
    secrets.sendSecret.fill(0);
    secrets.recvSecret.fill(0);
    const challenge = secrets.challenge;
    try {
      // 3. Prove our identity over the encrypted channel (frame 0 in each direction).
      const signature = await identity.sign(challenge);
      checkAbort();
      if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_SIZE) {
        throw protocolError('bad_identity', `The local identity returned a signature that is not ${SIGNATURE_SIZE} bytes.`);
      }
      const authSig = encodeAuthSigMessage({ publicKey: identity.publicKey, signature });
      const sends: Promise<void>[] = [];
      for (let o = 0; o < authSig.length; o += FRAME_DATA_MAX) {
        sends.push(writeRaw(stream, sendCipher.seal(authSig.subarray(o, o + FRAME_DATA_MAX))));
      }

      // The peer's AuthSigMessage is read from the decrypted byte stream, so it may span frames
      // and be followed by application data, which is kept for the first read().
      let plain: Uint8Array = new Uint8Array(0);
      let offset = 0;
      const nextPlainByte = async (): Promise<number | null> => {
        while (offset >= plain.length) {
          const sealed = await intake.take(SEALED_FRAME_SIZE);
          if (sealed === null) return null;
          plain = recvCipher.open(sealed);
          offset = 0;
        }
        return plain[offset++]!;
      };
      const remoteBody = await readDelimitedHandshakeMessage(nextPlainByte, 'authentication message');
      await Promise.all(sends);
      checkAbort();
      const remotePublicKey = authenticatePeer(decodeAuthSigMessage(remoteBody), challenge, expectedRemoteKey);
      return new SecretConnection(stream, intake, sendCipher, recvCipher, remotePublicKey, plain.slice(offset));
    } catch (err) {
      sendCipher.wipe();
      recvCipher.wipe();
      throw err;
    } finally {
      challenge.fill(0);
    }
  }

  /**
   * Sends `data`, split into frames of ≤ 1024 bytes. Writes are queued in call order, so two
   * concurrent writes never interleave. Resolves once the stream has accepted the bytes.
   */
  write(data: Uint8Array): Promise<void> {
    const run = this.writeChain.then(async () => {
      for (let o = 0; o < data.length; o += FRAME_DATA_MAX) {
        this.assertOpen();
        let sealed: Uint8Array;
        try {
          sealed = this.sendCipher.seal(data.subarray(o, o + FRAME_DATA_MAX));
        } catch (err) {
          throw this.destroyWith(err);
        }
        await writeRaw(this.stream, sealed);
      }
      if (data.length === 0) this.assertOpen();
    });
    this.writeChain = run.catch(() => {});
    return run;
  }

  /**
   * The next decrypted bytes (one frame's worth at most), or `null` once the peer has closed the
   * connection or we have. Rejects with a `SecretConnectionError` — and ends the session — on a
   * forged, reordered or malformed frame.
   */
  read(): Promise<Uint8Array | null> {
    const run = this.readChain.then(() => this.readFrame());
    this.readChain = run.catch(() => {});
    return run;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const chunk = await this.read();
      if (chunk === null) return;
      yield chunk;
    }
  }

  /**
   * Ends the session: wipes the keys, half-closes the stream and destroys it once the peer has
   * closed too (or after a short grace). Pending and later reads resolve `null`; writes reject.
   */
  close(): Promise<void> {
    if (!this.closed && !this.failure) {
      this.closed = true;
      this.wipe();
      this.intake.detach();
    }
    const stream = this.stream;
    if (stream.closed || stream.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const grace = setTimeout(() => stream.destroy(), CLOSE_GRACE_MS);
      grace.unref();
      stream.once('close', () => {
        clearTimeout(grace);
        resolve();
      });
      stream.end();
      // With nothing reading it, a Duplex never emits 'end'; keep draining so the close completes.
      stream.resume();
    });
  }

  private async readFrame(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.closed) return null;
      if (this.pending.length > 0) {
        const out = this.pending;
        this.pending = new Uint8Array(0);
        return out;
      }
      let sealed: Uint8Array | null;
      try {
        sealed = await this.intake.take(SEALED_FRAME_SIZE);
      } catch (err) {
        if (this.closed) return null;
        throw this.destroyWith(err);
      }
      if (sealed === null) return null;
      if (this.closed) return null;
      let data: Uint8Array;
      try {
        data = this.recvCipher.open(sealed);
      } catch (err) {
        throw this.destroyWith(err);
      }
      // A frame with no data is legal (Go never sends one); it is not end-of-stream.
      if (data.length > 0) return data;
    }
  }

  private assertOpen(): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw protocolError('connection_closed', 'The connection is closed.');
  }

  /** Ends the session on a protocol error: wipes keys, drops the transport, remembers the error. */
  private destroyWith(err: unknown): Error {
    const error = err instanceof Error ? err : new Error(String(err));
    if (!this.failure && !this.closed) {
      this.failure = error;
      this.wipe();
      this.intake.fail(error);
      this.intake.detach();
      this.stream.destroy();
    }
    return this.failure ?? error;
  }

  private wipe(): void {
    this.sendCipher.wipe();
    this.recvCipher.wipe();
    this.pending.fill(0);
    this.pending = new Uint8Array(0);
  }
}
