import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SqliteStore } from '../../src/store/sqlite.js';
import { CustosError } from '../../src/core/errors.js';
import { tempDir } from '../helpers/tmpvault.js';
import { processesConformance, storeConformance } from './conformance.js';
import Database from 'better-sqlite3';
import { RowMac } from '../../src/keystore/row-mac.js';
import { chainHash } from '../../src/audit/chain.js';
import type { Watermark } from '../../src/store/store.js';
import type { AuditDraft } from '../../src/core/types.js';

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

/** A store with row MACs on, on a fresh file; `file` is its path for SQL behind its back. */
async function macStore(dir: string): Promise<{ s: SqliteStore; file: string; mac: RowMac }> {
  const file = join(dir, 'custos.db');
  const mac = new RowMac(new Uint8Array(32).fill(8), 'v');
  const s = SqliteStore.open(file);
  s.setRowAuthenticator(mac);
  await s.migrate();
  await s.sealRows();
  return { s, file, mac };
}

const entry = (op: string): AuditDraft => ({ requestId: op, principal: 'token:admin', operation: op, keyId: null, keyLabel: null, outcome: 'ok', reason: null, details: {} });
const now = () => new Date().toISOString();

test('sqlite with row MACs: a refused request after an entry written while sealed does not brick the store', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { s, file, mac } = await macStore(dir);
    assert.deepEqual(await s.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.x', expected: null, value: '1' }], audit: [entry('a')] }], chainHash, now()), [null]);
    // A sealed daemon on the same file appends an unseal entry (no key, so no MAC)...
    const sealed = SqliteStore.open(file);
    await sealed.commit([{ mutations: [], audit: [{ requestId: 'u', principal: 'unauthenticated', operation: 'unseal', keyId: null, keyLabel: null, outcome: 'ok', reason: null, details: { progress: 1 } }] }], chainHash, now());
    await sealed.close();
    // ...then the first request is refused (its unit rolls back) and the next ones work.
    const [refused] = await s.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.x', expected: 'wrong', value: '2' }], audit: [entry('b')] }], chainHash, now());
    assert.ok(refused instanceof CustosError);
    assert.deepEqual(await s.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.x', expected: '1', value: '2' }], audit: [entry('c')] }], chainHash, now()), [null]);
    await s.close();
    const again = SqliteStore.open(file);
    again.setRowAuthenticator(mac);
    assert.deepEqual(await again.checkRows(), []);
    await again.close();
  } finally {
    cleanup();
  }
});

