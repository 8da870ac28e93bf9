/**
 * LDK in one process, for tests: `lightningdevkit@0.1.0` (LDK's TypeScript/WASM bindings) driving
 * real ChannelManagers, ChainMonitors and PeerManagers (BOLT 8 noise over in-memory byte queues),
 * on a synthetic chain (80-byte headers, no PoW or merkle checks on LDK's `Confirm` path), with a
 * fabricated funding transaction (LDK checks its shape, never its inputs).
 *
 * `CustosPersister` is an LDK `Persist` backed by Custos' Lightning objects, asynchronous the way
 * LDK expects of a remote store: every call serializes the monitor, starts a put and answers
 * `InProgress`; when the put is acknowledged, `ChainMonitor.channel_monitor_updated` releases
 * the channel. `LdkNet.pump()` awaits the outstanding puts before it delivers anything further.
 *
 * Binding pitfalls handled here (found while prototyping these bindings):
 * - an exception thrown from a JS callback is fatal to the process (it unwinds through WASM), so
 *   every callback is wrapped: the error is recorded and raised by the next `pump()`;
 * - u128s at or above 2^124 crash `encodeUint128`: `user_channel_id`s passed to LDK are small
 *   counters, and by default the KeysManager's own `SignerProvider` is used, so inbound channels'
 *   random user_channel_ids never cross into JS (a JS signer given as `options.signer` must not
 *   hand `generate_channel_keys_id`'s u128 back to WASM);
 * - `update_persisted_channel` without an update (a chain-sync persist) still hands JS a
 *   `ChannelMonitorUpdate`, whose `ptr` is 0n;
 * - events can be replayed (a `PaymentClaimed` after a reload): handlers are idempotent, by hash;
 * - `as_X()` views do not own their parent: each node keeps its parents referenced;
 * - monitor bytes are not deterministic (HashMap order): compare update ids, never bytes;
 * - the init banner on stdout is dropped.
 */
import { readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import * as ldk from 'lightningdevkit';

// ---------------------------------------------------------------- WASM init (once per process)

let ready: Promise<void> | null = null;

/** Loads the WASM module once; every binding call throws before it is awaited. */
export function initLdk(): Promise<void> {
  ready ??= (async () => {
    const wasm = readFileSync(createRequire(import.meta.url).resolve('lightningdevkit/liblightningjs.wasm'));
    const log = console.log;
    console.log = (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].startsWith('Loaded LDK-')) return;
      log(...args);
    };
    try {
      await ldk.initializeWasmFromBinary(wasm);
    } finally {
      console.log = log;
    }
  })();
  return ready;
}

// ---------------------------------------------------------------- small helpers

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const reversed = (b: Uint8Array): Uint8Array => Uint8Array.from(b).reverse();
const sha256d = (b: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(createHash('sha256').update(b).digest()).digest());
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
const nowSecs = (): number => Math.floor(Date.now() / 1000);

/** `<funding txid, display hex>_<vout>`: the key LDK's own MonitorUpdatingPersister uses. */
export function outpointId(op: ldk.OutPoint): string {
  return `${hex(reversed(op.get_txid()))}_${op.get_index()}`;
}

/** An LDK `Result_…` as its `_OK` subclass (whose `res` is the value), or an error naming what failed. */
export function unwrap<O extends object>(r: { is_ok(): boolean }, okClass: { prototype: O }, what: string): O {
  if (r.is_ok() && r instanceof (okClass as unknown as new () => O)) return r;
  const err = (r as { err?: unknown }).err;
  const detail = err && typeof err === 'object' ? `${err.constructor.name}${'err' in err ? `: ${String((err as { err: unknown }).err)}` : ''}` : String(err ?? '');
  throw new Error(`LDK ${what} failed${detail ? ` (${detail})` : ''}`);
}

/** Whether an object the bindings handed over stands for Rust `None` (its pointer is 0). */
const isNone = (o: object | null | undefined): boolean => o == null || (o as unknown as { ptr: bigint }).ptr === 0n;

/** Runs a JS callback called from WASM: an exception there would kill the process. */
function guarded<T>(fail: (e: unknown) => void, where: string, fallback: T, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    fail(new Error(`${where}: ${e instanceof Error ? e.stack ?? e.message : String(e)}`));
    return fallback;
  }
}

