/**
 * The one built file of the web console: `custos/client/browser` (an account's OPAQUE login
 * and sealed session, with the OPAQUE library's WebAssembly inlined) bundled for browsers into
 * dist/ui/session.js, which `custos serve` serves as /ui/session.js. Run by `npm run build`
 * (and so by `npm ci`, through `prepare`); everything else in ui/ is served as written.
 */
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
await build({
  entryPoints: [`${root}src/client/browser.ts`],
  outfile: `${root}dist/ui/session.js`,
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  minify: true,
  legalComments: 'linked',
  logLevel: 'warning',
});
