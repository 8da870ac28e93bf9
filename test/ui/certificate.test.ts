/**
 * Logging in to the console with a client certificate: `custos serve` on TLS with
 * [api] client_ca, a certificate from `custos tls client` bound to an approver principal, and
 * Chromium presenting it. The console needs no token; a browser without a certificate is told
 * so and offered the token form. A page of another site cannot ride on the certificate: its
 * request to the vault is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmpvault.js';
import { custos, serve } from '../helpers/process.js';
import { consolePage, launchBrowser } from '../helpers/console.js';
import { requireTool } from '../helpers/require.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'console certificate passphrase' };

test('an approver logs in to the console with the client certificate bound to it; a browser without one is offered the token form; another site\'s page cannot ride on a certificate', { timeout: 120_000 }, async (t) => {
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
  for (const name of ['desk', 'ops']) {
    const made = custos(['tls', 'client', '--data-dir', dataDir, '--name', name, '--out', join(dir, name)]);
    assert.equal(made.status, 0, made.stderr);
  }
  writeFileSync(join(dataDir, 'custos.toml'), '[api]\ntls_cert = "tls/server-chain.pem"\ntls_key = "tls/server.key"\nclient_ca = "tls/ca.pem"\n', { mode: 0o600 });
  const s = await serve(['--data-dir', dataDir], PASSENV);
  t.after(() => s.stop());
  for (const [name, role] of [['desk', 'approver'], ['ops', 'operator']]) {
    const bind = custos(['tokens', 'create', '--name', name!, '--role', role!, '--certificate', join(dir, name!, `${name}.pem`), '--addr', s.url, '--ca', ca], { CUSTOS_TOKEN: token });
    assert.equal(bind.status, 0, bind.stderr);
  }

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

  // Another site's page, in a browser holding the operator's certificate, asks the vault to
  // disable a key: the browser presents the certificate, so the vault must refuse it.
  const created = custos(['keys', 'create', '--label', 'pay', '--algorithm', 'ed25519', '--addr', s.url, '--ca', ca], { CUSTOS_TOKEN: token });
  assert.equal(created.status, 0, created.stderr);
  const evil = createServer((_req, res) => {
    res.setHeader('content-type', 'text/html');
    // A body-less POST needs no content type, so no CORS preflight: the browser just sends it.
    res.end(`<script>fetch('${s.url}/v1/keys/pay/disable', { method: 'POST', mode: 'no-cors', credentials: 'include' })</script>`);
  });
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
  t.after(() => evil.close());
  const ops = await consolePage(browser, { ignoreHTTPSErrors: true, clientCertificates: [{ origin: s.url, certPath: join(dir, 'ops', 'ops.pem'), keyPath: join(dir, 'ops', 'ops.key') }] });
  const answer = ops.page.waitForResponse((r) => r.url().endsWith('/v1/keys/pay/disable'));
  await ops.page.goto(`http://127.0.0.1:${(evil.address() as { port: number }).port}/`);
  const refused = await answer;
  assert.equal(refused.status(), 403);
  const shown = custos(['keys', 'show', 'pay', '--json', '--addr', s.url, '--ca', ca], { CUSTOS_TOKEN: token });
  assert.equal(JSON.parse(shown.stdout).state, 'active', 'the key is still active');
  // The operator's own console, same certificate, may change it.
  await ops.page.goto(`${s.url}/ui/`);
  const mine = await ops.page.evaluate(async () => (await fetch('/v1/keys/pay/disable', { method: 'POST' })).status);
  assert.equal(mine, 200, 'a same-origin request with the certificate is accepted');
});
