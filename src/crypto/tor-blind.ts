/**
 * Onion-service v3 key blinding (rend-spec-v3 Appendix A.2; C tor `hs_common.c`, Arti
 * `tor-hscrypto`), so that an onion service's identity key K_hs_id stays in the vault and only
 * the blinded key of each time period signs:
 *
 *   h  = SHA3-256(BLIND_STRING ‖ A ‖ s ‖ B_str ‖ "key-blind" ‖ u64be(period) ‖ u64be(length_min))
 *   h is clamped (h[0] &= 248, h[31] &= 63, h[31] |= 64), read little-endian, reduced mod l
 *   A' = h·A;  a' = h·a mod l (not re-clamped);  RH' = SHA-512("Derive temporary signing key hash input" ‖ RH)[0..32]
 *
 * BLIND_STRING ends with one NUL byte, B_str is the decimal basepoint string, and s (an optional
 * secret) is empty, as in C tor and Arti. Checked against ../shared/vectors/tor-keyblind.
 * The time period: floor((minutes since the epoch − 720) / length), tor's 12-hour rotation offset.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha3_256 } from '@noble/hashes/sha3.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { concatBytes } from '@noble/hashes/utils.js';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils.js';
import { base32 } from '@scure/base';
import { CustosError } from '../core/errors.js';
import { wipe } from '../core/bytes.js';

const L = ed25519.Point.Fn.ORDER;
const BLIND_STRING = new TextEncoder().encode('Derive temporary signing key\0');
const B_STR = new TextEncoder().encode('(15112221349535400772501151409588531511454012693041857206046113283949847762202, 46316835694926478169428394003475163141307993866256225615783033603165251855960)');
const RH_PREFIX = new TextEncoder().encode('Derive temporary signing key hash input');
export const DEFAULT_PERIOD_MINUTES = 1440;
/** Tor's time-period rotation offset: the shared-random protocol's phase, 12 hours. */
export const ROTATION_OFFSET_MINUTES = 720;

const bad = (m: string) => new CustosError('bad_request', m, { tag: 'tor_blinding' });

const le = bytesToNumberLE;
const le32 = (n: bigint): Uint8Array => numberToBytesLE(n, 32);

export interface TimePeriod {
  num: number;
  /** Minutes (1440 on the public network). */
  length: number;
}

export function checkPeriod(p: TimePeriod): TimePeriod {
  if (!Number.isSafeInteger(p.num) || p.num < 0) throw bad('A time period number is a non-negative integer.');
  if (!Number.isInteger(p.length) || p.length < 1 || p.length > 1440 * 366) throw bad('A time period length is 1 to 527,040 minutes (1440 on the public network).');
  return p;
}

/** The time period `at` falls in (tor's hs_get_time_period_num). */
export function periodAt(at: Date, length = DEFAULT_PERIOD_MINUTES): TimePeriod {
  return { num: Math.floor((Math.floor(at.getTime() / 60_000) - ROTATION_OFFSET_MINUTES) / length), length };
}

/** The unclamped blinding parameter h for identity public key `A` and a period. */
export function blindingParam(publicKey: Uint8Array, p: TimePeriod): Uint8Array {
  if (publicKey.length !== 32) throw bad('An onion-service identity key is a 32-byte Ed25519 public key.');
  checkPeriod(p);
  const n = new Uint8Array(9 + 16);
  n.set(new TextEncoder().encode('key-blind'));
  const v = new DataView(n.buffer);
  v.setBigUint64(9, BigInt(p.num));
  v.setBigUint64(17, BigInt(p.length));
  return sha3_256(concatBytes(BLIND_STRING, publicKey, B_STR, n));
}

/** h clamped, little-endian, mod l. */
export function clampedScalar(h: Uint8Array): bigint {
  const c = Uint8Array.from(h);
  c[0]! &= 248;
  c[31]! &= 63;
  c[31]! |= 64;
  return le(c) % L;
}

/** A' = h·A: the blinded public key of a period (public: variable-time arithmetic is fine). */
export function blindPublicKey(publicKey: Uint8Array, p: TimePeriod): Uint8Array {
  return blindPublicKeyWith(publicKey, blindingParam(publicKey, p));
}

