/**
 * Who is asking: a bearer token or a client certificate becomes a principal with its role and
 * scope, or the request is refused.
 *
 * - Freshness: a principal found is remembered only while the token rows are unchanged
 *   (`Store.tokensVersion`, one indexed read per request), so a revocation, rotation or scope
 *   change made by any process sharing the database holds from the very next request.
 * - No oracle: a token is looked up by its hash alone, so an unknown token and a wrong one take
 *   the same path and get the same answer.
 * - Failures are throttled per source address: after `maxFailures` within `windowSeconds`, a
 *   failed attempt from it gets 429 and is no longer recorded one by one (the audit log cannot
 *   be flooded), until the window has room. A valid credential from that address still works:
 *   a client sharing an address (a NAT, a proxy) with a guesser is not locked out, and with
 *   256-bit tokens there is nothing to guess. Each recorded failure goes to `onFailure`, which
 *   the vault audits.
 * - A principal with a rate limit gets 429 beyond it (per process: each node counts its own).
 */
import { CustosError } from '../core/errors.js';
import { equalBytes } from '../core/bytes.js';
import type { KeyRecord, Principal } from '../core/types.js';
import type { ApiToken, Store } from '../store/store.js';
import { certificateCredential, certificateNameCredential, hashToken, parseRateLimit, type RateLimit } from './credentials.js';
import { keyInScope, permits, scopeFor, type Operation } from './principals.js';
import { granted } from './grants.js';

/** What the TLS layer says of the client's certificate (mutual TLS), when one was asked for. */
export interface PeerCertificate {
  /** The chain verified against [api] client_ca, and the certificate is valid now. */
  authorized: boolean;
  /** OpenSSL's reason when not authorized (CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE…). */
  error?: string;
  /** SHA-256 of the leaf's DER, 64 lowercase hex digits. */
  fingerprint: string;
  /** Its names (certificateNames): a principal may be bound to one instead of the fingerprint. */
  names?: string[];
}

export interface Credentials {
  /** The bearer token, when one was sent. */
  token?: string;
  /** The client certificate, looked at only when no token was sent. */
  certificate?: PeerCertificate;
  /** The source address, for throttling and the record. */
  remote: string;
  /** The request's id, for the audit entry of a refusal. */
  requestId?: string;
}

/** A refused attempt, for the audit log: never the token itself. */
export interface AuthFailure {
  remote: string;
  /** unauthorized (unknown), revoked, expired, certificate, throttled. */
  reason: string;
  /** The principal a revoked or expired credential belonged to. */
  principal?: string;
  /** Failures from this address within the window, this one included. */
  failures: number;
  requestId?: string;
}

export interface AuthenticatorOptions {
  /** Failed attempts allowed per source address within the window before 429. */
  maxFailures?: number;
  windowSeconds?: number;
  /** Awaited (the audit entry), so every refused attempt costs the same; its errors are swallowed. */
  onFailure?: (f: AuthFailure) => Promise<void> | void;
  now?: () => number;
}

interface Remembered {
  token: ApiToken;
  principal: Principal;
  version: string;
  expiresAt: number;
  rate: RateLimit | null;
}

const MAX_REMEMBERED = 4096;

export class Authenticator {
  private readonly remembered = new Map<string, Remembered>();
  private readonly failures = new Map<string, number[]>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly maxFailures: number;
  /** The token rows' version last read in full, and the highest write sequence seen in it. */
  private lastVersion = '';
  private highestWrite = 0;
  private readonly windowMs: number;
  private readonly now: () => number;

  constructor(
    private readonly store: Store,
    private readonly opts: AuthenticatorOptions = {},
  ) {
    this.maxFailures = opts.maxFailures ?? 20;
    this.windowMs = (opts.windowSeconds ?? 60) * 1000;
    this.now = opts.now ?? Date.now;
  }

  /** Seconds until `remote` may try again, or 0 when it is not throttled. */
  retryAfterSeconds(remote: string): number {
    return this.waitFor(sourceOf(remote));
  }

  private waitFor(source: string): number {
    const recent = this.recentFailures(source);
    if (recent.length < this.maxFailures) return 0;
    return Math.max(1, Math.ceil((recent[0]! + this.windowMs - this.now()) / 1000));
  }

