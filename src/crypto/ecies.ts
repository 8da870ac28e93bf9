/**
 * ECIES: encrypt bytes to a recipient's public key (used to export keys wrapped, never in
 * plaintext). KEM: X25519 (RFC 7748) or secp256k1 ECDH (x-coordinate of the shared point);
 * KDF: HKDF-SHA256; AEAD: ChaCha20-Poly1305 (RFC 8439), all from @noble.
 *
 * Envelope `custos-ecies-v1`, byte by byte:
 *   "CSTX" (4) ‖ version 0x01 (1) ‖ kem (1: 0x01 X25519, 0x02 secp256k1)
 *   ‖ ephemeral public key (32 for X25519, 33 compressed for secp256k1)
 *   ‖ ciphertext ‖ Poly1305 tag (16)
 * key ‖ nonce = HKDF-SHA256(ikm = shared secret, salt = ephemeral pub ‖ recipient pub,
 *                           info = "custos-ecies-v1", 44 bytes)
 * AEAD associated data = the header (everything before the ciphertext). A fresh ephemeral
 * key per envelope makes the derived nonce unique.
 */
import { createECDH } from 'node:crypto';
import { x25519 } from '@noble/curves/ed25519.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { CustosError } from '../core/errors.js';
import { concatBytes, utf8, wipe } from '../core/bytes.js';

export type Kem = 'x25519' | 'secp256k1';
const MAGIC = utf8('CSTX');
const KEM_ID: Record<Kem, number> = { x25519: 1, secp256k1: 2 };
const EPH_LEN: Record<Kem, number> = { x25519: 32, secp256k1: 33 };
const INFO = utf8('custos-ecies-v1');

/**
 * The shared secret: X25519's output, or the x-coordinate of the secp256k1 product. secp256k1
 * goes through node:crypto (OpenSSL), several times faster than the pure-JS curve for this
 * variable-base product and identical in result (noble checks it in the tests).
 */
function sharedSecret(kem: Kem, secret: Uint8Array, pub: Uint8Array): Uint8Array {
  if (kem === 'x25519') return x25519.getSharedSecret(secret, pub);
  const ecdh = createECDH('secp256k1');
  const s = Buffer.from(secret);
  try {
    ecdh.setPrivateKey(s);
    const secret = ecdh.computeSecret(pub);
    try {
      return new Uint8Array(secret);
    } finally {
      secret.fill(0);
    }
  } finally {
    s.fill(0);
  }
}

/** The compressed public key of a secp256k1 secret, by OpenSSL. */
function secp256k1PublicOf(secret: Uint8Array): Uint8Array {
  const ecdh = createECDH('secp256k1');
  const s = Buffer.from(secret);
  try {
    ecdh.setPrivateKey(s);
    return new Uint8Array(ecdh.getPublicKey(null, 'compressed'));
  } finally {
    s.fill(0);
  }
}

function normaliseRecipient(kem: Kem, pub: Uint8Array): Uint8Array {
  try {
    if (kem === 'x25519') {
      if (pub.length !== 32) throw new Error('length');
      return pub;
    }
    return secp256k1.Point.fromBytes(pub).toBytes(true);
  } catch {
    throw new CustosError('bad_request', `The recipient ${kem} public key is malformed.`);
  }
}

function keys(shared: Uint8Array, eph: Uint8Array, recipient: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const okm = hkdf(sha256, shared, concatBytes(eph, recipient), INFO, 44);
  return { key: okm.subarray(0, 32), nonce: okm.subarray(32) };
}

/**
 * `ephemeral` (secp256k1 only): the envelope's one-time key, given by a caller that derives it
 * from everything the envelope is for (lightning records: a retry must give the same bytes);
 * it must never serve two plaintexts. Without it, a fresh key inside OpenSSL.
 */
