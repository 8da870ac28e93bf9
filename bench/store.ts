/**
 * The store at scale, SQLite and PostgreSQL in the same run:
 *   - the floor: fsync of a 256-byte write (SQLite) and a PostgreSQL commit (BEGIN + UPSERT +
 *     COMMIT on the same server), p50/p99;
 *   - creation: `--keys` software Ed25519 keys made through the vault as `custos keys generate`
 *     makes them (`vault.createKeys`, units of 100 keys, 4 in flight), keys/s;
 *   - the database's size per key (the SQLite file with its WAL; `pg_database_size`);
 *   - signing (`vault.sign` of a random existing key, one at a time) p50/p99 once 1,000 keys
 *     exist and again at `--keys`, and their ratio (the aim: at most 1.2); with each of the
 *     1,000 keys signed once before any other use (every sign prepares its key, as random keys
 *     among millions mostly do: the backend keeps 10,000 prepared); and with the first 1,000
 *     keys only, among all of them (the store's share).
 * PostgreSQL is a throwaway cluster on 127.0.0.1 (test/helpers/postgres.ts; needs Debian
 * `postgresql`). The vault is real: sealed root, row MACs, audit chain, anchors.
 *
 *   node --import tsx bench/store.ts [--keys 100000] [--signs 2000] [--stores sqlite,postgres]
 *
 * One JSON document on stdout, progress on stderr. Never exits non-zero because of a timing.
 */
import { mkdtempSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { initVault, openVault, type OpenVault } from '../src/vault/open.js';
import { startPostgres, postgresBin, type PgCluster } from '../test/helpers/postgres.js';
import type { Principal } from '../src/core/types.js';
import { fsyncFloor, pct, round } from './lib/floors.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const KEYS = Number(arg('--keys', '100000'));
const SIGNS = Number(arg('--signs', '2000'));
const STORES = arg('--stores', 'sqlite,postgres').split(',');
const PASS = new TextEncoder().encode('bench store passphrase');
const ADMIN: Principal = { id: 'token:admin', kind: 'admin' };

const stats = (xs: number[]) => ({ p50_ms: round(pct(xs, 50)), p99_ms: round(pct(xs, 99)) });
const log = (s: string) => process.stderr.write(`[store] ${s}\n`);

async function pgCommitFloor(url: string, n: number): Promise<number[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const out: number[] = [];
  try {
    await c.query('CREATE TABLE floor (k int PRIMARY KEY, v int)');
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await c.query('BEGIN');
      await c.query('INSERT INTO floor VALUES (1, $1) ON CONFLICT (k) DO UPDATE SET v = excluded.v', [i]);
      await c.query('COMMIT');
      out.push(performance.now() - t);
    }
    await c.query('DROP TABLE floor');
  } finally {
    await c.end();
  }
  return out;
}

let seq = 0;
const ctx = () => ({ principal: ADMIN, requestId: `bench-${++seq}` });

/**
 * Signs with random keys among the first `existing` (each a lookup by label), or with each of
 * them once in a random order (`once`: every sign prepares its key, none was used before).
 */
async function signLatency(v: OpenVault, existing: number, n: number, once = false): Promise<number[]> {
  const out: number[] = [];
  const msg = new TextEncoder().encode('bench');
  const order = once ? shuffled(existing) : [];
  for (let i = 0; i < (once ? existing : n); i++) {
    const label = `k-${once ? order[i] : Math.floor(Math.random() * existing)}`;
    const t = performance.now();
    await v.vault.sign({ ...ctx(), key: label, payload: { kind: 'message', bytes: msg }, options: {}, context: { protocol: 'bench' } });
    out.push(performance.now() - t);
  }
  return out;
}

