/**
 * The key schedule of CometBFT's SecretConnection handshake (the transport between a node and
 * its remote signer on `tcp://` addresses): from the two ephemeral X25519 keys to the pair of
 * ChaCha20-Poly1305 keys and the 32-byte challenge each side signs with its identity key.
 *
 * Pure functions, no I/O. Behaviour follows cometbft `p2p/conn/secret_connection.go`
 * (`MakeSecretConnection`, `deriveSecrets`, v0.38.x / v1.0.x — unchanged since the Merlin
 * transcript was introduced in Tendermint v0.33, tendermint#4185), cross-checked with tmkms-p2p:
 *
 *   (lo, hi)   = the two ephemeral public keys in lexicographic byte order
 *   dh         = X25519(local ephemeral secret, remote ephemeral public), all-zero rejected
 *   transcript = Merlin("TENDERMINT_SECRET_CONNECTION_TRANSCRIPT_HASH")
 *                  ‖ EPHEMERAL_LOWER_PUBLIC_KEY=lo ‖ EPHEMERAL_UPPER_PUBLIC_KEY=hi ‖ DH_SECRET=dh
 *   okm        = HKDF-SHA256(ikm=dh, salt=∅, info="TENDERMINT_SECRET_CONNECTION_KEY_AND_CHALLENGE_GEN", 96)
 *   keys       = the side whose ephemeral key is lo receives with okm[0:32] and sends with
 *                okm[32:64]; the other side the reverse. okm[64:96] is the pre-Merlin challenge
 *                and is no longer used by anyone.
 *   challenge  = transcript.challenge_bytes("SECRET_CONNECTION_MAC", 32)
 */
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { CustosError } from '../core/errors.js';
import { MerlinTranscript } from './merlin.js';

const TRANSCRIPT_LABEL = 'TENDERMINT_SECRET_CONNECTION_TRANSCRIPT_HASH';
const LOWER_KEY_LABEL = 'EPHEMERAL_LOWER_PUBLIC_KEY';
const UPPER_KEY_LABEL = 'EPHEMERAL_UPPER_PUBLIC_KEY';
const DH_SECRET_LABEL = 'DH_SECRET';
const CHALLENGE_LABEL = 'SECRET_CONNECTION_MAC';
const HKDF_INFO = new TextEncoder().encode('TENDERMINT_SECRET_CONNECTION_KEY_AND_CHALLENGE_GEN');

const KEY_LENGTH = 32;

/**
 * A handshake that must be abandoned: the peer's ephemeral key is unusable, or the caller
 * passed inconsistent keys. Tagged so logs tell them apart (`bad_request:low_order_key`).
 */
export class SecretConnectionKeyError extends CustosError {
  constructor(tag: 'low_order_key' | 'reflected_key' | 'key_mismatch' | 'bad_key_length', message: string, options?: { cause?: unknown }) {
    super('bad_request', message, { tag, ...options });
    this.name = 'SecretConnectionKeyError';
  }
}

export interface DirectionalSecrets {
  /** ChaCha20-Poly1305 key for frames the peer sends us. */
  recvSecret: Uint8Array;
  /** ChaCha20-Poly1305 key for frames we send. */
  sendSecret: Uint8Array;
}

export interface SessionSecrets extends DirectionalSecrets {
  /** The 32 bytes each side signs with its Ed25519 identity key (and verifies the peer's signature over). */
  challenge: Uint8Array;
  /** Whether our ephemeral key sorts first; exposed for logs and tests, the keys already account for it. */
  locIsLeast: boolean;
}

export interface EphemeralKeys {
  localEphemeralSecret: Uint8Array;
  localEphemeralPublic: Uint8Array;
  remoteEphemeralPublic: Uint8Array;
}

function requireKey(bytes: Uint8Array, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_LENGTH) {
    throw new SecretConnectionKeyError('bad_key_length', `The ${what} must be ${KEY_LENGTH} bytes.`);
  }
}

/** Lexicographic byte comparison, as Go's `bytes.Compare`. Public keys only: not constant time. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  }
  return a.length - b.length;
}

function isAllZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (const b of bytes) acc |= b;
  return acc === 0;
}

/**
 * Orders the two ephemeral public keys. `locIsLeast` decides which half of the HKDF output
 * each side sends with, so both sides agree on the direction without knowing who dialled.
 */
export function sortEphemeralKeys(
  localEphemeralPublic: Uint8Array,
  remoteEphemeralPublic: Uint8Array,
): { lo: Uint8Array; hi: Uint8Array; locIsLeast: boolean } {
  requireKey(localEphemeralPublic, 'local ephemeral public key');
  requireKey(remoteEphemeralPublic, 'remote ephemeral public key');
  const locIsLeast = compareBytes(localEphemeralPublic, remoteEphemeralPublic) < 0;
  return locIsLeast
    ? { lo: localEphemeralPublic, hi: remoteEphemeralPublic, locIsLeast }
    : { lo: remoteEphemeralPublic, hi: localEphemeralPublic, locIsLeast };
}

