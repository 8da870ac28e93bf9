/**
 * The SDK (`custos/client`) against a real `custos serve` over TLS: a pinned CA and server
 * fingerprint, mutual TLS with no token, typed errors carrying the API's codes and request id,
 * and retries only where a request cannot have done anything; then the example wallet server
 * run as a user would, signing payouts over mutual TLS and checking a partner's signature.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate, generateKeyPairSync, sign as nodeSign, verify as nodeVerify, createPublicKey, type KeyObject } from 'node:crypto';
import { CustosClient, CustosApiError, CustosError } from '../../src/client/index.js';
import { tempDir } from '../helpers/tmpvault.js';
import { custos, ROOT, serve } from '../helpers/process.js';
import { requireTool } from '../helpers/require.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'sdk test passphrase' };

const code = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof CustosError ? e.fullCode : String(e);
  }
};

test('the SDK over TLS: pinned CA and fingerprint, mutual TLS without a token, typed errors; the example wallet server signs payouts through it', async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    const tokenFile = join(dir, 'admin.token');
    assert.equal(custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12', '--admin-token-file', tokenFile], PASSENV).status, 0);
    assert.equal(custos(['tls', 'init', '--data-dir', dataDir]).status, 0);
    assert.equal(custos(['tls', 'client', '--data-dir', dataDir, '--name', 'wallet', '--out', join(dir, 'wallet')]).status, 0);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dataDir, 'custos.toml'), '[api]\ntls_cert = "tls/server-chain.pem"\ntls_key = "tls/server.key"\nclient_ca = "tls/ca.pem"\n', { mode: 0o600 });
    const ca = readFileSync(join(dataDir, 'tls', 'ca.pem'));
    const serverPin = new X509Certificate(readFileSync(join(dataDir, 'tls', 'server.pem'))).fingerprint256;
    const s = await serve(['--data-dir', dataDir], PASSENV);
    const clients: CustosClient[] = [];
    const client = (o: Partial<ConstructorParameters<typeof CustosClient>[0]>) => {
      const c = new CustosClient({ addr: s.url, ...o });
      clients.push(c);
      return c;
    };
    try {
      const admin = client({ token: readFileSync(tokenFile, 'utf8').trim(), ca, serverFingerprint: serverPin });
      await admin.createKey({ label: 'payments-hot', algorithm: 'ed25519' });
      await admin.createKey({ label: 'treasury', algorithm: 'ed25519' });
      const partner = generateKeyPairSync('ed25519');
      await admin.importPublicKey({ label: 'partner-acme', format: 'spki-pem', material: partner.publicKey.export({ format: 'pem', type: 'spki' }).toString() });
      const walletCert = readFileSync(join(dir, 'wallet', 'wallet.pem'));
      const bound = await admin.createToken({ name: 'wallet', role: 'signer', keys: ['payments-*', 'partner-*'], certificate_sha256: new X509Certificate(walletCert).fingerprint256 });
      assert.equal(bound.principal, 'cert:wallet');
      assert.equal(bound.token, undefined, 'a certificate principal has no token');

      const wallet = client({ ca, cert: walletCert, key: readFileSync(join(dir, 'wallet', 'wallet.key')) });
      const msg = new TextEncoder().encode('payout 7');
      const signed = await wallet.sign('payments-hot', { message: msg });
      assert.equal(signed.signature.length, 64);
      assert.equal(await wallet.verify('payments-hot', { message: msg, signature: signed.signature }), true);
      // Typed errors: the API's code, tag, status and request id.
      try {
        await wallet.sign('treasury', { message: msg });
        assert.fail('signed outside its scope');
      } catch (e) {
        assert.ok(e instanceof CustosApiError);
        assert.equal(e.fullCode, 'forbidden:scope');
        assert.equal(e.status, 403);
        assert.match(e.requestId ?? '', /^[0-9a-f-]{36}$/);
      }
      assert.equal(await code(client({ ca, serverFingerprint: '00'.repeat(32), token: 'custos_x'.padEnd(50, 'x') }).listKeys()), 'unauthorized:tls', 'a pin that does not match refuses the server');
      assert.equal(await code(client({ token: 'custos_x'.padEnd(50, 'x') }).listKeys()), 'unauthorized:tls', 'without the CA the server is not trusted');
      // The pin holds even when the process turned verification off for everything else (review M4).
      process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
      try {
        assert.equal(await code(client({ ca, serverFingerprint: '00'.repeat(32), token: 'custos_x'.padEnd(50, 'x') }).listKeys()), 'unauthorized:tls');
        assert.equal(await code(client({ token: 'custos_x'.padEnd(50, 'x') }).listKeys()), 'unauthorized:tls');
      } finally {
        delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      }
      // A token never travels over plain HTTP beyond loopback (review L5).
      assert.equal(await code(new CustosClient({ addr: 'http://192.0.2.1:8200', token: 'custos_x'.padEnd(50, 'x') }).listKeys()), 'bad_request');
      assert.equal(await code(new CustosClient({ addr: 'http://192.0.2.1:8200' }).unseal({ share: 'custos-share-v1.x' })), 'bad_request', 'nor an operator share');
      assert.equal(await code(client({ ca }).listKeys()), 'unauthorized', 'no token and no certificate');
      assert.throws(() => new CustosClient({ addr: s.url.replace('https', 'http'), ca }), /TLS options were given but the address .* is plain http/);

      // Bound by name: any certificate from the client CA named CN=ops, so a renewal keeps working.
      for (const out of ['ops-1', 'ops-2']) assert.equal(custos(['tls', 'client', '--data-dir', dataDir, '--name', 'ops', '--out', join(dir, out)]).status, 0);
      const byName = await admin.createToken({ name: 'ops', role: 'auditor', certificate_name: 'CN=ops' });
      assert.equal(byName.certificate_name, 'CN=ops');
      for (const out of ['ops-1', 'ops-2']) {
        const c = client({ ca, cert: readFileSync(join(dir, out, 'ops.pem')), key: readFileSync(join(dir, out, 'ops.key')) });
        assert.ok(Array.isArray(await c.listKeys()), `${out} authenticates as cert:ops`);
      }
      assert.equal(await code(admin.createToken({ name: 'ops2', role: 'signer', certificate_name: 'CN=ops, O=x' })), 'bad_request');
      assert.equal(await code(admin.rotateToken('ops')), 'bad_request', 'a name-bound principal needs no rotation');

      // The example, as a user runs it.
      const ex = spawn(process.execPath, [join(ROOT, 'examples', 'wallet-server.mjs')], {
        cwd: ROOT,
        env: { ...process.env, CUSTOS_ADDR: s.url, CUSTOS_CACERT: join(dataDir, 'tls', 'ca.pem'), CUSTOS_CLIENT_CERT: join(dir, 'wallet', 'wallet.pem'), CUSTOS_CLIENT_KEY: join(dir, 'wallet', 'wallet.key'), WALLET_KEY: 'payments-hot', PARTNER_KEY: 'partner-acme', PORT: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      try {
        let out = '';
        const port = await new Promise<number>((resolve, reject) => {
          ex.stdout!.on('data', (d: Buffer) => {
            out += d.toString();
            const m = /"port":(\d+)/.exec(out);
            if (m) resolve(Number(m[1]));
          });
          ex.stderr!.on('data', (d: Buffer) => (out += d.toString()));
          ex.on('exit', (c) => reject(new Error(`the example exited with ${c}: ${out}`)));
        });
        const payout = { to: 'bc1qexample', amount: '125.00', nonce: 'n-1' };
        const bytes = Buffer.from(JSON.stringify({ amount: payout.amount, nonce: payout.nonce, to: payout.to }));
        const post = async (body: unknown) => {
          const r = await fetch(`http://127.0.0.1:${port}/payouts`, { method: 'POST', body: JSON.stringify(body) });
          return { status: r.status, body: (await r.json()) as Record<string, string> };
        };
        const ok = await post({ ...payout, partner_signature: nodeSign(null, bytes, partner.privateKey).toString('base64') });
        assert.equal(ok.status, 200, JSON.stringify(ok.body));
        const vaultKey: KeyObject = createPublicKey((await admin.getKey('payments-hot')).public_key.spki_pem);
        assert.ok(nodeVerify(null, bytes, vaultKey, Buffer.from(ok.body.signature!, 'base64')), 'the payout signature is the vault key\'s');
        const again = await post({ ...payout, partner_signature: nodeSign(null, bytes, partner.privateKey).toString('base64') });
        assert.equal(again.status, 409, 'the same partner-signed payout is paid once');
        const forged = await post({ ...payout, nonce: 'n-2', partner_signature: Buffer.alloc(64).toString('base64') });
        assert.equal(forged.status, 403, 'a payout the partner did not sign is refused');
        const audit = await admin.auditTail(30);
        assert.ok(audit.some((e) => e.principal === 'cert:wallet' && e.operation === 'sign' && e.key_label === 'payments-hot'));
      } finally {
        ex.kill('SIGTERM');
      }
    } finally {
      for (const c of clients) c.close();
      assert.equal(await s.stop(), 0);
    }
  } finally {
    cleanup();
  }
});

test('the SDK repeats a GET on a dropped connection and a request the server never received, never a POST that may have arrived', async () => {
  let seen = 0;
  const server = http.createServer((req, res) => {
    seen++;
    // The first request of each kind dies with its connection, after it arrived.
    if (seen === 1) return req.socket.destroy();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [] }));
  });
  server.keepAliveTimeout = 1;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const c = new CustosClient({ addr: `http://127.0.0.1:${port}`, token: 't'.repeat(20) });
    assert.deepEqual(await c.listKeys(), []);
    assert.equal(seen, 2, 'the GET was sent again');
    seen = 0;
    assert.match(await code(c.sign('k', { message: new Uint8Array(1) })), /^storage_unavailable:unreachable$/);
    assert.equal(seen, 1, 'the POST was not repeated: it may have been signed');
    c.close();
  } finally {
    server.close();
  }
  // Nothing listening yet: the request never left, so even a POST is repeated once it can be.
  const late = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ key_id: 'k', algorithm: 'ed25519', signature: '', encoding: 'raw', request_id: 'r' })));
  const c = new CustosClient({ addr: `http://127.0.0.1:${port}`, token: 't'.repeat(20), retries: 4 });
  setTimeout(() => late.listen(port, '127.0.0.1'), 150);
  try {
    assert.equal((await c.sign('k', { message: new Uint8Array(1) })).keyId, 'k');
  } finally {
    c.close();
    late.close();
  }
});
