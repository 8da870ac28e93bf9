/**
 * The agent extensions Tor needs (RFC 9987 §5.8 vendor extensions, advertised by `query`), the
 * only way an agent client reaches a Tor key:
 *
 *   tor-sign@custos.dev         string key blob, string data
 *                               → string signature (64-byte Ed25519: Tor signs plain bytes,
 *                                 with expanded keys that have no seed)
 *   tor-blinded-key@custos.dev  string key blob, uint64 period_num, uint64 period_length (minutes)
 *                               → string blinded public key (32), string subcredential (32)
 *   tor-blind-sign@custos.dev   string key blob, uint64 period_num, uint64 period_length, string data
 *                               → string signature (64, by the period's blinded key; K_hs_id
 *                                 never leaves the vault)
 *   tor-rsa-sign@custos.dev     string key blob (ssh-rsa), string digest (20 or 32 bytes)
 *                               → string signature (tor's crypto_pk_private_sign: PKCS#1 v1.5
 *                                 over the digest itself, no DigestInfo)
 *   tor-x25519@custos.dev       string key blob ("x25519@spec.torproject.org", string key),
 *                               string peer public key (32) → string shared secret (32)
 *
 * The key blob is the key's `ssh-ed25519` blob (`ssh-rsa`, `x25519@spec.torproject.org` for those). A success is EXTENSION_RESPONSE (29), the name,
 * then the fields above; a refusal EXTENSION_FAILURE (28). Every decoder bounds its input and
 * throws AgentCodecError (a FAILURE to the client, the connection kept).
 */
import { SshReader, SshWriter } from '../../crypto/openssh.js';
import { AgentCodecError, MAX_FRAME } from './codec.js';

export const EXT_TOR_SIGN = 'tor-sign@custos.dev';
export const EXT_TOR_BLINDED_KEY = 'tor-blinded-key@custos.dev';
export const EXT_TOR_BLIND_SIGN = 'tor-blind-sign@custos.dev';
export const EXT_TOR_RSA_SIGN = 'tor-rsa-sign@custos.dev';
export const EXT_TOR_X25519 = 'tor-x25519@custos.dev';
export const TOR_EXTENSIONS: readonly string[] = [EXT_TOR_SIGN, EXT_TOR_BLINDED_KEY, EXT_TOR_BLIND_SIGN, EXT_TOR_RSA_SIGN, EXT_TOR_X25519];
/** Arti's name for an X25519 key in OpenSSH formats (spec.torproject.org/ssh-protocols). */
export const KEY_X25519 = 'x25519@spec.torproject.org';
/** What Tor signs is small (a certificate body, a descriptor's hash input): 64 KiB is ample. */
export const MAX_TOR_DATA = 64 * 1024;

export interface TorPeriodWire {
  num: number;
  length: number;
}

export type TorExtensionRequest =
  | { name: typeof EXT_TOR_SIGN; keyBlob: Uint8Array; data: Uint8Array }
  | { name: typeof EXT_TOR_BLINDED_KEY; keyBlob: Uint8Array; period: TorPeriodWire }
  | { name: typeof EXT_TOR_BLIND_SIGN; keyBlob: Uint8Array; period: TorPeriodWire; data: Uint8Array }
  | { name: typeof EXT_TOR_RSA_SIGN; keyBlob: Uint8Array; data: Uint8Array }
  | { name: typeof EXT_TOR_X25519; keyBlob: Uint8Array; data: Uint8Array };

function u64(r: SshReader, what: string): number {
  const hi = r.u32(`${what} (high)`);
  const lo = r.u32(`${what} (low)`);
  const n = hi * 2 ** 32 + lo;
  if (!Number.isSafeInteger(n)) throw new AgentCodecError(`${what} is larger than 2^53`);
  return n;
}

function period(r: SshReader): TorPeriodWire {
  const num = u64(r, 'period_num');
  const length = u64(r, 'period_length');
  if (length < 1 || length > 1440 * 366) throw new AgentCodecError(`period_length ${length} is not 1 to 527040 minutes`);
  return { num, length };
}

