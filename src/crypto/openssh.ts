/**
 * OpenSSH key import/export.
 *
 * - A bounds-checked reader/writer for the SSH wire encoding (RFC 4251 §5).
 * - A parser for unencrypted "openssh-key-v1" private key files
 *   (OpenSSH PROTOCOL.key) holding one ed25519, ECDSA P-256 or RSA key.
 * - An encoder for the one-line `authorized_keys` public key form.
 *
 * Everything that can go wrong with untrusted input surfaces as
 * `SshFormatError`; any other exception type escaping the parser is a bug.
 */
import { concatBytes, equalBytes } from '../core/bytes.js';
import { printable } from '../core/text.js';
import { createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';

/** Any malformed, unsupported or inconsistent key material. */
export class SshFormatError extends Error {
  readonly code = 'invalid_key_material' as const;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SshFormatError';
  }
}

/**
 * Hard cap on any decoded input. Real key files are a few KiB at most (an
 * RSA-16384 key, the largest OpenSSH will generate, is ~5 KiB), so anything
 * bigger is hostile or not a key and is refused before any length field is
 * trusted.
 */
export const SSH_MAX_INPUT = 64 * 1024;

/**
 * OpenSSH's sshbuf refuses bignums above SSHBUF_MAX_BIGNUM (16384 bits);
 * one extra byte is allowed for the sign-bit zero prefix of RFC 4251 mpints.
 */
const MAX_MPINT_BYTES = 16384 / 8 + 1;

// ---------------------------------------------------------------------------
// Wire format reader / writer
// ---------------------------------------------------------------------------

/**
 * Cursor over an SSH wire-format buffer in the spirit of OpenSSH's sshbuf:
 * every read checks the remaining length first, so a hostile length field can
 * never read past the end or allocate based on an attacker-chosen size.
 *
 * Byte results are *views* into the underlying buffer (no copies), so wiping
 * the buffer wipes everything read from it; copy anything that must outlive
 * it.
 */
export class SshReader {
  private readonly buf: Uint8Array;
  private off = 0;

  /**
   * `maxInput` defaults to the key-file cap; wire protocols with their own,
   * larger frame limit (ssh-agent: 256 KiB) pass it explicitly.
   */
  constructor(buf: Uint8Array, maxInput: number = SSH_MAX_INPUT) {
    if (buf.length > maxInput) {
      throw new SshFormatError(`SSH data too large (${buf.length} bytes, limit ${maxInput})`);
    }
    this.buf = buf;
  }

  get offset(): number {
    return this.off;
  }

  get remaining(): number {
    return this.buf.length - this.off;
  }

  private need(n: number, what: string): void {
    if (n > this.remaining) {
      throw new SshFormatError(
        `truncated SSH data reading ${what}: need ${n} bytes, ${this.remaining} left`,
      );
    }
  }

  u8(what = 'byte'): number {
    this.need(1, what);
    return this.buf[this.off++]!;
  }

  /** RFC 4251 §5 uint32: network byte order. */
  u32(what = 'uint32'): number {
    this.need(4, what);
    const b = this.buf;
    const o = this.off;
    this.off += 4;
    // `>>> 0` keeps values >= 2^31 positive instead of wrapping negative.
    return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
  }

  /** `n` raw bytes (no length prefix), as a view. */
  bytes(n: number, what = 'bytes'): Uint8Array {
    this.need(n, what);
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }

  /**
   * RFC 4251 §5 string: uint32 length + bytes. The length is checked against
   * what is actually left, never used to allocate.
   */
  string(what = 'string'): Uint8Array {
    const len = this.u32(`${what} length`);
    return this.bytes(len, what);
  }

  /**
   * A string that must be text, like OpenSSH's sshbuf_get_cstring: an
   * embedded NUL is refused because C consumers would silently truncate at it
   * (names and comments are compared/printed as C strings by OpenSSH).
   * Invalid UTF-8 is replaced rather than rejected; only exact ASCII
   * comparisons are ever made on these values.
   */
  text(what = 'text'): string {
    const raw = this.string(what);
    if (raw.includes(0)) throw new SshFormatError(`${what} contains a NUL byte`);
    return utf8Decoder.decode(raw);
  }

