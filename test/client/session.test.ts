/**
 * Accounts end to end: a real `custos serve` over TLS, an operator creating the account with
 * the SDK, and the end user's `CustosSession` registering and logging in with OPAQUE (the
 * password never sent), calling inside the session, and logging out. A wrong password and an
 * unknown user name get the same answer; a captured session request replayed is refused; the
 * account's keys (generated, imported, signed with, exported into its session) are out of an
 * admin's reach; a deleted secret is gone from the database file and its WAL; a password change
 * ends every session; a logged-out session is unusable.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import Database from 'better-sqlite3';
import { frame, sealBody } from '../../src/core/session-envelope.js';
import { join } from 'node:path';
import { CustosClient, CustosError, CustosSession } from '../../src/client/index.js';
import { tempDir } from '../helpers/tmpvault.js';
import { custos, serve } from '../helpers/process.js';
import { requireTool } from '../helpers/require.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'session test passphrase' };

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof CustosError) return { code: e.fullCode, message: e.message };
    throw e;
  }
  return { code: 'ok', message: '' };
}

/** POSTs a raw JSON body (a replay, as an attacker would send it). */
function postRaw(url: string, ca: Buffer, path: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(path, url), { method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** A vault in `dir` served over TLS (its own CA): its data directory, CA and admin token. */
function tlsVault(dir: string, extraToml = ''): { dataDir: string; ca: Buffer; token: string } {
  const dataDir = join(dir, 'v');
  const tokenFile = join(dir, 'admin.token');
  assert.equal(custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12', '--admin-token-file', tokenFile], PASSENV).status, 0);
  assert.equal(custos(['tls', 'init', '--data-dir', dataDir]).status, 0);
  writeFileSync(join(dataDir, 'custos.toml'), `[api]\ntls_cert = "tls/server-chain.pem"\ntls_key = "tls/server.key"\n${extraToml}`, { mode: 0o600 });
  return { dataDir, ca: readFileSync(join(dataDir, 'tls', 'ca.pem')), token: readFileSync(tokenFile, 'utf8').trim() };
}

test('register, log in, call and log out through the real server over TLS; refusals look alike; a replay is refused', async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const { dir, cleanup } = tempDir();
  try {
    const { dataDir, ca, token } = tlsVault(dir);
    const s = await serve(['--data-dir', dataDir], PASSENV);
    const admin = new CustosClient({ addr: s.url, ca, token });
    try {
      const opts = { addr: s.url, ca, keyStretching: 'memory-constrained' as const };
      const made = await admin.createAccount({ name: 'alice', type: 'self-custodial' });
      assert.match(made.registration_code, /^custos_reg_/);
      assert.equal((await CustosSession.register(opts, 'alice', made.registration_code, 'alice long password')).registered, true);

      const session = await CustosSession.login(opts, 'alice', 'alice long password');
      assert.deepEqual(await session.whoami(), { account: made.account.id, name: 'alice', type: 'self-custodial' });
      assert.equal((await session.whoami()).name, 'alice', 'the next call takes the next number');

      const spy = await CustosSession.login(opts, 'alice', 'alice long password');
      const wrong = await refusal(CustosSession.login(opts, 'alice', 'not the password'));
      const unknown = await refusal(CustosSession.login(opts, 'nobody', 'not the password'));
      assert.deepEqual(wrong, unknown);
      assert.equal(wrong.code, 'unauthorized');
      // Right after a failure the name must wait (1 s, doubling with each failure).
      assert.equal((await refusal(CustosSession.login(opts, 'alice', 'alice long password'))).code, 'rate_limited:slow_down');

      // Reordered and cross-session messages, sent as an attacker would: refused by the server.
      const inner = spy as unknown as { sid: string; keys: { c2s: Uint8Array } };
      const sealedFor = (sid: string, key: Uint8Array, n: number) => ({ sid: inner.sid, ssid: n, body: sealBody(key, sid, n, 'c2s', 'POST /v1/session/whoami', frame({})) });
      const later = sealedFor(inner.sid, inner.keys.c2s, 50);
      const earlier = sealedFor(inner.sid, inner.keys.c2s, 40);
      assert.equal(await postRaw(s.url, ca, '/v1/session/whoami', later), 200);
      assert.equal(await postRaw(s.url, ca, '/v1/session/whoami', earlier), 401, 'a lower number after a higher one');
      const sessionInner = session as unknown as { sid: string; keys: { c2s: Uint8Array } };
      assert.equal(await postRaw(s.url, ca, '/v1/session/whoami', { ...sealedFor(sessionInner.sid, sessionInner.keys.c2s, 60), sid: inner.sid }), 401, 'another session\'s message');
      (spy as unknown as { ssid: number }).ssid = 60;

      // A captured request replayed, as is, is refused (its number was taken).
      const captured: unknown[] = [];
      const original = https.request;
      (https as unknown as { request: typeof https.request }).request = ((...a: Parameters<typeof https.request>) => {
        const req = original(...a);
        const end = req.end.bind(req);
        req.end = ((chunk?: unknown, ...rest: unknown[]) => {
          if (typeof chunk === 'string' || Buffer.isBuffer(chunk)) captured.push(JSON.parse(chunk.toString()));
          return (end as (...x: unknown[]) => unknown)(chunk, ...rest);
        }) as typeof req.end;
        return req;
      }) as typeof https.request;
      try {
        await spy.whoami();
      } finally {
        (https as unknown as { request: typeof https.request }).request = original;
      }
      assert.equal(captured.length, 1);
      assert.equal(await postRaw(s.url, ca, '/v1/session/whoami', captured[0]), 401);

      // The account's own keys and secrets, inside its session.
      const k = await session.generateKey('main', 'ed25519');
      assert.equal(k.name, 'main');
      const msg = new TextEncoder().encode('pay 5');
      const sig = await session.sign('main', msg);
      assert.ok(verify(null, msg, createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(k.public_key, 'base64')]), format: 'der', type: 'spki' }), sig));
      const seed = await session.exportKey('main');
      assert.equal(seed.length, 32, 'a self-custodial account exports its key into its own session');
      const imported = await session.importKey('imported', 'ed25519', seed);
      assert.equal(imported.public_key, k.public_key);
      assert.deepEqual((await session.listKeys()).map((x) => x.name).sort(), ['imported', 'main']);
      await session.destroyKey('imported');
      assert.deepEqual((await session.listKeys()).map((x) => x.name), ['main']);
      assert.equal((await refusal(session.sign('imported', msg))).code, 'key_destroyed');
      // No admin reaches them: not listed, not signed with, not exported, not destroyed.
      const label = `${made.account.id}.main`;
      assert.ok(!(await admin.listKeys()).some((x) => x.label.startsWith(made.account.id)));
      assert.equal((await refusal(admin.sign(label, { message: msg }))).code, 'forbidden:scope');
      assert.equal((await refusal(admin.getKey(label))).code, 'forbidden:scope');
      assert.equal((await refusal(admin.destroyKey(label))).code, 'forbidden:scope');

      // A grant: the account lets one token sign with one of its keys, until it revokes that.
      const pay = await admin.createToken({ name: 'payments', role: 'signer', keys: ['pay-*'] });
      const payments = new CustosClient({ addr: s.url, ca, token: pay.token! });
      try {
        assert.equal((await refusal(payments.sign(label, { message: msg }))).code, 'forbidden:scope', 'no grant yet');
        const g = await session.grant({ principal: 'token:payments', operations: ['sign'], keys: ['main'] });
        assert.equal((await payments.sign(label, { message: msg })).signature.length, 64);
        assert.equal((await refusal(payments.sign(`${made.account.id}.imported`, { message: msg }))).code, 'forbidden:scope', 'only the keys granted');
        assert.equal((await refusal(admin.sign(label, { message: msg }))).code, 'forbidden:scope', 'only the principal granted');
        const listed = await session.grants();
        assert.deepEqual(listed.map((x) => x.id), [g.id]);
        assert.ok(!('credential_row' in listed[0]!) && !('credential_row' in g), 'the vault-side binding is not shown to the account');
        await session.revokeGrant(g.id);
        assert.equal((await refusal(payments.sign(label, { message: msg }))).code, 'forbidden:scope', 'revoked: in force at the next request');
      } finally {
        payments.close();
      }

      // A secret, stored, read back, deleted: gone from the database file and its WAL.
      const secret = new Uint8Array(randomBytes(48));
      await session.putSecret('backup', secret);
      assert.deepEqual(await session.getSecret('backup'), secret);
      const db = new Database(join(dataDir, 'custos.db'), { readonly: true, fileMustExist: true });
      const envelope = (db.prepare("SELECT value FROM meta WHERE name LIKE 'account_secret.%'").get() as { value: string }).value;
      db.close();
      await session.deleteSecret('backup');
      assert.equal((await refusal(session.getSecret('backup'))).code, 'key_not_found');
      for (const f of ['custos.db', 'custos.db-wal']) {
        const bytes = existsSync(join(dataDir, f)) ? readFileSync(join(dataDir, f)) : Buffer.alloc(0);
        assert.equal(bytes.indexOf(Buffer.from(secret)), -1, `${f}: the plaintext`);
        assert.equal(bytes.indexOf(Buffer.from(envelope)), -1, `${f}: the envelope`);
        assert.equal(bytes.indexOf(Buffer.from(envelope, 'base64').subarray(24, 56)), -1, `${f}: the ciphertext`);
      }

      await session.logout();
      assert.equal((await refusal(session.whoami())).code, 'unauthorized:session');
      assert.equal((await spy.whoami()).name, 'alice', 'another session of the account is untouched');
      // A password change ends every session of the account; the new password logs in.
      // (The replay above counted as a failure: the name must wait; an operator clears that.)
      await admin.unlockAccount('alice');
      const third = await CustosSession.login(opts, 'alice', 'alice long password');
      await spy.changePassword('alice new password', 'memory-constrained');
      assert.equal((await refusal(third.whoami())).code, 'unauthorized:session');
      assert.equal((await refusal(spy.whoami())).code, 'unauthorized:session');
      await new Promise((r) => setTimeout(r, 1100));
      const fresh = await CustosSession.login(opts, 'alice', 'alice new password');
      assert.equal((await fresh.whoami()).name, 'alice');
      await fresh.logout();
    } finally {
      admin.close();
      await s.stop();
    }
  } finally {
    cleanup();
  }
});