const u32le = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const u64le = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
};
const varint = (n: number): Buffer => {
  if (n < 0xfd) return Buffer.from([n]);
  const b = Buffer.alloc(3);
  b[0] = 0xfd;
  b.writeUInt16LE(n, 1);
  return b;
};

/**
 * A segwit transaction paying `valueSat` to `script` as output 0: one input with a random prevout
 * and a one-byte witness (LDK requires a non-empty witness on every input and a final locktime).
 */
function fundingTransaction(valueSat: bigint, script: Uint8Array): { tx: Uint8Array; txid: Uint8Array } {
  const version = u32le(2);
  const input = Buffer.concat([randomBytes(32), u32le(0), varint(0), u32le(0xfffffffd)]);
  const output = Buffer.concat([u64le(valueSat), varint(script.length), Buffer.from(script)]);
  const body = Buffer.concat([varint(1), input, varint(1), output]);
  const locktime = u32le(0);
  const witness = Buffer.concat([varint(1), varint(1), Buffer.from([0xff])]);
  return {
    tx: new Uint8Array(Buffer.concat([version, Buffer.from([0x00, 0x01]), body, witness, locktime])),
    txid: sha256d(Buffer.concat([version, body, locktime])), // internal byte order, as OutPoint.get_txid()
  };
}

/** Headers chained by hash, time = now (LDK's inbound-payment expiry reads header times). */
class FakeChain {
  height: number;
  hash: Uint8Array;
  constructor(height: number) {
    this.height = height;
    this.hash = sha256d(this.header(new Uint8Array(32)));
  }
  private header(prev: Uint8Array): Uint8Array {
    return new Uint8Array(Buffer.concat([u32le(0x20000000), Buffer.from(prev), randomBytes(32), u32le(nowSecs()), u32le(0x207fffff), randomBytes(4)]));
  }
  next(): { header: Uint8Array; height: number } {
    const header = this.header(this.hash);
    this.hash = sha256d(header);
    this.height += 1;
    return { header, height: this.height };
  }
}

// ---------------------------------------------------------------- persistence

/** What a node's ChainMonitor persists through. */
export interface MonitorPersister {
  readonly persist: ldk.Persist;
  /** Called once the node's ChainMonitor exists: completions are reported to it; errors to `fail`. */
  attach(chainMonitor: ldk.ChainMonitor, fail: (e: unknown) => void): void;
  /** Resolves when no write is outstanding, to the number of writes finished since the last call. */
  settle(): Promise<number>;
}

/** The part of CustosClient the persister uses. */
export interface LightningStore {
  lightningPut(ref: string, object: string, version: bigint | string, state: Uint8Array): Promise<{ object: string; version: string; hash: string; unchanged?: boolean }>;
}

export interface PersistCall {
  /** `new` (persist_new_channel), `update` (with a ChannelMonitorUpdate), `chain-sync` (none: block data). */
  kind: 'new' | 'update' | 'chain-sync';
  object: string;
  /** The monitor's latest update id when LDK handed it over. */
  updateId: bigint;
  /** The Custos version this call was given. */
  version: bigint;
  size: number;
  /** What Custos answered, once it did. */
  stored?: { version: string; hash: string; unchanged?: boolean };
  /**
   * For `new` and `update`: whether LDK still listed the update as pending (InProgress honoured)
   * when the put was acknowledged, and whether channel_monitor_updated was then called for it.
   */
  pendingInLdk?: boolean;
  released: boolean;
}

/**
 * `Persist` over Custos: object `<funding txid>_<vout>`, versions 1, 2, 3, … one per call (LDK
 * persists full monitors again at an unchanged update id while blocks connect, so the update id
 * cannot be the version). Puts to one object go out one after another (version order); each call
 * answers `InProgress` and `channel_monitor_updated(outpoint, update id)` follows the put.
 */
