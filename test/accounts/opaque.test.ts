/**
 * OPAQUE on the server (src/accounts/opaque.ts) against the library's own client: registration
 * and login; a wrong password and an unknown user name answer alike (same message sizes, no
 * session), and a name's OPRF answer is the same whether or not it has an account; the login
 * state handed to the client is bound to its user, address, password version and deadline; the
 * setup opens only under its own root; a record the library cannot use is refused at
 * registration; malformed, truncated and oversized messages get a typed error, never a crash.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import * as opaque from '@serenity-kit/opaque';
import { OpaqueServer, sealSetup, LOGIN_WINDOW_MS, type LoginBinding } from '../../src/accounts/opaque.js';
import { isCustosError } from '../../src/core/errors.js';

const root = new Uint8Array(randomBytes(32));
const VAULT = 'vault-opaque-test';
// The client's key stretching at its smallest (the tests are about the server).
const keyStretching = 'memory-constrained' as const;

async function server(): Promise<OpaqueServer> {
  return OpaqueServer.open(await sealSetup(root, VAULT), root, VAULT);
}

const bind = (credentialId: string, address = '192.0.2.1', passwordVersion = 1): LoginBinding => ({ credentialId, address, passwordVersion });

function register(s: OpaqueServer, credentialId: string, password: string): string {
  const { clientRegistrationState, registrationRequest } = opaque.client.startRegistration({ password });
  const registrationResponse = s.registrationResponse(credentialId, registrationRequest);
  const { registrationRecord } = opaque.client.finishRegistration({ clientRegistrationState, registrationResponse, password, keyStretching });
  return s.checkRecord(credentialId, registrationRecord);
}

function login(s: OpaqueServer, credentialId: string, record: string | null, password: string): { start: { response: string; state: string }; clientKey: string | null; serverKey: Uint8Array | null } {
  const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password });
  const start = s.startLogin(bind(credentialId), record, startLoginRequest);
  const fin = opaque.client.finishLogin({ clientLoginState, loginResponse: start.response, password, keyStretching });
  // A client that finds the password wrong sends nothing; an attacker sends a guess anyway.
  const finish = fin?.finishLoginRequest ?? Buffer.from(randomBytes(64)).toString('base64url');
  return { start, clientKey: fin?.sessionKey ?? null, serverKey: s.finishLogin(bind(credentialId), start.state, finish) };
}

const code = (f: () => unknown): string => {
  try {
    f();
    return 'ok';
  } catch (e) {
    return isCustosError(e) ? e.fullCode : `not typed: ${String(e)}`;
  }
};

test('register, then log in: both sides hold the same session key; the name\'s seed picks the OPRF key, the same before and after its account exists', async () => {
  const s = await server();
  const id = s.credentialId('alice');
  // The OPRF part of the answer to one KE1, for a name with no account yet…
  const { startLoginRequest } = opaque.client.startLogin({ password: 'probe' });
  const oprf = (ke2: string) => Buffer.from(ke2, 'base64url').subarray(0, 32).toString('hex');
  const before = oprf(s.startLogin(bind(id), null, startLoginRequest).response);
  const record = register(s, id, 'correct horse battery');
  const ok = login(s, id, record, 'correct horse battery');
  assert.ok(ok.serverKey && ok.clientKey);
  assert.equal(Buffer.from(ok.serverKey).toString('base64url'), ok.clientKey);
  assert.ok(ok.serverKey.length >= 32);
  // …and once it has one: the same, so replaying a KE1 cannot watch for an account being made.
  assert.equal(oprf(s.startLogin(bind(id), record, startLoginRequest).response), before);
  // The same record under another name's identifier does not log in.
  assert.equal(login(s, s.credentialId('bob'), record, 'correct horse battery').serverKey, null);
  assert.match(s.publicKey(), /^[A-Za-z0-9_-]{43}$/);
  // A record the library cannot use is refused at registration, not stored.
  for (const bad of ['A'.repeat(256), '_'.repeat(256)]) assert.equal(code(() => s.checkRecord(id, bad)), 'bad_request');
});

test('a wrong password and an unknown user name look alike: same answer sizes, no session', async () => {
  const s = await server();
  const id = s.credentialId('carol');
  const record = register(s, id, 'the right one');
  const wrong = login(s, id, record, 'the wrong one');
  const unknown = login(s, s.credentialId('nobody@example.com'), null, 'the right one');
  for (const r of [wrong, unknown]) {
    assert.equal(r.serverKey, null);
    assert.equal(r.clientKey, null, 'the client learns the password was not accepted, nothing more');
  }
  const good = login(s, id, record, 'the right one');
  assert.equal(wrong.start.response.length, good.start.response.length);
  assert.equal(unknown.start.response.length, good.start.response.length);
  assert.equal(unknown.start.state.length, good.start.state.length);
  assert.equal(s.credentialId('nobody@example.com'), s.credentialId('nobody@example.com'), 'stable per name');
  assert.notEqual(s.credentialId('nobody@example.com'), s.credentialId('somebody@example.com'));
});

test('the login state is bound to its user, address, password version and deadline, and to this vault', async () => {
  const s = await server();
  const a = s.credentialId('dave');
  const b = s.credentialId('erin');
  const record = register(s, a, 'password a');
  const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password: 'password a' });
  const now = Date.now();
  const start = s.startLogin(bind(a), record, startLoginRequest, now);
  assert.equal(OpaqueServer.startIdOf(start.state), start.startId);
  const fin = opaque.client.finishLogin({ clientLoginState, loginResponse: start.response, password: 'password a', keyStretching })!;
  assert.equal(code(() => s.finishLogin(bind(b), start.state, fin.finishLoginRequest, now)), 'bad_request', 'another user');
  assert.equal(code(() => s.finishLogin(bind(a, '198.51.100.1'), start.state, fin.finishLoginRequest, now)), 'bad_request', 'another address');
  assert.equal(code(() => s.finishLogin(bind(a, '192.0.2.1', 2), start.state, fin.finishLoginRequest, now)), 'bad_request', 'after a password change');
  assert.equal(code(() => s.finishLogin(bind(a), start.state, fin.finishLoginRequest, now + LOGIN_WINDOW_MS + 1)), 'bad_request:login_expired');
  // The deadline is bound: moving it forward breaks the seal.
  const raw = Buffer.from(start.state, 'base64url');
  raw.writeBigUInt64BE(BigInt(now + 10 * LOGIN_WINDOW_MS), 0);
  assert.equal(code(() => s.finishLogin(bind(a), raw.toString('base64url'), fin.finishLoginRequest, now + 2 * LOGIN_WINDOW_MS)), 'bad_request');
  // Another vault (another root) cannot finish it, nor open this setup.
  const otherRoot = new Uint8Array(randomBytes(32));
  const s2 = await OpaqueServer.open(await sealSetup(otherRoot, VAULT), otherRoot, VAULT);
  assert.equal(code(() => s2.finishLogin(bind(a), start.state, fin.finishLoginRequest, now)), 'bad_request');
  await assert.rejects(OpaqueServer.open(await sealSetup(root, VAULT), otherRoot, VAULT), (e: unknown) => isCustosError(e) && e.code === 'database_corrupt');
  // The genuine finish still works within the window.
  const key = s.finishLogin(bind(a), start.state, fin.finishLoginRequest, now);
  assert.equal(Buffer.from(key!).toString('base64url'), fin.sessionKey);
});

test('malformed, truncated and oversized messages get a typed error, never a crash', async () => {
  const s = await server();
  const id = s.credentialId('fuzz');
  const record = register(s, id, 'pw for fuzzing');
  const { startLoginRequest } = opaque.client.startLogin({ password: 'pw for fuzzing' });
  const start = s.startLogin(bind(id), record, startLoginRequest);
  const anyInput = fc.oneof(
    fc.string({ maxLength: 600 }),
    fc.string({ minLength: 4097, maxLength: 5000 }),
    fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b).toString('base64url')),
    fc.nat(startLoginRequest.length).map((n) => startLoginRequest.slice(0, n)),
    fc.constantFrom(null, 42, {}, [], ''),
  );
  fc.assert(
    fc.property(anyInput, (m) => {
      for (const f of [() => s.registrationResponse(id, m), () => s.startLogin(bind(id), record, m), () => s.finishLogin(bind(id), start.state, m), () => s.finishLogin(bind(id), m, startLoginRequest), () => s.checkRecord(id, m)]) {
        const c = code(f);
        assert.ok(c === 'ok' || c.startsWith('bad_request'), c);
      }
    }),
    { numRuns: 150 },
  );
});
