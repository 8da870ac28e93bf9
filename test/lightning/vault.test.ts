/**
 * Lightning state in a real vault (SQLite on disk, a directory backup target): versions only
 * move forward, each is in the backup before it is stored; reconcile's four answers; the hsmd
 * hook's ECDH and ECIES decryption, with their own scopes and purpose; a backup target that
 * fails stores nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID, createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { makeVault, tempDir, type TestVault } from '../helpers/tmpvault.js';
import { DirectoryTarget, checkHistory } from '../../src/lightning/backup.js';
import { generateMnemonic } from '../../src/wallet/hd.js';
import { eciesEncrypt } from '../../src/crypto/ecies.js';
import { bytesToHex, hexToBytes } from '../../src/core/bytes.js';
import { recordHash, recordVerifier } from '../../src/crypto/lightning-record.js';
import { isCustosError } from '../../src/core/errors.js';

const code = (c: string) => (e: unknown) => isCustosError(e) && (e.fullCode === c || e.code === c);

async function node(backupDir: string | null, mnemonic = generateMnemonic()): Promise<{ v: TestVault; mnemonic: string; forks: number[] }> {
  const forks = [0];
  const v = await makeVault({ lightning: { backup: backupDir ? new DirectoryTarget(backupDir) : null, metrics: { update: () => {}, fork: () => forks[0]!++, reconciled: () => {} } } });
  await v.vault.createHdKey(v.ctx(), { label: 'ln', curve: 'secp256k1', mnemonic, purpose: 'lightning' });
  return { v, mnemonic, forks };
}

const state = (n: number) => new TextEncoder().encode(`monitor state ${n} `.repeat(50));

test('versions move forward, each in the backup before the store; a retry is answered; the backup checks out', async () => {
  const t = tempDir();
  const { v } = await node(join(t.dir, 'backup'));
  try {
    const ln = v.vault.lightning;
    for (let i = 1; i <= 3; i++) for (const o of ['chan-a', 'chan-b']) await ln.put(v.ctx(), 'ln', o, BigInt(i), state(i));
    const got = await ln.get(v.ctx(), 'ln', 'chan-a');
    assert.equal(got.version, 3n);
    assert.deepEqual(got.state, state(3));
    // The same version again with the same state: a retry, answered with what is stored.
    const again = await ln.put(v.ctx(), 'ln', 'chan-a', 3n, state(3));
    assert.equal(again.unchanged, true);
    assert.deepEqual(again.hash, got.hash);
    await assert.rejects(ln.put(v.ctx(), 'ln', 'chan-a', 3n, state(4)), code('conflict:object_version'));
    await assert.rejects(ln.put(v.ctx(), 'ln', 'chan-a', 2n, state(2)), code('conflict:object_version'));
    // Versions need not be consecutive (LDK's update ids), up to u64::MAX.
    await ln.put(v.ctx(), 'ln', 'chan-a', 2n ** 64n - 1n, state(9));
    const d = await ln.describe(v.ctx(), 'ln');
    assert.equal(d.objects, 2);
    const backup = new DirectoryTarget(join(t.dir, 'backup'));
    const seen: string[] = [];
    for await (const o of backup.objects(d.keys.node)) {
      const records = [];
      for await (const r of o.records) records.push(r);
      const h = checkHistory(recordVerifier(d.keys.recordPublic), o.objectId, records);
      seen.push(`${o.objectId}@${h.latest.version}x${h.count}`);
    }
    assert.deepEqual(seen, ['chan-a@18446744073709551615x4', 'chan-b@3x3']);
    const page = await ln.list(v.ctx(), 'ln', null, 1);
    assert.deepEqual(page.map((p) => p.objectId), ['chan-a']);
    assert.deepEqual((await ln.list(v.ctx(), 'ln', 'chan-a', 10)).map((p) => p.objectId), ['chan-b']);
  } finally {
    await v.dispose();
    t.cleanup();
  }
});

test('reconcile: in sync, node behind, vault behind (records handed over, checked, applied), fork refused and counted', async () => {
  // Two vaults from one seed: b runs ahead; a holds only version 3 (as a vault restored from an older backup would).
  const b = await node(null);
  const a = await node(null, b.mnemonic);
  const stranger = await node(null);
  try {
    const recs: Uint8Array[] = [];
    for (let i = 1; i <= 5; i++) recs.push((await b.v.vault.lightning.put(b.v.ctx(), 'ln', 'chan', BigInt(i), state(i))).record);
    const la = a.v.vault.lightning;
    assert.deepEqual(await la.restore(a.v.ctx(), 'ln', [recs[2]!]), { applied: 1, kept: 0, refused: [] });
    const h = (i: number) => recordHash(recs[i - 1]!);
    // In sync at 3.
    assert.equal((await la.reconcile(a.v.ctx(), 'ln', { objectId: 'chan', version: 3n, hash: h(3) })).status, 'in_sync');
    // Node behind: it says 2; the vault hands back version 3's record and state.
    const behind = await la.reconcile(a.v.ctx(), 'ln', { objectId: 'chan', version: 2n, hash: h(2) });
    assert.equal(behind.status, 'node_behind');
    assert.equal(behind.version, 3n);
    assert.deepEqual(behind.state, state(3));
    // Vault behind: the node holds 5. Asked without records, the vault says from where.
    const ask = await la.reconcile(a.v.ctx(), 'ln', { objectId: 'chan', version: 5n, hash: h(5) });
    assert.deepEqual([ask.status, ask.version], ['vault_behind', 3n]);
    // Records that skip version 4 do not follow the vault's 3: refused.
    await assert.rejects(la.reconcile(a.v.ctx(), 'ln', { objectId: 'chan', version: 5n, hash: h(5), records: [recs[4]!] }), code('bad_request:record_chain'));
    // A record signed by another node's vault: refused.
    const foreign = (await stranger.v.vault.lightning.put(stranger.v.ctx(), 'ln', 'chan', 4n, state(4))).record;
    await assert.rejects(la.reconcile(a.v.ctx(), 'ln', { objectId: 'chan', version: 4n, hash: recordHash(foreign), records: [foreign] }), code('bad_request:record_signature'));
    // 4 and 5, in order: applied.
    const applied = await la.reconcile(a.v.ctx(), 'ln', { objectId: 'chan', version: 5n, hash: h(5), records: [recs[3]!, recs[4]!] });
    assert.deepEqual([applied.status, applied.version, applied.applied], ['vault_behind', 5n, 2]);
    assert.deepEqual((await la.get(a.v.ctx(), 'ln', 'chan')).state, state(5));
    // A fork: a version 6 on a (another writer) and a different version 6 on b.
    const a6 = await la.put(a.v.ctx(), 'ln', 'chan', 6n, state(6));
    const b6 = await b.v.vault.lightning.put(b.v.ctx(), 'ln', 'chan', 6n, state(60));
    assert.notDeepEqual(a6.hash, b6.hash);
    await assert.rejects(la.reconcile(a.v.ctx(), 'ln', { objectId: 'chan', version: 6n, hash: b6.hash }), code('conflict:fork'));
    assert.equal(a.forks[0], 1, 'the fork is counted');
    const b7 = await b.v.vault.lightning.put(b.v.ctx(), 'ln', 'chan', 7n, state(7));
    await assert.rejects(la.reconcile(a.v.ctx(), 'ln', { objectId: 'chan', version: 7n, hash: b7.hash, records: [b6.record, b7.record] }), code('conflict:fork'));
    // The refusals are on the record.
    const tail = await a.v.vault.auditTail(50);
    assert.ok(tail.some((e) => e.operation === 'lightning_reconcile' && e.outcome === 'denied' && e.reason === 'conflict:fork'));
  } finally {
    await Promise.all([a.v.dispose(), b.v.dispose(), stranger.v.dispose()]);
  }
});

test('the hsmd hook: ECDH gives SHA-256(p·R) and ECIES decrypts, each with its own scope; the vault keys and other purposes are refused', async () => {
  const { v } = await node(null);
  try {
    const ln = v.vault.lightning;
    const { publicKey } = await ln.hookPublicKey(v.ctx(), 'ln');
    const r = secp256k1.utils.randomSecretKey();
    const R = secp256k1.getPublicKey(r, true);
    const expected = createHash('sha256').update(secp256k1.getSharedSecret(r, publicKey, true)).digest();
    assert.equal(bytesToHex(await ln.ecdh(v.ctx(), 'ln', { point: R })), expected.toString('hex'));
    const env = eciesEncrypt('secp256k1', publicKey, new TextEncoder().encode('onion payload'));
    assert.equal(new TextDecoder().decode(await ln.decrypt(v.ctx(), 'ln', { envelope: env })), 'onion payload');
    // The backup and record keys are the vault's own.
    await assert.rejects(ln.ecdh(v.ctx(), 'ln', { point: R, path: "m/9735'/0'" }), code('invalid_derivation_path'));
    await assert.rejects(ln.ecdh(v.ctx(), 'ln', { point: hexToBytes('02'.padEnd(66, 'f')) }), code('bad_request'));
    // Scopes: a node principal with `state` only cannot ECDH; one with ecdh cannot decrypt.
    const made = await v.vault.createToken(v.ctx(), { name: 'node', role: 'signer', operations: ['state', 'ecdh'], keys: ['ln'] });
    const nctx = { principal: await v.vault.authenticate({ token: made.token!, remote: '127.0.0.1' }), requestId: randomUUID() };
    await ln.put(nctx, 'ln', 'o', 1n, state(1));
    assert.equal((await ln.ecdh(nctx, 'ln', { point: R })).length, 32);
    await assert.rejects(ln.decrypt(nctx, 'ln', { envelope: env }), code('forbidden'));
    // Another purpose: a bitcoin HD key has no Lightning state and no hook.
    await v.vault.createHdKey(v.ctx(), { label: 'btc', curve: 'secp256k1' });
    await assert.rejects(ln.put(v.ctx(), 'btc', 'o', 1n, state(1)), code('key_purpose'));
    await assert.rejects(ln.ecdh(v.ctx(), 'btc', { point: R }), code('key_purpose'));
    const tail = await v.vault.auditTail(40);
    assert.ok(tail.some((e) => e.operation === 'lightning_ecdh' && e.outcome === 'ok'));
    assert.ok(tail.some((e) => e.operation === 'lightning_decrypt' && e.outcome === 'denied'));
  } finally {
    await v.dispose();
  }
});

test('a backup target that cannot be written stores nothing, and says so', async () => {
  const t = tempDir();
  const file = join(t.dir, 'not-a-dir');
  writeFileSync(file, 'x');
  const { v } = await node(file);
  try {
    await assert.rejects(v.vault.lightning.put(v.ctx(), 'ln', 'chan', 1n, randomBytes(10)), (e: unknown) => isCustosError(e) && e.fullCode === 'storage_unavailable:backup_unavailable' && /nothing was stored/.test(e.message));
    await assert.rejects(v.vault.lightning.get(v.ctx(), 'ln', 'chan'), code('not_found'));
  } finally {
    await v.dispose();
    t.cleanup();
  }
});

test('a PostgreSQL backup target: records streamed into a table, read back in version order and checked', async (t) => {
  const { requirePostgres, startPostgres } = await import('../helpers/postgres.js');
  if (!requirePostgres(t)) return;
  const { PostgresBackup } = await import('../../src/lightning/backup-postgres.js');
  const { HistoryCheck } = await import('../../src/lightning/backup.js');
  const pgc = await startPostgres();
  try {
    const url = await pgc.createDatabase();
    const target = PostgresBackup.open(url);
    const v = await makeVault({ lightning: { backup: target } });
    try {
      await v.vault.createHdKey(v.ctx(), { label: 'ln', curve: 'secp256k1', mnemonic: generateMnemonic(), purpose: 'lightning' });
      for (let i = 1; i <= 3; i++) for (const o of ['x', 'y']) await v.vault.lightning.put(v.ctx(), 'ln', o, BigInt(i * 10), state(i));
      const d = await v.vault.lightning.describe(v.ctx(), 'ln');
      const source = PostgresBackup.open(url);
      const seen: string[] = [];
      for await (const o of source.objects(d.keys.node)) {
        const h = new HistoryCheck(recordVerifier(d.keys.recordPublic), o.objectId);
        for await (const r of o.records) h.add(r.filedAs, r.bytes);
        seen.push(`${o.objectId}@${h.result().latest.version}x${h.result().count}`);
      }
      assert.deepEqual(seen, ['x@30x3', 'y@30x3']);
      await source.close();
    } finally {
      await v.dispose();
    }
  } finally {
    await pgc.dispose();
  }
});

test('property: reconcile over random histories, restore points, node positions, truncated and forked hand-overs', async () => {
  const fc = (await import('fast-check')).default;
  const b = await node(null);
  const a = await node(null, b.mnemonic);
  const c = await node(null, b.mnemonic); // same seed, another history: forks
  let run = 0;
  try {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 6 }), fc.nat(), fc.nat(), fc.constantFrom('none', 'exact', 'skip', 'fork'), async (n, kk, jj, mode) => {
        const id = `o-${run++}`;
        const recs: Uint8Array[] = [];
        for (let i = 1; i <= n; i++) recs.push((await b.v.vault.lightning.put(b.v.ctx(), 'ln', id, BigInt(i), state(i))).record);
        const k = kk % n; // the vault holds version k (0: nothing)
        const j = 1 + (jj % n); // the node holds version j
        const la = a.v.vault.lightning;
        if (mode === 'fork' && k > 0) {
          // The vault's version k comes from another history (same seed, other content).
          let other: Uint8Array | undefined;
          for (let i = 1; i <= k; i++) other = (await c.v.vault.lightning.put(c.v.ctx(), 'ln', id, BigInt(i), state(100 + i))).record;
          await la.restore(a.v.ctx(), 'ln', [other!]);
        } else if (k > 0) await la.restore(a.v.ctx(), 'ln', [recs[k - 1]!]);
        const hash = recordHash(recs[j - 1]!);
        const handed = mode === 'exact' || mode === 'fork' ? recs.slice(k, j) : mode === 'skip' && j - k >= 2 ? [...recs.slice(k, j - 2), recs[j - 1]!] : undefined;
        const out = await la.reconcile(a.v.ctx(), 'ln', { objectId: id, version: BigInt(j), hash, ...(handed?.length ? { records: handed } : {}) }).then(
          (r) => r.status + (r.applied ? `+${r.applied}` : ''),
          (e: unknown) => (isCustosError(e) ? e.fullCode : String(e)),
        );
        const forked = mode === 'fork' && k > 0;
        let want: string[];
        if (j === k) want = forked ? ['conflict:fork'] : ['in_sync'];
        else if (j < k) want = ['node_behind'];
        else if (!handed?.length) want = ['vault_behind'];
        else if (forked) want = ['bad_request:record_chain', 'conflict:fork'];
        else if (mode === 'skip') want = k === 0 && j - k === 2 ? ['vault_behind+1'] : ['bad_request:record_chain'];
        else want = [`vault_behind+${j - k}`];
        assert.ok(want.includes(out), `n=${n} k=${k} j=${j} ${mode}: ${out}, expected ${want.join(' or ')}`);
      }),
      { numRuns: 30 },
    );
  } finally {
    await Promise.all([a.v.dispose(), b.v.dispose(), c.v.dispose()]);
  }
});

test('a record whose commit fails stays in the backup as a side branch; restore applies only what follows the stored record; dot ids refused', async () => {
  const t = tempDir();
  const dirTarget = new DirectoryTarget(join(t.dir, 'backup'));
  let during: (() => Promise<void>) | null = null;
  // A target that runs `during` after the record is written and before the commit.
  const target = { name: dirTarget.name, write: async (...a: Parameters<DirectoryTarget['write']>) => (await dirTarget.write(...a), await during?.()), close: async () => {} };
  const w = await makeVault({ lightning: { backup: target } });
  try {
    await w.vault.createHdKey(w.ctx(), { label: 'ln', curve: 'secp256k1', mnemonic: generateMnemonic(), purpose: 'lightning' });
    const ln = w.vault.lightning;
    await ln.put(w.ctx(), 'ln', 'chan', 1n, state(1));
    // The key is disabled between the backup write and the commit: refused; the record stays.
    during = async () => void (await w.vault.setEnabled(w.ctx(), 'ln', false));
    await assert.rejects(ln.put(w.ctx(), 'ln', 'chan', 2n, state(2)), code('key_disabled'));
    during = null;
    await w.vault.setEnabled(w.ctx(), 'ln', true);
    await ln.put(w.ctx(), 'ln', 'chan', 3n, state(3));
    const d = await ln.describe(w.ctx(), 'ln');
    const history = async () => {
      const records = [];
      for await (const o of dirTarget.objects(d.keys.node)) for await (const r of o.records) records.push(r);
      return records;
    };
    // 2 and 3 both follow 1, nothing follows either: which was committed cannot be told yet.
    assert.deepEqual((await history()).map((r) => r.filedAs), [1n, 2n, 3n]);
    await assert.rejects(async () => checkHistory(recordVerifier(d.keys.recordPublic), 'chan', await history()), /backup_ambiguous|follow the history's last record/);
    // The next update follows 3: 2 is a side branch, left out.
    await ln.put(w.ctx(), 'ln', 'chan', 4n, state(4));
    const h = checkHistory(recordVerifier(d.keys.recordPublic), 'chan', await history());
    assert.deepEqual([h.latest.version, h.sideBranches], [4n, 1]);
    // `.` and `..` are not object ids (they would be folders of their own in the backup).
    for (const id of ['.', '..', '.hidden']) await assert.rejects(ln.put(w.ctx(), 'ln', id, 1n, state(1)), code('bad_request'));
  } finally {
    await w.dispose();
    t.cleanup();
  }
  // Restore: applied where absent or following; a different record of the stored version is a fork; a gap is refused.
  const b = await node(null);
  const a = await node(null, b.mnemonic);
  const c = await node(null, b.mnemonic);
  try {
    const recs: Uint8Array[] = [];
    for (let i = 1; i <= 3; i++) recs.push((await b.v.vault.lightning.put(b.v.ctx(), 'ln', 'o', BigInt(i), state(i))).record);
    const other = (await c.v.vault.lightning.put(c.v.ctx(), 'ln', 'o', 1n, state(99))).record;
    const la = a.v.vault.lightning;
    assert.deepEqual(await la.restore(a.v.ctx(), 'ln', [recs[0]!]), { applied: 1, kept: 0, refused: [] });
    // Refused objects are listed (and audited); the others in the same request still apply.
    const mixed = await la.restore(a.v.ctx(), 'ln', [other, recs[2]!]);
    assert.deepEqual(mixed.refused.map((f) => f.code), ['conflict:fork', 'bad_request:record_chain']);
    assert.equal(a.forks[0], 1);
    assert.deepEqual(await la.restore(a.v.ctx(), 'ln', [recs[1]!, recs[2]!]), { applied: 2, kept: 0, refused: [] });
    // A node principal (scope state) cannot restore: that is an operator's act.
    const made = await a.v.vault.createToken(a.v.ctx(), { name: 'node', role: 'signer', operations: ['state'], keys: ['ln'] });
    const nctx = { principal: await a.v.vault.authenticate({ token: made.token!, remote: '127.0.0.1' }), requestId: randomUUID() };
    await assert.rejects(la.restore(nctx, 'ln', [recs[2]!]), code('forbidden'));
  } finally {
    await Promise.all([a.v.dispose(), b.v.dispose(), c.v.dispose()]);
  }
});

test('a record is a function of its place and state: the same state at the same place gives the same bytes (a retry files no rival)', async () => {
  const b = await node(null);
  const a = await node(null, b.mnemonic);
  try {
    const x = await a.v.vault.lightning.put(a.v.ctx(), 'ln', 'chan', 1n, state(1));
    const y = await b.v.vault.lightning.put(b.v.ctx(), 'ln', 'chan', 1n, state(1));
    assert.deepEqual(x.record, y.record);
    const z = await b.v.vault.lightning.put(b.v.ctx(), 'ln', 'chan', 2n, state(1));
    assert.notDeepEqual(z.record.subarray(0, 120), y.record.subarray(0, 120), 'another place, another envelope');
  } finally {
    await Promise.all([a.v.dispose(), b.v.dispose()]);
  }
});

test('reconcile: a node whose history left the vault\'s below the vault\'s version is a fork, counted', async () => {
  const b = await node(null);
  const a = await node(null, b.mnemonic);
  try {
    // Both share 1..4; the vault (a) then wrote 6; the node's vault (b) wrote 5 and 7 on top of 4.
    const shared: Uint8Array[] = [];
    for (let i = 1; i <= 4; i++) shared.push((await b.v.vault.lightning.put(b.v.ctx(), 'ln', 'o', BigInt(i), state(i))).record);
    await a.v.vault.lightning.restore(a.v.ctx(), 'ln', shared);
    await a.v.vault.lightning.put(a.v.ctx(), 'ln', 'o', 6n, state(60));
    const b5 = await b.v.vault.lightning.put(b.v.ctx(), 'ln', 'o', 5n, state(5));
    const b7 = await b.v.vault.lightning.put(b.v.ctx(), 'ln', 'o', 7n, state(7));
    await assert.rejects(a.v.vault.lightning.reconcile(a.v.ctx(), 'ln', { objectId: 'o', version: 7n, hash: b7.hash, records: [b5.record, b7.record] }), code('conflict:fork'));
    await assert.rejects(a.v.vault.lightning.reconcile(a.v.ctx(), 'ln', { objectId: 'o', version: 7n, hash: b7.hash, records: [shared[3]!, b5.record, b7.record] }), code('conflict:fork'));
    assert.equal(a.forks[0], 2);
  } finally {
    await Promise.all([a.v.dispose(), b.v.dispose()]);
  }
});

test('a writer that loses to a twin committing the same record leaves the backup file (it is the twin\'s)', async () => {
  const t = tempDir();
  const dirTarget = new DirectoryTarget(join(t.dir, 'backup'));
  let during: ((record: Uint8Array) => Promise<void>) | null = null;
  const target = { name: dirTarget.name, write: async (...a: Parameters<DirectoryTarget['write']>) => (await dirTarget.write(...a), await during?.(a[3])), close: async () => {} };
  const w = await makeVault({ lightning: { backup: target } });
  try {
    await w.vault.createHdKey(w.ctx(), { label: 'ln', curve: 'secp256k1', mnemonic: generateMnemonic(), purpose: 'lightning' });
    const ln = w.vault.lightning;
    await ln.put(w.ctx(), 'ln', 'chan', 1n, state(1));
    const keyId = (await w.vault.getKey('ln')).id;
    // The same update, retried on another instance, commits the identical record first.
    during = async (record) => {
      during = null;
      const [err] = await w.store.commit([{ mutations: [{ kind: 'putObject', keyId, objectId: 'chan', expectedVersion: 1n, version: 2n, record }], audit: [] }], () => new Uint8Array(32), new Date().toISOString());
      assert.equal(err, null);
    };
    await assert.rejects(ln.put(w.ctx(), 'ln', 'chan', 2n, state(2)), code('conflict:object_moved'));
    const d = await ln.describe(w.ctx(), 'ln');
    for await (const o of dirTarget.objects(d.keys.node)) {
      const records = [];
      for await (const r of o.records) records.push(r);
      assert.deepEqual(records.map((r) => r.filedAs), [1n, 2n], 'the committed version 2 stays in the backup');
    }
  } finally {
    await w.dispose();
    t.cleanup();
  }
});
