/**
 * The web console's static files (ui/ at the package root: plain HTML, CSS and an ES module,
 * no build step), served under /ui/ on the API's own listener. Only the files named here are
 * served; each answer carries a Content-Security-Policy that allows scripts, styles and API
 * calls from this origin only (no inline code, no framing). The pages hold no secret: the
 * token a person types stays in the tab and every action is an API call, authorised as any.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';

const JS = 'text/javascript; charset=utf-8';
const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'app.js': JS,
  'lib.js': JS,
  'pages/approvals.js': JS,
  'pages/audit.js': JS,
  'pages/keys.js': JS,
  'pages/policies.js': JS,
  'pages/health.js': JS,
  'pages/account.js': JS,
  'session.js': JS,
};

/**
 * 'wasm-unsafe-eval' lets the page compile WebAssembly (the OPAQUE library in session.js), and
 * nothing else: no eval, no inline script.
 */
export const CONSOLE_CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** From src/frontends/http (tsx) or dist/frontends/http (built): ../../../ui is the package's ui/. */
const ROOT = new URL('../../../ui/', import.meta.url);
/** The files `npm run build` makes (scripts/build-ui.mjs): the account session's bundle. */
const BUILT = new URL('../../../dist/ui/', import.meta.url);

export function uiRoutes(app: FastifyInstance): void {
  const cache = new Map<string, Buffer>();
  const read = (name: string) => {
    let b = cache.get(name);
    if (!b) {
      b = readFileSync(fileURLToPath(new URL(name, name === 'session.js' ? BUILT : ROOT)));
      cache.set(name, b);
    }
    return b;
  };
  const open = { config: { public: true }, schema: { hide: true } };
  const serveFile = async (name: string, reply: import('fastify').FastifyReply) => {
    const type = Object.hasOwn(FILES, name) ? FILES[name] : undefined;
    if (!type) return reply.code(404).type('text/plain').send('Not found');
    let body: Buffer;
    try {
      body = read(name);
    } catch {
      // Only a built file can be missing: a checkout run from its sources before `npm run build`.
      return reply.code(404).type('text/plain').send(`${name} is built by \`npm run build\`; run it, then reload.`);
    }
    return reply
      .header('content-security-policy', CONSOLE_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store')
      .header('x-frame-options', 'DENY')
      .type(type)
      .send(body);
  };
  app.get('/ui/', open, async (_req, reply) => serveFile('index.html', reply));
  app.get<{ Params: { '*': string } }>('/ui/*', open, async (req, reply) => serveFile(req.params['*'], reply));
}
