/**
 * Authenticated encryption for data at rest: XChaCha20-Poly1305 (@noble/ciphers) with a
 * random 192-bit nonce, so nonces never need a counter that a crash could reuse.
 * Sealed form: nonce (24) ‖ ciphertext ‖ tag (16).
 */
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { randomBytes } from 'node:crypto';
import { concatBytes } from '../core/bytes.js';

const NONCE = 24;
const TAG = 16;

export function seal(key: Uint8Array, plaintext: Uint8Array, associatedData: Uint8Array): Uint8Array {
  const nonce = new Uint8Array(randomBytes(NONCE));
  const ct = xchacha20poly1305(key, nonce, associatedData).encrypt(plaintext);
  return concatBytes(nonce, ct);
}

/** Returns the plaintext, or null when the key, the associated data or the bytes are wrong. */
export function open(key: Uint8Array, sealed: Uint8Array, associatedData: Uint8Array): Uint8Array | null {
  if (sealed.length < NONCE + TAG) return null;
  try {
    return xchacha20poly1305(key, sealed.subarray(0, NONCE), associatedData).decrypt(sealed.subarray(NONCE));
  } catch {
    return null;
  }
}