test('through the real server: a lock holds across a restart until an operator unlocks; one account cannot reach another\'s keys; an admin cannot export them; an idle session expires', async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const { dir, cleanup } = tempDir();
  try {
    // [accounts]: no doubling waits between guesses (shown in test/accounts/guard.test.ts), and
    // sessions that idle out after 2 seconds.
    const { dataDir, ca, token } = tlsVault(dir, '[accounts]\nmax_delay_seconds = 0\nsession_idle_seconds = 2\n');
    let s = await serve(['--data-dir', dataDir], PASSENV);
    let admin = new CustosClient({ addr: s.url, ca, token });
    const opts = () => ({ addr: s.url, ca, keyStretching: 'memory-constrained' as const });
    try {
      for (const name of ['ann', 'ben']) {
        const made = await admin.createAccount({ name, type: 'self-custodial' });
        await CustosSession.register(opts(), name, made.registration_code, `${name} long password`);
      }
      const ann = await CustosSession.login(opts(), 'ann', 'ann long password');
      const ben = await CustosSession.login(opts(), 'ben', 'ben long password');
      const key = await ann.generateKey('main', 'ed25519');
      // Ben names keys in his own namespace only: Ann's "main" is not his.
      assert.equal((await refusal(ben.sign('main', new Uint8Array([1])))).code, 'key_not_found');
      assert.deepEqual(await ben.listKeys(), []);
      const label = `${(await ann.whoami()).account}.main`;
      assert.equal((await refusal(admin.exportKey(label, { kem: 'x25519', publicKey: new Uint8Array(32).fill(9) }))).code, 'forbidden:scope');
      assert.equal(key.exportable, true);
      await ann.logout();
      // Ben's session, idle for longer than session_idle_seconds: refused, on the record.
      await new Promise((res) => setTimeout(res, 2200));
      assert.equal((await refusal(ben.whoami())).code, 'unauthorized:session');

      // Five wrong passwords lock the name; a restart keeps the lock; an operator ends it.
      for (let i = 0; i < 5; i++) {
        const r = await refusal(CustosSession.login(opts(), 'ann', `guess ${i}`));
        assert.ok(r.code === 'unauthorized' || r.code === 'rate_limited:slow_down', r.code);
        if (r.code === 'rate_limited:slow_down') {
          i--;
          await new Promise((res) => setTimeout(res, 1000));
        }
      }
      assert.equal((await refusal(CustosSession.login(opts(), 'ann', 'ann long password'))).code, 'rate_limited:login_locked');
      admin.close();
      await s.stop();
      s = await serve(['--data-dir', dataDir], PASSENV);
      admin = new CustosClient({ addr: s.url, ca, token });
      assert.equal((await refusal(CustosSession.login(opts(), 'ann', 'ann long password'))).code, 'rate_limited:login_locked', 'after a restart');
      await admin.unlockAccount('ann');
      const again = await CustosSession.login(opts(), 'ann', 'ann long password');
      assert.equal((await again.whoami()).name, 'ann');
      await again.logout();
    } finally {
      admin.close();
      await s.stop();
    }
  } finally {
    cleanup();
  }
});