function shuffled(n: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Creates keys k-<from> … k-<to - 1> as `POST /v1/keys/batch` does (units of 100 keys, 4 in flight); returns keys/s. */
async function create(v: OpenVault, from: number, to: number, what: string): Promise<number> {
  let next = from;
  let done = 0;
  const started = performance.now();
  let shown = started;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < to) {
        const first = next;
        const n = Math.min(100, to - first);
        next += n;
        await v.vault.createKeys(ctx(), { labels: Array.from({ length: n }, (_, i) => `k-${first + i}`), algorithm: 'ed25519' });
        done += n;
        const now = performance.now();
        if (now - shown > 10_000) {
          shown = now;
          const rate = done / ((now - started) / 1000);
          log(`${what}: ${from + done}/${to} keys, ${rate.toFixed(0)} keys/s, eta ${Math.ceil((to - from - done) / rate)} s`);
        }
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}

async function runStore(kind: 'sqlite' | 'postgres', cluster: PgCluster | null): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), `custos-bench-store-${kind}-`));
  const dataDir = join(dir, 'vault');
  const storeUrl = kind === 'postgres' ? await cluster!.createDatabase() : undefined;
  let v: OpenVault | undefined;
  try {
    await initVault({ dataDir, passphrase: PASS, scrypt: { N: 2 ** 10, r: 8, p: 1 }, ...(storeUrl ? { storeUrl } : {}) });
    v = await openVault({ dataDir, passphrase: PASS, anchorIntervalMs: 1000 });
    const small = Math.min(1000, KEYS);
    const rateSmall = await create(v, 0, small, kind);
    // Each of the 1,000 keys once, before any was used: what an unprepared key costs at 1,000.
    const coldSmall = await signLatency(v, small, small, true);
    const atSmall = await signLatency(v, small, SIGNS);
    const rate = KEYS > small ? await create(v, small, KEYS, kind) : rateSmall;
    const atLarge = await signLatency(v, KEYS, SIGNS);
    // The same 1,000 keys as at the start, now among all of them: the store's share alone (the
    // backend keeps up to 10,000 prepared keys, so random keys among millions are mostly cold).
    const hotAtLarge = await signLatency(v, small, SIGNS);
    let bytes: number;
    if (kind === 'sqlite') {
      const db = join(dataDir, 'custos.db');
      bytes = statSync(db).size + (existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0);
    } else {
      const c = new pg.Client({ connectionString: storeUrl });
      await c.connect();
      bytes = Number((await c.query<{ n: string }>('SELECT pg_database_size(current_database()) AS n')).rows[0]!.n);
      await c.end();
    }
    const s = stats(atSmall);
    const l = stats(atLarge);
    const c = stats(coldSmall);
    return {
      keys: KEYS,
      create_keys_per_s: Math.round(KEYS > small ? rate : rateSmall),
      bytes_per_key: Math.round(bytes / KEYS),
      sign_at_1000: s,
      [`sign_at_${KEYS}`]: l,
      ratio_p50_large_to_1000: round(l.p50_ms / s.p50_ms),
      ratio_p99_large_to_1000: round(l.p99_ms / s.p99_ms),
      // The backend keeps 10,000 keys prepared: at 1,000 every key is prepared after its first
      // use, while random keys among millions are mostly not. Against keys never used at 1,000:
      sign_unprepared_at_1000: c,
      ratio_p50_large_to_unprepared_1000: round(l.p50_ms / c.p50_ms),
      ratio_p99_large_to_unprepared_1000: round(l.p99_ms / c.p99_ms),
      [`sign_same_1000_keys_at_${KEYS}`]: stats(hotAtLarge),
      ratio_p50_same_keys_large_to_1000: round(stats(hotAtLarge).p50_ms / s.p50_ms),
    };
  } finally {
    await v?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const out: Record<string, unknown> = { keys: KEYS, signs: SIGNS, aim: 'sign p50 at the full count within 1.2x of the p50 at 1,000 keys' };
const fs = fsyncFloor(500);
out.floor_fsync = stats(fs);
let cluster: PgCluster | null = null;
try {
  if (STORES.includes('postgres')) {
    if (!postgresBin()) out.postgres = { skipped: 'PostgreSQL is not installed: apt-get install -y postgresql' };
    else {
      cluster = await startPostgres();
      out.floor_postgres_commit = stats(await pgCommitFloor(cluster.url, 500));
    }
  }
  for (const kind of ['sqlite', 'postgres'] as const) {
    if (!STORES.includes(kind) || (kind === 'postgres' && !cluster)) continue;
    log(`${kind}: creating ${KEYS} keys`);
    const r = await runStore(kind, cluster);
    const floor = (kind === 'sqlite' ? out.floor_fsync : out.floor_postgres_commit) as { p50_ms: number };
    r.sign_at_1000_p50_to_floor = round((r.sign_at_1000 as { p50_ms: number }).p50_ms / floor.p50_ms);
    out[kind] = r;
  }
} finally {
  await cluster?.dispose();
}
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
