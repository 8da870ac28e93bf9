/** Byte helpers used at every boundary: strict decoding and constant-time comparison. */
import { timingSafeEqual } from 'node:crypto';
import { CustosError } from './errors.js';

const HEX_RE = /^(?:[0-9a-fA-F]{2})*$/;
const B64_RE = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Decodes hex strictly (even length, hex digits only): `Buffer.from(x, 'hex')` silently truncates. */
export function hexToBytes(hex: string, what = 'value'): Uint8Array {
  const s = hex.trim();
  if (!HEX_RE.test(s)) throw new CustosError('bad_request', `The ${what} is not valid hex.`);
  return new Uint8Array(Buffer.from(s, 'hex'));
}

export function bytesToHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** Decodes standard or URL-safe base64 strictly; Node's decoder ignores garbage, we do not. */
export function base64ToBytes(s: string, what = 'value'): Uint8Array {
  if (!B64_RE.test(s) || s.replace(/=+$/, '').length % 4 === 1) {
    throw new CustosError('bad_request', `The ${what} is not valid base64.`);
  }
  return new Uint8Array(Buffer.from(s, s.includes('-') || s.includes('_') ? 'base64url' : 'base64'));
}

export function bytesToBase64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}

export function utf8(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'utf8'));
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Constant-time equality for secrets and MACs; lengths are not secret. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/** Overwrites secret material in place once it is no longer needed. */
export function wipe(...bufs: Array<Uint8Array | undefined>): void {
  for (const b of bufs) b?.fill(0);
}
