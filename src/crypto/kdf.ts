/** Key derivation: scrypt for passphrases, HKDF-SHA256 for keys derived from the root key. */
import { scrypt } from 'node:crypto';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8 } from '../core/bytes.js';

export interface ScryptParams {
  /** CPU/memory cost, a power of two. Memory used is 128 · N · r bytes. */
  N: number;
  r: number;
  p: number;
}

/**
 * Default cost: N = 2^17, r = 8, p = 1 — 128 MiB and about 0.3 s here, the figure OWASP's
 * password storage guidance gives for scrypt. Stored with the seal, so it can change later.
 */
export const DEFAULT_SCRYPT: ScryptParams = { N: 2 ** 17, r: 8, p: 1 };

export function scryptKey(passphrase: Uint8Array, salt: Uint8Array, params: ScryptParams): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    scrypt(passphrase, salt, 32, { ...params, maxmem: 256 * params.N * params.r + 1024 * 1024 }, (err, key) => {
      if (err) reject(err);
      else resolve(new Uint8Array(key.buffer, key.byteOffset, key.byteLength));
    });
  });
}

/** A 32-byte subkey of the root key for one purpose; `info` names the purpose and version. */
export function deriveSubkey(root: Uint8Array, salt: Uint8Array, info: string): Uint8Array {
  return hkdf(sha256, root, salt, utf8(info), 32);
}
