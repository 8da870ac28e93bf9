/**
 * `custos/client/browser`: an end user's account session in a browser (or any runtime with
 * `fetch` and WebAssembly). The same `CustosSession` as in Node, over `fetch`; TLS is the
 * browser's. Nothing here imports a Node module: `test/client/browser.test.ts` bundles it for
 * the browser platform and runs the bundle against a real server.
 */
import { CustosError, type ErrorCode } from '../core/errors.js';
import { CustosSession as SessionBase, type Poster, type SessionOptions } from './session.js';

export { type SessionOptions, type AccountKeyView, type GrantView } from './session.js';
export { CustosError } from '../core/errors.js';

/** An account's session in a browser: over `fetch` (the browser's TLS; redirects refused). */
export class CustosSession extends SessionBase {
  protected static override poster(opts: SessionOptions): Poster {
    if (opts.ca !== undefined || opts.serverFingerprint !== undefined || opts.cert !== undefined || opts.key !== undefined) {
      throw new CustosError('bad_request', 'In a browser the browser\'s TLS applies: ca, serverFingerprint, cert and key cannot be given (pin the server by its OPAQUE key, serverPublicKey).');
    }
    const f = opts.fetch ?? globalThis.fetch;
    const base = opts.addr.replace(/\/+$/, '');
    const timeoutMs = opts.timeoutMs ?? 120_000;
    return {
      post: async (path, body) => {
        let res: Response;
        try {
          res = await f(`${base}${path}`, { method: 'POST', redirect: 'error', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
        } catch (e) {
          throw new CustosError('storage_unavailable', `The vault at ${base} could not be reached (${(e as Error).message}).`, { tag: 'unreachable' });
        }
        const parsed = (await res.json().catch(() => undefined)) as { code?: string; message?: string } | undefined;
        if (res.status >= 400) {
          const [code, tag] = String(parsed?.code ?? 'internal').split(':');
          throw new CustosError((code ?? 'internal') as ErrorCode, parsed?.message ?? `The vault answered ${res.status}.`, tag ? { tag } : undefined);
        }
        if (parsed === undefined || parsed === null || typeof parsed !== 'object') throw new CustosError('internal', `The vault's answer to ${path} is not JSON.`);
        return parsed;
      },
      close: () => undefined,
    };
  }
}
