/**
 * Sealing by HSM and HSM keys, end to end with the real `custos` executable and a SoftHSM2
 * token: auto-unseal at start, token and wrapped keys over the CLI, bulk generation, then the
 * token taken away (the daemon starts sealed and takes recovery shares; HSM requests fail
 * closed with a stable code, /healthz is 503) and given back (automatic recovery).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, custos, serve } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';
import { createSoftHsm } from '../helpers/softhsm.js';

async function waitFor(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return cond();
}

test('an HSM-sealed vault unseals itself, serves token and wrapped keys, and falls back to recovery shares without its token', async (t) => {
  const hsm = createSoftHsm(t, { label: 'custos-seal-token' });
  if (!hsm) return;
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'vault');
  const pinFile = join(dir, 'pin');
  writeFileSync(pinFile, Buffer.from(hsm.pin).toString() + '\n', { mode: 0o600 });
  const env = { CUSTOS_PASSPHRASE: undefined, SOFTHSM2_CONF: hsm.conf };
  let s: Awaited<ReturnType<typeof serve>> | undefined;
  try {
    const init = custos(['init', '--data-dir', dataDir, '--hsm-module', hsm.module, '--hsm-token-label', hsm.label, '--hsm-pin-file', pinFile, '--shares', '3', '--threshold', '2', '--share-dir', join(dir, 'recovery')], env);
    assert.equal(init.status, 0, init.stderr + init.stdout);
    assert.match(init.stdout, /RECOVERY shares/);
    const token = /Admin API token[^\n]*\n\s+(\S+)/.exec(init.stdout)![1]!;
    const shares = readdirSync(join(dir, 'recovery')).map((f) => join(dir, 'recovery', f));

    s = await serve(['--data-dir', dataDir], env);
    let api = { ...env, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    const st = custos(['status'], api);
    assert.equal(st.status, 0, st.stdout + st.stderr);
    assert.match(st.stdout, /unsealed \(seal: hsm\)/);
    const health = (await (await fetch(`${s.url}/healthz`)).json()) as { status: string; components: Array<{ component: string; ok: boolean }> };
    assert.equal(health.status, 'ok');
    assert.deepEqual(health.components.map((c) => [c.component, c.ok]), [['pkcs11:hsm', true]]);

    let r = custos(['keys', 'create', '--label', 'tok-ed', '--algorithm', 'ed25519', '--backend', 'pkcs11:hsm'], api);
    assert.equal(r.status, 0, r.stderr);
    r = custos(['keys', 'create', '--label', 'wr-k1', '--algorithm', 'secp256k1', '--backend', 'pkcs11:hsm', '--wrapped'], api);
    assert.equal(r.status, 0, r.stderr);
    r = custos(['keys', 'create', '--label', 'soft', '--algorithm', 'ed25519'], api);
    assert.equal(r.status, 0, r.stderr);
    r = custos(['keys', 'generate', '--prefix', 'cust', '--count', '60', '--algorithm', 'p256', '--backend', 'pkcs11:hsm', '--wrapped', '--json'], api);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).created, 60);
    // The token's objects, and which vault key each already is.
    const objs = JSON.parse(custos(['keys', 'token-objects', '--backend', 'pkcs11:hsm', '--json'], api).stdout) as Array<{ id: string; label: string; vault_key: string | null }>;
    assert.ok(objs.some((o) => o.vault_key === 'tok-ed'), 'the token key made through the vault is listed as tok-ed');
    r = custos(['keys', 'adopt', '--label', 'again', '--backend', 'pkcs11:hsm', '--object-id', objs.find((o) => o.vault_key === 'tok-ed')!.id], api);
    assert.equal(r.status, 4, 'one token object is one vault key');
    for (const k of ['tok-ed', 'wr-k1', 'cust-59']) {
      const sig = custos(['sign', '--key', k, '--in', '-'], api, 'pay 1 BTC');
      assert.equal(sig.status, 0, `${k}: ${sig.stderr}`);
      const ok = custos(['verify', '--key', k, '--in', '-', '--signature', sig.stdout.trim()], api, 'pay 1 BTC');
      assert.equal(ok.status, 0, `${k} verifies: ${ok.stderr}${ok.stdout}`);
    }
    // Mid-run, the token vanishes: its keys fail closed with a stable code, health turns
    // 503, software keys keep working, and the token is reopened by itself when it returns.
    const tokenDir = hsm.tokenPath(hsm.label);
    const aside = join(hsm.dir, 'token-aside');
    renameSync(tokenDir, aside);
    const gone = custos(['sign', '--key', 'tok-ed', '--in', '-'], api, 'x');
    assert.equal(gone.status, 5, gone.stderr);
    assert.equal((await fetch(`${s.url}/healthz`)).status, 503);
    assert.equal(custos(['sign', '--key', 'soft', '--in', '-'], api, 'x').status, 0);
    renameSync(aside, tokenDir);
    assert.ok(await waitFor(async () => custos(['sign', '--key', 'tok-ed', '--in', '-'], api, 'x').status === 0, 60_000), 'the token comes back');
    assert.ok(await waitFor(async () => (await fetch(`${s!.url}/healthz`)).status === 200, 30_000));
    assert.equal(await s.stop(), 0);

    // The token is taken away: no auto-unseal; recovery shares open the vault.
    const tokenPath = hsm.tokenPath(hsm.label);
    const away = join(hsm.dir, 'token-away'); // outside the token directory: SoftHSM loads every folder in it
    renameSync(tokenPath, away);
    s = await serve(['--data-dir', dataDir], env);
    api = { ...env, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    const sealed = custos(['status', '--json'], api);
    assert.equal(sealed.status, 5);
    const ss = JSON.parse(sealed.stdout);
    assert.equal(ss.sealed, true);
    assert.equal(ss.seal, 'hsm');
    assert.match(ss.reason, /HSM could not unseal/);
    for (const f of shares.slice(1)) assert.equal(custos(['operator', 'unseal', '--share-file', f], api).status, 0);
    assert.match(custos(['status'], api).stdout, /^unsealed/);
    const degraded = await fetch(`${s.url}/healthz`);
    assert.equal(degraded.status, 503);
    assert.equal(((await degraded.json()) as { status: string }).status, 'degraded');
    const refused = custos(['sign', '--key', 'tok-ed', '--in', '-'], api, 'x');
    assert.equal(refused.status, 5, refused.stderr);
    assert.match(refused.stderr, /token|PKCS#11/i);
    assert.equal(custos(['sign', '--key', 'soft', '--in', '-'], api, 'x').status, 0, 'software keys keep working');

    // The token comes back: the backend reopens it by itself.
    renameSync(away, tokenPath);
    assert.ok(await waitFor(async () => (await fetch(`${s!.url}/healthz`)).status === 200, 60_000), 'health recovers');
    const again = custos(['sign', '--key', 'wr-k1', '--in', '-'], api, 'x');
    assert.equal(again.status, 0, again.stderr);
  } finally {
    await s?.stop();
    cleanup();
    hsm.cleanup();
  }
});

test('an HSM-sealed vault keeps its audit anchor in the token too: a backup put back with its own anchor file is refused', async (t) => {
  const hsm = createSoftHsm(t, { label: 'custos-anchor-token' });
  if (!hsm) return;
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'vault');
  const pinFile = join(dir, 'pin');
  writeFileSync(pinFile, Buffer.from(hsm.pin).toString() + '\n', { mode: 0o600 });
  const env = { CUSTOS_PASSPHRASE: undefined, SOFTHSM2_CONF: hsm.conf };
  try {
    const init = custos(['init', '--data-dir', dataDir, '--hsm-module', hsm.module, '--hsm-token-label', hsm.label, '--hsm-pin-file', pinFile, '--shares', '3', '--threshold', '2', '--share-dir', join(dir, 'recovery')], env);
    assert.equal(init.status, 0, init.stderr + init.stdout);
    const token = /Admin API token[^\n]*\n\s+(\S+)/.exec(init.stdout)![1]!;
    let s = await serve(['--data-dir', dataDir], env);
    assert.equal(custos(['keys', 'create', '--label', 'first', '--algorithm', 'ed25519'], { ...env, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token }).status, 0);
    assert.equal(await s.stop(), 0);
    // A backup of the whole data directory, database and anchor file together.
    const backup = join(dir, 'backup');
    cpSync(dataDir, backup, { recursive: true });
    s = await serve(['--data-dir', dataDir], env);
    for (const k of ['second', 'third']) assert.equal(custos(['keys', 'create', '--label', k, '--algorithm', 'ed25519'], { ...env, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token }).status, 0);
    assert.equal(await s.stop(), 0);
    // The backup put back: the anchor file agrees with it, the token's anchor does not.
    rmSync(dataDir, { recursive: true });
    cpSync(backup, dataDir, { recursive: true });
    const refused = spawnSync(process.execPath, [BIN, 'serve', '--data-dir', dataDir, '--port', '0'], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
    assert.equal(refused.status, 5, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /audit anchor the data object "custos-anchor-[0-9a-f-]+" in the HSM token of pkcs11:hsm .* vouches for entry/);
    // Restoring that backup on purpose: the token unseals the vault and its anchor is replaced too.
    const accept = custos(['audit', 'accept-database', '--data-dir', dataDir], env);
    assert.equal(accept.status, 0, accept.stdout + accept.stderr);
    const s2 = await serve(['--data-dir', dataDir], env);
    assert.equal(await s2.stop(), 0);
  } finally {
    cleanup();
    hsm.cleanup();
  }
});