  async authenticate(given: Credentials): Promise<Principal> {
    // IPv6 clients are counted by /64: one host holds a whole /64 and could rotate through it.
    // The record keeps the address itself.
    const c = { ...given, remote: sourceOf(given.remote), address: given.remote };
    let hash: Uint8Array;
    let kind: 'token' | 'cert';
    if (c.token !== undefined) {
      if (!/^[A-Za-z0-9_-]{16,200}$/.test(c.token)) return this.fail(c, 'unauthorized', 'Send the API token as "Authorization: Bearer <token>" (the admin token is printed by `custos init`).');
      hash = hashToken(c.token);
      kind = 'token';
    } else if (c.certificate) {
      if (!c.certificate.authorized) {
        return this.fail(c, 'certificate', `The client certificate was refused (${c.certificate.error ?? 'not verified'}): it must chain to [api] client_ca and be valid now.`);
      }
      hash = certificateCredential(c.certificate.fingerprint);
      kind = 'cert';
    } else {
      throw new CustosError('unauthorized', 'Send the API token as "Authorization: Bearer <token>" (the admin token is printed by `custos init`), or a client certificate bound to a principal.');
    }
    let r = await this.lookup(hash, kind);
    if (!r && kind === 'cert' && c.certificate!.names?.length) r = await this.byName(c, c.certificate!.names);
    if (!r) {
      return this.fail(
        c,
        'unauthorized',
        kind === 'token' ? 'The API token is not valid for this vault.' : `The client certificate ${c.certificate!.fingerprint} is bound to no principal (custos tokens create --certificate binds one).`,
      );
    }
    const now = this.now();
    if (r.token.terms.revoked_at !== undefined) return this.fail(c, 'revoked', `The credential of ${r.principal.id} was revoked at ${r.token.terms.revoked_at}.`, r.principal.id);
    if (r.expiresAt <= now) return this.fail(c, 'expired', `The credential of ${r.principal.id} expired at ${r.token.terms.expires_at}; an admin can rotate it or make a new one.`, r.principal.id);
    if (r.rate && !this.take(r.principal.id, r.rate, now)) {
      throw new CustosError('rate_limited', `${r.principal.id} is limited to ${r.token.terms.rate_limit}; slow down.`, { tag: 'principal' });
    }
    return r.principal;
  }

  /**
   * Whether an API principal authenticated earlier still holds for `op` on `key`: its row not
   * revoked, not expired, and its current scope allowing it. Internal principals always hold.
   * A credential rotated meanwhile does not hold: rotation is how a leaked token is cut off.
   */
  async recheck(p: Principal, op: Operation, key: KeyRecord): Promise<CustosError | null> {
    // Only principals this authenticator made carry their row's id; the system's do not.
    const credential = p.credential;
    if (credential === undefined) return null;
    const row = await this.store.findTokenBy({ id: credential.split('/')[0]! });
    if (!row) return new CustosError('unauthorized', `${p.id} no longer exists.`);
    if (row.terms.revoked_at !== undefined) return new CustosError('unauthorized', `${p.id} was revoked at ${row.terms.revoked_at}, while this request waited.`, { tag: 'revoked' });
    // Rotated: the credential this request came with is no longer the principal's (a leaked
    // token is rotated to cut it off, requests already waiting included).
    if (credentialOf(row) !== credential) return new CustosError('unauthorized', `${p.id} was given a new credential while this request waited; the old one no longer counts.`, { tag: 'rotated' });
    const r = this.remember(row, p.id.startsWith('cert:') ? 'cert' : 'token', '');
    if (r.expiresAt <= this.now()) return new CustosError('unauthorized', `${p.id} expired at ${row.terms.expires_at}, while this request waited.`, { tag: 'expired' });
    // In scope by its own globs and tags, or by an account's grant (read again: one revoked or
    // expired while the request waited no longer holds).
    if (!permits(r.principal, op) || !(keyInScope(r.principal, key) || (await granted(this.store, r.principal, op, key)))) return new CustosError('forbidden', `${p.id} may no longer ${op} with ${key.label}: its scope changed while this request waited.`, { tag: 'scope' });
    return null;
  }

  /**
   * A certificate bound by none of its fingerprint but by one of its names. Two principals
   * bound to two of its names is an ambiguity an admin made: refused, not guessed.
   */
  private async byName(c: Credentials, names: string[]): Promise<Remembered | null> {
    const found: Remembered[] = [];
    for (const n of names) {
      const r = await this.lookup(certificateNameCredential(n), 'cert');
      if (r && !found.some((x) => x.token.id === r.token.id)) found.push(r);
    }
    if (found.length > 1) {
      return this.fail(c, 'certificate', `The client certificate's names are bound to several principals (${found.map((f) => f.principal.id).join(', ')}); an admin must bind only one.`);
    }
    return found[0] ?? null;
  }

