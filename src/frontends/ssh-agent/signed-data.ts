/**
 * Names what an ssh-agent client asks to have signed, so policy and audit can
 * say "root@host via session X" or "SSHSIG namespace file" instead of "1 KiB of
 * bytes". Recognition only: nothing here proves the data is honest (the session
 * id and host key are checked against session-bind elsewhere), and anything not
 * recognised exactly is `unknown`. Never throws.
 */
import { SshReader } from '../../crypto/openssh.js';
import { MAX_FRAME } from './codec.js';

export type SignedData =
  | {
      kind: 'userauth';
      sessionId: Uint8Array;
      user: string;
      service: string;
      algorithm: string;
      keyBlob: Uint8Array;
      /** Present for publickey-hostbound-v00@openssh.com: the server host key the client saw. */
      hostKeyBlob?: Uint8Array;
    }
  | { kind: 'sshsig'; namespace: string; hashAlgorithm: string; hash: Uint8Array }
  | { kind: 'unknown' };

const SSH_MSG_USERAUTH_REQUEST = 50;
const METHOD_PUBLICKEY = 'publickey';
const METHOD_HOSTBOUND = 'publickey-hostbound-v00@openssh.com';
/** PROTOCOL.sshsig MAGIC_PREAMBLE: six raw bytes, no length prefix. */
const SSHSIG_MAGIC = new TextEncoder().encode('SSHSIG');

export function parseSignedData(data: Uint8Array): SignedData {
  try {
    if (data.length > MAX_FRAME) return UNKNOWN;
    if (startsWith(data, SSHSIG_MAGIC)) return parseSshsig(data) ?? UNKNOWN;
    return parseUserauth(data) ?? UNKNOWN;
  } catch {
    // Any reader error means "not this format"; callers get a value, never a throw.
    return UNKNOWN;
  }
}

const UNKNOWN: SignedData = Object.freeze({ kind: 'unknown' });

/**
 * RFC 4252 §7 "publickey" request with the signature-follows flag, prefixed by
 * the session identifier, which is what the client signs. OpenSSH 8.9+ sends the
 * "publickey-hostbound-v00@openssh.com" variant (OpenSSH PROTOCOL §3.1) with
 * the server host key appended. Shape checks follow OpenSSH's
 * own recogniser (ssh-agent.c parse_userauth_request): non-empty session id,
 * byte 50, flag exactly 1, no trailing bytes.
 */
function parseUserauth(data: Uint8Array): SignedData | undefined {
  // The session id's length and the message type after it, looked at first: most data that is
  // not a login (a git commit, random bytes) is told apart here, without a reader's error.
  if (data.length < 5) return undefined;
  const r = new SshReader(data, MAX_FRAME);
  const idLength = r.u32('session id length');
  if (idLength === 0 || idLength >= r.remaining || data[4 + idLength] !== SSH_MSG_USERAUTH_REQUEST) return undefined;
  const sessionId = r.bytes(idLength, 'session id');
  r.u8('message type'); // (SSH_MSG_USERAUTH_REQUEST: looked at above)
  const user = r.text('user');
  const service = r.text('service');
  const method = r.text('method');
  if (method !== METHOD_PUBLICKEY && method !== METHOD_HOSTBOUND) return undefined;
  if (r.u8('signature flag') !== 1) return undefined;
  const algorithm = r.text('algorithm');
  const keyBlob = r.string('key blob');
  const hostKeyBlob = method === METHOD_HOSTBOUND ? r.string('host key blob') : undefined;
  if (r.remaining !== 0) return undefined;
  const out: SignedData = {
    kind: 'userauth',
    sessionId: sessionId.slice(),
    user,
    service,
    algorithm,
    keyBlob: keyBlob.slice(),
  };
  if (hostKeyBlob !== undefined) out.hostKeyBlob = hostKeyBlob.slice();
  return out;
}

/**
 * PROTOCOL.sshsig "signed data": MAGIC_PREAMBLE, string namespace, string
 * reserved, string hash_algorithm, string H(message). The spec says to ignore
 * a non-empty reserved field, and that the namespace MUST NOT be empty.
 */
function parseSshsig(data: Uint8Array): SignedData | undefined {
  const r = new SshReader(data, MAX_FRAME);
  r.bytes(SSHSIG_MAGIC.length, 'magic');
  const namespace = r.text('namespace');
  r.string('reserved');
  const hashAlgorithm = r.text('hash algorithm');
  const hash = r.string('message hash');
  if (r.remaining !== 0 || namespace === '') return undefined;
  return { kind: 'sshsig', namespace, hashAlgorithm, hash: hash.slice() };
}

function startsWith(buf: Uint8Array, prefix: Uint8Array): boolean {
  if (buf.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[i] !== prefix[i]) return false;
  return true;
}
