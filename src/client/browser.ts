/**
 * `custos/client/browser`: an end user's account session in a browser (or any runtime with
 * `fetch` and WebAssembly). The same `CustosSession` as in Node, over `fetch`; TLS is the
 * browser's. Nothing here imports a Node module: `test/client/browser.test.ts` bundles it for
 * the browser platform and runs the bundle against a real server.
 */
import { CustosError } from '../core/errors.js';
import { CustosSession, type SessionOptions } from './session.js';

export { CustosSession, type SessionOptions, type AccountKeyView } from './session.js';
export { CustosError } from '../core/errors.js';

CustosSession.usePoster((opts: SessionOptions) => {
  const f = opts.fetch ?? globalThis.fetch;
  const base = opts.addr.replace(/\/+$/, '');
  return {
    post: async (path, body) => {
      let res: Response;
      try {
        res = await f(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      } catch (e) {
        throw new CustosError('storage_unavailable', `The vault at ${base} could not be reached (${(e as Error).message}).`);
      }
      const parsed = (await res.json().catch(() => null)) as { code?: string; message?: string } | null;
      if (res.status >= 400) {
        const [code, tag] = String(parsed?.code ?? 'internal').split(':');
        throw new CustosError(code as never, parsed?.message ?? `The vault answered ${res.status}.`, tag ? { tag } : undefined);
      }
      return parsed;
    },
    close: () => undefined,
  };
});
