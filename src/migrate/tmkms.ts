/**
 * What `custos privval setup --tmkms-config` needs from a `tmkms.toml` (tmkms v0.12–v0.15,
 * iqlusioninc/tmkms `src/config/*.rs`):
 *
 *   [[chain]]      id, state_file            (default `<id>_priv_validator_state.json`)
 *   [[validator]]  chain_id, addr, protocol_version, secret_key
 *   [[providers.softsign]]  chain_ids, key_type ("consensus" | "account"), path, key_format
 *
 * A softsign consensus key file is base64 of the Ed25519 seed (32 bytes; older tmkms wrote
 * seed‖public key, 64 bytes), or a `priv_validator_key.json` when `key_format = "json"`.
 * Keys in a YubiHSM, a Ledger or Fortanix DSM cannot leave them, so a chain whose key is there
 * is named and refused: generate a new consensus key in Custos (a validator key rotation).
 * tmkms reads relative paths from its working directory: here from `baseDir`, by default the
 * directory of tmkms.toml (where tmkms is usually run). Only there: a second guess could pick
 * a stale copy silently. The caller prints which files it read.
 *
 * `protocol_version` is how tmkms encodes messages, not the node's version (tmkms ≤ 0.14 only
 * knew "v0.34" and spoke it to v0.37/v0.38 nodes too; 0.15 defaults to "v0.38"), and whether
 * tmkms signed vote extensions is `[[chain]] sign_extensions`. Neither tells the node's version,
 * so setup writes the entry as v0.38 (the `tendermint.privval` wire, which Custos serves alike to
 * v0.34–v0.38 nodes, extensions included); only "v0.33" (Amino) is refused.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse } from 'smol-toml';
import { CustosError } from '../core/errors.js';

export interface TmkmsValidator {
  chainId: string;
  /** The node's priv_validator_laddr as tmkms dials it (`tcp://id@host:port` or `unix://…`). */
  addr: string;
  /** The absolute path of the state file of this validator's chain. */
  stateFile: string;
  /** The consensus key: a softsign key file (absolute path) and how it is written. */
  keyFile: string;
  keyFormat: 'base64' | 'json';
}

const MAX_FILE = 1024 * 1024;

function refuse(file: string, what: string): never {
  throw new CustosError('bad_request', `${file}: ${what}`);
}

const list = (v: unknown): unknown[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** The validators of a tmkms.toml, or one of them (`chainId`). */
export function readTmkmsConfig(path: string, chainId?: string, baseDir?: string): TmkmsValidator[] {
  let text: string;
  try {
    const bytes = readFileSync(path);
    if (bytes.length > MAX_FILE) refuse(path, 'larger than 1 MiB: not a tmkms.toml.');
    text = bytes.toString('utf8');
  } catch (e) {
    if (e instanceof CustosError) throw e;
    throw new CustosError('bad_request', `Cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}.`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (e) {
    refuse(path, `not valid TOML (${(e as Error).message.split('\n')[0]}).`);
  }
  const base = baseDir ? resolve(baseDir) : dirname(resolve(path));
  const at = (p: unknown, what: string): string => {
    if (typeof p !== 'string' || p.length === 0) refuse(path, `${what} must be a path.`);
    return resolve(base, p);
  };
  const chains = new Map<string, string>();
  for (const c of list(doc.chain)) {
    const t = c as Record<string, unknown>;
    if (typeof t?.id !== 'string') refuse(path, 'a [[chain]] has no id.');
    chains.set(t.id, t.state_file === undefined ? resolve(base, `${t.id}_priv_validator_state.json`) : at(t.state_file, `[[chain]] "${t.id}" state_file`));
  }
  const providers = (doc.providers ?? {}) as Record<string, unknown>;
  if (typeof providers !== 'object' || providers === null || Array.isArray(providers)) refuse(path, '[providers] must be a table.');
  // A provider lists its chains itself (ledgertm) or in its key tables (yubihsm, fortanixdsm).
  const names = (p: unknown): unknown[] => {
    if (typeof p !== 'object' || p === null) return [];
    const t = p as Record<string, unknown>;
    return [...list(t.chain_ids), ...list(t.keys).flatMap((k) => (typeof k === 'object' && k !== null ? list((k as Record<string, unknown>).chain_ids) : []))];
  };
  const hardwareOf = (chain: string): string | undefined => ['yubihsm', 'ledgertm', 'fortanixdsm'].find((hw) => list(providers[hw]).some((p) => names(p).includes(chain)));
  const softsign = list(providers.softsign).filter((p): p is Record<string, unknown> => typeof p === 'object' && p !== null && !Array.isArray(p));
  const out: TmkmsValidator[] = [];
  for (const v of list(doc.validator)) {
    const t = v as Record<string, unknown>;
    if (typeof t?.chain_id !== 'string') refuse(path, 'a [[validator]] has no chain_id.');
    if (chainId && t.chain_id !== chainId) continue;
    if (typeof t.addr !== 'string') refuse(path, `[[validator]] for ${t.chain_id} has no addr.`);
    const pv = t.protocol_version;
    if (pv === 'v0.33' || pv === 'legacy') refuse(path, `[[validator]] for ${t.chain_id}: protocol_version ${JSON.stringify(pv)} is the Amino encoding of Tendermint ≤ v0.33, which Custos does not speak (CometBFT v0.34 and later only).`);
    if (pv !== undefined && pv !== 'v0.34' && pv !== 'v0.38') refuse(path, `[[validator]] for ${t.chain_id}: protocol_version ${JSON.stringify(pv)} is not one tmkms knows (v0.34, v0.38).`);
    const stateFile = chains.get(t.chain_id);
    if (!stateFile) refuse(path, `[[validator]] for ${t.chain_id} has no [[chain]] with that id.`);
    const provider = softsign.find((p) => list(p.chain_ids).includes(t.chain_id) && (p.key_type === undefined || p.key_type === 'consensus'));
    if (!provider) {
      const hw = hardwareOf(t.chain_id);
      if (hw) refuse(path, `the consensus key of ${t.chain_id} is in a ${hw} device, and a key cannot leave one. Create a consensus key in Custos (custos keys create --purpose consensus) and rotate the validator to it, or keep that chain on tmkms.`);
      refuse(path, `no [[providers.softsign]] holds a consensus key for ${t.chain_id}.`);
    }
    const keyFormat = provider.key_format === 'json' ? 'json' : 'base64';
    out.push({ chainId: t.chain_id, addr: t.addr, stateFile, keyFile: at(provider.path, `the softsign key of ${t.chain_id}`), keyFormat });
  }
  if (out.length === 0) refuse(path, chainId ? `no [[validator]] has chain_id ${JSON.stringify(chainId)}.` : 'no [[validator]] entry.');
  return out;
}

/**
 * A softsign key file's Ed25519 seed (32 bytes), from base64 of the seed or of seed‖public
 * key. The caller wipes it.
 */
export function softsignSeed(bytes: Uint8Array, file: string): Uint8Array {
  const text = Buffer.from(bytes).toString('ascii').trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) refuse(file, 'not a tmkms softsign key (base64 of an Ed25519 key).');
  const raw = new Uint8Array(Buffer.from(text, 'base64'));
  if (raw.length !== 32 && raw.length !== 64) {
    raw.fill(0);
    refuse(file, `holds ${raw.length} bytes; a tmkms softsign Ed25519 key is 32 (seed) or 64 (seed and public key).`);
  }
  const seed = raw.slice(0, 32);
  raw.fill(0);
  return seed;
}
