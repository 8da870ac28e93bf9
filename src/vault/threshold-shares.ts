/**
 * A cosigner's share of a threshold key set, before any round: made by DKG or sent by a dealer
 * and stored as a key (storeShare), or dealt here from an existing key split once (deal); and
 * the rule every consensus key set is held to (checkMajority). vault/threshold.ts delegates here.
 */
import { CustosError, isAudited } from '../core/errors.js';
import { bytesToHex, equalBytes, wipe } from '../core/bytes.js';
import type { KeyRecord } from '../core/types.js';
import { publicKeyFromSecret } from '../crypto/algorithms.js';
import { importSecret, type ImportFormat } from '../keystore/import.js';
import { encodePublic, frostOf, groupPublicKey, checkMembers, identifierOf, isThresholdAlgorithm, splitScalar, THRESHOLD_ATTRIBUTES as A, THRESHOLD_BACKEND, type FrostPublic, type ThresholdAlgorithm } from '../crypto/frost.js';
import { sha256hex, type Ctx, type VaultCore } from './core.js';
import { checkLabel, choosePurpose, type Keys } from './keys.js';
import { APPLIED } from './threshold-refresh.js';

export interface NewShare {
  label: string;
  algorithm: ThresholdAlgorithm;
  /** This node's signing share (the library's serialized scalar); wiped by the caller. */
  share: Uint8Array;
  pub: FrostPublic;
  /** This node's name, and every member's name → identifier. */
  self: string;
  members: Record<string, string>;
  origin: 'dkg' | 'dealer' | 'refresh';
  purpose?: string;
  /** A member joining an existing key set: the highest positions its dealers hold, from its first moment. */
  watermarks?: Array<{ chainId: string; height: bigint; round: number; step: number }>;
  /** A member joining by a refresh: that refresh (so the others see it applied here). */
  applied?: string;
}

/** A key to split: its file, the threshold, and the members that each get a share. */
export interface DealRequest {
  label: string;
  format: ImportFormat;
  material: Uint8Array;
  algorithm?: string;
  threshold: number;
  members: string[];
}

/** A key set dealt: its public package, members, and each member's share (secret; the caller wipes them). */
export interface DealtKeySet {
  algorithm: ThresholdAlgorithm;
  pub: FrostPublic;
  members: Record<string, string>;
  shares: Record<string, Uint8Array>;
}

/** Stores this node's share as a key, once it is checked against the key set's commitments. */
export async function storeShare(core: VaultCore, keys: Keys, ctx: Ctx, s: NewShare): Promise<KeyRecord> {
  let attributes: KeyRecord['attributes'];
  try {
    checkLabel(s.label);
    const members = checkMembers(s.algorithm, s.members);
    const identifier = members[s.self];
    if (identifier === undefined || identifier !== identifierOf(s.algorithm, s.self)) throw new CustosError('bad_request', `The key set's members do not include this node (${s.self}).`);
    if (Object.keys(members).length !== s.pub.signers.max || Object.values(members).some((id) => s.pub.verifyingShares[id] === undefined)) {
      throw new CustosError('bad_request', "The key set's members are not the participants of its public package.");
    }
    const purpose = choosePurpose(s.algorithm, s.purpose, 'general');
    if (purpose !== 'general' && purpose !== 'consensus') throw new CustosError('bad_request', `A threshold key is a general or a consensus key; ${purpose} keys are not threshold keys yet.`);
    checkMajority(purpose, s.pub.signers.min, s.pub.signers.max);
    try {
      // RFC 9591 C.2 vss_verify: the share is the one the commitments promise this identifier.
      frostOf(s.algorithm).validateSecret({ identifier, signingShare: s.share }, s.pub);
    } catch {
      throw new CustosError('invalid_key_material', "The share does not match the key set's commitments (RFC 9591 vss_verify failed).");
    }
    // One record per key set on a node: two would mean two watermarks, and a coordinator could pick the lower.
    const twins = await core.deps.store.findKeysBy({ publicKey: groupPublicKey(s.algorithm, s.pub) });
    if (twins.some((k) => k.state !== 'destroyed')) throw new CustosError('conflict', `This node already holds the key set ${bytesToHex(groupPublicKey(s.algorithm, s.pub))} (as ${twins.find((k) => k.state !== 'destroyed')!.label}).`);
    attributes = {
      backend: THRESHOLD_BACKEND,
      purpose: choosePurpose(s.algorithm, s.purpose, 'general'),
      'threshold.min': s.pub.signers.min,
      'threshold.max': s.pub.signers.max,
      [A.self]: s.self,
      [A.members]: JSON.stringify(members),
      [A.public]: encodePublic(s.pub),
      [A.origin]: s.origin,
      ...(s.applied ? { [APPLIED]: s.applied.slice(0, 64) } : {}),
    };
  } catch (e) {
    if (e instanceof CustosError && e.code !== 'invalid_label') return core.refuse(ctx, 'threshold_share', { id: null, label: s.label }, e, { origin: s.origin });
    throw e;
  }
  return keys.storeNewKey(ctx, s.origin === 'dkg' ? 'create' : 'import', s.label, s.algorithm, { secret: s.share, publicKey: groupPublicKey(s.algorithm, s.pub) }, false, attributes, (key) =>
    (s.watermarks ?? []).map((w) => ({ kind: 'advanceWatermark' as const, keyId: key.id, chainId: w.chainId, expected: null, next: { height: w.height, round: w.round, step: w.step, signBytes: new Uint8Array(0), signature: null } })),
  );
}

