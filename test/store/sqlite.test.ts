import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SqliteStore } from '../../src/store/sqlite.js';
import { CustosError } from '../../src/core/errors.js';
import { tempDir } from '../helpers/tmpvault.js';
import { storeConformance } from './conformance.js';

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
