/** Exit codes scripts can rely on (documented in the README). */
import type { ErrorCode } from '../core/errors.js';

export const EXIT = {
  ok: 0,
  /** A check failed: invalid signature, broken audit chain. */
  checkFailed: 1,
  /** Authentication failed: wrong passphrase, bad or missing API token. */
  auth: 2,
  /** Not found: no vault, no such key. */
  notFound: 3,
  /** Refused: policy denial, disabled/destroyed/non-exportable key, label taken, vault exists. */
  refused: 4,
  /** Unavailable: server unreachable, storage or audit failure, corrupt database. */
  unavailable: 5,
  /** Usage: bad flags, bad input, bad configuration (sysexits EX_USAGE). */
  usage: 64,
} as const;

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'wrong_passphrase':
    case 'unauthorized':
      return EXIT.auth;
    case 'vault_not_found':
    case 'key_not_found':
    case 'not_found':
      return EXIT.notFound;
    case 'forbidden':
    case 'policy_denied':
    case 'key_destroyed':
    case 'key_expired':
    case 'key_disabled':
    case 'key_not_exportable':
    case 'label_taken':
    case 'vault_exists':
    case 'key_purpose':
    case 'rate_limited':
      return EXIT.refused;
    case 'audit_unavailable':
    case 'storage_unavailable':
    case 'database_corrupt':
    case 'database_rolled_back':
    case 'key_record_corrupt':
    case 'vault_sealed':
    case 'hsm_unavailable':
    case 'hsm_login_failed':
    case 'cosigners_unavailable':
    case 'bad_share':
    case 'threshold_round':
    case 'internal':
      return EXIT.unavailable;
    default:
      return EXIT.usage;
  }
}
