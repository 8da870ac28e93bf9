/**
 * The ssh-agent front end: a Unix socket that speaks the agent protocol (RFC 9987, OpenSSH
 * 9.2 as the compatibility floor) so that `ssh`, `ssh-add` and `ssh-keygen` work unchanged,
 * while every key stays in the vault and every signature takes the vault's request path.
 *
 * One socket is one principal (`ssh-agent:<name>`). It offers the vault keys its
 * configuration names (label patterns) whose purpose allows SSH, plus the keys added to it
 * with `ssh-add`, which are stored in the vault like any other key (origin `imported`,
 * purpose `ssh`, attributes `ssh.*`) and survive a restart unless added with a lifetime.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBytes, randomUUID, scrypt as scryptCb } from 'node:crypto';
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
import { blobOf, fingerprint, importableOf, keyMatches, rsaHashFor, sshCapable, sshSignature, verifyHostSignature } from './keys.js';

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

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

export class SshAgent {
  private server: Server | null = null;
  private readonly principal: Principal;
  private readonly patterns: RegExp[];
  private readonly connections = new Set<Socket>();
  private lock: { salt: Uint8Array; hash: Uint8Array } | null = null;
  private failedUnlocks = 0;
  private nextConn = 1;
  /** SSH key blobs by key id and version: computing one (RSA especially) costs more than a signature. */
  private readonly blobs = new Map<string, Uint8Array>();
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
    const conn: Connection = { id: this.nextConn++, binds: [], bindAttempted: false };
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
      req = decodeRequest(body);
      // Encoding is inside the try too: an answer that cannot be framed (too many or too
      // large identities) becomes a FAILURE for this request, never an exception that
      // would take the daemon down.
      reply = frame(encodeResponse(await this.handle(conn, req)));
    } catch (e) {
      if (!(e instanceof AgentCodecError) && !isCustosError(e)) this.log?.warn({ err: (e as Error).message, conn: conn.id }, 'ssh-agent request failed');
      reply = frame(encodeResponse({ type: 'failure' }));
    } finally {
      if (req) wipeRequest(req);
      body.fill(0);
    }
    if (!socket.destroyed) socket.write(reply);
  }

  private async handle(conn: Connection, req: AgentRequest): Promise<AgentResponse> {
    // While locked: only UNLOCK, an empty listing and session-bind (OpenSSH 10.5 processes
    // binds while locked, so a connection bound meanwhile is never mistaken for local use).
    if (this.lock && req.type !== 'unlock' && req.type !== 'request_identities' && req.type !== 'session_bind') return { type: 'failure' };
    switch (req.type) {
      case 'request_identities': {
        if (this.lock) return { type: 'identities_answer', identities: [] };
        // Tor's expanded keys are signed with by key blob; they are never offered to SSH
        // clients, which would try them for logins.
        const ids = (await this.identities(conn, true)).filter((i) => i.key.algorithm !== 'ed25519-expanded');
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
        return this.sign(conn, req.keyBlob, req.data, req.flags);
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
        return { type: 'query_response', extensions: [EXT_QUERY, EXT_SESSION_BIND] };
      case 'session_bind':
        return this.bind(conn, req.hostKey, req.sessionId, req.signature, req.isForwarding);
      default:
        // Smartcard requests, unknown extensions and unknown types: FAILURE, connection kept.
        return { type: 'failure' };
    }
  }

  /**
   * The keys this socket offers, freshest state from the vault; on a connection with session
   * binds, destination-restricted keys only where their constraints allow (as OpenSSH hides
   * them from lists and from removal).
   */
  private async identities(conn: Connection | null, forListing = false): Promise<Identity[]> {
    const out: Identity[] = [];
    const hidden = await this.vault.hiddenForAgent(this.config.name);
    // A listing shows public keys, so it authenticates every record (vault.listKeys); to find
    // the key of a sign or remove request the stored records suffice, because the vault opens
    // (and so authenticates) the envelope of the one key it then uses.
    const keys = forListing ? await this.vault.listKeys() : await this.vault.store.listKeys();
    for (const k of keys) {
      if (k.state !== 'active' || 'corrupt' in k || isExpired(k) || !sshCapable(k.algorithm)) continue;
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
      if (conn && destinations && !identityPermitted(destinations, conn.binds, conn.bindAttempted, null)) continue;
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
    for (const k of await this.vault.store.listKeys()) {
      if (k.state !== 'active' || isExpired(k) || !sshCapable(k.algorithm) || k.attributes['ssh.socket'] !== undefined) continue;
      if (this.patternFor(k) !== null && !purposeAllows(k, 'ssh')) this.reportPurpose(k);
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

  private async sign(conn: Connection, keyBlob: Uint8Array, data: Uint8Array, flags: number): Promise<AgentResponse> {
    const id = await this.find(keyBlob, conn);
    if (!id) return { type: 'failure' };
    const context: Record<string, string> = { protocol: 'ssh-agent', socket: this.config.name };
    const what = parseSignedData(data);
    if (id.key.algorithm === 'ed25519-expanded' && what.kind !== 'unknown') {
      return this.refuseRestricted(id, 'a Tor key does not sign SSH logins or SSHSIG blobs');
    }
    if (id.destinations) {
      // A destination-restricted key signs only a userauth request for the session bound
      // last on this connection, to the host key bound with it (OpenSSH process_sign_request2).
      const last = conn.binds[conn.binds.length - 1];
      if (!last || what.kind !== 'userauth') return this.refuseRestricted(id, 'not a bound userauth request');
      if (what.service !== 'ssh-connection') return this.refuseRestricted(id, 'userauth for another service');
      if (!sameKey(what.keyBlob, id)) return this.refuseRestricted(id, 'the userauth request names another key');
      if (!identityPermitted(id.destinations, conn.binds, conn.bindAttempted, what.user)) return this.refuseRestricted(id, 'destination not permitted');
      if (!equalBytes(what.sessionId, last.sessionId)) return this.refuseRestricted(id, 'session id is not the most recently bound one');
      if (conn.binds.length > 1 && !what.hostKeyBlob) return this.refuseRestricted(id, 'no host key in a forwarded userauth request');
      if (what.hostKeyBlob && !equalBytes(what.hostKeyBlob, last.hostKey)) return this.refuseRestricted(id, 'host key differs from the bound one');
      context.ssh_destination = 'permitted';
    }
    if (what.kind === 'userauth') {
      context.ssh_user = printable(what.user, 128);
      context.ssh_method = what.service === 'ssh-connection' ? 'userauth' : printable(what.service, 64);
      const last = conn.binds[conn.binds.length - 1];
      if (last) context.ssh_session_bound = equalBytes(last.sessionId, what.sessionId) ? 'yes' : 'mismatch';
      if (what.hostKeyBlob) context.ssh_host_key_sha256 = fingerprint(what.hostKeyBlob);
    } else if (what.kind === 'sshsig') {
      context.sshsig_namespace = printable(what.namespace, 128);
    }
    let options = {};
    let rsaName = '';
    if (id.key.algorithm === 'p256') options = { encoding: 'raw' };
    else if (id.key.algorithm.startsWith('rsa-')) {
      const { hash, name } = rsaHashFor(flags);
      if (hash === 'sha1' && !this.config.allowSha1) return { type: 'failure' };
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
    if (this.lock) return { type: 'failure' };
    return { type: 'sign_response', signature: sshSignature(id.key.algorithm, r.signature, rsaName) };
  }

  private refuseRestricted(id: Identity, why: string): AgentResponse {
    this.log?.info({ socket: this.config.name, key: id.key.id, why }, 'ssh-agent refused a destination-restricted key');
    return { type: 'failure' };
  }

  private async add(conn: Connection, key: AgentPrivateKey, constraints: KeyConstraint[]): Promise<AgentResponse> {
    let lifetime: number | undefined;
    let destinations: string | undefined;
    let confirm = false;
    for (const c of constraints) {
      if (c.kind === 'lifetime') lifetime = c.seconds;
      else if (c.kind === 'confirm' && this.config.allowConfirm) confirm = true;
      else if (c.kind === 'restrict-destination' && c.constraints.length > 0) {
        destinations = encodeDestinations(c.constraints);
        if (destinations.length > 8192) return { type: 'failure' };
      } else {
        // confirm without approvers, and anything unknown: RFC 9987 §5.2.7 says refuse what
        // cannot be honoured, never ignore it (the Go agent's CVE-2026-39833 failure).
        this.log?.info({ socket: this.config.name, constraint: c.kind }, 'ssh-agent add refused: constraint not supported');
        return { type: 'failure' };
      }
    }
    const imp = importableOf(key);
    if (!imp) return { type: 'failure' };
    const blob = publicKeyBlobOf(key);
    try {
      // Before anything is replaced: the private part must belong to the public key (and a
      // certificate must certify that key, signed by its CA), or knowing a public key would
      // be enough to overwrite someone's identity.
      if (!keyMatches(key, imp)) {
        this.log?.info({ socket: this.config.name }, 'ssh-agent add refused: private key does not match its public key or certificate');
        return { type: 'failure' };
      }
      const existing = await this.find(blob, conn);
      if (!existing && (await this.identities(null)).filter((i) => i.added).length >= MAX_ADDED) return { type: 'failure' };
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
        // Belt and braces: keyMatches() has checked this already.
        await this.vault.destroyKey({ principal: this.principal, requestId: randomUUID() }, created.id);
        return { type: 'failure' };
      }
      return { type: 'success' };
    } finally {
      wipe(imp.material);
    }
  }

  private async remove(conn: Connection, blob: Uint8Array): Promise<AgentResponse> {
    const id = await this.find(blob, conn);
    if (!id) return { type: 'failure' };
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
    if (this.lock || passphrase.length === 0) return { type: 'failure' };
    // Nothing approved after the lock may come out: refuse what is still waiting.
    this.vault.approvals.denyAllFrom(this.principal.id);
    // Only a KDF output of the lock passphrase is kept.
    const salt = new Uint8Array(randomBytes(16));
    this.lock = { salt, hash: new Uint8Array(await scrypt(passphrase, salt, 32, LOCK_KDF)) };
    this.failedUnlocks = 0;
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
    if (!lock) return { type: 'failure' };
    const hash = new Uint8Array(await scrypt(passphrase, lock.salt, 32, LOCK_KDF));
    if (equalBytes(hash, lock.hash)) {
      this.lock = null;
      this.failedUnlocks = 0;
      return { type: 'success' };
    }
    // Slow down guessing: 100 ms per failure so far, at most 10 s. Only unlock attempts wait
    // in this queue; other requests and clients keep being served.
    this.failedUnlocks++;
    await new Promise((r) => setTimeout(r, Math.min(100 * this.failedUnlocks, 10_000)));
    return { type: 'failure' };
  }

  private bind(conn: Connection, hostKey: Uint8Array, sessionId: Uint8Array, signature: Uint8Array, isForwarding: boolean): AgentResponse {
    conn.bindAttempted = true;
    const fail = (): AgentResponse => ({ type: 'failure' });
    if (!verifyHostSignature(hostKey, sessionId, signature)) return fail();
    // As OpenSSH: a repeated session id must come with the same key and is not added twice;
    // nothing may follow a bind made for authentication; at most MAX_BINDS hops.
    const same = conn.binds.find((b) => equalBytes(b.sessionId, sessionId));
    if (same) return equalBytes(same.hostKey, hostKey) ? { type: 'success' } : fail();
    const last = conn.binds[conn.binds.length - 1];
    if (last && !last.isForwarding) return fail();
    if (conn.binds.length >= MAX_BINDS) return fail();
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
