/**
 * Bearer-token authentication. Tokens carry 256 random bits, so a plain SHA-256 is the
 * right stored form (no salt or slow hash needed: they cannot be guessed); the lookup is by
 * hash, and the final comparison is constant-time. Successful lookups are cached briefly
 * so that a busy client does not cost a database read per request.
 */
import { CustosError } from '../../core/errors.js';
import { equalBytes } from '../../core/bytes.js';
import type { Principal } from '../../core/types.js';
import type { Store } from '../../store/store.js';
import { hashToken } from '../../vault/open.js';
import { certificateCredential } from '../../vault/admin.js';

/** What the TLS layer says of the client's certificate (mutual TLS), when one was asked for. */
export interface PeerCertificate {
  /** The chain verified against [api] client_ca, and the certificate is valid now. */
  authorized: boolean;
  /** OpenSSL's reason when not authorized (CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE…). */
  error?: string;
  /** SHA-256 of the leaf's DER, 64 lowercase hex digits. */
  fingerprint: string;
}

const CACHE_MS = 30_000;

export class TokenAuthenticator {
  private readonly cache = new Map<string, { principal: Principal; until: number }>();

  constructor(private readonly store: Store) {}

  /**
   * A bearer token, else a client certificate that chains to [api] client_ca and is bound to
   * a principal (`tokens create --certificate`). A certificate that chains but is bound to no
   * principal gets nothing.
   */
  async authenticate(header: string | undefined, peer?: PeerCertificate): Promise<Principal> {
    if (!header && peer) return this.byCertificate(peer);
    const m = header ? /^Bearer ([A-Za-z0-9_-]{16,200})$/.exec(header) : null;
    if (!m) throw new CustosError('unauthorized', 'Send the API token as "Authorization: Bearer <token>" (the admin token is printed by `custos init`).');
    const hash = hashToken(m[1]!);
    const cacheKey = Buffer.from(hash).toString('base64');
    const hit = this.cache.get(cacheKey);
    if (hit && hit.until > Date.now()) return hit.principal;
    const token = await this.store.findToken(hash);
    if (!token || !equalBytes(token.hash, hash)) throw new CustosError('unauthorized', 'The API token is not valid for this vault.');
    const principal: Principal = { id: `token:${token.name}`, kind: token.role === 'admin' ? 'admin' : 'token', role: token.role };
    if (this.cache.size > 1000) this.cache.clear();
    this.cache.set(cacheKey, { principal, until: Date.now() + CACHE_MS });
    return principal;
  }

  private async byCertificate(peer: PeerCertificate): Promise<Principal> {
    if (!peer.authorized) throw new CustosError('unauthorized', `The client certificate was refused (${peer.error ?? 'not verified'}): it must chain to [api] client_ca and be valid now.`);
    const hash = certificateCredential(peer.fingerprint);
    const cacheKey = `crt:${peer.fingerprint}`;
    const hit = this.cache.get(cacheKey);
    if (hit && hit.until > Date.now()) return hit.principal;
    const row = await this.store.findToken(hash);
    if (!row || !equalBytes(row.hash, hash)) throw new CustosError('unauthorized', `The client certificate ${peer.fingerprint} is bound to no principal (custos tokens create --certificate binds one).`);
    const principal: Principal = { id: `cert:${row.name}`, kind: row.role === 'admin' ? 'admin' : 'token', role: row.role };
    if (this.cache.size > 1000) this.cache.clear();
    this.cache.set(cacheKey, { principal, until: Date.now() + CACHE_MS });
    return principal;
  }
}