/**
 * X25519(localSecret, remotePublic), refusing low-order peer keys. Go's `curve25519.X25519`
 * fails on an all-zero result; tmkms-p2p also rejects the low-order points up front
 * (eprint 2019/526). Without this a peer could force a known DH secret — and so known session
 * keys — on us.
 */
export function computeDhSecret(localEphemeralSecret: Uint8Array, remoteEphemeralPublic: Uint8Array): Uint8Array {
  requireKey(localEphemeralSecret, 'local ephemeral secret key');
  requireKey(remoteEphemeralPublic, 'remote ephemeral public key');
  let dh: Uint8Array;
  try {
    // @noble/curves rejects the low-order u-coordinates before running the ladder.
    dh = x25519.getSharedSecret(localEphemeralSecret, remoteEphemeralPublic);
  } catch (cause) {
    throw new SecretConnectionKeyError('low_order_key', 'The peer sent a low-order ephemeral key.', { cause });
  }
  if (isAllZero(dh)) {
    throw new SecretConnectionKeyError('low_order_key', 'The peer sent a low-order ephemeral key.');
  }
  return dh;
}

/**
 * CometBFT `deriveSecrets(dhSecret, locIsLeast)`: the two directional ChaCha20-Poly1305 keys.
 * The lower-key side receives with okm[0:32]; okm[64:96] (the legacy challenge) is discarded.
 */
export function deriveSecrets(dhSecret: Uint8Array, locIsLeast: boolean): DirectionalSecrets {
  requireKey(dhSecret, 'DH secret');
  // salt = ∅: Go passes nil, RFC 5869 §2.2 then uses HashLen zero bytes, the same HMAC key as empty.
  const okm = hkdf(sha256, dhSecret, undefined, HKDF_INFO, 3 * KEY_LENGTH);
  const first = okm.slice(0, KEY_LENGTH);
  const second = okm.slice(KEY_LENGTH, 2 * KEY_LENGTH);
  okm.fill(0);
  return locIsLeast ? { recvSecret: first, sendSecret: second } : { recvSecret: second, sendSecret: first };
}

/**
 * The challenge both sides sign: a Merlin transcript over the sorted ephemeral keys and the DH
 * secret (cometbft `MakeSecretConnection`, label strings verbatim).
 */
export function makeTranscriptChallenge(loEphemeralPublic: Uint8Array, hiEphemeralPublic: Uint8Array, dhSecret: Uint8Array): Uint8Array {
  requireKey(loEphemeralPublic, 'lower ephemeral public key');
  requireKey(hiEphemeralPublic, 'upper ephemeral public key');
  requireKey(dhSecret, 'DH secret');
  const transcript = new MerlinTranscript(TRANSCRIPT_LABEL);
  transcript.appendMessage(LOWER_KEY_LABEL, loEphemeralPublic);
  transcript.appendMessage(UPPER_KEY_LABEL, hiEphemeralPublic);
  transcript.appendMessage(DH_SECRET_LABEL, dhSecret);
  const challenge = transcript.challengeBytes(CHALLENGE_LABEL, 32);
  transcript.wipe();
  return challenge;
}

/**
 * The whole key schedule for one side of a handshake. The DH secret is wiped before returning;
 * the caller owns (and should wipe) the returned keys and its ephemeral secret.
 */
export function deriveSessionSecrets(keys: EphemeralKeys): SessionSecrets {
  const { localEphemeralSecret, localEphemeralPublic, remoteEphemeralPublic } = keys;
  requireKey(localEphemeralSecret, 'local ephemeral secret key');
  requireKey(localEphemeralPublic, 'local ephemeral public key');
  requireKey(remoteEphemeralPublic, 'remote ephemeral public key');
  // A mismatched pair would still yield keys, just not the peer's: the handshake would then fail
  // later as a bad signature, far from the cause.
  if (compareBytes(x25519.getPublicKey(localEphemeralSecret), localEphemeralPublic) !== 0) {
    throw new SecretConnectionKeyError('key_mismatch', 'The local ephemeral public key does not belong to the local ephemeral secret.');
  }
  // CometBFT does not check this; an honest peer repeats our fresh key with probability 2^-252,
  // so equality means our own message was reflected back at us.
  if (compareBytes(localEphemeralPublic, remoteEphemeralPublic) === 0) {
    throw new SecretConnectionKeyError('reflected_key', 'The peer sent back our own ephemeral key.');
  }
  const { lo, hi, locIsLeast } = sortEphemeralKeys(localEphemeralPublic, remoteEphemeralPublic);
  const dh = computeDhSecret(localEphemeralSecret, remoteEphemeralPublic);
  try {
    const { recvSecret, sendSecret } = deriveSecrets(dh, locIsLeast);
    const challenge = makeTranscriptChallenge(lo, hi, dh);
    return { recvSecret, sendSecret, challenge, locIsLeast };
  } finally {
    dh.fill(0);
  }
}
