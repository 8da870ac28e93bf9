/**
 * Accounts against a real vault on a SQLite file, with the OPAQUE library's own client:
 * an operator creates an account and its one-time registration code; the user registers and
 * logs in; a wrong password and an unknown user name get the same refusal; failed logins lock
 * the user name (also for unknown names), the lock holds across a restart and through a second
 * process on the same database, and an operator unlocks it; every step is audited.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as opaque from '@serenity-kit/opaque';
import { openVault } from '../../src/vault/open.js';
import { isCustosError } from '../../src/core/errors.js';
import { DEFAULT_GUARD } from '../../src/accounts/guard.js';
import type { Vault } from '../../src/vault/vault.js';
import { makeVault, PASS } from '../helpers/tmpvault.js';

const keyStretching = 'memory-constrained' as const;
// No waits between attempts (the doubling is shown in guard.test.ts); the lock at 5 stays.
const GUARD = { ...DEFAULT_GUARD, maxDelaySeconds: 0 };
const anon = (address = '192.0.2.7') => ({ ctx: { principal: { id: `login:${address}`, kind: 'system' as const }, requestId: randomUUID() }, address });

async function fails(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (isCustosError(e)) return { code: e.fullCode, message: e.message };
    throw e;
  }
  throw new Error('expected a refusal');
}

async function register(v: Vault, admin: Parameters<NonNullable<Vault["accounts"]>["create"]>[0], name: string, password: string): Promise<void> {
  const { registrationCode } = await v.accounts!.create(admin, { name, type: 'self-custodial' });
  const { clientRegistrationState, registrationRequest } = opaque.client.startRegistration({ password });
  const response = await v.accounts!.registerStart(anon().ctx, name, '192.0.2.200', registrationCode, registrationRequest);
  const { registrationRecord } = opaque.client.finishRegistration({ clientRegistrationState, registrationResponse: response, password, keyStretching });
  const acc = await v.accounts!.registerFinish(anon().ctx, name, '192.0.2.200', registrationCode, registrationRecord);
  assert.equal(acc.registered, true);
  // The code is spent.
  assert.equal((await fails(v.accounts!.registerStart(anon().ctx, name, '192.0.2.200', registrationCode, registrationRequest))).code, 'unauthorized');
  // (That spent code counted as a failure for the name: cleared, so each test starts at zero.)
  await v.accounts!.unlock(admin, name);
}

let lastFinish: { name: string; address: string; state: string; finish: string } | null = null;

async function login(v: Vault, name: string, password: string, address?: string): Promise<Uint8Array> {
  const { ctx, address: addr } = anon(address);
  const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password });
  const start = await v.accounts!.loginStart(ctx, name, addr, startLoginRequest);
  const fin = opaque.client.finishLogin({ clientLoginState, loginResponse: start.response, password, keyStretching });
  // A client that found the password wrong would stop here; a guesser sends something anyway.
  const finish = fin?.finishLoginRequest ?? Buffer.alloc(64, 1).toString('base64url');
  lastFinish = { name, address: addr, state: start.state, finish };
  const { sessionKey, account } = await v.accounts!.loginFinish(ctx, name, addr, start.state, finish);
  assert.equal(account.name, name);
  assert.equal(Buffer.from(sessionKey).toString('base64url'), fin!.sessionKey);
  return sessionKey;
}

test('create, register with the one-time code, log in; a wrong password and an unknown name are refused alike', async () => {
  const v = await makeVault({ loginGuard: GUARD });
  try {
    await register(v.vault, v.ctx(), 'alice@example.com', 'alice password 1');
    assert.ok((await login(v.vault, 'alice@example.com', 'alice password 1')).length >= 32);
    const wrong = await fails(login(v.vault, 'alice@example.com', 'not her password'));
    const unknown = await fails(login(v.vault, 'mallory@example.com', 'any password'));
    assert.deepEqual(wrong, unknown);
    assert.equal(wrong.code, 'unauthorized');
    // A wrong code, an unknown name with any code, and a name taken twice.
    const { registrationRequest } = opaque.client.startRegistration({ password: 'x' });
    assert.deepEqual(await fails(v.vault.accounts!.registerStart(anon().ctx, 'nobody', '192.0.2.9', 'custos_reg_x', registrationRequest)), await fails(v.vault.accounts!.registerStart(anon().ctx, 'alice@example.com', '192.0.2.9', 'custos_reg_x', registrationRequest)));
    assert.equal((await fails(v.vault.accounts!.create(v.ctx(), { name: 'alice@example.com', type: 'service' }))).code, 'label_taken');
    assert.equal((await fails(v.vault.accounts!.create(v.ctx(), { name: 'bad name with spaces', type: 'service' }))).code, 'bad_request');
    const ops = (await v.store.auditTail(50)).map((e) => `${e.operation}:${e.outcome}`);
    for (const op of ['account_create:ok', 'account_register:ok', 'login_start:ok', 'login:ok', 'login:denied']) assert.ok(ops.includes(op), op);
  } finally {
    await v.dispose();
  }
});

test('five failures lock the user name, for unknown names too; the lock holds across a restart and in a second process; an operator unlocks it', async () => {
  const v = await makeVault({ loginGuard: GUARD });
  try {
    await register(v.vault, v.ctx(), 'bob', 'bob password 1');
    for (const name of ['bob', 'nobody-here']) {
      for (let i = 0; i < 5; i++) assert.equal((await fails(login(v.vault, name, `guess ${i}`))).code, 'unauthorized', `${name} ${i}`);
      const locked = await fails(login(v.vault, name, 'bob password 1'));
      assert.equal(locked.code, 'rate_limited:login_locked', name);
    }
    const log = await v.store.auditTail(100);
    assert.ok(log.some((e) => e.operation === 'login_start' && e.outcome === 'denied' && e.reason === 'rate_limited:login_locked'));
    assert.ok(log.some((e) => e.operation === 'login_lockout'), 'the moment the lock began');
    // A second process on the same database sees the lock at once, and so does a restart.
    const other = await openVault({ dataDir: v.dataDir, passphrase: PASS, loginGuard: GUARD });
    try {
      assert.equal((await fails(login(other.vault, 'bob', 'bob password 1', '198.51.100.9'))).code, 'rate_limited:login_locked');
      await other.vault.accounts!.unlock({ principal: { id: 'token:admin', kind: 'admin' }, requestId: randomUUID() }, 'bob');
    } finally {
      await other.close();
    }
    assert.ok((await login(v.vault, 'bob', 'bob password 1')).length >= 32, 'unlocked in the other process: in force here');
    // A success cleared the name: four more failures do not lock it.
    for (let i = 0; i < 4; i++) await fails(login(v.vault, 'bob', `again ${i}`));
    assert.ok((await login(v.vault, 'bob', 'bob password 1')).length >= 32);
  } finally {
    await v.dispose();
  }
});

test('one address guessing across many names is stopped at its ceiling', async () => {
  const v = await makeVault({ loginGuard: { ...GUARD, addressMaxFailures: 6 } });
  try {
    for (let i = 0; i < 6; i++) await fails(login(v.vault, `user${i}`, 'guess', '203.0.113.5'));
    assert.equal((await fails(login(v.vault, 'user99', 'guess', '203.0.113.5'))).code, 'rate_limited:slow_down');
    assert.equal((await fails(login(v.vault, 'user99', 'guess', '203.0.113.6'))).code, 'unauthorized', 'another address is not held up');
  } finally {
    await v.dispose();
  }
});

test('a login is finished once, from the address that started it; a password change ends the old password\'s logins', async () => {
  const v = await makeVault({ loginGuard: GUARD });
  try {
    await register(v.vault, v.ctx(), 'gina', 'gina password 1');
    await login(v.vault, 'gina', 'gina password 1', '192.0.2.50');
    const replay = lastFinish!;
    // The same state and KE3 again (a replay, say to take back the address's counted attempts).
    assert.equal((await fails(v.vault.accounts!.loginFinish(anon(replay.address).ctx, replay.name, replay.address, replay.state, replay.finish))).code, 'unauthorized');
    assert.ok((await v.store.auditTail(5)).some((e) => e.operation === 'login' && e.reason === 'unauthorized:replayed'));
    // Started from one address, finished from another: refused.
    const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password: 'gina password 1' });
    const start = await v.vault.accounts!.loginStart(anon('192.0.2.50').ctx, 'gina', '192.0.2.50', startLoginRequest);
    const fin = opaque.client.finishLogin({ clientLoginState, loginResponse: start.response, password: 'gina password 1', keyStretching })!;
    assert.equal((await fails(v.vault.accounts!.loginFinish(anon('203.0.113.1').ctx, 'gina', '203.0.113.1', start.state, fin.finishLoginRequest))).code, 'unauthorized', 'the same answer as a wrong password');
    // Replays are refused without counting again: no lock from one start finished many times.
    for (let i = 0; i < 10; i++) assert.equal((await fails(v.vault.accounts!.loginFinish(anon(replay.address).ctx, replay.name, replay.address, replay.state, replay.finish))).code, 'unauthorized');
    assert.ok((await login(v.vault, 'gina', 'gina password 1', '192.0.2.50')).length >= 32, 'not locked by replays');
  } finally {
    await v.dispose();
  }
});

test('wrong registration codes count against the address (not the name: the code is 256 bits), and stop it at its ceiling', async () => {
  const v = await makeVault({ loginGuard: { ...GUARD, addressMaxFailures: 6 } });
  try {
    const { registrationCode } = await v.vault.accounts!.create(v.ctx(), { name: 'hank', type: 'delegated' });
    const { registrationRequest } = opaque.client.startRegistration({ password: 'x' });
    for (let i = 0; i < 6; i++) assert.equal((await fails(v.vault.accounts!.registerStart(anon().ctx, 'hank', '192.0.2.8', `custos_reg_guess${i}`, registrationRequest))).code, 'unauthorized');
    assert.equal((await fails(v.vault.accounts!.registerStart(anon().ctx, 'hank', '192.0.2.8', registrationCode, registrationRequest))).code, 'rate_limited:slow_down');
    // From elsewhere the right code still works: the name was not locked by the guesses.
    assert.equal(typeof (await v.vault.accounts!.registerStart(anon().ctx, 'hank', '192.0.2.9', registrationCode, registrationRequest)), 'string');
    assert.ok((await v.store.auditTail(20)).some((e) => e.operation === 'account_register' && e.outcome === 'denied'));
  } finally {
    await v.dispose();
  }
});

test('the sweep deletes guards that hold nothing any more and sessions past their limits, and keeps what still counts', async () => {
  const v = await makeVault({ loginGuard: GUARD });
  try {
    await register(v.vault, v.ctx(), 'kim', 'kim password 1');
    await fails(login(v.vault, 'kim', 'a guess'));
    for (let i = 0; i < 5; i++) await fails(login(v.vault, 'locked-name', `guess ${i}`));
    const key = await login(v.vault, 'kim', 'kim password 1');
    const acc = (await v.vault.accounts!.get('kim'))!;
    await v.vault.sessions!.open(anon().ctx, acc, key);
    const rows = async () => (await v.store.listMeta('login_guard.')).length + (await v.store.listMeta('session.')).length;
    const before = await rows();
    assert.equal(await v.vault.accounts!.sweep(), 0, 'nothing stale yet');
    // 13 hours on: every failure window and the lock have passed, and the session is past its limits.
    const swept = await v.vault.accounts!.sweep(Date.now() + 13 * 3600_000);
    assert.ok(swept >= 3, `swept ${swept}`);
    assert.equal(await rows(), before - swept);
    assert.equal((await v.vault.accounts!.get('kim'))!.name, 'kim', 'accounts stay');
    assert.ok((await v.store.auditTail(5)).some((e) => e.operation === 'accounts_sweep'));
  } finally {
    await v.dispose();
  }
});
