/**
 * The wrapped-key blob: a private key encrypted by the token under its AES wrapping key, as
 * the vault stores it. Only the token can turn it back into a usable (session) key object.
 *
 *   byte 0      format version (1)
 *   byte 1      wrap mechanism (1 = CKM_AES_KEY_WRAP_PAD, RFC 5649)
 *   byte 2      algorithm code (ALG_CODE below)
 *   byte 3      n = length of the wrapping key's CKA_ID
 *   bytes 4..   the wrapping key's CKA_ID (n bytes): which token key can unwrap it
 *   rest        the C_WrapKey output (the token's PKCS#8 encoding of the key, wrapped)
 *
 * The header is not authenticated by the wrap (RFC 5649 has no associated data); it is only
 * routing. A swapped algorithm byte makes the token reject the unwrap (key type mismatch) or
 * the signature fail verification, never a signature by a different key than the wrapped one.
 */
import { CustosError } from '../../core/errors.js';
import type { TokenAlgorithm } from './keys.js';

export const WRAP_FORMAT_V1 = 1;
export const WRAP_MECH_AES_KWP = 1;

const ALG_CODE: Record<TokenAlgorithm, number> = {
  ed25519: 1,
  secp256k1: 2,
  p256: 3,
  'rsa-2048': 4,
  'rsa-3072': 5,
  'rsa-4096': 6,
};

export interface WrappedBlob {
  mechanism: number;
  algorithm: TokenAlgorithm;
  wrappingKeyId: Uint8Array;
  wrapped: Uint8Array;
}

export function encodeWrapped(b: WrappedBlob): Uint8Array {
  if (b.wrappingKeyId.length > 255) throw new CustosError('internal', 'The wrapping key id is longer than 255 bytes.');
  const out = new Uint8Array(4 + b.wrappingKeyId.length + b.wrapped.length);
  out[0] = WRAP_FORMAT_V1;
  out[1] = b.mechanism;
  out[2] = ALG_CODE[b.algorithm];
  out[3] = b.wrappingKeyId.length;
  out.set(b.wrappingKeyId, 4);
  out.set(b.wrapped, 4 + b.wrappingKeyId.length);
  return out;
}

export function decodeWrapped(blob: Uint8Array): WrappedBlob {
  const corrupt = (why: string) => new CustosError('key_record_corrupt', `The wrapped key is malformed: ${why}.`);
  if (blob.length < 4) throw corrupt('it is too short');
  if (blob[0] !== WRAP_FORMAT_V1) throw corrupt(`unknown format version ${blob[0]}`);
  if (blob[1] !== WRAP_MECH_AES_KWP) throw corrupt(`unknown wrap mechanism ${blob[1]}`);
  const algorithm = (Object.keys(ALG_CODE) as TokenAlgorithm[]).find((a) => ALG_CODE[a] === blob[2]);
  if (!algorithm) throw corrupt(`unknown algorithm code ${blob[2]}`);
  const n = blob[3]!;
  // RFC 5649 output is at least 16 bytes and a multiple of 8.
  const rest = blob.length - 4 - n;
  if (rest < 16 || rest % 8 !== 0) throw corrupt('the wrapped part has an impossible length');
  return { mechanism: blob[1]!, algorithm, wrappingKeyId: blob.slice(4, 4 + n), wrapped: blob.slice(4 + n) };
}
