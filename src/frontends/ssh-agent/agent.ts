/**
 * The ssh-agent front end: a Unix socket that speaks the agent protocol (RFC 9987, OpenSSH
 * 9.2 as the compatibility floor) so that `ssh`, `ssh-add` and `ssh-keygen` work unchanged,
 * while every key stays in the vault and every signature takes the vault's request path.
 *
 * One socket is one principal (`ssh-agent:<name>`). It offers the vault keys its
 * configuration names (label patterns) whose purpose allows SSH, plus the keys added to it
 * with `ssh-add`, which are stored in the vault like any other key (origin `imported`,
 * purpose `ssh`, attributes `ssh.*`) and survive a restart unless added with a lifetime.
 * What the agent refuses itself (locked, unknown key, a refused add ...) is audited and
 * logged with its cause (refusals.ts); what the vault refuses, the vault audits.
 */
import { decodeTorExtension, encodeTorReply, EXT_TOR_BLIND_SIGN, EXT_TOR_RSA_SIGN, EXT_TOR_SIGN, EXT_TOR_X25519, TOR_EXTENSIONS, x25519KeyOf, type TorExtensionRequest } from './tor-extensions.js';
import { createServer, type Server, type Socket } from 'node:net';
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { createPublicKey, randomBytes, randomUUID, scrypt as scryptCb } from 'node:crypto';
import { promisify } from 'node:util';
import { CustosError, isCustosError } from '../../core/errors.js';
import { bytesToBase64, equalBytes, wipe } from '../../core/bytes.js';
import { printable } from '../../core/text.js';
import type { KeyRecord, Principal } from '../../core/types.js';
import type { Vault } from '../../vault/vault.js';
import { isExpired } from '../../vault/vault.js';
import { purposeAllows, purposeOf } from '../../core/purpose.js';
import {
  AgentCodecError,
  decodeRequest,
  encodeResponse,
  EXT_QUERY,
  EXT_SESSION_BIND,
  encodePublicKeyBlob,
  frame,
  FrameReader,
  isCertificate,
  parsePublicKeyBlob,
  publicKeyBlobOf,
  wipeRequest,
  type AgentPrivateKey,
  type AgentRequest,
  type AgentResponse,
  type KeyConstraint,
} from './codec.js';
import { parseSignedData } from './signed-data.js';
import { prepareSocketDir, probe } from './socket.js';
import { decodeDestinations, encodeDestinations, identityPermitted, type Destination, type SessionBind } from './destinations.js';
import { blobOf, checkAddedKey, fingerprint, importableOf, rsaBits, rsaHashFor, sshCapable, sshFingerprint, sshSignature, verifyHostSignature } from './keys.js';
import { addedKeyDetails, lockedRefusal, malformedRefusal, refusalLine, setting, sha256hex, type Details, type Refusal } from './refusals.js';

const scrypt = promisify(scryptCb) as (pw: Uint8Array, salt: Uint8Array, len: number, opts: { N: number; r: number; p: number }) => Promise<Buffer>;

export interface AgentConfig {
  /** Names the socket in audit entries and in the labels of keys added to it. */
  name: string;
  socketPath: string;
  /** Vault keys this socket offers: labels, or patterns with `*`. */
  keys: string[];
  /** Legacy `ssh-rsa` (SHA-1) signatures, which OpenSSH 9.2's `ssh-add -T` asks for. */
  allowSha1: boolean;
  /**
   * Accept `ssh-add -c`: each use of such a key waits for an approval (`custos approve`).
   * Off unless someone is there to approve: a confirm key is then refused at add time.
   */
  allowConfirm?: boolean;
  maxConnections: number;
  /**
   * A request not answered within this many milliseconds gets FAILURE (EXTENSION_FAILURE for an
   * extension), audited, and the connection goes on to its next request: a slow or vanished
   * backend (an HSM taken away) never hangs a client. Default 30 s.
   */
  requestTimeoutMs?: number;
  /** Tor keys (purpose tor) this socket's Tor extensions reach: labels, or patterns with `*` (none by default). */
  torKeys?: string[];
  /** A private directory to propose when the socket's directory is refused (serve: `<data dir>/agent`). */
  privateDirHint?: string;
}

export interface AgentLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

interface Identity {
  key: KeyRecord;
  blob: Uint8Array;
  comment: string;
  /** Added over this socket (removable), as opposed to configured from the vault. */
  added: boolean;
  /** `ssh-add -h` restrictions, if any. */
  destinations: Destination[] | null;
}

interface Connection {
  id: number;
  binds: SessionBind[];
  /** Requests answered FAILURE at their deadline and still running (a change to the socket's keys waits for them). */
  late: Set<Promise<void>>;
  /** A session-bind was attempted on this connection, successful or not (OpenSSH session_bind_attempted). */
  bindAttempted: boolean;
}

/** Per connection, as in OpenSSH (`ssh-agent.c`, MAX_BINDS). */
const MAX_BINDS = 16;
/** Bounds of one identities answer (OpenSSH's client takes 2048 and 256 KiB). */
const MAX_LISTED = 1024;
const MAX_LISTING_BYTES = 200 * 1024;
/** Requests one connection may have waiting before its socket is paused. */
const MAX_QUEUED = 32;
/** Keys one socket may hold that were added over the protocol. */
const MAX_ADDED = 1024;
const LOCK_KDF = { N: 2 ** 14, r: 8, p: 1 };

/** The SPKI DER an `ssh-rsa` blob stands for (how the vault stores RSA public keys); else null. */
function rsaSpkiOf(blob: Uint8Array): Uint8Array | null {
  try {
    const k = parsePublicKeyBlob(blob);
    if (k.keyType !== 'ssh-rsa') return null;
    const b64 = (x: Uint8Array) => Buffer.from(x[0] === 0 ? x.subarray(1) : x).toString('base64url');
    return new Uint8Array(createPublicKey({ key: { kty: 'RSA', n: b64(k.n), e: b64(k.e) }, format: 'jwk' }).export({ format: 'der', type: 'spki' }));
  } catch {
    return null;
  }
}