export class CustosPersister implements MonitorPersister {
  readonly persist: ldk.Persist;
  readonly calls: PersistCall[] = [];
  /** Per object: the last version given out, and the monitor's update id in it. */
  readonly objects = new Map<string, { version: bigint; updateId: bigint }>();
  private chainMonitor: ldk.ChainMonitor | null = null;
  private fail: (e: unknown) => void = (e) => {
    throw e;
  };
  private readonly tails = new Map<string, Promise<void>>();
  private readonly inflight = new Set<Promise<void>>();
  private finished = 0;

  constructor(private readonly store: LightningStore, private readonly ref: string) {
    // If a call itself fails, the channel stays paused (InProgress, never released) and the next
    // pump raises the error: UnrecoverableError would panic inside WASM and take the process down.
    const failed = ldk.ChannelMonitorUpdateStatus.LDKChannelMonitorUpdateStatus_InProgress;
    this.persist = ldk.Persist.new_impl({
      persist_new_channel: (outpoint, monitor) => guarded(this.fail, 'persist_new_channel', failed, () => this.begin('new', outpoint, monitor)),
      update_persisted_channel: (outpoint, update, monitor) =>
        guarded(this.fail, 'update_persisted_channel', failed, () => this.begin(!isNone(update) ? 'update' : 'chain-sync', outpoint, monitor)),
      archive_persisted_channel: (outpoint) => guarded(this.fail, 'archive_persisted_channel', undefined, () => this.fail(new Error(`unexpected archive of ${outpointId(outpoint)}`))),
    });
  }

  attach(chainMonitor: ldk.ChainMonitor, fail: (e: unknown) => void): void {
    this.chainMonitor = chainMonitor;
    this.fail = fail;
  }

  private begin(kind: PersistCall['kind'], outpoint: ldk.OutPoint, monitor: ldk.ChannelMonitor): ldk.ChannelMonitorUpdateStatus {
    const txid = outpoint.get_txid();
    const index = outpoint.get_index();
    const object = outpointId(outpoint);
    const updateId = monitor.get_latest_update_id();
    const bytes = monitor.write(); // now: `monitor` is only borrowed for this call
    const version = (this.objects.get(object)?.version ?? 0n) + 1n;
    this.objects.set(object, { version, updateId });
    const call: PersistCall = { kind, object, updateId, version, size: bytes.length, released: false };
    this.calls.push(call);
    const put = (this.tails.get(object) ?? Promise.resolve()).then(async () => {
      call.stored = await this.store.lightningPut(this.ref, object, version, bytes);
      // A chain-sync persist carries no update: LDK does not track it, nothing to release.
      if (kind === 'chain-sync') return;
      const op = ldk.OutPoint.constructor_new(txid, index);
      call.pendingInLdk = this.chainMonitor!.list_pending_monitor_updates().some((t) => outpointId(t.get_a()) === object && t.get_b().includes(updateId));
      const r = this.chainMonitor!.channel_monitor_updated(op, updateId);
      unwrap(r, ldk.Result_NoneAPIErrorZ_OK, `channel_monitor_updated(${object}, ${updateId})`);
      call.released = true;
    });
    const tracked: Promise<void> = put.then(
      () => {
        this.finished++;
        this.inflight.delete(tracked);
      },
      (e: unknown) => {
        this.inflight.delete(tracked);
        this.fail(new Error(`put of ${object} version ${version} (update ${updateId}): ${e instanceof Error ? e.message : String(e)}`));
      },
    );
    this.inflight.add(tracked);
    this.tails.set(object, tracked);
    return ldk.ChannelMonitorUpdateStatus.LDKChannelMonitorUpdateStatus_InProgress;
  }

  async settle(): Promise<number> {
    while (this.inflight.size) await Promise.all([...this.inflight]);
    const n = this.finished;
    this.finished = 0;
    return n;
  }
}

// ---------------------------------------------------------------- nodes and the network

