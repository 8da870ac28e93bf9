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
 *
 * `RawTestNode` is the same node with the protocol in the test's hands: it accepts raw sockets
 * (`RawSignerSocket`), and a test runs the SecretConnection handshake step by step (or sends
 * garbage instead), then seals whatever frames it likes (`RawSession`): bad MACs, impossible
 * frame lengths, half frames, messages split anywhere. For fuzzing the signer's connector.
 */
import net, { type AddressInfo } from 'node:net';
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { deriveSessionSecrets } from '../../src/crypto/secret-connection-kdf.js';
import {
  FRAME_DATA_MAX,
  FRAME_SIZE,
  FrameCipher,
  SEALED_FRAME_SIZE,
  SecretConnection,
  authenticatePeer,
  decodeAuthSigMessage,
  decodeEphemeralKeyMessage,
  encodeAuthSigMessage,
  encodeEphemeralKeyMessage,
} from '../../src/frontends/privval/secret-connection.js';
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

// ---------------------------------------------------------------------------------------------
// Raw node: the handshake and the frames in the test's hands.

/** An accepted signer socket, read in exact sizes; closing it is the test's business. */
export class RawSignerSocket {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private wake: (() => void) | undefined;
  /** True once the signer closed its side before we closed ours. */
  closedBySigner = false;
  private closedByUs = false;
  /** Resolves when the socket is fully closed, by either side. */
  readonly closed: Promise<void>;

  constructor(readonly socket: net.Socket) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.buffered += d.length;
      this.wake?.();
    });
    const end = () => {
      if (!this.closedByUs) this.closedBySigner = true;
      this.ended = true;
      this.wake?.();
    };
    socket.on('end', end);
    socket.on('close', end);
  }

  get isOpen(): boolean {
    return !this.ended && !this.socket.destroyed;
  }

  /** Sleeps up to `ms`, woken early by incoming bytes or the close. */
  private nap(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  /** Exactly `n` bytes, or null if the signer closed first; rejects after `timeoutMs`. */
  async readExact(n: number, timeoutMs = 5000): Promise<Uint8Array | null> {
    const end = Date.now() + timeoutMs;
    while (this.buffered < n) {
      if (this.ended) return null;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`raw node: no ${n} bytes from the signer within ${timeoutMs} ms`);
      await this.nap(left);
    }
    const all = Buffer.concat(this.chunks);
    this.chunks = [all.subarray(n)];
    this.buffered -= n;
    return new Uint8Array(all.subarray(0, n));
  }

  /** A uvarint-delimited message in clear (the handshake's first message), or null on close. */
  async readDelimited(timeoutMs = 5000): Promise<Uint8Array | null> {
    let len = 0;
    for (let shift = 0; ; shift += 7) {
      const b = await this.readExact(1, timeoutMs);
      if (!b) return null;
      len += (b[0]! & 0x7f) * 2 ** shift;
      if (!(b[0]! & 0x80)) break;
      if (shift > 28) throw new Error('raw node: the signer sent an over-long length');
    }
    return this.readExact(len, timeoutMs);
  }

  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed || !this.socket.writable) return reject(new Error('raw node: the socket is closed'));
      this.socket.write(bytes, (e) => (e ? reject(e) : resolve()));
    });
  }

  /** Resolves true once the signer has closed the connection, false if `timeoutMs` passes first. */
  async waitForSignerClose(timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (!this.ended) {
      const left = end - Date.now();
      if (left <= 0) return false;
      await this.nap(left);
    }
    return this.closedBySigner;
  }

  close(): void {
    if (!this.ended) this.closedByUs = true;
    this.socket.destroy();
  }

  /** Sends our ephemeral key in clear and reads the signer's: step 1 of the handshake. */
  async exchangeEphemeral(): Promise<{ secret: Uint8Array; public: Uint8Array; remote: Uint8Array } | null> {
    const secret = x25519.utils.randomSecretKey();
    const pub = x25519.getPublicKey(secret);
    await this.write(encodeEphemeralKeyMessage(pub));
    const body = await this.readDelimited();
    if (!body) return null;
    return { secret, public: pub, remote: decodeEphemeralKeyMessage(body) };
  }

  /**
   * The whole node-side handshake with `identity`; `authSig` replaces our AuthSigMessage
   * plaintext (e.g. with a bad signature). Returns null if the signer closed during it.
   */
  async handshake(identity: { publicKey: Uint8Array; sign(m: Uint8Array): Uint8Array }, opts: { authSig?: (real: Uint8Array) => Uint8Array } = {}): Promise<RawSession | null> {
    const eph = await this.exchangeEphemeral();
    if (!eph) return null;
    const secrets = deriveSessionSecrets({ localEphemeralSecret: eph.secret, localEphemeralPublic: eph.public, remoteEphemeralPublic: eph.remote });
    eph.secret.fill(0);
    const session = new RawSession(this, secrets.sendSecret, secrets.recvSecret);
    secrets.sendSecret.fill(0);
    secrets.recvSecret.fill(0);
    const real = encodeAuthSigMessage({ publicKey: identity.publicKey, signature: identity.sign(secrets.challenge) });
    await session.send(opts.authSig ? opts.authSig(real) : real);
    const body = await session.readDelimited();
    if (!body) return null;
    session.signerPublicKey = authenticatePeer(decodeAuthSigMessage(body), secrets.challenge);
    return session;
  }
}