/** The public key as the vault stores it, for the blobs that carry it as is (Ed25519, P-256); else null. */
function storedPublicKeyOf(blob: Uint8Array): Uint8Array | null {
  try {
    const k = parsePublicKeyBlob(blob);
    if (k.keyType === 'ssh-ed25519') return k.publicKey;
    if (k.keyType === 'ecdsa-sha2-nistp256') return k.q;
  } catch {
    // not a blob this agent knows: no key has it
  }
  return null;
}

/** Requests that change the socket's keys or lock: they wait for a late request still running on their connection. */
const CHANGES_KEYS: ReadonlySet<string> = new Set(['add_identity', 'add_id_constrained', 'remove_identity', 'remove_all_identities', 'remove_all_rsa_identities', 'lock', 'unlock', 'add_smartcard_key', 'add_smartcard_key_constrained', 'remove_smartcard_key']);

/** Keys read per query when walking a pattern's label range. */
const CANDIDATE_PAGE = 1000;

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

export class SshAgent {
  private server: Server | null = null;
  private readonly principal: Principal;
  private readonly patterns: RegExp[];
  private readonly torPatterns: RegExp[];
  private readonly connections = new Set<Socket>();
  private lock: { salt: Uint8Array; hash: Uint8Array } | null = null;
  private failedUnlocks = 0;
  private nextConn = 1;
  /** SSH key blobs by key id and version: computing one (RSA especially) costs more than a signature. */
  private readonly blobs = new Map<string, Uint8Array>();
  /** What the socket offers, valid for one key version and one set of hidden keys (identities()). */
  private offered: { version: number; hidden: string; list: Identity[] } | null = null;
  private sweeper: NodeJS.Timeout | null = null;
  /** Matched keys whose purpose keeps them off this socket, already named in the log. */
  private readonly purposeReported = new Set<string>();

  constructor(
    private readonly vault: Vault,
    readonly config: AgentConfig,
    private readonly log?: AgentLogger,
  ) {
    this.principal = { id: `ssh-agent:${config.name}`, kind: 'agent' };
    this.patterns = config.keys.map(globToRegExp);
    this.torPatterns = (config.torKeys ?? []).map(globToRegExp);
    // The label ranges the patterns can match: each pattern's literal start, without those
    // another one already covers ("ssh-*" and "ssh-ci-*" read one range).
    const starts = [...new Set(config.keys.map((g) => g.split('*')[0]!))];
    this.prefixes = starts.filter((p) => !starts.some((q) => q !== p && p.startsWith(q)));
  }

  /** What an operator's health page shows: is it listening, how many clients, is it locked. */
  status(): { listening: boolean; connections: number; locked: boolean } {
    return { listening: this.server?.listening ?? false, connections: this.connections.size, locked: this.lock !== null };
  }

  private readonly prefixes: string[];

  /**
   * The keys this socket could offer: those added over it (by the attribute index) and those
   * whose label falls in a pattern's literal start (by the label index, a page at a time). With
   * patterns such as "ssh-*", a vault of a million wallet keys costs this socket nothing; "*"
   * reads every key, as it says.
   */
  private async *candidates(): AsyncGenerator<KeyRecord & { tampered?: true }> {
    const seen = new Set<string>();
    for (const k of await this.vault.store.findKeysBy({ attribute: 'ssh.socket', value: this.config.name })) {
      seen.add(k.id);
      yield k;
    }
    for (const prefix of this.prefixes) {
      for (let after: string | null = null; ; ) {
        const page = await this.vault.store.listKeysPage(after, CANDIDATE_PAGE, prefix);
        for (const k of page) {
          if (seen.has(k.id)) continue;
          seen.add(k.id);
          yield k;
        }
        if (page.length < CANDIDATE_PAGE) break;
        after = page[page.length - 1]!.label;
      }
    }
  }

