/**
 * Moved to `crypto/cometbft/sign-bytes.ts`: the vault checks imported sign bytes against
 * it, and vault/ may import crypto/ but not a front end. Re-exported for existing imports.
 */
export * from '../../crypto/cometbft/sign-bytes.js';