export interface LdkNode {
  readonly name: string;
  readonly nodeId: Uint8Array;
  readonly keys: ldk.KeysManager;
  readonly cm: ldk.ChannelManager;
  readonly chainMonitor: ldk.ChainMonitor;
  readonly pm: ldk.PeerManager;
  readonly persister: MonitorPersister;
  /** Transactions the node broadcast. */
  readonly broadcast: Uint8Array[];
  /** Event kinds in the order handled (duplicates included). */
  readonly events: string[];
  /** Payment hashes (hex) sent / claimed, replays collapsed. */
  readonly sent: Set<string>;
  readonly claimed: Set<string>;
  readonly failedPayments: Set<string>;
  /** Closures seen (ChannelClosed reasons); a close fails the pump unless the net allows closes. */
  readonly closed: string[];
  /** Outputs LDK handed over to sweep (SpendableOutputs events). */
  readonly spendable: ldk.SpendableOutputDescriptor[];
  /** Parents of the `as_X()` views handed to LDK, kept alive. */
  readonly hold: unknown[];
}

export interface Channel {
  /** `<funding txid>_<vout>`: the Custos object id of its monitor. */
  object: string;
  fundingTx: Uint8Array;
}

/** A KeysManager from a 32-byte seed: everything LDK derives (node id, channel keys) follows from it. */
export function keysFromSeed(seed32: Uint8Array): ldk.KeysManager {
  if (seed32.length !== 32) throw new Error('an LDK seed is 32 bytes');
  const now = Date.now();
  return ldk.KeysManager.constructor_new(seed32, BigInt(Math.floor(now / 1000)), (now % 1000) * 1_000_000);
}

export function nodeIdOf(keys: ldk.KeysManager): Uint8Array {
  return unwrap(keys.as_NodeSigner().get_node_id(ldk.Recipient.LDKRecipient_Node), ldk.Result_PublicKeyNoneZ_OK, 'get_node_id').res;
}

/** Reads a serialized ChannelMonitor with a node's keys: what a restore gets back. */
export function readMonitor(bytes: Uint8Array, keys: ldk.KeysManager): { object: string; updateId: bigint; channelId: string; counterparty: string } {
  const r = ldk.UtilMethods.constructor_C2Tuple_ThirtyTwoBytesChannelMonitorZ_read(bytes, keys.as_EntropySource(), keys.as_SignerProvider());
  const monitor = unwrap(r, ldk.Result_C2Tuple_ThirtyTwoBytesChannelMonitorZDecodeErrorZ_OK, 'ChannelMonitor read').res.get_b();
  return {
    object: outpointId(monitor.get_funding_txo().get_a()),
    updateId: monitor.get_latest_update_id(),
    channelId: hex(monitor.channel_id().get_a()),
    counterparty: hex(monitor.get_counterparty_node_id()),
  };
}

export interface NodeOptions {
  /** The SignerProvider the ChannelManager uses, over the node's KeysManager (default: the KeysManager's own). */
  signer?: (keys: ldk.KeysManager) => ldk.SignerProvider;
}

interface Link {
  from: LdkNode;
  to: LdkNode;
  /** The descriptor `to` knows this connection by. */
  toSocket: ldk.SocketDescriptor;
  queue: Uint8Array[];
}

const LOG_LEVEL = process.env.LDK_LOG === 'info' ? ldk.Level.LDKLevel_Info : ldk.Level.LDKLevel_Warn;

/**
 * Nodes on one synthetic chain, connected by in-memory sockets. LDK is called only from the
 * methods here, never re-entrantly: a socket's `send_data` only queues bytes, events are collected
 * and then acted on, and puts complete only while `pump()` awaits them.
 */
export class LdkNet {
  readonly nodes: LdkNode[] = [];
  readonly failures: Error[] = [];
  private readonly chain = new FakeChain(800_000);
  private readonly links: Link[] = [];
  private readonly mempool: Uint8Array[] = [];
  /** Funding transactions built here (hex) → their txid (internal byte order). */
  private readonly funding = new Map<string, Uint8Array>();
  /** Whether a channel may close (a test of closing); otherwise a close fails the pump. */
  allowCloses = false;
  private nextSocket = 1n;
  private nextUserChannelId = 1n;
  readonly fail = (e: unknown): void => void this.failures.push(e instanceof Error ? e : new Error(String(e)));

