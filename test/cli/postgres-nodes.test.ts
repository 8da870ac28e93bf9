/**
 * Several nodes on one PostgreSQL database, with the real binaries: `custos init --store-url`
 * on one data directory, `custos init --join` on another, two `custos serve` processes, a real
 * PostgreSQL 15 cluster on 127.0.0.1. What one node does is in force on the other at the next
 * request; the audit log stays one chain; a primary that stops answering makes both fail
 * closed with a sentence (and /healthz say why) until it is back; a database restored from an
 * older dump is refused by both.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createPublicKey, verify } from 'node:crypto';
import pg from 'pg';
import { tempDir } from '../helpers/tmpvault.js';
import { custos, runAsync, serve } from '../helpers/process.js';
import { requirePostgres, startPostgres } from '../helpers/postgres.js';
import { hdSpend } from '../helpers/psbt.js';
import { runPrivvalRace } from '../../scripts/privval-race.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'two nodes test passphrase' };

async function call(url: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: { code?: string; message?: string } & Record<string, unknown> }> {
  const r = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  return { status: r.status, body: (await r.json()) as never };
}

test('two nodes on one PostgreSQL database: one vault, one audit chain, changes in force everywhere at once, fail closed while the database is away, a restored old dump refused', async (t) => {
  if (!requirePostgres(t)) return;
  const cluster = await startPostgres();
  const { dir, cleanup } = tempDir();
  try {
    const url = await cluster.createDatabase('vault');
    const a = join(dir, 'node-a');
    const b = join(dir, 'node-b');
    const tokenFile = join(dir, 'admin.token');
    const init = custos(['init', '--data-dir', a, '--store-url', url, '--scrypt-log-n', '12', '--admin-token-file', tokenFile], PASSENV);
    assert.equal(init.status, 0, init.stderr);
    assert.ok(!existsSync(join(a, 'custos.db')), 'no SQLite file: the vault is in PostgreSQL');
    assert.match(readFileSync(join(a, 'custos.toml'), 'utf8'), /^\[store\]\n(#.*\n)*url = "postgresql:\/\/custos@127\.0\.0\.1:\d+\/vault"$/m);
    const again = custos(['init', '--data-dir', join(dir, 'other'), '--store-url', url, '--scrypt-log-n', '12'], PASSENV);
    assert.notEqual(again.status, 0, 'a second vault in the same database is refused');
    assert.match(again.stderr, /already holds Custos tables.*--join/);
    const noAnchor = custos(['init', '--join', '--data-dir', b, '--store-url', url]);
    assert.notEqual(noAnchor.status, 0, 'a node joins with an existing node\'s anchor');
    assert.match(noAnchor.stderr, /--anchor/);
    const join_ = custos(['init', '--join', '--data-dir', b, '--store-url', url, '--anchor', join(a, 'custos.anchor')]);
    assert.equal(join_.status, 0, join_.stderr);
    assert.match(join_.stdout, /ready to serve vault .* \(anchored at audit entry \d+\)/);
    const admin = readFileSync(tokenFile, 'utf8').trim();

    const na = await serve(['--data-dir', a], PASSENV);
    const nb = await serve(['--data-dir', b], PASSENV);
    try {
      // A key made on A signs on B; the signature verifies outside the vault.
      const made = await call(na.url, admin, 'POST', '/v1/keys', { label: 'payments', algorithm: 'ed25519' });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      const msg = Buffer.from('pay 5');
      const signed = await call(nb.url, admin, 'POST', '/v1/keys/payments/sign', { message: msg.toString('base64') });
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
      const pem = (made.body.public_key as { spki_pem: string }).spki_pem;
      assert.ok(verify(null, msg, createPublicKey(pem), Buffer.from(signed.body.signature as string, 'base64')));

      // A principal made on A works on B; revoked on A, B refuses it at the next request.
      const tok = await call(na.url, admin, 'POST', '/v1/tokens', { name: 'wallet', role: 'signer', keys: ['payments'] });
      assert.equal(tok.status, 201, JSON.stringify(tok.body));
      const wallet = tok.body.token as string;
      assert.equal((await call(nb.url, wallet, 'POST', '/v1/keys/payments/sign', { message: 'eA==' })).status, 200);
      assert.equal((await call(na.url, admin, 'POST', '/v1/tokens/wallet/revoke')).status, 200);
      assert.equal((await call(nb.url, wallet, 'POST', '/v1/keys/payments/sign', { message: 'eA==' })).status, 401);
      // Disabled on B, A refuses it at once.
      assert.equal((await call(nb.url, admin, 'POST', '/v1/keys/payments/disable')).status, 200);
      const refused = await call(na.url, admin, 'POST', '/v1/keys/payments/sign', { message: 'eA==' });
      assert.equal(refused.body.code, 'key_disabled', JSON.stringify(refused.body));
      assert.equal((await call(na.url, admin, 'POST', '/v1/keys/payments/enable')).status, 200);

      // The database goes away: both fail closed with a sentence, /healthz says why; it comes back by itself.
      await cluster.stop('immediate');
      for (const n of [na, nb]) {
        const r = await call(n.url, admin, 'POST', '/v1/keys/payments/sign', { message: 'eA==' });
        assert.equal(r.status, 503, JSON.stringify(r.body));
        assert.match(String(r.body.message), /PostgreSQL .*at postgresql:\/\/custos@127\.0\.0\.1:\d+\/vault/);
        const h = await fetch(`${n.url}/healthz`);
        assert.equal(h.status, 503);
        const hb = (await h.json()) as { components: Array<{ component: string; ok: boolean; detail?: string }> };
        const db = hb.components.find((c) => c.component === 'database');
        assert.ok(db && !db.ok && /PostgreSQL/.test(db.detail ?? ''), JSON.stringify(hb));
      }
      await cluster.start();
      for (const n of [na, nb]) {
        let status = 0;
        for (let i = 0; i < 50 && status !== 200; i++) {
          status = (await call(n.url, admin, 'POST', '/v1/keys/payments/sign', { message: 'eA==' })).status;
          if (status !== 200) await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(status, 200, 'reconnected by itself');
        assert.equal((await fetch(`${n.url}/healthz`)).status, 200);
      }

      // A dump taken now, more signatures through both nodes, then the dump restored under them.
      const dump = join(dir, 'vault.dump');
      const pgArgs = ['-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'custos'];
      const d = await runAsync(join(cluster.bin, 'pg_dump'), [...pgArgs, '-Fc', '-f', dump, 'vault']);
      assert.equal(d.status, 0, d.stderr);
      for (const n of [na, nb, na, nb]) assert.equal((await call(n.url, admin, 'POST', '/v1/keys/payments/sign', { message: 'eA==' })).status, 200);
      // Each node's anchor follows the head every anchor_interval_seconds (1 s by default):
      // wait until both have anchored the newest entry (a loaded machine may take longer).
      const q = new pg.Client({ connectionString: url });
      await q.connect();
      const head = Number((await q.query<{ s: string }>('SELECT max(seq) AS s FROM audit')).rows[0]!.s);
      await q.end();
      const anchored = (d: string) => (JSON.parse(readFileSync(join(d, 'custos.anchor'), 'utf8')) as { seq: number }).seq;
      for (let i = 0; i < 300 && (anchored(a) < head || anchored(b) < head); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(anchored(a) >= head && anchored(b) >= head, 'both anchors reached the head');
      const c = new pg.Client({ connectionString: cluster.url });
      await c.connect();
      await c.query('DROP DATABASE vault WITH (FORCE)');
      await c.query('CREATE DATABASE vault');
      await c.end();
      const restored = await runAsync(join(cluster.bin, 'pg_restore'), [...pgArgs, '-d', 'vault', dump]);
      assert.equal(restored.status, 0, restored.stderr);
      for (const n of [na, nb]) {
        let r = await call(n.url, admin, 'POST', '/v1/keys/payments/sign', { message: 'eA==' });
        // The first request may only find the connection gone (the database was dropped under it).
        if (r.status === 503 && /stopped answering|lost|reconnect/i.test(String(r.body.message))) r = await call(n.url, admin, 'POST', '/v1/keys/payments/sign', { message: 'eA==' });
        assert.ok(r.status >= 500, JSON.stringify(r.body));
        assert.match(String(r.body.code), /^(database_corrupt|database_rolled_back|audit_unavailable)/, JSON.stringify(r.body));
        assert.match(String(r.body.message), /older copy|put back|rolled back|older/i, JSON.stringify(r.body));
      }
    } finally {
      await na.stop();
      await nb.stop();
    }
    // Restarted on the old dump, each node refuses it by its own anchor.
    for (const n of [a, b]) {
      // (A node that did start is stopped again, so that a failure here cannot leave it running.)
      const refused = await serve(['--data-dir', n], PASSENV).then(
        async (p) => (await p.stop(), null),
        (e: Error & { output?: string }) => e,
      );
      assert.ok(refused, `${n} started on the old dump`);
      assert.match(refused.output ?? '', /older or shorter/, refused.output);
    }
  } finally {
    await cluster.dispose();
    cleanup();
  }
});

test('three nodes on one PostgreSQL database spend one velocity budget at once: never over it', async (t) => {
  if (!requirePostgres(t)) return;
  const cluster = await startPostgres();
  const { dir, cleanup } = tempDir();
  const nodes: Awaited<ReturnType<typeof serve>>[] = [];
  try {
    const url = await cluster.createDatabase('budget');
    const dirs = ['n1', 'n2', 'n3'].map((n) => join(dir, n));
    const tokenFile = join(dir, 'admin.token');
    assert.equal(custos(['init', '--data-dir', dirs[0]!, '--store-url', url, '--scrypt-log-n', '10', '--admin-token-file', tokenFile], PASSENV).status, 0);
    for (const d of dirs.slice(1)) assert.equal(custos(['init', '--join', '--data-dir', d, '--store-url', url, '--anchor', join(dirs[0]!, 'custos.anchor')]).status, 0);
    const token = readFileSync(tokenFile, 'utf8').trim();
    nodes.push(...(await Promise.all(dirs.map((d) => serve(['--data-dir', d], PASSENV)))));
    const api = { CUSTOS_ADDR: nodes[0]!.url, CUSTOS_TOKEN: token };
    const mnemonic = 'letter advice cage absurd amount doctor acoustic avoid letter advice cage above';
    writeFileSync(join(dir, 'words'), mnemonic);
    assert.equal(custos(['keys', 'create-hd', '--label', 'hot', '--mnemonic-file', join(dir, 'words')], api).status, 0);
    writeFileSync(join(dir, 'v.toml'), `id = "daily"\n[applies_to]\nkeys = ["hot"]\n[[rules]]\nid = "budget"\ntype = "velocity"\nlimit = 100000\nwindow = "24h"\nbuckets = 24\n`);
    assert.equal(custos(['policy', 'upload', join(dir, 'v.toml')], api).status, 0);
    // 10,000 sent away and 10,000 fee each: every spend counts 10,000; 30 spends, 10 fit.
    const psbts = Array.from({ length: 30 }, (_, i) => hdSpend(mnemonic, "m/84'/1'/0'/0/1", i + 1, 20_000n, 10_000n).toBase64());
    const answers = await Promise.all(
      psbts.map((psbt, i) =>
        fetch(`${nodes[i % 3]!.url}/v1/keys/hot/sign-psbt`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ psbt, network: 'regtest' }) }).then(async (r) => ({ status: r.status, body: (await r.json()) as { code?: string; sent_externally_sats?: string } })),
      ),
    );
    const signed = answers.filter((r) => r.status === 200);
    const spent = signed.reduce((n, r) => n + BigInt(r.body.sent_externally_sats ?? '0'), 0n);
    assert.ok(spent <= 100_000n, `spent ${spent} of a 100,000 budget`);
    assert.equal(signed.length, 10, `every spend that fits is signed: ${JSON.stringify(answers.filter((r) => r.status !== 200).map((r) => r.body.code))}`);
    assert.ok(answers.filter((r) => r.status !== 200).every((r) => r.body.code === 'policy_denied:velocity'), 'the rest are refused by the budget');
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await cluster.dispose();
    cleanup();
  }
});

test('privval race across two nodes on PostgreSQL: conflicting votes sent to both at once, never two signatures for one position', { timeout: 120_000 }, async (t) => {
  if (!requirePostgres(t)) return;
  const cluster = await startPostgres();
  try {
    const rounds = Number(process.env.CUSTOS_PRIVVAL_RACE_ROUNDS ?? 60);
    const report = await runPrivvalRace({ rounds, storeUrl: await cluster.createDatabase() });
    assert.equal(report.conflicts, 0, report.details.join('\n'));
    assert.equal(report.badSignatures, 0, report.details.join('\n'));
    assert.equal(report.unexpected, 0, report.details.join('\n'));
    assert.equal(report.unsignedRounds, 0);
    assert.equal(report.signatures, rounds * 2, 'each node answers each round with the one signature (its own or the other node\'s)');
  } finally {
    await cluster.dispose();
  }
});

test('failover: the primary is killed under signing load, the synchronous standby promoted; the node fails closed meanwhile, finds the new primary by itself, and every acknowledged signature is in the audit log', { timeout: 120_000 }, async (t) => {
  if (!requirePostgres(t)) return;
  const primary = await startPostgres();
  let standby: Awaited<ReturnType<typeof startPostgres>> | undefined;
  const { dir, cleanup } = tempDir();
  let node: Awaited<ReturnType<typeof serve>> | undefined;
  try {
    await primary.createDatabase('vault');
    standby = await startPostgres({ standbyOf: primary });
    const admin = new pg.Client({ connectionString: primary.url });
    await admin.connect();
    for (let i = 0; i < 100 && (await admin.query("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'")).rowCount === 0; i++) await new Promise((r) => setTimeout(r, 100));
    // Synchronous: a commit is acknowledged once the standby has it on disk too.
    await admin.query("ALTER SYSTEM SET synchronous_standby_names = '*'");
    await admin.query('SELECT pg_reload_conf()');
    await admin.end();
    const url = `postgresql://custos@127.0.0.1:${primary.port},127.0.0.1:${standby.port}/vault?target_session_attrs=read-write&connect_timeout=2`;
    const tokenFile = join(dir, 'admin.token');
    const dataDir = join(dir, 'node');
    assert.equal(custos(['init', '--data-dir', dataDir, '--store-url', url, '--scrypt-log-n', '10', '--admin-token-file', tokenFile], PASSENV).status, 0);
    const token = readFileSync(tokenFile, 'utf8').trim();
    node = await serve(['--data-dir', dataDir], PASSENV);
    assert.equal((await call(node.url, token, 'POST', '/v1/keys', { label: 'k', algorithm: 'ed25519' })).status, 201);

    const acknowledged: string[] = [];
    let refusedWhileDown = 0;
    let other = 0;
    let phase: 'before' | 'down' | 'after' = 'before';
    let stop = false;
    const load = (async () => {
      while (!stop) {
        const r = await call(node!.url, token, 'POST', '/v1/keys/k/sign', { message: 'eA==' }).catch(() => ({ status: 0, body: {} as Record<string, unknown> }));
        if (r.status === 200) acknowledged.push(r.body.request_id as string);
        else if (r.status === 503 && phase !== 'before') refusedWhileDown++;
        else other++;
        if (r.status !== 200) await new Promise((res) => setTimeout(res, 50));
      }
    })();
    while (acknowledged.length < 30) await new Promise((r) => setTimeout(r, 20));
    phase = 'down';
    await primary.stop('immediate');
    const beforeFailover = acknowledged.length;
    await new Promise((r) => setTimeout(r, 500));
    await standby.promote();
    phase = 'after';
    for (let i = 0; i < 200 && acknowledged.length < beforeFailover + 30; i++) await new Promise((r) => setTimeout(r, 50));
    stop = true;
    await load;
    assert.ok(acknowledged.length >= beforeFailover + 30, `signing resumed on the promoted standby (${acknowledged.length - beforeFailover} after)`);
    assert.ok(refusedWhileDown > 0, 'requests while no primary answered were refused (503)');
    assert.equal(other, 0, 'no answer other than a signature or a 503');
    const h = await fetch(`${node.url}/healthz`);
    assert.equal(h.status, 200);
    // Every acknowledged signature has its audit entry on the new primary.
    const c = new pg.Client({ connectionString: `postgresql://custos@127.0.0.1:${standby.port}/vault` });
    await c.connect();
    const found = new Set((await c.query<{ request_id: string }>("SELECT request_id FROM audit WHERE outcome = 'ok'")).rows.map((r) => r.request_id));
    await c.end();
    const lost = acknowledged.filter((id) => !found.has(id));
    t.diagnostic(`acknowledged ${acknowledged.length} (${beforeFailover} before the primary was killed), refused while down ${refusedWhileDown}, lost ${lost.length}`);
    assert.deepEqual(lost, [], 'no acknowledged signature lost');
    await node.stop();
    node = undefined;
    const v = custos(['audit', 'verify', '--data-dir', dataDir]);
    assert.equal(v.status, 0, v.stderr + v.stdout);
  } finally {
    await node?.stop();
    await standby?.dispose();
    await primary.dispose();
    cleanup();
  }
});
