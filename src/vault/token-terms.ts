/**
 * A principal's terms (its scope, expiry, rate limit and bound certificate): as an admin asks
 * for them, as they are stored, as the audit log records them, and as the API shows a principal.
 */
import type { PrincipalView, Role, Scope } from '../core/types.js';
import type { ApiToken, TokenTerms } from '../store/store.js';
import { parseExpiry, parseRateLimit } from '../accounts/credentials.js';
import { OPERATIONS, scopeFor } from '../accounts/principals.js';

/** A principal as the API shows it (core/types.ts: the SDK's type too). */
export type TokenView = PrincipalView;

const isPast = (at: string | undefined): boolean => at !== undefined && !(Date.parse(at) > Date.now());

/** What an admin asks for when making or changing a principal. */
export interface PrincipalRequest {
  name: string;
  role: Role;
  operations?: string[];
  keys?: string[];
  tags?: string[];
  /** ISO time or a duration from now (`90d`); null clears it on a change. */
  expiresAt?: string | null;
  /** `N/s`, `N/min`, `N/h`; null clears it on a change. */
  rateLimit?: string | null;
  /** Binds a client certificate (mutual TLS) instead of making a token. */
  certificateSha256?: string;
  /** Binds any client certificate carrying this name (`DNS:…`, `URI:…`, `CN=…`) from the client CA. */
  certificateName?: string;
}

export function termsOf(req: PrincipalRequest, fp: string | undefined): TokenTerms {
  const terms: TokenTerms = {};
  // Checked for every role (an admin given a scope is refused); stored for all but admins.
  const scope = scopeFor(req.role, { ...(req.operations ? { operations: req.operations } : {}), ...(req.keys ? { keys: req.keys } : {}), ...(req.tags ? { tags: req.tags } : {}) });
  if (req.role !== 'admin') terms.scope = scope;
  if (req.expiresAt) terms.expires_at = parseExpiry(req.expiresAt);
  if (req.rateLimit) {
    parseRateLimit(req.rateLimit);
    terms.rate_limit = req.rateLimit;
  }
  if (fp) terms.certificate_sha256 = fp;
  return terms;
}

export function termsDetails(t: TokenTerms): Record<string, string> {
  return {
    ...(t.scope ? { operations: t.scope.operations.join(','), keys: t.scope.keys.join(','), tags: t.scope.tags.join(',') } : {}),
    ...(t.expires_at ? { expires_at: t.expires_at } : {}),
    ...(t.rate_limit ? { rate_limit: t.rate_limit } : {}),
    ...(t.certificate_sha256 ? { certificate_sha256: t.certificate_sha256 } : {}),
    ...(t.certificate_name ? { certificate_name: t.certificate_name } : {}),
    ...(t.revoked_at ? { revoked_at: t.revoked_at } : {}),
  };
}

export function tokenView(t: ApiToken): TokenView {
  let scope: Scope;
  try {
    scope = t.terms.scope ?? (t.role === 'admin' ? { operations: [...OPERATIONS], keys: [], tags: [] } : scopeFor(t.role));
  } catch {
    scope = { operations: [], keys: [], tags: [] };
  }
  return {
    id: t.id,
    name: t.name,
    principal: `${t.terms.certificate_sha256 !== undefined || t.id.startsWith('crt_') ? 'cert' : 'token'}:${t.name}`,
    role: t.role,
    operations: scope.operations,
    keys: scope.keys,
    tags: scope.tags,
    expires_at: t.terms.expires_at ?? null,
    rate_limit: t.terms.rate_limit ?? null,
    certificate_sha256: t.terms.certificate_sha256 ?? null,
    certificate_name: t.terms.certificate_name ?? null,
    state: t.terms.revoked_at !== undefined ? 'revoked' : isPast(t.terms.expires_at) ? 'expired' : 'active',
    revoked_at: t.terms.revoked_at ?? null,
    rotated_at: t.terms.rotated_at ?? null,
    created_at: t.createdAt,
  };
}
