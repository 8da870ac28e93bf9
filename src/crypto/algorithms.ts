/**
 * Signature algorithms: key generation, public keys, signing and verification, for every
 * algorithm the vault offers. Pure functions over bytes; no I/O.
 *
 * Where each one comes from, and why:
 * - Ed25519 and RSA use node:crypto (OpenSSL): identical output (Ed25519 is deterministic,
 *   RFC 8032; RSA PKCS#1 v1.5 is deterministic, PSS is randomised by design) and much faster.
 * - secp256k1 ECDSA uses @noble/curves: Bitcoin needs RFC 6979 nonces and low-S (BIP 62/146),
 *   which OpenSSL 3.0 does not give.
 * - BIP340 Schnorr uses @noble/curves (OpenSSL has no BIP340).
 * - Ed25519 from an expanded secret (Tor: `a ‖ RH`, no seed, e.g. blinded onion keys): node:crypto
 *   only takes seeds, so the RFC 8032 §5.1.6 signing steps run on @noble/curves' point and
 *   scalar API from the expanded halves (rend-spec-v3 A.2); checked against Tor's vectors.
 * - P-256 ECDSA uses @noble/curves so that signatures are RFC 6979 deterministic: OpenSSL 3.0
 *   draws a random nonce, which would make a weak RNG fatal and makes the published vectors
 *   uncheckable. (S is not normalised: P-256 verifiers accept both halves.)
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  generateKeyPairSync,
  randomBytes,
  sign as nodeSign,
  verify as nodeVerify,
  constants,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';
import { secp256k1, schnorr } from '@noble/curves/secp256k1.js';
import { p256 } from '@noble/curves/nist.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { CustosError } from '../core/errors.js';
import { concatBytes, wipe } from '../core/bytes.js';
import type { Algorithm, HashName, SignOptions, SignPayload } from '../core/types.js';

const generateKeyPairAsync = promisify(generateKeyPair);

// DER prefixes of the fixed-size ASN.1 wrappers for Ed25519 keys (RFC 8410 §7 and §4).
const ED25519_PKCS8_PREFIX = Uint8Array.from(Buffer.from('302e020100300506032b657004220420', 'hex'));
const ED25519_SPKI_PREFIX = Uint8Array.from(Buffer.from('302a300506032b6570032100', 'hex'));
const X25519_SPKI_PREFIX = Uint8Array.from(Buffer.from('302a300506032b656e032100', 'hex'));

export interface AlgorithmInfo {
  /** The family, which decides the secret's form and the signing options that apply. */
  family: 'ed25519' | 'ed25519-expanded' | 'ecdsa' | 'bip340' | 'rsa' | 'x25519';
  /** Length of the raw secret for fixed-size keys (RSA secrets are PKCS#8 DER). */
  secretLength: number | null;
  /** Whether a caller may send a pre-computed digest instead of the message. */
  acceptsDigest: boolean;
  /** Form of the canonical raw public key, for documentation and the API. */
  publicKeyForm: string;
  rsaBits?: number;
}

export const ALGORITHM_INFO: Record<Algorithm, AlgorithmInfo> = {
  ed25519: { family: 'ed25519', secretLength: 32, acceptsDigest: false, publicKeyForm: '32-byte RFC 8032 point' },
  'ed25519-expanded': { family: 'ed25519-expanded', secretLength: 64, acceptsDigest: false, publicKeyForm: '32-byte RFC 8032 point' },
  secp256k1: { family: 'ecdsa', secretLength: 32, acceptsDigest: true, publicKeyForm: '33-byte compressed SEC1 point' },
  'secp256k1-bip340': { family: 'bip340', secretLength: 32, acceptsDigest: false, publicKeyForm: '32-byte x-only (BIP340)' },
  p256: { family: 'ecdsa', secretLength: 32, acceptsDigest: true, publicKeyForm: '65-byte uncompressed SEC1 point' },
  x25519: { family: 'x25519', secretLength: 32, acceptsDigest: false, publicKeyForm: '32-byte X25519 u-coordinate' },
  'rsa-1024': { family: 'rsa', secretLength: null, acceptsDigest: false, publicKeyForm: 'SPKI DER', rsaBits: 1024 },
  'rsa-2048': { family: 'rsa', secretLength: null, acceptsDigest: false, publicKeyForm: 'SPKI DER', rsaBits: 2048 },
  'rsa-3072': { family: 'rsa', secretLength: null, acceptsDigest: false, publicKeyForm: 'SPKI DER', rsaBits: 3072 },
  'rsa-4096': { family: 'rsa', secretLength: null, acceptsDigest: false, publicKeyForm: 'SPKI DER', rsaBits: 4096 },
};

