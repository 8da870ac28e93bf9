/**
 * Accounts: what a login costs the server, and signing inside a session against signing with
 * an API token, through the real HTTP stack (Fastify's inject, no network) of one vault on a
 * SQLite file, in the same run:
 *   - logins/s the server sustains on one core: the server's two OPAQUE steps with their
 *     durable counter updates and audit entries (loginStart + loginFinish + session open),
 *     p50/p99; the client's Argon2id (the library's recommended parameters) reported apart;
 *   - Ed25519 signing p50/p99 with an API token (`POST /v1/keys/{key}/sign`) and inside a
 *     session (`POST /v1/session/keys/sign`, sealed both ways), and their ratio;
 *   - unknown and real user names: the server's time for a login start, p50 of each (twenty of
 *     each kind in turn, so their guard rows are alike).
 *
 *   node --import tsx bench/accounts.ts [--logins 200] [--signs 2000]
 *
 * One JSON document on stdout. Never exits non-zero because of a timing.
 */
import * as opaque from '@serenity-kit/opaque';
import { initVault, openVault } from '../src/vault/open.js';
import { buildHttpServer } from '../src/frontends/http/server.js';
import { Metrics } from '../src/frontends/http/metrics.js';
import { DEFAULT_GUARD } from '../src/accounts/guard.js';
import { frame, openBody, sealBody, sessionKeys, fromBase64url } from '../src/core/session-envelope.js';
import { tempDir } from '../test/helpers/tmpvault.js';
import { pct, round, fsyncFloor } from './lib/floors.js';
import { join } from 'node:path';

const arg = (n: string, d: string) => {
  const i = process.argv.indexOf(n);
  return i > 0 ? process.argv[i + 1]! : d;
};
const LOGINS = Number(arg('--logins', '200'));
const SIGNS = Number(arg('--signs', '2000'));
const stats = (xs: number[]) => ({ p50_ms: round(pct(xs, 50)), p99_ms: round(pct(xs, 99)) });
const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;

