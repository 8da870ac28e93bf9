import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SqliteStore } from '../../src/store/sqlite.js';
import { CustosError } from '../../src/core/errors.js';
import { tempDir } from '../helpers/tmpvault.js';
import { storeConformance } from './conformance.js';
import Database from 'better-sqlite3';
import { RowMac } from '../../src/keystore/row-mac.js';
import { chainHash } from '../../src/audit/chain.js';
import type { Watermark } from '../../src/store/store.js';

storeConformance('sqlite', async () => {
  const { dir, cleanup } = tempDir();
  const path = join(dir, 'custos.db');
  let store = SqliteStore.open(path);
  return {
    store,
    reopen: async () => (store = SqliteStore.open(path)),
    dispose: async () => {
      await store.close();
      cleanup();
    },
  };
});

// The same suite with row MACs on, as every unsealed vault runs its store.
storeConformance('sqlite with row MACs', async () => {
  const { dir, cleanup } = tempDir();
  const path = join(dir, 'custos.db');
  const mac = new RowMac(new Uint8Array(32).fill(5), 'conformance');
  const open = async () => {
    const s = SqliteStore.open(path);
    s.setRowAuthenticator(mac);
    return s;
  };
  let store = await open();
  await store.migrate();
  await store.sealRows();
  return {
    store,
    reopen: async () => (store = await open()),
    dispose: async () => {
      await store.close();
      cleanup();
    },
  };
});

const wm = (height: bigint): Watermark => ({ height, round: 0, step: 2, signBytes: new Uint8Array([1]), signature: new Uint8Array([2]) });

test('sqlite with row MACs: first rows of several units in one batch keep the counts true; a deleted row is caught when it is missed', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const s = SqliteStore.open(join(dir, 'custos.db'));
    s.setRowAuthenticator(new RowMac(new Uint8Array(32).fill(6), 'v'));
    await s.migrate();
    await s.sealRows();
    // Two validators' first votes, and a first budget, in one durable transaction.
    const results = await s.commit(
      [
        { mutations: [{ kind: 'advanceWatermark', keyId: 'k1', chainId: 'c', expected: null, next: wm(1n) }], audit: [] },
        { mutations: [{ kind: 'advanceWatermark', keyId: 'k2', chainId: 'c', expected: null, next: wm(1n) }], audit: [] },
        { mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.p/r/key=k1', expected: null, value: '{}' }], audit: [] },
        { mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.p/r/key=k2', expected: null, value: '{}' }], audit: [] },
      ],
      chainHash,
      new Date().toISOString(),
    );
    assert.deepEqual(results, [null, null, null, null]);
    assert.deepEqual(await s.checkRows(), []);
    // A unit that fails rolls its count back with it.
    const [taken] = await s.commit([{ mutations: [{ kind: 'advanceWatermark', keyId: 'k3', chainId: 'c', expected: null, next: wm(1n) }, { kind: 'assertKeyActive', id: 'nope' }], audit: [] }], chainHash, new Date().toISOString());
    assert.ok(taken instanceof CustosError);
    assert.deepEqual(await s.checkRows(), []);
    // A watermark deleted behind the store: the next vote that misses it is refused.
    const db = new Database(join(dir, 'custos.db'));
    db.prepare("DELETE FROM watermarks WHERE key_id = 'k1'").run();
    db.close();
    await assert.rejects(s.getWatermark('k1', 'c'), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_count');
    assert.match((await s.checkRows()).join('\n'), /watermarks table holds 1 protected rows where Custos wrote 2/);
    await s.close();
  } finally {
    cleanup();
  }
});

test('sqlite: the database file is created 0600 in WAL mode', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const s = SqliteStore.open(join(dir, 'x.db'));
    await s.migrate();
    assert.equal(statSync(join(dir, 'x.db')).mode & 0o777, 0o600);
    await s.close();
  } finally {
    cleanup();
  }
});

test('sqlite: a file that is not a database gives database_corrupt with a sentence, and is left untouched', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'bad.db');
    writeFileSync(path, Buffer.alloc(8192, 0x41));
    assert.throws(
      () => SqliteStore.open(path),
      (e: unknown) => e instanceof CustosError && e.code === 'database_corrupt' && /restore it from a backup/.test(e.message),
    );
    assert.equal(statSync(path).size, 8192);
  } finally {
    cleanup();
  }
});

test('sqlite: two connections (two processes) advancing one watermark from the same read — only one wins', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'race.db');
    const a = SqliteStore.open(path);
    await a.migrate();
    const b = SqliteStore.open(path);
    const { chainHash } = await import('../../src/audit/chain.js');
    const unit = (sig: number) => ({
      mutations: [{ kind: 'advanceWatermark' as const, keyId: 'k', chainId: 'c', expected: null, next: { height: 5n, round: 0, step: 2, signBytes: new Uint8Array([sig]), signature: null } }],
      audit: [{ requestId: `r${sig}`, principal: 'p', operation: 'sign', keyId: 'k', keyLabel: null, outcome: 'decided' as const, reason: null, details: {} }],
    });
    const ra = await a.commit([unit(1)], chainHash, new Date().toISOString());
    const rb = await b.commit([unit(2)], chainHash, new Date().toISOString());
    assert.deepEqual(ra, [null]);
    assert.ok(rb[0] instanceof CustosError && rb[0].fullCode === 'storage_unavailable:watermark_moved');
    assert.deepEqual((await b.getWatermark('k', 'c'))!.signBytes, new Uint8Array([1]));
    await a.close();
    await b.close();
  } finally {
    cleanup();
  }
});