  /**
   * Listens on the socket, 0600, in a directory that only this user can write to (checked,
   * never changed: see socket.ts). A socket file left by a crash (nobody answers) is
   * replaced; a live agent's socket is never taken over.
   */
  async listen(): Promise<void> {
    const path = this.config.socketPath;
    prepareSocketDir(dirname(path), this.config.privateDirHint ?? '<data dir>/agent');
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new CustosError('config_invalid', `${path} exists and is not a socket; refusing to replace it.`);
      const state = await probe(path);
      if (state !== 'refused') throw new CustosError('config_invalid', `Another agent is listening on ${path} (or it could not be checked); stop it or choose another socket path.`);
      unlinkSync(path);
    }
    const server = createServer((s) => this.accept(s));
    server.maxConnections = this.config.maxConnections;
    // The umask closes the window between bind() and chmod() in which the socket is open.
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(old);
    }
    chmodSync(path, 0o600);
    this.server = server;
    await this.vault.ensureAgentRow(this.ctx(), this.config.name);
    await this.vault.destroyExpired(this.principal);
    await this.reportPurposes();
    this.sweeper = setInterval(() => void this.vault.destroyExpired(this.principal).catch(() => undefined), 2000);
    this.sweeper.unref();
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    for (const s of this.connections) s.destroy();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((r) => server.close(() => r()));
    try {
      unlinkSync(this.config.socketPath);
    } catch {
      // already gone
    }
  }

  private accept(socket: Socket): void {
    this.connections.add(socket);
    const conn: Connection = { id: this.nextConn++, binds: [], bindAttempted: false, late: new Set() };
    const reader = new FrameReader();
    let queue = Promise.resolve();
    // Requests are answered one at a time; a client that pipelines faster than that is
    // paused (TCP-style backpressure) instead of being buffered without bound.
    let queued = 0;
    const enqueue = (b: Uint8Array) => {
      queued++;
      if (queued >= MAX_QUEUED) socket.pause();
      queue = queue.then(() => this.respond(socket, conn, b)).finally(() => {
        queued--;
        if (queued < MAX_QUEUED / 2 && socket.isPaused() && socket.writableLength < 1024 * 1024) socket.resume();
      });
    };
    socket.on('data', (chunk) => {
      let bodies: Uint8Array[];
      try {
        bodies = reader.push(chunk);
      } catch (e) {
        // Oversized or zero-length frame: answer what arrived whole, then close, as OpenSSH does.
        const done = e instanceof AgentCodecError && 'completed' in e ? ((e as { completed?: Uint8Array[] }).completed ?? []) : [];
        this.log?.info({ socket: this.config.name, conn: conn.id, reason: 'bad_frame_length' }, `ssh-agent "${this.config.name}" closed a connection: ${(e as Error).message}`);
        for (const b of done) enqueue(b);
        void queue.then(() => socket.destroy());
        return;
      }
      // Replies go out in request order (RFC 9987 §3), one request at a time per connection;
      // other connections are served meanwhile.
      for (const b of bodies) enqueue(b);
      if (socket.writableLength > 1024 * 1024) socket.pause();
    });
    socket.on('drain', () => {
      if (queued < MAX_QUEUED / 2) socket.resume();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.connections.delete(socket));
  }

  private async respond(socket: Socket, conn: Connection, body: Uint8Array): Promise<void> {
    if (socket.destroyed) return;
    let reply: Uint8Array;
    let req: AgentRequest | null = null;
    try {
      try {
        req = decodeRequest(body);
      } catch (e) {
        if (e instanceof AgentCodecError) await this.refuse(malformedRefusal(body, e));
        throw e;
      }
      // Encoding is inside the try too: an answer that cannot be framed (too many or too
      // large identities) becomes a FAILURE for this request, never an exception that
      // would take the daemon down.
      reply = frame(encodeResponse(await this.withDeadline(conn, req)));
    } catch (e) {
      if (e instanceof AgentCodecError) {
        // Refused and logged above.
      } else if (isCustosError(e)) {
        // The vault refused (and audited) it, or the agent's audit entry could not be written.
        this.log?.info({ socket: this.config.name, request: req?.type, code: e.fullCode, conn: conn.id }, `ssh-agent "${this.config.name}" refused ${req?.type ?? 'a request'}: ${e.fullCode}: ${e.message}`);
      } else this.log?.warn({ err: (e as Error).message, conn: conn.id }, 'ssh-agent request failed');
      reply = frame(encodeResponse({ type: 'failure' }));
    } finally {
      if (req) wipeRequest(req);
      body.fill(0);
    }
    if (!socket.destroyed) socket.write(reply);
  }

  /**
   * The request's answer, or FAILURE once the deadline passes. Only requests that wait on a
   * backend have a deadline (a sign request, an extension), and not a sign that waits for a
   * person (a key added with `ssh-add -c`). What the vault finishes after the deadline (a
   * signature a slow HSM returns late) is dropped: it is audited as made, never sent, and the
   * client was told it failed. A request that changes the socket's keys or lock waits for such
   * a late one first, so the two never interleave (an add landing after the client's remove).
   */
  private async withDeadline(conn: Connection, req: AgentRequest): Promise<AgentResponse> {
    if (req.type !== 'sign_request' && req.type !== 'extension') {
      if (conn.late.size && CHANGES_KEYS.has(req.type)) await Promise.allSettled([...conn.late]);
      return this.handle(conn, req);
    }
    // The key is looked up once per sign request: here, and handed on to sign().
    const found = req.type === 'sign_request' ? { id: await this.find(req.keyBlob, conn) } : undefined;
    if (found?.id?.key.attributes.confirm === true) return this.handle(conn, req, found);
    const ms = this.config.requestTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
    const work = this.handle(conn, req, found);
    try {
      const r = await Promise.race([work, late]);
      if (r !== 'late') return r;
    } finally {
      clearTimeout(timer);
    }
    const settled = work.then(() => undefined, () => undefined); // its refusal or failure is already on the record
    conn.late.add(settled);
    void settled.then(() => conn.late.delete(settled));
    await this.refuse({ operation: req.type === 'sign_request' ? 'sign' : 'agent_request', reason: 'deadline', key: null, why: `${req.type} was not answered within ${ms} ms (${setting(this.config.name, `request_timeout_seconds = ${Math.round(ms / 1000)}`)}): the backend is slow or unavailable`, details: { request: req.type } });
    return req.type === 'extension' ? { type: 'extension_failure' } : { type: 'failure' };
  }

  /** `found`: for a sign request, what find() gave for its key blob moments ago (withDeadline). */
  private async handle(conn: Connection, req: AgentRequest, found?: { id: Identity | undefined }): Promise<AgentResponse> {
    // While locked: only UNLOCK, an empty listing and session-bind (OpenSSH 10.5 processes
    // binds while locked, so a connection bound meanwhile is never mistaken for local use).
    if (this.lock && req.type !== 'unlock' && req.type !== 'request_identities' && req.type !== 'session_bind') {
      const named = req.type === 'sign_request' || req.type === 'remove_identity' ? ((found ? found.id : await this.find(req.keyBlob, conn))?.key ?? null) : null;
      return this.refuse(lockedRefusal(req, named));
    }
    switch (req.type) {
      case 'request_identities': {
        if (this.lock) return { type: 'identities_answer', identities: [] };
        // Tor's expanded keys are signed with by key blob; they are never offered to SSH
        // clients, which would try them for logins.
        const ids = (await this.identities(conn)).filter((i) => i.key.algorithm !== 'ed25519-expanded');
        // The answer must fit what clients accept (OpenSSH: 2048 identities, 256 KiB).
        const listed: Array<{ keyBlob: Uint8Array; comment: string }> = [];
        let bytes = 9;
        for (const i of ids) {
          const size = 8 + i.blob.length + Buffer.byteLength(i.comment);
          if (listed.length >= MAX_LISTED || bytes + size > MAX_LISTING_BYTES) {
            this.log?.warn({ socket: this.config.name, offered: ids.length, listed: listed.length }, 'ssh-agent listing truncated');
            break;
          }
          listed.push({ keyBlob: i.blob, comment: i.comment });
          bytes += size;
        }
        return { type: 'identities_answer', identities: listed };
      }
      case 'sign_request':
        return this.sign(conn, req.keyBlob, req.data, req.flags, found);
      case 'add_identity':
        return this.add(conn, req.key, []);
      case 'add_id_constrained':
        return this.add(conn, req.key, req.constraints);
      case 'remove_identity':
        return this.remove(conn, req.keyBlob);
      case 'remove_all_identities':
        return this.removeAll(conn);
      case 'remove_all_rsa_identities':
        // SSH-1 leftover that `ssh-add -D` sends after type 19: there are no SSH-1 keys.
        return { type: 'success' };
      case 'lock':
        return this.doLock(req.passphrase);
      case 'unlock':
        return this.doUnlock(req.passphrase);
      case 'extension_query':
        return { type: 'query_response', extensions: [EXT_QUERY, EXT_SESSION_BIND, ...TOR_EXTENSIONS] };
      case 'session_bind':
        return this.bind(conn, req.hostKey, req.sessionId, req.signature, req.isForwarding);
      case 'add_smartcard_key':
      case 'add_smartcard_key_constrained':
      case 'remove_smartcard_key':
        // The PIN is never looked at, logged or kept; the token id is a library path the client chose.
        return this.refuse({
          operation: req.type === 'remove_smartcard_key' ? 'agent_remove' : 'agent_add',
          reason: 'smartcard_not_supported',
          key: null,
          why: 'PKCS#11 tokens are not loaded into the agent (ssh-add -s/-e); import the key into the vault, or configure the token as a [[pkcs11]] backend',
          details: { token_id: printable(req.tokenId, 128) },
        });
      case 'extension':
        if (TOR_EXTENSIONS.includes(req.name)) return this.torExtension(conn, decodeTorExtension(req.name, req.data));
        return this.refuse({ operation: 'agent_request', reason: 'unsupported_request', key: null, why: `extension "${printable(req.name, 64)}" is not supported`, logOnly: true });
      default:
        // Unknown extensions and unknown types: FAILURE, connection kept.
        return this.refuse({
          operation: 'agent_request',
          reason: 'unsupported_request',
          key: null,
          why: `message type ${req.code} is not supported`,
          logOnly: true,
        });
    }
  }

  /**
   * One refusal: one info line, then one audit entry (unless log-only), then FAILURE. If the
   * audit entry cannot be written the error propagates, and the client still gets FAILURE.
   */
  private async refuse(r: Refusal): Promise<AgentResponse> {
    const details: Details = { protocol: 'ssh-agent', socket: this.config.name, ...r.details };
    this.log?.info({ ...details, operation: r.operation, reason: r.reason, ...(r.key ? { key: r.key.label, key_id: r.key.id } : {}) }, refusalLine(this.config.name, r));
    if (!r.logOnly) await this.vault.recordEvent(this.ctx(), r.operation, r.key, 'denied', r.reason, details);
    return { type: 'failure' };
  }

  private ctx() {
    return { principal: this.principal, requestId: randomUUID() };
  }

  /**
   * Why no offered key has this blob, for the refusal of a sign or remove request: the vault
   * key that has it and what keeps it off this socket (destroyed, disabled, expired, another
   * socket's, not matched by `keys`, hidden, its purpose, its destinations), or that none has.
   */
  private async whyNotOffered(blob: Uint8Array): Promise<Pick<Refusal, 'reason' | 'key' | 'why'>> {
    const name = this.config.name;
    const keysSetting = setting(name, `keys = ${JSON.stringify(this.config.keys)}`);
    // Read by index: keys added over any socket, and vault keys with this public key (Ed25519
    // and P-256 blobs carry it as stored); an RSA blob or a certificate walks this socket's
    // label ranges instead. Never every key: a refusal is something a client can ask for.
    const pool = new Map<string, KeyRecord & { tampered?: true }>();
    for (const k of await this.vault.store.findKeysBy({ attribute: 'ssh.socket' })) pool.set(k.id, k);
    const raw = storedPublicKeyOf(blob);
    if (raw) for (const k of await this.vault.store.findKeysBy({ publicKey: raw })) pool.set(k.id, k);
    else for await (const k of this.candidates()) pool.set(k.id, k);
    const matches = [...pool.values()].filter((k) => {
      try {
        return sshCapable(k.algorithm) && equalBytes(this.blobFor(k), blob);
      } catch {
        return false; // a record whose public key does not encode matches nothing
      }
    });
    const k = matches.find((m) => m.state === 'active') ?? matches.find((m) => m.state === 'disabled') ?? matches[0];
    if (!k) return { reason: 'key_not_found', key: null, why: `no key with fingerprint ${sshFingerprint(blob)} was added over this socket, and no vault key matched by ${keysSetting} has it` };
    const owner = k.attributes['ssh.socket'];
    if (owner !== undefined && owner !== name) return { reason: 'key_not_found', key: k, why: `${k.label} was added over another socket ("${printable(String(owner), 32)}") and is offered only there` };
    if (k.state === 'destroyed') return { reason: 'key_not_found', key: k, why: owner === name ? `${k.label} was removed (ssh-add -d/-D, or its ssh-add -t lifetime ended) and destroyed` : `${k.label} was destroyed in the vault` };
    if (k.state === 'disabled') return { reason: 'key_disabled', key: k, why: `${k.label} is disabled in the vault (custos keys enable ${k.label})` };
    if (isExpired(k)) return { reason: 'key_expired', key: k, why: `the ssh-add -t lifetime of ${k.label} ended at ${String(k.attributes.expires_at)}` };
    if (owner === undefined) {
      const pattern = this.patternFor(k);
      if (pattern === null) return { reason: 'key_not_found', key: k, why: `${k.label} is a vault key, but nothing in ${keysSetting} matches its label` };
      if ((await this.vault.hiddenForAgent(name)).has(k.id)) return { reason: 'key_not_found', key: k, why: `${k.label} was removed from this socket with ssh-add -d/-D; \`custos ssh-agent restore ${name}\` offers it again` };
    }
    if (!purposeAllows(k, 'ssh')) return { reason: 'key_purpose', key: k, why: `${k.label} is a ${purposeOf(k)} key, and only ssh keys (or legacy keys without a purpose) sign through an agent, whatever ${keysSetting} matches` };
    if (typeof k.attributes['ssh.destinations'] === 'string') return { reason: 'destination_not_permitted', key: k, why: `${k.label} is restricted to destinations (ssh-add -h) that this connection's session binds do not allow` };
    return { reason: 'key_not_found', key: k, why: `${k.label} is not offered on this socket` };
  }

  /**
   * The keys this socket offers, as the vault holds them now; on a connection with session
   * binds, destination-restricted keys only where their constraints allow (as OpenSSH hides
   * them from lists and from removal). The list is built once and kept while no key row
   * changed in any process (the store's key version) and the socket hides the same keys, so a
   * request costs one indexed query, not a scan of every key.
   */
  private async identities(conn: Connection | null): Promise<Identity[]> {
    const hiddenRow = await this.vault.hiddenForAgent(this.config.name);
    const hiddenKey = [...hiddenRow].sort().join(',');
    const version = await this.vault.store.keysVersion();
    let all = this.offered;
    if (!all || version === null || all.version !== version || all.hidden !== hiddenKey) {
      all = { version: version ?? -1, hidden: hiddenKey, list: await this.buildIdentities(hiddenRow) };
      this.offered = version === null ? null : all;
    }
    // Expiry is a matter of time, not of rows: checked at every request (ssh-add -t lifetimes).
    const now = Date.now();
    return all.list.filter((i) => !isExpired(i.key, now) && (!conn || !i.destinations || identityPermitted(i.destinations, conn.binds, conn.bindAttempted, null)));
  }

  /** Every key this socket may offer, before any connection's destination constraints. */
  private async buildIdentities(hidden: Set<string>): Promise<Identity[]> {
    const out: Identity[] = [];
    for await (const k of this.candidates()) {
      if (k.state !== 'active' || k.tampered || isExpired(k) || !sshCapable(k.algorithm)) continue;
      const owner = k.attributes['ssh.socket'];
      const added = owner === this.config.name;
      // A key added over another socket belongs to that socket's principal only.
      const configured = owner === undefined && !hidden.has(k.id) && this.patternFor(k) !== null;
      if (!added && !configured) continue;
      // Only keys made for SSH (or legacy keys without a purpose) are offered: a validator's
      // consensus key matched by "*" must not sign login challenges (core/purpose.ts).
      if (!purposeAllows(k, 'ssh')) {
        this.reportPurpose(k);
        continue;
      }
      const comment = typeof k.attributes['ssh.comment'] === 'string' ? k.attributes['ssh.comment'] : k.label;
      const d = k.attributes['ssh.destinations'];
      const destinations = typeof d === 'string' ? decodeDestinations(d) : null;
      out.push({ key: k, blob: this.blobFor(k), comment, added, destinations });
    }
    return out;
  }

  /** The `keys` pattern that names this vault key for this socket, if any. */
  private patternFor(k: KeyRecord): string | null {
    const i = this.patterns.findIndex((p) => p.test(k.label));
    return i < 0 ? null : this.config.keys[i]!;
  }

  /** Says once per key (at start, or when it first shows up) why a matched key is not offered. */
  private reportPurpose(k: KeyRecord): void {
    if (this.purposeReported.has(k.id)) return;
    if (this.purposeReported.size >= 10_000) this.purposeReported.clear();
    this.purposeReported.add(k.id);
    this.log?.info(
      { socket: this.config.name, key: k.label, key_id: k.id, purpose: purposeOf(k), pattern: this.patternFor(k) },
      `ssh-agent "${this.config.name}" does not offer ${k.label}: it is a ${purposeOf(k)} key, and only ssh keys (or legacy keys without a purpose) sign through an agent; keys pattern "${this.patternFor(k)}" in [[ssh_agent]] "${this.config.name}" matches it`,
    );
  }

  /** At start: name every configured key this socket leaves out for its purpose. */
  private async reportPurposes(): Promise<void> {
    for await (const k of this.candidates()) {
      if (k.state !== 'active' || k.tampered || isExpired(k) || !sshCapable(k.algorithm) || k.attributes['ssh.socket'] !== undefined) continue;
      if (this.patternFor(k) !== null && !purposeAllows(k, 'ssh')) this.reportPurpose(k);
    }
  }

  /**
   * Tor's extensions (tor-extensions.ts). `tor-sign` signs plain bytes with an ed25519-expanded
   * key added over this socket (its only way to sign); the blinding extensions reach a vault key
   * with purpose tor and role onion-service whose label `tor_keys` names (an allow-list: none by
   * default). A refusal is EXTENSION_FAILURE, audited like any other.
   */
  private async torExtension(conn: Connection, req: TorExtensionRequest): Promise<AgentResponse> {
    const asked: Details = { extension: req.name, key_fingerprint: sshFingerprint(req.keyBlob) };
    const failed = async (r: Omit<Refusal, 'details'>): Promise<AgentResponse> => {
      await this.refuse({ ...r, details: asked });
      return { type: 'extension_failure' };
    };
    if (req.name === EXT_TOR_SIGN) {
      const id = await this.find(req.keyBlob, conn);
      if (!id || id.key.algorithm !== 'ed25519-expanded') return failed({ operation: 'sign', reason: 'key_not_found', key: id?.key ?? null, why: `${req.name} signs with an ed25519-expanded key added over this socket, and no such key has fingerprint ${asked.key_fingerprint}` });
      if (id.destinations) return failed({ operation: 'sign', reason: 'destination_not_permitted', key: id.key, why: `${id.key.label} is restricted to destinations (ssh-add -h): it signs only logins to them, never plain bytes` });
      const r = await this.vault.sign({ requestId: randomUUID(), principal: this.principal, key: id.key.id, payload: { kind: 'message', bytes: req.data }, options: {}, context: { protocol: 'ssh-agent', socket: this.config.name, extension: req.name } });
      return { type: 'extension_response', name: req.name, data: encodeTorReply([r.signature]) };
    }
    // The vault key the blob names, among the Tor keys `tor_keys` allows, with the role the extension needs.
    const role = req.name === EXT_TOR_RSA_SIGN ? 'rsa-identity' : req.name === EXT_TOR_X25519 ? 'x25519' : 'onion-service';
    const raw = req.name === EXT_TOR_X25519 ? x25519KeyOf(req.keyBlob) : req.name === EXT_TOR_RSA_SIGN ? rsaSpkiOf(req.keyBlob) : storedPublicKeyOf(req.keyBlob);
    const key = raw ? (await this.vault.store.findKeysBy({ publicKey: raw })).find((k) => k.state === 'active' && !k.tampered && k.attributes.tor_role === role && this.torPatterns.some((p) => p.test(k.label))) : undefined;
    if (!key) return failed({ operation: 'sign', reason: 'key_not_found', key: null, why: `no ${role} key with fingerprint ${asked.key_fingerprint} is named by ${setting(this.config.name, `tor_keys = ${JSON.stringify(this.config.torKeys ?? [])}`)}` });
    const ctx = this.ctx();
    try {
      if (req.name === EXT_TOR_RSA_SIGN) return { type: 'extension_response', name: req.name, data: encodeTorReply([await this.vault.tor.rsaSign(ctx, key.id, req.data)]) };
      if (req.name === EXT_TOR_X25519) {
        const shared = await this.vault.tor.x25519(ctx, key.id, req.data);
        try {
          return { type: 'extension_response', name: req.name, data: encodeTorReply([shared]) };
        } finally {
          shared.fill(0);
        }
      }
      if (req.name !== EXT_TOR_BLIND_SIGN) {
        const info = await this.vault.tor.onionInfo(ctx, key.id, req.period);
        return { type: 'extension_response', name: req.name, data: encodeTorReply([info.blindedPublicKey, info.subcredential]) };
      }
      const r = await this.vault.tor.blindSign(ctx, key.id, { period: req.period, message: req.data });
      return { type: 'extension_response', name: req.name, data: encodeTorReply([r.signature]) };
    } catch (e) {
      // The vault refused (and audited) it: the client gets EXTENSION_FAILURE.
      if (isCustosError(e)) {
        this.log?.info({ socket: this.config.name, extension: req.name, code: e.fullCode, conn: conn.id }, `ssh-agent "${this.config.name}" refused ${req.name}: ${e.fullCode}: ${e.message}`);
        return { type: 'extension_failure' };
      }
      throw e;
    }
  }

  private blobFor(k: KeyRecord): Uint8Array {
    const id = `${k.id}:${k.version}`;
    let b = this.blobs.get(id);
    if (!b) {
      if (this.blobs.size >= 10_000) this.blobs.clear();
      b = blobOf(k);
      this.blobs.set(id, b);
    }
    return b;
  }

  private async find(blob: Uint8Array, conn: Connection | null): Promise<Identity | undefined> {
    return (await this.identities(conn)).find((i) => equalBytes(i.blob, blob));
  }

  private async sign(conn: Connection, keyBlob: Uint8Array, data: Uint8Array, flags: number, found?: { id: Identity | undefined }): Promise<AgentResponse> {
    const asked: Details = { key_fingerprint: sshFingerprint(keyBlob), message_sha256: sha256hex(data) };
    const id = found ? found.id : await this.find(keyBlob, conn);
    if (!id) return this.refuse({ operation: 'sign', ...(await this.whyNotOffered(keyBlob)), details: asked });
    const context: Record<string, string> = { protocol: 'ssh-agent', socket: this.config.name };
    const what = parseSignedData(data);
    const refuse = (reason: string, why: string) => this.refuse({ operation: 'sign', reason, key: id.key, why, details: { ...asked, ...context } });
    if (id.key.algorithm === 'ed25519-expanded') {
      return refuse('tor_key_extension_only', `${id.key.label} is a Tor key (ed25519-expanded): it signs only through the ${EXT_TOR_SIGN} extension, never a plain sign request (an SSH login or SSHSIG blob)`);
    }
    if (id.destinations) {
      // A destination-restricted key signs only a userauth request for the session bound
      // last on this connection, to the host key bound with it (OpenSSH process_sign_request2).
      const last = conn.binds[conn.binds.length - 1];
      const restricted = (why: string) => refuse('destination_not_permitted', `${id.key.label} is restricted to destinations (ssh-add -h), and ${why}`);
      if (!last || what.kind !== 'userauth') return restricted('this is not a userauth request on a bound session');
      if (what.service !== 'ssh-connection') return restricted('the userauth request is for another service');
      if (!sameKey(what.keyBlob, id)) return restricted('the userauth request names another key');
      if (!identityPermitted(id.destinations, conn.binds, conn.bindAttempted, what.user)) return restricted('its restrictions do not allow this path of hosts or this user');
      if (!equalBytes(what.sessionId, last.sessionId)) return restricted('the session id is not the most recently bound one');
      if (conn.binds.length > 1 && !what.hostKeyBlob) return restricted('a forwarded userauth request names no host key');
      if (what.hostKeyBlob && !equalBytes(what.hostKeyBlob, last.hostKey)) return restricted('the host key differs from the bound one');
      context.ssh_destination = 'permitted';
    }
    if (what.kind === 'userauth') {
      context.ssh_user = printable(what.user, 128);
      context.ssh_method = what.service === 'ssh-connection' ? 'userauth' : printable(what.service, 64);
      const last = conn.binds[conn.binds.length - 1];
      if (last) context.ssh_session_bound = equalBytes(last.sessionId, what.sessionId) ? 'yes' : 'mismatch';
      if (what.hostKeyBlob) context.ssh_host_key_sha256 = fingerprint(what.hostKeyBlob);
      // Which SSH session this login is for (its exchange hash, hashed, as session-bind
      // entries name it): two requests of one session, or a bind and its login, can be matched.
      context.ssh_session_id_sha256 = sha256hex(what.sessionId);
    } else if (what.kind === 'sshsig') {
      context.sshsig_namespace = printable(what.namespace, 128);
    }
    let options = {};
    let rsaName = '';
    if (id.key.algorithm === 'p256') options = { encoding: 'raw' };
    else if (id.key.algorithm.startsWith('rsa-')) {
      const { hash, name } = rsaHashFor(flags);
      if (hash === 'sha1' && !this.config.allowSha1) {
        return refuse('sha1_not_allowed', `the client asked for a legacy ssh-rsa (SHA-1) signature (flags ${flags}), and ${setting(this.config.name, 'allow_sha1 = false')}`);
      }
      options = { hash, padding: 'pkcs1' };
      rsaName = name;
    }
    const r = await this.vault.sign({
      requestId: randomUUID(),
      principal: this.principal,
      key: id.key.id,
      payload: { kind: 'message', bytes: data },
      options,
      context,
    });
    // A lock that arrived while this request waited (for an approval, say) wins.
    if (this.lock) return refuse('agent_locked', 'the agent was locked while the request waited; the signature is withheld');
    return { type: 'sign_response', signature: sshSignature(id.key.algorithm, r.signature, rsaName) };
  }

  private async add(conn: Connection, key: AgentPrivateKey, constraints: KeyConstraint[]): Promise<AgentResponse> {
    const details: Details = { ...addedKeyDetails(key), ...(constraints.length ? { constraints: constraints.map((c) => c.kind).join(',') } : {}) };
    const refuse = (reason: string, why: string, extra: Details = {}) => this.refuse({ operation: 'agent_add', reason, key: null, why, details: { ...details, ...extra } });
    let lifetime: number | undefined;
    let destinations: string | undefined;
    let confirm = false;
    for (const c of constraints) {
      if (c.kind === 'lifetime') lifetime = c.seconds;
      else if (c.kind === 'confirm') {
        // Without someone to approve, a confirm key could never be used or, worse, would be
        // used unconfirmed: refused at add time instead.
        if (!this.config.allowConfirm) return refuse('confirm_not_allowed', `ssh-add -c needs an approver for each use, and ${setting(this.config.name, 'allow_confirm = false')}`);
        confirm = true;
      } else if (c.kind === 'restrict-destination' && c.constraints.length > 0) {
        destinations = encodeDestinations(c.constraints);
        if (destinations.length > 8192) return refuse('destinations_too_large', `its destination restrictions (ssh-add -h) take ${destinations.length} bytes stored; at most 8192 are kept`);
      } else {
        // Anything else: RFC 9987 §5.2.7 says refuse what cannot be honoured, never ignore
        // it (the Go agent's CVE-2026-39833 failure).
        const which = c.kind === 'unknown-extension' ? `"${printable(c.name, 64)}"` : c.kind;
        return refuse('unsupported_constraint', `the ${which} constraint is not supported here, and a constraint that cannot be honoured is refused, never ignored`, { constraint: c.kind });
      }
    }
    let imp: ReturnType<typeof importableOf>;
    try {
      imp = importableOf(key);
    } catch {
      return refuse('invalid_key', 'the private key parts are inconsistent');
    }
    if (!imp) {
      const what = key.keyType === 'ssh-rsa' ? `RSA-${rsaBits(key.n)} keys` : `${key.keyType} keys`;
      return refuse('unsupported_algorithm', `${what} cannot be held by the vault; it holds Ed25519, ECDSA P-256 and RSA 2048, 3072 and 4096-bit keys`);
    }
    const blob = publicKeyBlobOf(key);
    try {
      // Before anything is replaced: the private part must belong to the public key (and a
      // certificate must certify that key, signed by its CA), or knowing a public key would
      // be enough to overwrite someone's identity.
      const fault = checkAddedKey(key, imp);
      if (fault === 'invalid_key') return refuse(fault, `the private part is not a valid ${imp.algorithm} key`);
      if (fault === 'key_mismatch') return refuse(fault, 'certificate' in key ? 'the private key does not match the key its certificate certifies' : 'the private key does not match its public key');
      if (fault === 'invalid_certificate') {
        const ca = 'cert' in key ? sshFingerprint(key.cert.signatureKey) : 'none';
        return refuse(fault, `the certificate signature does not verify under its CA key ${ca} (the certificate was altered, or not signed by that CA)`, { ca_fingerprint: ca });
      }
      const existing = await this.find(blob, conn);
      if (!existing && (await this.identities(null)).filter((i) => i.added).length >= MAX_ADDED) {
        return refuse('too_many_keys', `this socket already holds ${MAX_ADDED} keys added with ssh-add, the most one socket keeps; remove some (ssh-add -d)`);
      }
      // Adding a key that is already there replaces it, as in OpenSSH.
      if (existing?.added) await this.vault.destroyKey({ principal: this.principal, requestId: randomUUID() }, existing.key.id);
      const attributes: Record<string, string | boolean> = { purpose: 'ssh', 'ssh.socket': this.config.name, 'ssh.comment': key.comment.slice(0, 256) };
      if (confirm) attributes.confirm = true;
      if ('certificate' in key) attributes['ssh.certificate'] = bytesToBase64(key.certificate);
      if (lifetime !== undefined) attributes.expires_at = new Date(Date.now() + lifetime * 1000).toISOString();
      if (destinations !== undefined) attributes['ssh.destinations'] = destinations;
      const created = await this.vault.importKey(
        { principal: this.principal, requestId: randomUUID() },
        { label: `ssh:${this.config.name}:${fingerprint(blob).slice(0, 16)}-${randomBytes(4).toString('hex')}`, algorithm: imp.algorithm, format: imp.format, material: imp.material, exportable: false, attributes },
      );
      if (imp.publicKey && !equalBytes(imp.publicKey, created.publicKey)) {
        // Belt and braces: checkAddedKey() has checked this already.
        await this.vault.destroyKey(this.ctx(), created.id);
        return refuse('key_mismatch', 'the vault derived another public key from the private key than the one sent');
      }
      return { type: 'success' };
    } finally {
      wipe(imp.material);
    }
  }

  private async remove(conn: Connection, blob: Uint8Array): Promise<AgentResponse> {
    const id = await this.find(blob, conn);
    if (!id) return this.refuse({ operation: 'agent_remove', ...(await this.whyNotOffered(blob)), details: { key_fingerprint: sshFingerprint(blob) } });
    await this.forget(id);
    return { type: 'success' };
  }

  private async removeAll(conn: Connection): Promise<AgentResponse> {
    for (const id of await this.identities(conn)) await this.forget(id);
    return { type: 'success' };
  }

  /**
   * Removing over the protocol never destroys a key the vault owns otherwise: keys added over
   * this socket are destroyed, configured vault keys are only hidden from this socket until
   * an operator restores them (`custos ssh-agent restore NAME`).
   */
  private async forget(id: Identity): Promise<void> {
    const ctx = { principal: this.principal, requestId: randomUUID() };
    if (id.added) await this.vault.destroyKey(ctx, id.key.id);
    else await this.vault.hideForAgent(ctx, this.config.name, id.key);
  }

  private async doLock(passphrase: Uint8Array): Promise<AgentResponse> {
    if (this.lock) return this.refuse({ operation: 'agent_lock', reason: 'already_locked', key: null, why: 'the agent is already locked' });
    if (passphrase.length === 0) return this.refuse({ operation: 'agent_lock', reason: 'empty_passphrase', key: null, why: 'an empty lock passphrase would let anyone unlock' });
    // Only a KDF output of the lock passphrase is kept; the audit entry has not even that (a
    // hash of a passphrase is a dictionary attack away from it).
    const salt = new Uint8Array(randomBytes(16));
    const hash = new Uint8Array(await scrypt(passphrase, salt, 32, LOCK_KDF));
    if (this.lock) return this.refuse({ operation: 'agent_lock', reason: 'already_locked', key: null, why: 'the agent is already locked' });
    await this.vault.recordEvent(this.ctx(), 'agent_lock', null, 'ok', null, { protocol: 'ssh-agent', socket: this.config.name });
    // Nothing approved after the lock may come out: refuse what is still waiting.
    this.vault.approvals.denyAllFrom(this.principal.id);
    this.lock = { salt, hash };
    this.failedUnlocks = 0;
    this.log?.info({ socket: this.config.name, operation: 'agent_lock' }, `ssh-agent "${this.config.name}" locked (ssh-add -x)`);
    return { type: 'success' };
  }

  /** Unlock attempts run one after another, as in OpenSSH, so guessing does not scale with connections. */
  private unlockQueue: Promise<unknown> = Promise.resolve();

  private doUnlock(passphrase: Uint8Array): Promise<AgentResponse> {
    const copy = Uint8Array.from(passphrase);
    const attempt = this.unlockQueue.then(() => this.tryUnlock(copy)).finally(() => copy.fill(0));
    this.unlockQueue = attempt.catch(() => undefined);
    return attempt;
  }

  private async tryUnlock(passphrase: Uint8Array): Promise<AgentResponse> {
    const lock = this.lock;
    if (!lock) return this.refuse({ operation: 'agent_unlock', reason: 'not_locked', key: null, why: 'the agent is not locked' });
    const hash = new Uint8Array(await scrypt(passphrase, lock.salt, 32, LOCK_KDF));
    const details: Details = { protocol: 'ssh-agent', socket: this.config.name };
    if (equalBytes(hash, lock.hash)) {
      // Unlocked only once the audit entry is durable (fail closed).
      await this.vault.recordEvent(this.ctx(), 'agent_unlock', null, 'ok', null, { ...details, failed_attempts: this.failedUnlocks });
      this.lock = null;
      this.failedUnlocks = 0;
      this.log?.info({ socket: this.config.name, operation: 'agent_unlock' }, `ssh-agent "${this.config.name}" unlocked (ssh-add -X)`);
      return { type: 'success' };
    }
    // Slow down guessing: 100 ms per failure so far, at most 10 s. Only unlock attempts wait
    // in this queue; other requests and clients keep being served.
    this.failedUnlocks++;
    const refused = await this.refuse({ operation: 'agent_unlock', reason: 'wrong_passphrase', key: null, why: `wrong passphrase (failed attempt ${this.failedUnlocks} since the lock)`, details: { failed_attempts: this.failedUnlocks } });
    await new Promise((r) => setTimeout(r, Math.min(100 * this.failedUnlocks, 10_000)));
    return refused;
  }

  private async bind(conn: Connection, hostKey: Uint8Array, sessionId: Uint8Array, signature: Uint8Array, isForwarding: boolean): Promise<AgentResponse> {
    conn.bindAttempted = true;
    const fail = (reason: string, why: string) =>
      this.refuse({ operation: 'agent_session_bind', reason, key: null, why, details: { host_key_fingerprint: sshFingerprint(hostKey), session_id_sha256: sha256hex(sessionId), is_forwarding: isForwarding } });
    if (!verifyHostSignature(hostKey, sessionId, signature)) return fail('invalid_signature', "the host key's signature over the session id does not verify");
    // As OpenSSH: a repeated session id must come with the same key and is not added twice;
    // nothing may follow a bind made for authentication; at most MAX_BINDS hops.
    const same = conn.binds.find((b) => equalBytes(b.sessionId, sessionId));
    if (same) return equalBytes(same.hostKey, hostKey) ? { type: 'success' } : fail('host_key_mismatch', 'this session id was bound before with another host key');
    const last = conn.binds[conn.binds.length - 1];
    if (last && !last.isForwarding) return fail('bound_for_auth', 'this connection was already bound for authentication, and nothing may follow that');
    if (conn.binds.length >= MAX_BINDS) return fail('too_many_binds', `this connection already has ${MAX_BINDS} session binds`);
    conn.binds.push({ hostKey: hostKey.slice(), sessionId: sessionId.slice(), isForwarding });
    return { type: 'success' };
  }
}


/** Whether a userauth request's key blob (plain or certificate) is this identity's key. */
function sameKey(requestBlob: Uint8Array, id: Identity): boolean {
  try {
    const k = parsePublicKeyBlob(requestBlob);
    const plain = isCertificate(k) ? encodePublicKeyBlob(k.key) : requestBlob;
    const mine = parsePublicKeyBlob(id.blob);
    const minePlain = isCertificate(mine) ? encodePublicKeyBlob(mine.key) : id.blob;
    return equalBytes(plain, minePlain);
  } catch {
    return false;
  }
}
