/**
 * A cosigner's signing rounds (vault/threshold.ts keeps them): how long round one's nonces wait
 * for round two and how many a coordinator may hold open, what an open round keeps, what a
 * cosigner may be asked to sign, and the check of a round's commitment list before it signs.
 */
import { CustosError } from '../core/errors.js';
import { equalBytes } from '../core/bytes.js';
import type { NonceCommitments, Nonces, ThresholdKey } from '../crypto/frost.js';

/** How long nonces wait for round two, and how many rounds each coordinator may have open at once. */
export const ROUND_TTL_MS = 10_000;
export const MAX_OPEN_ROUNDS = 1024;

export interface OpenRound {
  /** The coordinator that opened it: each has its own allowance of open rounds. */
  by: string;
  keyId: string;
  version: number;
  nonces: Nonces;
  commitments: NonceCommitments;
  expires: number;
}

/** What a cosigner is asked to sign: it checks the bytes are that. */
export type CosignKind = 'raw' | 'consensus' | 'vote_extension';

/**
 * A round's commitment list, checked by each cosigner before it signs: its own entry exactly
 * as it issued it, at least the threshold and only members of the key set, none twice.
 */
export function checkRound(t: ThresholdKey, mine: NonceCommitments, list: NonceCommitments[]): void {
  const ids = list.map((c) => c.identifier);
  if (new Set(ids).size !== ids.length) throw new CustosError('bad_request', 'A cosigner appears twice in the round.');
  if (list.length < t.pub.signers.min || list.length > t.pub.signers.max) throw new CustosError('bad_request', `A round has ${t.pub.signers.min} to ${t.pub.signers.max} cosigners.`);
  if (ids.some((id) => t.pub.verifyingShares[id] === undefined)) throw new CustosError('bad_request', 'The round names a cosigner outside the key set.');
  const own = list.find((c) => c.identifier === t.identifier);
  if (!own || !equalBytes(own.hiding, mine.hiding) || !equalBytes(own.binding, mine.binding)) {
    throw new CustosError('bad_request', "The round does not carry this cosigner's commitments as it issued them.");
  }
}
