/**
 * FROST threshold Schnorr signatures (RFC 9591) from @noble/curves: `ed25519_FROST`
 * (FROST(Ed25519, SHA-512), whose signatures are RFC 8032 signatures) and `schnorr_FROST` (the
 * Taproot suite, whose signatures are BIP340). Only what Custos needs around the library lives
 * here: which suite an algorithm uses, the codecs of what is stored and sent (a key set's public
 * package, nonce commitments, shares), a participant's identifier from its cluster name, and the
 * secret scalar of an existing key for a one-time split. Pure functions; no I/O.
 */
import { ed25519, ed25519_FROST } from '@noble/curves/ed25519.js';
import { schnorr_FROST, secp256k1 } from '@noble/curves/secp256k1.js';
import type { FROST, FrostPublic, NonceCommitments } from '@noble/curves/abstract/frost.js';
import { CustosError } from '../core/errors.js';
import { bytesToHex, hexToBytes, wipe } from '../core/bytes.js';
import type { Algorithm } from '../core/types.js';

export type { FrostPublic, FrostSecret, NonceCommitments, Nonces } from '@noble/curves/abstract/frost.js';

/** The algorithms a threshold key can have. */
export const THRESHOLD_ALGORITHMS = ['ed25519', 'secp256k1-bip340'] as const satisfies readonly Algorithm[];
export type ThresholdAlgorithm = (typeof THRESHOLD_ALGORITHMS)[number];

export function isThresholdAlgorithm(a: string): a is ThresholdAlgorithm {
  return (THRESHOLD_ALGORITHMS as readonly string[]).includes(a);
}

/** Most participants in one key set, and the smallest threshold. */
export const MAX_PARTICIPANTS = 16;

export function frostOf(alg: Algorithm): FROST {
  if (alg === 'ed25519') return ed25519_FROST as unknown as FROST;
  if (alg === 'secp256k1-bip340') return schnorr_FROST as unknown as FROST;
  throw new CustosError('unsupported_algorithm', `Threshold keys are ${THRESHOLD_ALGORITHMS.join(' or ')}, not ${alg}.`);
}

const bad = (what: string) => new CustosError('bad_request', what);
const HEX = /^[0-9a-f]*$/;

function hexField(v: unknown, what: string, lengths: number[]): Uint8Array<ArrayBuffer> {
  if (typeof v !== 'string' || !HEX.test(v) || !lengths.includes(v.length / 2)) throw bad(`${what} must be ${lengths.join(' or ')} bytes of lowercase hex.`);
  return new Uint8Array(hexToBytes(v, what));
}

/** Serialized point and scalar sizes of each suite. */
function sizes(alg: ThresholdAlgorithm): { point: number[]; scalar: number } {
  return alg === 'ed25519' ? { point: [32], scalar: 32 } : { point: [33], scalar: 32 };
}

/** A participant identifier: the suite's serialized scalar, in hex (the library's form). */
export function identifierField(alg: ThresholdAlgorithm, v: unknown, what = 'identifier'): string {
  return bytesToHex(hexField(v, what, [sizes(alg).scalar]));
}

/** A participant's identifier, from its name in the cluster (stable across configurations). */
export function identifierOf(alg: ThresholdAlgorithm, name: string): string {
  return frostOf(alg).Identifier.derive(`custos-cluster:${name}`);
}

/** The key set's public package as stored in the key's attributes and sent between cosigners. */
export function encodePublic(pub: FrostPublic): string {
  return JSON.stringify({
    min: pub.signers.min,
    max: pub.signers.max,
    commitments: pub.commitments.map(bytesToHex),
    // In identifier order: every member stores, and hashes, the same text.
    verifying_shares: Object.fromEntries(Object.entries(pub.verifyingShares).sort(([x], [y]) => (x < y ? -1 : 1)).map(([id, p]) => [id, bytesToHex(p)])),
  });
}

/** Parses and checks a public package: sizes, threshold, points on the curve. */
export function decodePublic(alg: ThresholdAlgorithm, text: unknown): FrostPublic {
  let o: { min?: unknown; max?: unknown; commitments?: unknown; verifying_shares?: unknown };
  try {
    o = (typeof text === 'string' ? JSON.parse(text) : text) as typeof o;
  } catch {
    throw bad('The threshold public package is not JSON.');
  }
  if (typeof o !== 'object' || o === null) throw bad('The threshold public package is not an object.');
  const { min, max } = o;
  if (!Number.isInteger(min) || !Number.isInteger(max) || (min as number) < 2 || (max as number) < (min as number) || (max as number) > MAX_PARTICIPANTS) {
    throw bad(`A threshold key set needs 2 ≤ threshold ≤ participants ≤ ${MAX_PARTICIPANTS}.`);
  }
  const { point } = sizes(alg);
  if (!Array.isArray(o.commitments) || o.commitments.length !== min) throw bad('The public package must carry one commitment per threshold coefficient.');
  const shares = o.verifying_shares;
  if (typeof shares !== 'object' || shares === null || Object.keys(shares).length !== max) throw bad('The public package must carry one verifying share per participant.');
  const pub: FrostPublic = {
    signers: { min: min as number, max: max as number },
    commitments: o.commitments.map((c, i) => hexField(c, `commitment ${i}`, point)),
    verifyingShares: Object.fromEntries(Object.entries(shares as Record<string, unknown>).map(([id, p]) => [identifierField(alg, id), hexField(p, 'verifying share', point)])),
  };
  try {
    // Every point must decode (the library checks them again, identity and subgroup, where it uses them).
    for (const c of [...pub.commitments, ...Object.values(pub.verifyingShares)]) {
      const P = alg === 'ed25519' ? ed25519.Point.fromBytes(c) : secp256k1.Point.fromBytes(c);
      P.assertValidity();
      // RFC 9591 §3.1: no identity element, and (Ed25519) nothing outside the prime-order subgroup.
      if (P.is0() || !P.isTorsionFree()) throw new Error('small order');
    }
  } catch {
    throw bad('The public package holds a point that is not on the curve.');
  }
  return pub;
}

