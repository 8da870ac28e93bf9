/**
 * Principals over the real API: two `custos serve` processes on one database, the CLI making,
 * narrowing, rotating and revoking principals through one, and the other obeying at the very
 * next request. A signer scoped to payments-* cannot sign with another key, export, create,
 * read the audit log or approve; every attempt is on the record under its name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { tempDir } from '../../helpers/tmpvault.js';
import { custos, serve } from '../../helpers/process.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'principals test passphrase' };

async function call(url: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: { code?: string; message?: string } & Record<string, unknown> }> {
  const r = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  return { status: r.status, body: (await r.json()) as never };
}

test('two serve processes on one database: a signer scoped to payments-* is confined; scope changes, rotation, revocation and expiry made through one hold at the next request on the other', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    const tokenFile = join(dir, 'admin.token');
    assert.equal(custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12', '--admin-token-file', tokenFile], PASSENV).status, 0);
    const admin = readFileSync(tokenFile, 'utf8').trim();
    const a = await serve(['--data-dir', dataDir], PASSENV);
    const b = await serve(['--data-dir', dataDir], PASSENV);
    try {
      const cli = (args: string[]) => {
        const r = custos([...args, '--addr', a.url, '--json'], { CUSTOS_TOKEN_FILE: tokenFile });
        assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
        return JSON.parse(r.stdout) as Record<string, unknown>;
      };
      for (const label of ['payments-hot', 'treasury']) assert.equal((await call(a.url, admin, 'POST', '/v1/keys', { label, algorithm: 'ed25519', exportable: true })).status, 201);
      const made = cli(['tokens', 'create', '--name', 'wallet', '--role', 'signer', '--keys', 'payments-*', '--rate-limit', '100/s']);
      const wallet = made.token as string;
      assert.equal(made.principal, 'token:wallet');
      assert.deepEqual(made.operations, ['read', 'sign', 'verify']);

      const sign = (url: string, token: string, key: string) => call(url, token, 'POST', `/v1/keys/${key}/sign`, { message: 'cGF5IDU=' });
      assert.equal((await sign(b.url, wallet, 'payments-hot')).status, 200, 'the other process knows the new principal');
      const refusals: Array<[string, string, string, unknown?]> = [
        ['sign with another key', 'POST', '/v1/keys/treasury/sign', { message: 'cGF5IDU=' }],
        ['export', 'POST', '/v1/keys/payments-hot/export', { kem: 'x25519', recipient_public_key: Buffer.alloc(32, 9).toString('base64') }],
        ['create', 'POST', '/v1/keys', { label: 'payments-new', algorithm: 'ed25519' }],
        ['read the audit log', 'GET', '/v1/audit', undefined],
        ['approve', 'POST', '/v1/approvals/apr_0123456789abcdef0123/approve', undefined],
        ['list approvals', 'GET', '/v1/approvals', undefined],
        ['make principals', 'POST', '/v1/tokens', { name: 'evil', role: 'admin' }],
        ['destroy', 'DELETE', '/v1/keys/payments-hot', undefined],
        ['change policies', 'POST', '/v1/policies', { source: 'x' }],
        ['reload', 'POST', '/v1/reload', undefined],
      ];
      for (const [what, method, path, body] of refusals) {
        const r = await call(b.url, wallet, method, path, body);
        assert.equal(r.status, 403, `${what}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, 'forbidden:scope', what);
      }
      const listed = await call(b.url, wallet, 'GET', '/v1/keys');
      assert.deepEqual((listed.body.keys as Array<{ label: string }>).map((k) => k.label), ['payments-hot'], 'it sees only its keys');
      assert.equal((await call(b.url, wallet, 'GET', '/v1/keys/treasury')).status, 403);

      // A principal bound to a certificate name, made with the CLI (mutual TLS with it: test/client).
      const named = cli(['tokens', 'create', '--name', 'ops', '--role', 'auditor', '--certificate-name', 'dns:Ops.Internal']);
      assert.equal(named.certificate_name, 'DNS:ops.internal');
      assert.equal(named.principal, 'cert:ops');
      assert.equal(named.token, undefined);

      // Narrowed through A: B obeys at once.
      const narrowed = cli(['tokens', 'update', 'wallet', '--keys', 'refunds-*']);
      assert.deepEqual(narrowed.keys, ['refunds-*']);
      assert.equal((await sign(b.url, wallet, 'payments-hot')).status, 403, 'a scope change holds at the next request in the other process');
      cli(['tokens', 'update', 'wallet', '--keys', 'payments-*']);
      assert.equal((await sign(b.url, wallet, 'payments-hot')).status, 200);

      // Rotated through A: B refuses the old token and takes the new.
      const rotated = cli(['tokens', 'rotate', 'wallet']);
      assert.equal((await sign(b.url, wallet, 'payments-hot')).status, 401, 'the old token fails at once');
      const fresh = rotated.token as string;
      assert.equal((await sign(b.url, fresh, 'payments-hot')).status, 200);

      // Revoked through A: refused on B at the very next request.
      cli(['tokens', 'revoke', 'wallet']);
      const revoked = await sign(b.url, fresh, 'payments-hot');
      assert.equal(revoked.status, 401);
      assert.equal(revoked.body.code, 'unauthorized:revoked');
      const list = custos(['tokens', 'list', '--addr', b.url], { CUSTOS_TOKEN_FILE: tokenFile });
      assert.match(list.stdout, /token:wallet \(signer\): read,sign,verify; keys payments-\* \[limit 100\/s, REVOKED\]/);

      // An expired credential.
      const brief = cli(['tokens', 'create', '--name', 'brief', '--role', 'auditor', '--expires', new Date(Date.now() + 1500).toISOString()]);
      assert.equal((await call(b.url, brief.token as string, 'GET', '/v1/audit?limit=1')).status, 200, 'an auditor reads the log');
      await new Promise((r) => setTimeout(r, 1600));
      const expired = await call(b.url, brief.token as string, 'GET', '/v1/audit?limit=1');
      assert.equal(expired.body.code, 'unauthorized:expired');

      // The record names every principal, refusals included.
      const audit = (await call(a.url, admin, 'GET', '/v1/audit?limit=200')).body.entries as Array<{ principal: string; operation: string; outcome: string; reason: string | null; key_label: string | null }>;
      assert.ok(audit.some((e) => e.principal === 'token:wallet' && e.operation === 'sign' && e.outcome === 'ok'));
      assert.ok(audit.some((e) => e.principal === 'token:wallet' && e.key_label === 'treasury' && e.reason === 'forbidden:scope'));
      assert.ok(audit.some((e) => e.principal === 'token:wallet' && e.operation === 'authorize' && e.reason === 'forbidden:scope'));
      assert.ok(audit.some((e) => e.principal === 'token:wallet' && e.operation === 'authenticate' && e.reason === 'unauthorized:revoked'));
      assert.ok(audit.some((e) => e.principal === 'token:admin' && e.operation === 'token_revoke'));
    } finally {
      assert.equal(await a.stop(), 0);
      assert.equal(await b.stop(), 0);
    }
  } finally {
    cleanup();
  }
});

test('break glass: custos tokens recover-admin makes a new admin in a stopped vault, with the passphrase, audited as the system', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    assert.equal(custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12', '--admin-token-file', join(dir, 'lost.token')], PASSENV).status, 0);
    const file = join(dir, 'rescue.token');
    const r = custos(['tokens', 'recover-admin', '--data-dir', dataDir, '--name', 'rescue', '--token-file', file], PASSENV);
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /custos_[A-Za-z0-9_-]{43}/, 'the token is never printed');
    const { statSync } = await import('node:fs');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const wrong = custos(['tokens', 'recover-admin', '--data-dir', dataDir, '--name', 'again', '--token-file', join(dir, 'x.token')], { CUSTOS_PASSPHRASE: 'not the passphrase' });
    assert.notEqual(wrong.status, 0);
    assert.equal((await import('node:fs')).existsSync(join(dir, 'x.token')), false, 'no file for a token that was not made');
    const s = await serve(['--data-dir', dataDir], PASSENV);
    try {
      const token = readFileSync(file, 'utf8').trim();
      const audit = await call(s.url, token, 'GET', '/v1/audit?limit=5');
      assert.equal(audit.status, 200);
      assert.ok((audit.body.entries as Array<{ principal: string; operation: string; details: { name?: string } }>).some((e) => e.principal === 'system' && e.operation === 'token_create' && e.details.name === 'rescue'));
    } finally {
      assert.equal(await s.stop(), 0);
    }
  } finally {
    cleanup();
  }
});
