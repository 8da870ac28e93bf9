/**
 * What a key must be to enter the vault: its id, its label, its attributes, and the purposes
 * each algorithm can serve; and the formats its public key is shown in.
 */
import { randomBytes } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { isKeyPurpose, KEY_PURPOSES, type KeyPurpose } from '../core/purpose.js';
import { ALGORITHMS, type Algorithm, type KeyAttributes, type KeyRecord } from '../core/types.js';
import { ALGORITHM_INFO, spkiPem } from '../crypto/algorithms.js';
import { encodeOpenSshPublicKey } from '../crypto/openssh.js';
import { LABEL_RE } from './core.js';

const ID_PREFIX = 'key_';
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** A stable key id: `key_` and 26 base32 characters (130 random bits). */
export function newKeyId(): string {
  const b = randomBytes(26);
  let s = ID_PREFIX;
  for (const x of b) s += BASE32[x & 31];
  return s;
}

export function checkLabel(label: string): void {
  if (!LABEL_RE.test(label) || label.startsWith(ID_PREFIX)) {
    throw new CustosError('invalid_label', 'A label is 1–64 characters from A–Z a–z 0–9 . _ : @ -, starts with a letter or digit, and does not start with "key_" (reserved for key ids).');
  }
}

const ATTR_KEY_RE = /^[a-z][a-z0-9_.-]{0,63}$/;

export function checkAttributes(a: KeyAttributes): void {
  const entries = Object.entries(a);
  if (entries.length > 32) throw new CustosError('bad_request', 'A key has at most 32 attributes.');
  for (const [k, v] of entries) {
    if (!ATTR_KEY_RE.test(k)) throw new CustosError('bad_request', `Attribute name "${k.slice(0, 64)}" is not valid.`);
    if (typeof v === 'string' && v.length > 8192) throw new CustosError('bad_request', `Attribute ${k} is longer than 8192 characters.`);
  }
  if (a.expires_at !== undefined && (typeof a.expires_at !== 'string' || Number.isNaN(Date.parse(a.expires_at)))) {
    throw new CustosError('bad_request', 'expires_at must be an ISO 8601 time.');
  }
  if (a.purpose !== undefined && (typeof a.purpose !== 'string' || !isKeyPurpose(a.purpose))) {
    throw new CustosError('bad_request', `purpose must be one of ${KEY_PURPOSES.join(', ')}.`);
  }
}

/** Algorithms each purpose can use: a consensus key is what CometBFT accepts, and so on. */
/** Every algorithm but Tor's own: RSA-1024 (too weak for anything else) and X25519 (it signs nothing). */
const NOT_TOR_ONLY = ALGORITHMS.filter((a) => a !== 'rsa-1024' && a !== 'x25519');

const PURPOSE_ALGORITHMS: Record<Exclude<KeyPurpose, 'legacy'>, readonly Algorithm[] | null> = {
  general: NOT_TOR_ONLY,
  // ed25519-expanded: Tor keys added over the agent protocol (signed by blob, never for logins).
  ssh: ['ed25519', 'ed25519-expanded', 'p256', 'rsa-2048', 'rsa-3072', 'rsa-4096'],
  consensus: ['ed25519', 'ed25519-expanded', 'secp256k1'],
  bitcoin: ['secp256k1', 'secp256k1-bip340'],
  lightning: ['secp256k1'],
  tor: ['ed25519', 'ed25519-expanded', 'rsa-1024', 'x25519'],
  verify: NOT_TOR_ONLY,
};

/** The purpose a new key gets: the one asked for, else what its origin implies. */
export function choosePurpose(algorithm: Algorithm, asked: string | undefined, fallback: Exclude<KeyPurpose, 'legacy'>): Exclude<KeyPurpose, 'legacy'> {
  const p = asked ?? fallback;
  if (!isKeyPurpose(p) || p === 'verify') throw new CustosError('bad_request', `purpose must be one of ${KEY_PURPOSES.filter((x) => x !== 'verify').join(', ')} (verify is for public keys: keys import-public).`);
  const allowed = PURPOSE_ALGORITHMS[p];
  if (allowed && !allowed.includes(algorithm)) throw new CustosError('bad_request', `A ${p} key is ${allowed.join(', ')}; ${algorithm} cannot be one.`);
  return p;
}

export interface PublicKeyFormats {
  raw: Uint8Array;
  spkiPem: string;
  /** `authorized_keys` line, for algorithms SSH has. */
  openssh: string | null;
}

export function publicKeyFormats(k: Pick<KeyRecord, 'algorithm' | 'publicKey' | 'label'>): PublicKeyFormats {
  let openssh: string | null = null;
  if (k.algorithm === 'ed25519' || k.algorithm === 'ed25519-expanded') openssh = encodeOpenSshPublicKey({ algorithm: 'ed25519', publicKey: k.publicKey }, k.label);
  else if (k.algorithm === 'p256') openssh = encodeOpenSshPublicKey({ algorithm: 'p256', publicKey: k.publicKey }, k.label);
  else if (ALGORITHM_INFO[k.algorithm].family === 'rsa') openssh = encodeOpenSshPublicKey({ algorithm: 'rsa', spki: k.publicKey }, k.label);
  return { raw: k.publicKey, spkiPem: spkiPem(k.algorithm, k.publicKey), openssh };
}