function data(r: SshReader): Uint8Array {
  const d = r.string('data');
  if (d.length > MAX_TOR_DATA) throw new AgentCodecError(`data of ${d.length} bytes (at most ${MAX_TOR_DATA})`);
  return d.slice();
}

/** The request of one of our Tor extensions (its name already read), or a typed error. */
export function decodeTorExtension(name: string, body: Uint8Array): TorExtensionRequest {
  try {
    const r = new SshReader(body, MAX_FRAME);
    const keyBlob = r.string('key blob').slice();
    if (keyBlob.length > 1024) throw new AgentCodecError('a key blob of more than 1024 bytes');
    let req: TorExtensionRequest;
    if (name === EXT_TOR_SIGN) req = { name, keyBlob, data: data(r) };
    else if (name === EXT_TOR_BLINDED_KEY) req = { name, keyBlob, period: period(r) };
    else if (name === EXT_TOR_BLIND_SIGN) req = { name, keyBlob, period: period(r), data: data(r) };
    else if (name === EXT_TOR_RSA_SIGN) {
      req = { name, keyBlob, data: data(r) };
      if (req.data.length !== 20 && req.data.length !== 32) throw new AgentCodecError(`a digest of ${req.data.length} bytes (20 or 32)`);
    } else if (name === EXT_TOR_X25519) {
      req = { name, keyBlob, data: data(r) };
      if (req.data.length !== 32) throw new AgentCodecError(`a peer key of ${req.data.length} bytes (32)`);
    }
    else throw new AgentCodecError(`not a Tor extension: ${name.slice(0, 64)}`);
    r.end(name);
    return req;
  } catch (e) {
    if (e instanceof AgentCodecError) throw e;
    throw new AgentCodecError(e instanceof Error ? e.message : 'malformed Tor extension', { cause: e });
  }
}

const writeU64 = (w: SshWriter, n: number) => w.u32(Math.floor(n / 2 ** 32)).u32(n >>> 0);

/** The bytes after the extension name (for clients and tests). */
export function encodeTorExtension(req: TorExtensionRequest): Uint8Array {
  const w = new SshWriter().string(req.keyBlob);
  if (req.name === EXT_TOR_BLINDED_KEY || req.name === EXT_TOR_BLIND_SIGN) writeU64(writeU64(w, req.period.num), req.period.length);
  if (req.name !== EXT_TOR_BLINDED_KEY) w.string(req.data);
  return w.finish();
}

/** A reply's fields (after the name): one string per field. */
export function encodeTorReply(fields: Uint8Array[]): Uint8Array {
  const w = new SshWriter();
  for (const f of fields) w.string(f);
  return w.finish();
}

export function decodeTorReply(body: Uint8Array, count: number): Uint8Array[] {
  try {
    const r = new SshReader(body, MAX_FRAME);
    const out: Uint8Array[] = [];
    for (let i = 0; i < count; i++) out.push(r.string(`field ${i}`).slice());
    r.end('Tor extension reply');
    return out;
  } catch (e) {
    if (e instanceof AgentCodecError) throw e;
    throw new AgentCodecError(e instanceof Error ? e.message : 'malformed Tor extension reply', { cause: e });
  }
}

/** An X25519 key's blob: string "x25519@spec.torproject.org", string key (32). */
export function x25519Blob(publicKey: Uint8Array): Uint8Array {
  return new SshWriter().string(KEY_X25519).string(publicKey).finish();
}

/** The key of an X25519 blob, or null if the blob is not one. */
export function x25519KeyOf(blob: Uint8Array): Uint8Array | null {
  try {
    const r = new SshReader(blob, 1024);
    if (new TextDecoder().decode(r.string('key type')) !== KEY_X25519) return null;
    const k = r.string('key').slice();
    r.end('x25519 blob');
    return k.length === 32 ? k : null;
  } catch {
    return null;
  }
}
