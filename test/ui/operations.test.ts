/**
 * The console's keys, policies and health pages against a real `custos serve`, used with the
 * keyboard alone: an operator logs in by typing, moves with Tab and Enter, reads the keys with
 * their state, tags and public keys, opens a policy's source, asks "would this be allowed"
 * (the vault's policy test), and reads the health page: the database, a [[privval]] validator
 * with its last signed height, an [[ssh_agent]] socket with a client connected, and a
 * SoftHSM2 token ([[pkcs11]]).
 * Every page passes axe-core's WCAG A/AA checks with no serious violation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { accessibilityProblems, consolePage, launchBrowser, screenshot, servedVault, tabTo } from '../helpers/console.js';
import { createSoftHsm } from '../helpers/softhsm.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'console operations passphrase' };

test('keys, policies (with "would this be allowed") and health, used with the keyboard alone, pass the accessibility check', { timeout: 120_000 }, async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const hsm = createSoftHsm(t, { label: 'console-token' });
  if (!hsm) return;
  t.after(() => hsm.cleanup());
  let agentConfig = '';
  const { dir, dataDir, admin, ...s } = await servedVault(t, {
    env: { ...PASSENV, SOFTHSM2_CONF: hsm.conf },
    config: (at) => {
      const pinFile = join(at, 'pin');
      writeFileSync(pinFile, `${Buffer.from(hsm.pin).toString()}\n`, { mode: 0o600 });
      agentConfig = `[[ssh_agent]]\nname = "ops"\nsocket = "agent/ops.sock"\nkeys = ["ops-*"]\n\n[[pkcs11]]\nname = "hsm"\nmodule = "${hsm.module}"\ntoken_label = "${hsm.label}"\npin_file = "${pinFile}"\n`;
      return agentConfig;
    },
  });

  await admin.createKey({ label: 'ops-deploy', algorithm: 'ed25519', tags: ['team-ops'] });
  const validator = await admin.createKey({ label: 'validator', algorithm: 'ed25519', purpose: 'consensus' });
  await admin.disableKey((await admin.createKey({ label: 'ops-retired', algorithm: 'p256' })).id);
  await admin.uploadPolicy(JSON.stringify({ id: 'ops-approval', applies_to: { tags: ['team-ops'] }, rules: [{ type: 'approval', approvers: ['token:alice'], required: 1 }] }), 'json');
  // A validator whose node is not there yet: the page shows it dialling, with its stored watermark.
  await admin.importWatermark('validator', 'test-chain', { height: '1200', round: 0, step: 3 });
  writeFileSync(join(dataDir, 'custos.toml'), `${agentConfig}\n[[privval]]\nname = "val"\nchain_id = "test-chain"\naddress = "unix://${join(dir, 'node.sock')}"\nkey = "validator"\n`, { mode: 0o600 });
  await admin.reload();
  const operator = (await admin.createToken({ name: 'ops-lead', role: 'operator' })).token!;
  // A real client on the agent socket while the page looks.
  const { spawn } = await import('node:child_process');
  const nc = spawn('python3', ['-c', 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(60)', join(dataDir, 'agent', 'ops.sock')], { stdio: 'ignore' });
  t.after(() => nc.kill());

  const { page, problems } = await consolePage(browser);
  // Log in by typing: the token field has the focus when the page opens.
  await page.goto(`${s.url}/ui/`);
  await page.getByLabel('API token').waitFor();
  await page.keyboard.type(operator);
  await page.keyboard.press('Enter');
  // An operator may not approve: its first section is the audit log, and Approvals is not offered.
  await page.getByRole('heading', { name: 'Audit log' }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'Approvals' }).isVisible(), false);

  // Keys.
  await tabTo(page, 'Keys');
  await page.keyboard.press('Enter');
  const keys = page.getByRole('table', { name: 'Keys' });
  await keys.waitFor();
  const keyText = await keys.innerText();
  assert.match(keyText, /ops-deploy\s+ed25519\s+general\s+active\s+team-ops/);
  assert.match(keyText, /ops-retired\s+p256\s+general\s+disabled/);
  assert.match(keyText, /validator\s+ed25519\s+consensus\s+active/);
  assert.ok(keyText.includes(validator.public_key.openssh!), 'the public key, in OpenSSH form');
  assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'H2', 'after a navigation the keyboard starts at the heading');
  assert.deepEqual(await accessibilityProblems(page), []);
  await screenshot(page, 'keys');

  // Policies: open a document's source, then ask whether a request would be allowed.
  await tabTo(page, 'Policies');
  await page.keyboard.press('Enter');
  await page.getByRole('table', { name: 'Policies in force' }).waitFor();
  await tabTo(page, 'Show policy ops-approval');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Policy ops-approval' }).waitFor();
  assert.match(await page.locator('pre.source').innerText(), /"type":\s*"approval"/);
  await tabTo(page, 'Key');
  await page.keyboard.type('ops-deploy');
  await tabTo(page, 'As principal');
  await page.keyboard.type('token:deployer');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Needs approval' }).waitFor();
  assert.match(await page.locator('#try-result pre').innerText(), /ops-approval/);
  // The same form for a key no policy governs.
  await page.getByLabel('Key').fill('validator');
  await page.getByLabel('Key').press('Enter');
  await page.getByRole('heading', { name: 'Allowed', exact: true }).waitFor();
  assert.deepEqual(await accessibilityProblems(page), []);
  await screenshot(page, 'policies');

  // Health.
  await tabTo(page, 'Health');
  await page.keyboard.press('Enter');
  const validators = page.getByRole('table', { name: 'Validator connections' });
  await validators.waitFor();
  assert.match(await validators.innerText(), /val\s+test-chain\s+unix:\/\/\S+\s+\S+\s+1200\/0\/3/);
  const agents = page.getByRole('table', { name: 'Agent sockets' });
  await agents.filter({ hasText: '1 of' }).waitFor({ timeout: 15_000 });
  assert.match(await agents.innerText(), /ops\s+\S*agent\/ops\.sock\s+listening\s+1 of \d+\s+ops-\*/);
  assert.match(await page.locator('main').innerText(), /State\s+Unsealed/);
  // The token opens in the background at start; the page follows it (every 5 s).
  await page.getByRole('table', { name: 'Backends' }).filter({ hasText: /pkcs11:hsm\s*usable/ }).waitFor({ timeout: 30_000 });
  assert.deepEqual(await accessibilityProblems(page), []);
  await screenshot(page, 'health');
  assert.deepEqual(problems, []);
});