/**
 * A new key pair: the secret in the vault's canonical form and its public key. For Ed25519,
 * OpenSSL makes the pair and encodes both halves in the same call, so the public key comes
 * without parsing the seed back into a key (OpenSSL 3.0's PKCS#8 decoder costs about 0.35 ms
 * a key, most of a bulk creation). Both encodings are asked of `generateKeyPairSync` itself:
 * Node 20 can deadlock when a key pair it generated is exported afterwards (the JWK export holds
 * the key's lock while a garbage collection finalises the job that made it, which takes it too).
 */
export async function generateKey(alg: Algorithm): Promise<{ secret: Uint8Array; publicKey: Uint8Array }> {
  if (ALGORITHM_INFO[alg].family !== 'ed25519') {
    const secret = await generateSecret(alg);
    return { secret, publicKey: publicKeyFromSecret(alg, secret) };
  }
  // (@types/node has no overload for a JWK public half with a DER private one.)
  const pair = generateKeyPairSync('ed25519', { privateKeyEncoding: { format: 'der', type: 'pkcs8' }, publicKeyEncoding: { format: 'jwk' } } as never) as unknown as { privateKey: Buffer; publicKey: { x?: unknown } };
  const der = pair.privateKey;
  try {
    if (der.length !== ED25519_PKCS8_PREFIX.length + 32) throw new Error(`unexpected PKCS#8 length ${der.length}`);
    // The public half is a public value: JWK text is fine for it.
    const x = Buffer.from(String(pair.publicKey.x), 'base64url');
    if (x.length !== 32) throw new Error('unexpected public key length');
    return { secret: Uint8Array.from(der.subarray(der.length - 32)), publicKey: new Uint8Array(x) };
  } finally {
    der.fill(0);
  }
}

/**
 * Generates secret material in the vault's canonical form: the 32-byte seed or scalar for
 * elliptic-curve keys, PKCS#8 DER for RSA.
 */
export async function generateSecret(alg: Algorithm): Promise<Uint8Array> {
  const info = ALGORITHM_INFO[alg];
  switch (info.family) {
    case 'ed25519':
      return new Uint8Array(randomBytes(32));
    case 'ed25519-expanded': {
      // As Tor does for a new key: SHA-512 of a random seed, clamped; the seed is then dropped.
      const seed = new Uint8Array(randomBytes(32));
      const h = sha512(seed);
      wipe(seed);
      h[0]! &= 248;
      h[31]! &= 63;
      h[31]! |= 64;
      return h;
    }
    case 'ecdsa':
    case 'bip340':
      return curveOf(alg).utils.randomSecretKey();
    case 'x25519':
      return new Uint8Array(randomBytes(32));
    case 'rsa': {
      // Async so that a 4096-bit generation (about a second) never stalls other requests.
      // The encoding asked of the generating call itself (see generateKey: no export afterwards).
      const { privateKey: der } = await generateKeyPairAsync('rsa', {
        modulusLength: info.rsaBits!,
        publicExponent: 0x10001,
        privateKeyEncoding: { format: 'der', type: 'pkcs8' },
        publicKeyEncoding: { format: 'der', type: 'spki' },
      });
      const out = Uint8Array.from(der);
      der.fill(0);
      return out;
    }
  }
}

function curveOf(alg: Algorithm): typeof secp256k1 | typeof p256 {
  return alg === 'p256' ? p256 : secp256k1;
}