/** The key's public key as the vault shows it (RFC 8032 point; BIP340 x-only). */
export function groupPublicKey(alg: ThresholdAlgorithm, pub: FrostPublic): Uint8Array {
  const c = pub.commitments[0]!;
  return alg === 'ed25519' ? c.slice() : c.slice(1);
}

export function encodeCommitments(c: NonceCommitments): { identifier: string; hiding: string; binding: string } {
  return { identifier: c.identifier, hiding: bytesToHex(c.hiding), binding: bytesToHex(c.binding) };
}

export function decodeCommitments(alg: ThresholdAlgorithm, v: unknown): NonceCommitments {
  if (typeof v !== 'object' || v === null) throw bad('A nonce commitment must be an object.');
  const o = v as Record<string, unknown>;
  const { point } = sizes(alg);
  return { identifier: identifierField(alg, o.identifier), hiding: hexField(o.hiding, 'hiding commitment', point), binding: hexField(o.binding, 'binding commitment', point) };
}

export function decodeShare(alg: ThresholdAlgorithm, v: unknown): Uint8Array {
  return hexField(v, 'signature share', [sizes(alg).scalar]);
}

/**
 * The secret scalar of an existing key, in the suite's encoding, for a one-time split by a
 * dealer: an Ed25519 seed's clamped SHA-512 half reduced mod L (the scalar its public key is
 * made from); a BIP340 secret as it is.
 */
export function splitScalar(alg: ThresholdAlgorithm, secret: Uint8Array): Uint8Array {
  if (alg === 'secp256k1-bip340') return secret.slice();
  const ext = ed25519.utils.getExtendedPublicKey(secret);
  try {
    const n = ext.scalar;
    const out = new Uint8Array(32);
    let x = n;
    for (let i = 0; i < 32; i++) {
      out[i] = Number(x & 0xffn);
      x >>= 8n;
    }
    return out;
  } finally {
    wipe(ext.head, ext.prefix);
  }
}

/** Where a threshold key keeps its public side: attributes bound into its envelope at creation. */
export const THRESHOLD_ATTRIBUTES = {
  /** This node's name in the key set. */
  self: 'threshold.self',
  /** JSON: each participant's name → FROST identifier. */
  members: 'threshold.members',
  /** The key set's public package (encodePublic). */
  public: 'threshold.public',
  /** `dkg` or `dealer`. */
  origin: 'threshold.origin',
} as const;

/** The backend attribute of a threshold key: its signatures are made with its cosigners. */
export const THRESHOLD_BACKEND = 'threshold';

export interface ThresholdKey {
  algorithm: ThresholdAlgorithm;
  self: string;
  identifier: string;
  /** Participant name → identifier. */
  members: Record<string, string>;
  pub: FrostPublic;
}

/** The public side of a threshold key, or null when the key is not one. */
export function thresholdOf(key: { algorithm: Algorithm; attributes: Record<string, string | number | boolean> }): ThresholdKey | null {
  const a = key.attributes;
  if (a.backend !== THRESHOLD_BACKEND) return null;
  if (!isThresholdAlgorithm(key.algorithm)) throw new CustosError('key_record_corrupt', `A threshold key cannot be ${key.algorithm}.`);
  const self = a[THRESHOLD_ATTRIBUTES.self];
  const membersText = a[THRESHOLD_ATTRIBUTES.members];
  if (typeof self !== 'string' || typeof membersText !== 'string') throw new CustosError('key_record_corrupt', 'The threshold key has no member list.');
  const members = checkMembers(key.algorithm, JSON.parse(membersText));
  const pub = decodePublic(key.algorithm, a[THRESHOLD_ATTRIBUTES.public]);
  const identifier = members[self];
  if (identifier === undefined) throw new CustosError('key_record_corrupt', `The threshold key's members do not include this node (${self}).`);
  return { algorithm: key.algorithm, self, identifier, members, pub };
}

/** A member list: names, each with the identifier derived from it. */
export function checkMembers(alg: ThresholdAlgorithm, v: unknown): Record<string, string> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('The member list must map names to identifiers.');
  const out: Record<string, string> = {};
  for (const [name, id] of Object.entries(v)) {
    if (!/^[a-z0-9][a-z0-9_-]{0,31}$/.test(name)) throw bad(`"${name.slice(0, 40)}" is not a cosigner name.`);
    if (id !== identifierOf(alg, name)) throw bad(`The identifier of ${name} is not the one its name gives.`);
    out[name] = id;
  }
  if (Object.keys(out).length < 2 || Object.keys(out).length > MAX_PARTICIPANTS) throw bad(`A key set has 2 to ${MAX_PARTICIPANTS} members.`);
  return out;
}

/** The member a FROST identifier belongs to. */
export function memberOf(t: ThresholdKey, identifier: string): string | undefined {
  return Object.keys(t.members).find((n) => t.members[n] === identifier);
}