test('sqlite with row MACs: a write rolled back is not remembered, so the row it never changed is not called older', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { s } = await macStore(dir);
    assert.deepEqual(await s.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.y', expected: null, value: '1' }], audit: [entry('a')] }], chainHash, now()), [null]);
    // The unit updates the row (and the count of another), then fails: all rolled back.
    const [failed] = await s.commit(
      [{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.y', expected: '1', value: '2' }, { kind: 'compareAndSetMeta', name: 'policy_state.z', expected: null, value: '1' }, { kind: 'assertKeyActive', id: 'none' }], audit: [entry('b')] }],
      chainHash,
      now(),
    );
    assert.ok(failed instanceof CustosError && failed.code === 'key_destroyed');
    assert.equal(await s.getMeta('policy_state.y'), '1');
    assert.equal(await s.getMeta('policy_state.z'), null);
    assert.deepEqual(await s.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.y', expected: '1', value: '3' }], audit: [entry('c')] }], chainHash, now()), [null]);
    await s.close();
  } finally {
    cleanup();
  }
});

test('sqlite with row MACs: the log cut and an older state row put back under a running store are refused', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { s, file } = await macStore(dir);
    await s.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.w', expected: null, value: '1' }], audit: [entry('a')] }], chainHash, now());
    const db = new Database(file);
    const oldState = db.prepare("SELECT * FROM meta WHERE name = 'integrity.state'").get() as Record<string, unknown>;
    const oldRow = db.prepare("SELECT * FROM meta WHERE name = 'policy_state.w'").get() as Record<string, unknown>;
    const oldCount = db.prepare("SELECT * FROM meta WHERE name = 'integrity.count.meta'").get() as Record<string, unknown>;
    const head = (db.prepare('SELECT max(seq) AS n FROM audit').get() as { n: number }).n;
    db.close();
    await s.commit([{ mutations: [{ kind: 'compareAndSetMeta', name: 'policy_state.w', expected: '1', value: '2' }], audit: [entry('b'), entry('c')] }], chainHash, now());
    // Put the whole older snapshot back: state row, row, count, and the log cut to match.
    const db2 = new Database(file);
    for (const r of [oldState, oldRow, oldCount]) db2.prepare('UPDATE meta SET value = ?, mac = ?, wseq = ? WHERE name = ?').run(r.value, r.mac, r.wseq, r.name);
    db2.prepare('DELETE FROM audit WHERE seq > ?').run(head);
    db2.close();
    await assert.rejects(s.commit([{ mutations: [], audit: [entry('d')] }], chainHash, now()), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_replayed');
    await assert.rejects(s.verifiedHead(), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_replayed');
    await s.close();
  } finally {
    cleanup();
  }
});

test('sqlite with row MACs: an entry shaped like a sealed daemon\'s but not linked into the chain is never chained onto', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'custos.db');
    const mac = new RowMac(new Uint8Array(32).fill(9), 'v');
    const s = SqliteStore.open(file);
    s.setRowAuthenticator(mac, chainHash);
    await s.migrate();
    await s.sealRows();
    await s.commit([{ mutations: [], audit: [entry('a')] }], chainHash, now());
    const db = new Database(file);
    const head = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: Buffer };
    // The right shape, the JSON text null for details, and a hash that is not its own.
    db.prepare("INSERT INTO audit (seq, ts, request_id, principal, operation, key_id, key_label, outcome, reason, details, prev_hash, hash, mac) VALUES (?,?,'x','unauthenticated','unseal',NULL,NULL,'ok',NULL,'null',?,?,NULL)").run(head.seq + 1, now(), head.hash, Buffer.alloc(32, 1));
    db.close();
    await assert.rejects(s.commit([{ mutations: [], audit: [entry('b')] }], chainHash, now()), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:audit_log');
    await assert.rejects(s.verifiedHead(), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:audit_log');
    await s.close();
  } finally {
    cleanup();
  }
});

test('sqlite with row MACs: token rows written after a write sequence are read by the wseq index; a forged one is left out', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { s, file } = await macStore(dir);
    const tok = (id: string, fill: number) => ({ kind: 'insertToken' as const, token: { id, name: id, hash: new Uint8Array(32).fill(fill), role: 'signer' as const, createdAt: 'now', terms: {} } });
    await s.commit([{ mutations: [tok('t1', 1)], audit: [entry('a')] }], chainHash, now());
    await s.commit([{ mutations: [tok('t2', 2)], audit: [entry('b')] }], chainHash, now());
    const all = await s.tokensWrittenAfter(0);
    assert.deepEqual(all.map((r) => r.token.id), ['t1', 't2']);
    assert.ok(all[1]!.wseq > all[0]!.wseq);
    assert.deepEqual((await s.tokensWrittenAfter(all[0]!.wseq)).map((r) => r.token.id), ['t2']);
    const db = new Database(file);
    db.prepare("INSERT INTO api_tokens (id, name, hash, role, created_at, wseq) VALUES ('evil', 'evil', ?, 'admin', 'now', 999999)").run(Buffer.alloc(32, 9));
    db.close();
    assert.deepEqual((await s.tokensWrittenAfter(all[1]!.wseq)).map((r) => r.token.id), [], 'the forged row is not read as a token');
    await s.close();
  } finally {
    cleanup();
  }
});

test('sqlite: a trigger on a Custos table (what would get its own values MACed) stops every write and every open', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'custos.db');
    const s = SqliteStore.open(file);
    s.setRowAuthenticator(new RowMac(new Uint8Array(32).fill(4), 'trig'), chainHash);
    await s.migrate();
    await s.sealRows();
    const db = new Database(file);
    db.exec('CREATE TRIGGER keep AFTER UPDATE ON watermarks BEGIN UPDATE watermarks SET height = old.height WHERE key_id = new.key_id; END');
    db.close();
    await assert.rejects(s.setMeta('policy.x', '1'), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:trigger' && /"keep"/.test(e.message));
    await assert.rejects(s.migrate(), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:trigger');
    await s.close();
  } finally {
    cleanup();
  }
});

