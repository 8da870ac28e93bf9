/**
 * Policies, approvals and PSBTs through the real `custos` executable: a rate limit that holds
 * across a kill -9 in the middle of a burst, 2-of-N approvals by distinct approver tokens,
 * `policy test` explaining a decision, and `sign-psbt` with an HD key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as bitcoin from 'bitcoinjs-lib';
import * as ecc from '@bitcoinerlab/secp256k1';
import { custos, custosAsync, serve } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';
import { hdSpend } from '../helpers/psbt.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'policy test passphrase' };
bitcoin.initEccLib(ecc);
const network = bitcoin.networks.regtest;

/** `custos init` + `custos serve` on a fresh data directory; the admin token. */
async function freshVault(dir: string): Promise<{ dataDir: string; token: string; s: Awaited<ReturnType<typeof serve>> }> {
  const dataDir = join(dir, 'vault');
  const init = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '10'], PASSENV);
  assert.equal(init.status, 0, init.stderr);
  const token = /Admin API token[^\n]*\n\s+(\S+)/.exec(init.stdout)![1]!;
  return { dataDir, token, s: await serve(['--data-dir', dataDir], PASSENV) };
}

test('a rate limit is never exceeded across a kill -9 mid-burst; approvals need distinct named approvers', async () => {
  const { dir, cleanup } = tempDir();
  let s: Awaited<ReturnType<typeof serve>> | undefined;
  try {
    const v = await freshVault(dir);
    const { dataDir, token } = v;
    s = v.s;
    let api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    for (const k of ['burst', 'guarded']) assert.equal(custos(['keys', 'create', '--label', k, '--algorithm', 'ed25519'], api).status, 0);
    const approverToken = (name: string) => {
      const r = custos(['tokens', 'create', '--name', name, '--role', 'approver', '--json'], api);
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout).token as string;
    };
    const alice = approverToken('alice');
    const bob = approverToken('bob');
    const policyFile = join(dir, 'limits.toml');
    writeFileSync(
      policyFile,
      `id = "limits"\n[applies_to]\nkeys = ["burst"]\n[[rules]]\nid = "ten-per-hour"\ntype = "rate_limit"\nlimit = 10\nwindow = "1h"\nper = "key"\n`,
    );
    assert.equal(custos(['policy', 'upload', policyFile], api).status, 0);
    const guardFile = join(dir, 'guard.json');
    writeFileSync(guardFile, JSON.stringify({ id: 'guard', applies_to: { keys: ['guarded'] }, rules: [{ type: 'approval', approvers: ['token:alice', 'token:bob', 'token:carol'], required: 2 }] }));
    assert.equal(custos(['policy', 'upload', guardFile], api).status, 0);
    assert.match(custos(['policy', 'list'], api).stdout, /guard\s+v1[\s\S]*limits\s+v1/);

    // A burst of 40 signatures; kill -9 as soon as a few have come back.
    const sign = (url: string) =>
      fetch(`${url}/v1/keys/burst/sign`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ message: 'aGk=' }) })
        .then((r) => r.status)
        .catch(() => 0);
    let ok = 0;
    const first = Array.from({ length: 40 }, () => sign(s!.url).then((st) => (st === 200 ? ok++ : 0, st)));
    while (ok < 3) await new Promise((r) => setTimeout(r, 2));
    s.proc.kill('SIGKILL');
    const statuses = await Promise.all(first);
    await s.stop();
    s = await serve(['--data-dir', dataDir], PASSENV);
    api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    const second = await Promise.all(Array.from({ length: 40 }, () => sign(s!.url)));
    const total = [...statuses, ...second].filter((x) => x === 200).length;
    assert.ok(total <= 10, `at most 10 signatures in the hour, got ${total}`);
    assert.ok(second.some((x) => x === 403), 'the rest are refused with policy_denied:rate_limit');
    writeFileSync(join(dir, 'req.json'), JSON.stringify({ payload_type: 'raw', message: 'aGk=' }));
    const t = custos(['policy', 'test', '--key', 'burst', '--request', join(dir, 'req.json')], api);
    assert.equal(t.status, 4, t.stdout + t.stderr);
    assert.match(t.stdout, /Decision: deny \(policy_denied:rate_limit\)/);
    assert.match(t.stdout, /ten-per-hour/);

    // 2-of-3 approvals: the request waits; an approver token may do nothing else.
    const pending = custosAsync(['sign', '--key', 'guarded', '--in', guardFile], api);
    let id: string | undefined;
    for (let i = 0; i < 100 && !id; i++) {
      const l = custos(['approvals', '--json'], api);
      id = (JSON.parse(l.stdout) as Array<{ id: string }>)[0]?.id;
      if (!id) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(id);
    const asAlice = { ...api, CUSTOS_TOKEN: alice };
    assert.equal(custos(['keys', 'list'], asAlice).status, 4, 'an approver token cannot list keys');
    assert.match(custos(['approvals'], asAlice).stdout, /approvers token:alice token:bob token:carol/);
    assert.equal(custos(['approve', id], asAlice).status, 0);
    assert.equal(custos(['approve', id], asAlice).status, 4, 'alice cannot approve twice');
    assert.equal(custos(['approve', id], { ...api, CUSTOS_TOKEN: bob }).status, 0);
    const signed = await pending;
    assert.equal(signed.status, 0, signed.stderr);
  } finally {
    await s?.stop();
    cleanup();
  }
});

