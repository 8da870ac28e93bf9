/**
 * Key purpose: what a key is for, fixed when it is created and bound into its envelope (it
 * is the `purpose` attribute, and attributes are authenticated by the envelope's associated
 * data). Every path that makes a signature names its use, and a key signs only for the uses
 * its purpose allows, whatever front end asks. This is what keeps a validator's consensus key
 * behind its double-sign watermark: raw bytes over HTTP or an SSH login challenge are not
 * consensus votes, so they are refused with `key_purpose` instead of signed.
 */
import { CustosError } from './errors.js';
import type { KeyRecord } from './types.js';

/**
 * - `general`: raw payloads and digests (HTTP API), SecretConnection identities, HD children
 *   by path (SLIP-10 keys).
 * - `ssh`: SSH payloads through an ssh-agent socket only.
 * - `consensus`: CometBFT votes and proposals through the watermarked consensus path only.
 * - `bitcoin`: PSBTs and BIP32 children by path.
 * - `lightning`: a Lightning node's secp256k1 key (an HD key from the node's seed): its signed,
 *   encrypted state records, and ECDH and ECIES decryption for the node (the hsmd hook); it
 *   signs nothing a caller hands it.
 * - `tor`: a Tor key (a relay's master identity, an onion service's identity): it signs only
 *   through the Tor operations (relay signing certificates), never raw payloads or SSH logins.
 * - `verify`: a bare public key imported to check signatures (a counterparty's, an approver's):
 *   there is no private key, and it signs nothing.
 * - `legacy`: keys made before purposes existed (no `purpose` attribute): every use they had
 *   except consensus signing. `custos keys set-purpose` narrows one to a single purpose, once.
 */
export const KEY_PURPOSES = ['general', 'ssh', 'consensus', 'bitcoin', 'lightning', 'tor', 'verify'] as const;
export type KeyPurpose = (typeof KEY_PURPOSES)[number] | 'legacy';

/** The ways a key can be asked to sign. */
export type KeyUse = 'raw' | 'derived' | 'psbt' | 'ssh' | 'consensus' | 'lightning' | 'tor';

const ALLOWED: Record<KeyPurpose, readonly KeyUse[]> = {
  general: ['raw', 'derived'],
  ssh: ['ssh'],
  consensus: ['consensus'],
  bitcoin: ['psbt', 'derived'],
  lightning: ['lightning'],
  tor: ['tor'],
  verify: [],
  legacy: ['raw', 'derived', 'psbt', 'ssh'],
};

const USE_NAMES: Record<KeyUse, string> = {
  raw: 'raw payloads',
  derived: 'HD children by path',
  psbt: 'PSBTs',
  ssh: 'SSH signatures',
  consensus: 'consensus votes and proposals',
  lightning: 'Lightning state, ECDH or ECIES decryption',
  tor: 'Tor certificates',
};

export function isKeyPurpose(s: string): s is (typeof KEY_PURPOSES)[number] {
  return (KEY_PURPOSES as readonly string[]).includes(s);
}

/**
 * A key's purpose; a key without the attribute predates purposes and is `legacy`. A value
 * this version does not know (a later purpose, a damaged record) allows nothing: an unknown
 * purpose must never mean the widest set of uses.
 */
export function purposeOf(k: Pick<KeyRecord, 'attributes'>): KeyPurpose | 'unknown' {
  const p = k.attributes.purpose;
  if (p === undefined) return 'legacy';
  return typeof p === 'string' && isKeyPurpose(p) ? p : 'unknown';
}

export function purposeAllows(k: Pick<KeyRecord, 'attributes'>, use: KeyUse): boolean {
  const p = purposeOf(k);
  return p !== 'unknown' && ALLOWED[p].includes(use);
}

/** Throws `key_purpose` when the key's purpose does not allow `use`. */
export function assertPurpose(k: Pick<KeyRecord, 'attributes' | 'label'>, use: KeyUse): void {
  if (purposeAllows(k, use)) return;
  const p = purposeOf(k);
  if (p === 'unknown') throw new CustosError('key_purpose', `The key ${k.label} has a purpose this version of Custos does not know; it signs nothing here.`);
  if (p === 'verify') throw new CustosError('key_purpose', `The key ${k.label} is a public key imported to verify signatures: there is no private key, so it signs nothing.`);
  const hint =
    p === 'legacy' && use === 'consensus'
      ? ` It predates key purposes: give it the consensus purpose once with \`custos keys set-purpose ${k.label} consensus\` (after which it signs nothing else).`
      : ` Its purpose is fixed at creation; use a key created with --purpose ${purposeFor(use)}.`;
  throw new CustosError('key_purpose', `The key ${k.label} is a ${p} key: it does not sign ${USE_NAMES[use]}.${hint}`);
}

function purposeFor(use: KeyUse): string {
  return use === 'raw' ? 'general' : use === 'derived' ? 'general (or bitcoin)' : use === 'psbt' ? 'bitcoin' : use;
}