processesConformance('sqlite', async () => {
  const { dir, cleanup } = tempDir();
  const file = join(dir, 'custos.db');
  await SqliteStore.open(file).close(); // the file, made as a vault makes it
  const db = new Database(file);
  return {
    open: async () => SqliteStore.open(file),
    sql: async (q, params = []) => {
      const st = db.prepare(q.replace(/\$\d+/g, '?'));
      return st.reader ? (st.all(...(params as never[])) as Array<Record<string, unknown>>) : (st.run(...(params as never[])), []);
    },
    dispose: async () => {
      db.close();
      cleanup();
    },
  };
});

test('sqlite with row MACs: a row read again exactly as checked is not hashed again; any column changed is checked again, and an older copy is refused either way', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { s, file, mac } = await macStore(dir);
    const k = { id: 'key_memo000000000000000000', label: 'memo', algorithm: 'ed25519' as const, publicKey: new Uint8Array(32).fill(1), state: 'active' as const, exportable: false, origin: 'generated' as const, version: 1, createdAt: now(), updatedAt: now(), sealed: new Uint8Array(72).fill(7), attributes: {} };
    assert.deepEqual(await s.commit([{ mutations: [{ kind: 'insertKey', key: k }], audit: [entry('create')] }], chainHash, now()), [null]);
    let checks = 0;
    const check = mac.check.bind(mac);
    mac.check = (...a: Parameters<RowMac['check']>) => (a[0] === 'keys' && checks++, check(...a));
    const first = await s.findKey('memo');
    assert.equal(first?.id, k.id);
    const afterFirst = checks;
    // A caller wiping what it was given does not change what was remembered.
    first!.sealed!.fill(0);
    first!.publicKey.fill(0);
    for (let i = 0; i < 5; i++) assert.equal((await s.findKey('memo'))?.sealed?.[0], 7);
    assert.deepEqual(await s.commit([{ mutations: [{ kind: 'assertKeyActive', id: k.id }], audit: [entry('sign')] }], chainHash, now()), [null]);
    assert.equal(checks - afterFirst, 0, 'the key row was read again six times without a second MAC computation');

    const db = new Database(file);
    const [old] = db.prepare('SELECT * FROM keys WHERE id = ?').all(k.id) as Array<Record<string, unknown>>;
    // Any one column changed is checked, and refused: the label, the envelope, the attributes.
    for (const [col, value] of [['label', 'other'], ['sealed', Buffer.alloc(72, 8)], ['attributes', '{"tags":["x"]}'], ['version', 2]] as const) {
      db.prepare(`UPDATE keys SET ${col} = ? WHERE id = ?`).run(value, k.id);
      await assert.rejects(s.findKey(k.id), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_mac', col);
      db.prepare(`UPDATE keys SET ${col} = ? WHERE id = ?`).run(old![col] as never, k.id);
    }
    assert.equal((await s.findKey(k.id))?.state, 'active');
    // Disabled by Custos, then the older (genuine) copy put back: the very columns checked
    // before, and still refused as an older copy of itself.
    assert.deepEqual(await s.commit([{ mutations: [{ kind: 'setKeyState', id: k.id, state: 'disabled', updatedAt: now() }], audit: [entry('disable')] }], chainHash, now()), [null]);
    db.prepare('UPDATE keys SET state = ?, updated_at = ?, mac = ?, wseq = ? WHERE id = ?').run(old!.state as string, old!.updated_at as string, old!.mac as Buffer, old!.wseq as number, k.id);
    db.close();
    await assert.rejects(s.findKey('memo'), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_replayed');
    const [res] = await s.commit([{ mutations: [{ kind: 'assertKeyActive', id: k.id }], audit: [entry('sign')] }], chainHash, now()).catch((e: unknown) => [e]);
    assert.ok(res instanceof CustosError && res.fullCode === 'database_corrupt:row_replayed', String(res));
    await s.close();
  } finally {
    cleanup();
  }
});