/** A' = clamp(h)·A for a given blinding parameter h (C tor's ed25519 vectors give h directly). */
export function blindPublicKeyWith(publicKey: Uint8Array, h: Uint8Array): Uint8Array {
  let A;
  try {
    A = ed25519.Point.fromBytes(publicKey);
  } catch {
    throw bad('The identity key is not an Ed25519 point.');
  }
  return A.multiplyUnsafe(clampedScalar(h)).toBytes();
}

/** The blinded expanded secret a'‖RH' of a period, from the identity's expanded secret a‖RH (64 bytes). The caller wipes it. */
export function blindSecret(expanded: Uint8Array, publicKey: Uint8Array, p: TimePeriod): Uint8Array {
  return blindSecretWith(expanded, blindingParam(publicKey, p));
}

/** a' = clamp(h)·a mod l, RH' = SHA-512(prefix ‖ RH)[0..32], for a given blinding parameter h. */
export function blindSecretWith(expanded: Uint8Array, hParam: Uint8Array): Uint8Array {
  if (expanded.length !== 64) throw bad('An expanded Ed25519 secret is 64 bytes (a ‖ RH).');
  const h = clampedScalar(hParam);
  const a = le(expanded.subarray(0, 32)) % L;
  const rh = sha512(concatBytes(RH_PREFIX, expanded.subarray(32, 64)));
  const scalar = le32((h * a) % L);
  try {
    return concatBytes(scalar, rh.subarray(0, 32));
  } finally {
    wipe(rh, scalar);
  }
}

const NONCE_PREFIX = new TextEncoder().encode('custos tor blinded-key nonce v1');

/**
 * The secret the vault signs with for a period: a' as blindSecret gives it, with a nonce key
 * RH'' = SHA-512(prefix ‖ RH' ‖ u64be(period) ‖ u64be(length))[0..32] in place of RH'. The
 * signatures are ordinary Ed25519 under A'. Why: RH' is the same for every period (rend-spec),
 * and Ed25519's nonce is H(RH' ‖ M); tor only ever signs a certificate holding the blinded key
 * itself, so M never repeats across periods, but a caller asking for the same message under
 * two periods would get two signatures sharing a nonce, and from them the identity scalar a.
 * A nonce key per period makes that impossible whatever the messages. The caller wipes it.
 */
export function blindSigningSecret(expanded: Uint8Array, publicKey: Uint8Array, p: TimePeriod): Uint8Array {
  const b = blindSecret(expanded, publicKey, p);
  const n = new Uint8Array(16);
  const v = new DataView(n.buffer);
  v.setBigUint64(0, BigInt(p.num));
  v.setBigUint64(8, BigInt(p.length));
  const rh = sha512(concatBytes(NONCE_PREFIX, b.subarray(32, 64), n));
  try {
    b.set(rh.subarray(0, 32), 32);
    return b;
  } finally {
    wipe(rh);
  }
}

/** An Ed25519 seed's expanded secret (RFC 8032: SHA-512, the first half clamped). The caller wipes it. */
export function expandSeed(seed: Uint8Array): Uint8Array {
  const h = sha512(seed);
  h[0]! &= 248;
  h[31]! &= 63;
  h[31]! |= 64;
  return h;
}

/** The subcredential of a period: SHA3-256("subcredential" ‖ SHA3-256("credential" ‖ A) ‖ A'). */
export function subcredential(publicKey: Uint8Array, blinded: Uint8Array): Uint8Array {
  const cred = sha3_256(concatBytes(new TextEncoder().encode('credential'), publicKey));
  return sha3_256(concatBytes(new TextEncoder().encode('subcredential'), cred, blinded));
}

/** The v3 onion address of an identity key: base32(A ‖ checksum[0..2] ‖ 0x03).onion, lowercase. */
export function onionAddress(publicKey: Uint8Array): string {
  const checksum = sha3_256(concatBytes(new TextEncoder().encode('.onion checksum'), publicKey, Uint8Array.of(3)));
  return `${base32.encode(concatBytes(publicKey, checksum.subarray(0, 2), Uint8Array.of(3))).toLowerCase()}.onion`;
}