  /** The principal a credential hash belongs to, fresh as of this request. */
  private async lookup(hash: Uint8Array, kind: 'token' | 'cert'): Promise<Remembered | null> {
    const version = await this.store.tokensVersion();
    if (version !== this.lastVersion) {
      // Token rows are never deleted and every write raises the highest write sequence, so it
      // never goes down: if it did, rows were put back outside Custos (an un-revocation).
      const top = Number(version.split('/')[0]);
      if (top < this.highestWrite) {
        throw new CustosError('database_corrupt', 'The API token rows are older than ones this process has already read: they were put back outside Custos, so no token is accepted. Run `custos audit verify`, then restore the database from a backup.', { tag: 'row_replayed' });
      }
      // Read the rows written since the last read (by the wseq index), so that each row's newest
      // version is known here and an older copy put back later is refused by its write
      // sequence (the store remembers them). A forged or edited row is left out (and refused
      // when it is presented), so its write sequence never moves the mark.
      for (const r of await this.store.tokensWrittenAfter(this.highestWrite)) this.highestWrite = Math.max(this.highestWrite, r.wseq);
      this.lastVersion = version;
    }
    const key = Buffer.from(hash).toString('base64');
    const hit = this.remembered.get(key);
    if (hit && hit.version === version) return hit;
    this.remembered.delete(key);
    const token = await this.store.findToken(hash);
    if (!token || !equalBytes(token.hash, hash)) return null;
    const r = this.remember(token, kind, version);
    if (this.remembered.size >= MAX_REMEMBERED) this.remembered.clear();
    this.remembered.set(key, r);
    return r;
  }

  private remember(token: ApiToken, kind: 'token' | 'cert', version: string): Remembered {
    const id = `${kind}:${token.name}`;
    let principal: Principal;
    try {
      principal = token.role === 'admin' ? { id, kind: 'admin', role: 'admin', credential: credentialOf(token) } : { id, kind: 'token', role: token.role, scope: token.terms.scope ?? scopeFor(token.role), credential: credentialOf(token) };
    } catch {
      // A role this version does not know (written by a newer Custos): nothing is allowed.
      principal = { id, kind: 'token', role: token.role, scope: { operations: [], keys: [], tags: [] }, credential: credentialOf(token) };
    }
    const exp = token.terms.expires_at === undefined ? Infinity : Date.parse(token.terms.expires_at);
    let rate: RateLimit | null = null;
    try {
      rate = token.terms.rate_limit ? parseRateLimit(token.terms.rate_limit) : null;
    } catch {
      rate = { requests: 1, perSeconds: 3600 };
    }
    return { token, principal, version, expiresAt: Number.isNaN(exp) ? -Infinity : exp, rate };
  }

  /** A token bucket per principal: `requests` per `perSeconds`, bursts up to `requests`. */
  private take(id: string, rate: RateLimit, now: number): boolean {
    const b = this.buckets.get(id) ?? { tokens: rate.requests, at: now };
    b.tokens = Math.min(rate.requests, b.tokens + ((now - b.at) / 1000) * (rate.requests / rate.perSeconds));
    b.at = now;
    if (this.buckets.size > MAX_REMEMBERED) this.buckets.clear();
    this.buckets.set(id, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private recentFailures(remote: string): number[] {
    const list = this.failures.get(remote);
    if (!list) return [];
    const since = this.now() - this.windowMs;
    while (list.length > 0 && list[0]! <= since) list.shift();
    if (list.length === 0) this.failures.delete(remote);
    return list;
  }

  private async fail(c: Credentials & { address?: string }, reason: string, message: string, principal?: string): Promise<never> {
    const remote = c.remote;
    const wait = this.waitFor(remote);
    if (wait > 0) {
      throw new CustosError('rate_limited', `Too many failed authentications from ${remote} (${this.maxFailures} in ${this.windowMs / 1000} s): this one was refused and not recorded. Retry in ${wait} s with a valid credential.`, { tag: 'authentication' });
    }
    const list = this.recentFailures(remote);
    list.push(this.now());
    if (list.length === 1) {
      // Bounded: an address flood evicts the oldest entries, never everyone's at once.
      if (this.failures.size >= 65_536) this.failures.delete(this.failures.keys().next().value!);
      this.failures.set(remote, list);
    }
    try {
      await this.opts.onFailure?.({ remote: c.address ?? remote, reason, ...(principal ? { principal } : {}), failures: list.length, ...(c.requestId ? { requestId: c.requestId } : {}) });
    } catch {
      // The refusal stands whether or not it could be recorded.
    }
    throw new CustosError('unauthorized', message, reason === 'unauthorized' ? undefined : { tag: reason });
  }
}

/** The unit failures are counted by: an IPv4 address, or an IPv6 address's /64. */
export function sourceOf(remote: string): string {
  const v4 = /^(?:::ffff:)?(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(remote);
  if (v4) return v4[1]!;
  if (!remote.includes(':')) return remote;
  // Expand :: to the missing zero groups, then keep the first four.
  const [head, tail] = remote.split('%')[0]!.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/** The row and the credential a principal was authenticated by: `<row id>/<first 16 hex of its hash>`. */
function credentialOf(t: ApiToken): string {
  return `${t.id}/${Buffer.from(t.hash).subarray(0, 8).toString('hex')}`;
}
