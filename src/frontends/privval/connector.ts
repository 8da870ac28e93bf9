/**
 * CometBFT remote-signer connector: Custos dials a node's `priv_validator_laddr` and serves
 * its privval requests with a consensus key held in the vault.
 *
 * - `tcp://host:port`: SecretConnection, authenticated with an Ed25519 identity key from the
 *   vault (the challenge is signed through `vault.sign`, principal `privval:<name>`);
 *   optionally pinned to the node's identity: `tcp://<node-id>@host:port`, `expectedNodeId` or
 *   `expectedNodeKey`. A node whose authenticated key does not match the pin is disconnected
 *   right after the handshake, before a single message is read; the refusal is logged,
 *   counted and audited (`privval_connect`, `node_id_mismatch`).
 * - `unix:///path`: plain length-delimited protobuf (CometBFT does not authenticate it either).
 *
 * One connection at a time per connector, one request at a time per connection (a node never
 * pipelines). The dial loop retries with exponential backoff (100 ms, doubling, at most 2 s;
 * 2 s dial timeout) and reconnects whenever the link drops, so a node restarting within its
 * 3 s accept window finds us. Connectors share nothing: a slow or dead node stalls only its own.
 * A node that sends nothing for `readTimeoutMs` (default 10 s) — silent between requests or
 * stalled in the middle of a frame — is dropped and redialled; the time we spend answering a
 * request does not count, as in Go's `signerEndpoint.ReadMessage`, which arms its deadline
 * per read.
 *
 * Double-sign protection is the vault's (`signConsensus`, FilePV semantics, keyed by key and
 * chain ID). A refusal is answered with a `RemoteSignerError` in the matching response type
 * (code 2 for `policy_denied:double_sign`, 1 otherwise) and the connection is kept; a frame that
 * cannot be decoded drops the connection (the stream cannot be resynchronised). Celestia's
 * `SignRawBytesRequest` (v0.38 dialect) is refused in a `SignedRawBytesResponse`.
 *
 * Reference: shared/research/cometbft-privval.md §1.1, §1.4, §1.6, §1.7, §6.
 */
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { CustosError, isAudited, isCustosError } from '../../core/errors.js';
import type { Principal } from '../../core/types.js';
import type { Vault } from '../../vault/vault.js';
import { onlyTimestampDiffers } from '../../crypto/cometbft/compare.js';
import {
  MessageReader,
  decodeMessage,
  encodeMessage,
  frameMessage,
  type PrivvalDialect,
  type PrivvalMessage,
  type Proposal,
  type PublicKey,
  type RemoteSignerError,
  type Vote,
} from './messages.js';
import { ProtoReader, WireType } from '../../crypto/protobuf/reader.js';
import { isNodeId, nodeIdOf, type NodePin } from '../../crypto/cometbft/node-id.js';
import { parsePrivvalAddress, type PrivvalEndpoint } from './address.js';
import { SecretConnection } from './secret-connection.js';
import { proposalSignBytes, voteExtensionSignBytes, voteSignBytes, type BlockId, type Timestamp } from '../../crypto/cometbft/sign-bytes.js';

export interface PrivvalConnectorConfig {
  /** Connector name; the principal is `privval:<name>`. */
  name: string;
  /** The only chain ID this connector signs for. */
  chainId: string;
  /**
   * The node's `priv_validator_laddr`: `tcp://host:port`, `tcp://<node-id>@host:port` (pins the
   * node id) or `unix:///path`.
   */
  address: string;
  /** Vault key (id or label) of the consensus key: ed25519 or secp256k1. */
  consensusKey: string;
  /** Vault key (id or label) of the Ed25519 SecretConnection identity; used for `tcp://` only. */
  identityKey: string;
  dialect: PrivvalDialect;
  /** The node's version as configured (`v0.34`…`v1`), for the hints in the log. */
  versionLabel?: string;
  /** v1 `SignBytesRequest` (arbitrary bytes with the consensus key); refused unless true. */
  allowSignBytes?: boolean;
  /** Pin the node's SecretConnection identity by its node id (40 hex digits); `tcp://` only. */
  expectedNodeId?: string;
  /** Pin the node's SecretConnection identity key (32 bytes); `tcp://` only. */
  expectedNodeKey?: Uint8Array;
  /**
   * Drop the connection when the node sends nothing for this long while we wait for its next
   * request (or the rest of one); default `DEFAULT_READ_TIMEOUT_MS`.
   */
  readTimeoutMs?: number;
}