const { dir, cleanup } = tempDir('custos-bench-accounts-');
const out: Record<string, unknown> = { logins: LOGINS, signs: SIGNS };
try {
  out.floor_fsync = stats(fsyncFloor(300));
  const dataDir = join(dir, 'v');
  const passphrase = new TextEncoder().encode('bench accounts passphrase');
  const { adminToken } = await initVault({ dataDir, passphrase, scrypt: { N: 2 ** 10, r: 8, p: 1 } });
  // No guessing limits in the way of a benchmark that logs in hundreds of times.
  const v = await openVault({ dataDir, passphrase, loginGuard: { ...DEFAULT_GUARD, maxFailures: 1e9, addressMaxFailures: 1e9, maxDelaySeconds: 0 } });
  const app = await buildHttpServer({ vault: v.vault, metrics: new Metrics() });
  await app.ready();
  const post = async (url: string, body: unknown, token?: string) => {
    const r = await app.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
    if (r.statusCode >= 300) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
    return JSON.parse(r.body) as Record<string, unknown>;
  };
  const password = 'bench account password';
  const made = await post('/v1/accounts', { name: 'bench', type: 'self-custodial' }, adminToken);
  const reg = opaque.client.startRegistration({ password });
  const { response } = await post('/v1/accounts/register/start', { name: 'bench', code: made.registration_code, request: reg.registrationRequest });
  const fin = opaque.client.finishRegistration({ clientRegistrationState: reg.clientRegistrationState, registrationResponse: response as string, password, keyStretching: 'memory-constrained' });
  await post('/v1/accounts/register/finish', { name: 'bench', code: made.registration_code, record: fin.registrationRecord });

  // Logins: the server's share timed; the client's Argon2id between the two is not.
  const server: number[] = [];
  let session: { sid: string; keys: ReturnType<typeof sessionKeys> } | null = null;
  for (let i = 0; i < LOGINS; i++) {
    const c = opaque.client.startLogin({ password });
    let t = process.hrtime.bigint();
    const start = await post('/v1/login/start', { name: 'bench', request: c.startLoginRequest });
    let spent = ms(t);
    const f = opaque.client.finishLogin({ clientLoginState: c.clientLoginState, loginResponse: start.response as string, password, keyStretching: 'memory-constrained' })!;
    t = process.hrtime.bigint();
    const done = await post('/v1/login/finish', { name: 'bench', state: start.state, finish: f.finishLoginRequest });
    spent += ms(t);
    server.push(spent);
    session = { sid: done.sid as string, keys: sessionKeys(fromBase64url(f.sessionKey)!, done.sid as string) };
  }
  out.login_server = { ...stats(server), logins_per_s_one_core: Math.round(1000 / pct(server, 50)) };
  const argon: number[] = [];
  for (let i = 0; i < 3; i++) {
    const c = opaque.client.startLogin({ password });
    const start = await post('/v1/login/start', { name: 'bench', request: c.startLoginRequest });
    const t = process.hrtime.bigint();
    const f = opaque.client.finishLogin({ clientLoginState: c.clientLoginState, loginResponse: start.response as string, password, keyStretching: 'rfc-recommended' });
    argon.push(ms(t));
    void f;
  }
  out.login_client_argon2id_rfc_recommended = stats(argon);

  // Real and unknown names: the server's time for a login start. Twenty of each, taken in turn,
  // so that each name's guard row holds as many unfinished starts as the other kind's.
  const realNames: string[] = [];
  for (let i = 0; i < 20; i++) {
    const name = `real-${i}`;
    const m = await post('/v1/accounts', { name, type: 'self-custodial' }, adminToken);
    const rr = opaque.client.startRegistration({ password });
    const rs = await post('/v1/accounts/register/start', { name, code: m.registration_code, request: rr.registrationRequest });
    const rf = opaque.client.finishRegistration({ clientRegistrationState: rr.clientRegistrationState, registrationResponse: rs.response as string, password, keyStretching: 'memory-constrained' });
    await post('/v1/accounts/register/finish', { name, code: m.registration_code, record: rf.registrationRecord });
    realNames.push(name);
  }
  const real: number[] = [];
  const unknown: number[] = [];
  for (let i = 0; i < LOGINS; i++) {
    for (const [name, into] of [[realNames[i % 20]!, real], [`nobody-${i % 20}`, unknown]] as const) {
      const c = opaque.client.startLogin({ password });
      const t = process.hrtime.bigint();
      await post('/v1/login/start', { name, request: c.startLoginRequest });
      into.push(ms(t));
    }
  }
  out.login_start_real_name = stats(real);
  out.login_start_unknown_name = stats(unknown);
  out.ratio_p50_unknown_to_real = round(pct(unknown, 50) / pct(real, 50));

  // Signing: an API token against a session.
  await post('/v1/keys', { label: 'bench-token-key', algorithm: 'ed25519' }, adminToken);
  const s = session!;
  let ssid = 0;
  const call = async (path: string, header: unknown, payload?: Uint8Array) => {
    ssid++;
    const r = await post(path, { sid: s.sid, ssid, body: sealBody(s.keys.c2s, s.sid, ssid, 'c2s', `POST ${path}`, frame(header, payload)) });
    if (!openBody(s.keys.s2c, s.sid, ssid, 's2c', `POST ${path}`, r.body)) throw new Error('answer does not open');
  };
  await call('/v1/session/keys/generate', { name: 'k', algorithm: 'ed25519' });
  const msg = new TextEncoder().encode('bench message');
  const tokenSign: number[] = [];
  const sessionSign: number[] = [];
  for (let i = 0; i < SIGNS; i++) {
    let t = process.hrtime.bigint();
    await post('/v1/keys/bench-token-key/sign', { message: Buffer.from(msg).toString('base64') }, adminToken);
    tokenSign.push(ms(t));
    t = process.hrtime.bigint();
    await call('/v1/session/keys/sign', { name: 'k' }, msg);
    sessionSign.push(ms(t));
  }
  out.sign_with_token = stats(tokenSign);
  out.sign_in_session = stats(sessionSign);
  out.ratio_p50_session_to_token = round(pct(sessionSign, 50) / pct(tokenSign, 50));
  out.note = 'A session call costs one more durable commit than a token call (the session row takes the call number before the signature is made).';
  await app.close();
  await v.close();
} finally {
  cleanup();
}
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