  /**
   * RFC 4251 §5 mpint, restricted to non-negative values (no key field we
   * read is signed). Returns the unsigned big-endian magnitude as a view,
   * leading zero bytes removed; zero is the empty array.
   *
   * RFC 4251 forbids superfluous leading zero bytes, but OpenSSH
   * (sshbuf_get_bignum2_bytes_direct) tolerates and trims them, so keys
   * written by other tools that OpenSSH accepts are accepted here too.
   */
  mpint(what = 'mpint'): Uint8Array {
    let v = this.string(what);
    if (v.length > 0 && (v[0]! & 0x80) !== 0) {
      throw new SshFormatError(`${what} is negative`);
    }
    if (v.length > MAX_MPINT_BYTES || (v.length === MAX_MPINT_BYTES && v[0] !== 0)) {
      throw new SshFormatError(`${what} is too large`);
    }
    let i = 0;
    while (i < v.length && v[i] === 0) i++;
    if (i > 0) v = v.subarray(i);
    return v;
  }

  /** Refuse trailing bytes: a blob must be exactly what its type says. */
  end(what = 'SSH data'): void {
    if (this.remaining !== 0) {
      throw new SshFormatError(`${this.remaining} unexpected trailing bytes after ${what}`);
    }
  }
}

/** Builder for SSH wire-format data (RFC 4251 §5). */
export class SshWriter {
  private chunks: Uint8Array[] = [];
  private length = 0;

  private push(b: Uint8Array): this {
    this.chunks.push(b);
    this.length += b.length;
    return this;
  }

  u8(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`not a byte: ${v}`);
    return this.push(Uint8Array.of(v));
  }

  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`not a uint32: ${v}`);
    return this.push(Uint8Array.of(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff));
  }

  /** Raw bytes with no length prefix. */
  raw(b: Uint8Array): this {
    return this.push(Uint8Array.from(b));
  }

  /** uint32 length + bytes; JS strings are written as UTF-8. */
  string(v: Uint8Array | string): this {
    const b = typeof v === 'string' ? utf8Encoder.encode(v) : Uint8Array.from(v);
    this.u32(b.length);
    return this.push(b);
  }

  /**
   * Non-negative mpint from an unsigned big-endian magnitude or a bigint.
   * RFC 4251 §5: two's complement, minimal length, zero is the empty string,
   * and a 0x00 byte is prepended when the top bit would otherwise read as a
   * sign bit.
   */
  mpint(v: Uint8Array | bigint): this {
    let mag: Uint8Array;
    if (typeof v === 'bigint') {
      if (v < 0n) throw new RangeError('negative mpint is not supported');
      mag = bigintToBytes(v);
    } else {
      let i = 0;
      while (i < v.length && v[i] === 0) i++;
      mag = v.subarray(i);
    }
    const pad = mag.length > 0 && (mag[0]! & 0x80) !== 0 ? 1 : 0;
    const out = new Uint8Array(pad + mag.length);
    out.set(mag, pad);
    this.u32(out.length);
    return this.push(out);
  }

  finish(): Uint8Array {
    return concatBytes(...this.chunks);
  }
}

const utf8Decoder = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();

// ---------------------------------------------------------------------------
// Private key parsing
// ---------------------------------------------------------------------------

export interface ParsedEd25519Key {
  algorithm: 'ed25519';
  /** 32-byte RFC 8032 seed. */
  secret: Uint8Array;
  /** 32-byte public key. */
  publicKey: Uint8Array;
  comment: string;
}

export interface ParsedP256Key {
  algorithm: 'p256';
  /** 32-byte big-endian private scalar. */
  secret: Uint8Array;
  /** 65-byte uncompressed SEC1 point (0x04 || X || Y). */
  publicKey: Uint8Array;
  comment: string;
}

export interface ParsedRsaKey {
  algorithm: 'rsa';
  /** PKCS#8 DER of the private key. */
  pkcs8: Uint8Array;
  /** SubjectPublicKeyInfo DER. */
  publicKey: Uint8Array;
  /** Modulus size: 2048, 3072 or 4096. */
  bits: number;
  comment: string;
}

export type ParsedOpenSshKey = ParsedEd25519Key | ParsedP256Key | ParsedRsaKey;

