/**
 * Tor's Ed25519 certificates (torspec cert-spec §2.1) and its tagged key files (C tor
 * `crypto_format.c`): what a relay with `OfflineMasterKey 1` reads from its keys directory.
 *
 * A certificate: VERSION (1) ‖ CERT_TYPE ‖ EXPIRATION_DATE (hours since the epoch, u32) ‖
 * CERT_KEY_TYPE (1: Ed25519) ‖ CERTIFIED_KEY (32) ‖ N_EXTENSIONS ‖ extensions (u16 length ‖
 * type ‖ flags ‖ data) ‖ SIGNATURE (64, Ed25519 over everything before it). A relay's signing
 * certificate is type 4 with extension 4 ("signed-with-ed25519-key") holding the master key.
 *
 * A tagged file: a 32-byte header "== <type>: <tag> ==", NUL-padded, then the body:
 * `ed25519v1-secret` (64 bytes, the expanded key a‖RH), `ed25519v1-public` (32), or
 * `ed25519v1-cert` (a certificate). Every decoder bounds its input and throws a typed error.
 */
import { CustosError } from '../core/errors.js';

export const CERT_TYPE_SIGNING = 4;
export const EXT_SIGNED_WITH_KEY = 4;
const HEADER = 32;
/** A certificate carries a handful of extensions; tor's own are under 200 bytes. */
const MAX_CERT_BYTES = 4096;

const bad = (m: string) => new CustosError('bad_request', m, { tag: 'tor_format' });

export type TaggedType = 'ed25519v1-secret' | 'ed25519v1-public' | 'ed25519v1-cert';

/** A tagged key file: header then body. */
export function encodeTagged(type: TaggedType, tag: string, body: Uint8Array): Uint8Array {
  const header = new TextEncoder().encode(`== ${type}: ${tag} ==`);
  if (header.length > HEADER - 1) throw bad('The tagged-file header is too long.');
  const out = new Uint8Array(HEADER + body.length);
  out.set(header);
  out.set(body, HEADER);
  return out;
}

/** The body of a tagged file of `type` (and `tag`, when given); anything else is refused, naming what it is. */
export function decodeTagged(bytes: Uint8Array, type: TaggedType, tag?: string): { tag: string; body: Uint8Array } {
  if (!(bytes instanceof Uint8Array) || bytes.length < HEADER) throw bad('The file is too short to be a Tor key file (a 32-byte header, then the key).');
  if (bytes.length > HEADER + MAX_CERT_BYTES) throw bad('The file is too large to be a Tor key file.');
  const h = bytes.subarray(0, HEADER);
  const end = h.indexOf(0);
  const text = Buffer.from(h.subarray(0, end < 0 ? HEADER : end)).toString('latin1');
  if (end >= 0 && h.subarray(end).some((b) => b !== 0)) throw bad('The Tor key file header is not NUL-padded.');
  const m = /^== ([a-z0-9-]+): ([A-Za-z0-9]+) ==$/.exec(text);
  if (!m) throw bad(text.startsWith('== Boxed') ? 'This Tor key file is encrypted with a passphrase: decrypt it first (tor --keygen --newpass, and an empty passphrase), then import it.' : 'The file is not a Tor key file (no "== type: tag ==" header).');
  if (m[1] !== type) throw bad(`The file is a Tor ${m[1]} file, not ${type}.`);
  if (tag !== undefined && m[2] !== tag) throw bad(`The file is tagged ${m[2]}, not ${tag}.`);
  const body = bytes.subarray(HEADER);
  const size = type === 'ed25519v1-secret' ? 64 : type === 'ed25519v1-public' ? 32 : null;
  if (size !== null && body.length !== size) throw bad(`A Tor ${type} file holds ${size} bytes after its header, not ${body.length}.`);
  return { tag: m[2]!, body };
}

export interface TorCertExtension {
  type: number;
  flags: number;
  data: Uint8Array;
}

