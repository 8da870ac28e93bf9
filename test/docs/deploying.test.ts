/**
 * The README's "Deploying on a network" section, run as an operator would: every block whose
 * info string is exactly `sh` runs verbatim, in order, in one bash with `set -euo pipefail`,
 * with `custos` on the PATH; the `sh env` block (the operator's own values) is supplied by the
 * test. The vault listens on 0.0.0.0:8443 over mutual TLS, curl and the example wallet server
 * sign with a client certificate, the wallet's principal is refused what its scope does not
 * allow, and its revocation holds at the next request.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { tempDir } from '../helpers/tmpvault.js';
import { BIN, ROOT } from '../helpers/process.js';
import { requireTool } from '../helpers/require.js';

function sectionBlocks(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Deploying on a network\n');
  assert.ok(start >= 0, 'the README has the section');
  const end = readme.indexOf('\n## ', start + 10);
  const section = readme.slice(start, end);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

async function free(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const srv = createServer();
    srv.once('error', () => reject(new Error(`port ${port} is in use by another process; the README's walkthrough uses it (stop it and run again)`)));
    srv.listen(port, '0.0.0.0', () => srv.close(() => resolve()));
  });
}

test('README "Deploying on a network", verbatim: mutual TLS on 0.0.0.0:8443, curl and the example wallet server sign as cert:wallet, its scope holds, its revocation holds at once', async (t) => {
  if (!requireTool(t, 'openssl', 'openssl') || !requireTool(t, 'curl', 'curl')) return;
  await free(8443);
  await free(3000);
  const { dir, cleanup } = tempDir();
  try {
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'custos'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`);
    chmodSync(join(bin, 'custos'), 0o755);
    const passfile = join(dir, 'passphrase');
    writeFileSync(passfile, 'deploying test passphrase\n', { mode: 0o600 });
    const blocks = sectionBlocks();
    assert.ok(blocks.length >= 6, `runnable blocks: ${blocks.length}`);
    // The operator's values (the `sh env` block), a work directory, and every background job
    // (the vault, the wallet server) stopped at the end whatever happens.
    const script = [
      'set -euo pipefail',
      `cd "${dir}"`,
      `export CUSTOS_DATA="${join(dir, 'custos')}" PASSFILE="${passfile}" VAULT_HOST=localhost CUSTOS_CHECKOUT="${ROOT}"`,
      'trap \'kill $(jobs -p) 2>/dev/null; wait\' EXIT',
      ...blocks.map((b, i) => `echo "=== block ${i + 1}"\n${b}`),
      'echo; echo "=== done"',
    ].join('\n');
    const env: Record<string, string | undefined> = { ...process.env, PATH: `${bin}:${process.env.PATH}`, HOME: dir };
    for (const k of ['CUSTOS_TOKEN', 'CUSTOS_ADDR', 'CUSTOS_TOKEN_FILE', 'CUSTOS_CACERT', 'CUSTOS_PASSPHRASE']) delete env[k];
    const { status, out } = await new Promise<{ status: number | null; out: string }>((resolve) => {
      let out = '';
      const p = spawn('bash', ['-c', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      p.stdout!.on('data', (d) => (out += d));
      p.stderr!.on('data', (d) => (out += d));
      const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
      p.on('close', (s) => {
        clearTimeout(timer);
        resolve({ status: s, out });
      });
    });
    assert.equal(status, 0, out);
    assert.match(out, /=== done/);
    const blockOut = (n: number) => out.split(`=== block ${n}\n`)[1]!.split('=== block')[0]!;
    const curlSign = blocks.findIndex((b) => b.includes('cd wallet')) + 1;
    assert.match(blockOut(curlSign), /"signature":"[A-Za-z0-9+/]+=*"/, 'curl signed over mutual TLS');
    assert.match(blockOut(curlSign + 1), /"payout":\{"to":"bc1qexample","amount":"1.50".*"signature":"[A-Za-z0-9+/]+=*"/, 'the wallet server signed a payout');
    assert.match(blockOut(curlSign + 2), /"code":"forbidden:scope"/, 'the audit log is outside its scope');
    assert.match(blockOut(curlSign + 3), /"code":"unauthorized:revoked"/, 'revoked at once');
    assert.match(out, /cert:wallet \(signer\): read,sign,verify; keys payments-\* \[limit 100\/s\]/);
    // The vault's config as the walkthrough left it.
    const toml = readFileSync(join(dir, 'custos', 'custos.toml'), 'utf8');
    assert.match(toml, /\[api\]\n(#.*\n)*host = "0.0.0.0"\nport = 8443\ntls_cert = "tls\/server-chain.pem"\ntls_key = "tls\/server.key"\nclient_ca = "tls\/ca.pem"\n\n/, 'the [api] table is edited in place, comments kept');
  } finally {
    cleanup();
  }
});
