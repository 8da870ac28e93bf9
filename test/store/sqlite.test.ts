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
