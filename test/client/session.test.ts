/**
 * Accounts end to end: a real `custos serve` over TLS, an operator creating the account with
 * the SDK, and the end user's `CustosSession` registering and logging in with OPAQUE (the
 * password never sent), calling inside the session, and logging out. A wrong password and an
 * unknown user name get the same answer; a captured session request replayed is refused; a
 * logged-out session is unusable.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { readFileSync, writeFileSync } from 'node:fs';
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

test('register, log in, call and log out through the real server over TLS; refusals look alike; a replay is refused', async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    const tokenFile = join(dir, 'admin.token');
    assert.equal(custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12', '--admin-token-file', tokenFile], PASSENV).status, 0);
    assert.equal(custos(['tls', 'init', '--data-dir', dataDir]).status, 0);
    writeFileSync(join(dataDir, 'custos.toml'), '[api]\ntls_cert = "tls/server-chain.pem"\ntls_key = "tls/server.key"\n', { mode: 0o600 });
    const ca = readFileSync(join(dataDir, 'tls', 'ca.pem'));
    const s = await serve(['--data-dir', dataDir], PASSENV);
    const admin = new CustosClient({ addr: s.url, ca, token: readFileSync(tokenFile, 'utf8').trim() });
    try {
      const opts = { addr: s.url, ca, keyStretching: 'memory-constrained' as const };
      const made = await admin.createAccount({ name: 'alice', type: 'self-custodial' });
      assert.match(made.registration_code, /^custos_reg_/);
      assert.equal((await CustosSession.register(opts, 'alice', made.registration_code, 'alice long password')).registered, true);

      const session = await CustosSession.login(opts, 'alice', 'alice long password');
      assert.deepEqual(await session.whoami(), { account: made.account.id, name: 'alice' });
      assert.equal((await session.whoami()).name, 'alice', 'the next call takes the next number');

      const spy = await CustosSession.login(opts, 'alice', 'alice long password');
      const wrong = await refusal(CustosSession.login(opts, 'alice', 'not the password'));
      const unknown = await refusal(CustosSession.login(opts, 'nobody', 'not the password'));
      assert.deepEqual(wrong, unknown);
      assert.equal(wrong.code, 'unauthorized');
      // Right after a failure the name must wait (1 s, doubling with each failure).
      assert.equal((await refusal(CustosSession.login(opts, 'alice', 'alice long password'))).code, 'rate_limited:slow_down');

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

      await session.logout();
      assert.equal((await refusal(session.whoami())).code, 'unauthorized:session');
      assert.equal((await spy.whoami()).name, 'alice', 'another session of the account is untouched');
      await spy.logout();
    } finally {
      admin.close();
      await s.stop();
    }
  } finally {
    cleanup();
  }
});
