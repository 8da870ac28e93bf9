/**
 * `custos/client/browser`: bundled by esbuild for the browser platform (no Node module may be
 * in it; the OPAQUE library's WebAssembly goes in with it), then the bundle itself, run with
 * the runtime's `fetch`, registers, logs in, calls inside its session and logs out against a
 * real `custos serve`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { CustosClient } from '../../src/client/index.js';
import { tempDir } from '../helpers/tmpvault.js';
import { custos, ROOT, serve } from '../helpers/process.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'browser test passphrase' };

test('the browser bundle: no Node module in it, and it logs in and calls in a session against the real server', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'custos-browser.mjs');
    const r = await build({ entryPoints: [join(ROOT, 'src/client/browser.ts')], bundle: true, platform: 'browser', format: 'esm', outfile: out, logLevel: 'silent', metafile: true });
    const inputs = Object.keys(r.metafile.inputs);
    assert.ok(!inputs.some((i) => i.startsWith('node:')), `no Node module: ${inputs.filter((i) => i.startsWith('node:')).join(', ')}`);
    assert.doesNotMatch(readFileSync(out, 'utf8'), /from\s*["']node:/);

    const dataDir = join(dir, 'v');
    const tokenFile = join(dir, 'admin.token');
    assert.equal(custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12', '--admin-token-file', tokenFile], PASSENV).status, 0);
    const s = await serve(['--data-dir', dataDir], PASSENV);
    const admin = new CustosClient({ addr: s.url, token: readFileSync(tokenFile, 'utf8').trim() });
    try {
      const made = await admin.createAccount({ name: 'webuser', type: 'self-custodial' });
      const { CustosSession } = (await import(pathToFileURL(out).href)) as typeof import('../../src/client/browser.js');
      const opts = { addr: s.url, keyStretching: 'memory-constrained' as const };
      await CustosSession.register(opts, 'webuser', made.registration_code, 'web password 1');
      const session = await CustosSession.login(opts, 'webuser', 'web password 1');
      assert.equal((await session.whoami()).name, 'webuser');
      const k = await session.generateKey('k1', 'ed25519');
      assert.equal((await session.sign('k1', new TextEncoder().encode('hi'))).length, 64);
      assert.equal(k.name, 'k1');
      await session.logout();
      await assert.rejects(CustosSession.login(opts, 'webuser', 'wrong password'), (e: unknown) => (e as { fullCode?: string }).fullCode === 'unauthorized');
    } finally {
      admin.close();
      await s.stop();
    }
    writeFileSync(join(dir, 'done'), '');
  } finally {
    cleanup();
  }
});