  makeLdkNode(name: string, seed32: Uint8Array, persister: MonitorPersister, options: NodeOptions = {}): LdkNode {
    const fail = this.fail;
    const logger = ldk.Logger.new_impl({
      log: (record) =>
        guarded(fail, 'log', undefined, () => {
          if (record.get_level() >= LOG_LEVEL) console.error(`[ldk ${name} ${ldk.Level[record.get_level()]}] ${record.get_module_path()}: ${record.get_args()}`);
        }),
    });
    const fee = ldk.FeeEstimator.new_impl({ get_est_sat_per_1000_weight: () => 253 });
    const broadcast: Uint8Array[] = [];
    const broadcaster = ldk.BroadcasterInterface.new_impl({
      broadcast_transactions: (txs) => guarded(fail, 'broadcast_transactions', undefined, () => void broadcast.push(...txs.map((t) => Uint8Array.from(t)))),
    });
    const chainMonitor = ldk.ChainMonitor.constructor_new(ldk.Option_FilterZ.constructor_none(), broadcaster, logger, fee, persister.persist);
    persister.attach(chainMonitor, fail);
    const keys = keysFromSeed(seed32);
    const network = ldk.Network.LDKNetwork_Regtest;
    const graph = ldk.NetworkGraph.constructor_new(network, logger);
    const scorer = ldk.ProbabilisticScorer.constructor_new(ldk.ProbabilisticScoringDecayParameters.constructor_default(), graph, logger);
    const score = ldk.MultiThreadedLockableScore.constructor_new(scorer.as_Score());
    const router = ldk.DefaultRouter.constructor_new(graph, logger, keys.as_EntropySource(), score.as_LockableScore(), ldk.ProbabilisticScoringFeeParameters.constructor_default());
    const msgRouter = ldk.DefaultMessageRouter.constructor_new(graph, keys.as_EntropySource());
    const cm = ldk.ChannelManager.constructor_new(
      fee,
      chainMonitor.as_Watch(),
      broadcaster,
      router.as_Router(),
      msgRouter.as_MessageRouter(),
      logger,
      keys.as_EntropySource(),
      keys.as_NodeSigner(),
      options.signer?.(keys) ?? keys.as_SignerProvider(),
      ldk.UserConfig.constructor_default(),
      ldk.ChainParameters.constructor_new(network, ldk.BestBlock.constructor_new(this.chain.hash, this.chain.height)),
      nowSecs(),
    );
    const ignorer = ldk.IgnoringMessageHandler.constructor_new();
    const pm = ldk.PeerManager.constructor_new(
      cm.as_ChannelMessageHandler(),
      ignorer.as_RoutingMessageHandler(),
      ignorer.as_OnionMessageHandler(),
      ignorer.as_CustomMessageHandler(),
      nowSecs(),
      keys.as_EntropySource().get_secure_random_bytes(),
      logger,
      keys.as_NodeSigner(),
    );
    const node: LdkNode = {
      name,
      nodeId: cm.get_our_node_id(),
      keys,
      cm,
      chainMonitor,
      pm,
      persister,
      broadcast,
      events: [],
      sent: new Set(),
      claimed: new Set(),
      failedPayments: new Set(),
      closed: [],
      spendable: [],
      hold: [logger, fee, broadcaster, graph, scorer, score, router, msgRouter, ignorer],
    };
    this.nodes.push(node);
    return node;
  }

  private socket(owner: LdkNode, deliver: () => Link): ldk.SocketDescriptor {
    const id = this.nextSocket++;
    const fail = this.fail;
    return ldk.SocketDescriptor.new_impl({
      send_data: (data) => guarded(fail, 'send_data', 0, () => (deliver().queue.push(Uint8Array.from(data)), data.length)),
      disconnect_socket: () => guarded(fail, 'disconnect_socket', undefined, () => fail(new Error(`${owner.name}: LDK disconnected socket ${id}`))),
      eq: (other) => guarded(fail, 'eq', false, () => other.hash() === id),
      hash: () => id,
    });
  }