const ARMOR_BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const ARMOR_END = '-----END OPENSSH PRIVATE KEY-----';
/** Base64 of SSH_MAX_INPUT is ~87 KiB plus line breaks; leave slack for CRLF/whitespace. */
const MAX_ARMOR_CHARS = 128 * 1024;

/** PROTOCOL.key: the binary blob starts with this magic including its C string terminator. */
const AUTH_MAGIC = utf8Encoder.encode('openssh-key-v1\0');

/**
 * With cipher "none" OpenSSH still pads the private section to the cipher
 * block size, which for "none" is 8 (cipher.c), and refuses sections that are
 * empty or not a multiple of it (sshkey.c private2_decrypt).
 */
const NONE_BLOCK_SIZE = 8;

const ED25519_PK_LEN = 32;
/** OpenSSH stores the ed25519 "secret key" in the NaCl layout: seed || public key. */
const ED25519_SK_LEN = 64;

const RSA_ALLOWED_BITS = new Set([2048, 3072, 4096]);

const KEYGEN_STRIP_HINT =
  'remove the passphrase from a copy of the key first: ' +
  'cp KEY /tmp/key.copy && ssh-keygen -p -N "" -f /tmp/key.copy ' +
  '(i.e. ssh-keygen -p -N "" -f FILE on a copy), import the copy, then delete it';

/**
 * Parse an unencrypted OpenSSH private key file ("openssh-key-v1").
 *
 * `text` is the file content: a string, or its raw bytes. As a convenience, a
 * Uint8Array that already starts with the binary "openssh-key-v1\0" magic is
 * taken as the base64-decoded blob. The caller's buffer is never modified;
 * the parser works on its own copy and wipes it before returning.
 */
export function parseOpenSshPrivateKey(text: string | Uint8Array): ParsedOpenSshKey {
  let blob: Uint8Array;
  if (typeof text === 'string') {
    blob = dearmor(text);
  } else if (text instanceof Uint8Array) {
    if (startsWith(text, AUTH_MAGIC)) {
      if (text.length > SSH_MAX_INPUT) {
        throw new SshFormatError(`key data too large (${text.length} bytes, limit ${SSH_MAX_INPUT})`);
      }
      blob = Uint8Array.from(text);
    } else {
      if (text.length > MAX_ARMOR_CHARS) throw armorTooLarge();
      blob = dearmor(latin1(text));
    }
  } else {
    throw new TypeError('parseOpenSshPrivateKey expects a string or Uint8Array');
  }
  try {
    return parseBlob(blob);
  } finally {
    blob.fill(0);
  }
}

function armorTooLarge(): SshFormatError {
  return new SshFormatError(`key file too large (limit ${MAX_ARMOR_CHARS} characters)`);
}

/**
 * Strip the PEM-like armor. Unlike RFC 7468 PEM there are no headers; the
 * body is plain base64 split into lines (OpenSSH wraps at 70 columns but does
 * not require any particular width when reading).
 *
 * The returned bytes are freshly allocated and owned by the caller. Note that
 * the base64 text itself is a JS string and cannot be wiped.
 */
function dearmor(text: string): Uint8Array {
  if (text.length > MAX_ARMOR_CHARS) throw armorTooLarge();
  let s = text;
  if (s.charCodeAt(0) === 0xfeff) s = s.slice(1); // editors on some platforms add a BOM
  s = s.replace(/^\s+/, '');
  if (!s.startsWith(ARMOR_BEGIN)) {
    if (/^-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----/.test(s)) {
      throw new SshFormatError(
        'this is a PEM/PKCS#8 key, not an OpenSSH-format key; rewrite a copy in OpenSSH format with ' +
          'ssh-keygen -p -N "" -f FILE (on a copy), which also removes any passphrase',
      );
    }
    throw new SshFormatError(`not an OpenSSH private key (expected a "${ARMOR_BEGIN}" line)`);
  }
  const endAt = s.indexOf(ARMOR_END, ARMOR_BEGIN.length);
  if (endAt < 0) throw new SshFormatError(`missing "${ARMOR_END}" line`);
  if (/\S/.test(s.slice(endAt + ARMOR_END.length))) {
    throw new SshFormatError('unexpected data after the END line (exactly one key per file is supported)');
  }
  const body = s.slice(ARMOR_BEGIN.length, endAt).replace(/[ \t\r\n]+/g, '');
  // Node's base64 decoder silently skips junk characters, so validate
  // strictly first: a corrupted armor must not decode into "something".
  if (body.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(body)) {
    throw new SshFormatError('invalid base64 in key body');
  }
  if ((body.length / 4) * 3 > SSH_MAX_INPUT + 2) {
    throw new SshFormatError(`key data too large (limit ${SSH_MAX_INPUT} bytes)`);
  }
  const decoded = Buffer.from(body, 'base64');
  // Small Buffers come from Node's shared pool; move the bytes into a private
  // allocation and wipe our slice of the pool.
  const out = new Uint8Array(decoded.length);
  out.set(decoded);
  decoded.fill(0);
  return out;
}