export function eciesEncrypt(kem: Kem, recipientPublic: Uint8Array, plaintext: Uint8Array, ephemeral?: Uint8Array): Uint8Array {
  const recipient = normaliseRecipient(kem, recipientPublic);
  let ephSecret: Uint8Array | undefined;
  let ephPublic: Uint8Array;
  let shared: Uint8Array | undefined;
  try {
    if (kem === 'x25519') {
      ephSecret = x25519.utils.randomSecretKey();
      ephPublic = x25519.getPublicKey(ephSecret);
      shared = sharedSecret(kem, ephSecret, recipient);
    } else {
      // A fresh key inside OpenSSL (its secret never reaches JavaScript), or the one given.
      const eph = createECDH('secp256k1');
      if (ephemeral) {
        const s = Buffer.from(ephemeral);
        try {
          eph.setPrivateKey(s);
        } finally {
          s.fill(0);
        }
      } else eph.generateKeys();
      ephPublic = new Uint8Array(eph.getPublicKey(null, 'compressed'));
      const secret = eph.computeSecret(recipient);
      shared = new Uint8Array(secret);
      secret.fill(0);
    }
    const { key, nonce } = keys(shared, ephPublic, recipient);
    const header = concatBytes(MAGIC, Uint8Array.of(1, KEM_ID[kem]), ephPublic);
    const ct = chacha20poly1305(key, nonce, header).encrypt(plaintext);
    wipe(key);
    return concatBytes(header, ct);
  } catch (e) {
    if (e instanceof CustosError) throw e;
    throw new CustosError('bad_request', `The recipient ${kem} public key cannot be used for key agreement.`);
  } finally {
    wipe(ephSecret, shared);
  }
}

export function eciesDecrypt(recipientSecret: Uint8Array, envelope: Uint8Array): Uint8Array {
  const bad = (why: string) => new CustosError('bad_request', `The envelope is not a valid custos-ecies-v1 envelope: ${why}.`);
  if (envelope.length < 6 || !MAGIC.every((b, i) => envelope[i] === b)) throw bad('wrong magic');
  if (envelope[4] !== 1) throw bad(`unknown version ${envelope[4]}`);
  const kem = envelope[5] === 1 ? 'x25519' : envelope[5] === 2 ? 'secp256k1' : null;
  if (!kem) throw bad(`unknown KEM ${envelope[5]}`);
  const headerLen = 6 + EPH_LEN[kem];
  if (envelope.length < headerLen + 16) throw bad('truncated');
  const header = envelope.subarray(0, headerLen);
  const eph = header.subarray(6);
  let shared: Uint8Array | undefined;
  try {
    const recipient = kem === 'x25519' ? x25519.getPublicKey(recipientSecret) : secp256k1PublicOf(recipientSecret);
    shared = sharedSecret(kem, recipientSecret, eph);
    const { key, nonce } = keys(shared, eph, recipient);
    const pt = chacha20poly1305(key, nonce, header).decrypt(envelope.subarray(headerLen));
    wipe(key);
    return pt;
  } catch {
    throw bad('it does not decrypt with this key');
  } finally {
    wipe(shared);
  }
}

/**
 * Key export plaintext, inside the envelope (all lengths big-endian):
 *   u8 algorithm-name length ‖ algorithm name (ASCII) ‖ u16 public key length ‖ public key
 *   ‖ u16 secret length ‖ secret (32-byte seed/scalar, or PKCS#8 DER for RSA)
 * Built as bytes, never as a string, so the secret is never an immutable JS string.
 */
export function encodeExportedKey(algorithm: string, publicKey: Uint8Array, secret: Uint8Array): Uint8Array {
  const name = utf8(algorithm);
  const out = new Uint8Array(1 + name.length + 2 + publicKey.length + 2 + secret.length);
  const view = new DataView(out.buffer);
  let o = 0;
  out[o++] = name.length;
  out.set(name, o);
  o += name.length;
  view.setUint16(o, publicKey.length);
  out.set(publicKey, (o += 2));
  o += publicKey.length;
  view.setUint16(o, secret.length);
  out.set(secret, o + 2);
  return out;
}

export function decodeExportedKey(b: Uint8Array): { algorithm: string; publicKey: Uint8Array; secret: Uint8Array } {
  const bad = () => new CustosError('bad_request', 'The exported key payload is malformed.');
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 0;
  const take = (n: number) => {
    if (o + n > b.length) throw bad();
    const s = b.subarray(o, o + n);
    o += n;
    return s;
  };
  const nameLen = take(1)[0]!;
  const algorithm = Buffer.from(take(nameLen)).toString('ascii');
  take(2);
  const publicKey = take(view.getUint16(o - 2));
  take(2);
  const secret = take(view.getUint16(o - 2));
  if (o !== b.length) throw bad();
  return { algorithm, publicKey, secret };
}
