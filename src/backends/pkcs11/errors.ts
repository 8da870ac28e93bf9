/**
 * What a PKCS#11 return value means for Custos: the token is gone (fail closed and recover),
 * the PIN was refused (an operator must act), or this one request failed.
 */
import pkcs11js from 'pkcs11js';
import { CustosError } from '../../core/errors.js';

/** The CK_RV of a pkcs11js error, or null for anything else (a TypeError, a timeout). */
export function ckrOf(e: unknown): number | null {
  if (e instanceof pkcs11js.Pkcs11Error || (e instanceof Error && e.name === 'Pkcs11Error')) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'number' ? code : null;
  }
  return null;
}

/** The CKR_ name of a return value, for operator messages (never carries a secret). */
export function ckrName(rv: number): string {
  for (const [k, v] of Object.entries(pkcs11js)) {
    if (k.startsWith('CKR_') && v === rv) return k;
  }
  return `CKR 0x${rv.toString(16)}`;
}

/**
 * Return values after which no session of this application can be trusted: the token or
 * module is gone, or its state (login, sessions) was lost underneath us. CKR_GENERAL_ERROR is
 * here because SoftHSM2 answers it for every call once its token directory has disappeared.
 */
const LOSS = new Set<number>([
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_DEVICE_MEMORY,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11js.CKR_SLOT_ID_INVALID,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
  pkcs11js.CKR_GENERAL_ERROR,
  pkcs11js.CKR_FUNCTION_FAILED,
]);

export function isTokenLoss(e: unknown): boolean {
  const rv = ckrOf(e);
  return rv !== null && LOSS.has(rv);
}

/** Maps a refused C_Login to `hsm_login_failed` with a tag; null when it was not about the PIN. */
export function loginError(e: unknown, tokenName: string): CustosError | null {
  const rv = ckrOf(e);
  const say = (tag: string, sentence: string) => new CustosError('hsm_login_failed', sentence, { tag });
  switch (rv) {
    case pkcs11js.CKR_PIN_INCORRECT:
      return say('pin_incorrect', `The token ${tokenName} refused the PIN. Check the configured PIN; repeated wrong PINs can lock the token, so Custos does not retry it by itself.`);
    case pkcs11js.CKR_PIN_LOCKED:
      return say('pin_locked', `The user PIN of token ${tokenName} is locked. The security officer must unlock or reset it before Custos can log in.`);
    case pkcs11js.CKR_PIN_EXPIRED:
      return say('pin_expired', `The user PIN of token ${tokenName} has expired. Set a new PIN on the token and update the configuration.`);
    case pkcs11js.CKR_PIN_INVALID:
    case pkcs11js.CKR_PIN_LEN_RANGE:
      return say('pin_invalid', `The token ${tokenName} rejects the PIN's form or length. Check the configured PIN.`);
    case pkcs11js.CKR_USER_PIN_NOT_INITIALIZED:
      return say('pin_not_initialized', `Token ${tokenName} has no user PIN yet. Initialise the user PIN (softhsm2-util --init-token, or the vendor tool) first.`);
    default:
      return null;
  }
}

/** A request-level failure the token reported (not a loss of the token). */
export function operationError(e: unknown, what: string): CustosError {
  if (e instanceof CustosError) return e;
  const rv = ckrOf(e);
  if (rv === null) return new CustosError('internal', `The PKCS#11 call for ${what} failed unexpectedly.`, { cause: e });
  return new CustosError('internal', `The token refused ${what} (${ckrName(rv)}).`, { cause: e });
}