/** Checks a secret's form and range; throws `invalid_key_material` with a sentence. */
export function validateSecret(alg: Algorithm, secret: Uint8Array): void {
  const info = ALGORITHM_INFO[alg];
  if (info.family === 'rsa') {
    const key = rsaKeyObject(secret);
    const bits = key.asymmetricKeyDetails?.modulusLength;
    if (bits !== info.rsaBits) {
      throw new CustosError('invalid_key_material', `The RSA key has ${bits} bits, but the algorithm ${alg} needs ${info.rsaBits}.`);
    }
    return;
  }
  if (secret.length !== info.secretLength) {
    throw new CustosError('invalid_key_material', `A ${alg} secret is ${info.secretLength} bytes; got ${secret.length}.`);
  }
  if (info.family === 'ed25519-expanded') {
    // Blinded keys are not re-clamped (rend-spec-v3 A.2), so only the scalar's range is checked.
    if (expandedScalar(secret) === 0n) throw new CustosError('invalid_key_material', 'The expanded Ed25519 secret has a zero scalar.');
    return;
  }
  if (info.family === 'x25519') return; // every 32-byte string is a key (clamped when used)
  if (info.family !== 'ed25519' && !curveOf(alg).utils.isValidSecretKey(secret)) {
    throw new CustosError('invalid_key_material', `The ${alg} secret is not a valid scalar (zero or not below the curve order).`);
  }
}

function rsaKeyObject(pkcs8: Uint8Array): KeyObject {
  try {
    // A view, not a copy: no second copy of the secret to forget to wipe.
    const key = createPrivateKey({ key: Buffer.from(pkcs8.buffer, pkcs8.byteOffset, pkcs8.byteLength), format: 'der', type: 'pkcs8' });
    if (key.asymmetricKeyType !== 'rsa') throw new Error('not rsa');
    return key;
  } catch {
    throw new CustosError('invalid_key_material', 'The RSA key is not a valid PKCS#8 RSA private key.');
  }
}

export function ed25519PrivateKeyObject(seed: Uint8Array): KeyObject {
  const der = concatBytes(ED25519_PKCS8_PREFIX, seed);
  try {
    return createPrivateKey({ key: Buffer.from(der.buffer), format: 'der', type: 'pkcs8' });
  } finally {
    wipe(der);
  }
}

const ED_L = ed25519.Point.Fn.ORDER;

function leToBigint(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!);
  return n;
}

