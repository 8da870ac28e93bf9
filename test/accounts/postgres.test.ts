/**
 * Accounts with two nodes on one PostgreSQL database (a throwaway cluster on 127.0.0.1): a
 * user name locked through one node is locked on the other, and unlocked there by an operator;
 * a session opened on one node takes its call numbers on both, each once; a password change on
 * one node ends the session on the other. Shown with two vaults in one process, then with two
 * real `custos serve` nodes and the SDK.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import * as opaque from '@serenity-kit/opaque';
import { initVault, openVault, type OpenVault } from '../../src/vault/open.js';
import { isCustosError } from '../../src/core/errors.js';
import { DEFAULT_GUARD } from '../../src/accounts/guard.js';
import { frame, sealBody, sessionKeys, fromBase64url } from '../../src/core/session-envelope.js';
import { requirePostgres, startPostgres, type PgCluster } from '../helpers/postgres.js';
import { ADMIN, FAST_SCRYPT, PASS, tempDir } from '../helpers/tmpvault.js';
import { readFileSync } from 'node:fs';
import { CustosClient, CustosSession } from '../../src/client/index.js';
import { custos, serve } from '../helpers/process.js';

const keyStretching = 'memory-constrained' as const;
const GUARD = { ...DEFAULT_GUARD, maxDelaySeconds: 0 };
const anon = (a = '192.0.2.1') => ({ principal: { id: `login:${a}`, kind: 'system' as const }, requestId: randomUUID() });
const admin = () => ({ principal: ADMIN, requestId: randomUUID() });

let cluster: PgCluster | null = null;
after(async () => {
  await cluster?.dispose();
});

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (isCustosError(e)) return e.fullCode;
    throw e;
  }
}

async function login(v: OpenVault, name: string, password: string) {
  const c = opaque.client.startLogin({ password });
  const start = await v.vault.accounts!.loginStart(anon(), name, '192.0.2.1', c.startLoginRequest);
  const fin = opaque.client.finishLogin({ clientLoginState: c.clientLoginState, loginResponse: start.response, password, keyStretching });
  const done = await v.vault.accounts!.loginFinish(anon(), name, '192.0.2.1', start.state, fin?.finishLoginRequest ?? Buffer.alloc(64, 1).toString('base64url'));
  return { done, key: fin!.sessionKey };
}

test('two nodes on PostgreSQL share locks, unlocks, session numbers and password changes', async (t) => {
  if (!requirePostgres(t)) return;
  cluster ??= await startPostgres();
  const url = await cluster.createDatabase('accounts');
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'v');
  await initVault({ dataDir, passphrase: PASS, scrypt: FAST_SCRYPT, storeUrl: url });
  const a = await openVault({ dataDir, passphrase: PASS, loginGuard: GUARD });
  const b = await openVault({ dataDir, passphrase: PASS, loginGuard: GUARD });
  try {
    const { registrationCode } = await a.vault.accounts!.create(admin(), { name: 'ivy', type: 'self-custodial' });
    const r = opaque.client.startRegistration({ password: 'ivy password' });
    const resp = await b.vault.accounts!.registerStart(anon(), 'ivy', '192.0.2.1', registrationCode, r.registrationRequest);
    await a.vault.accounts!.registerFinish(anon(), 'ivy', '192.0.2.1', registrationCode, opaque.client.finishRegistration({ clientRegistrationState: r.clientRegistrationState, registrationResponse: resp, password: 'ivy password', keyStretching }).registrationRecord);

    // Five failures, alternating nodes: locked on both.
    for (let i = 0; i < 5; i++) assert.equal(await code(login(i % 2 ? a : b, 'ivy', `guess ${i}`)), 'unauthorized');
    for (const v of [a, b]) assert.equal(await code(login(v, 'ivy', 'ivy password')), 'rate_limited:login_locked');
    await b.vault.accounts!.unlock(admin(), 'ivy');

    // A session from node a; its calls land on either node, each number once.
    const { done, key } = await login(a, 'ivy', 'ivy password');
    const s = await a.vault.sessions!.open(anon(), done.account, done.sessionKey);
    const keys = sessionKeys(fromBase64url(key)!, s.sid);
    const route = 'POST /v1/session/whoami';
    const sealed = (n: number) => sealBody(keys.c2s, s.sid, n, 'c2s', route, frame({}));
    const one = sealed(1);
    await b.vault.sessions!.enter(anon(), s.sid, 1, route, one);
    assert.equal(await code(a.vault.sessions!.enter(anon(), s.sid, 1, route, one)), 'unauthorized:session');
    await a.vault.sessions!.enter(anon(), s.sid, 2, route, sealed(2));
    // A password change through node b ends the session for node a at its next call.
    const ctx = { principal: { id: 'account:ivy', kind: 'account' as const, account: done.account.id }, requestId: randomUUID() };
    const r2 = opaque.client.startRegistration({ password: 'ivy new password' });
    const resp2 = await b.vault.accounts!.changePasswordStart(ctx, done.account.id, r2.registrationRequest);
    await b.vault.accounts!.changePasswordFinish(ctx, done.account.id, opaque.client.finishRegistration({ clientRegistrationState: r2.clientRegistrationState, registrationResponse: resp2, password: 'ivy new password', keyStretching }).registrationRecord);
    assert.equal(await code(a.vault.sessions!.enter(anon(), s.sid, 3, route, sealed(3))), 'unauthorized:session');
    assert.ok((await login(a, 'ivy', 'ivy new password')).done.account.passwordVersion === 2);
  } finally {
    await a.close();
    await b.close();
    cleanup();
  }
});

test('two `custos serve` nodes on PostgreSQL: a user locked through one is locked through the other until an operator unlocks it there; registered through one, logged in through the other', async (t) => {
  if (!requirePostgres(t)) return;
  cluster ??= await startPostgres();
  const url = await cluster.createDatabase('served');
  const { dir, cleanup } = tempDir();
  const PASSENV = { CUSTOS_PASSPHRASE: 'accounts two nodes passphrase' };
  try {
    const a = join(dir, 'node-a');
    const b = join(dir, 'node-b');
    const tokenFile = join(dir, 'admin.token');
    assert.equal(custos(['init', '--data-dir', a, '--store-url', url, '--scrypt-log-n', '12', '--admin-token-file', tokenFile], PASSENV).status, 0);
    assert.equal(custos(['init', '--join', '--data-dir', b, '--store-url', url, '--anchor', join(a, 'custos.anchor')]).status, 0);
    const token = readFileSync(tokenFile, 'utf8').trim();
    const na = await serve(['--data-dir', a], PASSENV);
    const nb = await serve(['--data-dir', b], PASSENV);
    const adminA = new CustosClient({ addr: na.url, token });
    const adminB = new CustosClient({ addr: nb.url, token });
    try {
      const made = await adminA.createAccount({ name: 'jo', type: 'delegated' });
      const opts = (u: string) => ({ addr: u, keyStretching: 'memory-constrained' as const });
      await CustosSession.register(opts(nb.url), 'jo', made.registration_code, 'jo long password');
      const session = await CustosSession.login(opts(na.url), 'jo', 'jo long password');
      assert.equal((await session.whoami()).name, 'jo');
      // Five failures, through both nodes (a wait follows each: the doubling is in force).
      for (let i = 0; i < 5; i++) {
        const r = await code(CustosSession.login(opts(i % 2 ? na.url : nb.url), 'jo', `guess ${i}`));
        if (r === 'rate_limited:slow_down') {
          i--;
          await new Promise((res) => setTimeout(res, 1000));
          continue;
        }
        assert.equal(r, 'unauthorized');
      }
      for (const u of [na.url, nb.url]) assert.equal(await code(CustosSession.login(opts(u), 'jo', 'jo long password')), 'rate_limited:login_locked');
      await adminB.unlockAccount('jo');
      const again = await CustosSession.login(opts(nb.url), 'jo', 'jo long password');
      assert.equal((await again.whoami()).name, 'jo');
      await again.logout();
      await session.logout();
    } finally {
      adminA.close();
      adminB.close();
      await na.stop();
      await nb.stop();
    }
  } finally {
    cleanup();
  }
});
