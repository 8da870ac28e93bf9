/**
 * The keys a Lightning node's seed gives Custos, all BIP32 children of the node's HD key (its
 * mnemonic, so a restore given only the seed derives them again):
 *   m/9735'/0'   backup key: every state record is ECIES-encrypted to it;
 *   m/9735'/1'   record key: an Ed25519 key whose seed is HKDF-SHA256 of this child's secret
 *                (node:crypto signs and verifies it fast, and its signatures cannot be altered
 *                into other valid ones); it signs every state record, and its public key names
 *                the node's folder in a backup; a second HKDF output of the same child keys
 *                the HMAC that derives each record's envelope key (so records are deterministic);
 *   m/9735'/2'/… keys the node uses through the hsmd hook (ECDH, ECIES decryption); the first
 *                two subtrees are the vault's own and refused there.
 * (9735 is the Lightning port number, used here only as a distinctive hardened index.)
 */
import { createHash, createHmac, createPublicKey, createSecretKey, hkdfSync, type KeyObject } from 'node:crypto';
import { ed25519PrivateKeyObject } from '../crypto/algorithms.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { CustosError } from '../core/errors.js';
import { bytesToHex, wipe } from '../core/bytes.js';
import { deriveChild, type DerivationCache, type HdMaster } from '../wallet/hd.js';
import { formatPath, isUnder, parsePath } from '../wallet/paths.js';

export const BACKUP_PATH = "m/9735'/0'";
export const RECORD_PATH = "m/9735'/1'";
export const HOOK_ROOT = "m/9735'/2'";
export const DEFAULT_HOOK_PATH = "m/9735'/2'/0'";
const RECORD_SALT = new TextEncoder().encode('custos');
const RECORD_INFO = new TextEncoder().encode('custos-lightning-record-key-v1');

export interface NodeKeys {
  /** Compressed (33 bytes): what records are encrypted to. */
  backupPublic: Uint8Array;
  /** Ed25519 (32 bytes): what records are verified with. */
  recordPublic: Uint8Array;
  /** Hex of recordPublic: the node's folder in a backup. */
  node: string;
}

type Cache = { id: string; cache: DerivationCache };

/** The node's record key (Ed25519), from the BIP32 child at m/9735'/1'. */
export function recordSigner(master: HdMaster, cache?: Cache): KeyObject {
  const r = deriveChild(master, RECORD_PATH, cache);
  const seed = new Uint8Array(hkdfSync('sha256', r.privateKey, RECORD_SALT, RECORD_INFO, 32));
  try {
    return ed25519PrivateKeyObject(seed);
  } finally {
    wipe(r.privateKey, seed);
  }
}

const EPHEMERAL_INFO = new TextEncoder().encode('custos-lightning-ephemeral-v1');

/** The node's key for deriving records' envelope keys (an HMAC key, from the same child as the record key). */
export function ephemeralKeyOf(master: HdMaster, cache?: Cache): KeyObject {
  const r = deriveChild(master, RECORD_PATH, cache);
  const k = Buffer.from(hkdfSync('sha256', r.privateKey, RECORD_SALT, EPHEMERAL_INFO, 32));
  try {
    return createSecretKey(k);
  } finally {
    wipe(r.privateKey);
    k.fill(0);
  }
}

/**
 * A record's envelope key: HMAC-SHA256 over its object, version, previous record and state.
 * Distinct states never share one; the same state at the same place always does (a retry).
 */
export function ephemeralFor(key: KeyObject, objectId: string, version: bigint, prevHash: Uint8Array, state: Uint8Array): Uint8Array {
  const v = Buffer.alloc(8);
  v.writeBigUInt64BE(version);
  const id = Buffer.from(objectId, 'ascii');
  return new Uint8Array(createHmac('sha256', key).update(Uint8Array.of(id.length)).update(id).update(v).update(prevHash).update(createHash('sha256').update(state).digest()).digest());
}

/** The public halves (the secrets derived on the way are wiped). */
export function nodeKeys(master: HdMaster, cache?: Cache): NodeKeys & { signer: KeyObject } {
  const b = deriveChild(master, BACKUP_PATH, cache);
  wipe(b.privateKey);
  const signer = recordSigner(master, cache);
  const spki = createPublicKey(signer).export({ format: 'der', type: 'spki' });
  const recordPublic = new Uint8Array(spki.subarray(spki.length - 32));
  return { backupPublic: b.publicKey, recordPublic, node: bytesToHex(recordPublic), signer };
}

/** A secret of the node's key tree, for `use` while `f` runs, wiped after. */
export function withSecret<T>(master: HdMaster, path: string, f: (secret: Uint8Array) => T, cache?: Cache): T {
  const d = deriveChild(master, path, cache);
  try {
    return f(d.privateKey);
  } finally {
    wipe(d.privateKey);
  }
}

/** A hook path: under m/9735'/2' (the backup and record keys are the vault's alone). */
export function hookPath(path: string | undefined): string {
  const p = parsePath(path ?? DEFAULT_HOOK_PATH);
  if (!isUnder(p, parsePath(HOOK_ROOT)) || p.length <= 2) throw new CustosError('invalid_derivation_path', `A Lightning hook key is under ${HOOK_ROOT} (the vault's backup and record keys are its own).`);
  return formatPath(p);
}

/** k = SHA-256(compressed(p·R)), as libsecp256k1's default ECDH and Core Lightning's hsmd answer. */
export function ecdhSha256(secret: Uint8Array, point: Uint8Array): Uint8Array {
  let shared: Uint8Array | undefined;
  try {
    shared = secp256k1.getSharedSecret(secret, point, true);
  } catch {
    throw new CustosError('bad_request', 'The point is not a valid secp256k1 public key (33 bytes compressed, or 65 uncompressed).');
  }
  try {
    return new Uint8Array(createHash('sha256').update(shared).digest());
  } finally {
    wipe(shared);
  }
}