  /** `a` connects to `b` (noise handshake and init, over the pump). */
  async connect(a: LdkNode, b: LdkNode): Promise<void> {
    let aToB!: Link;
    let bToA!: Link;
    const sockA = this.socket(a, () => aToB); // a's descriptor; what a sends goes to b
    const sockB = this.socket(b, () => bToA);
    aToB = { from: a, to: b, toSocket: sockB, queue: [] };
    bToA = { from: b, to: a, toSocket: sockA, queue: [] };
    this.links.push(aToB, bToA);
    unwrap(b.pm.new_inbound_connection(sockB, ldk.Option_SocketAddressZ.constructor_none()), ldk.Result_NonePeerHandleErrorZ_OK, 'new_inbound_connection');
    aToB.queue.push(unwrap(a.pm.new_outbound_connection(b.nodeId, sockA, ldk.Option_SocketAddressZ.constructor_none()), ldk.Result_CVec_u8ZPeerHandleErrorZ_OK, 'new_outbound_connection').res);
    await this.pump();
    const peers = (n: LdkNode) => n.pm.list_peers().map((p) => hex(p.get_counterparty_node_id()));
    if (!peers(a).includes(hex(b.nodeId)) || !peers(b).includes(hex(a.nodeId))) throw new Error(`${a.name} and ${b.name} did not connect`);
  }

  /** `a` opens a channel of `sats` to `b`; the funding transaction waits in the mempool for `confirm`. */
  async openChannel(a: LdkNode, b: LdkNode, sats: bigint): Promise<Channel> {
    const before = a.broadcast.length;
    unwrap(a.cm.create_channel(b.nodeId, sats, 0n, this.nextUserChannelId++, null, null), ldk.Result_ChannelIdAPIErrorZ_OK, 'create_channel');
    await this.pump();
    const funded = a.broadcast.slice(before);
    if (funded.length !== 1) throw new Error(`${a.name} broadcast ${funded.length} transactions while opening a channel`);
    const tx = funded[0]!;
    const txid = this.funding.get(hex(tx));
    if (!txid) throw new Error(`${a.name} broadcast a transaction that is not the funding transaction built for it`);
    const channel = a.cm.list_channels().find((c) => {
      const op = c.get_funding_txo();
      return !isNone(op) && sameBytes(op.get_txid(), txid);
    });
    if (!channel) throw new Error('no channel with the broadcast funding transaction');
    this.mempool.push(tx);
    return { object: outpointId(channel.get_funding_txo()), fundingTx: tx };
  }

  /** Puts transactions (a node's broadcast) in the next block. */
  mine(...txs: Uint8Array[]): void {
    this.mempool.push(...txs);
  }

  /** Connects `blocks` blocks to every node (the first one confirms the mempool), pumping after each. */
  async confirm(nodes: LdkNode[], blocks: number): Promise<void> {
    for (let i = 0; i < blocks; i++) {
      const { header, height } = this.chain.next();
      const txs = this.mempool.splice(0).map((tx, j) => ldk.TwoTuple_usizeTransactionZ.constructor_new(j + 1, tx));
      for (const n of nodes) {
        for (const conf of [n.cm.as_Confirm(), n.chainMonitor.as_Confirm()]) {
          if (txs.length) conf.transactions_confirmed(header, txs, height);
          conf.best_block_updated(header, height);
        }
      }
      await this.pump();
    }
  }

  /** `a` pays `b` `msat` (an inbound payment `b` creates, sent over their channel); the payment hash. */
  async pay(a: LdkNode, b: LdkNode, msat: bigint): Promise<string> {
    const inbound = unwrap(b.cm.create_inbound_payment(ldk.Option_u64Z.constructor_some(msat), 3600, ldk.Option_u16Z.constructor_none()), ldk.Result_C2Tuple_ThirtyTwoBytesThirtyTwoBytesZNoneZ_OK, 'create_inbound_payment').res;
    const [hash, secret] = [inbound.get_a(), inbound.get_b()];
    const route = ldk.RouteParameters.constructor_from_payment_params_and_value(ldk.PaymentParameters.constructor_from_node_id(b.nodeId, 40), msat);
    unwrap(a.cm.send_payment(hash, ldk.RecipientOnionFields.constructor_secret_only(secret), randomBytes(32), route, ldk.Retry.constructor_attempts(3)), ldk.Result_NoneRetryableSendFailureZ_OK, 'send_payment');
    await this.pump();
    const h = hex(hash);
    if (a.failedPayments.has(h)) throw new Error(`payment ${h} from ${a.name} to ${b.name} failed`);
    if (!a.sent.has(h) || !b.claimed.has(h)) throw new Error(`payment ${h} from ${a.name} to ${b.name} did not complete (sent: ${a.sent.has(h)}, claimed: ${b.claimed.has(h)})`);
    return h;
  }

