/**
 * ssh-agent wire codec: RFC 9987 messages plus the OpenSSH additions that real
 * clients send (PROTOCOL.agent, PROTOCOL.certkeys). Pure: bytes in, typed
 * messages out, and back; no I/O and no vault.
 *
 * - Every read goes through `SshReader`, so a hostile length can never read past
 *   the end or size an allocation. Every decode failure is an `AgentCodecError`
 *   (`bad_request`); the session handler answers SSH_AGENT_FAILURE, or closes the
 *   connection for a framing error.
 * - Byte fields of decoded messages are copies, never views into the frame, so a
 *   frame can be reused or wiped on its own. Secrets (passphrases, PINs, private
 *   key parts) are only ever `Uint8Array`; `wipeRequest` zeroes them.
 * - Error messages name fields, never their contents.
 */
import { equalBytes } from '../../core/bytes.js';
import { printable } from '../../core/text.js';
import { CustosError } from '../../core/errors.js';
import { SshFormatError, SshReader, SshWriter } from '../../crypto/openssh.js';

/**
 * Why an ADD can be refused before it decodes, for the audit entry the session handler
 * writes (the default is `malformed_request`).
 */
export type AddRefusal = 'unsupported_algorithm' | 'key_mismatch' | 'invalid_certificate' | 'unsupported_constraint';

export class AgentCodecError extends CustosError {
  override readonly code = 'bad_request' as const;
  readonly refusal: AddRefusal | undefined;

  constructor(message: string, options?: { cause?: unknown; refusal?: AddRefusal }) {
    super('bad_request', message, options);
    this.name = 'AgentCodecError';
    this.refusal = options?.refusal;
  }
}

/**
 * A declared frame length above MAX_FRAME, or zero. The connection cannot be
 * resynchronised after it, so the caller closes it; `completed` holds the frames
 * that arrived whole before the bad one (replies go in request order, RFC 9987 §3), which
 * the caller may still answer first.
 */
export class FrameLengthError extends AgentCodecError {
  constructor(
    readonly declaredLength: number,
    readonly completed: Uint8Array[],
  ) {
    super(
      declaredLength === 0
        ? 'agent frame with length 0'
        : `agent frame of ${declaredLength} bytes exceeds the ${MAX_FRAME}-byte limit`,
    );
    this.name = 'FrameLengthError';
  }
}

/**
 * OpenSSH's agent closes a connection whose frame declares more than 256 KiB
 * (AGENT_MAX_LEN in ssh-agent.c) and its client refuses replies above the same
 * size (MAX_AGENT_REPLY_LEN in authfd.c); RFC 9987 leaves the limit to the
 * implementation. Exactly 256 KiB is accepted, as 9.2 does.
 */
export const MAX_FRAME = 256 * 1024;

/** Message numbers, RFC 9987 §8.1; 9 is the SSH-1 number `ssh-add -D` still sends. */
export const AgentMessage = {
  REMOVE_ALL_RSA_IDENTITIES: 9,
  FAILURE: 5,
  SUCCESS: 6,
  REQUEST_IDENTITIES: 11,
  IDENTITIES_ANSWER: 12,
  SIGN_REQUEST: 13,
  SIGN_RESPONSE: 14,
  ADD_IDENTITY: 17,
  REMOVE_IDENTITY: 18,
  REMOVE_ALL_IDENTITIES: 19,
  ADD_SMARTCARD_KEY: 20,
  REMOVE_SMARTCARD_KEY: 21,
  LOCK: 22,
  UNLOCK: 23,
  ADD_ID_CONSTRAINED: 25,
  ADD_SMARTCARD_KEY_CONSTRAINED: 26,
  EXTENSION: 27,
  EXTENSION_FAILURE: 28,
  EXTENSION_RESPONSE: 29,
} as const;

/** SIGN_REQUEST flags, RFC 9987 §5.6.1 / §8.3 (RFC 8332 §3.2). 0x01 is reserved (was SSH_AGENT_OLD_SIGNATURE). */
export const SSH_AGENT_RSA_SHA2_256 = 2;
export const SSH_AGENT_RSA_SHA2_512 = 4;

export const EXT_QUERY = 'query';
export const EXT_SESSION_BIND = 'session-bind@openssh.com';
export const CONSTRAINT_RESTRICT_DESTINATION = 'restrict-destination-v00@openssh.com';
export const CONSTRAINT_ASSOCIATED_CERTS = 'associated-certs-v00@openssh.com';
export const CONSTRAINT_SK_PROVIDER = 'sk-provider@openssh.com';
/** Tor's vendor key type (spec.torproject.org/ssh-protocols.html): an expanded Ed25519 secret with no seed. */
export const KEY_ED25519_EXPANDED = 'ed25519-expanded@spec.torproject.org';

/** Same bound as OpenSSH's agent (AGENT_MAX_SID_LEN); real exchange hashes are 20–64 bytes. */
export const MAX_SESSION_ID = 128;
/** OpenSSH's client allows 2048 (MAX_AGENT_IDENTITIES); an agent holding more is not one we talk to. */
export const MAX_IDENTITIES = 1024;
/** OpenSSH allows 1024 (AGENT_MAX_DEST_CONSTRAINTS); `ssh-add -h` users write a handful. */
export const MAX_DESTINATION_CONSTRAINTS = 64;
export const MAX_HOP_KEYS = 256;
export const MAX_ASSOCIATED_CERTS = 256;
/** SSHKEY_CERT_MAX_PRINCIPALS in OpenSSH's sshkey.c. */
export const MAX_CERT_PRINCIPALS = 256;
const MAX_NAMES = 256;
const MAX_NAME_LENGTH = 256;

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

export type EcdsaCurve = 'nistp256' | 'nistp384' | 'nistp521';
export type EcdsaKeyType = `ecdsa-sha2-${EcdsaCurve}`;
export type CertKeyType =
  | 'ssh-ed25519-cert-v01@openssh.com'
  | `ecdsa-sha2-${EcdsaCurve}-cert-v01@openssh.com`
  | 'ssh-rsa-cert-v01@openssh.com';

/** SEC1 field size in bytes: the width of d and of each coordinate of Q. */
const CURVE_BYTES: Record<EcdsaCurve, number> = { nistp256: 32, nistp384: 48, nistp521: 66 };

export type PlainPublicKey =
  | { keyType: 'ssh-ed25519'; publicKey: Uint8Array }
  /** `q` is the SEC1 uncompressed point 0x04‖X‖Y. */
  | { keyType: EcdsaKeyType; curve: EcdsaCurve; q: Uint8Array }
  /** Unsigned big-endian magnitudes, no leading zeros. */
  | { keyType: 'ssh-rsa'; e: Uint8Array; n: Uint8Array };

