/**
 * The web console (/ui/) in a real browser: headless Chromium (Debian `chromium`, driven by
 * playwright-core) against a real `custos serve`. A PSBT waits for 2 of 3 approvers; the first
 * approver logs in with a token, sees the waiting request with what it sends, where and the fee,
 * and approves; it stays waiting (live, without a reload); the second approves and the client
 * that asked gets its signature. A signer-scoped principal sees no approve button, and the API
 * refuses it anyway. Pages carry a strict Content-Security-Policy and run with it (no inline
 * code). CUSTOS_SCREENSHOTS=1 writes the README's screenshots to docs/screenshots/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CustosClient } from '../../src/client/index.js';
import { CustosApiError } from '../../src/client/transport.js';
import { accessibilityProblems, consolePage, launchBrowser, logIn, screenshot, servedVault } from '../helpers/console.js';
import { hdSpend } from '../helpers/psbt.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'console test passphrase' };
const MNEMONIC = 'legal winner thank year wave sausage worth useful legal winner thank yellow';

test('approvers decide a waiting PSBT in the console (2 of 3, live), and the waiting client gets its signature; a signer sees no approve button', { timeout: 120_000 }, async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const { admin, ...s } = await servedVault(t, { env: PASSENV });

  await admin.createHdKey({ label: 'treasury', curve: 'secp256k1', mnemonic: MNEMONIC, purpose: 'bitcoin' });
  const tokens: Record<string, string> = {};
  for (const name of ['alice', 'bob', 'carol']) tokens[name] = (await admin.createToken({ name, role: 'approver' })).token!;
  tokens.payer = (await admin.createToken({ name: 'payer', role: 'signer', keys: ['treasury'] })).token!;
  await admin.uploadPolicy(JSON.stringify({ id: 'two-of-three', applies_to: { keys: ['treasury'] }, rules: [{ type: 'approval', approvers: ['token:alice', 'token:bob', 'token:carol'], required: 2 }] }), 'json');

  // The console's own headers.
  const res = await fetch(`${s.url}/ui/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
  assert.doesNotMatch(res.headers.get('content-security-policy') ?? '', /unsafe-inline/);
  assert.equal((await fetch(`${s.url}/ui/..%2fpackage.json`)).status, 404, 'only the console files are served');

  // The payer's PSBT waits for approvals.
  const payer = new CustosClient({ addr: s.url, token: tokens.payer! });
  t.after(() => payer.close());
  // First a request that another approver will deny while alice reads, then the real one.
  const decoy = payer.signPsbt('treasury', hdSpend(MNEMONIC, "m/84'/1'/0'/0/0", 8, 20_000n, 11_000n).toBuffer(), 'regtest');
  decoy.catch(() => undefined);
  const carol = new CustosClient({ addr: s.url, token: tokens.carol! });
  t.after(() => carol.close());
  while ((await carol.approvals()).length < 1) await new Promise((r) => setTimeout(r, 50));
  const psbt = hdSpend(MNEMONIC, "m/84'/1'/0'/0/0", 7, 100_000n, 55_000n, { path: "m/84'/1'/0'/1/0", value: 40_000n });
  const signed = payer.signPsbt('treasury', psbt.toBuffer(), 'regtest');
  signed.catch(() => undefined);

  const { page, problems: violations } = await consolePage(browser);
  await logIn(page, s.url, tokens.alice!);
  const card = page.getByRole('article').filter({ hasText: '55000 sats' });
  await card.waitFor({ timeout: 15_000 });
  const decoyCard = page.getByRole('article').filter({ hasText: '11000 sats' });
  // The list changes under alice's eyes: the card she reads does not move, the decided one stays, inert.
  const before = (await card.boundingBox())!.y;
  const decoyId = (await carol.approvals()).find((a) => a.summary.sent_externally_sats === '11000')!.id;
  await carol.decide(decoyId, false);
  await decoyCard.filter({ hasText: 'No longer waiting' }).waitFor({ timeout: 10_000 });
  assert.equal((await card.boundingBox())!.y, before, 'the card under the pointer did not move');
  assert.equal(await decoyCard.getByRole('button').count(), 0, 'a decided request has no buttons');
  await assert.rejects(decoy);
  const text = await card.innerText();
  assert.match(text, /Requested by\s+token:payer/);
  assert.match(text, /Sent away \(sats\)\s+55000/);
  assert.match(text, /Fee \(sats\)\s+5000/);
  assert.match(text, /bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080/);
  assert.match(text, /0 of 2/);
  assert.match(text, /Change back to the wallet \(sats\)\s+40000/);
  assert.match(text, / 40000 sats \(change\)/);
  assert.match(text, /Outputs\s+bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080 55000 sats/);
  assert.match(text, /Asked for by\s+two-of-three v1 rules\[0\]/);
  assert.deepEqual(await accessibilityProblems(page), []);
  await screenshot(page, 'approvals');
  await card.getByRole('button', { name: 'Approve' }).click();
  await page.getByRole('status').filter({ hasText: 'Approval recorded (1 of 2)' }).waitFor();
  await card.filter({ hasText: '1 of 2 (token:alice)' }).waitFor({ timeout: 10_000 });
  assert.match(await page.getByRole('status').innerText(), /for sign with treasury \(asked by token:payer at /, 'the status names the request');

  // A second approver, in the same browser after logging out.
  await page.getByRole('button', { name: 'Log out' }).click();
  await logIn(page, s.url, tokens.bob!);
  await page.getByRole('article', { name: /with treasury/ }).getByRole('button', { name: 'Approve' }).click();
  await page.getByRole('status').filter({ hasText: 'Approved' }).waitFor();
  const out = await signed;
  assert.deepEqual(out.signed_inputs, [0], 'the waiting client got its signed PSBT');
  await page.getByText('Nothing is waiting for an approval.').waitFor({ timeout: 10_000 });

  // A signer's token: no approve button, and the API refuses it anyway.
  await page.getByRole('button', { name: 'Log out' }).click();
  await logIn(page, s.url, tokens.payer!);
  // Its sections are the ones it may use (keys, not approvals); asked for approvals, it is told.
  await page.getByRole('heading', { name: 'Keys' }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'Approvals' }).isVisible(), false);
  await page.goto(`${s.url}/ui/#approvals`);
  await page.getByText('This principal may not approve requests.').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Approve' }).count(), 0);
  await assert.rejects(payer.approvals(), (e: unknown) => e instanceof CustosApiError && e.status === 403);
  // A wrong token: back to the login form, said so.
  await page.getByRole('button', { name: 'Log out' }).click();
  await logIn(page, s.url, 'custos_not-a-token');
  await page.getByText('The token was not accepted: log in again.').waitFor();
  assert.deepEqual(violations, [], 'the pages run under their Content-Security-Policy');
});
