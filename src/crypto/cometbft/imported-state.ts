/**
 * The check a double-sign state from another signer (CometBFT FilePV or Horcrux
 * `priv_validator_state.json`) must pass before the vault keeps its sign bytes and
 * signature. Pure: throws a `CustosError` saying which part is wrong, or returns.
 *
 * Why: at the same height/round/step the vault answers identical sign bytes with the stored
 * signature and refuses any other (FilePV semantics, privval/file.go `signVote`). A stored
 * pair that is not genuine would later be handed to the node as "the signature" (a random
 * 64 bytes, or one over another chain's vote), or would anchor the conflict check to a
 * message the key never signed at that position. So the pair must be what the key signed,
 * there: the sign bytes decode as a canonical vote or proposal whose chain ID, height, round
 * and step (proposal 1, prevote 2, precommit 3) are the imported state's, and the signature
 * verifies under the key over them — Ed25519 (RFC 8032), or secp256k1 as CometBFT signs
 * (crypto/secp256k1 `Sign`: ECDSA over SHA-256 of the sign bytes, 64-byte r‖s, low S).
 * A state without sign bytes and signature (a fresh validator, tmkms) is only a position and
 * needs no check.
 */
import { CustosError } from '../../core/errors.js';
import type { Algorithm } from '../../core/types.js';
import { verifySignature } from '../algorithms.js';
import { SignBytesDecodeError, decodeSignBytes, stepOf } from './sign-bytes-decode.js';

export interface ImportedState {
  height: bigint;
  round: number;
  /** FilePV numbering: 0 none, 1 propose, 2 prevote, 3 precommit. */
  step: number;
  /** Empty or absent: none. */
  signBytes?: Uint8Array | undefined;
  signature?: Uint8Array | undefined;
}

const STEP_NAMES: Record<number, string> = { 0: 'none', 1: 'proposal', 2: 'prevote', 3: 'precommit' };
const CONSENSUS_ALGORITHMS: readonly Algorithm[] = ['ed25519', 'ed25519-expanded', 'secp256k1'];
const SIGNATURE_BYTES = 64;

function refuse(tag: string, message: string): CustosError {
  return new CustosError('bad_request', message, { tag });
}

const stepName = (step: number) => `${step} (${STEP_NAMES[step] ?? 'unknown'})`;
const quoted = (s: string) => JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);

export function checkImportedState(key: { algorithm: Algorithm; publicKey: Uint8Array }, chainId: string, state: ImportedState): void {
  const signBytes = state.signBytes && state.signBytes.length > 0 ? state.signBytes : undefined;
  const signature = state.signature && state.signature.length > 0 ? state.signature : undefined;
  if (!signBytes && !signature) return;
  if (!signBytes) throw refuse('missing_sign_bytes', 'The state has a signature but no sign bytes, so nothing says what it signs: give both, or neither.');
  if (!signature) throw refuse('missing_signature', 'The state has sign bytes but no signature, so nothing shows the key signed them: give both, or neither.');
  if (!CONSENSUS_ALGORITHMS.includes(key.algorithm)) {
    throw new CustosError('unsupported_algorithm', `${key.algorithm} is not a consensus key type (ed25519 or secp256k1); its state cannot carry a CometBFT signature.`);
  }

  let decoded;
  try {
    decoded = decodeSignBytes(signBytes);
  } catch (e) {
    if (e instanceof SignBytesDecodeError) throw refuse('bad_sign_bytes', `The sign bytes are not a CometBFT canonical vote or proposal: ${e.message}`);
    throw e;
  }
  const signed = decoded.kind === 'vote' ? decoded.vote : decoded.proposal;
  const differences: string[] = [];
  if (decoded.chainId !== chainId) differences.push(`chain ID ${quoted(decoded.chainId)} in the sign bytes, ${quoted(chainId)} in the state`);
  if (signed.height !== state.height) differences.push(`height ${signed.height} in the sign bytes, ${state.height} in the state`);
  if (signed.round !== state.round) differences.push(`round ${signed.round} in the sign bytes, ${state.round} in the state`);
  if (stepOf(decoded) !== state.step) differences.push(`step ${stepName(stepOf(decoded))} in the sign bytes, ${stepName(state.step)} in the state`);
  if (differences.length > 0) throw refuse('state_mismatch', `The sign bytes do not belong to the imported state: ${differences.join('; ')}.`);

  if (signature.length !== SIGNATURE_BYTES) {
    throw refuse('bad_signature', `The signature is ${signature.length} bytes; a CometBFT ${key.algorithm === 'secp256k1' ? 'secp256k1 signature (r‖s)' : 'Ed25519 signature'} is ${SIGNATURE_BYTES}.`);
  }
  // `raw` = 64-byte r‖s for secp256k1, verified over SHA-256 of the message with low S
  // required (algorithms.ts `verifySignature`); Ed25519 ignores it.
  if (!verifySignature(key.algorithm, key.publicKey, { kind: 'message', bytes: signBytes }, signature, { encoding: 'raw' })) {
    throw refuse('bad_signature', `The signature does not verify under this key over the sign bytes (${decoded.kind} at height ${signed.height} round ${signed.round} on ${quoted(decoded.chainId)}).`);
  }
}