type EcdsaPublicKey = Extract<PlainPublicKey, { curve: EcdsaCurve }>;

/** OpenSSH certificate (PROTOCOL.certkeys); the options are kept raw. */
export interface SshCertificate {
  keyType: CertKeyType;
  nonce: Uint8Array;
  /** The certified key, as a plain key of the underlying type. */
  key: PlainPublicKey;
  serial: bigint;
  certType: 'user' | 'host';
  keyId: string;
  principals: string[];
  validAfter: bigint;
  validBefore: bigint;
  criticalOptions: Uint8Array;
  extensions: Uint8Array;
  reserved: Uint8Array;
  /** The CA's public key blob. */
  signatureKey: Uint8Array;
  signature: Uint8Array;
}

export type SshPublicKey = PlainPublicKey | SshCertificate;

/**
 * A private key as sent in ADD_IDENTITY (RFC 9987 §5.2.1–5.2.5; OpenSSH
 * sshkey_private_serialize for certificates). All byte fields are copies.
 * Nothing here is checked cryptographically (seed ↔ public key, d ↔ Q, p·q = n):
 * the importer does that before the key is used.
 */
export type AgentPrivateKey =
  | { keyType: 'ssh-ed25519'; publicKey: Uint8Array; seed: Uint8Array; comment: string }
  /** Expanded secret a‖RH (64 bytes); signatures are ordinary Ed25519 under `publicKey`. */
  | { keyType: typeof KEY_ED25519_EXPANDED; publicKey: Uint8Array; expandedSecret: Uint8Array; comment: string }
  /** `d` is left-padded to the curve's width. */
  | { keyType: EcdsaKeyType; curve: EcdsaCurve; q: Uint8Array; d: Uint8Array; comment: string }
  | {
      keyType: 'ssh-rsa';
      n: Uint8Array;
      e: Uint8Array;
      d: Uint8Array;
      iqmp: Uint8Array;
      p: Uint8Array;
      q: Uint8Array;
      comment: string;
    }
  | {
      keyType: 'ssh-ed25519-cert-v01@openssh.com';
      certificate: Uint8Array;
      cert: SshCertificate;
      publicKey: Uint8Array;
      seed: Uint8Array;
      comment: string;
    }
  | {
      keyType: `ecdsa-sha2-${EcdsaCurve}-cert-v01@openssh.com`;
      certificate: Uint8Array;
      cert: SshCertificate;
      d: Uint8Array;
      comment: string;
    }
  | {
      keyType: 'ssh-rsa-cert-v01@openssh.com';
      certificate: Uint8Array;
      cert: SshCertificate;
      d: Uint8Array;
      iqmp: Uint8Array;
      p: Uint8Array;
      q: Uint8Array;
      comment: string;
    };

// ---------------------------------------------------------------------------
// Constraints
// ---------------------------------------------------------------------------

export interface DestinationHostKey {
  /** Public key blob, kept raw: it is matched byte-for-byte against session-bind host keys. */
  blob: Uint8Array;
  /** The key is a CA that signs host certificates for `hostname`. */
  isCa: boolean;
}

/** Empty `user`/`hostname` mean "absent", as in OpenSSH. */
export interface DestinationHop {
  user: string;
  hostname: string;
  hostKeys: DestinationHostKey[];
}

/** One `ssh-add -h` hop; a `from` with no hostname and no keys is "the origin". */
export interface DestinationConstraint {
  from: DestinationHop;
  to: DestinationHop;
}

export type KeyConstraint =
  | { kind: 'lifetime'; seconds: number }
  | { kind: 'confirm' }
  | { kind: 'restrict-destination'; constraints: DestinationConstraint[] }
  /** OpenSSH 9.6+, only meaningful on ADD_SMARTCARD_KEY_CONSTRAINED. */
  | { kind: 'associated-certs'; certsOnly: boolean; certs: Uint8Array[] }
  | { kind: 'sk-provider'; path: string }
  /**
   * A constraint extension this codec cannot parse. Its body has no length of its
   * own, so it runs to the end of the message and is always the last constraint.
   * RFC 9987 §5.2.7: an agent must refuse the whole add.
   */
  | { kind: 'unknown-extension'; name: string; data: Uint8Array };

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

export type AgentRequest =
  | { type: 'request_identities' }
  | { type: 'sign_request'; keyBlob: Uint8Array; data: Uint8Array; flags: number }
  | { type: 'add_identity'; key: AgentPrivateKey }
  | { type: 'add_id_constrained'; key: AgentPrivateKey; constraints: KeyConstraint[] }
  | { type: 'remove_identity'; keyBlob: Uint8Array }
  | { type: 'remove_all_identities' }
  /** SSH-1 leftover (type 9); `ssh-add -D` sends it after 19 and waits for any reply. */
  | { type: 'remove_all_rsa_identities' }
  | { type: 'add_smartcard_key'; tokenId: string; pin: Uint8Array }
  | { type: 'add_smartcard_key_constrained'; tokenId: string; pin: Uint8Array; constraints: KeyConstraint[] }
  | { type: 'remove_smartcard_key'; tokenId: string; pin: Uint8Array }
  | { type: 'lock'; passphrase: Uint8Array }
  | { type: 'unlock'; passphrase: Uint8Array }
  /** EXTENSION "query" (RFC 9987 §5.8.1). */
  | { type: 'extension_query' }
  /** EXTENSION "session-bind@openssh.com" (PROTOCOL.agent). */
  | {
      type: 'session_bind';
      hostKey: Uint8Array;
      sessionId: Uint8Array;
      signature: Uint8Array;
      isForwarding: boolean;
    }
  /** Any other EXTENSION: its contents follow the name with no length wrapper. */
  | { type: 'extension'; name: string; data: Uint8Array }
  /** RFC 9987 §5.1: an unknown type gets SSH_AGENT_FAILURE, and the connection stays open. */
  | { type: 'unknown'; code: number; payload: Uint8Array };

export interface AgentIdentity {
  keyBlob: Uint8Array;
  comment: string;
}

export type AgentResponse =
  | { type: 'failure' }
  | { type: 'success' }
  | { type: 'identities_answer'; identities: AgentIdentity[] }
  | { type: 'sign_response'; signature: Uint8Array }
  | { type: 'extension_failure' }
  /**
   * Reply to "query". RFC 9987 §5.8.1 (and OpenSSH ≥ 10.3): EXTENSION_RESPONSE,
   * string "query", then one string per name to the end. `legacy` is the
   * draft-miller-ssh-agent-04 form: SUCCESS followed by the names.
   */
  | { type: 'query_response'; extensions: string[]; legacy?: boolean }
  | { type: 'extension_response'; name: string; data: Uint8Array }
  | { type: 'unknown'; code: number; payload: Uint8Array };

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

