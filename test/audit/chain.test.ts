import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { makeVault } from '../helpers/tmpvault.js';
import { DB_FILE } from '../../src/vault/open.js';
import { verifyAudit } from '../../src/vault/verify.js';

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

test('a log re-signed with a substituted audit key fails against the key init printed, and the vault refuses to open', async () => {
  const v = await vaultWithHistory();
  try {
    const { SqliteStore } = await import('../../src/store/sqlite.js');
    const { chainHash, AuditSigner } = await import('../../src/audit/chain.js');
    const db0 = SqliteStore.open(join(v.dataDir, DB_FILE), { readonly: true });
    const realKey = Buffer.from((await db0.getMeta('audit_public_key'))!, 'hex');
    const vaultId = (await db0.getMeta('vault_id'))!;
    const entries = (await db0.auditAfter(0, 1000)).filter((e) => e.operation !== 'sign');
    await db0.close();
    // The forger drops every sign entry, re-chains, and signs a checkpoint with a key of its own.
    const forger = new AuditSigner(new Uint8Array(32).fill(7), vaultId);
    const db = new Database(join(v.dataDir, DB_FILE));
    db.exec('DELETE FROM audit; DELETE FROM audit_checkpoints;');
    let prev: { seq: number; hash: Uint8Array } = { seq: 0, hash: new Uint8Array(32) };
    const ins = db.prepare('INSERT INTO audit (seq, ts, request_id, principal, operation, key_id, key_label, outcome, reason, details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)');
    for (const e of entries) {
      const seq = prev.seq + 1;
      const h = chainHash(prev, seq, e.ts, e);
      ins.run(seq, e.ts, e.requestId, e.principal, e.operation, e.keyId, e.keyLabel, e.outcome, e.reason, JSON.stringify(e.details), Buffer.from(prev.hash), Buffer.from(h));
      prev = { seq, hash: h };
    }
    const cp = forger.checkpoint(prev, new Date().toISOString());
    db.prepare('INSERT INTO audit_checkpoints (seq, hash, ts, signature) VALUES (?,?,?,?)').run(cp.seq, Buffer.from(cp.hash), cp.ts, Buffer.from(cp.signature));
    db.prepare("UPDATE meta SET value = ? WHERE name = 'audit_public_key'").run(Buffer.from(forger.publicKey).toString('hex'));
    db.close();
    // Even trusting the database's own copy of the key, the anchor beside the database was
    // signed by the real key and does not verify under the substituted one.
    const own = await verifyAudit(v.dataDir);
    assert.equal(own.ok, false);
    assert.match(own.firstBad!.problem, /anchor .* does not carry a valid signature/);
    const r = await verifyAudit(v.dataDir, { auditKey: new Uint8Array(realKey) });
    assert.equal(r.ok, false);
    assert.match(r.firstBad!.problem, /not the one you gave/);
    const { openVault } = await import('../../src/vault/open.js');
    const { PASS } = await import('../helpers/tmpvault.js');
    await assert.rejects(openVault({ dataDir: v.dataDir, passphrase: PASS }), (e: unknown) => (e as { code?: string }).code === 'database_corrupt');
  } finally {
    await v.dispose();
  }
});

test('the vault refuses to open when entries after the last checkpoint were altered', async () => {
  const v = await vaultWithHistory(1000);
  try {
    const { openVault } = await import('../../src/vault/open.js');
    const { PASS } = await import('../helpers/tmpvault.js');
    const db = new Database(join(v.dataDir, DB_FILE));
    const head = (db.prepare('SELECT max(seq) AS m FROM audit').get() as { m: number }).m;
    db.close();
    // The shutdown checkpoint covers everything; add an unsigned tail, then alter it.
    const o = await openVault({ dataDir: v.dataDir, passphrase: PASS });
    await o.vault.createKey({ principal: { id: 't', kind: 'admin' }, requestId: 'x' }, { label: 'later', algorithm: 'ed25519', exportable: false });
    await o.store.close(); // a crash: no shutdown checkpoint for the new entry
    tamper(v.dataDir, "UPDATE audit SET outcome = 'denied' WHERE seq = ?", head + 1);
    await assert.rejects(openVault({ dataDir: v.dataDir, passphrase: PASS }), (e: unknown) => (e as { code?: string }).code === 'database_corrupt' && /audit log is broken/.test((e as Error).message));
  } finally {
    await v.dispose();
  }
});

test('after a crash, opening the vault checkpoints the verified head, so later starts do not re-verify an ever longer tail', async () => {
  const { openVault } = await import('../../src/vault/open.js');
  const { PASS } = await import('../helpers/tmpvault.js');
  const { SqliteStore } = await import('../../src/store/sqlite.js');
  const v = await vaultWithHistory(1000);
  try {
    const o = await openVault({ dataDir: v.dataDir, passphrase: PASS });
    await o.vault.createKey({ principal: { id: 't', kind: 'admin' }, requestId: 'x' }, { label: 'after', algorithm: 'ed25519', exportable: false });
    await o.store.close(); // killed: no shutdown checkpoint
    const again = await openVault({ dataDir: v.dataDir, passphrase: PASS });
    await again.store.close();
    const s = SqliteStore.open(join(v.dataDir, DB_FILE), { readonly: true });
    const head = (await s.auditHead()).seq;
    const cps = await s.checkpoints();
    await s.close();
    assert.equal(cps[cps.length - 1]!.seq, head, 'the newest checkpoint vouches for the head found at open');
    assert.equal((await verifyAudit(v.dataDir)).ok, true);
  } finally {
    await v.dispose();
  }
});
