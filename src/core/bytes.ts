/** Byte helpers used at every boundary: strict decoding and constant-time comparison. */
import { timingSafeEqual } from 'node:crypto';
import { CustosError } from './errors.js';

const HEX_RE = /^(?:[0-9a-fA-F]{2})*$/;
const B64_RE = /^(?:[A-Za-z0-9+/]*|[A-Za-z0-9_-]*)={0,2}$/;

/**
 * Decodes into memory of its own. `Buffer.from(string)` takes small results from Node's
 * shared 8 KiB pool, where a decoded secret would outlive `wipe()` of the returned view.
 */
export function decodeUnpooled(s: string, encoding: 'hex' | 'base64' | 'base64url' | 'utf8'): Uint8Array {
  const buf = Buffer.allocUnsafeSlow(Buffer.byteLength(s, encoding));
  const n = buf.write(s, encoding);
  return new Uint8Array(buf.buffer, buf.byteOffset, n);
}

/** Decodes hex strictly (even length, hex digits only): `Buffer.from(x, 'hex')` silently truncates. */
export function hexToBytes(hex: string, what = 'value'): Uint8Array {
  const s = hex.trim();
  if (!HEX_RE.test(s)) throw new CustosError('bad_request', `The ${what} is not valid hex.`);
  return decodeUnpooled(s, 'hex');
}

export function bytesToHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/**
 * Decodes standard or URL-safe base64 strictly: one alphabet, padding absent or exact, and
 * canonical trailing bits, so that one byte string has one accepted encoding. Node's own
 * decoder skips garbage and accepts "=" as an empty string; we do not.
 */
export function base64ToBytes(s: string, what = 'value'): Uint8Array {
  const bad = () => new CustosError('bad_request', `The ${what} is not valid base64.`);
  const body = s.replace(/=+$/, '');
  if (!B64_RE.test(s) || body.length % 4 === 1 || (body.length !== s.length && s.length % 4 !== 0)) throw bad();
  const url = /[-_]/.test(body);
  const out = decodeUnpooled(body, url ? 'base64url' : 'base64');
  const again = Buffer.from(out.buffer, out.byteOffset, out.byteLength).toString(url ? 'base64url' : 'base64').replace(/=+$/, '');
  if (again !== body) {
    out.fill(0);
    throw bad();
  }
  return out;
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
