/**
 * The console's audit view against a real `custos serve`: an auditor sees the entries in
 * order (newest first, one sequence apart), filters them by operation, key and outcome, sees
 * the whole chain verified with its latest signed checkpoint, and, once an entry is edited in
 * the SQLite file behind the running vault, the view flags the log and names the entry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Page } from 'playwright-core';
import { DB_FILE } from '../../src/vault/open.js';
import { accessibilityProblems, consolePage, launchBrowser, logIn, screenshot, servedVault } from '../helpers/console.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'console audit passphrase' };

async function rows(page: Page): Promise<Array<{ seq: number; operation: string; key: string; outcome: string }>> {
  return page.locator('table.audit tbody tr').evaluateAll((trs) =>
    trs.map((tr) => {
      const c = [...tr.children].map((x) => (x as HTMLElement).innerText.trim());
      return { seq: Number(c[0]), operation: c[3]!, key: c[4]!, outcome: c[5]! };
    }),
  );
}

test('the audit view shows the log in order with its chain verified and latest checkpoint, filters it, and flags an entry edited behind the vault', { timeout: 120_000 }, async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const { dataDir, admin, ...s } = await servedVault(t, { env: PASSENV });
  await admin.createKey({ label: 'pay', algorithm: 'ed25519' });
  await admin.createKey({ label: 'other', algorithm: 'ed25519' });
  for (let i = 0; i < 3; i++) await admin.sign('pay', { message: new TextEncoder().encode(`payment ${i}`) });
  await admin.disableKey('other');
  await assert.rejects(admin.sign('other', { message: new TextEncoder().encode('refused') }));
  const auditor = (await admin.createToken({ name: 'auditor', role: 'auditor' })).token!;

  const { page, problems } = await consolePage(browser);
  await logIn(page, s.url, auditor);
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByRole('heading', { name: 'The audit chain verifies' }).waitFor({ timeout: 15_000 });
  const verified = await page.locator('section.verification').innerText();
  assert.match(verified, /Signed checkpoints\s+[1-9]/);
  assert.match(verified, /Latest checkpoint\s+#\d+ at \d{4}-/);

  // In order: newest first, each one sequence number below the one above it.
  const all = await rows(page);
  assert.ok(all.length >= 8, `${all.length} entries`);
  for (let i = 1; i < all.length; i++) assert.equal(all[i]!.seq, all[i - 1]!.seq - 1, 'consecutive, newest first');
  assert.equal(all[all.length - 1]!.seq, 1);
  const newest = (await admin.auditTail(1))[0]!;
  assert.ok(all[0]!.seq >= newest.seq - 1, 'the page starts at the head');
  assert.deepEqual(await accessibilityProblems(page), []);
  await screenshot(page, 'audit');

  // Filters: by operation, then by key and outcome.
  await page.getByLabel('Operation').fill('sign');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForFunction(() => [...document.querySelectorAll('table.audit tbody tr')].every((tr) => tr.children[3]?.textContent === 'sign'));
  const signs = await rows(page);
  assert.equal(`${signs[0]!.key}:${signs[0]!.outcome}`, 'other:denied', 'the newest sign is the refusal');
  assert.equal(signs.filter((r) => r.key === 'pay' && r.outcome === 'ok').length, 3, 'three signatures by pay');
  await page.getByLabel('Key').fill('pay');
  await page.getByLabel('Outcome').selectOption('denied');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.getByText('No entry matches.').waitFor();

  // Someone edits an entry in the database behind the running vault.
  const victim = signs.find((r) => r.key === 'pay' && r.outcome === 'ok')!.seq;
  const db = new Database(join(dataDir, DB_FILE));
  db.prepare("UPDATE audit SET reason = 'nothing to see' WHERE seq = ?").run(victim);
  db.close();
  // A check answers for 10 s (asking again and again costs one check): a person asks again.
  const alarm = page.getByRole('alert').filter({ hasText: `Entry ${victim} was altered` });
  for (let i = 0; i < 40 && !(await alarm.isVisible()); i++) {
    await page.getByRole('button', { name: 'Verify again' }).click();
    await alarm.waitFor({ timeout: 1000 }).catch(() => undefined);
  }
  assert.match(await alarm.innerText(), new RegExp(`from entry ${victim} on`));
  await page.getByRole('heading', { name: 'The audit log fails verification' }).waitFor();
  assert.deepEqual(await accessibilityProblems(page), []);
  await screenshot(page, 'audit-tampered');
  // The API says the same to any client, and refuses the check to a principal confined to some keys.
  const status = await (await fetch(`${s.url}/v1/audit/status`, { headers: { authorization: `Bearer ${auditor}` } })).json();
  assert.equal(status.ok, false);
  assert.equal(status.first_bad.seq, victim);
  const scoped = (await admin.createToken({ name: 'pay-auditor', role: 'auditor', keys: ['pay'] })).token!;
  assert.equal((await fetch(`${s.url}/v1/audit/status`, { headers: { authorization: `Bearer ${scoped}` } })).status, 403);
  assert.deepEqual(problems, []);
});
