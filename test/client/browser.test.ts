/**
 * `custos/client/browser` in a real browser: the module is bundled by esbuild for the browser
 * platform (no Node module may be in it; the OPAQUE library's WebAssembly goes in with it),
 * loaded into headless Chromium (Debian `chromium`, driven by playwright-core), and there it
 * registers, logs in, generates a key, signs, and logs out against a real `custos serve`. The
 * page and the API share one origin (`https://vault.test`): Playwright serves the page and
 * hands each API request to the real server, as a reverse proxy in front of Custos would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { CustosClient } from '../../src/client/index.js';
import { tempDir } from '../helpers/tmpvault.js';
import { custos, ROOT, serve } from '../helpers/process.js';
import { requireTool } from '../helpers/require.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'browser test passphrase' };
const ORIGIN = 'https://vault.test';

test('the browser bundle has no Node module, and in headless Chromium it registers, logs in, signs and logs out against the real server', async (t) => {
  if (!requireTool(t, 'chromium', 'chromium')) return;
  const { dir, cleanup } = tempDir();
  try {
    const r = await build({ entryPoints: [join(ROOT, 'src/client/browser.ts')], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent', metafile: true });
    const inputs = Object.keys(r.metafile.inputs);
    assert.ok(!inputs.some((i) => i.startsWith('node:')), `no Node module: ${inputs.filter((i) => i.startsWith('node:')).join(', ')}`);
    const bundle = r.outputFiles[0]!.text;
    assert.doesNotMatch(bundle, /from\s*["']node:/);

    const dataDir = join(dir, 'v');
    const tokenFile = join(dir, 'admin.token');
    assert.equal(custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12', '--admin-token-file', tokenFile], PASSENV).status, 0);
    const s = await serve(['--data-dir', dataDir], PASSENV);
    const admin = new CustosClient({ addr: s.url, token: readFileSync(tokenFile, 'utf8').trim() });
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    try {
      const made = await admin.createAccount({ name: 'webuser', type: 'self-custodial' });
      const page = await browser.newPage();
      await page.route(`${ORIGIN}/**`, async (route) => {
        const url = new URL(route.request().url());
        if (url.pathname === '/') return route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>custos</title>' });
        if (url.pathname === '/custos-browser.js') return route.fulfill({ contentType: 'text/javascript', body: bundle });
        // The API: to the real server.
        return route.fulfill({ response: await route.fetch({ url: `${s.url}${url.pathname}${url.search}` }) });
      });
      await page.goto(`${ORIGIN}/`);
      const result = await page.evaluate(
        async ({ code }) => {
          const { CustosSession } = await import('/custos-browser.js' as string);
          const opts = { addr: location.origin, keyStretching: 'memory-constrained' };
          await CustosSession.register(opts, 'webuser', code, 'web password 1');
          const session = await CustosSession.login(opts, 'webuser', 'web password 1');
          const who = await session.whoami();
          await session.generateKey('k1', 'ed25519');
          const sig: Uint8Array = await session.sign('k1', new TextEncoder().encode('hi'));
          // A refusal from the server comes back as a typed error.
          let refused = '';
          try {
            await session.sign('nope', new TextEncoder().encode('hi'));
          } catch (e) {
            refused = (e as { fullCode?: string }).fullCode ?? String(e);
          }
          await session.logout();
          let wrong = '';
          try {
            await CustosSession.login(opts, 'webuser', 'wrong password');
          } catch (e) {
            wrong = (e as { fullCode?: string }).fullCode ?? String(e);
          }
          return { name: who.name, sigLength: sig.length, wrong, refused, agent: navigator.userAgent };
        },
        { code: made.registration_code },
      );
      assert.equal(result.name, 'webuser');
      assert.equal(result.sigLength, 64);
      assert.equal(result.wrong, 'unauthorized');
      assert.equal(result.refused, 'key_not_found');
      assert.match(result.agent, /Chrome/);
    } finally {
      await browser.close();
      admin.close();
      await s.stop();
    }
  } finally {
    cleanup();
  }
});

test('both entry points in one process: each CustosSession keeps its own transport', async () => {
  const node = await import('../../src/client/index.js');
  const web = await import('../../src/client/browser.js');
  assert.notEqual(node.CustosSession, web.CustosSession);
  // The Node one still refuses TLS options on a plain address (its transport), after the browser entry loaded.
  await assert.rejects(node.CustosSession.register({ addr: 'http://127.0.0.1:9', ca: 'x' }, 'n', 'c', 'p'), (e: unknown) => (e as { code?: string }).code === 'bad_request');
  // The browser one refuses TLS options it cannot honour.
  await assert.rejects(web.CustosSession.register({ addr: 'https://vault.test', ca: 'x' }, 'n', 'c', 'p'), (e: unknown) => (e as { code?: string }).code === 'bad_request');
});
