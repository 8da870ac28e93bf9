/**
 * The store conformance suite against a real PostgreSQL 15 cluster on 127.0.0.1 (started here,
 * one database per test), with and without row MACs, and what is PostgreSQL's own: URLs with
 * several hosts, the sentence when no primary answers, two stores (two nodes) racing on one
 * database.
 */
import { after, test } from 'node:test';
import pg from 'pg';
import assert from 'node:assert/strict';
import { PostgresStore, parsePostgresUrl } from '../../src/store/postgres.js';
import { CustosError } from '../../src/core/errors.js';
import { RowMac } from '../../src/keystore/row-mac.js';
import { chainHash } from '../../src/audit/chain.js';
import { processesConformance, storeConformance } from './conformance.js';
import { postgresBin, startPostgres, type PgCluster } from '../helpers/postgres.js';
import type { Watermark } from '../../src/store/store.js';

const available = postgresBin() !== null;
if (!available && process.env.CI) throw new Error('PostgreSQL is not installed: apt-get install -y postgresql (required in CI)');

let cluster: Promise<PgCluster> | null = null;
const pgCluster = () => (cluster ??= startPostgres());
after(async () => {
  if (cluster) await (await cluster).dispose();
});

if (!available) {
  test('postgres store', (t) => t.skip('PostgreSQL is not installed: apt-get install -y postgresql'));
} else {
  storeConformance('postgres', async () => {
    const url = await (await pgCluster()).createDatabase();
    let store = await PostgresStore.open(url);
    return {
      store,
      reopen: async () => (store = await PostgresStore.open(url)),
      dispose: () => store.close(),
    };
  });

  storeConformance('postgres with row MACs', async () => {
    const url = await (await pgCluster()).createDatabase();
    const mac = new RowMac(new Uint8Array(32).fill(5), 'conformance');
    const open = async () => {
      const s = await PostgresStore.open(url);
      s.setRowAuthenticator(mac);
      return s;
    };
    let store = await open();
    await store.migrate();
    await store.sealRows();
    return {
      store,
      reopen: async () => (store = await open()),
      dispose: () => store.close(),
    };
  });

  const wm = (height: bigint): Watermark => ({ height, round: 0, step: 2, signBytes: new Uint8Array([Number(height % 250n)]), signature: null });

  test('postgres: two stores on one database (two nodes) racing for one watermark: exactly one wins each height, the chain stays one', async () => {
    const url = await (await pgCluster()).createDatabase();
    const mac = new RowMac(new Uint8Array(32).fill(9), 'race');
    const nodes = await Promise.all([PostgresStore.open(url), PostgresStore.open(url)]);
    for (const s of nodes) s.setRowAuthenticator(mac, chainHash);
    try {
      await nodes[0]!.migrate();
      await nodes[1]!.migrate();
      await nodes[0]!.sealRows();
      let wins = 0;
      for (let h = 1n; h <= 40n; h++) {
        // Each node read the watermark at h-1 and decides on it: only one compare-and-set holds.
        const expected = h === 1n ? null : { height: h - 1n, round: 0, step: 2 };
        const results = await Promise.all(
          nodes.map((s, i) => s.commit([{ mutations: [{ kind: 'advanceWatermark', keyId: 'k', chainId: 'c', expected, next: wm(h) }], audit: [{ requestId: `r${h}-${i}`, principal: `node${i}`, operation: 'sign_vote', keyId: 'k', keyLabel: null, outcome: 'ok', reason: null, details: {} }] }], chainHash, new Date().toISOString())),
        );
        const ok = results.filter((r) => r[0] === null).length;
        assert.equal(ok, 1, `height ${h}: ${ok} winners`);
        for (const r of results) if (r[0] !== null) assert.equal((r[0] as CustosError).fullCode, 'storage_unavailable:watermark_moved');
        wins += ok;
      }
      assert.equal(wins, 40);
      assert.equal((await nodes[1]!.auditHead()).seq, 40, 'one entry per win, one chain');
      assert.deepEqual(await nodes[1]!.checkRows(), []);
      assert.deepEqual(await nodes[0]!.checkRows(), []);
    } finally {
      await Promise.all(nodes.map((s) => s.close()));
    }
  });

  test('postgres: several hosts in the URL; the first that answers and accepts writes is used', async () => {
    const c = await pgCluster();
    const url = await c.createDatabase();
    const multi = url.replace(`127.0.0.1:${c.port}`, `127.0.0.1:1,127.0.0.1:${c.port}`) + '?target_session_attrs=read-write&connect_timeout=2';
    const s = await PostgresStore.open(multi);
    try {
      await s.migrate();
      assert.equal(await s.getMeta('schema_version'), '5');
    } finally {
      await s.close();
    }
    const loc = parsePostgresUrl('postgresql://u:p%40ss@[::1]:6000,db2/custos?sslmode=require');
    assert.deepEqual(loc.targets, [{ host: '::1', port: 6000 }, { host: 'db2', port: 5432 }]);
    assert.equal(loc.password, 'p@ss');
    assert.equal(loc.params.sslmode, 'require');
    assert.throws(() => parsePostgresUrl('mysql://x/y'), (e: unknown) => e instanceof CustosError && e.code === 'bad_request');
    assert.throws(() => parsePostgresUrl('postgresql://h:99999/d'), (e: unknown) => e instanceof CustosError && /port/.test(e.message));
  });

  test('postgres: no server answering is a sentence naming every host, and the password is never in it', async () => {
    await assert.rejects(PostgresStore.open('postgresql://custos:s3cret@127.0.0.1:1,127.0.0.1:2/custos?connect_timeout=2'), (e: unknown) => {
      assert.ok(e instanceof CustosError && e.fullCode === 'storage_unavailable:database_unreachable', String(e));
      assert.match(e.message, /127\.0\.0\.1:1.*127\.0\.0\.1:2/);
      assert.doesNotMatch(e.message, /s3cret/);
      return true;
    });
  });
}

