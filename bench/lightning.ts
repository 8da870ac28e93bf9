/**
 * Lightning state updates (vault/lightning.ts) as the number of channels grows, in one run:
 *   - the floors: fsync of a 256-byte write, and the store's own durable commit of one object
 *     row (store.commit of a putObject unit, no crypto), p50/p99;
 *   - one update (`lightning.put`: ECIES-encrypt a 2 KiB state, sign the record, commit the
 *     row and its audit entry) of a random existing channel, one at a time, once 100 channels
 *     exist and again at `--objects` (the aim: within 1.2×), without a backup target and with
 *     a directory target (one more file, fsynced, per update); every existing channel has a
 *     folder in the backup, as it would.
 * The vault is real: SQLite on disk, sealed root, row MACs, audit chain, anchors.
 *
 *   node --import tsx bench/lightning.ts [--objects 100000] [--updates 1000]
 *
 * One JSON document on stdout, progress on stderr. Never exits non-zero because of a timing.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { initVault, openVault, type OpenVault } from '../src/vault/open.js';
import type { Principal } from '../src/core/types.js';
import { DirectoryTarget } from '../src/lightning/backup.js';
import { generateMnemonic } from '../src/wallet/hd.js';
import { fsyncFloor, pct, round } from './lib/floors.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const OBJECTS = Number(arg('--objects', '100000'));
const UPDATES = Number(arg('--updates', '1000'));
const SMALL = 100;
const PASS = new TextEncoder().encode('bench lightning passphrase');
const ADMIN: Principal = { id: 'token:admin', kind: 'admin' };
const STATE = 2048;

const stats = (xs: number[]) => ({ p50_ms: round(pct(xs, 50)), p99_ms: round(pct(xs, 99)) });
const log = (s: string) => process.stderr.write(`[lightning] ${s}\n`);
let seq = 0;
const ctx = () => ({ principal: ADMIN, requestId: `bench-${++seq}` });

const root = mkdtempSync(join(tmpdir(), 'custos-bench-ln-'));
const versions = new Map<string, bigint>();

async function open(dataDir: string, backup: string | null): Promise<OpenVault> {
  return openVault({ dataDir, passphrase: PASS, anchorIntervalMs: 1000, lightning: { backup: backup ? new DirectoryTarget(backup) : null } });
}

/** Updates random channels among the first `among`, one at a time. */
async function updates(v: OpenVault, among: number, n: number): Promise<number[]> {
  const out: number[] = [];
  const state = randomBytes(STATE);
  for (let i = 0; i < n; i++) {
    const id = `chan-${Math.floor(Math.random() * among)}`;
    const next = (versions.get(id) ?? 0n) + 1n;
    const t = performance.now();
    await v.vault.lightning.put(ctx(), 'ln', id, next, state);
    out.push(performance.now() - t);
    versions.set(id, next);
  }
  return out;
}

/** Creates channels [from, to) through the vault, `inFlight` at a time (group commit shares the fsyncs). */
async function seed(v: OpenVault, from: number, to: number, inFlight = 32): Promise<void> {
  const state = randomBytes(STATE);
  let next = from;
  let done = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (let i = next++; i < to; i = next++) {
        await v.vault.lightning.put(ctx(), 'ln', `chan-${i}`, 1n, state);
        versions.set(`chan-${i}`, 1n);
        if (++done % 10_000 === 0) log(`${from + done} channels (${Math.round(done / ((Date.now() - started) / 1000))}/s)`);
      }
    }),
  );
}

/** The store's own commit of one object row: the floor an update cannot go below. */
async function storeFloor(v: OpenVault, n: number): Promise<number[]> {
  const keyId = (await v.vault.getKey('ln')).id;
  const record = randomBytes(STATE + 200);
  const out: number[] = [];
  let cur: bigint | null = (await v.store.getObject(keyId, 'floor'))?.version ?? null;
  for (let i = 0; i < n; i++) {
    const version = (cur ?? 0n) + 1n;
    const t = performance.now();
    const [err] = await v.store.commit([{ mutations: [{ kind: 'putObject', keyId, objectId: 'floor', expectedVersion: cur, version, record }], audit: [] }], () => new Uint8Array(32), new Date().toISOString());
    out.push(performance.now() - t);
    if (err) throw err;
    cur = version;
  }
  return out;
}

const dataDir = join(root, 'vault');
const backup = join(root, 'backup');
try {
  await initVault({ dataDir, passphrase: PASS, scrypt: { N: 2 ** 10, r: 8, p: 1 } });
  let v = await open(dataDir, null);
  await v.vault.createHdKey(ctx(), { label: 'ln', curve: 'secp256k1', mnemonic: generateMnemonic(), purpose: 'lightning' });
  const node = (await v.vault.lightning.describe(ctx(), 'ln')).keys.node;
  const fsync = stats(fsyncFloor(500));
  await seed(v, 0, SMALL);
  await v.close();
  v = await open(dataDir, null);
  log(`${SMALL} channels: measuring`);
  const small = stats(await updates(v, SMALL, UPDATES));
  await v.close();
  // The same at 100 channels with a directory backup target (a folder per channel, as it would be).
  for (let i = 0; i < SMALL; i++) mkdirSync(join(backup, node, `chan-${i}`), { recursive: true });
  v = await open(dataDir, backup);
  const smallBackup = stats(await updates(v, SMALL, UPDATES));
  await v.close();
  v = await open(dataDir, null);
  const seedStarted = Date.now();
  await seed(v, SMALL, OBJECTS);
  const seedSeconds = (Date.now() - seedStarted) / 1000;
  log(`${OBJECTS} channels in ${seedSeconds.toFixed(1)} s: measuring`);
  // Reopened, as at 100: the seeding's write-ahead log is checkpointed at close, not during the measurement.
  await v.close();
  v = await open(dataDir, null);
  const large = stats(await updates(v, OBJECTS, UPDATES));
  const floor = stats(await storeFloor(v, UPDATES));
  await v.close();
  for (let i = SMALL; i < OBJECTS; i++) mkdirSync(join(backup, node, `chan-${i}`), { recursive: true });
  v = await open(dataDir, backup);
  const largeBackup = stats(await updates(v, OBJECTS, UPDATES));
  await v.close();
  const out = {
    benchmark: 'lightning',
    objects: OBJECTS,
    updates_per_measure: UPDATES,
    state_bytes: STATE,
    seed_updates_per_second: Math.round((OBJECTS - SMALL) / seedSeconds),
    floors: { fsync_256b: fsync, store_commit_one_object: floor },
    update_at_100: small,
    update_at_large: large,
    update_at_100_with_directory_backup: smallBackup,
    update_at_large_with_directory_backup: largeBackup,
    ratios: {
      p50_large_to_100: round(large.p50_ms / small.p50_ms),
      p99_large_to_100: round(large.p99_ms / small.p99_ms),
      p50_large_to_100_with_backup: round(largeBackup.p50_ms / smallBackup.p50_ms),
      update_p50_to_store_commit_p50: round(large.p50_ms / floor.p50_ms),
      update_p50_to_fsync_p50: round(large.p50_ms / fsync.p50_ms),
    },
    aim: 'update cost at --objects within 1.2x of at 100 (p50)',
  };
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
} finally {
  rmSync(root, { recursive: true, force: true });
}
