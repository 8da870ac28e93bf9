/**
 * A synchronous client for the Custos HTTP API, for hosts whose callbacks must answer before
 * they return: LDK's WASM bindings call a signer's callbacks synchronously and cannot await.
 * The requests run on the SDK's transport in a worker thread; `call` posts one and blocks the
 * calling thread in Atomics.wait until the worker answers (no busy loop), or until the timeout.
 * The vault must not be served from the calling thread, since that thread is blocked.
 *
 *   const c = new BlockingCustosClient({ addr, token, ca });
 *   const key = c.call<KeyInfo>('GET', '/v1/keys/node-1');
 *   c.close();
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { CustosError, httpStatusOf, type ErrorCode } from '../core/errors.js';
import { CustosApiError, Transport } from './transport.js';
import type { ClientOptions } from './client.js';
import type { BlockingFailure, BlockingReply, BlockingRequest, BlockingWorkerData } from './blocking-worker.js';

// Slots and states of the shared Int32Array (blocking-worker.ts uses the same numbers).
const SEQ = 0;
const STATE = 1;
const READY = 1;
const DEAD = 2;

/** Beyond the transport's own timeout, so that its (more precise) error arrives first. */
const MARGIN_MS = 5_000;
/** Added to the first calls' wait while the worker is still loading. */
const STARTUP_MS = 30_000;

/**
 * Runs in the worker before blocking-worker loads: it reports to the caller (the shared state set
 * to dead, the reason queued as answer -1, the caller woken) a worker that fails to load, throws
 * or exits. Under `node --import tsx`, Node 20 does not give workers the main thread's loader,
 * so the TypeScript source is loaded after registering tsx in the worker, only if need be.
 */
const BOOTSTRAP = `
import { workerData } from 'node:worker_threads';
const { shared, port, boot } = workerData;
const die = (e) => {
  if (Atomics.load(shared, ${STATE}) === ${DEAD}) return;
  try {
    port.postMessage({ id: -1, ok: false, error: { kind: 'other', message: e instanceof Error ? e.message : String(e) } });
  } catch {}
  Atomics.store(shared, ${STATE}, ${DEAD});
  Atomics.add(shared, ${SEQ}, 1);
  Atomics.notify(shared, ${SEQ});
};
process.on('uncaughtException', (e) => { die(e); process.exit(1); });
process.on('unhandledRejection', (e) => { die(e); process.exit(1); });
process.on('exit', (code) => die(new Error('the worker thread exited (code ' + code + ')')));
try {
  try {
    await import(boot.url);
  } catch (e) {
    if (!(e && e.code === 'ERR_UNKNOWN_FILE_EXTENSION' && boot.tsx)) throw e;
    (await import(boot.tsx)).register();
    // A new URL: the failed load of the first is cached.
    await import(boot.url + '?tsx');
  }
} catch (e) {
  die(e);
}
`;