type HeaderPublicKey =
  | { type: 'ssh-ed25519'; pk: Uint8Array }
  | { type: 'ecdsa-sha2-nistp256'; q: Uint8Array }
  | { type: 'ssh-rsa'; e: Uint8Array; n: Uint8Array };

/** Parse the blob; `blob` is owned (and wiped) by the caller. */
function parseBlob(blob: Uint8Array): ParsedOpenSshKey {
  const r = new SshReader(blob);
  if (r.remaining < AUTH_MAGIC.length || !startsWith(blob, AUTH_MAGIC)) {
    throw new SshFormatError('not an openssh-key-v1 key (bad magic)');
  }
  r.bytes(AUTH_MAGIC.length);

  const cipher = r.text('cipher name');
  const kdf = r.text('kdf name');
  const kdfOptions = r.string('kdf options');
  if (cipher !== 'none') {
    // Encrypted keys use bcrypt_pbkdf + a symmetric cipher; this vault only
    // takes plaintext material so the passphrase never has to reach it.
    throw new SshFormatError(
      `OpenSSH private key is encrypted (cipher "${printable(cipher)}", kdf "${printable(kdf)}"); ` +
        KEYGEN_STRIP_HINT,
    );
  }
  // A KDF without a cipher derives a key nobody uses; ssh-keygen never
  // writes that combination, so it indicates a damaged or crafted file.
  if (kdf !== 'none') throw new SshFormatError(`cipher "none" with kdf "${printable(kdf)}" is not valid`);
  // PROTOCOL.key: kdf "none" has empty options; OpenSSH treats anything else
  // as corruption.
  if (kdfOptions.length !== 0) throw new SshFormatError('kdf "none" with non-empty kdf options');

  // OpenSSH itself only ever writes and reads a single key per file.
  const nkeys = r.u32('number of keys');
  if (nkeys !== 1) throw new SshFormatError(`expected exactly one key, file declares ${nkeys}`);

  const header = parseHeaderPublicKey(r.string('public key'));
  const priv = r.string('private section');
  r.end('private section');

  if (priv.length === 0 || priv.length % NONE_BLOCK_SIZE !== 0) {
    throw new SshFormatError(
      `private section length ${priv.length} is not a positive multiple of ${NONE_BLOCK_SIZE}`,
    );
  }

  const p = new SshReader(priv);
  // Two copies of a random uint32; with encryption they detect a wrong
  // passphrase, without it they are still a cheap corruption check.
  const check1 = p.u32('check-int');
  const check2 = p.u32('check-int');
  if (check1 !== check2) throw new SshFormatError('check-ints differ: corrupt key');

  const type = p.text('key type');
  if (type !== header.type) {
    throw new SshFormatError(
      `private key type "${printable(type)}" does not match public key type "${header.type}"`,
    );
  }

  // Key fields are read first (views into `blob`, wiped by the caller), then
  // comment and padding are validated, and only then is anything derived,
  // so malformed input never reaches the expensive/crypto paths.
  switch (header.type) {
    case 'ssh-ed25519': {
      const pk = p.string('ed25519 public key');
      const sk = p.string('ed25519 private key');
      const comment = p.text('comment');
      checkPadding(p);
      return buildEd25519(header.pk, pk, sk, comment);
    }
    case 'ecdsa-sha2-nistp256': {
      checkCurveName(p.text('curve name'));
      const q = p.string('EC public point');
      const d = p.mpint('EC private scalar');
      const comment = p.text('comment');
      checkPadding(p);
      return buildP256(header.q, q, d, comment);
    }
    case 'ssh-rsa': {
      // Private section order per OpenSSH sshkey_private_serialize:
      // n, e, d, iqmp, p, q (note: n before e, unlike the public blob).
      const n = p.mpint('RSA n');
      const e = p.mpint('RSA e');
      const d = p.mpint('RSA d');
      const iqmp = p.mpint('RSA iqmp');
      const pp = p.mpint('RSA p');
      const q = p.mpint('RSA q');
      const comment = p.text('comment');
      checkPadding(p);
      return buildRsa(header, { n, e, d, iqmp, p: pp, q }, comment);
    }
  }
}

