/**
 * The CometBFT version lines a `[[privval]]` entry can speak: v0.34 and v0.37 (no vote
 * extensions), v0.38 (also v0.39/v0.40: `tendermint.privval`, extensions signed) and v1
 * (`cometbft.privval.v1`). Here, not in the daemon, so that the CLI can name them cheaply.
 */
export const PRIVVAL_VERSIONS = ['v0.34', 'v0.37', 'v0.38', 'v1'] as const;
export type PrivvalVersion = (typeof PRIVVAL_VERSIONS)[number];
