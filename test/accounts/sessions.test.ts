/**
 * Account sessions against a real vault on a SQLite file: a login opens a session; each call
 * is a subsession sealed for its sid, ssid, direction and route; a replayed, reordered,
 * altered, cross-session or cross-route message is refused, also through a second process on
 * the same database; idle and absolute expiry, logout and a password change end a session.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as opaque from '@serenity-kit/opaque';
import { openVault } from '../../src/vault/open.js';
import { isCustosError } from '../../src/core/errors.js';
import { openBody, sealBody, sessionKeys } from '../../src/core/session-envelope.js';
import type { Vault } from '../../src/vault/vault.js';
import { accountPrincipal } from '../../src/vault/account-keys.js';
import { makeVault, PASS } from '../helpers/tmpvault.js';

const keyStretching = 'memory-constrained' as const;
const anon = () => ({ principal: { id: 'login:192.0.2.1', kind: 'system' as const }, requestId: randomUUID() });
const enc = new TextEncoder();
const dec = new TextDecoder();

async function refused(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isCustosError(e)) return e.fullCode;
    throw e;
  }
  return 'ok';
}

/** Registers `name` and logs in: the client's view of the session. */
async function session(v: Vault, admin: Parameters<NonNullable<Vault['accounts']>['create']>[0], name: string, register = true) {
  const password = `${name} password`;
  if (register) {
    const { registrationCode } = await v.accounts!.create(admin, { name, type: 'self-custodial' });
    const r = opaque.client.startRegistration({ password });
    const resp = await v.accounts!.registerStart(anon(), name, '192.0.2.1', registrationCode, r.registrationRequest);
    await v.accounts!.registerFinish(anon(), name, '192.0.2.1', registrationCode, opaque.client.finishRegistration({ clientRegistrationState: r.clientRegistrationState, registrationResponse: resp, password, keyStretching }).registrationRecord);
  }
  const l = opaque.client.startLogin({ password });
  const start = await v.accounts!.loginStart(anon(), name, '192.0.2.1', l.startLoginRequest);
  const fin = opaque.client.finishLogin({ clientLoginState: l.clientLoginState, loginResponse: start.response, password, keyStretching })!;
  const done = await v.accounts!.loginFinish(anon(), name, '192.0.2.1', start.state, fin.finishLoginRequest);
  const opened = await v.sessions!.open(anon(), done.account, done.sessionKey);
  const keys = sessionKeys(new Uint8Array(Buffer.from(fin.sessionKey, 'base64url')), opened.sid);
  return { sid: opened.sid, accountId: done.account.id, keys, seal: (ssid: number, route: string, body: string) => sealBody(keys.c2s, opened.sid, ssid, 'c2s', route, enc.encode(body)) };
}

test('each call is a subsession: sealed both ways, every number accepted once and only rising, bound to its session and route', async () => {
  const v = await makeVault();
  try {
    const s = await session(v.vault, v.ctx(), 'carol');
    const route = 'POST /v1/session/sign';
    const sealed1 = s.seal(1, route, '{"n":1}');
    const sub = await v.vault.sessions!.enter(anon(), s.sid, 1, route, sealed1);
    assert.equal(dec.decode(sub.body), '{"n":1}');
    assert.equal(sub.account.name, 'carol');
    const answer = sub.reply(enc.encode('{"ok":true}'));
    assert.equal(dec.decode(openBody(s.keys.s2c, s.sid, 1, 's2c', route, answer)!), '{"ok":true}');
    assert.equal(openBody(s.keys.s2c, s.sid, 2, 's2c', route, answer), null, 'an answer is bound to its number');
    // Replayed, and reordered (3 accepted, then 2).
    assert.equal(await refused(v.vault.sessions!.enter(anon(), s.sid, 1, route, sealed1)), 'unauthorized:session');
    const sealed2 = s.seal(2, route, '{"n":2}');
    await v.vault.sessions!.enter(anon(), s.sid, 3, route, s.seal(3, route, '{"n":3}'));
    assert.equal(await refused(v.vault.sessions!.enter(anon(), s.sid, 2, route, sealed2)), 'unauthorized:session');
    // Sent to another route, with another number than sealed for, or altered.
    assert.equal(await refused(v.vault.sessions!.enter(anon(), s.sid, 4, 'POST /v1/session/export', s.seal(4, route, '{}'))), 'unauthorized:session');
    assert.equal(await refused(v.vault.sessions!.enter(anon(), s.sid, 5, route, s.seal(6, route, '{}'))), 'unauthorized:session');
    const t = Buffer.from(s.seal(7, route, '{"n":7}'), 'base64url');
    t[30]! ^= 1;
    assert.equal(await refused(v.vault.sessions!.enter(anon(), s.sid, 7, route, t.toString('base64url'))), 'unauthorized:session');
    // Another session's message, in this session.
    const other = await session(v.vault, v.ctx(), 'dave');
    assert.equal(await refused(v.vault.sessions!.enter(anon(), s.sid, 8, route, other.seal(8, route, '{}'))), 'unauthorized:session');
    // A second process on the same database takes the next number, and refuses one it used.
    const p2 = await openVault({ dataDir: v.dataDir, passphrase: PASS });
    try {
      const sealed9 = s.seal(9, route, '{"n":9}');
      await p2.vault.sessions!.enter(anon(), s.sid, 9, route, sealed9);
      assert.equal(await refused(v.vault.sessions!.enter(anon(), s.sid, 9, route, sealed9)), 'unauthorized:session');
      // Logout in one process: unusable in the other at once.
      await p2.vault.sessions!.close(anon(), s.sid);
    } finally {
      await p2.close();
    }
    assert.equal(await refused(v.vault.sessions!.enter(anon(), s.sid, 10, route, s.seal(10, route, '{}'))), 'unauthorized:session');
    assert.equal(await refused(v.vault.sessions!.enter(anon(), 'ses_nope', 1, route, '')), 'unauthorized:session');
    const ops = (await v.store.auditTail(80)).map((e) => `${e.operation}:${e.outcome}`);
    for (const op of ['session_open:ok', 'session_call:denied', 'session_close:ok']) assert.ok(ops.includes(op), op);
  } finally {
    await v.dispose();
  }
});