/** The worker module: built JavaScript beside this file, or its TypeScript source (run under tsx). */
function workerModule(): BlockingWorkerData['boot'] {
  const js = new URL('./blocking-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return { url: js.href, tsx: null };
  const ts = new URL('./blocking-worker.ts', import.meta.url);
  if (!existsSync(fileURLToPath(ts))) throw new CustosError('internal', `The blocking client's worker module is missing beside ${fileURLToPath(import.meta.url)}.`);
  let tsx: string | null = null;
  try {
    tsx = import.meta.resolve('tsx/esm/api');
  } catch {
    // Another TypeScript loader, or Node's own type stripping: the worker tries without tsx.
  }
  return { url: ts.href, tsx };
}

const asCode = (code: string): ErrorCode => (code in httpStatusOf ? (code as ErrorCode) : 'internal');

function rebuild(f: BlockingFailure): CustosError {
  if (f.kind === 'api') return new CustosApiError(asCode(f.code), f.message, f.status, f.requestId, f.tag);
  if (f.kind === 'custos') return new CustosError(asCode(f.code), f.message, f.tag !== undefined ? { tag: f.tag } : undefined);
  return new CustosError('internal', f.message);
}

export class BlockingCustosClient {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly shared = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
  private readonly timeoutMs: number;
  private nextId = 1;
  private closed = false;
  /** Set once the worker is known dead: every later call throws it. */
  private failure: CustosError | null = null;

  constructor(private readonly opts: ClientOptions) {
    // Checks the options here, synchronously, as CustosClient does (a bad address, TLS over http://).
    new Transport(opts).close();
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const workerData: BlockingWorkerData = { opts, port: port2, shared: this.shared, boot: workerModule() };
    // A data: URL is always an ES module (eval'd code would follow an inherited --input-type).
    this.worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(BOOTSTRAP)}`), { workerData, transferList: [port2] });
    // Heard only while this thread is not blocked: for calls made after the death. Outside a
    // call the port holds only stale answers and, maybe, the bootstrap's reason (answer -1).
    this.worker.on('error', (e) => this.dead(e.message));
    this.worker.on('exit', (code) => {
      if (this.closed) return;
      let reason = `the worker thread exited (code ${code})`;
      for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
        const reply = m.message as BlockingReply;
        if (reply.id === -1 && !reply.ok) reason = reply.error.message;
      }
      this.dead(reason);
    });
    // A client left open does not keep the process alive.
    this.worker.unref();
    this.port.unref();
  }

  /**
   * Sends a request and blocks until its answer: the response body (parsed JSON), or a throw of
   * CustosApiError (the API's code, message, status, request id and tag) or CustosError (the
   * vault unreachable, the wait timed out, the client closed or its worker dead). The wait ends
   * 5 s after `timeoutMs` at the latest, even while the transport still retries a GET; a POST
   * that timed out here may still have reached the vault, as with any timeout.
   */
  call<T>(method: string, path: string, body?: unknown): T {
    if (this.closed) throw new CustosError('bad_request', 'This BlockingCustosClient is closed.', { tag: 'closed' });
    if (this.failure) throw this.failure;
    const id = this.nextId++;
    const req: BlockingRequest = { id, method, path, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) };
    const budget = this.timeoutMs + MARGIN_MS;
    // While the worker loads, the wait allows for its start; once it is ready (it wakes this
    // thread when it is), the request has its own budget from then.
    let ready = Atomics.load(this.shared, STATE) === READY;
    let deadline = Date.now() + budget + (ready ? 0 : STARTUP_MS);
    this.port.postMessage(req);
    for (;;) {
      // Read the counter before draining: an answer queued after the drain has bumped it, so
      // the wait below returns at once instead of missing the wake-up.
      const seq = Atomics.load(this.shared, SEQ);
      for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
        const reply = m.message as BlockingReply;
        // Answers to calls that timed out earlier are dropped.
        if (reply.id !== id && reply.id !== -1) continue;
        if (reply.ok) return reply.value as T;
        if (reply.id === -1) throw this.dead(reply.error.message);
        throw rebuild(reply.error);
      }
      const state = Atomics.load(this.shared, STATE);
      if (state === DEAD) throw this.dead('it stopped');
      if (!ready && state === READY) {
        ready = true;
        deadline = Math.min(deadline, Date.now() + budget);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new CustosError('storage_unavailable', `No answer from the vault at ${this.opts.addr} within ${Math.round(budget / 1000)} s (${method} ${path}).`, { tag: 'unreachable' });
      }
      Atomics.wait(this.shared, SEQ, seq, left);
    }
  }

  /** Stops the worker and its connections; later calls throw. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.port.close();
    void this.worker.terminate().catch(() => {});
  }

  /** Records the worker's death (the first reason heard wins) and returns the error to throw. */
  private dead(reason: string): CustosError {
    if (!this.failure && !this.closed) {
      this.failure = new CustosError('internal', `The blocking client's worker thread is dead (${reason}); create a new BlockingCustosClient.`, { tag: 'worker' });
    }
    return this.failure ?? new CustosError('bad_request', 'This BlockingCustosClient is closed.', { tag: 'closed' });
  }
}
