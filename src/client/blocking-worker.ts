/**
 * The thread behind BlockingCustosClient (blocking.ts): it owns the SDK's transport, answers each
 * request on its message port, then bumps the shared counter and wakes the caller blocked in
 * Atomics.wait. Loaded by the small bootstrap in blocking.ts, which reports a worker that fails
 * to load or dies to the caller.
 */
import { workerData, type MessagePort } from 'node:worker_threads';
import { CustosError } from '../core/errors.js';
import { CustosApiError, Transport } from './transport.js';
import type { ClientOptions } from './client.js';

/** What the caller sends: `body` is the request body already as JSON text (or absent). */
export interface BlockingRequest {
  id: number;
  method: string;
  path: string;
  body?: string;
}

/** An error as it crosses the port: an API error keeps status and request id, a CustosError its code. */
export type BlockingFailure =
  | { kind: 'api'; code: string; message: string; status: number; requestId?: string; tag?: string }
  | { kind: 'custos'; code: string; message: string; tag?: string }
  | { kind: 'other'; message: string };

/** An answer; id -1 is the bootstrap saying the worker died (with why). */
export type BlockingReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: BlockingFailure };

export interface BlockingWorkerData {
  opts: ClientOptions;
  port: MessagePort;
  /** Int32Array over a SharedArrayBuffer: [0] counts wake-ups, [1] is starting (0), ready (1) or dead (2). */
  shared: Int32Array;
  /** The URL of this module, and of tsx's register API when it is loaded from its TypeScript source. */
  boot: { url: string; tsx: string | null };
}

const { opts, port, shared } = workerData as BlockingWorkerData;

/** Wakes the caller: the answer (if any) is already queued on the port. */
function wake(): void {
  Atomics.add(shared, 0, 1);
  Atomics.notify(shared, 0);
}

function failure(e: unknown): BlockingFailure {
  if (e instanceof CustosApiError) return { kind: 'api', code: e.code, message: e.message, status: e.status, ...(e.requestId !== undefined ? { requestId: e.requestId } : {}), ...(e.tag !== undefined ? { tag: e.tag } : {}) };
  if (e instanceof CustosError) return { kind: 'custos', code: e.code, message: e.message, ...(e.tag !== undefined ? { tag: e.tag } : {}) };
  return { kind: 'other', message: e instanceof Error ? e.message : String(e) };
}

const transport = new Transport(opts);

port.on('message', (req: BlockingRequest) => {
  void (async () => {
    let reply: BlockingReply;
    try {
      const body = req.body === undefined ? undefined : (JSON.parse(req.body) as unknown);
      const res = await transport.request(req.method, req.path, body, opts.token);
      reply = { id: req.id, ok: true, value: Transport.check(res, opts.addr) };
    } catch (e) {
      reply = { id: req.id, ok: false, error: failure(e) };
    }
    try {
      port.postMessage(reply);
    } catch (e) {
      // An answer that cannot be cloned (it should be plain JSON) is still an answer.
      port.postMessage({ id: req.id, ok: false, error: failure(e) } satisfies BlockingReply);
    }
    wake();
  })();
});

Atomics.store(shared, 1, 1);
wake();
