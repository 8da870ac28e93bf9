/**
 * A CometBFT node for tests, seen from the remote signer: listens on 127.0.0.1 (the node's
 * priv_validator_laddr), accepts the signer's connections with a SecretConnection handshake
 * under its own ed25519 identity, and sends framed privval requests, one at a time per
 * connection, as the node does.
 *
 *   const node = await TestNode.listen();
 *   // ... configure the signer with node.address and start it ...
 *   await node.waitForSigner(10_000);
 *   const r = await node.request({ kind: 'ping_request' });
 *   await node.close();
 *
 * Several signer connections may be open at once (e.g. two signer processes); `request()` goes
 * to the newest open one, `SignerConn.request()` to a particular one.
 */
import net, { type AddressInfo } from 'node:net';
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { SecretConnection } from '../../src/frontends/privval/secret-connection.js';
import { MessageReader, decodeMessage, encodeMessage, frameMessage, type PrivvalDialect, type PrivvalMessage } from '../../src/frontends/privval/messages.js';

/** One accepted signer connection. Requests are serialised; a response is awaited before the next is sent. */
export class SignerConn {
  private readonly reader = new MessageReader();
  private readonly inbox: PrivvalMessage[] = [];
  private waiter: { resolve: (m: PrivvalMessage) => void; reject: (e: Error) => void } | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private closedFlag = false;
  private closeError: Error | undefined;
  /** Resolves when the connection is gone (closed by either side or broken). */
  readonly closed: Promise<void>;
  private markClosed!: () => void;

  constructor(
    private readonly sc: SecretConnection,
    private readonly dialect: PrivvalDialect,
    readonly id: number,
  ) {
    this.closed = new Promise((r) => (this.markClosed = r));
    void this.readLoop();
  }

  get isOpen(): boolean {
    return !this.closedFlag;
  }

  /** The signer's SecretConnection identity (its identity key). */
  get remotePublicKey(): Uint8Array {
    return this.sc.remotePublicKey;
  }

  private async readLoop(): Promise<void> {
    try {
      for (;;) {
        const chunk = await this.sc.read();
        if (chunk === null) break;
        for (const body of this.reader.push(chunk)) {
          const m = decodeMessage(body, this.dialect);
          const w = this.waiter;
          if (w) {
            this.waiter = undefined;
            w.resolve(m);
          } else this.inbox.push(m);
        }
      }
      this.shut(new Error(`signer connection ${this.id} closed by the signer`));
    } catch (e) {
      this.shut(new Error(`signer connection ${this.id} broke: ${(e as Error).message}`));
    }
  }

  private shut(err: Error): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.closeError = err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
    this.markClosed();
  }

  /** Sends one request and resolves to the response; rejects on timeout or when the connection drops. */
  request(msg: PrivvalMessage, timeoutMs = 5000): Promise<PrivvalMessage> {
    const run = () => this.exchange(msg, timeoutMs);
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => {});
    return p;
  }

  private async exchange(msg: PrivvalMessage, timeoutMs: number): Promise<PrivvalMessage> {
    if (this.closedFlag) throw this.closeError ?? new Error('closed');
    const queued = this.inbox.shift();
    if (queued) throw new Error(`signer connection ${this.id}: unsolicited message ${queued.kind}`);
    const response = new Promise<PrivvalMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`signer connection ${this.id}: no response to ${msg.kind} within ${timeoutMs} ms`));
        // The conversation is out of step now: drop the connection, as the node does.
        void this.close();
      }, timeoutMs);
      this.waiter = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
    try {
      await this.sc.write(frameMessage(encodeMessage(msg, this.dialect)));
    } catch (e) {
      this.shut(new Error(`signer connection ${this.id}: write failed: ${(e as Error).message}`));
    }
    return response;
  }

  async close(): Promise<void> {
    this.shut(new Error(`signer connection ${this.id} closed by the node`));
    try {
      await this.sc.close();
    } catch {
      // already gone
    }
  }
}

export class TestNode {
  readonly identity = generateKeyPairSync('ed25519');
  /** The node's SecretConnection public key (32 bytes), for a signer's `node_key` pin. */
  readonly identityPublic = new Uint8Array(this.identity.publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
  /** Every connection that completed the handshake, oldest first. */
  readonly connections: SignerConn[] = [];
  private readonly sockets = new Set<net.Socket>();
  private waiters: Array<() => void> = [];
  private nextId = 1;
  private closing = false;

  private constructor(
    readonly server: net.Server,
    readonly dialect: PrivvalDialect,
  ) {
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => this.sockets.delete(socket));
      void this.onSocket(socket);
    });
  }

  /** Listens on 127.0.0.1 (port 0 = any free port). */
  static async listen(opts: { dialect?: PrivvalDialect; port?: number } = {}): Promise<TestNode> {
    const server = net.createServer();
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(opts.port ?? 0, '127.0.0.1', () => res());
    });
    return new TestNode(server, opts.dialect ?? 'v0.38');
  }

  /** `tcp://127.0.0.1:PORT`, for the signer's `address`. */
  get address(): string {
    return `tcp://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private async onSocket(socket: net.Socket): Promise<void> {
    try {
      const sc = await SecretConnection.handshake(
        socket,
        { publicKey: this.identityPublic, sign: (m) => new Uint8Array(nodeSign(null, m, this.identity.privateKey)) },
        { timeoutMs: 5000 },
      );
      if (this.closing) {
        await sc.close().catch(() => {});
        return;
      }
      const conn = new SignerConn(sc, this.dialect, this.nextId++);
      this.connections.push(conn);
      const ws = this.waiters;
      this.waiters = [];
      for (const w of ws) w();
    } catch {
      socket.destroy();
    }
  }

  /** The open signer connections, oldest first. */
  get open(): SignerConn[] {
    return this.connections.filter((c) => c.isOpen);
  }

  /** Resolves to the newest open signer connection, waiting for one if there is none. */
  async waitForSigner(timeoutMs = 10_000): Promise<SignerConn> {
    return (await this.waitForSigners(1, timeoutMs))[0]!;
  }

  /** Resolves once at least `n` signer connections are open; returns the newest `n`, oldest first. */
  async waitForSigners(n: number, timeoutMs = 10_000): Promise<SignerConn[]> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const open = this.open;
      if (open.length >= n) return open.slice(open.length - n);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no ${n} signer connection(s) within ${timeoutMs} ms (open: ${open.length})`);
      // Wake on a new connection, or poll (a connection may have closed meanwhile).
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 50));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.push(done);
      });
    }
  }

  /** Sends a request on the newest open signer connection. */
  async request(msg: PrivvalMessage, timeoutMs = 5000): Promise<PrivvalMessage> {
    const open = this.open;
    const conn = open[open.length - 1];
    if (!conn) throw new Error('no signer connection');
    return conn.request(msg, timeoutMs);
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.connections.map((c) => c.close()));
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((res) => this.server.close(() => res()));
    for (const w of this.waiters) w();
    this.waiters = [];
  }
}
