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

const CACHE_MS = 30_000;

export class TokenAuthenticator {
  private readonly cache = new Map<string, { principal: Principal; until: number }>();

  constructor(private readonly store: Store) {}

  async authenticate(header: string | undefined): Promise<Principal> {
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
}
