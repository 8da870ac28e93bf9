import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { x25519 } from '@noble/curves/ed25519.js';
import { ADMIN, makeVault, PASS } from '../helpers/tmpvault.js';
import { CustosError } from '../../src/core/errors.js';
import { openVault, DB_FILE } from '../../src/vault/open.js';
import { decodeExportedKey, eciesDecrypt } from '../../src/crypto/ecies.js';
import { publicKeyFromSecret, verifySignature } from '../../src/crypto/algorithms.js';
import { Backends, type Backend } from '../../src/backends/backend.js';

const msg = (s: string) => ({ kind: 'message' as const, bytes: new TextEncoder().encode(s) });
const isCode = (code: string) => (e: unknown) => e instanceof CustosError && e.fullCode === code;

test('a wrong passphrase refuses to unseal with wrong_passphrase and leaves the database byte-identical', async () => {
  const v = await makeVault();
  await v.vault.createKey(v.ctx(), { label: 'k', algorithm: 'ed25519', exportable: false });
  await v.close();
  const hashDir = () =>
    readdirSync(v.dataDir)
      .sort()
      .map((f) => `${f}:${createHash('sha256').update(readFileSync(join(v.dataDir, f))).digest('hex')}`)
      .join(',');
  const before = hashDir();
  await assert.rejects(openVault({ dataDir: v.dataDir, passphrase: new TextEncoder().encode('not it') }), isCode('wrong_passphrase'));
  assert.equal(hashDir(), before);
  const again = await openVault({ dataDir: v.dataDir, passphrase: PASS });
  assert.equal((await again.vault.getKey('k')).label, 'k');
  await again.close();
  await v.dispose();
});

test('key lifecycle: create, disable refuses to sign, enable, destroy gives key_destroyed for ever', async () => {
  const v = await makeVault();
  try {
    const k = await v.vault.createKey(v.ctx(), { label: 'life', algorithm: 'ed25519', exportable: false });
    assert.match(k.id, /^key_[a-z2-7]{26}$/);
    await v.vault.setEnabled(v.ctx(), 'life', false);
    await assert.rejects(v.vault.sign({ ...v.ctx(), key: 'life', payload: msg('x'), options: {}, context: {} }), isCode('key_disabled'));
    await v.vault.setEnabled(v.ctx(), k.id, true);
    const s = await v.vault.sign({ ...v.ctx(), key: k.id, payload: msg('x'), options: {}, context: {} });
    assert.ok(verifySignature('ed25519', k.publicKey, msg('x'), s.signature, {}));
    const sealedBefore = (await v.store.findKey(k.id))!.sealed!;
    await v.vault.destroyKey(v.ctx(), 'life');
    await assert.rejects(v.vault.sign({ ...v.ctx(), key: 'life', payload: msg('x'), options: {}, context: {} }), isCode('key_destroyed'));
    await assert.rejects(v.vault.setEnabled(v.ctx(), 'life', true), isCode('key_destroyed'));
    await assert.rejects(v.vault.createKey(v.ctx(), { label: 'life', algorithm: 'ed25519', exportable: false }), isCode('label_taken'));
    // The sealed bytes are gone from the files on disk (secure_delete + WAL truncate).
    const needle = Buffer.from(sealedBefore.subarray(0, 24));
    for (const f of readdirSync(v.dataDir)) {
      assert.equal(readFileSync(join(v.dataDir, f)).indexOf(needle), -1, `${f} still holds the destroyed envelope`);
    }
  } finally {
    await v.dispose();
  }
});

test('a key record moved onto another key row: the vault will not open on it, a running vault refuses the key, and the envelope alone refuses it too', async () => {
  const v = await makeVault();
  try {
    const a = await v.vault.createKey(v.ctx(), { label: 'a', algorithm: 'ed25519', exportable: false });
    const b = await v.vault.createKey(v.ctx(), { label: 'b', algorithm: 'ed25519', exportable: false });
    // While it runs: the row's MAC no longer matches, so the key is refused and the refusal audited.
    const live = new Database(join(v.dataDir, DB_FILE));
    live.prepare('UPDATE keys SET sealed = (SELECT sealed FROM keys WHERE id = ?) WHERE id = ?').run(a.id, b.id);
    await assert.rejects(v.vault.sign({ ...v.ctx(), key: 'b', payload: msg('x'), options: {}, context: {} }), isCode('database_corrupt:row_mac'));
    const sig = await v.vault.sign({ ...v.ctx(), key: 'a', payload: msg('x'), options: {}, context: {} });
    assert.ok(verifySignature('ed25519', a.publicKey, msg('x'), sig.signature, {}));
    assert.ok((await v.store.auditTail(4)).some((e) => e.outcome === 'denied' && e.reason === 'database_corrupt:row_mac'));
    live.close();
    // The envelope binds the key id too: without the row MAC (a vault before them), the moved
    // record still does not decrypt.
    const { Keyring } = await import('../../src/keystore/keyring.js');
    const k = new Keyring(new Uint8Array(32).fill(1), 'vault');
    const sealedA = k.sealSecret(a, new Uint8Array(32).fill(9));
    assert.throws(() => k.openSecret({ ...b, sealed: sealedA }), isCode('key_record_corrupt'));
    await v.close();
    // At rest: the vault refuses to open on the edited row.
    await assert.rejects(openVault({ dataDir: v.dataDir, passphrase: PASS }), (e: unknown) => e instanceof CustosError && e.code === 'database_corrupt');
  } finally {
    await v.dispose();
  }
});

