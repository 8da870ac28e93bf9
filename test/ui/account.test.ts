/**
 * An account holder in the console: the operator makes the account, the person sets a
 * password with the one-time registration code and logs in with it (OPAQUE in the page, from
 * the built /ui/session.js: the password never leaves the browser), sees and makes keys,
 * revokes a grant, and logs out; a wrong password is refused in words. The page runs under the
 * console's Content-Security-Policy (WebAssembly allowed, nothing inline) and passes axe-core.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CustosSession } from '../../src/client/index.js';
import { accessibilityProblems, consolePage, launchBrowser, screenshot, servedVault } from '../helpers/console.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'console account passphrase' };

test('an account sets its password with its code, logs in with OPAQUE, makes a key, revokes a grant and logs out', { timeout: 180_000 }, async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const { admin, url } = await servedVault(t, { env: PASSENV });
  const made = await admin.createAccount({ name: 'maria', type: 'delegated' });
  const { page, problems } = await consolePage(browser);
  await page.goto(`${url}/ui/`);
  await page.getByRole('heading', { name: 'Log in with an account' }).waitFor();
  assert.deepEqual(await accessibilityProblems(page), []);
  await screenshot(page, 'login');

  // First time: the password, with the registration code.
  await page.getByText('First time here with a registration code?').click();
  await page.getByLabel('Account name').nth(1).fill('maria');
  await page.getByLabel('Registration code').fill(made.registration_code);
  await page.getByLabel('New password', { exact: true }).fill('correct horse battery staple');
  await page.getByLabel('New password, again').fill('correct horse battery staple');
  await page.getByRole('button', { name: 'Set password' }).click();
  await page.getByText('Password set: log in with it above.').waitFor({ timeout: 60_000 });

  // A wrong password, then the right one.
  await page.getByLabel('Password', { exact: true }).fill('not the password');
  await page.getByRole('button', { name: 'Log in with account' }).click();
  await page.getByRole('alert').filter({ hasText: 'The user name or password is wrong.' }).waitFor({ timeout: 60_000 });
  await page.getByLabel('Password', { exact: true }).fill('correct horse battery staple');
  await page.getByRole('button', { name: 'Log in with account' }).click();
  await page.getByRole('heading', { name: 'Account maria' }).waitFor({ timeout: 60_000 });
  assert.equal(await page.locator('#who').innerText(), 'account:maria (account)');
  assert.equal(await page.getByRole('link', { name: 'Approvals' }).isVisible(), false, 'an account sees its own page only');
  assert.equal(await page.evaluate(() => JSON.stringify(sessionStorage)), '{}', 'nothing of the session is stored');

  // Health is open to it, without a principal's sections (and without losing the session).
  await page.getByRole('link', { name: 'Health' }).click();
  await page.getByRole('heading', { name: 'Seal' }).waitFor();
  assert.equal(await page.getByRole('heading', { name: 'CometBFT validators' }).count(), 0);
  await page.getByRole('link', { name: 'My account' }).click();
  await page.getByRole('heading', { name: 'Account maria' }).waitFor();

  // A key, made from the page.
  await page.getByLabel('Key name').fill('savings');
  await page.getByRole('button', { name: 'Make key' }).click();
  const keys = page.getByRole('table', { name: 'My keys' });
  await keys.waitFor();
  assert.match(await keys.innerText(), /savings\s+ed25519\s+[A-Za-z0-9+/=]{40,}/);
  // A grant made elsewhere (the same account in the SDK), revoked here.
  const sdk = await CustosSession.login({ addr: url }, 'maria', 'correct horse battery staple');
  t.after(() => sdk.logout().catch(() => undefined));
  await admin.createToken({ name: 'wallet-app', role: 'signer' });
  await sdk.grant({ principal: 'token:wallet-app', operations: ['sign'], keys: ['savings'] });
  await page.reload();
  // A reload ends the page's session (its keys were in memory only).
  await page.getByLabel('Account name').first().waitFor();
  await page.getByLabel('Account name').first().fill('maria');
  await page.getByLabel('Password', { exact: true }).fill('correct horse battery staple');
  await page.getByRole('button', { name: 'Log in with account' }).click();
  const grants = page.getByRole('table', { name: 'Rights given to other principals' });
  await grants.waitFor({ timeout: 60_000 });
  assert.match(await grants.innerText(), /token:wallet-app\s+sign\s+savings/);
  assert.deepEqual(await accessibilityProblems(page), []);
  await screenshot(page, 'account');
  await page.getByRole('button', { name: 'Revoke the grant to token:wallet-app' }).click();
  await page.getByText('No principal has rights over this account\'s keys.').waitFor();
  assert.deepEqual(await sdk.grants(), []);

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Log in with an account' }).waitFor();
  assert.deepEqual(problems, []);
});
