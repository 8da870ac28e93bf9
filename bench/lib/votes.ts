/**
 * The consensus votes the privval benchmarks sign: a prevote (step 2) or precommit (step 3) at
 * a height, round 0, for one fixed block, its timestamp moving with the height.
 */
import { voteSignBytes } from '../../src/frontends/privval/sign-bytes.js';

export const BENCH_BLOCK_ID = { hash: new Uint8Array(32).fill(7), partSetHeader: { total: 1, hash: new Uint8Array(32).fill(8) } };

export const benchVoteTimestamp = (height: bigint) => ({ seconds: 1_700_000_000n + height, nanos: 0 });

/** The sign bytes of the bench vote at (height, step) on `chainId`. */
export function benchVoteBytes(chainId: string, height: bigint, step: 2 | 3): Uint8Array {
  return voteSignBytes(chainId, { type: step === 2 ? 'prevote' : 'precommit', height, round: 0, blockId: BENCH_BLOCK_ID, timestamp: benchVoteTimestamp(height) });
}