/** `uint32 length ‖ body` (RFC 9987 §5). */
export function frame(body: Uint8Array): Uint8Array {
  if (body.length === 0 || body.length > MAX_FRAME) {
    throw new AgentCodecError(`agent message body of ${body.length} bytes cannot be framed`);
  }
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/**
 * Splits a byte stream into message bodies. The declared length is checked as
 * soon as its four bytes arrive, so a client can make it hold at most
 * MAX_FRAME + 4 bytes; memory grows with the bytes actually received, not with
 * the declared length, so idle connections that only sent a header stay cheap.
 * A zero length is refused: 9.2 would just wait for more bytes (lab), which
 * lets a client park a connection. After a FrameLengthError every push throws
 * it again.
 */
export class FrameReader {
  private readonly header = new Uint8Array(4);
  private headerLen = 0;
  /** Declared length of the frame being read, or -1 while reading its header. */
  private expected = -1;
  /** Body bytes so far; capacity grows by doubling up to `expected`. */
  private body = new Uint8Array(0);
  private bodyLen = 0;
  private failure: FrameLengthError | null = null;

  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failure) throw this.failure;
    const done: Uint8Array[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.expected < 0) {
        const take = Math.min(4 - this.headerLen, chunk.length - off);
        this.header.set(chunk.subarray(off, off + take), this.headerLen);
        this.headerLen += take;
        off += take;
        if (this.headerLen < 4) break;
        const h = this.header;
        const len = ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
        if (len === 0 || len > MAX_FRAME) {
          this.failure = new FrameLengthError(len, done);
          throw this.failure;
        }
        this.expected = len;
        continue;
      }
      const take = Math.min(this.expected - this.bodyLen, chunk.length - off);
      this.reserve(this.bodyLen + take);
      this.body.set(chunk.subarray(off, off + take), this.bodyLen);
      this.bodyLen += take;
      off += take;
      if (this.bodyLen === this.expected) {
        // reserve() never grows past `expected`, so the buffer is exactly the body.
        done.push(this.body);
        this.body = new Uint8Array(0);
        this.bodyLen = 0;
        this.expected = -1;
        this.headerLen = 0;
      }
    }
    return done;
  }

  /** Bytes of the incomplete frame held so far, header included. */
  get buffered(): number {
    return this.headerLen + this.bodyLen;
  }

  private reserve(n: number): void {
    if (n <= this.body.length) return;
    const grown = new Uint8Array(Math.min(this.expected, Math.max(n, 2 * this.body.length, 4096)));
    grown.set(this.body.subarray(0, this.bodyLen));
    // The partial body may be an ADD_IDENTITY or LOCK: leave no stray copy.
    this.body.fill(0);
    this.body = grown;
  }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/**
 * `body` is one frame's contents, type byte first. Trailing bytes are refused
 * wherever a message has a fixed end; 9.2 ignores them (lab: type 11 followed by
 * 262143 zeros is answered), so a deliberately padded request that 9.2 would
 * serve gets FAILURE here.
 */
export function decodeRequest(body: Uint8Array): AgentRequest {
  return guarded(() => {
    if (body.length === 0) throw new AgentCodecError('empty agent message');
    const r = new SshReader(body, MAX_FRAME);
    const code = r.u8('message type');
    switch (code) {
      case AgentMessage.REQUEST_IDENTITIES:
        r.end('REQUEST_IDENTITIES');
        return { type: 'request_identities' };
      case AgentMessage.SIGN_REQUEST: {
        const keyBlob = r.string('key blob');
        const data = r.string('data to sign');
        const flags = r.u32('flags');
        r.end('SIGN_REQUEST');
        return { type: 'sign_request', keyBlob: keyBlob.slice(), data: data.slice(), flags };
      }
      case AgentMessage.ADD_IDENTITY: {
        const key = readPrivateKey(r);
        endOrWipe(r, 'ADD_IDENTITY', key);
        return { type: 'add_identity', key };
      }
      case AgentMessage.ADD_ID_CONSTRAINED: {
        const key = readPrivateKey(r);
        try {
          return { type: 'add_id_constrained', key, constraints: readConstraints(r) };
        } catch (err) {
          wipeKey(key);
          throw err;
        }
      }
      case AgentMessage.REMOVE_IDENTITY: {
        // Kept raw: an unparsable blob simply matches no key (9.2 answers FAILURE).
        const keyBlob = r.string('key blob');
        r.end('REMOVE_IDENTITY');
        return { type: 'remove_identity', keyBlob: keyBlob.slice() };
      }
      case AgentMessage.REMOVE_ALL_IDENTITIES:
        r.end('REMOVE_ALL_IDENTITIES');
        return { type: 'remove_all_identities' };
      case AgentMessage.REMOVE_ALL_RSA_IDENTITIES:
        r.end('REMOVE_ALL_RSA_IDENTITIES');
        return { type: 'remove_all_rsa_identities' };
      case AgentMessage.ADD_SMARTCARD_KEY:
      case AgentMessage.REMOVE_SMARTCARD_KEY:
      case AgentMessage.ADD_SMARTCARD_KEY_CONSTRAINED: {
        // RFC 9987 §5.2.6: the token id is opaque to the protocol (OpenSSH: a
        // PKCS#11 library path); the PIN is a secret.
        const tokenId = name(r, 'token id', MAX_FRAME);
        const pinView = r.string('PIN');
        if (code === AgentMessage.ADD_SMARTCARD_KEY_CONSTRAINED) {
          const constraints = readConstraints(r);
          return { type: 'add_smartcard_key_constrained', tokenId, pin: pinView.slice(), constraints };
        }
        r.end('smartcard request');
        const type = code === AgentMessage.ADD_SMARTCARD_KEY ? 'add_smartcard_key' : 'remove_smartcard_key';
        return { type, tokenId, pin: pinView.slice() };
      }
      case AgentMessage.LOCK:
      case AgentMessage.UNLOCK: {
        const pass = r.string('passphrase');
        r.end(code === AgentMessage.LOCK ? 'LOCK' : 'UNLOCK');
        return { type: code === AgentMessage.LOCK ? 'lock' : 'unlock', passphrase: pass.slice() };
      }
      case AgentMessage.EXTENSION:
        return readExtension(r);
      default:
        return { type: 'unknown', code, payload: r.bytes(r.remaining).slice() };
    }
  });
}

