/**
 * The double-sign state files of the signers a validator switches from, read into one shape
 * (FilePV numbering, the form `PUT /v1/keys/:key/watermarks/:chain` takes):
 *
 * - CometBFT FilePV and Horcrux `priv_validator_state.json`:
 *   `{"height":"5","round":0,"step":3,"signature":"b64","signbytes":"HEX"}`; steps 1 propose,
 *   2 prevote, 3 precommit. Horcrux writes the round as a string too.
 * - tmkms `<chain>_priv_validator_state.json`:
 *   `{"height":"5","round":"1","step":2,"block_id":{…}|null}`, steps **0 proposal, 1 prevote,
 *   2 precommit** (tmkms `src/privval.rs`), no signature: shifted by one here.
 *
 * Which one a file is follows from its fields: tmkms writes `block_id` and never `signbytes`.
 * A file that is neither is refused with a sentence naming the field; nothing is guessed.
 */
import { CustosError } from '../core/errors.js';

export interface WatermarkImport {
  /** Decimal, as the API takes it. */
  height: string;
  round: number;
  step: number;
  sign_bytes?: string;
  signature?: string;
}

export type StateOrigin = 'filepv' | 'tmkms';

const MAX_FILE = 64 * 1024;
const INT64_MAX = 2n ** 63n - 1n;

function refuse(file: string, what: string): never {
  throw new CustosError('bad_request', `${file}: ${what}`);
}

function integer(file: string, field: string, v: unknown, max: bigint): bigint {
  const text = typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : typeof v === 'string' ? v : undefined;
  if (text === undefined || !/^(0|[1-9][0-9]{0,18})$/.test(text) || BigInt(text) > max) refuse(file, `"${field}" must be a whole number from 0 to ${max} (as a number or a string).`);
  return BigInt(text);
}

/**
 * Reads a FilePV, Horcrux or tmkms state file; `file` names it in errors. `expect` is where the
 * file came from when that is known (a tmkms.toml names it): a file that does not look like
 * it is refused rather than read with the other step numbering, which would put the watermark
 * one step below what was signed.
 */
export function parseValidatorState(bytes: Uint8Array, file: string, expect?: StateOrigin): { origin: StateOrigin; state: WatermarkImport } {
  if (bytes.length > MAX_FILE) refuse(file, `larger than ${MAX_FILE} bytes: not a validator state file.`);
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    refuse(file, 'not JSON: expected a priv_validator_state.json (CometBFT FilePV, Horcrux or tmkms).');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) refuse(file, 'not a JSON object: expected a priv_validator_state.json.');
  const st = doc as Record<string, unknown>;
  for (const f of ['height', 'round', 'step']) if (!(f in st)) refuse(file, `has no "${f}": not a priv_validator_state.json.`);
  const height = integer(file, 'height', st.height, INT64_MAX);
  const round = Number(integer(file, 'round', st.round, 2n ** 31n - 1n));
  const step = Number(integer(file, 'step', st.step, 3n));
  const tmkms = 'block_id' in st && !('signbytes' in st) && !('signature' in st);
  if (expect && expect !== (tmkms ? 'tmkms' : 'filepv')) {
    refuse(file, expect === 'tmkms' ? 'named by tmkms.toml but not a tmkms state file (tmkms writes "block_id" and never "signbytes"); nothing was guessed: check the file.' : 'a tmkms state file where a CometBFT/Horcrux one was expected (it has "block_id" and no "signbytes").');
  }
  if (tmkms) {
    if (step > 2) refuse(file, `is a tmkms state file (it has "block_id") but its step is ${step}; tmkms numbers steps 0 proposal, 1 prevote, 2 precommit.`);
    // All zeros with no block: a state that never recorded a signature.
    const fresh = height === 0n && round === 0 && step === 0 && st.block_id === null;
    return { origin: 'tmkms', state: fresh ? { height: '0', round: 0, step: 0 } : { height: height.toString(), round, step: step + 1 } };
  }
  const state: WatermarkImport = { height: height.toString(), round, step };
  if (st.signbytes !== undefined && st.signbytes !== null && st.signbytes !== '') {
    if (typeof st.signbytes !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(st.signbytes)) refuse(file, '"signbytes" must be hex.');
    state.sign_bytes = st.signbytes.toLowerCase();
  }
  if (st.signature !== undefined && st.signature !== null && st.signature !== '') {
    if (typeof st.signature !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(st.signature)) refuse(file, '"signature" must be base64.');
    state.signature = st.signature;
  }
  // One of sign bytes and signature without the other is the vault's to refuse (audited, with its tag).
  return { origin: 'filepv', state };
}