test('fail closed: when the audit log cannot be written, nothing is signed', async () => {
  const v = await makeVault();
  try {
    await v.vault.createKey(v.ctx(), { label: 'fc', algorithm: 'ed25519', exportable: false });
    await v.store.close(); // the database goes away under the vault, as on an I/O failure
    await assert.rejects(v.vault.sign({ ...v.ctx(), key: 'fc', payload: msg('x'), options: {}, context: {} }), (e: unknown) => e instanceof CustosError && (e.code === 'audit_unavailable' || e.code === 'storage_unavailable'));
  } finally {
    await v.dispose();
  }
});

test('group commit: concurrent signs share transactions, and each is answered only once durable', async () => {
  const v = await makeVault();
  try {
    await v.vault.createKey(v.ctx(), { label: 'gc', algorithm: 'ed25519', exportable: false });
    const committer = (v.vault as unknown as { core: { deps: { committer: { stats: { transactions: number; units: number } } } } }).core.deps.committer;
    const t0 = committer.stats.transactions;
    const u0 = committer.stats.units;
    const n = 64;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => v.vault.sign({ ...v.ctx(), key: 'gc', payload: msg(`m${i}`), options: {}, context: {} })));
    assert.equal(results.length, n);
    const tx = committer.stats.transactions - t0;
    const units = committer.stats.units - u0;
    assert.equal(units, n, 'one unit (decision and outcome together) per signature');
    assert.ok(tx < units / 4, `expected batching: ${units} units in ${tx} transactions`);
    const entries = await v.store.auditAfter(0, 10_000);
    assert.equal(entries.filter((e) => e.operation === 'sign' && e.outcome === 'ok').length, n);
  } finally {
    await v.dispose();
  }
});

test('export: only exportable keys, only wrapped; the recipient recovers a working key', async () => {
  const v = await makeVault();
  try {
    await v.vault.createKey(v.ctx(), { label: 'locked', algorithm: 'secp256k1', exportable: false });
    const k = await v.vault.createKey(v.ctx(), { label: 'portable', algorithm: 'secp256k1', exportable: true });
    const rsk = x25519.utils.randomSecretKey();
    const rpk = x25519.getPublicKey(rsk);
    await assert.rejects(v.vault.exportKey(v.ctx(), 'locked', { kem: 'x25519', publicKey: rpk }), isCode('key_not_exportable'));
    const { envelope } = await v.vault.exportKey(v.ctx(), 'portable', { kem: 'x25519', publicKey: rpk });
    const inner = decodeExportedKey(eciesDecrypt(rsk, envelope));
    assert.equal(inner.algorithm, 'secp256k1');
    assert.deepEqual(publicKeyFromSecret('secp256k1', inner.secret), k.publicKey);
    const tail = await v.store.auditTail(10);
    assert.ok(tail.some((e) => e.operation === 'export' && e.outcome === 'denied' && e.reason === 'key_not_exportable'));
    assert.ok(tail.some((e) => e.operation === 'export' && e.outcome === 'ok' && typeof e.details.envelope_sha256 === 'string'));
  } finally {
    await v.dispose();
  }
});

test('audit entries hold hashes, never the message or key material', async () => {
  const v = await makeVault();
  try {
    await v.vault.createKey(v.ctx(), { label: 'priv', algorithm: 'ed25519', exportable: false });
    const secretMessage = 'attack at dawn, the password is hunter2';
    await v.vault.sign({ ...v.ctx(), key: 'priv', payload: msg(secretMessage), options: {}, context: {} });
    await v.close();
    for (const f of readdirSync(v.dataDir)) {
      assert.equal(readFileSync(join(v.dataDir, f)).indexOf(Buffer.from('hunter2')), -1, `${f} holds the message`);
    }
  } finally {
    await v.dispose();
  }
});

