/**
 * How refused unseal attempts are limited (apart from the gate in unseal.ts, so that reading
 * a configuration file does not load the vault). Shares cannot be guessed (33 random bytes,
 * checked against commitments), so the limits are not about guessing: they bound what a flood
 * of refused attempts costs (a log line, an audit entry and an fsync each), and they must
 * never let a bystander lock the operators out. Hence: the delay is capped and forgotten at
 * the next valid share; the window only counts failures that were actually checked (an
 * attempt answered 429 is not), so it always empties `windowSeconds` after the last checked
 * failure; and nothing here ever touches the shares given so far.
 */
export interface UnsealLimits {
  /** After the n-th consecutive failure the next attempt waits until n × this long after it... */
  delayPerFailureMs: number;
  /** ...but never longer than this. */
  maxDelayMs: number;
  /** More than this many failures within `windowSeconds`: attempts get 429 until the oldest ages out. */
  maxFailures: number;
  windowSeconds: number;
}

export const DEFAULT_UNSEAL_LIMITS: UnsealLimits = { delayPerFailureMs: 100, maxDelayMs: 10_000, maxFailures: 10, windowSeconds: 60 };
