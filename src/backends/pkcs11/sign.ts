/**
 * What to ask the token for each Custos signature, and how to turn its answer into exactly the
 * bytes the software path (crypto/algorithms.ts prepareSigner) produces for the same options:
 * Ed25519 raw 64 bytes; ECDSA over SHA-256 in DER (default) or r‖s, low-S for secp256k1;
 * RSA PKCS#1 v1.5 or PSS (salt = digest length) with the chosen hash.
 *
 * ECDSA nonces are the token's (random), not RFC 6979 as in software: the encoding is the
 * same and verifySignature accepts both, but the bytes differ from a software signature.
 */
import { createHash } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { Mechanism } from 'pkcs11js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { p256 } from '@noble/curves/nist.js';
import { checkSignInput } from '../../crypto/algorithms.js';
import type { HashName, SignOptions, SignPayload } from '../../core/types.js';
import { CKM_EDDSA, type TokenAlgorithm } from './keys.js';

export interface SignPlan {
  mechanism: Mechanism;
  /** What C_Sign receives: the message, or for ECDSA the digest. */
  data: Buffer;
  /** Room for the signature (C_Sign slices to the real length). */
  outLength: number;
}

const RSA_PKCS1: Record<HashName, number> = {
  sha1: pkcs11js.CKM_SHA1_RSA_PKCS,
  sha256: pkcs11js.CKM_SHA256_RSA_PKCS,
  sha384: pkcs11js.CKM_SHA384_RSA_PKCS,
  sha512: pkcs11js.CKM_SHA512_RSA_PKCS,
};
const RSA_PSS: Record<HashName, { mech: number; hashAlg: number; mgf: number; saltLen: number }> = {
  sha1: { mech: pkcs11js.CKM_SHA1_RSA_PKCS_PSS, hashAlg: pkcs11js.CKM_SHA_1, mgf: pkcs11js.CKG_MGF1_SHA1, saltLen: 20 },
  sha256: { mech: pkcs11js.CKM_SHA256_RSA_PKCS_PSS, hashAlg: pkcs11js.CKM_SHA256, mgf: pkcs11js.CKG_MGF1_SHA256, saltLen: 32 },
  sha384: { mech: pkcs11js.CKM_SHA384_RSA_PKCS_PSS, hashAlg: pkcs11js.CKM_SHA384, mgf: pkcs11js.CKG_MGF1_SHA384, saltLen: 48 },
  sha512: { mech: pkcs11js.CKM_SHA512_RSA_PKCS_PSS, hashAlg: pkcs11js.CKM_SHA512, mgf: pkcs11js.CKG_MGF1_SHA512, saltLen: 64 },
};

/** Validates the request as the software path does, then picks mechanism and input. */
export function planSignature(alg: TokenAlgorithm, payload: SignPayload, options: SignOptions): SignPlan {
  checkSignInput(alg, payload, options);
  const bytes = Buffer.from(payload.bytes.buffer, payload.bytes.byteOffset, payload.bytes.byteLength);
  switch (alg) {
    case 'ed25519':
      // CKM_EDDSA without parameters is pure Ed25519 (PKCS#11 3.0 §2.3.14), as RFC 8032 §5.1.6.
      return { mechanism: { mechanism: CKM_EDDSA }, data: bytes, outLength: 64 };
    case 'secp256k1':
    case 'p256': {
      // checkSignInput allows only SHA-256 for ECDSA; CKM_ECDSA signs the digest as given.
      const data = payload.kind === 'digest' ? bytes : createHash('sha256').update(bytes).digest();
      return { mechanism: { mechanism: pkcs11js.CKM_ECDSA }, data, outLength: 64 };
    }
    default: {
      const hash = options.hash ?? 'sha256';
      if ((options.padding ?? 'pkcs1') === 'pkcs1') return { mechanism: { mechanism: RSA_PKCS1[hash] }, data: bytes, outLength: 512 };
      // node:crypto's RSA_PSS_SALTLEN_DIGEST and MGF1 with the message hash (RFC 8017 §9.1).
      const p = RSA_PSS[hash];
      const parameter = { type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg: p.hashAlg, mgf: p.mgf, saltLen: p.saltLen };
      return { mechanism: { mechanism: p.mech, parameter }, data: bytes, outLength: 512 };
    }
  }
}

/** The token's raw signature in Custos's encoding, and the encoding's name. */
export function finishSignature(alg: TokenAlgorithm, raw: Uint8Array, options: SignOptions): { signature: Uint8Array; encoding: string } {
  switch (alg) {
    case 'ed25519':
      return { signature: new Uint8Array(raw), encoding: 'raw' };
    case 'secp256k1':
    case 'p256': {
      // CKM_ECDSA returns r‖s (PKCS#11 §2.3.1). Bitcoin needs low-S (BIP 62/146), which the
      // software path gives secp256k1 and not P-256; the token's S is either half.
      const curve = alg === 'secp256k1' ? secp256k1 : p256;
      let sig = curve.Signature.fromBytes(raw, 'compact');
      if (alg === 'secp256k1' && sig.hasHighS()) sig = new curve.Signature(sig.r, curve.Point.Fn.ORDER - sig.s);
      const encoding = options.encoding ?? 'der';
      return { signature: sig.toBytes(encoding === 'raw' ? 'compact' : 'der'), encoding };
    }
    default:
      return { signature: new Uint8Array(raw), encoding: (options.padding ?? 'pkcs1') === 'pss' ? 'pss' : 'pkcs1' };
  }
}