test('signs racing a destroy: none is answered after the destroy commits, and no prepared key survives it', async () => {
  const v = await makeVault();
  try {
    const k = await v.vault.createKey(v.ctx(), { label: 'racy', algorithm: 'ed25519', exportable: false });
    // A backend that takes its time, as an HSM does, so the destroy lands while the
    // signatures are made in memory and before their commit.
    const deps = (v.vault as unknown as { core: { deps: { backend: Backend } } }).core.deps;
    const software = deps.backend;
    let inBackend = 0;
    const slow: Backend = {
      name: 'software',
      sign: async (...args) => {
        inBackend++;
        await new Promise((r) => setTimeout(r, 30));
        return software.sign(...args);
      },
      forget: (id) => software.forget(id),
      close: () => software.close(),
    };
    deps.backend = new Backends(slow);
    const signs = Array.from({ length: 20 }, (_, i) =>
      v.vault.sign({ ...v.ctx(), key: 'racy', payload: msg(`r${i}`), options: {}, context: {} }).then(
        () => 'signed',
        (e: CustosError) => e.code,
      ),
    );
    while (inBackend < 20) await new Promise((r) => setImmediate(r));
    await v.vault.destroyKey(v.ctx(), 'racy');
    const outcomes = await Promise.all(signs);
    assert.deepEqual(new Set(outcomes), new Set(['key_destroyed']), 'every sign decided before the destroy but finishing after it is refused');
    const entries = await v.store.auditAfter(0, 10_000);
    const destroySeq = entries.find((e) => e.operation === 'destroy' && e.outcome === 'ok')!.seq;
    assert.deepEqual(entries.filter((e) => e.operation === 'sign' && e.outcome === 'ok'), [], 'a signature was released');
    assert.equal(entries.filter((e) => e.operation === 'sign' && e.outcome === 'denied' && e.reason === 'key_destroyed' && e.seq > destroySeq).length, 20);
    const cache = ((software as Backends).get('software') as unknown as { cache: Map<string, unknown> }).cache;
    assert.equal(cache.has(k.id), false, 'the destroyed key is still prepared in memory');
  } finally {
    await v.dispose();
  }
});

test('an unknown key reference with control characters is audited as a hash, never verbatim', async () => {
  const v = await makeVault();
  try {
    const hostile = 'x\n   999 2026-01-01 token:admin destroy payments \u001b[2J';
    await assert.rejects(v.vault.sign({ ...v.ctx(), key: hostile, payload: msg('x'), options: {}, context: {} }), isCode('key_not_found'));
    const [e] = await v.store.auditTail(1);
    assert.match(e!.keyLabel!, /^sha256:[0-9a-f]{32}$/);
  } finally {
    await v.dispose();
  }
});

test('fields edited in the database behind the vault (exportable, public key) are refused, running or at rest', async () => {
  const v = await makeVault();
  try {
    const k = await v.vault.createKey(v.ctx(), { label: 'pinned', algorithm: 'secp256k1', exportable: false });
    const other = await v.vault.createKey(v.ctx(), { label: 'other', algorithm: 'secp256k1', exportable: false });
    const db = new Database(join(v.dataDir, DB_FILE));
    db.prepare('UPDATE keys SET exportable = 1 WHERE id = ?').run(k.id);
    db.prepare('UPDATE keys SET public_key = ? WHERE id = ?').run(Buffer.from(k.publicKey), other.id);
    db.close();
    const rpk = x25519.getPublicKey(x25519.utils.randomSecretKey());
    await assert.rejects(v.vault.exportKey(v.ctx(), 'pinned', { kem: 'x25519', publicKey: rpk }), isCode('database_corrupt:row_mac'));
    await assert.rejects(v.vault.getKey('other'), isCode('database_corrupt:row_mac'));
    const listed = (await v.vault.listKeysPage(v.ctx().principal, null, 100)).keys;
    assert.deepEqual(listed.map((x) => [x.label, !!x.corrupt]), [['other', true], ['pinned', true]]);
    await assert.rejects(v.vault.sign({ ...v.ctx(), key: 'other', payload: msg('x'), options: {}, context: {} }), isCode('database_corrupt:row_mac'));
    await v.close();
    await assert.rejects(openVault({ dataDir: v.dataDir, passphrase: PASS }), (e: unknown) => e instanceof CustosError && e.code === 'database_corrupt');
  } finally {
    await v.dispose();
  }
});

test('a key past its expires_at refuses to sign and is destroyed by the sweeper', async () => {
  const v = await makeVault();
  try {
    const soon = new Date(Date.now() + 300).toISOString();
    await v.vault.createKey(v.ctx(), { label: 'short-lived', algorithm: 'ed25519', exportable: false, attributes: { expires_at: soon, 'ssh.comment': 'me@laptop' } });
    await v.vault.createKey(v.ctx(), { label: 'long-lived', algorithm: 'ed25519', exportable: false });
    await v.vault.sign({ ...v.ctx(), key: 'short-lived', payload: msg('x'), options: {}, context: {} });
    await new Promise((r) => setTimeout(r, 400));
    await assert.rejects(v.vault.sign({ ...v.ctx(), key: 'short-lived', payload: msg('x'), options: {}, context: {} }), isCode('key_expired'));
    assert.equal(await v.vault.destroyExpired(ADMIN), 1);
    assert.equal((await v.vault.getKey('short-lived')).state, 'destroyed');
    assert.equal((await v.vault.getKey('long-lived')).state, 'active');
    await assert.rejects(v.vault.createKey(v.ctx(), { label: 'bad-attr', algorithm: 'ed25519', exportable: false, attributes: { expires_at: 'tomorrow' } }), isCode('bad_request'));
  } finally {
    await v.dispose();
  }
});