/**
 * The unencrypted public key copy in the file header (same encoding as an
 * authorized_keys blob). It must agree with the private section; OpenSSH
 * checks this too, and a mismatch means the file was tampered with.
 */
function parseHeaderPublicKey(blob: Uint8Array): HeaderPublicKey {
  const r = new SshReader(blob);
  const type = r.text('public key type');
  let out: HeaderPublicKey;
  switch (type) {
    case 'ssh-ed25519': // RFC 8709 §4
      out = { type, pk: r.string('ed25519 public key') };
      break;
    case 'ecdsa-sha2-nistp256': // RFC 5656 §3.1
      checkCurveName(r.text('curve name'));
      out = { type, q: r.string('EC public point') };
      break;
    case 'ssh-rsa': // RFC 4253 §6.6: e before n
      out = { type, e: r.mpint('RSA e'), n: r.mpint('RSA n') };
      break;
    default:
      throw new SshFormatError(
        `unsupported key type "${printable(type)}" (supported: ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa)`,
      );
  }
  r.end('public key');
  return out;
}

/** RFC 5656 §3.1: the curve identifier is repeated inside the key and must match the type. */
function checkCurveName(name: string): void {
  if (name !== 'nistp256') {
    throw new SshFormatError(`curve "${printable(name)}" does not match key type ecdsa-sha2-nistp256`);
  }
}

/**
 * PROTOCOL.key: after the last comment the section is padded with the bytes
 * 1, 2, 3, ... up to the block size. OpenSSH (private2_check_padding) rejects
 * any other value, which also catches data appended inside the section.
 */
function checkPadding(r: SshReader): void {
  for (let i = 1; r.remaining > 0; i++) {
    if (r.u8('padding') !== (i & 0xff)) throw new SshFormatError('invalid padding in private section');
  }
}

function buildEd25519(
  headerPk: Uint8Array,
  pk: Uint8Array,
  sk: Uint8Array,
  comment: string,
): ParsedEd25519Key {
  if (headerPk.length !== ED25519_PK_LEN || pk.length !== ED25519_PK_LEN) {
    throw new SshFormatError('ed25519 public key must be 32 bytes');
  }
  if (sk.length !== ED25519_SK_LEN) throw new SshFormatError('ed25519 private key must be 64 bytes');
  const seed = sk.subarray(0, 32);
  if (!equalBytes(sk.subarray(32), pk) || !equalBytes(pk, headerPk)) {
    throw new SshFormatError('ed25519 public key copies in the file disagree');
  }
  // The stored public half is just a cache; make sure it really belongs to
  // the seed, or signatures would verify against a different key.
  const derived = ed25519.getPublicKey(seed);
  if (!equalBytes(derived, pk)) {
    throw new SshFormatError('ed25519 public key does not match the private seed');
  }
  return { algorithm: 'ed25519', secret: seed.slice(), publicKey: pk.slice(), comment };
}

function buildP256(headerQ: Uint8Array, q: Uint8Array, d: Uint8Array, comment: string): ParsedP256Key {
  // OpenSSH always writes the SEC1 uncompressed form (RFC 5656 §3.1 allows
  // either, via SEC1 2.3.3/2.3.4, but key files in practice use 0x04).
  if (q.length !== 65 || q[0] !== 0x04) {
    throw new SshFormatError('EC public point must be a 65-byte uncompressed P-256 point');
  }
  if (!equalBytes(q, headerQ)) throw new SshFormatError('EC public key copies in the file disagree');
  if (d.length === 0 || d.length > 32) throw new SshFormatError('EC private scalar out of range');
  const secret = new Uint8Array(32);
  secret.set(d, 32 - d.length);
  let derived: Uint8Array;
  try {
    derived = p256.getPublicKey(secret, false);
  } catch (err) {
    secret.fill(0);
    throw new SshFormatError('EC private scalar out of range', { cause: err });
  }
  if (!equalBytes(derived, q)) {
    secret.fill(0);
    throw new SshFormatError('EC public key does not match the private scalar');
  }
  return { algorithm: 'p256', secret, publicKey: q.slice(), comment };
}