/** The sealed-frame layer after a handshake, with the test choosing every byte it seals. */
export class RawSession {
  private readonly sendKey: Uint8Array;
  private sendCounter = 0n;
  private readonly recv: FrameCipher;
  private plain: Uint8Array = new Uint8Array(0);
  private readonly reader = new MessageReader();
  private readonly inbox: Uint8Array[] = [];
  signerPublicKey: Uint8Array | undefined;

  constructor(
    readonly raw: RawSignerSocket,
    sendKey: Uint8Array,
    recvKey: Uint8Array,
  ) {
    this.sendKey = sendKey.slice();
    this.recv = new FrameCipher(recvKey);
  }

  /**
   * One sealed frame: `u32 LE declaredLength ‖ data ‖ zero padding`, sealed with the next
   * nonce. `declaredLength` defaults to the data length; set it to lie.
   */
  sealFrame(data: Uint8Array, declaredLength = data.length): Uint8Array {
    if (data.length > FRAME_DATA_MAX) throw new Error('raw node: a frame holds at most 1024 bytes');
    const frame = new Uint8Array(FRAME_SIZE);
    new DataView(frame.buffer).setUint32(0, declaredLength >>> 0, true);
    frame.set(data, 4);
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setBigUint64(4, this.sendCounter++, true);
    return chacha20poly1305(this.sendKey, nonce).encrypt(frame);
  }

  /** `data` cut into ≤ 1024-byte frames (or at the given cut points), each sealed and written. */
  async send(data: Uint8Array, cuts: number[] = []): Promise<void> {
    const bounds = [...new Set([0, ...cuts.filter((c) => c > 0 && c < data.length), data.length])].sort((a, b) => a - b);
    for (let i = 0; i + 1 < bounds.length; i++) {
      for (let o = bounds[i]!; o < bounds[i + 1]!; o += FRAME_DATA_MAX) {
        await this.raw.write(this.sealFrame(data.subarray(o, Math.min(o + FRAME_DATA_MAX, bounds[i + 1]!))));
      }
    }
  }

  async sendMessage(m: PrivvalMessage, dialect: PrivvalDialect, cuts: number[] = []): Promise<void> {
    await this.send(frameMessage(encodeMessage(m, dialect)), cuts);
  }

  private async nextPlainByte(timeoutMs: number): Promise<number | null> {
    while (this.plain.length === 0) {
      const sealed = await this.raw.readExact(SEALED_FRAME_SIZE, timeoutMs);
      if (!sealed) return null;
      this.plain = this.recv.open(sealed);
    }
    const b = this.plain[0]!;
    this.plain = this.plain.subarray(1);
    return b;
  }

  /** A delimited message from the decrypted stream (the signer's AuthSigMessage), or null on close. */
  async readDelimited(timeoutMs = 5000): Promise<Uint8Array | null> {
    let len = 0;
    for (let shift = 0; ; shift += 7) {
      const b = await this.nextPlainByte(timeoutMs);
      if (b === null) return null;
      len += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) break;
    }
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      const b = await this.nextPlainByte(timeoutMs);
      if (b === null) return null;
      out[i] = b;
    }
    return out;
  }

  /** The signer's next privval message, or null if it closed the connection first. */
  async receive(dialect: PrivvalDialect, timeoutMs = 5000): Promise<PrivvalMessage | null> {
    for (;;) {
      const body = this.inbox.shift();
      if (body) return decodeMessage(body, dialect);
      const sealed = await this.raw.readExact(SEALED_FRAME_SIZE, timeoutMs);
      if (!sealed) return null;
      const data = this.plain.length ? new Uint8Array([...this.plain, ...this.recv.open(sealed)]) : this.recv.open(sealed);
      this.plain = new Uint8Array(0);
      this.inbox.push(...this.reader.push(data));
    }
  }

  close(): void {
    this.sendKey.fill(0);
    this.recv.wipe();
    this.raw.close();
  }
}

/** A listening node whose accepted sockets are handed to the test raw. */
export class RawTestNode {
  readonly identity = generateKeyPairSync('ed25519');
  readonly identityPublic = new Uint8Array(this.identity.publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
  private readonly queue: RawSignerSocket[] = [];
  private waiter: ((s: RawSignerSocket) => void) | undefined;
  private readonly sockets = new Set<RawSignerSocket>();
  /** Connections accepted so far. */
  accepted = 0;

  private constructor(readonly server: net.Server) {
    server.on('connection', (socket) => {
      socket.on('error', () => {});
      socket.setNoDelay(true);
      const raw = new RawSignerSocket(socket);
      this.sockets.add(raw);
      socket.on('close', () => this.sockets.delete(raw));
      this.accepted++;
      const w = this.waiter;
      this.waiter = undefined;
      if (w) w(raw);
      else this.queue.push(raw);
    });
  }

  static async listen(): Promise<RawTestNode> {
    const server = net.createServer();
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(0, '127.0.0.1', () => res());
    });
    return new RawTestNode(server);
  }

  get address(): string {
    return `tcp://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Signs a handshake challenge with the node's identity key. */
  readonly signer = { publicKey: this.identityPublic, sign: (m: Uint8Array) => new Uint8Array(nodeSign(null, m, this.identity.privateKey)) };

  /** The next connection from the signer; rejects after `timeoutMs` (a hang guard). */
  accept(timeoutMs = 15_000): Promise<RawSignerSocket> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`raw node: the signer did not connect within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (s) => {
        clearTimeout(timer);
        resolve(s);
      };
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.close();
    for (const s of this.queue) s.close();
    await new Promise<void>((res) => this.server.close(() => res()));
  }
}