function readExtension(r: SshReader): AgentRequest {
  const extName = name(r, 'extension name');
  if (extName === EXT_QUERY) {
    r.end('query extension');
    return { type: 'extension_query' };
  }
  if (extName === EXT_SESSION_BIND) {
    const hostKey = r.string('session-bind host key');
    const sessionId = r.string('session-bind session id');
    const signature = r.string('session-bind signature');
    const isForwarding = bool(r, 'session-bind is_forwarding');
    r.end('session-bind extension');
    if (sessionId.length === 0 || sessionId.length > MAX_SESSION_ID) {
      throw new AgentCodecError(`session-bind session id of ${sessionId.length} bytes (1..${MAX_SESSION_ID} allowed)`);
    }
    return {
      type: 'session_bind',
      hostKey: hostKey.slice(),
      sessionId: sessionId.slice(),
      signature: signature.slice(),
      isForwarding,
    };
  }
  // RFC 9987 §5.8: the contents follow the name directly, with no string
  // wrapper (Go's client wrapped them until golang/go#51689).
  return { type: 'extension', name: extName, data: r.bytes(r.remaining).slice() };
}

/**
 * For tests and benchmark clients. SshWriter copies its inputs, so the secrets of
 * an ADD/LOCK also sit in garbage-collected chunks until they are reclaimed.
 */
export function encodeRequest(req: AgentRequest): Uint8Array {
  const w = new SshWriter();
  switch (req.type) {
    case 'request_identities':
      return w.u8(AgentMessage.REQUEST_IDENTITIES).finish();
    case 'sign_request':
      return w.u8(AgentMessage.SIGN_REQUEST).string(req.keyBlob).string(req.data).u32(req.flags).finish();
    case 'add_identity':
      w.u8(AgentMessage.ADD_IDENTITY);
      writePrivateKey(w, req.key);
      return w.finish();
    case 'add_id_constrained':
      w.u8(AgentMessage.ADD_ID_CONSTRAINED);
      writePrivateKey(w, req.key);
      writeConstraints(w, req.constraints);
      return w.finish();
    case 'remove_identity':
      return w.u8(AgentMessage.REMOVE_IDENTITY).string(req.keyBlob).finish();
    case 'remove_all_identities':
      return w.u8(AgentMessage.REMOVE_ALL_IDENTITIES).finish();
    case 'remove_all_rsa_identities':
      return w.u8(AgentMessage.REMOVE_ALL_RSA_IDENTITIES).finish();
    case 'add_smartcard_key':
      return w.u8(AgentMessage.ADD_SMARTCARD_KEY).string(req.tokenId).string(req.pin).finish();
    case 'add_smartcard_key_constrained':
      w.u8(AgentMessage.ADD_SMARTCARD_KEY_CONSTRAINED).string(req.tokenId).string(req.pin);
      writeConstraints(w, req.constraints);
      return w.finish();
    case 'remove_smartcard_key':
      return w.u8(AgentMessage.REMOVE_SMARTCARD_KEY).string(req.tokenId).string(req.pin).finish();
    case 'lock':
      return w.u8(AgentMessage.LOCK).string(req.passphrase).finish();
    case 'unlock':
      return w.u8(AgentMessage.UNLOCK).string(req.passphrase).finish();
    case 'extension_query':
      return w.u8(AgentMessage.EXTENSION).string(EXT_QUERY).finish();
    case 'session_bind':
      return w
        .u8(AgentMessage.EXTENSION)
        .string(EXT_SESSION_BIND)
        .string(req.hostKey)
        .string(req.sessionId)
        .string(req.signature)
        .u8(req.isForwarding ? 1 : 0)
        .finish();
    case 'extension':
      return w.u8(AgentMessage.EXTENSION).string(req.name).raw(req.data).finish();
    case 'unknown':
      return w.u8(req.code).raw(req.payload).finish();
  }
}

/** Zeroes every secret a decoded request carries (passphrases, PINs, private key parts). */
export function wipeRequest(req: AgentRequest): void {
  switch (req.type) {
    case 'add_identity':
    case 'add_id_constrained':
      wipeKey(req.key);
      break;
    case 'add_smartcard_key':
    case 'add_smartcard_key_constrained':
    case 'remove_smartcard_key':
      req.pin.fill(0);
      break;
    case 'lock':
    case 'unlock':
      req.passphrase.fill(0);
      break;
    default:
      break;
  }
}

function wipeKey(k: AgentPrivateKey): void {
  switch (k.keyType) {
    case 'ssh-ed25519':
    case 'ssh-ed25519-cert-v01@openssh.com':
      k.seed.fill(0);
      break;
    case KEY_ED25519_EXPANDED:
      k.expandedSecret.fill(0);
      break;
    case 'ssh-rsa':
    case 'ssh-rsa-cert-v01@openssh.com':
      for (const b of [k.d, k.iqmp, k.p, k.q]) b.fill(0);
      break;
    default:
      k.d.fill(0);
  }
}

