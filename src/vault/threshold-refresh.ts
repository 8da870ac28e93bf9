/**
 * A refresh of a threshold key set as a cosigner's share records it (cluster/refresh.ts drives
 * it between cosigners): the attributes a share carries while it is retired, decided, applied
 * or aborted, and the new key set a retiring share waits for (and, for a resume, which refresh).
 */
import { CustosError } from '../core/errors.js';
import type { KeyRecord } from '../core/types.js';
import { checkMembers, decodePublic, thresholdOf, type FrostPublic, type ThresholdAlgorithm } from '../crypto/frost.js';

/** The attribute of a share retired by a refresh in progress (its session id). */
export const RETIRING = 'threshold.retiring';
/** While retiring: the new key set agreed at finish (public package and members), its share sealed beside the old one. */
export const NEXT = 'threshold.next';
/** The last refresh applied to this share (so applying it again is a no-op, and a resume finds it). */
export const APPLIED = 'threshold.applied';
/**
 * What was decided for the retiring refresh, here: `commit` or `abort`, and never changed. A
 * share is applied only once every holder has `commit`, and given back once its own holder
 * has `abort`; the refresh's arbiter records it first (cluster/refresh.ts), and others follow.
 */
export const DECISION = 'threshold.decision';
/**
 * The last refresh aborted here: its old share given back, or (never retired by it) an abort
 * recorded before this node finished, so that a late finish cannot retire it after the abort.
 */
export const ABORTED = 'threshold.aborted';

/** The new key set a retiring share waits for. */
export function nextOf(alg: ThresholdAlgorithm, key: KeyRecord): { pub: FrostPublic; members: Record<string, string>; arbiter: string | undefined } {
  const text = key.attributes[NEXT];
  if (typeof text !== 'string') throw new CustosError('key_record_corrupt', `${key.label} is retiring without a new key set.`);
  const o = JSON.parse(text) as { public: unknown; members: unknown; arbiter?: unknown };
  const members = checkMembers(alg, o.members);
  // A record from before arbiters has none: its refresh ends as it would have then.
  const arbiter = typeof o.arbiter === 'string' && members[o.arbiter] !== undefined ? o.arbiter : undefined;
  return { pub: decodePublic(alg, JSON.stringify(o.public)), members, arbiter };
}

/** The refresh a retiring share waits for, and the members of its new key set (for a resume). */
export function pendingRefresh(key: KeyRecord): { session: string; members: string[]; arbiter: string | undefined } | null {
  const session = key.attributes[RETIRING] ?? key.attributes[APPLIED];
  if (typeof session !== 'string') return null;
  const t = thresholdOf(key)!;
  if (key.attributes[RETIRING] === undefined) return { session, members: Object.keys(t.members), arbiter: undefined };
  const next = nextOf(t.algorithm, key);
  return { session, members: Object.keys(next.members), arbiter: next.arbiter };
}
