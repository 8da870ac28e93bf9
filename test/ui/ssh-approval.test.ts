/**
 * An SSH login waiting for an approver in the console: `custos serve` with an [[ssh_agent]]
 * socket, a login key governed by an approval policy, and an agent client asking it to sign an
 * SSH userauth request (publickey-hostbound, as OpenSSH 8.9+ sends). The approver sees the
 * login decoded (the user, the server's host key and the session) and approves with the
 * keyboard alone; the client gets its signature.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { SshWriter } from '../../src/crypto/openssh.js';
import { agentSession, ed25519Pair } from '../helpers/ssh-agent.js';
import { accessibilityProblems, consolePage, launchBrowser, logIn, screenshot, servedVault, tabTo } from '../helpers/console.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'console ssh passphrase' };

test('an SSH login waits for an approver, who sees its user, the server host key and the session, and approves it', { timeout: 120_000 }, async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const { dataDir, admin, ...s } = await servedVault(t, { env: PASSENV, config: () => '[[ssh_agent]]\nname = "desk"\nsocket = "agent/desk.sock"\nkeys = ["login-*"]\n' });
  await admin.createKey({ label: 'login-prod', algorithm: 'ed25519', purpose: 'ssh', tags: ['prod-login'] });
  const alice = (await admin.createToken({ name: 'alice', role: 'approver' })).token!;
  await admin.uploadPolicy(JSON.stringify({ id: 'prod-logins', applies_to: { tags: ['prod-login'] }, rules: [{ type: 'approval', approvers: ['token:alice'], required: 1 }] }), 'json');

  const agent = agentSession(join(dataDir, 'agent', 'desk.sock'));
  t.after(() => agent.close());
  const ids = await agent.send({ type: 'request_identities' });
  assert.equal(ids.type, 'identities_answer');
  const keyBlob = (ids as { identities: Array<{ keyBlob: Uint8Array }> }).identities[0]!.keyBlob;
  const hostKey = ed25519Pair().blob;
  const sessionId = randomBytes(32);
  const userauth = new SshWriter().string(sessionId).u8(50).string('deploy').string('ssh-connection').string('publickey-hostbound-v00@openssh.com').u8(1).string('ssh-ed25519').string(keyBlob).string(hostKey).finish();
  const answer = agent.send({ type: 'sign_request', keyBlob, data: userauth, flags: 0 });

  const { page, problems } = await consolePage(browser);
  await logIn(page, s.url, alice);
  const card = page.getByRole('article', { name: 'sign with login-prod' });
  await card.waitFor({ timeout: 15_000 });
  const text = await card.innerText();
  assert.match(text, /Requested by\s+ssh-agent:desk/);
  assert.match(text, /SSH user\s+deploy/);
  assert.match(text, /SSH request\s+userauth/);
  const hostFp = `SHA256:${createHash('sha256').update(hostKey).digest('base64').replace(/=+$/, '')}`;
  assert.ok(text.includes(hostFp), `the server host key ${hostFp}`);
  assert.ok(text.includes(createHash('sha256').update(sessionId).digest('hex')), 'the session');
  assert.match(text, /Asked for by\s+prod-logins v1/);
  assert.deepEqual(await accessibilityProblems(page), []);
  await screenshot(page, 'approvals-ssh');
  // With the keyboard alone: Tab to the request's Approve button, Enter.
  await tabTo(page, 'Approve');
  await page.keyboard.press('Enter');
  const signed = await answer;
  assert.equal(signed.type, 'sign_response', 'the client got its signature');
  await page.getByText('Nothing is waiting for an approval.').waitFor({ timeout: 10_000 });
  assert.deepEqual(problems, []);
});
