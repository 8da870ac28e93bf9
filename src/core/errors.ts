/**
 * Typed errors with a stable machine code and a human sentence. The CLI prints the
 * sentence, the HTTP API returns both, and tests match on the code.
 */

export type ErrorCode =
  | 'bad_request'
  | 'invalid_key_material'
  | 'invalid_digest'
  | 'digest_not_supported'
  | 'unsupported_algorithm'
  | 'unsupported_option'
  | 'key_not_found'
  | 'key_destroyed'
  | 'key_expired'
  | 'key_disabled'
  | 'key_not_exportable'
  | 'label_taken'
  | 'invalid_label'
  | 'unauthorized'
  | 'forbidden'
  | 'policy_denied'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'not_found'
  | 'audit_unavailable'
  | 'storage_unavailable'
  | 'key_record_corrupt'
  | 'wrong_passphrase'
  | 'vault_sealed'
  | 'vault_exists'
  | 'vault_not_found'
  | 'database_corrupt'
  | 'config_invalid'
  /** The PKCS#11 token is absent, its module failed or hung, or its session was lost. */
  | 'hsm_unavailable'
  /** The token refused the PIN (wrong, locked or expired); the tag says which. */
  | 'hsm_login_failed'
  /** An operator share is malformed, from another vault, or does not combine. */
  | 'invalid_share'
  | 'invalid_psbt'
  | 'invalid_policy'
  | 'invalid_derivation_path'
  /** The key's purpose (fixed at creation) does not allow this use: a consensus key asked for raw bytes. */
  | 'key_purpose'
  /** The database is older or shorter than the signed audit anchor kept beside it. */
  | 'database_rolled_back'
  /** Too many failed attempts (unseal shares, unlock passphrases): wait and retry. */
  | 'rate_limited'
  /** The request contradicts the current state (revoking the last admin, changing a revoked principal). */
  | 'conflict'
  /** Fewer cosigners of a threshold key answered than its threshold needs. */
  | 'cosigners_unavailable'
  /** A cosigner's signature share did not verify; the tag is the cosigner. */
  | 'bad_share'
  /** A threshold signing round this node does not know (its nonces expired, were used, or died with a restart). */
  | 'threshold_round'
  | 'internal';

/** HTTP status for each code, so every front end maps errors the same way. */
export const httpStatusOf: Record<ErrorCode, number> = {
  bad_request: 400,
  invalid_key_material: 400,
  invalid_digest: 400,
  digest_not_supported: 400,
  unsupported_algorithm: 400,
  unsupported_option: 400,
  key_not_found: 404,
  key_destroyed: 410,
  key_expired: 410,
  key_disabled: 409,
  key_not_exportable: 403,
  label_taken: 409,
  invalid_label: 400,
  unauthorized: 401,
  forbidden: 403,
  policy_denied: 403,
  payload_too_large: 413,
  unsupported_media_type: 415,
  not_found: 404,
  audit_unavailable: 503,
  storage_unavailable: 503,
  key_record_corrupt: 500,
  wrong_passphrase: 401,
  vault_sealed: 503,
  vault_exists: 409,
  vault_not_found: 404,
  database_corrupt: 500,
  config_invalid: 400,
  hsm_unavailable: 503,
  hsm_login_failed: 503,
  invalid_share: 400,
  invalid_psbt: 400,
  invalid_policy: 400,
  invalid_derivation_path: 400,
  key_purpose: 403,
  database_rolled_back: 500,
  rate_limited: 429,
  conflict: 409,
  cosigners_unavailable: 503,
  bad_share: 502,
  threshold_round: 409,
  internal: 500,
};

export class CustosError extends Error {
  readonly code: ErrorCode;
  /** A refinement of the code, such as the policy rule tag in `policy_denied:double_sign`. */
  readonly tag: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { tag?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CustosError';
    this.code = code;
    this.tag = options?.tag;
  }

  /** The stable code as shown to clients: `policy_denied:velocity`, `key_not_found`. */
  get fullCode(): string {
    return this.tag ? `${this.code}:${this.tag}` : this.code;
  }

  get httpStatus(): number {
    return httpStatusOf[this.code];
  }
}

const AUDITED = Symbol('custos.audited');

/**
 * Marks an error whose refusal is already in the audit log (the vault audits what it
 * refuses), so that a front end records only the refusals it decided itself.
 */
export function markAudited<E extends CustosError>(e: E): E {
  (e as unknown as Record<symbol, boolean>)[AUDITED] = true;
  return e;
}

export function isAudited(e: unknown): boolean {
  return e instanceof CustosError && (e as unknown as Record<symbol, boolean>)[AUDITED] === true;
}

export function isCustosError(e: unknown): e is CustosError {
  return e instanceof CustosError;
}