if (available) {
  test('postgres: a trigger on a Custos table (what would get its own values MACed) stops every write; a NUL character is the request\'s own failure', async () => {
    const url = await (await pgCluster()).createDatabase();
    const s = await PostgresStore.open(url);
    s.setRowAuthenticator(new RowMac(new Uint8Array(32).fill(3), 'trig'), chainHash);
    try {
      await s.migrate();
      await s.sealRows();
      // A value PostgreSQL cannot hold fails its unit alone, with a sentence; the batch commits.
      const [nul, ok] = await s.commit(
        [
          { mutations: [], audit: [{ requestId: 'r1', principal: 'p', operation: 'op', keyId: null, keyLabel: null, outcome: 'ok', reason: 'a\u0000b', details: {} }] },
          { mutations: [], audit: [{ requestId: 'r2', principal: 'p', operation: 'op', keyId: null, keyLabel: null, outcome: 'ok', reason: null, details: {} }] },
        ],
        chainHash,
        new Date().toISOString(),
      );
      assert.ok(nul instanceof CustosError && nul.code === 'bad_request' && /NUL/.test(nul.message), String(nul));
      assert.equal(ok, null);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query("CREATE FUNCTION keep_old() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.height := OLD.height; RETURN NEW; END $$");
      await c.query('CREATE TRIGGER keep BEFORE UPDATE ON watermarks FOR EACH ROW EXECUTE FUNCTION keep_old()');
      await c.end();
      await assert.rejects(s.setMeta('policy.x', '1'), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:trigger' && /"keep"/.test(e.message));
      await assert.rejects(s.migrate(), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:trigger');
      // A password with an unencoded @ or / is never taken for a host, so never shown.
      await assert.rejects(PostgresStore.open('postgresql://custos:se@cr/et@127.0.0.1:1/custos?connect_timeout=1'), (e: unknown) => {
        assert.ok(e instanceof CustosError);
        assert.doesNotMatch(e.message, /se@cr|cr\/et|et@/);
        assert.match(e.message, /127\.0\.0\.1:1/);
        return true;
      });
    } finally {
      await s.close();
    }
  });
}

if (available) {
  test('postgres: a token, budget or key row edited with SQL is refused, and a deleted budget is caught by the count', async () => {
    const url = await (await pgCluster()).createDatabase();
    const s = await PostgresStore.open(url);
    s.setRowAuthenticator(new RowMac(new Uint8Array(32).fill(8), 'edit'), chainHash);
    try {
      await s.migrate();
      await s.sealRows();
      const hash = new Uint8Array(32).fill(1);
      const audit = (op: string) => [{ requestId: op, principal: 'p', operation: op, keyId: null, keyLabel: null, outcome: 'ok' as const, reason: null, details: {} }];
      const now = new Date().toISOString();
      assert.deepEqual(
        await s.commit(
          [
            { mutations: [{ kind: 'insertToken', token: { id: 'tok_1', name: 'wallet', hash, role: 'signer', createdAt: now, terms: { scope: { operations: ['sign'], keys: ['payments-*'], tags: [] } } } }], audit: audit('t') },
            { mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.daily/budget/key=k', expected: null, value: '{"spent":"90000"}' }], audit: audit('b') },
          ],
          chainHash,
          now,
        ),
        [null, null],
      );
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await c.query("UPDATE api_tokens SET role = 'admin', terms = '{}' WHERE id = 'tok_1'");
        await assert.rejects(s.findToken(hash), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_mac');
        await c.query("UPDATE meta SET value = '{\"spent\":\"0\"}' WHERE name = 'policy_state.daily/budget/key=k'");
        await assert.rejects(s.getMeta('policy_state.daily/budget/key=k'), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_mac');
        await c.query("DELETE FROM meta WHERE name = 'policy_state.daily/budget/key=k'");
        await assert.rejects(s.getMeta('policy_state.daily/budget/key=k'), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_count');
        assert.ok((await s.checkRows()).length > 0);
      } finally {
        await c.end();
      }
    } finally {
      await s.close();
    }
  });
}

if (available) {
  processesConformance('postgres', async () => {
    const url = await (await pgCluster()).createDatabase();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    return { open: () => PostgresStore.open(url), sql: async (q, params = []) => (await c.query(q, params)).rows, dispose: () => c.end() };
  });
}