export interface RsaParts {
  n: Uint8Array;
  e: Uint8Array;
  d: Uint8Array;
  iqmp: Uint8Array;
  p: Uint8Array;
  q: Uint8Array;
}

function buildRsa(
  header: { e: Uint8Array; n: Uint8Array },
  parts: RsaParts,
  comment: string,
): ParsedRsaKey {
  if (!equalBytes(header.n, parts.n) || !equalBytes(header.e, parts.e)) {
    throw new SshFormatError('RSA public key copies in the file disagree');
  }
  return { algorithm: 'rsa', ...rsaKeyFromParts(parts), comment };
}

/**
 * An RSA private key from OpenSSH's components (n, e, d, iqmp, p, q: the order of both the
 * key file and the ssh-agent ADD_IDENTITY message), checked for consistency, as PKCS#8 DER.
 */
export function rsaKeyFromParts(parts: RsaParts): { pkcs8: Uint8Array; publicKey: Uint8Array; bits: number } {
  const bits = bitLength(parts.n);
  if (!RSA_ALLOWED_BITS.has(bits)) {
    throw new SshFormatError(`RSA key size ${bits} bits is not supported (use 2048, 3072 or 4096)`);
  }

  // BigInts are immutable and cannot be wiped; they only live for the
  // duration of this call. The byte buffers we derive from them are wiped.
  const n = bytesToBigint(parts.n);
  const e = bytesToBigint(parts.e);
  const d = bytesToBigint(parts.d);
  const p = bytesToBigint(parts.p);
  const q = bytesToBigint(parts.q);
  const iqmp = bytesToBigint(parts.iqmp);

  // Node/OpenSSL import the JWK without checking the parameters belong
  // together. Inconsistent CRT values give faulty signatures, and a faulty
  // CRT signature leaks the factorisation (Boneh-DeMillo-Lipton), so verify
  // the algebra here.
  const ok =
    e > 1n &&
    (e & 1n) === 1n &&
    e < n &&
    p > 1n &&
    q > 1n &&
    p * q === n &&
    d > 0n &&
    d < n &&
    (e * d) % (p - 1n) === 1n &&
    (e * d) % (q - 1n) === 1n &&
    iqmp > 0n &&
    iqmp < p &&
    (iqmp * q) % p === 1n;
  if (!ok) throw new SshFormatError('RSA private key parameters are inconsistent');

  // OpenSSH does not store the CRT exponents; derive them.
  const secretBytes = [d, p, q, d % (p - 1n), d % (q - 1n), iqmp].map(bigintToBytes);
  const [dB, pB, qB, dpB, dqB, qiB] = secretBytes as [
    Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array,
  ];
  let key: KeyObject;
  try {
    const jwk: JsonWebKey = {
      kty: 'RSA',
      n: b64url(parts.n),
      e: b64url(parts.e),
      d: b64url(dB),
      p: b64url(pB),
      q: b64url(qB),
      dp: b64url(dpB),
      dq: b64url(dqB),
      qi: b64url(qiB),
    };
    key = createPrivateKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw new SshFormatError('RSA private key rejected by the crypto library', { cause: err });
  } finally {
    for (const b of secretBytes) b.fill(0);
  }

  const der = key.export({ format: 'der', type: 'pkcs8' });
  const pkcs8 = new Uint8Array(der.length);
  pkcs8.set(der);
  der.fill(0);
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
  return { pkcs8, publicKey: new Uint8Array(spki), bits };
}

// ---------------------------------------------------------------------------
// Public key encoding
// ---------------------------------------------------------------------------

export type OpenSshPublicKeyInput =
  | { algorithm: 'ed25519'; publicKey: Uint8Array }
  | { algorithm: 'p256'; publicKey: Uint8Array }
  | { algorithm: 'rsa'; spki: Uint8Array };

