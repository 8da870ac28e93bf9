import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { makeVault } from '../helpers/tmpvault.js';
import { verifyAudit, DB_FILE } from '../../src/vault/open.js';

async function vaultWithHistory(checkpointEvery = 5) {
  const v = await makeVault({ checkpointEvery });
  await v.vault.createKey(v.ctx(), { label: 'a', algorithm: 'ed25519', exportable: false });
  for (let i = 0; i < 6; i++) {
    await v.vault.sign({ ...v.ctx(), key: 'a', payload: { kind: 'message', bytes: new Uint8Array([i]) }, options: {}, context: {} });
  }
  await v.vault.sign({ ...v.ctx(), key: 'missing', payload: { kind: 'message', bytes: new Uint8Array([1]) }, options: {}, context: {} }).catch(() => {});
  await v.close();
  return v;
}

function tamper(dataDir: string, sql: string, ...params: unknown[]) {
  const db = new Database(join(dataDir, DB_FILE));
  db.prepare(sql).run(...params);
  db.close();
}

test('a clean history verifies, with its signed checkpoints', async () => {
  const v = await vaultWithHistory();
  try {
    const r = await verifyAudit(v.dataDir);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.ok(r.entries >= 15);
    assert.ok(r.checkpoints >= 2);
  } finally {
    await v.dispose();
  }
});

test('denied attempts are in the log with their reason', async () => {
  const v = await vaultWithHistory();
  try {
    const { SqliteStore } = await import('../../src/store/sqlite.js');
    const s = SqliteStore.open(join(v.dataDir, DB_FILE), { readonly: true });
    const tail = await s.auditTail(1);
    await s.close();
    assert.equal(tail[0]!.outcome, 'denied');
    assert.equal(tail[0]!.reason, 'key_not_found');
    assert.ok(typeof tail[0]!.details.message_sha256 === 'string' || tail[0]!.details.message_sha256 === undefined);
  } finally {
    await v.dispose();
  }
});

test('an edited entry is named as the first bad entry', async () => {
  const v = await vaultWithHistory();
  try {
    tamper(v.dataDir, "UPDATE audit SET outcome = 'denied' WHERE seq = 4");
    const r = await verifyAudit(v.dataDir);
    assert.equal(r.ok, false);
    assert.equal(r.firstBad!.seq, 4);
    assert.match(r.firstBad!.problem, /altered/);
  } finally {
    await v.dispose();
  }
});

test('a removed entry in the middle is found', async () => {
  const v = await vaultWithHistory();
  try {
    tamper(v.dataDir, 'DELETE FROM audit WHERE seq = 6');
    const r = await verifyAudit(v.dataDir);
    assert.equal(r.ok, false);
    assert.equal(r.firstBad!.seq, 6);
    assert.match(r.firstBad!.problem, /missing/);
  } finally {
    await v.dispose();
  }
});

test('a rewritten chain (entry and every later hash recomputed) is caught by the signed checkpoint', async () => {
  const v = await vaultWithHistory();
  try {
    // Re-hash the whole chain after an edit, as an attacker without the root key could.
    const { chainHash } = await import('../../src/audit/chain.js');
    const { SqliteStore } = await import('../../src/store/sqlite.js');
    const s = SqliteStore.open(join(v.dataDir, DB_FILE), { readonly: true });
    const entries = await s.auditAfter(0, 1000);
    await s.close();
    entries[2]!.outcome = 'denied';
    const db = new Database(join(v.dataDir, DB_FILE));
    let prev: { seq: number; hash: Uint8Array } = { seq: 0, hash: new Uint8Array(32) };
    for (const e of entries) {
      const h = chainHash(prev, e.seq, e.ts, e);
      db.prepare('UPDATE audit SET outcome = ?, prev_hash = ?, hash = ? WHERE seq = ?').run(e.outcome, Buffer.from(prev.hash), Buffer.from(h), e.seq);
      prev = { seq: e.seq, hash: h };
    }
    db.close();
    const r = await verifyAudit(v.dataDir);
    assert.equal(r.ok, false);
    assert.match(r.firstBad!.problem, /checkpoint/);
  } finally {
    await v.dispose();
  }
});

test('entries cut from the end are caught when a checkpoint vouches for them', async () => {
  const v = await vaultWithHistory();
  try {
    const db = new Database(join(v.dataDir, DB_FILE));
    const maxCp = (db.prepare('SELECT max(seq) AS m FROM audit_checkpoints').get() as { m: number }).m;
    db.prepare('DELETE FROM audit WHERE seq >= ?').run(maxCp);
    db.close();
    const r = await verifyAudit(v.dataDir);
    assert.equal(r.ok, false);
    assert.match(r.firstBad!.problem, /removed from the end/);
  } finally {
    await v.dispose();
  }
});

test('a forged checkpoint signature is refused', async () => {
  const v = await vaultWithHistory();
  try {
    tamper(v.dataDir, 'UPDATE audit_checkpoints SET signature = zeroblob(64)');
    const r = await verifyAudit(v.dataDir);
    assert.equal(r.ok, false);
    assert.match(r.firstBad!.problem, /bad signature/);
  } finally {
    await v.dispose();
  }
});