function bigintToLe32(n: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

/** The scalar a of an expanded secret a ‖ RH, reduced mod L. */
function expandedScalar(secret: Uint8Array): bigint {
  return leToBigint(secret.subarray(0, 32)) % ED_L;
}

/** RFC 8032 §5.1.6 from the expanded halves: r = H(RH ‖ M), R = rB, S = r + H(R ‖ A ‖ M)·a. */
function signExpanded(secret: Uint8Array, publicKey: Uint8Array, message: Uint8Array): Uint8Array {
  const a = expandedScalar(secret);
  const r = leToBigint(sha512(concatBytes(secret.subarray(32, 64), message))) % ED_L;
  const R = ed25519.Point.BASE.multiply(r === 0n ? 1n : r).toBytes();
  const k = leToBigint(sha512(concatBytes(R, publicKey, message))) % ED_L;
  return concatBytes(R, bigintToLe32((r + k * a) % ED_L));
}

/** The canonical raw public key of a secret (see ALGORITHM_INFO.publicKeyForm). */
export function publicKeyFromSecret(alg: Algorithm, secret: Uint8Array): Uint8Array {
  switch (ALGORITHM_INFO[alg].family) {
    case 'ed25519': {
      const spki = createPublicKey(ed25519PrivateKeyObject(secret)).export({ format: 'der', type: 'spki' });
      return new Uint8Array(spki.subarray(spki.length - 32));
    }
    case 'ed25519-expanded':
      return ed25519.Point.BASE.multiply(expandedScalar(secret)).toBytes();
    case 'ecdsa':
      return curveOf(alg).getPublicKey(secret, alg === 'secp256k1');
    case 'bip340':
      return schnorr.getPublicKey(secret);
    case 'rsa':
      return new Uint8Array(createPublicKey(rsaKeyObject(secret)).export({ format: 'der', type: 'spki' }));
    case 'x25519':
      return x25519.getPublicKey(secret);
  }
}

/** Node's KeyObject for a raw public key, used for SPKI/PEM output and node:crypto verification. */
export function publicKeyObject(alg: Algorithm, publicKey: Uint8Array): KeyObject {
  const info = ALGORITHM_INFO[alg];
  try {
    switch (info.family) {
      case 'ed25519':
      case 'ed25519-expanded':
        if (publicKey.length !== 32) throw new Error('length');
        return createPublicKey({ key: Buffer.from(concatBytes(ED25519_SPKI_PREFIX, publicKey)), format: 'der', type: 'spki' });
      case 'ecdsa':
      case 'bip340': {
        const point =
          info.family === 'bip340'
            ? secp256k1.Point.fromBytes(concatBytes(Uint8Array.of(2), publicKey))
            : curveOf(alg).Point.fromBytes(publicKey);
        const raw = point.toBytes(false);
        const jwk = {
          kty: 'EC',
          crv: alg === 'p256' ? 'P-256' : 'secp256k1',
          x: Buffer.from(raw.subarray(1, 33)).toString('base64url'),
          y: Buffer.from(raw.subarray(33, 65)).toString('base64url'),
        };
        return createPublicKey({ key: jwk, format: 'jwk' });
      }
      case 'rsa':
        return createPublicKey({ key: Buffer.from(publicKey), format: 'der', type: 'spki' });
      case 'x25519':
        if (publicKey.length !== 32) throw new Error('length');
        return createPublicKey({ key: Buffer.from(concatBytes(X25519_SPKI_PREFIX, publicKey)), format: 'der', type: 'spki' });
    }
  } catch {
    throw new CustosError('invalid_key_material', `The ${alg} public key is malformed.`);
  }
}

export function spkiPem(alg: Algorithm, publicKey: Uint8Array): string {
  return publicKeyObject(alg, publicKey).export({ format: 'pem', type: 'spki' }).toString();
}

const HASH_LENGTH: Record<HashName, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

/** Checks the options and payload of a request against what the algorithm allows. */
export function checkSignInput(alg: Algorithm, payload: SignPayload, options: SignOptions): void {
  const info = ALGORITHM_INFO[alg];
  if (info.family === 'x25519') throw new CustosError('unsupported_option', 'An X25519 key agrees on keys; it signs nothing.');
  if (payload.kind === 'digest' && !info.acceptsDigest) {
    throw new CustosError('digest_not_supported', `${alg} signs messages, not pre-computed digests; send the message.`);
  }
  if (options.encoding !== undefined && info.family !== 'ecdsa') {
    throw new CustosError('unsupported_option', `The signature encoding option applies to ECDSA keys only, not ${alg}.`);
  }
  if (options.padding !== undefined && info.family !== 'rsa') {
    throw new CustosError('unsupported_option', `The padding option applies to RSA keys only, not ${alg}.`);
  }
  if (options.auxRand !== undefined && (info.family !== 'bip340' || options.auxRand.length !== 32)) {
    throw new CustosError('unsupported_option', 'aux_rand applies to BIP340 keys only and is 32 bytes.');
  }
  if (options.hash !== undefined) {
    if (info.family === 'ed25519' || info.family === 'ed25519-expanded' || info.family === 'bip340') {
      throw new CustosError('unsupported_option', `${alg} has no separate hash option.`);
    }
    if (info.family === 'ecdsa' && options.hash !== 'sha256') {
      throw new CustosError('unsupported_option', `${alg} ECDSA uses SHA-256.`);
    }
    if (options.hash === 'sha1' && payload.kind === 'digest') {
      throw new CustosError('unsupported_option', 'SHA-1 is accepted only for legacy RSA signatures over a message.');
    }
  }
  if (payload.kind === 'digest' && payload.bytes.length !== HASH_LENGTH[options.hash ?? 'sha256']) {
    throw new CustosError(
      'invalid_digest',
      `A ${options.hash ?? 'sha256'} digest is ${HASH_LENGTH[options.hash ?? 'sha256']} bytes; got ${payload.bytes.length}.`,
    );
  }
}

/** A key ready to sign: holds its secret as a KeyObject or a private copy, until destroyed. */
export interface Signer {
  readonly algorithm: Algorithm;
  sign(payload: SignPayload, options: SignOptions): { signature: Uint8Array; encoding: string };
  destroy(): void;
}

/** Prepares a signer; the caller's `secret` is copied, so the caller may wipe it afterwards. */
export function prepareSigner(alg: Algorithm, secret: Uint8Array): Signer {
  const info = ALGORITHM_INFO[alg];
  switch (info.family) {
    case 'ed25519': {
      const key = ed25519PrivateKeyObject(secret);
      return {
        algorithm: alg,
        sign: (payload) => ({ signature: new Uint8Array(nodeSign(null, payload.bytes, key)), encoding: 'raw' }),
        destroy: () => {},
      };
    }
    case 'ed25519-expanded': {
      const sk = Uint8Array.from(secret);
      const pk = publicKeyFromSecret(alg, sk);
      return {
        algorithm: alg,
        sign: (payload) => ({ signature: signExpanded(sk, pk, payload.bytes), encoding: 'raw' }),
        destroy: () => wipe(sk),
      };
    }
    case 'rsa': {
      const key = rsaKeyObject(secret);
      return {
        algorithm: alg,
        sign: (payload, options) => {
          const padding = options.padding ?? 'pkcs1';
          const sig = nodeSign(options.hash ?? 'sha256', payload.bytes, {
            key,
            padding: padding === 'pss' ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING,
            saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
          });
          return { signature: new Uint8Array(sig), encoding: padding === 'pss' ? 'pss' : 'pkcs1' };
        },
        destroy: () => {},
      };
    }
    case 'ecdsa': {
      const sk = Uint8Array.from(secret);
      const curve = curveOf(alg);
      const lowS = alg === 'secp256k1';
      return {
        algorithm: alg,
        sign: (payload, options) => {
          const format = options.encoding ?? 'der';
          const signature = curve.sign(payload.bytes, sk, { prehash: payload.kind === 'message', lowS, format: format === 'raw' ? 'compact' : 'der' });
          return { signature, encoding: format };
        },
        destroy: () => wipe(sk),
      };
    }
    case 'bip340': {
      const sk = Uint8Array.from(secret);
      return {
        algorithm: alg,
        sign: (payload, options) => ({ signature: schnorr.sign(payload.bytes, sk, options.auxRand), encoding: 'bip340' }),
        destroy: () => wipe(sk),
      };
    }
    case 'x25519':
      throw new CustosError('unsupported_option', 'An X25519 key agrees on keys; it signs nothing.');
  }
}

/** Verifies a signature; false for any mismatch or malformed signature, never a throw. */
export function verifySignature(
  alg: Algorithm,
  publicKey: Uint8Array,
  payload: SignPayload,
  signature: Uint8Array,
  options: SignOptions,
): boolean {
  const info = ALGORITHM_INFO[alg];
  try {
    switch (info.family) {
      case 'ed25519':
      case 'ed25519-expanded':
        return nodeVerify(null, payload.bytes, publicKeyObject(alg, publicKey), signature);
      case 'rsa':
        return nodeVerify(options.hash ?? 'sha256', payload.bytes, {
          key: publicKeyObject(alg, publicKey),
          padding: options.padding === 'pss' ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING,
          saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
        }, signature);
      case 'ecdsa': {
        // Without an explicit encoding, DER is recognised by its framing (SEQUENCE whose length
        // covers the rest); a 64-byte DER signature exists, so length alone cannot decide.
        const looksDer = signature.length >= 8 && signature[0] === 0x30 && signature[1] === signature.length - 2;
        const format = options.encoding ?? (looksDer ? 'der' : 'raw');
        return curveOf(alg).verify(signature, payload.bytes, publicKey, {
          prehash: payload.kind === 'message',
          lowS: alg === 'secp256k1',
          format: format === 'raw' ? 'compact' : 'der',
        });
      }
      case 'bip340':
        return schnorr.verify(signature, payload.bytes, publicKey);
      case 'x25519':
        return false;
    }
  } catch {
    return false;
  }
}