/** The SSH public key blob (what authorized_keys base64-encodes). */
export function sshPublicKeyBlob(k: OpenSshPublicKeyInput): Uint8Array {
  const w = new SshWriter();
  switch (k.algorithm) {
    case 'ed25519': {
      if (!(k.publicKey instanceof Uint8Array) || k.publicKey.length !== ED25519_PK_LEN) {
        throw new SshFormatError('ed25519 public key must be 32 bytes');
      }
      // RFC 8709 §4
      return w.string('ssh-ed25519').string(k.publicKey).finish();
    }
    case 'p256': {
      const pub = k.publicKey;
      if (!(pub instanceof Uint8Array) || (pub.length !== 33 && pub.length !== 65)) {
        throw new SshFormatError('P-256 public key must be a 33-byte compressed or 65-byte uncompressed point');
      }
      // RFC 5656 §3.1 permits compressed points, but OpenSSH only accepts
      // uncompressed ones in practice, so always emit 0x04 || X || Y. Parsing
      // through the curve also rejects points not on P-256.
      let q: Uint8Array;
      try {
        q = p256.Point.fromBytes(pub).toBytes(false);
      } catch (err) {
        throw new SshFormatError('invalid P-256 public key', { cause: err });
      }
      return w.string('ecdsa-sha2-nistp256').string('nistp256').string(q).finish();
    }
    case 'rsa': {
      let jwk: JsonWebKey;
      try {
        const key = createPublicKey({ key: Buffer.from(k.spki), format: 'der', type: 'spki' });
        if (key.asymmetricKeyType !== 'rsa') throw new Error(`not an RSA key: ${key.asymmetricKeyType}`);
        jwk = key.export({ format: 'jwk' });
      } catch (err) {
        throw new SshFormatError('invalid RSA SubjectPublicKeyInfo', { cause: err });
      }
      if (typeof jwk.n !== 'string' || typeof jwk.e !== 'string') {
        throw new SshFormatError('invalid RSA SubjectPublicKeyInfo');
      }
      // RFC 4253 §6.6: "ssh-rsa" public blobs carry e before n.
      return w
        .string('ssh-rsa')
        .mpint(Buffer.from(jwk.e, 'base64url'))
        .mpint(Buffer.from(jwk.n, 'base64url'))
        .finish();
    }
    default:
      throw new SshFormatError(`unsupported algorithm "${printable(String((k as { algorithm: unknown }).algorithm))}"`);
  }
}

/** One-line authorized_keys form: `<type> <base64 blob>[ <comment>]`. */
export function encodeOpenSshPublicKey(k: OpenSshPublicKeyInput, comment?: string): string {
  const blob = sshPublicKeyBlob(k);
  const type = sshKeyTypeName(k.algorithm);
  const line = `${type} ${Buffer.from(blob).toString('base64')}`;
  if (comment === undefined || comment === '') return line;
  // authorized_keys is line-oriented (sshd(8) AUTHORIZED_KEYS FILE FORMAT):
  // a line break inside the comment would start a new, attacker-influenced
  // entry.
  if (/[\r\n\0]/.test(comment)) throw new SshFormatError('comment must be a single line');
  return `${line} ${comment}`;
}

function sshKeyTypeName(alg: OpenSshPublicKeyInput['algorithm']): string {
  switch (alg) {
    case 'ed25519':
      return 'ssh-ed25519';
    case 'p256':
      return 'ecdsa-sha2-nistp256';
    case 'rsa':
      return 'ssh-rsa';
  }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function startsWith(buf: Uint8Array, prefix: Uint8Array): boolean {
  if (buf.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[i] !== prefix[i]) return false;
  return true;
}


function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode(...b.subarray(i, i + 8192));
  }
  return s;
}


function bitLength(mag: Uint8Array): number {
  // `mag` has no leading zero bytes (SshReader.mpint trims them).
  if (mag.length === 0) return 0;
  return (mag.length - 1) * 8 + (32 - Math.clz32(mag[0]!));
}

function bytesToBigint(b: Uint8Array): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

function bigintToBytes(v: bigint): Uint8Array {
  let len = 0;
  for (let t = v; t > 0n; t >>= 8n) len++;
  const out = new Uint8Array(len);
  for (let i = len - 1, t = v; i >= 0; i--, t >>= 8n) out[i] = Number(t & 0xffn);
  return out;
}

function b64url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64url');
}
