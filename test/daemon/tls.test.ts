/**
 * TLS on the HTTP API with real clients: `custos tls init` makes the CA and server
 * certificate with OpenSSL, curl --cacert talks to the vault, openssl s_client shows TLS 1.0/1.1
 * and non-AEAD suites refused, a non-loopback bind without TLS is refused, and a certificate
 * swapped on disk with SIGHUP is taken by new connections while requests keep flowing, none
 * failing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { tempDir } from '../helpers/tmpvault.js';
import { custos, runAsync, serve } from '../helpers/process.js';
import { requireTool } from '../helpers/require.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'tls test passphrase' };

function vaultWithTls(dir: string, name: string) {
  const dataDir = join(dir, name);
  assert.equal(custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV).status, 0);
  const r = custos(['tls', 'init', '--data-dir', dataDir]);
  assert.equal(r.status, 0, r.stderr);
  return { dataDir, out: r.stdout, ca: readFileSync(join(dataDir, 'tls', 'ca.pem')) };
}

function get(url: string, ca: Buffer[], agent?: https.Agent): Promise<{ status: number; headers: Record<string, unknown>; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, agent: agent ?? false }, (res) => {
      const fingerprint = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, fingerprint }));
    });
    req.on('error', reject);
  });
}

test('custos tls init, then HTTPS only with TLS 1.2+ AEAD suites: curl --cacert works, openssl s_client shows old versions and CBC refused, HSTS is sent', async (t) => {
  if (!requireTool(t, 'openssl', 'openssl') || !requireTool(t, 'curl', 'curl')) return;
  const { dir, cleanup } = tempDir();
  try {
    const v = vaultWithTls(dir, 'v');
    const ca = new X509Certificate(v.ca);
    assert.ok(v.out.includes(ca.fingerprint256), 'the CA fingerprint is printed for clients');
    for (const f of ['ca.key', 'server.key']) assert.equal(statSync(join(v.dataDir, 'tls', f)).mode & 0o777, 0o600, f);
    writeFileSync(join(v.dataDir, 'custos.toml'), '[api]\ntls_cert = "tls/server-chain.pem"\ntls_key = "tls/server.key"\n', { mode: 0o600 });
    const s = await serve(['--data-dir', v.dataDir], PASSENV);
    try {
      assert.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const port = s.url.split(':').pop()!;
      const c = await runAsync('curl', ['-sS', '-D', '-', '--cacert', join(v.dataDir, 'tls', 'ca.pem'), `${s.url}/healthz`]);
      assert.equal(c.status, 0, c.stderr);
      assert.match(c.stdout, /^HTTP\/1\.1 200/);
      assert.match(c.stdout, /strict-transport-security: max-age=31536000/i);
      assert.notEqual((await runAsync('curl', ['-sS', `${s.url}/healthz`])).status, 0, 'a client that does not trust the CA is refused');
      const sc = (args: string[]) => runAsync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], {}, '');
      for (const old of [['-tls1', '-cipher', 'DEFAULT:@SECLEVEL=0'], ['-tls1_1', '-cipher', 'DEFAULT:@SECLEVEL=0'], ['-tls1_2', '-cipher', 'AES128-SHA'], ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA'], ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-SHA384']]) {
        const r = await sc(old);
        assert.match(r.stdout, /Cipher is \(NONE\)/, `refused: ${old.join(' ')}`);
      }
      assert.match((await sc(['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'])).stdout, /Cipher is ECDHE-ECDSA-AES128-GCM-SHA256/);
      assert.match((await sc(['-tls1_2', '-cipher', 'ECDHE-ECDSA-CHACHA20-POLY1305'])).stdout, /Cipher is ECDHE-ECDSA-CHACHA20-POLY1305/);
      assert.match((await sc([])).stdout, /New, TLSv1\.3, Cipher is TLS_AES_256_GCM_SHA384/, 'TLS 1.3 is preferred');
    } finally {
      assert.equal(await s.stop(), 0);
    }
  } finally {
    cleanup();
  }
});

test('a non-loopback address without TLS is refused with what to configure; a private key others can read is refused', async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const { dir, cleanup } = tempDir();
  try {
    const v = vaultWithTls(dir, 'v');
    const r = custos(['serve', '--data-dir', v.dataDir, '--host', '0.0.0.0', '--port', '0'], PASSENV);
    assert.equal(r.status, 64);
    assert.match(r.stderr, /Refusing to serve the API on 0\.0\.0\.0 without TLS.*tls_cert and tls_key.*custos tls init/);
    writeFileSync(join(v.dataDir, 'custos.toml'), '[api]\ntls_cert = "tls/server-chain.pem"\ntls_key = "tls/server.key"\n', { mode: 0o600 });
    const { chmodSync } = await import('node:fs');
    chmodSync(join(v.dataDir, 'tls', 'server.key'), 0o644);
    const k = custos(['serve', '--data-dir', v.dataDir, '--port', '0'], PASSENV);
    assert.equal(k.status, 64);
    assert.match(k.stderr, /The TLS key .*server\.key must be the user's own and private: chmod 600/);
    chmodSync(join(v.dataDir, 'tls', 'server.key'), 0o600);
    copyFileSync(join(v.dataDir, 'tls', 'ca.key'), join(v.dataDir, 'tls', 'server.key'));
    const m = custos(['serve', '--data-dir', v.dataDir, '--port', '0'], PASSENV);
    assert.equal(m.status, 64);
    assert.match(m.stderr, /does not belong to the certificate/);
  } finally {
    cleanup();
  }
});

test('a certificate swapped on disk and SIGHUP: requests in flight and after never fail, new connections get the new certificate, a bad pair changes nothing', async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const { dir, cleanup } = tempDir();
  try {
    const v = vaultWithTls(dir, 'v');
    const w = vaultWithTls(dir, 'w'); // another CA and server pair, to swap in
    writeFileSync(join(v.dataDir, 'custos.toml'), '[api]\ntls_cert = "tls/server-chain.pem"\ntls_key = "tls/server.key"\n', { mode: 0o600 });
    const s = await serve(['--data-dir', v.dataDir], PASSENV);
    const cas = [v.ca, w.ca];
    const oldFp = new X509Certificate(readFileSync(join(v.dataDir, 'tls', 'server.pem'))).fingerprint256;
    const newFp = new X509Certificate(readFileSync(join(w.dataDir, 'tls', 'server.pem'))).fingerprint256;
    const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 4 });
    let stop = false;
    const failures: string[] = [];
    let ok = 0;
    const seen = new Set<string>();
    const load = Array.from({ length: 6 }, (_, i) =>
      (async () => {
        while (!stop) {
          try {
            const r = await get(`${s.url}/healthz`, cas, i % 2 ? keepAlive : undefined);
            if (r.status !== 200) failures.push(`status ${r.status}`);
            else ok++;
            seen.add(r.fingerprint);
          } catch (e) {
            failures.push((e as Error).message);
          }
        }
      })(),
    );
    try {
      await new Promise((r) => setTimeout(r, 300));
      // A bad pair first: the old certificate stays.
      writeFileSync(join(v.dataDir, 'tls', 'server-chain.pem'), readFileSync(join(w.dataDir, 'tls', 'server-chain.pem')));
      s.proc.kill('SIGHUP');
      await new Promise((r) => setTimeout(r, 500));
      assert.equal((await get(`${s.url}/healthz`, cas)).fingerprint, oldFp);
      // Then the whole new pair.
      writeFileSync(join(v.dataDir, 'tls', 'server.key'), readFileSync(join(w.dataDir, 'tls', 'server.key')), { mode: 0o600 });
      s.proc.kill('SIGHUP');
      for (let i = 0; i < 100 && (await get(`${s.url}/healthz`, cas)).fingerprint !== newFp; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal((await get(`${s.url}/healthz`, cas)).fingerprint, newFp, 'a new connection gets the new certificate');
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      stop = true;
      await Promise.all(load);
      keepAlive.destroy();
      await s.stop();
    }
    assert.deepEqual(failures, [], 'no request failed across the swaps');
    assert.ok(ok > 0, 'requests were made');
    assert.ok(seen.has(oldFp) && seen.has(newFp));
    assert.match(s.output(), /does not belong to the certificate[^\n]*"msg":"reload refused: the configuration is unchanged"/, 'the bad pair is logged');
    assert.match(s.output(), /TLS certificate reloaded: new connections get it/, 'the swap is logged');
  } finally {
    cleanup();
  }
});

test('mutual TLS: a client certificate bound to a principal signs with curl --cert; no certificate, an unbound one and an expired one are refused, each saying why', async (t) => {
  if (!requireTool(t, 'openssl', 'openssl') || !requireTool(t, 'curl', 'curl')) return;
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    const init = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV);
    const token = /custos_[A-Za-z0-9_-]{43}/.exec(init.stdout)![0];
    assert.equal(custos(['tls', 'init', '--data-dir', dataDir]).status, 0);
    const ca = join(dataDir, 'tls', 'ca.pem');
    for (const name of ['wallet', 'stranger']) {
      const r = custos(['tls', 'client', '--data-dir', dataDir, '--name', name, '--out', join(dir, name)]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`custos tokens create --name ${name} --role signer --keys 'LABEL-GLOB' --certificate`));
    }
    assert.equal(statSync(join(dir, 'wallet', 'wallet.key')).mode & 0o777, 0o600);
    // An expired certificate from the same CA.
    const { spawnSync } = await import('node:child_process');
    const e = (args: string[]) => assert.equal(spawnSync('openssl', args, { stdio: 'ignore' }).status, 0, args.join(' '));
    e(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'old.key'), '-out', join(dir, 'old.csr'), '-subj', '/CN=old']);
    e(['x509', '-req', '-in', join(dir, 'old.csr'), '-CA', ca, '-CAkey', join(dataDir, 'tls', 'ca.key'), '-CAcreateserial', '-CAserial', join(dir, 'ca.srl'), '-days', '-1', '-out', join(dir, 'old.pem')]);
    writeFileSync(join(dataDir, 'custos.toml'), '[api]\ntls_cert = "tls/server-chain.pem"\ntls_key = "tls/server.key"\nclient_ca = "tls/ca.pem"\n', { mode: 0o600 });
    const s = await serve(['--data-dir', dataDir], PASSENV);
    try {
      const bind = custos(['tokens', 'create', '--name', 'wallet', '--role', 'admin', '--certificate', join(dir, 'wallet', 'wallet.pem'), '--addr', s.url, '--ca', ca], { CUSTOS_TOKEN: token });
      assert.equal(bind.status, 0, bind.stderr);
      assert.match(bind.stdout, /cert:wallet \(admin\): everything\nthe client certificate [0-9a-f]{64} authenticates it by mutual TLS/);
      const curl = (extra: string[], path: string, body?: string) =>
        runAsync('curl', ['-sS', '--cacert', ca, ...extra, ...(body ? ['-H', 'content-type: application/json', '-d', body] : []), `${s.url}${path}`]);
      const wallet = ['--cert', join(dir, 'wallet', 'wallet.pem'), '--key', join(dir, 'wallet', 'wallet.key')];
      const created = JSON.parse((await curl(wallet, '/v1/keys', JSON.stringify({ label: 'pay', algorithm: 'ed25519' }))).stdout);
      assert.equal(created.label, 'pay');
      const signed = JSON.parse((await curl(wallet, '/v1/keys/pay/sign', JSON.stringify({ message: 'aGVsbG8=' }))).stdout);
      assert.match(signed.signature, /^[A-Za-z0-9+/]+=*$/);
      const audit = JSON.parse((await curl(wallet, '/v1/audit?limit=5')).stdout).entries as Array<{ principal: string; operation: string }>;
      assert.ok(audit.some((x) => x.operation === 'sign' && x.principal === 'cert:wallet'), 'the audit names the certificate principal');
      assert.match((await curl([], '/v1/keys')).stdout, /"code":"unauthorized".*Send the API token/, 'no certificate and no token');
      assert.match((await curl(['--cert', join(dir, 'stranger', 'stranger.pem'), '--key', join(dir, 'stranger', 'stranger.key')], '/v1/keys')).stdout, /bound to no principal/, 'a certificate that chains but is bound to nobody gets nothing');
      assert.match((await curl(['--cert', join(dir, 'old.pem'), '--key', join(dir, 'old.key')], '/v1/keys')).stdout, /client certificate was refused \(certificate has expired\)|CERT_HAS_EXPIRED/i, 'an expired certificate');
      assert.match((await runAsync('curl', ['-sS', '--cacert', ca, '-H', `authorization: Bearer ${token}`, `${s.url}/v1/keys`])).stdout, /"keys"/, 'bearer tokens still work');
      // TLS 1.2 renegotiation is refused: a second handshake could otherwise present another
      // certificate after a verified one.
      const tlsMod = await import('node:tls');
      const port = Number(s.url.split(':').pop());
      const sock = tlsMod.connect({ host: '127.0.0.1', port, ca: readFileSync(ca), cert: readFileSync(join(dir, 'wallet', 'wallet.pem')), key: readFileSync(join(dir, 'wallet', 'wallet.key')), maxVersion: 'TLSv1.2', servername: 'localhost' });
      await new Promise<void>((r, j) => { sock.once('secureConnect', () => r()); sock.once('error', j); });
      const reneg = await new Promise<Error | null>((r) => {
        sock.once('error', (err) => r(err));
        sock.once('close', () => r(new Error('closed')));
        const ok = sock.renegotiate({ rejectUnauthorized: false }, (err) => r(err ?? null));
        if (!ok) r(new Error('renegotiate refused locally'));
      });
      sock.destroy();
      assert.ok(reneg, 'the server does not renegotiate');
    } finally {
      assert.equal(await s.stop(), 0);
    }
  } finally {
    cleanup();
  }
});
