/**
 * Bare public keys as people hand them over, turned into the vault's canonical raw form
 * (ALGORITHM_INFO.publicKeyForm): SPKI (PEM or DER) for every algorithm, raw Ed25519 (32
 * bytes), SEC1 compressed or uncompressed points for secp256k1 and P-256, x-only for BIP340.
 * Every point is checked to be on its curve; anything else is `invalid_key_material`.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { p256 } from '@noble/curves/nist.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { CustosError } from '../core/errors.js';
import type { Algorithm } from '../core/types.js';
import { ALGORITHM_INFO } from './algorithms.js';

export const PUBLIC_FORMATS = ['spki-pem', 'spki-der', 'raw'] as const;
export type PublicFormat = (typeof PUBLIC_FORMATS)[number];

const invalid = (why: string) => new CustosError('invalid_key_material', why);
const MAX_PUBLIC_KEY = 16 * 1024;

/** The algorithm and canonical raw public key of encoded public key material. */
export function parsePublicKey(format: PublicFormat, material: Uint8Array, wanted?: Algorithm): { algorithm: Algorithm; publicKey: Uint8Array } {
  if (material.length === 0 || material.length > MAX_PUBLIC_KEY) throw invalid(`A public key is 1 to ${MAX_PUBLIC_KEY} bytes; this is ${material.length}.`);
  if (format === 'raw') return rawPublicKey(material, wanted);
  // createPublicKey would derive a public key from a private one: refuse it instead, so that a
  // private key sent by mistake is said to be one (and the sender knows it has travelled).
  if (format === 'spki-pem' && /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(Buffer.from(material).toString('latin1'))) {
    throw invalid('The material holds a private key; import a private key with `keys import`, a public one here.');
  }
  let key: KeyObject;
  try {
    key = format === 'spki-pem' ? createPublicKey({ key: Buffer.from(material).toString('utf8'), format: 'pem' }) : createPublicKey({ key: Buffer.from(material), format: 'der', type: 'spki' });
  } catch {
    throw invalid(format === 'spki-pem' ? 'The material is not a PEM public key ("-----BEGIN PUBLIC KEY-----").' : 'The material is not a DER SubjectPublicKeyInfo.');
  }
  if (key.type !== 'public') throw invalid('The material holds a private key; import a private key with `keys import`, a public one here.');
  const found = algorithmOf(key);
  const algorithm = wanted === 'secp256k1-bip340' && found === 'secp256k1' ? wanted : found;
  if (wanted !== undefined && wanted !== algorithm) throw invalid(`The material is a ${found} public key, not ${wanted}.`);
  if (ALGORITHM_INFO[algorithm].family === 'rsa') return { algorithm, publicKey: new Uint8Array(key.export({ format: 'der', type: 'spki' })) };
  const jwk = key.export({ format: 'jwk' }) as { x?: string; y?: string };
  if (algorithm === 'ed25519') return rawPublicKey(new Uint8Array(Buffer.from(jwk.x!, 'base64url')), algorithm);
  const uncompressed = new Uint8Array([4, ...Buffer.from(jwk.x!, 'base64url'), ...Buffer.from(jwk.y!, 'base64url')]);
  return rawPublicKey(uncompressed, algorithm);
}

function algorithmOf(key: KeyObject): Algorithm {
  const t = key.asymmetricKeyType;
  if (t === 'ed25519') return 'ed25519';
  if (t === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'p256';
    if (curve === 'secp256k1') return 'secp256k1';
    throw invalid(`EC public keys on ${curve ?? 'this curve'} are not supported (P-256 and secp256k1 are).`);
  }
  if (t === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength;
    if (bits === 2048 || bits === 3072 || bits === 4096) return `rsa-${bits}`;
    throw invalid(`RSA public keys of ${bits} bits are not supported (2048, 3072 and 4096 are).`);
  }
  throw invalid(`${t ?? 'This'} public keys are not supported.`);
}

function rawPublicKey(b: Uint8Array, alg: Algorithm | undefined): { algorithm: Algorithm; publicKey: Uint8Array } {
  if (alg === undefined) throw new CustosError('bad_request', 'A raw public key needs its algorithm (ed25519, secp256k1, secp256k1-bip340 or p256).');
  try {
    switch (alg) {
      case 'ed25519':
        if (b.length !== 32) throw new Error('length');
        // A small-order point (the identity among them) makes one signature valid for every
        // message: such a "key" verifies nothing.
        if (ed25519.Point.fromBytes(b).isSmallOrder()) throw invalid('The Ed25519 public key is a small-order point: any message would verify under it, so it is refused.');
        return { algorithm: alg, publicKey: new Uint8Array(b) };
      case 'secp256k1':
        return { algorithm: alg, publicKey: secp256k1.Point.fromBytes(b).toBytes(true) };
      case 'secp256k1-bip340': {
        // x-only (32 bytes), or a SEC1 point whose x is taken (BIP340 keys have even y).
        const x = b.length === 32 ? b : secp256k1.Point.fromBytes(b).toBytes(true).subarray(1);
        secp256k1.Point.fromBytes(new Uint8Array([2, ...x]));
        return { algorithm: alg, publicKey: new Uint8Array(x) };
      }
      case 'p256':
        return { algorithm: alg, publicKey: p256.Point.fromBytes(b).toBytes(false) };
      default:
        throw invalid(`A raw ${alg} public key is not a thing here: give ${ALGORITHM_INFO[alg].family === 'rsa' ? 'an SPKI (PEM or DER)' : 'the 32-byte point'}.`);
    }
  } catch (e) {
    if (e instanceof CustosError) throw e;
    throw invalid(`The material is not a valid ${alg} public key (${alg === 'ed25519' ? '32 bytes' : alg === 'secp256k1-bip340' ? '32-byte x-only or a SEC1 point' : '33-byte compressed or 65-byte uncompressed SEC1'}, on the curve).`);
  }
}
