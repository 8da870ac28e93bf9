/**
 * A Lightning state record: one version of one object (a channel's monitor, say), encrypted
 * to the node's backup key and signed by the vault, chained to the version before it. The
 * record is the unit that is stored (one row per object), streamed to backups and handed
 * back by a node to reconcile. Pure: no I/O.
 *
 * Record `custos-lightning-record-v1`, byte by byte (integers big-endian):
 *   "CLNR" (4) ‖ format 0x01 (1)
 *   ‖ u8 object id length (1..128) ‖ object id (ASCII: letters, digits, . _ : -)
 *   ‖ u64 version ‖ previous record's hash (32; zeros for an object's first record)
 *   ‖ u32 ciphertext length ‖ ciphertext (a custos-ecies-v1 secp256k1 envelope, crypto/ecies.ts)
 *   ‖ Ed25519 signature (64; RFC 8032, by node:crypto)
 * signed message = SHA-256("custos-lightning-record-v1" ‖ 0x00 ‖ u8 id length ‖ id ‖ u64
 *                  version ‖ SHA-256(ciphertext) ‖ previous hash)
 * record hash    = SHA-256(the whole record): what the next version's previous hash is.
 */
import { createHash, sign, verify, type KeyObject } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { concatBytes, equalBytes, utf8 } from '../core/bytes.js';
import { publicKeyObject } from './algorithms.js';

const MAGIC = utf8('CLNR');
const DOMAIN = utf8('custos-lightning-record-v1');
/** Not starting with a dot: `.` and `..` would be folders of their own in a backup's layout. */
export const OBJECT_ID_RE = /^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$/;
/** A ChannelMonitor with many HTLCs runs to hundreds of kilobytes; 8 MiB leaves room. */
export const MAX_STATE_BYTES = 8 * 1024 * 1024;
/** The envelope adds its header (39) and tag (16). */
const MAX_CIPHERTEXT = MAX_STATE_BYTES + 64;
export const MAX_VERSION = 2n ** 64n - 1n;
export const ZERO_HASH = new Uint8Array(32);

export interface LightningRecord {
  objectId: string;
  version: bigint;
  prevHash: Uint8Array;
  ciphertext: Uint8Array;
  signature: Uint8Array;
}

const sha256 = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

const bad = (why: string) => new CustosError('bad_request', `The Lightning state record is not valid: ${why}.`, { tag: 'record_format' });

export function checkObjectId(id: string): string {
  if (typeof id !== 'string' || !OBJECT_ID_RE.test(id)) throw new CustosError('bad_request', 'An object id is 1 to 128 characters: letters, digits, ".", "_", ":" and "-", not starting with ".".');
  return id;
}

export function checkVersion(v: bigint): bigint {
  if (typeof v !== 'bigint' || v < 0n || v > MAX_VERSION) throw new CustosError('bad_request', 'A version is an integer from 0 to 2^64 - 1.');
  return v;
}

/** Parses a decimal version from JSON text (LDK's update ids run up to u64::MAX, beyond a JS number). */
export function parseVersion(v: unknown): bigint {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^\d{1,20}$/.test(v)) return checkVersion(BigInt(v));
  throw new CustosError('bad_request', 'A version is an integer from 0 to 2^64 - 1 (as a decimal string beyond 2^53).');
}

function u64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v);
  return b;
}

/** What the vault signs for a record. */
export function recordMessage(objectId: string, version: bigint, ciphertext: Uint8Array, prevHash: Uint8Array): Uint8Array {
  const id = utf8(checkObjectId(objectId));
  return sha256(DOMAIN, Uint8Array.of(0, id.length), id, u64(checkVersion(version)), sha256(ciphertext), prevHash);
}

/** Signs and encodes a record with the node's record key (an Ed25519 KeyObject). */
export function sealRecord(signer: KeyObject, r: Omit<LightningRecord, 'signature'>): Uint8Array {
  if (r.prevHash.length !== 32) throw bad('the previous hash is not 32 bytes');
  if (r.ciphertext.length > MAX_CIPHERTEXT) throw new CustosError('payload_too_large', `A Lightning state is at most ${MAX_STATE_BYTES} bytes.`);
  const signature = new Uint8Array(sign(null, recordMessage(r.objectId, r.version, r.ciphertext, r.prevHash), signer));
  return encodeRecord({ ...r, signature });
}

export function encodeRecord(r: LightningRecord): Uint8Array {
  const id = utf8(checkObjectId(r.objectId));
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, r.ciphertext.length);
  return concatBytes(MAGIC, Uint8Array.of(1, id.length), id, u64(checkVersion(r.version)), r.prevHash, len, r.ciphertext, r.signature);
}

/** Parses a record; malformed, truncated or oversized input is a typed error, never a crash. */
export function decodeRecord(b: Uint8Array): LightningRecord {
  if (!(b instanceof Uint8Array)) throw bad('not bytes');
  if (b.length < 6) throw bad('truncated');
  if (!MAGIC.every((x, i) => b[i] === x)) throw bad('wrong magic');
  if (b[4] !== 1) throw bad(`unknown format ${b[4]}`);
  const idLen = b[5]!;
  if (idLen < 1 || idLen > 128) throw bad('object id length out of range');
  let o = 6;
  const need = (n: number) => {
    if (b.length < o + n) throw bad('truncated');
  };
  need(idLen);
  const objectId = new TextDecoder('ascii').decode(b.subarray(o, o + idLen));
  if (!OBJECT_ID_RE.test(objectId)) throw bad('object id has characters outside letters, digits, . _ : -');
  o += idLen;
  need(8 + 32 + 4);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const version = view.getBigUint64(o);
  o += 8;
  const prevHash = b.slice(o, o + 32);
  o += 32;
  const ctLen = view.getUint32(o);
  o += 4;
  if (ctLen > MAX_CIPHERTEXT) throw bad('ciphertext longer than the largest state');
  need(ctLen + 64);
  const ciphertext = b.slice(o, o + ctLen);
  o += ctLen;
  const signature = b.slice(o, o + 64);
  o += 64;
  if (o !== b.length) throw bad(`${b.length - o} bytes after the signature`);
  return { objectId, version, prevHash, ciphertext, signature };
}

/** The verifier of a record public key (32 bytes, Ed25519): make it once, check many records. */
export function recordVerifier(recordPublic: Uint8Array): KeyObject {
  return publicKeyObject('ed25519', recordPublic);
}

/** Whether the record key signed this record. */
export function verifyRecord(verifier: KeyObject, r: LightningRecord): boolean {
  try {
    return verify(null, recordMessage(r.objectId, r.version, r.ciphertext, r.prevHash), verifier, r.signature);
  } catch {
    return false;
  }
}

export function recordHash(record: Uint8Array): Uint8Array {
  return sha256(record);
}

export function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && equalBytes(a, b);
}