test('sign-psbt signs our input of a PSBT with an HD key made from a mnemonic', async () => {
  const { dir, cleanup } = tempDir();
  let s: Awaited<ReturnType<typeof serve>> | undefined;
  try {
    const v = await freshVault(dir);
    s = v.s;
    const api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: v.token };
    const mnemonic = 'legal winner thank year wave sausage worth useful legal winner thank yellow';
    writeFileSync(join(dir, 'words'), mnemonic + '\n');
    const made = custos(['keys', 'create-hd', '--label', 'wallet', '--mnemonic-file', join(dir, 'words'), '--json'], api);
    assert.equal(made.status, 0, made.stderr);
    const xpub = custos(['keys', 'xpub', 'wallet', '--path', "m/84'/1'/0'", '--network', 'testnet', '--json'], api);
    assert.equal(xpub.status, 0, xpub.stderr);
    assert.match(JSON.parse(xpub.stdout).xpub, /^tpub/);

    writeFileSync(join(dir, 'tx.psbt'), hdSpend(mnemonic, "m/84'/1'/0'/0/0", 9, 50_000n, 49_000n).toBase64());
    const r = custos(['sign-psbt', '--key', 'wallet', '--in', join(dir, 'tx.psbt'), '--network', 'regtest'], api);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /sends 49000 sats, fee 1000/);
    const out = bitcoin.Psbt.fromBase64(r.stdout.trim(), { network });
    assert.ok(out.validateSignaturesOfAllInputs((p, h, sig) => ecc.verify(h, p, sig)));
  } finally {
    await s?.stop();
    cleanup();
  }
});

test('a velocity budget is never exceeded across a kill -9 in the middle of a burst of PSBTs', async () => {
  const { dir, cleanup } = tempDir();
  let s: Awaited<ReturnType<typeof serve>> | undefined;
  try {
    const v = await freshVault(dir);
    const { dataDir, token } = v;
    s = v.s;
    const api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    const mnemonic = 'letter advice cage absurd amount doctor acoustic avoid letter advice cage above';
    writeFileSync(join(dir, 'words'), mnemonic);
    assert.equal(custos(['keys', 'create-hd', '--label', 'hot', '--mnemonic-file', join(dir, 'words')], api).status, 0);
    writeFileSync(join(dir, 'v.toml'), `id = "daily"\n[applies_to]\nkeys = ["hot"]\n[[rules]]\nid = "budget"\ntype = "velocity"\nlimit = 100000\nwindow = "24h"\nbuckets = 24\n`);
    assert.equal(custos(['policy', 'upload', join(dir, 'v.toml')], api).status, 0);
    // 10,000 sent away and 10,000 fee each: every spend counts 10,000 against the budget.
    const psbts = Array.from({ length: 40 }, (_, i) => hdSpend(mnemonic, "m/84'/1'/0'/0/1", i + 1, 20_000n, 10_000n).toBase64());
    const send = (url: string, psbt: string) =>
      fetch(`${url}/v1/keys/hot/sign-psbt`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ psbt, network: 'regtest' }) })
        .then(async (r) => ({ status: r.status, body: (await r.json().catch(() => ({}))) as { code?: string; sent_externally_sats?: string } }))
        .catch(() => ({ status: 0, body: {} as { code?: string; sent_externally_sats?: string } }));
    let ok = 0;
    const first = psbts.slice(0, 20).map((p) => send(s!.url, p).then((r) => (r.status === 200 && ok++, r)));
    while (ok < 2) await new Promise((r) => setTimeout(r, 2));
    s.proc.kill('SIGKILL');
    const a = await Promise.all(first);
    await s.stop();
    s = await serve(['--data-dir', dataDir], PASSENV);
    const b = await Promise.all(psbts.slice(20).map((p) => send(s!.url, p)));
    const spent = [...a, ...b].filter((r) => r.status === 200).reduce((n, r) => n + BigInt(r.body.sent_externally_sats ?? '0'), 0n);
    assert.ok(spent <= 100_000n, `spent ${spent} of a 100,000 budget`);
    assert.ok(b.some((r) => r.body.code === 'policy_denied:velocity'), 'the rest are refused with policy_denied:velocity');
  } finally {
    await s?.stop();
    cleanup();
  }
});