test('sqlite with row MACs: a token and a watermark read again as checked are still refused when an older copy is put back, or one is copied under another key', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { s, file } = await macStore(dir);
    const hash = new Uint8Array(32).fill(4);
    assert.deepEqual(await s.commit([{ mutations: [{ kind: 'insertToken', token: { id: 'tok_memo', name: 'ops', hash, role: 'admin', createdAt: now(), terms: {} } }], audit: [entry('token')] }], chainHash, now()), [null]);
    for (const [keyId, h] of [['val-a', 5n], ['val-b', 9n]] as const) {
      assert.deepEqual(await s.commit([{ mutations: [{ kind: 'advanceWatermark', keyId, chainId: 'c', expected: null, next: wm(h) }], audit: [entry('vote')] }], chainHash, now()), [null]);
    }
    // Read twice each: the second read is the remembered one.
    for (let i = 0; i < 2; i++) {
      assert.equal((await s.findToken(hash))?.id, 'tok_memo');
      assert.equal((await s.getWatermark('val-a', 'c'))?.height, 5n);
    }
    const db = new Database(file);
    const tok = db.prepare("SELECT * FROM api_tokens WHERE id = 'tok_memo'").get() as Record<string, unknown>;
    const t = (await s.findToken(hash))!;
    assert.deepEqual(await s.commit([{ mutations: [{ kind: 'updateToken', expected: t, token: { ...t, terms: { revoked_at: now() } } }], audit: [entry('revoke')] }], chainHash, now()), [null]);
    // The unrevoked copy (the very columns remembered as checked) put back: refused, at a read and in a commit.
    db.prepare("UPDATE api_tokens SET terms = ?, mac = ?, wseq = ? WHERE id = 'tok_memo'").run(tok.terms as string, tok.mac as Buffer, tok.wseq as number);
    await assert.rejects(s.findToken(hash), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_replayed');
    const credential = `tok_memo/${Buffer.from(hash).toString('hex').slice(0, 16)}`;
    const [res] = await s.commit([{ mutations: [{ kind: 'assertCredential', credential, now: now() }], audit: [entry('sign')] }], chainHash, now()).catch((e: unknown) => [e]);
    assert.ok(res instanceof CustosError && res.fullCode === 'database_corrupt:row_replayed', String(res));
    // The higher watermark of val-b copied over val-a's (which was remembered as checked): its MAC binds it to val-b.
    const b = db.prepare("SELECT * FROM watermarks WHERE key_id = 'val-b'").get() as Record<string, unknown>;
    db.prepare("UPDATE watermarks SET height = ?, sign_bytes = ?, signature = ?, mac = ?, wseq = ? WHERE key_id = 'val-a'").run(b.height as string, b.sign_bytes as Buffer, b.signature as Buffer, b.mac as Buffer, b.wseq as number);
    db.close();
    await assert.rejects(s.getWatermark('val-a', 'c'), (e: unknown) => e instanceof CustosError && e.fullCode === 'database_corrupt:row_mac');
    await s.close();
  } finally {
    cleanup();
  }
});

test('sqlite: the token version moves at once with every token written, and within a second for a row deleted outside Custos', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { s, file } = await macStore(dir);
    const token = (id: string, fill: number) => ({ id, name: id, hash: new Uint8Array(32).fill(fill), role: 'signer' as const, createdAt: now(), terms: {} });
    const v0 = await s.tokensVersion();
    assert.deepEqual(await s.commit([{ mutations: [{ kind: 'insertToken', token: token('tok_a', 1) }, { kind: 'insertToken', token: token('tok_b', 2) }], audit: [entry('tokens')] }], chainHash, now()), [null]);
    const v1 = await s.tokensVersion();
    assert.notEqual(v1, v0);
    const db = new Database(file);
    db.prepare("DELETE FROM api_tokens WHERE id = 'tok_b'").run();
    db.close();
    const started = Date.now();
    let v2 = await s.tokensVersion();
    while (v2 === v1 && Date.now() - started < 5000) {
      await new Promise((r) => setTimeout(r, 50));
      v2 = await s.tokensVersion();
    }
    // (Noticed at the next count, a second after the last: polled for up to 5 s, so a loaded machine does not fail it.)
    assert.notEqual(v2, v1, 'the deletion was noticed');
    await s.close();
  } finally {
    cleanup();
  }
});
