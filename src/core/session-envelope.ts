/**
 * The envelope of an account session's requests and responses, on top of TLS. Both ends hold
 * the OPAQUE session key; from it and the session id each derives one key per direction
 * (HKDF-SHA256), and every body is sealed with XChaCha20-Poly1305 under the associated data
 * `custos-session-v1 ‖ sid ‖ ssid ‖ direction ‖ route`. The subsession number `ssid` rises
 * with every call: the server accepts each number once and never one lower than the last, so a
 * replayed, reordered or cross-session message (or one sent to another route) does not open
 * or is refused.
 *
 * Wire form of a sealed body: base64url of nonce (24 bytes) ‖ ciphertext ‖ tag (16). Shared by
 * the server (vault/sessions.ts) and the client SDK, so it lives here with no I/O.
 */
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes } from '@noble/hashes/utils.js';

export type Direction = 'c2s' | 's2c';
const NONCE = 24;
const TAG = 16;
/** The most a sealed body may be (1 MiB of JSON, base64url). */
export const MAX_SEALED = 1_500_000;
const enc = new TextEncoder();

/** One key per direction, from the session key and the session id. The caller wipes them. */
export function sessionKeys(sessionKey: Uint8Array, sid: string): Record<Direction, Uint8Array> {
  const salt = enc.encode(sid);
  return {
    c2s: hkdf(sha256, sessionKey, salt, enc.encode('custos/v1/session client to server'), 32),
    s2c: hkdf(sha256, sessionKey, salt, enc.encode('custos/v1/session server to client'), 32),
  };
}

function ad(sid: string, ssid: number, dir: Direction, route: string): Uint8Array {
  return enc.encode(`custos-session-v1\n${sid}\n${ssid}\n${dir}\n${route}`);
}

function toB64url(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** base64url (no padding) to bytes; null when it is not. */
export function fromBase64url(s: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) return null;
  try {
    const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}

export function sealBody(key: Uint8Array, sid: string, ssid: number, dir: Direction, route: string, plaintext: Uint8Array): string {
  const nonce = randomBytes(NONCE);
  const ct = xchacha20poly1305(key, nonce, ad(sid, ssid, dir, route)).encrypt(plaintext);
  const out = new Uint8Array(NONCE + ct.length);
  out.set(nonce);
  out.set(ct, NONCE);
  return toB64url(out);
}

/** The plaintext, or null when the body is malformed, too large, or not sealed for exactly this (sid, ssid, direction, route). */
export function openBody(key: Uint8Array, sid: string, ssid: number, dir: Direction, route: string, sealed: unknown): Uint8Array | null {
  if (typeof sealed !== 'string' || sealed.length > MAX_SEALED) return null;
  const raw = fromBase64url(sealed);
  if (!raw || raw.length < NONCE + TAG) return null;
  try {
    return xchacha20poly1305(key, raw.subarray(0, NONCE), ad(sid, ssid, dir, route)).decrypt(raw.subarray(NONCE));
  } catch {
    return null;
  }
}

/**
 * The plaintext inside a sealed body: a JSON header, then (for calls that carry key material
 * or a secret) a newline and the raw bytes, so that secrets stay bytes at both ends and never
 * become text.
 */
export function frame(header: unknown, payload?: Uint8Array): Uint8Array {
  const head = enc.encode(JSON.stringify(header));
  if (payload === undefined) return head;
  const out = new Uint8Array(head.length + 1 + payload.length);
  out.set(head);
  out[head.length] = 0x0a;
  out.set(payload, head.length + 1);
  return out;
}

/** The header and payload (a view into `plain`) of a framed plaintext; null when the header is not JSON. */
export function unframe(plain: Uint8Array): { header: unknown; payload: Uint8Array | null } | null {
  const nl = plain.indexOf(0x0a);
  try {
    const header: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(nl < 0 ? plain : plain.subarray(0, nl)));
    return { header, payload: nl < 0 ? null : plain.subarray(nl + 1) };
  } catch {
    return null;
  }
}
