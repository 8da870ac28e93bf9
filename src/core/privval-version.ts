/**
 * The CometBFT version lines a `[[privval]]` entry can name: v0.34, v0.37 and v0.38 (also
 * v0.39/v0.40) speak `tendermint.privval`, v1 speaks `cometbft.privval.v1`. The first three
 * are served alike: the extension of a non-nil precommit is signed for all of them, because a
 * v0.34/v0.37 node skips Vote's unknown field 10 while a v0.38 node labelled v0.34 by mistake
 * would halt without it (CONSENSUS FAILURE). The label names the node in status and hints.
 * Here, not in the daemon, so that the CLI can name them cheaply.
 */
export const PRIVVAL_VERSIONS = ['v0.34', 'v0.37', 'v0.38', 'v1'] as const;
export type PrivvalVersion = (typeof PRIVVAL_VERSIONS)[number];
