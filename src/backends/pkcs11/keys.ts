/**
 * Key objects on a token as Custos sees them: which PKCS#11 mechanism and attributes make
 * each Custos algorithm, and how a token's public key attributes become Custos's canonical
 * raw public key (crypto/algorithms.ts, ALGORITHM_INFO.publicKeyForm).
 */
import { createPublicKey } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { Attribute, Mechanism } from 'pkcs11js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { p256 } from '@noble/curves/nist.js';
import { CustosError } from '../../core/errors.js';
import type { Algorithm } from '../../core/types.js';

// PKCS#11 3.0 EdDSA constants, absent from pkcs11js 2.1 (PKCS#11 3.0 §6.3).
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;
export const CKK_EC_EDWARDS = 0x40;

/** The algorithms a token holds for Custos (BIP340 and expanded Ed25519 have no PKCS#11 mechanism). */
export const TOKEN_ALGORITHMS = ['ed25519', 'secp256k1', 'p256', 'rsa-2048', 'rsa-3072', 'rsa-4096'] as const;
export type TokenAlgorithm = (typeof TOKEN_ALGORITHMS)[number];

export function isTokenAlgorithm(alg: string): alg is TokenAlgorithm {
  return (TOKEN_ALGORITHMS as readonly string[]).includes(alg);
}

export function requireTokenAlgorithm(alg: Algorithm): TokenAlgorithm {
  if (!isTokenAlgorithm(alg)) {
    throw new CustosError('unsupported_algorithm', `${alg} keys cannot be held on a PKCS#11 token (no standard mechanism); use the software backend.`);
  }
  return alg;
}

// CKA_EC_PARAMS: the DER of the curve's OID (RFC 5480 §2.1.1.1, RFC 8410 §3).
const OID_P256 = Buffer.from('06082a8648ce3d030107', 'hex');
const OID_SECP256K1 = Buffer.from('06052b8104000a', 'hex');
const OID_ED25519 = Buffer.from('06032b6570', 'hex');
// PKCS#11 3.0 §2.3.10 also names Edwards curves by a PrintableString; some tokens store that.
const NAME_ED25519 = Buffer.from('130c656477617264733235353139', 'hex');

const RSA_BITS: Record<string, number> = { 'rsa-2048': 2048, 'rsa-3072': 3072, 'rsa-4096': 4096 };

/** Mechanism and the attributes that decide the key's kind, for C_GenerateKeyPair. */
export function keyPairSpec(alg: TokenAlgorithm): { mechanism: Mechanism; publicKind: Attribute[]; keyType: number } {
  switch (alg) {
    case 'ed25519':
      return { mechanism: { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN }, publicKind: [{ type: pkcs11js.CKA_EC_PARAMS, value: OID_ED25519 }], keyType: CKK_EC_EDWARDS };
    case 'secp256k1':
      return { mechanism: { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN }, publicKind: [{ type: pkcs11js.CKA_EC_PARAMS, value: OID_SECP256K1 }], keyType: pkcs11js.CKK_EC };
    case 'p256':
      return { mechanism: { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN }, publicKind: [{ type: pkcs11js.CKA_EC_PARAMS, value: OID_P256 }], keyType: pkcs11js.CKK_EC };
    default:
      return {
        mechanism: { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN },
        publicKind: [
          { type: pkcs11js.CKA_MODULUS_BITS, value: RSA_BITS[alg]! },
          { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
        ],
        keyType: pkcs11js.CKK_RSA,
      };
  }
}

/** Which Custos algorithm a key is, from its CKA_KEY_TYPE and CKA_EC_PARAMS or modulus; null if none. */
export function algorithmOf(keyType: number, ecParams: Buffer | null, modulus: Buffer | null): TokenAlgorithm | null {
  if (keyType === CKK_EC_EDWARDS && ecParams && (ecParams.equals(OID_ED25519) || ecParams.equals(NAME_ED25519))) return 'ed25519';
  if (keyType === pkcs11js.CKK_EC && ecParams?.equals(OID_P256)) return 'p256';
  if (keyType === pkcs11js.CKK_EC && ecParams?.equals(OID_SECP256K1)) return 'secp256k1';
  if (keyType === pkcs11js.CKK_RSA && modulus) {
    let bytes = modulus.length;
    for (let i = 0; i < modulus.length && modulus[i] === 0; i++) bytes--;
    const bits = bytes * 8;
    for (const [alg, n] of Object.entries(RSA_BITS)) if (n === bits) return alg as TokenAlgorithm;
  }
  return null;
}

/**
 * CKA_EC_POINT is, by PKCS#11 §2.3.3, the DER OCTET STRING around the point; a few modules
 * return the bare point. The expected length tells them apart (a length byte cannot).
 */
function unwrapEcPoint(value: Buffer, bareLength: number): Uint8Array {
  if (value.length === bareLength) return new Uint8Array(value);
  if (value.length === bareLength + 2 && value[0] === 0x04 && value[1] === bareLength) return new Uint8Array(value.subarray(2));
  throw new CustosError('invalid_key_material', 'The token returned a public key point of unexpected form.');
}

/** The canonical raw public key from the public key object's attributes. */
export function canonicalPublicKey(alg: TokenAlgorithm, attrs: { ecPoint?: Buffer | null; modulus?: Buffer | null; exponent?: Buffer | null }): Uint8Array {
  switch (alg) {
    case 'ed25519':
      return unwrapEcPoint(need(attrs.ecPoint), 32);
    case 'secp256k1':
      return secp256k1.Point.fromBytes(unwrapEcPoint(need(attrs.ecPoint), 65)).toBytes(true);
    case 'p256':
      return p256.Point.fromBytes(unwrapEcPoint(need(attrs.ecPoint), 65)).toBytes(false);
    default: {
      const jwk = { kty: 'RSA', n: need(attrs.modulus).toString('base64url'), e: need(attrs.exponent).toString('base64url') };
      return new Uint8Array(createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'der', type: 'spki' }));
    }
  }
}

function need(b: Buffer | null | undefined): Buffer {
  if (!b || b.length === 0) throw new CustosError('invalid_key_material', 'The token did not return the public key attributes.');
  return b;
}
