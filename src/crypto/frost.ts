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

/**
 * Checked packages by their text: a key's package is read at every signature, and checking its
 * points (decompression, subgroup) costs milliseconds each.
 */
const checked = new Map<string, FrostPublic>();
const CHECKED_MAX = 1024;

/** Parses and checks a public package: sizes, threshold, points on the curve. */
export function decodePublic(alg: ThresholdAlgorithm, text: unknown): FrostPublic {
  if (typeof text !== 'string') return decodePublicOnce(alg, text);
  const memo = `${alg}:${text}`;
  const hit = checked.get(memo);
  if (hit) return hit;
  const pub = decodePublicOnce(alg, text);
  if (checked.size >= CHECKED_MAX) checked.delete(checked.keys().next().value!);
  checked.set(memo, pub);
  return pub;
}

function decodePublicOnce(alg: ThresholdAlgorithm, text: unknown): FrostPublic {
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

// ---- Proactive refresh and resharing (the key set's public key kept, every share replaced)
//
// A dealer set D (at least the threshold of the old shares) re-deals the same secret to a
// receiver set R: each dealer i picks a fresh polynomial f_i of degree t − 1 with
// f_i(0) = λ_i·s_i (λ_i its Lagrange coefficient at zero over D), commits to its coefficients,
// and gives receiver j the value f_i(x_j). Receiver j's new share is Σ_i f_i(x_j), the new
// commitments are Σ_i C_i, and Σ_i λ_i·s_i = s: the group key stays, old shares no longer
// combine with new ones. Each value is checked against its dealer's commitments (RFC 9591
// C.2 vss_verify), and each dealer's C_i[0] against λ_i times its old verifying share, so no
// dealer can shift the key. Built on the library's polynomial and point arithmetic only.

/** The group operations a refresh needs, common to both suites' points. */
interface Pt {
  add(o: Pt): Pt;
  multiply(n: bigint): Pt;
  equals(o: Pt): boolean;
  toBytes(): Uint8Array;
}

function pointsOf(alg: ThresholdAlgorithm): { BASE: Pt; ZERO: Pt; fromBytes(b: Uint8Array): Pt } {
  return (alg === 'ed25519' ? ed25519.Point : secp256k1.Point) as unknown as { BASE: Pt; ZERO: Pt; fromBytes(b: Uint8Array): Pt };
}

const scalarOf = (alg: ThresholdAlgorithm, id: string): bigint => frostOf(alg).utils.Fn.fromBytes(hexToBytes(id));

/** λ_i at zero over the identifiers `set`. */
export function lagrangeAtZero(alg: ThresholdAlgorithm, set: string[], id: string): bigint {
  const Fn = frostOf(alg).utils.Fn;
  const xi = scalarOf(alg, id);
  let num = Fn.ONE;
  let den = Fn.ONE;
  for (const other of set) {
    if (other === id) continue;
    const xj = scalarOf(alg, other);
    num = Fn.mul(num, xj);
    den = Fn.mul(den, Fn.sub(xj, xi));
  }
  return Fn.div(num, den);
}

/** Σ_k x^k · C[k]: what a share at `id` must be times the base point. */
function evaluateCommitments(alg: ThresholdAlgorithm, commitments: Uint8Array[], id: string) {
  const P = pointsOf(alg);
  const Fn = frostOf(alg).utils.Fn;
  const x = scalarOf(alg, id);
  let acc = P.ZERO;
  let xk = Fn.ONE;
  for (const c of commitments) {
    acc = acc.add(P.fromBytes(c).multiply(xk));
    xk = Fn.mul(xk, x);
  }
  return acc;
}

/** A dealer's part of a refresh: its commitments (public) and one value per receiver (secret, wiped by the caller). */
export function refreshDeal(alg: ThresholdAlgorithm, share: Uint8Array, self: string, dealers: string[], receivers: string[], min: number): { commitments: Uint8Array[]; values: Record<string, Uint8Array> } {
  const F = frostOf(alg);
  const Fn = F.utils.Fn;
  const weighted = Fn.toBytes(Fn.mul(lagrangeAtZero(alg, dealers, self), Fn.fromBytes(share)));
  try {
    const poly = F.utils.generateSecretPolynomial({ min, max: receivers.length }, weighted);
    const values: Record<string, Uint8Array> = {};
    for (const r of receivers) {
      const x = scalarOf(alg, r);
      let v = Fn.ZERO;
      for (let k = poly.coefficients.length - 1; k >= 0; k--) v = Fn.add(Fn.mul(v, x), poly.coefficients[k]!);
      values[r] = Fn.toBytes(v);
    }
    poly.coefficients.fill(0n);
    return { commitments: (poly.commitment as unknown as Array<Uint8Array | Pt>).map((p) => (p instanceof Uint8Array ? p.slice() : p.toBytes())), values };
  } finally {
    wipe(weighted);
  }
}

/** Throws unless dealer `dealer`'s commitments start at λ_dealer times its old verifying share. */
export function checkDealerCommitments(alg: ThresholdAlgorithm, old: FrostPublic, dealers: string[], dealer: string, commitments: Uint8Array[]): void {
  const Y = old.verifyingShares[dealer];
  if (!Y) throw bad('A dealer of the refresh holds no share of the key set.');
  const P = pointsOf(alg);
  if (!P.fromBytes(commitments[0]!).equals(P.fromBytes(Y).multiply(lagrangeAtZero(alg, dealers, dealer)))) {
    throw new CustosError('bad_request', "A dealer's refresh does not re-deal its own share (its first commitment is not λ·Y): refused.");
  }
}

/**
 * A receiver's new share and the key set's new public package, from every dealer's
 * commitments and the value it sent this receiver; each value is checked against its dealer's
 * commitments, and the result must keep `groupKey`.
 */
export function refreshCombine(alg: ThresholdAlgorithm, self: string, receivers: string[], min: number, dealt: Array<{ dealer: string; commitments: Uint8Array[]; value: Uint8Array }>, groupKey: Uint8Array): { share: Uint8Array; pub: FrostPublic } {
  const F = frostOf(alg);
  const Fn = F.utils.Fn;
  const P = pointsOf(alg);
  let s = Fn.ZERO;
  const sum: Pt[] = [];
  for (const d of dealt) {
    if (d.commitments.length !== min) throw bad(`${d.dealer}'s refresh has ${d.commitments.length} commitments, not ${min}.`);
    const v = Fn.fromBytes(d.value);
    if (!P.BASE.multiply(v).equals(evaluateCommitments(alg, d.commitments, self))) throw new CustosError('invalid_key_material', `The value ${d.dealer} sent does not match its commitments (vss_verify failed).`);
    s = Fn.add(s, v);
    d.commitments.forEach((c, k) => (sum[k] = sum[k] ? sum[k]!.add(P.fromBytes(c)) : P.fromBytes(c)));
  }
  const commitments = sum.map((p) => p.toBytes());
  const pub: FrostPublic = {
    signers: { min, max: receivers.length },
    commitments: commitments as FrostPublic['commitments'],
    verifyingShares: Object.fromEntries(receivers.map((r) => [r, evaluateCommitments(alg, commitments, r).toBytes()])) as FrostPublic['verifyingShares'],
  };
  if (!equalPoint(groupPublicKey(alg, pub), groupKey)) throw new CustosError('invalid_key_material', 'The refreshed shares would not keep the key set’s public key: refused.');
  const share = Fn.toBytes(s);
  F.validateSecret({ identifier: self, signingShare: share }, pub);
  return { share, pub: decodePublic(alg, encodePublic(pub)) };
}

function equalPoint(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
