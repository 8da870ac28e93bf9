/** The throwaway PostgreSQL helper itself: start, a second database, a crash and a restart, dispose. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import pg from 'pg';
import { requirePostgres, startPostgres } from './postgres.js';

async function query(url: string, sql: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

test('a throwaway PostgreSQL cluster starts, makes databases, survives a crash with its data and is removed', async (t) => {
  if (!requirePostgres(t)) return;
  const started = performance.now();
  const cluster = await startPostgres();
  t.after(() => cluster.dispose());
  t.diagnostic(`started in ${Math.round(performance.now() - started)} ms on port ${cluster.port}`);

  assert.equal(cluster.url, `postgresql://custos@127.0.0.1:${cluster.port}/custos`);
  assert.deepEqual(await query(cluster.url, 'SELECT 1 AS one'), [{ one: 1 }]);

  const second = await cluster.createDatabase();
  assert.match(second, new RegExp(`^postgresql://custos@127\\.0\\.0\\.1:${cluster.port}/custos_[0-9a-f]+$`));
  assert.deepEqual(await query(second, 'SELECT current_database() AS db'), [{ db: second.split('/').pop() }]);

  await query(second, 'CREATE TABLE t (k text PRIMARY KEY, v integer NOT NULL)');
  await query(second, "INSERT INTO t VALUES ('a', 1), ('b', 2)");

  // A client still connected when the server crashes is told so by an 'error' event.
  const connected = new pg.Client({ connectionString: second });
  await connected.connect();
  const lost = new Promise<Error>((resolve) => connected.on('error', resolve));

  await cluster.stop('immediate');
  assert.ok(await lost);
  await assert.rejects(query(second, 'SELECT 1'));
  await cluster.stop(); // Already stopped: nothing to do.

  const restarted = performance.now();
  await cluster.start();
  t.diagnostic(`restarted after the crash in ${Math.round(performance.now() - restarted)} ms`);
  assert.deepEqual(await query(second, 'SELECT k, v FROM t ORDER BY k'), [
    { k: 'a', v: 1 },
    { k: 'b', v: 2 },
  ]);

  await cluster.stop('fast');
  await cluster.start();
  assert.deepEqual(await query(cluster.url, 'SELECT 1 AS one'), [{ one: 1 }]);

  await cluster.dispose();
  assert.equal(existsSync(cluster.dir), false);
  await cluster.dispose(); // Twice is fine.
});