export interface TorCert {
  certType: number;
  /** Hours since the epoch. */
  expiresHours: number;
  certifiedKey: Uint8Array;
  extensions: TorCertExtension[];
  /** The bytes the signature covers, and the signature. */
  signed: Uint8Array;
  signature: Uint8Array;
  /** The master key of extension 4, if present. */
  signingKey: Uint8Array | null;
}

/** The signed part of a relay signing certificate (type 4, extension 4 with the master key). */
export function relayCertBody(certifiedKey: Uint8Array, masterKey: Uint8Array, expiresHours: number): Uint8Array {
  if (certifiedKey.length !== 32 || masterKey.length !== 32) throw bad('Certified and master keys are 32-byte Ed25519 public keys.');
  if (!Number.isInteger(expiresHours) || expiresHours < 0 || expiresHours > 0xffffffff) throw bad('The expiry is a number of hours since the epoch.');
  const b = Buffer.alloc(2 + 4 + 1 + 32 + 1 + 4 + 32);
  let o = 0;
  b[o++] = 1; // version
  b[o++] = CERT_TYPE_SIGNING;
  b.writeUInt32BE(expiresHours, o);
  o += 4;
  b[o++] = 1; // Ed25519
  b.set(certifiedKey, o);
  o += 32;
  b[o++] = 1; // one extension
  b.writeUInt16BE(32, o);
  o += 2;
  b[o++] = EXT_SIGNED_WITH_KEY;
  b[o++] = 0; // flags
  b.set(masterKey, o);
  return new Uint8Array(b);
}

export function decodeCert(bytes: Uint8Array): TorCert {
  if (!(bytes instanceof Uint8Array) || bytes.length < 40 + 64) throw bad('The certificate is truncated.');
  if (bytes.length > MAX_CERT_BYTES) throw bad('The certificate is too large.');
  const v = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v[0] !== 1) throw bad(`Certificate version ${v[0]} is not 1.`);
  const certType = v[1]!;
  const expiresHours = v.readUInt32BE(2);
  if (v[6] !== 1) throw bad(`Certified key type ${v[6]} is not Ed25519 (1).`);
  const certifiedKey = bytes.slice(7, 39);
  const n = v[39]!;
  let o = 40;
  const extensions: TorCertExtension[] = [];
  for (let i = 0; i < n; i++) {
    if (o + 4 > bytes.length - 64) throw bad('A certificate extension is truncated.');
    const len = v.readUInt16BE(o);
    const type = v[o + 2]!;
    const flags = v[o + 3]!;
    o += 4;
    if (o + len > bytes.length - 64) throw bad('A certificate extension is truncated.');
    extensions.push({ type, flags, data: bytes.slice(o, o + len) });
    o += len;
  }
  if (o !== bytes.length - 64) throw bad('The certificate has bytes between its extensions and its signature.');
  // tor refuses a certificate with the same extension twice.
  if (new Set(extensions.map((e) => e.type)).size !== extensions.length) throw bad('The certificate has the same extension twice.');
  const ext = extensions.find((e) => e.type === EXT_SIGNED_WITH_KEY);
  if (ext && ext.data.length !== 32) throw bad('The signed-with-key extension does not hold a 32-byte key.');
  // An unknown extension flagged "affects validation" (1) makes a certificate invalid to tor.
  const unknown = extensions.find((e) => e.type !== EXT_SIGNED_WITH_KEY && e.flags & 1);
  if (unknown) throw bad(`The certificate has an extension (type ${unknown.type}) that must be understood and is not.`);
  return { certType, expiresHours, certifiedKey, extensions, signed: bytes.slice(0, o), signature: bytes.slice(o), signingKey: ext ? ext.data : null };
}

/** Hours since the epoch of a date, rounded up (a certificate never expires before it is asked to). */
export const hoursOf = (ms: number): number => Math.ceil(ms / 3_600_000);