/** What the connector reports for Prometheus (the daemon's Metrics implements it). */
export interface PrivvalMetrics {
  privvalSigned(validator: string, type: 'prevote' | 'precommit' | 'proposal', seconds: number): void;
  privvalRefused(validator: string, reason: string): void;
  privvalConnection(validator: string, connected: boolean): void;
  /** A connection dropped by the connector before serving it (`node_id_mismatch`). */
  privvalConnectionRefused(validator: string, reason: string): void;
}

export interface PrivvalConnectorLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export type PrivvalConnectorState = 'connecting' | 'connected' | 'stopped';

export interface PrivvalConnectorStatus {
  state: PrivvalConnectorState;
  /** ISO time the current connection was established. */
  connectedSince?: string;
  /** The last position signed (or re-served) on this connector; height as a decimal string. */
  lastSigned?: { height: string; round: number; step: number };
  /** Sign requests answered with a `RemoteSignerError`. */
  refusals: number;
  /** Consensus signatures returned (new or re-served). */
  signatures: number;
  /** What the last dropped connection most likely means and what to change, when we can tell. */
  hint?: string;
}

/** Backoff between dial attempts: starts here, doubles, capped at `BACKOFF_MAX_MS`. */
export const BACKOFF_MIN_MS = 100;
export const BACKOFF_MAX_MS = 2000;
export const DIAL_TIMEOUT_MS = 2000;
/** SecretConnection handshake, identity signature included. */
export const HANDSHAKE_TIMEOUT_MS = 5000;
/**
 * Idle/read timeout. A CometBFT node pings every 2/3 of its 5 s read/write timeout (≈ 3.3 s,
 * privval/signer_listener_endpoint.go) when it has nothing else to ask, so three missed pings.
 * CometBFT's own SignerDialerEndpoint drops after 5 s (defaultTimeoutReadWriteSeconds), tmkms
 * after 10 s; a longer wait only delays noticing a dead node, a shorter one risks redialling a
 * live node whose ping was late.
 */
export const DEFAULT_READ_TIMEOUT_MS = 10_000;
export const MAX_READ_TIMEOUT_MS = 3_600_000;

/** RemoteSignerError codes we send. */
export const ERROR_CODE = { refused: 1, doubleSign: 2 } as const;

/**
 * A node refused for its id is redialled like any failed connection (the right node may take
 * the address back), at most every `BACKOFF_MAX_MS`. Each refusal is counted; the log line and
 * the audit entry repeat for the same unexpected id at most this often, so a wrong node left
 * at the address cannot fill the audit log (the next entry carries the count in between).
 */
export const MISMATCH_REPORT_INTERVAL_MS = 60_000;


/** A connected byte stream, plain or SecretConnection. */
interface Link {
  read(): Promise<Uint8Array | null>;
  write(bytes: Uint8Array): Promise<void>;
  /** Orderly close: waits (briefly) for the node to close its side. */
  close(): Promise<void>;
  /** Drops the transport at once; for a node that has stopped talking. `close()` still wipes. */
  abort(): void;
}

export { parsePrivvalAddress } from './address.js';

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The node pin from the address (`tcp://<node-id>@…`), `expectedNodeId` and `expectedNodeKey`;
 * every one given must name the same node. A pin on `unix://` is refused: nothing could check it.
 */
function nodePin(endpoint: PrivvalEndpoint, cfg: PrivvalConnectorConfig): NodePin | undefined {
  const ids: Array<[string, string]> = [];
  if (endpoint.kind === 'tcp' && endpoint.nodeId) ids.push(['the address', endpoint.nodeId]);
  if (cfg.expectedNodeId !== undefined) {
    if (typeof cfg.expectedNodeId !== 'string' || !isNodeId(cfg.expectedNodeId)) {
      throw new CustosError('config_invalid', 'The expected node id must be 40 hex digits.');
    }
    ids.push(['the expected node id', cfg.expectedNodeId.toLowerCase()]);
  }
  let publicKey: Uint8Array | undefined;
  if (cfg.expectedNodeKey !== undefined) {
    if (!(cfg.expectedNodeKey instanceof Uint8Array) || cfg.expectedNodeKey.length !== 32) {
      throw new CustosError('config_invalid', 'The expected node key must be a 32-byte Ed25519 public key.');
    }
    publicKey = cfg.expectedNodeKey.slice();
    ids.push(['the expected node key', nodeIdOf(publicKey)]);
  }
  if (ids.length === 0) return undefined;
  if (endpoint.kind === 'unix') {
    throw new CustosError('config_invalid', 'A unix:// node cannot be pinned to a node id or key: there is no SecretConnection handshake to check it.');
  }
  const [first, ...rest] = ids;
  for (const [what, id] of rest) {
    if (id !== first![1]) throw new CustosError('config_invalid', `Two node pins disagree: ${first![0]} names node ${first![1]}, ${what} names node ${id}.`);
  }
  return publicKey ? { nodeId: first![1], publicKey } : { nodeId: first![1] };
}