function endOrWipe(r: SshReader, what: string, key: AgentPrivateKey): void {
  try {
    r.end(what);
  } catch (err) {
    wipeKey(key);
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Private keys (ADD_IDENTITY)
// ---------------------------------------------------------------------------

const ECDSA_TYPES: Record<string, EcdsaCurve> = {
  'ecdsa-sha2-nistp256': 'nistp256',
  'ecdsa-sha2-nistp384': 'nistp384',
  'ecdsa-sha2-nistp521': 'nistp521',
};
const CERT_BASE: Record<string, PlainPublicKey['keyType']> = {
  'ssh-ed25519-cert-v01@openssh.com': 'ssh-ed25519',
  'ecdsa-sha2-nistp256-cert-v01@openssh.com': 'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384-cert-v01@openssh.com': 'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521-cert-v01@openssh.com': 'ecdsa-sha2-nistp521',
  'ssh-rsa-cert-v01@openssh.com': 'ssh-rsa',
};

/**
 * Reads `string keytype, key fields, string comment`. Fields are validated as
 * views into the frame; secrets are copied only once the whole key parsed, so a
 * rejected key leaves no copy behind.
 */
function readPrivateKey(r: SshReader): AgentPrivateKey {
  const keyType = name(r, 'key type');
  const curve = ECDSA_TYPES[keyType];
  if (curve !== undefined) {
    const k = readEcdsaPublic(r, keyType as EcdsaKeyType);
    const d = r.mpint('ECDSA private scalar');
    const comment = text(r, 'comment');
    return { keyType: k.keyType, curve: k.curve, q: k.q, d: fixedScalar(d, curve), comment };
  }
  if (CERT_BASE[keyType] !== undefined) return readCertPrivateKey(r, keyType as CertKeyType);
  switch (keyType) {
    case 'ssh-ed25519': {
      // RFC 9987 §5.2.3: ENC(A), then k‖ENC(A); OpenSSH requires exactly 64 bytes.
      const { publicKey, seedView } = readEd25519Pair(r);
      const comment = text(r, 'comment');
      return { keyType, publicKey: publicKey.slice(), seed: seedView.slice(), comment };
    }
    case KEY_ED25519_EXPANDED: {
      // spec.torproject.org/ssh-protocols.html: string A(32), string a‖RH(64).
      const publicKey = r.string('ed25519 public key');
      const secret = r.string('ed25519 expanded secret');
      if (publicKey.length !== 32) throw new AgentCodecError('ed25519 public key must be 32 bytes');
      if (secret.length !== 64) throw new AgentCodecError('ed25519 expanded secret must be 64 bytes');
      const comment = text(r, 'comment');
      return { keyType, publicKey: publicKey.slice(), expandedSecret: secret.slice(), comment };
    }
    case 'ssh-rsa': {
      // RFC 9987 §5.2.4: n before e here, unlike the public blob (RFC 4253 §6.6).
      const n = r.mpint('RSA n');
      const e = r.mpint('RSA e');
      const d = r.mpint('RSA d');
      const iqmp = r.mpint('RSA iqmp');
      const p = r.mpint('RSA p');
      const q = r.mpint('RSA q');
      if (n.length === 0 || e.length === 0) throw new AgentCodecError('RSA modulus and exponent must be non-zero');
      const comment = text(r, 'comment');
      return {
        keyType,
        n: n.slice(),
        e: e.slice(),
        d: d.slice(),
        iqmp: iqmp.slice(),
        p: p.slice(),
        q: q.slice(),
        comment,
      };
    }
    default:
      // RFC 9987 §5.2: an unrecognised key type gets FAILURE. Its fields cannot
      // be skipped (no length), so nothing after them is readable either.
      throw new AgentCodecError(`unsupported key type "${printable(keyType)}"`, { refusal: 'unsupported_algorithm' });
  }
}

/**
 * OpenSSH sshkey_private_deserialize: a certificate key starts with the whole
 * certificate, whose type must equal the name, followed by only the private
 * parts of the underlying key (ed25519 repeats A, which must match the cert).
 */
function readCertPrivateKey(r: SshReader, keyType: CertKeyType): AgentPrivateKey {
  const certificate = r.string('certificate');
  const cert = parseCertificate(certificate);
  if (cert.keyType !== keyType) {
    throw new AgentCodecError(`certificate of type "${cert.keyType}" sent as "${keyType}"`, { refusal: 'invalid_certificate' });
  }
  const key = cert.key;
  switch (key.keyType) {
    case 'ssh-ed25519': {
      const { publicKey, seedView } = readEd25519Pair(r);
      if (!equalBytes(publicKey, key.publicKey)) {
        throw new AgentCodecError('ed25519 public key does not match the certificate', { refusal: 'key_mismatch' });
      }
      const comment = text(r, 'comment');
      return {
        keyType: 'ssh-ed25519-cert-v01@openssh.com',
        certificate: certificate.slice(),
        cert,
        publicKey: publicKey.slice(),
        seed: seedView.slice(),
        comment,
      };
    }
    case 'ssh-rsa': {
      const d = r.mpint('RSA d');
      const iqmp = r.mpint('RSA iqmp');
      const p = r.mpint('RSA p');
      const q = r.mpint('RSA q');
      const comment = text(r, 'comment');
      return {
        keyType: 'ssh-rsa-cert-v01@openssh.com',
        certificate: certificate.slice(),
        cert,
        d: d.slice(),
        iqmp: iqmp.slice(),
        p: p.slice(),
        q: q.slice(),
        comment,
      };
    }
    default: {
      const d = r.mpint('ECDSA private scalar');
      const comment = text(r, 'comment');
      return {
        keyType: keyType as `ecdsa-sha2-${EcdsaCurve}-cert-v01@openssh.com`,
        certificate: certificate.slice(),
        cert,
        d: fixedScalar(d, key.curve),
        comment,
      };
    }
  }
}

function readEd25519Pair(r: SshReader): { publicKey: Uint8Array; seedView: Uint8Array } {
  const publicKey = r.string('ed25519 public key');
  const sk = r.string('ed25519 secret key');
  if (publicKey.length !== 32) throw new AgentCodecError('ed25519 public key must be 32 bytes');
  if (sk.length !== 64) throw new AgentCodecError('ed25519 secret key must be 64 bytes (seed and public key)');
  // The second half of k‖A is only a cached copy of A; a different value would
  // make libsodium-style signers hash the wrong key into every signature.
  if (!equalBytes(sk.subarray(32), publicKey)) {
    throw new AgentCodecError('ed25519 secret key does not end with its public key', { refusal: 'key_mismatch' });
  }
  return { publicKey, seedView: sk.subarray(0, 32) };
}

/** mpint d → big-endian, left-padded to the field width (1 ≤ d, at most that width). */
function fixedScalar(d: Uint8Array, curve: EcdsaCurve): Uint8Array {
  const width = CURVE_BYTES[curve];
  if (d.length === 0 || d.length > width) throw new AgentCodecError(`ECDSA private scalar out of range for ${curve}`);
  const out = new Uint8Array(width);
  out.set(d, width - d.length);
  return out;
}

function writePrivateKey(w: SshWriter, k: AgentPrivateKey): void {
  w.string(k.keyType);
  switch (k.keyType) {
    case 'ssh-ed25519':
    case 'ssh-ed25519-cert-v01@openssh.com': {
      if (k.keyType === 'ssh-ed25519-cert-v01@openssh.com') w.string(k.certificate);
      const sk = new Uint8Array(64);
      sk.set(k.seed, 0);
      sk.set(k.publicKey, 32);
      w.string(k.publicKey).string(sk);
      sk.fill(0);
      break;
    }
    case KEY_ED25519_EXPANDED:
      w.string(k.publicKey).string(k.expandedSecret);
      break;
    case 'ssh-rsa':
      w.mpint(k.n).mpint(k.e).mpint(k.d).mpint(k.iqmp).mpint(k.p).mpint(k.q);
      break;
    case 'ssh-rsa-cert-v01@openssh.com':
      w.string(k.certificate).mpint(k.d).mpint(k.iqmp).mpint(k.p).mpint(k.q);
      break;
    case 'ecdsa-sha2-nistp256':
    case 'ecdsa-sha2-nistp384':
    case 'ecdsa-sha2-nistp521':
      w.string(k.curve).string(k.q).mpint(k.d);
      break;
    default:
      w.string(k.certificate).mpint(k.d);
  }
  w.string(k.comment);
}

/**
 * The public key blob the agent lists for a private key. An expanded Tor key is
 * advertised as plain ssh-ed25519: its signatures are ordinary Ed25519 under A.
 */
export function publicKeyBlobOf(k: AgentPrivateKey): Uint8Array {
  switch (k.keyType) {
    case 'ssh-ed25519':
    case KEY_ED25519_EXPANDED:
      return encodePublicKeyBlob({ keyType: 'ssh-ed25519', publicKey: k.publicKey });
    case 'ssh-rsa':
      return encodePublicKeyBlob({ keyType: 'ssh-rsa', e: k.e, n: k.n });
    case 'ecdsa-sha2-nistp256':
    case 'ecdsa-sha2-nistp384':
    case 'ecdsa-sha2-nistp521':
      return encodePublicKeyBlob({ keyType: k.keyType, curve: k.curve, q: k.q });
    default:
      return k.certificate.slice();
  }
}

// ---------------------------------------------------------------------------
// Public keys and certificates
// ---------------------------------------------------------------------------

/**
 * Parses a public key or certificate blob (RFC 4253 §6.6, RFC 5656 §3.1,
 * RFC 8709 §4, PROTOCOL.certkeys). Other key types (ssh-dss, sk-*, …) are
 * refused: this agent never holds them.
 */
export function parsePublicKeyBlob(blob: Uint8Array): SshPublicKey {
  return guarded(() => {
    const r = new SshReader(blob, MAX_FRAME);
    const keyType = name(r, 'key type');
    const key = CERT_BASE[keyType] !== undefined ? readCertBody(r, keyType as CertKeyType) : readPlainBody(r, keyType);
    r.end('public key blob');
    return key;
  });
}

export function encodePublicKeyBlob(k: PlainPublicKey): Uint8Array {
  const w = new SshWriter().string(k.keyType);
  writePlainFields(w, k);
  return w.finish();
}

export function isCertificate(k: SshPublicKey): k is SshCertificate {
  return 'nonce' in k;
}

function parseCertificate(blob: Uint8Array): SshCertificate {
  const key = parsePublicKeyBlob(blob);
  if (!isCertificate(key)) throw new AgentCodecError('expected a certificate');
  return key;
}

function readPlainBody(r: SshReader, keyType: string): PlainPublicKey {
  if (ECDSA_TYPES[keyType] !== undefined) return readEcdsaPublic(r, keyType as EcdsaKeyType);
  switch (keyType) {
    case 'ssh-ed25519': {
      const pk = r.string('ed25519 public key');
      if (pk.length !== 32) throw new AgentCodecError('ed25519 public key must be 32 bytes');
      return { keyType, publicKey: pk.slice() };
    }
    case 'ssh-rsa': {
      const e = r.mpint('RSA e');
      const n = r.mpint('RSA n');
      if (n.length === 0 || e.length === 0) throw new AgentCodecError('RSA modulus and exponent must be non-zero');
      return { keyType, e: e.slice(), n: n.slice() };
    }
    default:
      throw new AgentCodecError(`unsupported key type "${printable(keyType)}"`, { refusal: 'unsupported_algorithm' });
  }
}

/**
 * RFC 5656 §3.1: the curve name is repeated and must match the key type.
 * OpenSSH (sshbuf_get_ec) accepts only uncompressed points.
 */
function readEcdsaPublic(r: SshReader, keyType: EcdsaKeyType): EcdsaPublicKey {
  const curve = ECDSA_TYPES[keyType]!;
  const named = name(r, 'curve name');
  if (named !== curve) throw new AgentCodecError(`curve "${printable(named)}" does not match key type ${keyType}`);
  const q = r.string('ECDSA public point');
  if (q.length !== 1 + 2 * CURVE_BYTES[curve] || q[0] !== 0x04) {
    throw new AgentCodecError(`ECDSA public point is not an uncompressed ${curve} point`);
  }
  return { keyType, curve, q: q.slice() };
}

function writePlainFields(w: SshWriter, k: PlainPublicKey): void {
  switch (k.keyType) {
    case 'ssh-ed25519':
      w.string(k.publicKey);
      break;
    case 'ssh-rsa':
      w.mpint(k.e).mpint(k.n);
      break;
    default:
      w.string(k.curve).string(k.q);
  }
}

/** PROTOCOL.certkeys: nonce, the base key's public fields, then the certificate fields. */
function readCertBody(r: SshReader, keyType: CertKeyType): SshCertificate {
  const nonce = r.string('certificate nonce');
  const key = readPlainBody(r, CERT_BASE[keyType]!);
  const serial = u64(r, 'certificate serial');
  const typeCode = r.u32('certificate type');
  if (typeCode !== 1 && typeCode !== 2) throw new AgentCodecError(`certificate type ${typeCode} is neither user (1) nor host (2)`, { refusal: 'invalid_certificate' });
  const keyId = text(r, 'certificate key id');
  const principals = readPrincipals(r.string('certificate principals'));
  const validAfter = u64(r, 'certificate valid_after');
  const validBefore = u64(r, 'certificate valid_before');
  const criticalOptions = r.string('certificate critical options');
  const extensions = r.string('certificate extensions');
  const reserved = r.string('certificate reserved');
  const signatureKey = r.string('certificate signature key');
  const signature = r.string('certificate signature');
  return {
    keyType,
    nonce: nonce.slice(),
    key,
    serial,
    certType: typeCode === 1 ? 'user' : 'host',
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions: criticalOptions.slice(),
    extensions: extensions.slice(),
    reserved: reserved.slice(),
    signatureKey: signatureKey.slice(),
    signature: signature.slice(),
  };
}

function readPrincipals(blob: Uint8Array): string[] {
  const r = new SshReader(blob, MAX_FRAME);
  const out: string[] = [];
  while (r.remaining > 0) {
    if (out.length >= MAX_CERT_PRINCIPALS) throw new AgentCodecError(`more than ${MAX_CERT_PRINCIPALS} certificate principals`);
    out.push(text(r, 'certificate principal'));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Constraints (ADD_ID_CONSTRAINED, ADD_SMARTCARD_KEY_CONSTRAINED)
// ---------------------------------------------------------------------------

const CONSTRAIN_LIFETIME = 1;
const CONSTRAIN_CONFIRM = 2;
const CONSTRAIN_EXTENSION = 255;

/**
 * Constraints run to the end of the message (RFC 9987 §5.2.7). An unknown
 * constraint byte cannot be skipped (no length), so it fails the message; that
 * includes 3, OpenSSH's retired XMSS "maxsign". A repeated constraint is refused,
 * as OpenSSH does ("already set"), so no rule has to pick which copy wins.
 */
function readConstraints(r: SshReader): KeyConstraint[] {
  const out: KeyConstraint[] = [];
  const seen = new Set<string>();
  const once = (kind: string) => {
    if (seen.has(kind)) throw new AgentCodecError(`key constraint ${kind} given twice`);
    seen.add(kind);
  };
  while (r.remaining > 0) {
    const id = r.u8('constraint type');
    switch (id) {
      case CONSTRAIN_LIFETIME:
        once('lifetime');
        out.push({ kind: 'lifetime', seconds: r.u32('lifetime seconds') });
        break;
      case CONSTRAIN_CONFIRM:
        once('confirm');
        out.push({ kind: 'confirm' });
        break;
      case CONSTRAIN_EXTENSION: {
        const extName = name(r, 'constraint extension name');
        switch (extName) {
          case CONSTRAINT_RESTRICT_DESTINATION:
            once(extName);
            out.push({ kind: 'restrict-destination', constraints: readDestinationConstraints(r.string(extName)) });
            break;
          case CONSTRAINT_ASSOCIATED_CERTS: {
            // ssh-agent.c parse_key_constraint_extension: bool certs_only, string { string cert }*.
            once(extName);
            const certsOnly = bool(r, 'certs_only');
            out.push({ kind: 'associated-certs', certsOnly, certs: readBlobList(r.string(extName)) });
            break;
          }
          case CONSTRAINT_SK_PROVIDER:
            once(extName);
            out.push({ kind: 'sk-provider', path: name(r, 'sk-provider path', MAX_FRAME) });
            break;
          default:
            out.push({ kind: 'unknown-extension', name: extName, data: r.bytes(r.remaining).slice() });
        }
        break;
      }
      default:
        throw new AgentCodecError(`unknown key constraint ${id}`, { refusal: 'unsupported_constraint' });
    }
  }
  return out;
}

function readBlobList(blob: Uint8Array): Uint8Array[] {
  const r = new SshReader(blob, MAX_FRAME);
  const out: Uint8Array[] = [];
  while (r.remaining > 0) {
    if (out.length >= MAX_ASSOCIATED_CERTS) throw new AgentCodecError(`more than ${MAX_ASSOCIATED_CERTS} associated certificates`);
    out.push(r.string('associated certificate').slice());
  }
  return out;
}

/**
 * restrict-destination-v00 (PROTOCOL.agent; the exact nesting is 9.2's
 * authfd.c encode_dest_constraint / ssh-agent.c parse_dest_constraint):
 *   string { constraint* }, constraint = string { string from-hop, string to-hop, string reserved },
 *   hop = string user, string hostname, string reserved, { string keyblob, bool is_ca }*
 * The reserved fields were only documented in 9.8; OpenSSH refuses them non-empty,
 * as do we, since their meaning would be a restriction we could not honour.
 */
function readDestinationConstraints(blob: Uint8Array): DestinationConstraint[] {
  const r = new SshReader(blob, MAX_FRAME);
  const out: DestinationConstraint[] = [];
  while (r.remaining > 0) {
    if (out.length >= MAX_DESTINATION_CONSTRAINTS) {
      throw new AgentCodecError(`more than ${MAX_DESTINATION_CONSTRAINTS} destination constraints`);
    }
    const c = new SshReader(r.string('destination constraint'), MAX_FRAME);
    const from = readHop(c.string('"from" hop'));
    const to = readHop(c.string('"to" hop'));
    if (c.string('destination constraint reserved').length !== 0) {
      throw new AgentCodecError('destination constraint has unsupported extensions');
    }
    c.end('destination constraint');
    // ssh-agent.c parse_dest_constraint: a "from" hop is either the origin (no
    // host, no keys) or a host with keys, never a user; a "to" hop needs both.
    if ((from.hostname === '') !== (from.hostKeys.length === 0) || from.user !== '') {
      throw new AgentCodecError('inconsistent "from" in destination constraint');
    }
    if (to.hostname === '' || to.hostKeys.length === 0) {
      throw new AgentCodecError('incomplete "to" in destination constraint');
    }
    out.push({ from, to });
  }
  // OpenSSH would add a key with an empty list unrestricted; a client that asked
  // for a restriction must not silently get none.
  if (out.length === 0) throw new AgentCodecError('empty destination constraint');
  return out;
}

function readHop(blob: Uint8Array): DestinationHop {
  const r = new SshReader(blob, MAX_FRAME);
  const user = text(r, 'hop user');
  const hostname = text(r, 'hop hostname');
  if (r.string('hop reserved').length !== 0) throw new AgentCodecError('destination hop has unsupported extensions');
  const hostKeys: DestinationHostKey[] = [];
  while (r.remaining > 0) {
    if (hostKeys.length >= MAX_HOP_KEYS) throw new AgentCodecError(`more than ${MAX_HOP_KEYS} host keys in a destination hop`);
    const keyBlob = r.string('hop host key');
    const isCa = bool(r, 'hop is_ca');
    hostKeys.push({ blob: keyBlob.slice(), isCa });
  }
  return { user, hostname, hostKeys };
}

function writeConstraints(w: SshWriter, constraints: KeyConstraint[]): void {
  for (const c of constraints) {
    switch (c.kind) {
      case 'lifetime':
        w.u8(CONSTRAIN_LIFETIME).u32(c.seconds);
        break;
      case 'confirm':
        w.u8(CONSTRAIN_CONFIRM);
        break;
      case 'restrict-destination': {
        const list = new SshWriter();
        for (const d of c.constraints) {
          const one = new SshWriter().string(writeHop(d.from)).string(writeHop(d.to)).string(new Uint8Array(0));
          list.string(one.finish());
        }
        w.u8(CONSTRAIN_EXTENSION).string(CONSTRAINT_RESTRICT_DESTINATION).string(list.finish());
        break;
      }
      case 'associated-certs': {
        const list = new SshWriter();
        for (const cert of c.certs) list.string(cert);
        w.u8(CONSTRAIN_EXTENSION).string(CONSTRAINT_ASSOCIATED_CERTS).u8(c.certsOnly ? 1 : 0).string(list.finish());
        break;
      }
      case 'sk-provider':
        w.u8(CONSTRAIN_EXTENSION).string(CONSTRAINT_SK_PROVIDER).string(c.path);
        break;
      case 'unknown-extension':
        w.u8(CONSTRAIN_EXTENSION).string(c.name).raw(c.data);
        break;
    }
  }
}

function writeHop(h: DestinationHop): Uint8Array {
  const w = new SshWriter().string(h.user).string(h.hostname).string(new Uint8Array(0));
  for (const k of h.hostKeys) w.string(k.blob).u8(k.isCa ? 1 : 0);
  return w.finish();
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

export function decodeResponse(body: Uint8Array): AgentResponse {
  return guarded(() => {
    if (body.length === 0) throw new AgentCodecError('empty agent message');
    const r = new SshReader(body, MAX_FRAME);
    const code = r.u8('message type');
    switch (code) {
      case AgentMessage.FAILURE:
        r.end('FAILURE');
        return { type: 'failure' };
      case AgentMessage.SUCCESS:
        if (r.remaining === 0) return { type: 'success' };
        // draft-miller-ssh-agent-04 §4.7.1 answered "query" with SUCCESS and the names.
        return { type: 'query_response', extensions: readNames(r), legacy: true };
      case AgentMessage.IDENTITIES_ANSWER: {
        const n = r.u32('identity count');
        // Each identity takes at least 8 bytes; checking first keeps a lying
        // count from driving the loop.
        if (n > MAX_IDENTITIES || n * 8 > r.remaining) {
          throw new AgentCodecError(`identity count ${n} is too large`);
        }
        const identities: AgentIdentity[] = [];
        for (let i = 0; i < n; i++) {
          const keyBlob = r.string('identity key blob').slice();
          identities.push({ keyBlob, comment: text(r, 'identity comment') });
        }
        r.end('IDENTITIES_ANSWER');
        return { type: 'identities_answer', identities };
      }
      case AgentMessage.SIGN_RESPONSE: {
        const signature = r.string('signature');
        r.end('SIGN_RESPONSE');
        return { type: 'sign_response', signature: signature.slice() };
      }
      case AgentMessage.EXTENSION_FAILURE:
        r.end('EXTENSION_FAILURE');
        return { type: 'extension_failure' };
      case AgentMessage.EXTENSION_RESPONSE: {
        const extName = name(r, 'extension name');
        if (extName === EXT_QUERY) return { type: 'query_response', extensions: readNames(r) };
        return { type: 'extension_response', name: extName, data: r.bytes(r.remaining).slice() };
      }
      default:
        // OpenSSH's client also reads 30 and 102 (old commercial agents) as failure.
        return { type: 'unknown', code, payload: r.bytes(r.remaining).slice() };
    }
  });
}

/** RFC 9987 §5.8.1 `string[]`: consecutive strings to the end, no count. */
function readNames(r: SshReader): string[] {
  const out: string[] = [];
  while (r.remaining > 0) {
    if (out.length >= MAX_NAMES) throw new AgentCodecError(`more than ${MAX_NAMES} extension names`);
    out.push(name(r, 'extension name'));
  }
  return out;
}

export function encodeResponse(res: AgentResponse): Uint8Array {
  const w = new SshWriter();
  switch (res.type) {
    case 'failure':
      return w.u8(AgentMessage.FAILURE).finish();
    case 'success':
      return w.u8(AgentMessage.SUCCESS).finish();
    case 'identities_answer':
      if (res.identities.length > MAX_IDENTITIES) {
        throw new AgentCodecError(`cannot list more than ${MAX_IDENTITIES} identities`);
      }
      w.u8(AgentMessage.IDENTITIES_ANSWER).u32(res.identities.length);
      for (const id of res.identities) w.string(id.keyBlob).string(id.comment);
      return w.finish();
    case 'sign_response':
      return w.u8(AgentMessage.SIGN_RESPONSE).string(res.signature).finish();
    case 'extension_failure':
      return w.u8(AgentMessage.EXTENSION_FAILURE).finish();
    case 'query_response':
      if (res.legacy) w.u8(AgentMessage.SUCCESS);
      else w.u8(AgentMessage.EXTENSION_RESPONSE).string(EXT_QUERY);
      for (const n of res.extensions) w.string(n);
      return w.finish();
    case 'extension_response':
      return w.u8(AgentMessage.EXTENSION_RESPONSE).string(res.name).raw(res.data).finish();
    case 'unknown':
      return w.u8(res.code).raw(res.payload).finish();
  }
}

// ---------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------

/** The SSH signature blob: `string algorithm, string signature` (RFC 4253 §6.6). */
export function encodeSshSignature(algorithm: string, sig: Uint8Array): Uint8Array {
  return new SshWriter().string(algorithm).string(sig).finish();
}

export function parseSshSignature(blob: Uint8Array): { algorithm: string; signature: Uint8Array } {
  return guarded(() => {
    const r = new SshReader(blob, MAX_FRAME);
    const algorithm = name(r, 'signature algorithm');
    const signature = r.string('signature').slice();
    r.end('signature blob');
    return { algorithm, signature };
  });
}

/**
 * RFC 5656 §3.1.2: the ECDSA signature field is `mpint r, mpint s`. `rawRS` is
 * the fixed-width r‖s (IEEE P1363, what Node's `dsaEncoding: 'ieee-p1363'` gives).
 */
export function ecdsaSigBlob(rawRS: Uint8Array): Uint8Array {
  if (rawRS.length === 0 || rawRS.length % 2 !== 0) {
    throw new AgentCodecError('ECDSA signature must be r‖s of equal halves');
  }
  const half = rawRS.length / 2;
  return new SshWriter().mpint(rawRS.subarray(0, half)).mpint(rawRS.subarray(half)).finish();
}

// ---------------------------------------------------------------------------
// Reading helpers
// ---------------------------------------------------------------------------

/** Runs a decoder so that malformed input surfaces only as AgentCodecError. */
function guarded<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof AgentCodecError) throw err;
    if (err instanceof SshFormatError) throw new AgentCodecError(err.message, { cause: err });
    throw err;
  }
}

/**
 * RFC 4251 §5 boolean: any non-zero byte is TRUE. OpenSSH reads it with
 * sshbuf_get_u8 and tests `!= 0`, so we do too; we always write 0 or 1.
 */
function bool(r: SshReader, what: string): boolean {
  return r.u8(what) !== 0;
}

function u64(r: SshReader, what: string): bigint {
  const hi = r.u32(what);
  const lo = r.u32(what);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** A text field; NUL is refused as in OpenSSH's sshbuf_get_cstring. */
function text(r: SshReader, what: string): string {
  return r.text(what);
}

/** A protocol name (key type, extension, curve): text with a length cap. */
function name(r: SshReader, what: string, max = MAX_NAME_LENGTH): string {
  const s = r.text(what);
  if (s.length > max) throw new AgentCodecError(`${what} is longer than ${max} characters`);
  return s;
}


