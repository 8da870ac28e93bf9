/**
 * Logging in to the console with a client certificate: `custos serve` on TLS with
 * [api] client_ca, a certificate from `custos tls client` bound to an approver principal, and
 * Chromium presenting it. The console needs no token; a browser without a certificate is told
 * so and offered the token form.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmpvault.js';
import { custos, serve } from '../helpers/process.js';
import { consolePage, launchBrowser } from '../helpers/console.js';
import { requireTool } from '../helpers/require.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'console certificate passphrase' };

test('an approver logs in to the console with the client certificate bound to it; a browser without one is refused and offered the token form', { timeout: 120_000 }, async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const browser = await launchBrowser(t);
  if (!browser) return;
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const dataDir = join(dir, 'v');
  const init = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV);
  const token = /custos_[A-Za-z0-9_-]{43}/.exec(init.stdout)![0];
  assert.equal(custos(['tls', 'init', '--data-dir', dataDir]).status, 0);
  const ca = join(dataDir, 'tls', 'ca.pem');
  const made = custos(['tls', 'client', '--data-dir', dataDir, '--name', 'desk', '--out', join(dir, 'desk')]);
  assert.equal(made.status, 0, made.stderr);
  writeFileSync(join(dataDir, 'custos.toml'), '[api]\ntls_cert = "tls/server-chain.pem"\ntls_key = "tls/server.key"\nclient_ca = "tls/ca.pem"\n', { mode: 0o600 });
  const s = await serve(['--data-dir', dataDir], PASSENV);
  t.after(() => s.stop());
  const bind = custos(['tokens', 'create', '--name', 'desk', '--role', 'approver', '--certificate', join(dir, 'desk', 'desk.pem'), '--addr', s.url, '--ca', ca], { CUSTOS_TOKEN: token });
  assert.equal(bind.status, 0, bind.stderr);

  // The server's certificate is from the vault's own CA, which this browser profile does not know.
  const { page, problems } = await consolePage(browser, { ignoreHTTPSErrors: true, clientCertificates: [{ origin: s.url, certPath: join(dir, 'desk', 'desk.pem'), keyPath: join(dir, 'desk', 'desk.key') }] });
  await page.goto(`${s.url}/ui/`);
  await page.getByRole('button', { name: 'Log in with this browser’s client certificate' }).click();
  await page.getByRole('heading', { name: 'Approvals waiting' }).waitFor();
  assert.equal(await page.locator('#who').innerText(), 'cert:desk (approver)');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('custos.token')), null, 'no token is kept');
  assert.deepEqual(problems, []);

  const bare = await consolePage(browser, { ignoreHTTPSErrors: true });
  await bare.page.goto(`${s.url}/ui/`);
  await bare.page.getByRole('button', { name: 'Log in with this browser’s client certificate' }).click();
  await bare.page.getByText('This browser’s certificate was not accepted').waitFor();
  await bare.page.getByLabel('API token').waitFor();
  assert.deepEqual(bare.problems, []);
});