/** With a pinned key the whole key must match; with an id, the id of the authenticated key. */
function pinMatches(pin: NodePin, remotePublicKey: Uint8Array): boolean {
  return pin.publicKey ? equalBytes(pin.publicKey, remotePublicKey) : nodeIdOf(remotePublicKey) === pin.nodeId;
}

function isNilBlockId(b: BlockId): boolean {
  return b.hash.length === 0 && b.partSetHeader.total === 0 && b.partSetHeader.hash.length === 0;
}

/**
 * The timestamp inside canonical sign bytes (`uvarint(len) ‖ Canonical{Vote,Proposal}`):
 * field 5 of a CanonicalVote, field 6 of a CanonicalProposal.
 */
export function timestampFromSignBytes(signBytes: Uint8Array, field: 5 | 6): Timestamp {
  const outer = new ProtoReader(signBytes);
  const len = outer.uvarint64();
  const body = signBytes.subarray(signBytes.length - Number(len));
  if (BigInt(body.length) !== len) throw new CustosError('internal', 'The stored sign bytes are not length-delimited.');
  const r = new ProtoReader(body);
  let ts: Timestamp | undefined;
  while (!r.done) {
    const tag = r.tag();
    if (tag.field === field && tag.wireType === WireType.len) {
      const t = r.message();
      const out: Timestamp = { seconds: 0n, nanos: 0 };
      while (!t.done) {
        const tt = t.tag();
        if (tt.field === 1 && tt.wireType === WireType.varint) out.seconds = t.int64();
        else if (tt.field === 2 && tt.wireType === WireType.varint) out.nanos = t.int32();
        else t.skip(tt.wireType);
      }
      ts = out;
    } else r.skip(tag.wireType);
  }
  if (!ts) throw new CustosError('internal', 'The stored sign bytes carry no timestamp.');
  return ts;
}

/**
 * Heuristic for v1 `SignBytesRequest`: does the payload parse as a delimited canonical vote or
 * proposal (type 1, 2 or 32 in field 1)? Such payloads are refused even when signing bytes is
 * allowed, since they would bypass double-sign protection.
 */
function looksCanonical(bytes: Uint8Array): boolean {
  try {
    const outer = new ProtoReader(bytes);
    const len = outer.uvarint64();
    const body = bytes.subarray(bytes.length - Number(len));
    if (BigInt(body.length) !== len || body.length === 0) return false;
    const r = new ProtoReader(body);
    let type: bigint | undefined;
    while (!r.done) {
      const tag = r.tag();
      if (tag.field === 1 && tag.wireType === WireType.varint) type = r.uvarint64();
      else r.skip(tag.wireType);
    }
    return type === 1n || type === 2n || type === 32n;
  } catch {
    return false;
  }
}

const noopLog: PrivvalConnectorLog = { info: () => {}, warn: () => {} };

export class PrivvalConnector {
  private readonly endpoint: PrivvalEndpoint;
  private readonly principal: Principal;
  private readonly log: PrivvalConnectorLog;
  private readonly readTimeoutMs: number;
  private state: PrivvalConnectorState = 'stopped';
  private stopping = true;
  private loop: Promise<void> | undefined;
  private link: Link | undefined;
  private dialing: net.Socket | undefined;
  private wake: (() => void) | undefined;
  private connectedSince: string | undefined;
  private lastSigned: PrivvalConnectorStatus['lastSigned'];
  private refusals = 0;
  private signatures = 0;
  private pubKey: PublicKey | undefined;
  /** What the current connection has asked: to tell a dialect mismatch from other drops. */
  private seen = { pubKey: 0, pubKeyRefused: '', other: 0 };
  private hint: string | undefined;
  private readonly pin: NodePin | undefined;
  private lastMismatch: { seenNodeId: string; reportedAt: number; unreported: number } | undefined;

  constructor(
    private readonly vault: Vault,
    private readonly cfg: PrivvalConnectorConfig,
    log?: PrivvalConnectorLog,
    private readonly metrics?: PrivvalMetrics,
  ) {
    if (!cfg || typeof cfg.name !== 'string' || cfg.name === '') throw new CustosError('config_invalid', 'A privval connector needs a name.');
    if (typeof cfg.chainId !== 'string' || cfg.chainId === '') throw new CustosError('config_invalid', 'A privval connector needs a chain ID.');
    if (cfg.dialect !== 'v0.38' && cfg.dialect !== 'v1') throw new CustosError('config_invalid', 'The privval dialect must be v0.38 or v1.');
    const readTimeoutMs = cfg.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
    if (!Number.isInteger(readTimeoutMs) || readTimeoutMs < 1 || readTimeoutMs > MAX_READ_TIMEOUT_MS) {
      throw new CustosError('config_invalid', `The privval read timeout must be a whole number of milliseconds from 1 to ${MAX_READ_TIMEOUT_MS}.`);
    }
    this.readTimeoutMs = readTimeoutMs;
    this.endpoint = parsePrivvalAddress(cfg.address);
    this.pin = nodePin(this.endpoint, cfg);
    this.principal = { id: `privval:${cfg.name}`, kind: 'privval' };
    this.log = log ?? noopLog;
  }