/**
 * A dealer's one-time split of an existing key (a priv_validator_key.json, as Horcrux does):
 * the key is parsed, split into one share per member, and never stored whole. The split is on
 * the record before any share leaves; the caller sends each share to its member and wipes it.
 */
export async function deal(core: VaultCore, ctx: Ctx, req: DealRequest): Promise<DealtKeySet> {
  const op = 'threshold_split';
  let secret: Uint8Array | undefined;
  let scalar: Uint8Array | undefined;
  try {
    checkLabel(req.label);
    await core.checkNewKey(ctx, op, req.label, {});
    const imported = importSecret(req.format, req.material, req.algorithm as never);
    secret = imported.secret;
    const algorithm = imported.algorithm;
    if (!isThresholdAlgorithm(algorithm)) throw new CustosError('unsupported_algorithm', `A threshold key is ed25519 or secp256k1-bip340; this key is ${algorithm}.`);
    const members = checkMembers(algorithm, Object.fromEntries(req.members.map((n) => [n, identifierOf(algorithm, n)])));
    const n = Object.keys(members).length;
    if (!Number.isInteger(req.threshold) || req.threshold < 2 || req.threshold > n) throw new CustosError('bad_request', `The threshold must be from 2 to the ${n} members.`);
    scalar = splitScalar(algorithm, secret);
    const F = frostOf(algorithm);
    const dealt = F.trustedDealer({ min: req.threshold, max: n }, Object.values(members), scalar);
    const whole = publicKeyFromSecret(algorithm, secret);
    if (!equalBytes(groupPublicKey(algorithm, dealt.public), whole)) throw new CustosError('internal', 'The split key set does not have the public key of the key split.');
    const held = (await core.deps.store.findKeysBy({ publicKey: whole })).find((k) => k.state !== 'destroyed');
    if (held) throw new CustosError('conflict', `This node holds that key whole, as ${held.label}: destroy it first (custos keys destroy ${held.label}; the file you split from is the copy that remains), then split.`);
    const shares = Object.fromEntries(Object.entries(members).map(([name, id]) => [name, dealt.secretShares[id]!.signingShare as Uint8Array]));
    await core.deps.committer.audit(core.draft(ctx, op, { id: null, label: req.label }, 'ok', null, { algorithm, threshold: req.threshold, members: Object.keys(members).join(','), public_key_sha256: sha256hex(whole) }));
    return { algorithm, pub: dealt.public, members, shares };
  } catch (e) {
    if (e instanceof CustosError && !isAudited(e) && e.code !== 'invalid_label') return core.refuse(ctx, op, { id: null, label: req.label }, e, { format: req.format });
    throw e;
  } finally {
    wipe(secret, scalar, req.material);
  }
}

/**
 * A consensus key needs a threshold above half its members: each cosigner checks only its own
 * watermark, so two groups of t signing conflicting votes must share a member.
 */
export function checkMajority(purpose: string, min: number, max: number): void {
  if (purpose === 'consensus' && 2 * min <= max) {
    throw new CustosError('bad_request', `A consensus key needs a threshold above half its members (${min}-of-${max} would let two groups sign conflicting votes); use ${Math.floor(max / 2) + 1}-of-${max} or more.`);
  }
}
