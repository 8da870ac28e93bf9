/**
 * API credentials as stored: a bearer token is 256 random bits shown once and kept only as
 * its SHA-256 (it cannot be guessed, so no salt or slow hash is needed); a client certificate
 * is kept as the hash of its SHA-256 fingerprint, and the TLS handshake proves its key. Also
 * the terms a principal carries besides its role: expiry and a rate limit.
 */
import { createHash, randomBytes } from 'node:crypto';
import { CustosError } from '../core/errors.js';

/** A new bearer token: `custos_` and 32 random bytes, base64url. */
export function newToken(): string {
  return `custos_${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(token, 'utf8').digest());
}

/** A certificate's SHA-256 fingerprint as 64 lowercase hex digits (colons and case accepted). */
export function normalizeFingerprint(fp: string): string {
  const hex = fp.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new CustosError('bad_request', 'A certificate fingerprint is its SHA-256: 64 hex digits (colons allowed).');
  return hex;
}

/** What a certificate-bound principal's row stores in place of a token hash. */
export function certificateCredential(fingerprintHex: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`custos-client-certificate:${fingerprintHex}`, 'utf8').digest());
}

/**
 * A certificate name a principal can be bound to instead of one certificate's fingerprint, so
 * that a renewed certificate with the same name keeps working: `DNS:host`, `URI:spiffe://…`,
 * `email:addr`, `IP:addr` (subjectAltName entries) or `CN=name` (the subject's common name).
 * The CA of [api] client_ca then decides who holds the name: bind names only under a CA you run.
 */
export function normalizeCertificateName(name: string): string {
  const m = /^(DNS|URI|email|IP):(.{1,255})$/i.exec(name) ?? /^(CN)=(.{1,255})$/.exec(name);
  if (!m || /[\x00-\x1f,"\\]/.test(m[2]!)) throw new CustosError('bad_request', 'A certificate name is DNS:host, URI:uri, email:address, IP:address or CN=name (no commas, quotes or control characters).');
  const kind = m[1]!.toUpperCase() === 'EMAIL' ? 'email' : m[1]!.toUpperCase();
  return kind === 'DNS' ? `DNS:${m[2]!.toLowerCase()}` : kind === 'CN' ? `CN=${m[2]}` : `${kind}:${m[2]}`;
}

/** What a principal bound to a certificate name stores in place of a token hash. */
export function certificateNameCredential(name: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`custos-client-certificate-name:${name}`, 'utf8').digest());
}

/**
 * The names a client certificate carries, as `normalizeCertificateName` writes them: its
 * subjectAltName entries (as Node renders them) and its subject's CN. Entries Node had to
 * quote (odd characters) are left out rather than parsed.
 */
export function certificateNames(subjectAltName: string | undefined, subject: string | undefined): string[] {
  const names: string[] = [];
  for (const part of (subjectAltName ?? '').split(', ')) {
    const m = /^(DNS|URI|email|IP Address):([^"\\,]+)$/.exec(part);
    if (!m) continue;
    try {
      names.push(normalizeCertificateName(`${m[1] === 'IP Address' ? 'IP' : m[1]}:${m[2]}`));
    } catch {
      // Not a name a principal could be bound to.
    }
  }
  const cn = /^CN=([^\n\\,"]+)$/m.exec(subject ?? '');
  if (cn) names.push(`CN=${cn[1]}`);
  return names.slice(0, 16);
}

/** A principal name: told apart in approvals and the audit log. */
export const PRINCIPAL_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** `100/s`, `600/min`, `10000/h`: requests per period. */
export interface RateLimit {
  requests: number;
  perSeconds: number;
}

export function parseRateLimit(s: string): RateLimit {
  const m = /^([1-9][0-9]{0,6})\/(s|min|h)$/.exec(s);
  if (!m) throw new CustosError('bad_request', `"${s.slice(0, 32)}" is not a rate limit: write N/s, N/min or N/h (N from 1 to 9999999).`);
  return { requests: Number(m[1]), perSeconds: { s: 1, min: 60, h: 3600 }[m[2] as 's' | 'min' | 'h'] };
}

/** An expiry given as an ISO time or a duration from now (`90d`, `12h`, `30m`), checked to be in the future. */
export function parseExpiry(s: string, now = Date.now()): string {
  const d = /^([1-9][0-9]{0,5})(m|h|d)$/.exec(s);
  const at = d ? now + Number(d[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[d[2] as 'm' | 'h' | 'd'] : /^\d{4}-\d{2}-\d{2}T/.test(s) ? Date.parse(s) : NaN;
  if (!Number.isFinite(at)) throw new CustosError('bad_request', `"${s.slice(0, 40)}" is not an expiry: give an ISO time (2027-01-31T00:00:00Z) or a duration (30m, 12h, 90d).`);
  if (at <= now) throw new CustosError('bad_request', `The expiry ${new Date(at).toISOString()} is in the past.`);
  return new Date(at).toISOString();
}