  private deliver(): number {
    let moved = 0;
    for (const link of this.links) {
      while (link.queue.length) {
        const bytes = link.queue.shift()!;
        unwrap(link.to.pm.read_event(link.toSocket, bytes), ldk.Result_boolPeerHandleErrorZ_OK, `${link.to.name} read_event`);
        moved++;
      }
    }
    return moved;
  }

  /** Collects a node's pending events, then acts on them (nothing re-entrant); the number handled. */
  private handleEvents(node: LdkNode): number {
    const events: ldk.Event[] = [];
    const handler = ldk.EventHandler.new_impl({
      handle_event: (ev) => guarded(this.fail, 'handle_event', ldk.Result_NoneReplayEventZ.constructor_ok(), () => (events.push(ev), ldk.Result_NoneReplayEventZ.constructor_ok())),
    });
    node.cm.as_EventsProvider().process_pending_events(handler);
    node.chainMonitor.as_EventsProvider().process_pending_events(handler);
    for (const ev of events) {
      node.events.push(ev.constructor.name.replace(/^Event_/, ''));
      if (ev instanceof ldk.Event_FundingGenerationReady) {
        const { tx, txid } = fundingTransaction(ev.channel_value_satoshis, ev.output_script);
        this.funding.set(hex(tx), txid);
        unwrap(node.cm.funding_transaction_generated(ev.temporary_channel_id, ev.counterparty_node_id, tx), ldk.Result_NoneAPIErrorZ_OK, 'funding_transaction_generated');
      } else if (ev instanceof ldk.Event_PendingHTLCsForwardable) {
        node.cm.process_pending_htlc_forwards();
      } else if (ev instanceof ldk.Event_PaymentClaimable) {
        const preimage = ev.purpose.preimage();
        if (!(preimage instanceof ldk.Option_ThirtyTwoBytesZ_Some)) throw new Error(`${node.name}: a claimable payment without its preimage`);
        if (!node.claimed.has(hex(ev.payment_hash))) node.cm.claim_funds(preimage.some);
      } else if (ev instanceof ldk.Event_PaymentClaimed) {
        node.claimed.add(hex(ev.payment_hash));
      } else if (ev instanceof ldk.Event_PaymentSent) {
        node.sent.add(hex(ev.payment_hash));
      } else if (ev instanceof ldk.Event_PaymentFailed) {
        if (ev.payment_hash instanceof ldk.Option_ThirtyTwoBytesZ_Some) node.failedPayments.add(hex(ev.payment_hash.some));
      } else if (ev instanceof ldk.Event_SpendableOutputs) {
        node.spendable.push(...ev.outputs);
      } else if (ev instanceof ldk.Event_ChannelClosed) {
        node.closed.push(ev.reason.constructor.name.replace(/^ClosureReason_/, ''));
        if (!this.allowCloses) this.fail(new Error(`${node.name}: channel closed: ${ev.reason.constructor.name}`));
      }
    }
    return events.length;
  }

  private raise(): void {
    if (!this.failures.length) return;
    const failures = this.failures.splice(0);
    throw new AggregateError(failures, `LDK callbacks failed: ${failures.map((e) => e.message).join('; ')}`);
  }

  /**
   * Runs everything to quiescence: flush each PeerManager, deliver queued bytes, handle events,
   * then await every outstanding put (whose completion releases the channel to LDK), until a whole
   * round moves nothing. Returns the rounds it took.
   */
  async pump(maxRounds = 500): Promise<number> {
    for (let round = 0; round < maxRounds; round++) {
      this.raise();
      let work = 0;
      for (const n of this.nodes) n.pm.process_events();
      work += this.deliver();
      for (const n of this.nodes) work += this.handleEvents(n);
      for (const n of this.nodes) n.pm.process_events();
      for (const n of this.nodes) work += await n.persister.settle();
      this.raise();
      work += this.links.reduce((s, l) => s + l.queue.length, 0);
      if (work === 0) return round;
    }
    throw new Error(`pump did not settle in ${maxRounds} rounds`);
  }
}