  /** Starts the dial loop; idempotent while running. */
  start(): void {
    if (this.loop) return;
    this.stopping = false;
    this.setState('connecting');
    this.loop = this.run().finally(() => {
      this.setState('stopped');
      this.loop = undefined;
    });
  }

  /** Stops dialing, closes the connection (after the request in hand, if any) and resolves when all is closed. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    this.dialing?.destroy();
    const link = this.link;
    if (link) await link.close().catch(() => {});
    await this.loop;
    this.setState('stopped');
    this.connectedSince = undefined;
  }

  private setState(state: PrivvalConnectorState): void {
    this.state = state;
    this.metrics?.privvalConnection(this.cfg.name, state === 'connected');
  }

  status(): PrivvalConnectorStatus {
    const s: PrivvalConnectorStatus = { state: this.state, refusals: this.refusals, signatures: this.signatures };
    if (this.state === 'connected' && this.connectedSince) s.connectedSince = this.connectedSince;
    if (this.lastSigned) s.lastSigned = { ...this.lastSigned };
    if (this.hint) s.hint = this.hint;
    return s;
  }

  // -------------------------------------------------------------------------------------------
  // Connection lifecycle

  private async run(): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    while (!this.stopping) {
      this.setState('connecting');
      let link: Link | undefined;
      try {
        link = await this.connect();
        if (this.stopping) break;
        this.link = link;
        this.setState('connected');
        this.connectedSince = new Date().toISOString();
        this.pubKey = undefined;
        this.lastMismatch = undefined; // a wrong node seen again after the right one is reported anew
        backoff = BACKOFF_MIN_MS;
        this.log.info('privval connected', { connector: this.cfg.name, address: this.cfg.address });
        this.seen = { pubKey: 0, pubKeyRefused: '', other: 0 };
        await this.serve(link);
        if (!this.stopping) {
          const hint = this.closeHint();
          if (hint) this.hint = hint;
          this.log.warn(hint ? 'privval connection closed by the node right after the public key exchange' : 'privval connection closed by the node', { connector: this.cfg.name, ...(hint ? { hint } : {}) });
        }
      } catch (e) {
        if (!this.stopping && !(isCustosError(e) && e.tag === 'node_id_mismatch')) {
          this.log.warn('privval connection failed', { connector: this.cfg.name, address: this.cfg.address, error: e instanceof Error ? e.message : String(e) });
        }
      } finally {
        if (link) await link.close().catch(() => {});
        this.link = undefined;
        this.connectedSince = undefined;
      }
      if (this.stopping) break;
      this.setState('connecting');
      await this.sleep(backoff);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  /**
   * A node that hangs up after asking only for the public key did not like the answer. The
   * node's log says why; ours can only name the likely causes: another privval version (the
   * two encodings of PubKeyResponse differ, and each side reads the other's as an empty key),
   * or a chain id or key that is not the node's.
   */
  private closeHint(): string | undefined {
    const seen = this.seen;
    if (seen.pubKey === 0 || seen.other > 0) return undefined;
    if (seen.pubKeyRefused) return `The node asked for the public key and was refused (${seen.pubKeyRefused}); fix chain_id or key in [[privval]] "${this.cfg.name}".`;
    const mine = this.cfg.versionLabel ?? this.cfg.dialect;
    const other = this.cfg.dialect === 'v1' ? 'dialect = "v0.38" (CometBFT v0.38, v0.39, v0.40; "v0.34" or "v0.37" for those)' : 'dialect = "v1" (CometBFT v1.x)';
    return `The node closed the connection right after the public key exchange: it most likely speaks another privval version than this entry's dialect = "${mine}". Check the node's version (cometbftd version) and set ${other} in [[privval]] "${this.cfg.name}"; if the version is right, check that key is this validator's consensus key (the node's log says which).`;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wake = undefined;
        resolve();
      }
      this.wake = done;
    });
  }

  private dial(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const ep = this.endpoint;
      const socket = ep.kind === 'tcp' ? net.connect({ host: ep.host, port: ep.port }) : net.connect({ path: ep.path });
      this.dialing = socket;
      // Measured from the dial: when start-up work held the event loop, the timer can fire in
      // the same turn as the pending connect event. Let that event be handled first (I/O comes
      // before setImmediate) and only then give up on a socket still connecting.
      const started = performance.now();
      const expire = () => {
        if (!socket.connecting) return;
        const waited = Math.round(performance.now() - started);
        socket.destroy(new Error(`Dialing ${this.cfg.address} timed out after ${waited} ms (limit ${DIAL_TIMEOUT_MS} ms): is the node running, and is its priv_validator_laddr this address?`));
      };
      const timer = setTimeout(() => setImmediate(expire), DIAL_TIMEOUT_MS);
      const cleanup = () => {
        clearTimeout(timer);
        socket.off('connect', onConnect);
        socket.off('error', onError);
        socket.off('close', onClose);
        this.dialing = undefined;
      };
      const onConnect = () => {
        cleanup();
        // Errors after connecting surface through reads and writes; never crash the process.
        socket.on('error', () => {});
        resolve(socket);
      };
      const onError = (e: Error) => {
        cleanup();
        socket.destroy();
        reject(e);
      };
      const onClose = () => {
        cleanup();
        reject(new Error(`The connection to ${this.cfg.address} closed while dialing.`));
      };
      socket.once('connect', onConnect);
      socket.once('error', onError);
      socket.once('close', onClose);
    });
  }

  private async connect(): Promise<Link> {
    const socket = await this.dial();
    // Until the link is up, stop() destroys the socket itself (a node that accepted but never
    // completes the handshake must not hold stop() for the handshake timeout).
    this.dialing = socket;
    try {
      return await this.open(socket);
    } finally {
      this.dialing = undefined;
    }
  }

  private async open(socket: net.Socket): Promise<Link> {
    if (this.stopping) {
      socket.destroy();
      throw new Error('The connector is stopping.');
    }
    socket.setNoDelay(true);
    if (this.endpoint.kind === 'tcp') {
      socket.setKeepAlive(true, 10_000);
      try {
        const identity = await this.vault.getKey(this.cfg.identityKey);
        if (identity.algorithm !== 'ed25519' && identity.algorithm !== 'ed25519-expanded') {
          throw new CustosError('bad_request', `The SecretConnection identity key ${this.cfg.identityKey} must be ed25519, not ${identity.algorithm}.`);
        }
        const conn = await SecretConnection.handshake(
          socket,
          {
            publicKey: identity.publicKey,
            sign: async (msg) =>
              (
                await this.vault.sign({
                  requestId: randomUUID(),
                  principal: this.principal,
                  key: this.cfg.identityKey,
                  payload: { kind: 'message', bytes: msg },
                  options: {},
                  context: { protocol: 'privval', connector: this.cfg.name, purpose: 'secret_connection' },
                })
              ).signature,
          },
          { timeoutMs: HANDSHAKE_TIMEOUT_MS },
        );
        if (this.pin && !pinMatches(this.pin, conn.remotePublicKey)) {
          // Nothing has been read from the node yet: drop it now, then report.
          const closing = conn.close();
          socket.destroy();
          await closing;
          await this.refuseNode(this.pin.nodeId, nodeIdOf(conn.remotePublicKey));
        }
        return { read: () => conn.read(), write: (b) => conn.write(b), close: () => conn.close(), abort: () => socket.destroy() };
      } catch (e) {
        socket.destroy();
        throw e;
      }
    }
    return plainLink(socket);
  }

  /**
   * Reports a node whose authenticated identity is not the pinned one (already disconnected),
   * then throws so that the dial loop backs off and tries again. tmkms refuses the same way
   * (`VerificationError` on a peer id mismatch, src/connection/tcp.rs).
   */
  private async refuseNode(expectedNodeId: string, seenNodeId: string): Promise<never> {
    const sentence = `The node at ${this.cfg.address} is ${seenNodeId}, not the pinned node ${expectedNodeId}; disconnected before serving it.`;
    this.metrics?.privvalConnectionRefused(this.cfg.name, 'node_id_mismatch');
    const now = Date.now();
    const last = this.lastMismatch;
    if (last && last.seenNodeId === seenNodeId && now - last.reportedAt < MISMATCH_REPORT_INTERVAL_MS) {
      last.unreported++;
    } else {
      const repeats = last && last.seenNodeId === seenNodeId ? last.unreported : 0;
      this.lastMismatch = { seenNodeId, reportedAt: now, unreported: 0 };
      const fields = { expected_node_id: expectedNodeId, seen_node_id: seenNodeId, chain_id: this.cfg.chainId };
      this.log.warn('privval node id mismatch: refusing the node', { connector: this.cfg.name, address: this.cfg.address, ...fields, ...(repeats ? { refused_since_last_report: repeats } : {}) });
      try {
        const key = await this.vault.getKey(this.cfg.consensusKey).then(
          (k) => ({ id: k.id, label: k.label }),
          () => null,
        );
        await this.vault.recordEvent({ principal: this.principal, requestId: randomUUID() }, 'privval_connect', key, 'denied', 'node_id_mismatch', {
          ...fields,
          connector: this.cfg.name,
          ...(repeats ? { refused_since_last_report: repeats } : {}),
        });
      } catch (e) {
        // The connection is already closed and nothing was signed; the log line stands in.
        this.log.warn('privval could not audit a refused node', { connector: this.cfg.name, error: e instanceof Error ? e.message : String(e) });
      }
    }
    throw new CustosError('unauthorized', sentence, { tag: 'node_id_mismatch' });
  }

  private async serve(link: Link): Promise<void> {
    const reader = new MessageReader();
    for (;;) {
      const chunk = await this.readWithin(link, reader.idle);
      if (chunk === null) {
        reader.end();
        return;
      }
      for (const body of reader.push(chunk)) {
        if (this.stopping) return;
        const request = decodeMessage(body, this.cfg.dialect); // a decode failure drops the connection
        const response = await this.handle(request);
        await link.write(frameMessage(encodeMessage(response, this.cfg.dialect)));
      }
    }
  }

  /**
   * The link's next chunk, or a `bad_request:read_timeout` after `readTimeoutMs` of silence,
   * with the transport already aborted (a node that stopped talking may never close its side).
   */
  private readWithin(link: Link, betweenMessages: boolean): Promise<Uint8Array | null> {
    const read = link.read();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        link.abort();
        const what = betweenMessages ? 'sent no request' : 'stopped in the middle of a request';
        reject(new CustosError('bad_request', `The node ${what} for ${this.readTimeoutMs} ms (read timeout); dropping the connection.`, { tag: 'read_timeout' }));
      }, this.readTimeoutMs);
    });
    read.catch(() => {}); // settles after the abort; its outcome no longer matters
    return Promise.race([read, timeout]).finally(() => clearTimeout(timer));
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  private async handle(m: PrivvalMessage): Promise<PrivvalMessage> {
    if (m.kind !== 'pub_key_request') {
      this.seen.other++;
      this.hint = undefined; // the node got past the public key: whatever the hint said is fixed
    }
    switch (m.kind) {
      case 'ping_request':
        return { kind: 'ping_response' };
      case 'pub_key_request':
        return this.handlePubKey(m.chainId);
      case 'sign_vote_request': {
        const t0 = process.hrtime.bigint();
        const r = await this.handleVote(m.vote, m.chainId, m.skipExtensionSigning);
        if (r.kind === 'signed_vote_response' && !r.error && m.vote) {
          this.metrics?.privvalSigned(this.cfg.name, m.vote.type === 2 ? 'precommit' : 'prevote', Number(process.hrtime.bigint() - t0) / 1e9);
        }
        return r;
      }
      case 'sign_proposal_request': {
        const t0 = process.hrtime.bigint();
        const r = await this.handleProposal(m.proposal, m.chainId);
        if (r.kind === 'signed_proposal_response' && !r.error) this.metrics?.privvalSigned(this.cfg.name, 'proposal', Number(process.hrtime.bigint() - t0) / 1e9);
        return r;
      }
      case 'sign_bytes_request':
        return this.handleSignBytes(m.value);
      case 'sign_raw_bytes_request':
        return this.handleSignRawBytes();
      default:
        // Responses from the node, or a request this dialect does not know: there is no
        // matching response type to refuse in, so the conversation cannot go on.
        throw new CustosError('bad_request', `Unexpected privval message from the node: ${m.kind === 'unknown' ? `unknown case ${m.field}` : m.kind}.`);
    }
  }

  private async remoteError(e: unknown, what: string): Promise<RemoteSignerError> {
    this.refusals++;
    this.metrics?.privvalRefused(this.cfg.name, isCustosError(e) ? e.fullCode : 'internal');
    if (isCustosError(e) && !isAudited(e)) {
      // Refused here, before the vault saw it (another chain id, a vote type, SignBytes off):
      // on the record like every refusal. If even that cannot be written, the node is still answered.
      await this.vault
        .recordEvent({ principal: this.principal, requestId: randomUUID() }, 'privval_request', null, 'denied', e.fullCode, { protocol: 'privval', connector: this.cfg.name, chain_id: this.cfg.chainId, request: what })
        .catch(() => undefined);
    }
    if (isCustosError(e)) {
      this.log.warn(`privval refused to sign ${what}`, { connector: this.cfg.name, code: e.fullCode, error: e.message });
      return { code: e.fullCode === 'policy_denied:double_sign' ? ERROR_CODE.doubleSign : ERROR_CODE.refused, description: e.message };
    }
    this.log.warn(`privval failed to sign ${what}`, { connector: this.cfg.name, error: e instanceof Error ? e.message : String(e) });
    return { code: ERROR_CODE.refused, description: 'internal error' };
  }

  private checkChain(chainId: string): void {
    if (chainId !== this.cfg.chainId) {
      throw new CustosError('bad_request', `Chain ID mismatch: this signer serves ${JSON.stringify(this.cfg.chainId)}, the request is for ${JSON.stringify(chainId.slice(0, 80))}.`);
    }
  }

  private async consensusPublicKey(): Promise<PublicKey> {
    if (this.pubKey) return this.pubKey;
    const key = await this.vault.getKey(this.cfg.consensusKey);
    let type: string;
    if (key.algorithm === 'ed25519' || key.algorithm === 'ed25519-expanded') type = 'ed25519';
    else if (key.algorithm === 'secp256k1') type = 'secp256k1';
    else throw new CustosError('unsupported_algorithm', `${key.algorithm} is not a consensus key type (ed25519 or secp256k1).`);
    this.pubKey = { type, bytes: key.publicKey };
    return this.pubKey;
  }

  private async handlePubKey(chainId: string): Promise<PrivvalMessage> {
    this.seen.pubKey++;
    try {
      this.checkChain(chainId);
      const pubKey = await this.consensusPublicKey();
      this.seen.pubKeyRefused = '';
      return { kind: 'pub_key_response', pubKey, error: undefined };
    } catch (e) {
      this.seen.pubKeyRefused = e instanceof Error ? e.message : String(e);
      return { kind: 'pub_key_response', pubKey: undefined, error: await this.remoteError(e, 'the public key request') };
    }
  }

  private context(): Record<string, string> {
    return { protocol: 'privval', connector: this.cfg.name };
  }

  private async signOptions(): Promise<{ encoding?: 'raw' }> {
    const pk = await this.consensusPublicKey();
    return pk.type === 'secp256k1' ? { encoding: 'raw' } : {};
  }

  private async handleVote(vote: Vote | undefined, chainId: string, skipExtensionSigning: boolean): Promise<PrivvalMessage> {
    try {
      if (!vote) throw new CustosError('bad_request', 'The SignVoteRequest carries no vote.');
      this.checkChain(chainId);
      const type = vote.type === 1 ? 'prevote' : vote.type === 2 ? 'precommit' : undefined;
      if (!type) throw new CustosError('bad_request', `Refusing to sign a vote of type ${vote.type}.`);
      const step = type === 'prevote' ? 2 : 3;
      const nil = isNilBlockId(vote.blockId);
      const signBytes = voteSignBytes(chainId, { type, height: vote.height, round: vote.round, blockId: nil ? null : vote.blockId, timestamp: vote.timestamp });
      const res = await this.vault.signConsensus({
        requestId: randomUUID(),
        principal: this.principal,
        key: this.cfg.consensusKey,
        chainId,
        position: { height: vote.height, round: vote.round, step },
        signBytes,
        onlyTimestampDiffers,
        context: this.context(),
      });
      // The vault signed (or reused) sign bytes stored for this position that differ only in their
      // timestamp: the node must use that timestamp (FilePV semantics).
      const timestamp = !equalBytes(res.signBytes, signBytes) ? timestampFromSignBytes(res.signBytes, 5) : vote.timestamp;
      let extensionSignature: Uint8Array = new Uint8Array(0);
      if (type === 'precommit' && !nil && !(this.cfg.dialect === 'v1' && skipExtensionSigning)) {
        const ext = await this.vault.sign({
          requestId: randomUUID(),
          principal: this.principal,
          key: this.cfg.consensusKey,
          payload: { kind: 'message', bytes: voteExtensionSignBytes(chainId, { height: vote.height, round: vote.round, extension: vote.extension }) },
          options: await this.signOptions(),
          context: { ...this.context(), chain_id: chainId, purpose: 'vote_extension', height: vote.height.toString(), round: String(vote.round) },
          // The consensus key signs its own vote extension (CanonicalVoteExtension, which no
          // vote or proposal decodes as): a consensus use, refused to any other key.
          use: 'consensus',
        });
        extensionSignature = ext.signature;
      }
      this.signed(vote.height, vote.round, step);
      // Echo the vote without its extension: the node reads at most 10 KiB and ignores it.
      return {
        kind: 'signed_vote_response',
        vote: { ...vote, timestamp, signature: res.signature, extension: new Uint8Array(0), extensionSignature },
        error: undefined,
      };
    } catch (e) {
      return { kind: 'signed_vote_response', vote: undefined, error: await this.remoteError(e, 'a vote') };
    }
  }

  private async handleProposal(proposal: Proposal | undefined, chainId: string): Promise<PrivvalMessage> {
    try {
      if (!proposal) throw new CustosError('bad_request', 'The SignProposalRequest carries no proposal.');
      this.checkChain(chainId);
      if (proposal.type !== 32) throw new CustosError('bad_request', `Refusing to sign a proposal of type ${proposal.type}.`);
      const nil = isNilBlockId(proposal.blockId);
      const signBytes = proposalSignBytes(chainId, {
        height: proposal.height,
        round: proposal.round,
        polRound: proposal.polRound,
        blockId: nil ? null : proposal.blockId,
        timestamp: proposal.timestamp,
      });
      const res = await this.vault.signConsensus({
        requestId: randomUUID(),
        principal: this.principal,
        key: this.cfg.consensusKey,
        chainId,
        position: { height: proposal.height, round: proposal.round, step: 1 },
        signBytes,
        // Proposals: identical bytes or a refusal. The node copies only the signature from a
        // proposal response, so an old signature with a new timestamp would be an invalid
        // proposal (research notes §1.7, §6).
        onlyTimestampDiffers: () => false,
        context: this.context(),
      });
      const timestamp = !equalBytes(res.signBytes, signBytes) ? timestampFromSignBytes(res.signBytes, 6) : proposal.timestamp;
      this.signed(proposal.height, proposal.round, 1);
      return { kind: 'signed_proposal_response', proposal: { ...proposal, timestamp, signature: res.signature }, error: undefined };
    } catch (e) {
      return { kind: 'signed_proposal_response', proposal: undefined, error: await this.remoteError(e, 'a proposal') };
    }
  }

  private async handleSignBytes(value: Uint8Array): Promise<PrivvalMessage> {
    try {
      if (!this.cfg.allowSignBytes) throw new CustosError('policy_denied', `SignBytesRequest is disabled for this connector (allow_sign_bytes = false in [[privval]] "${this.cfg.name}").`, { tag: 'sign_bytes' });
      if (looksCanonical(value)) throw new CustosError('policy_denied', 'Refusing to sign bytes that parse as a canonical vote or proposal.', { tag: 'sign_bytes' });
      const out = await this.vault.sign({
        requestId: randomUUID(),
        principal: this.principal,
        key: this.cfg.consensusKey,
        payload: { kind: 'message', bytes: value },
        options: await this.signOptions(),
        context: { ...this.context(), purpose: 'sign_bytes' },
        use: 'consensus',
      });
      return { kind: 'sign_bytes_response', signature: out.signature, error: undefined };
    } catch (e) {
      return { kind: 'sign_bytes_response', signature: new Uint8Array(0), error: await this.remoteError(e, 'bytes') };
    }
  }

  /**
   * Celestia's `SignRawBytesRequest` (v0.38 dialect). Its sign bytes are domain-separated
   * (`"COMET::RAW_BYTES::SIGN" ‖ delimited(request)`), but what a validator may attest to is
   * an operator decision Custos has no setting for yet: refused, in the matching response
   * type so that the node gets an answer and the connection stays up.
   */
  private async handleSignRawBytes(): Promise<PrivvalMessage> {
    const e = new CustosError('policy_denied', 'SignRawBytesRequest is not supported by this signer.', { tag: 'sign_raw_bytes' });
    return { kind: 'signed_raw_bytes_response', signature: new Uint8Array(0), error: await this.remoteError(e, 'raw bytes') };
  }

  private signed(height: bigint, round: number, step: number): void {
    this.signatures++;
    this.lastSigned = { height: height.toString(), round, step };
  }
}

/** A plain (unix socket) link: raw chunks in, raw bytes out. */
function plainLink(socket: net.Socket): Link {
  const it = socket[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let closing: Promise<void> | undefined;
  return {
    async read() {
      if (closing || socket.destroyed) return null;
      try {
        const r = await it.next();
        return r.done ? null : new Uint8Array(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      } catch (e) {
        if (closing) return null;
        throw e;
      }
    },
    write(bytes) {
      return new Promise((resolve, reject) => {
        if (socket.destroyed || !socket.writable) return reject(new Error('The connection is closed.'));
        socket.write(bytes, (err) => (err ? reject(err) : resolve()));
      });
    },
    abort() {
      socket.destroy();
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        if (socket.closed) return resolve();
        socket.once('close', () => resolve());
        socket.destroy();
      });
      return closing;
    },
  };
}