test('idle and absolute expiry end a session; ending every session of an account (a password change) leaves others', async () => {
  const v = await makeVault();
  try {
    const route = 'POST /v1/session/secret';
    const a = await session(v.vault, v.ctx(), 'erin');
    const now = Date.now();
    await v.vault.sessions!.enter(anon(), a.sid, 1, route, a.seal(1, route, '{}'), now + 899_000);
    // Idle: 15 minutes after the last call.
    assert.equal(await refused(v.vault.sessions!.enter(anon(), a.sid, 2, route, a.seal(2, route, '{}'), now + 899_000 + 900_000)), 'unauthorized:session');
    // Absolute: 12 hours after the login, however busy.
    const b = await session(v.vault, v.ctx(), 'erin', false);
    let t = Date.now();
    for (let i = 1; i <= 3; i++) {
      t += 800_000;
      await v.vault.sessions!.enter(anon(), b.sid, i, route, b.seal(i, route, '{}'), t);
    }
    assert.equal(await refused(v.vault.sessions!.enter(anon(), b.sid, 4, route, b.seal(4, route, '{}'), Date.now() + 12 * 3600_000)), 'unauthorized:session');
    const c = await session(v.vault, v.ctx(), 'erin', false);
    const d = await session(v.vault, v.ctx(), 'frank');
    await v.vault.accounts!.endSessions(v.ctx(), 'erin');
    assert.equal(await refused(v.vault.sessions!.enter(anon(), c.sid, 1, route, c.seal(1, route, '{}'))), 'unauthorized:session');
    await v.vault.sessions!.enter(anon(), d.sid, 1, route, d.seal(1, route, '{}'));
  } finally {
    await v.dispose();
  }
});

test('a call already inside a session releases nothing once the session was ended meanwhile', async () => {
  const v = await makeVault();
  try {
    const a = await session(v.vault, v.ctx(), 'ivan');
    const route = 'POST /v1/session/secrets/put';
    const sub = await v.vault.sessions!.enter(anon(), a.sid, 1, route, a.seal(1, route, '{}'));
    const ctx = { principal: accountPrincipal(sub.account, sub.guards), requestId: randomUUID() };
    await v.vault.accountKeys!.putSecret(ctx, sub.account, 'one', new Uint8Array([1]));
    const sub2 = await v.vault.sessions!.enter(anon(), a.sid, 2, route, a.seal(2, route, '{}'));
    const ctx2 = { principal: accountPrincipal(sub2.account, sub2.guards), requestId: randomUUID() };
    // Logged out (or the password changed) while the call was in progress:
    await v.vault.sessions!.close(anon(), a.sid);
    assert.equal(await refused(v.vault.accountKeys!.getSecret(ctx2, sub2.account, 'one')), 'storage_unavailable:meta_moved');
    assert.equal(await refused(v.vault.accountKeys!.putSecret(ctx2, sub2.account, 'two', new Uint8Array([2]))), 'storage_unavailable:meta_moved');
    sub.dispose();
    sub2.dispose();
  } finally {
    await v.dispose();
  }
});

test("an account's imported key is a general key: Tor's own algorithms (X25519, RSA-1024) are refused", async () => {
  const v = await makeVault();
  try {
    const a = await session(v.vault, v.ctx(), 'judy');
    const route = 'POST /v1/session/keys/import';
    const sub = await v.vault.sessions!.enter(anon(), a.sid, 1, route, a.seal(1, route, '{}'));
    const ctx = { principal: accountPrincipal(sub.account, sub.guards), requestId: randomUUID() };
    assert.equal(await refused(v.vault.accountKeys!.import(ctx, sub.account, 'ntor', 'x25519', new Uint8Array(32).fill(9))), 'bad_request');
    const k = await v.vault.accountKeys!.import(ctx, sub.account, 'ok', 'ed25519', new Uint8Array(32).fill(9));
    assert.equal(k.attributes.purpose, 'general');
    sub.dispose();
  } finally {
    await v.dispose();
  }
});
