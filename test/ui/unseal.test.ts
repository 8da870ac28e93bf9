/**
 * The console on a vault sealed by operator shares: before anyone logs in, the page shows
 * the seal and a form for a share; two operators give theirs (keyboard only), a damaged share
 * is refused with a sentence and loses no progress, and once unsealed the console asks for a
 * login and serves. The page passes axe-core's checks while sealed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmpvault.js';
import { custos, serve } from '../helpers/process.js';
import { accessibilityProblems, consolePage, launchBrowser, screenshot, tabTo } from '../helpers/console.js';

test('sealed by 2-of-3 shares: the console shows the seal and takes shares from operators, then asks for a login', { timeout: 120_000 }, async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const dataDir = join(dir, 'v');
  const shareDir = join(dir, 'shares');
  const init = custos(['init', '--data-dir', dataDir, '--shares', '3', '--threshold', '2', '--share-dir', shareDir], { CUSTOS_PASSPHRASE: undefined });
  assert.equal(init.status, 0, init.stderr);
  const admin = /Admin API token[^\n]*\n\s+(\S+)/.exec(init.stdout)![1]!;
  const shares = readdirSync(shareDir).sort().map((f) => readFileSync(join(shareDir, f), 'utf8').trim());
  const s = await serve(['--data-dir', dataDir], { CUSTOS_PASSPHRASE: undefined });
  t.after(() => s.stop());

  const { page, problems } = await consolePage(browser);
  await page.goto(`${s.url}/ui/`);
  const seal = page.locator('main');
  await page.getByRole('heading', { name: 'Unseal with a share' }).waitFor();
  assert.match(await seal.innerText(), /State\s+Sealed[\s\S]*Sealed by\s+operator shares[\s\S]*Shares given\s+0 of 2/);
  assert.equal(await page.getByRole('link', { name: 'Keys' }).isVisible(), false, 'no sections while sealed');
  assert.deepEqual(await accessibilityProblems(page), []);
  await screenshot(page, 'unseal');

  const give = async (share: string) => {
    await tabTo(page, 'Operator share');
    await page.keyboard.insertText(share);
    await tabTo(page, 'Give share');
    await page.keyboard.press('Enter');
  };
  // A damaged share: refused in words, nothing lost.
  const damaged = shares[0]!.slice(0, -20) + (shares[0]!.at(-20) === 'A' ? 'B' : 'A') + shares[0]!.slice(-19);
  await give(damaged);
  await page.getByRole('status').filter({ hasText: /Share refused: .*damaged/ }).waitFor();
  await give(shares[2]!);
  await page.getByRole('status').filter({ hasText: 'Share accepted: 1 of 2 given.' }).waitFor();
  await page.getByText(/Shares given\s*1 of 2/).waitFor();
  assert.equal(await page.locator('#share').inputValue(), '', 'the share leaves the field once sent');
  await give(shares[0]!);
  await page.getByRole('status').filter({ hasText: 'Unsealed: the vault serves again.' }).waitFor();
  // Unsealed: the console asks who is there.
  await page.getByLabel('API token').waitFor();
  await page.keyboard.type(admin);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Approvals waiting' }).waitFor();
  assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
  assert.deepEqual(problems, []);
});
