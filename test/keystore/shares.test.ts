import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { decodeShare, rootFromShares, sealToShares, ShareCollector } from '../../src/keystore/shares.js';
import { parseSealRecord } from '../../src/keystore/seal.js';
import { initVault, openStoreOnly, openVault } from '../../src/vault/open.js';
import { rekeyShares } from '../../src/vault/operator.js';
import { verifyChain } from '../../src/audit/chain.js';
import { equalBytes } from '../../src/core/bytes.js';
import { isCustosError } from '../../src/core/errors.js';
import { ADMIN, tempDir } from '../helpers/tmpvault.js';

const code = (c: string) => (e: unknown) => isCustosError(e) && e.fullCode === c;
const root = () => Uint8Array.from({ length: 32 }, (_, i) => i + 1);

test('any T of the N shares rebuild the root, in any order; fewer than T do not', async () => {
  const vaultId = randomUUID();
  const { record, lines } = await sealToShares(root(), vaultId, 5, 3);
  assert.equal(lines.length, 5);
  for (const pick of [[0, 1, 2], [4, 2, 0], [3, 4, 1], [2, 3, 4]]) {
    const r = await rootFromShares(record, vaultId, pick.map((i) => lines[i]!));
    assert.ok(equalBytes(r, root()));
  }
  const c = new ShareCollector(record, vaultId);
  assert.equal(await c.add(lines[0]!), null);
  assert.equal(await c.add(lines[0]!), null, 'a repeated share does not count twice');
  assert.deepEqual(c.progress, { sealed: true, threshold: 3, progress: 1 });
  assert.equal(await c.add(lines[3]!), null);
  assert.deepEqual(c.progress.progress, 2);
  await assert.rejects(rootFromShares(record, vaultId, [lines[1]!, lines[2]!]), code('invalid_share'));
});

test('a restart forgets partial progress: a new collector starts at zero', async () => {
  const vaultId = randomUUID();
  const { record, lines } = await sealToShares(root(), vaultId, 3, 2);
  const before = new ShareCollector(record, vaultId);
  await before.add(lines[0]!);
  const after = new ShareCollector(record, vaultId);
  assert.equal(after.progress.progress, 0);
  assert.equal(await after.add(lines[1]!), null);
  assert.ok(equalBytes((await after.add(lines[2]!))!, root()));
});

test('a corrupted, foreign or stale share is refused on arrival and progress is kept', async () => {
  const vaultId = randomUUID();
  const { record, lines } = await sealToShares(root(), vaultId, 3, 2);
  const c = new ShareCollector(record, vaultId);
  await c.add(lines[0]!);
  // A typo: the check digits catch it.
  const l = lines[1]!;
  const typo = l.slice(0, 60) + (l[60] === 'A' ? 'B' : 'A') + l.slice(61);
  await assert.rejects(c.add(typo), (e) => code('invalid_share')(e) && /damaged/.test((e as Error).message));
  // Well-formed but not one of ours (checksum recomputed): the commitment catches it.
  const other = await sealToShares(root(), vaultId, 3, 2);
  await assert.rejects(c.add(other.lines[0]!), (e) => code('invalid_share')(e) && /not one of this vault's current shares/.test((e as Error).message));
  const foreign = await sealToShares(root(), randomUUID(), 3, 2);
  await assert.rejects(c.add(foreign.lines[0]!), (e) => code('invalid_share')(e) && /another vault/.test((e as Error).message));
  assert.equal(c.progress.progress, 1, 'bad shares do not reset or add to progress');
  assert.ok(equalBytes((await c.add(lines[2]!))!, root()));
});

test('share decoding rejects every mutation and truncation with invalid_share only', async () => {
  const { lines } = await sealToShares(root(), randomUUID(), 2, 2);
  const line = lines[0]!;
  fc.assert(
    fc.property(fc.nat(line.length - 1), fc.integer({ min: 32, max: 126 }), fc.boolean(), (i, ch, cut) => {
      const mutated = cut ? line.slice(0, i) : line.slice(0, i) + String.fromCharCode(ch) + line.slice(i + 1);
      if (mutated === line) return;
      try {
        decodeShare(mutated);
        assert.fail('a mutated share decoded');
      } catch (e) {
        assert.ok(code('invalid_share')(e), String(e));
      }
    }),
    { numRuns: 2000 },
  );
  assert.throws(() => decodeShare('x'.repeat(100_000)), code('invalid_share'));
});

test('a vault sealed by shares opens with T shares; re-keying keeps the keys and retires the old shares', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'vault');
    const init = await initVault({ dataDir, shares: { shares: 3, threshold: 2 } });
    assert.equal(init.shareLines!.length, 3);
    const { store, vaultId } = await openStoreOnly(dataDir);
    const record = parseSealRecord(await store.getMeta('seal'));
    await store.close();
    assert.equal(record.kind, 'shares');
    if (record.kind !== 'shares') return;
    await assert.rejects(openVault({ dataDir }), code('vault_sealed'));
    const r = await rootFromShares(record.shares, vaultId, [init.shareLines![2]!, init.shareLines![0]!]);
    const opened = await openVault({ dataDir, root: r });
    const key = await opened.vault.createKey({ principal: ADMIN, requestId: 'k' }, { label: 'k1', algorithm: 'ed25519', exportable: false });
    await opened.close();

    const { shareLines } = await rekeyShares(dataDir, [init.shareLines![1]!, init.shareLines![2]!], { shares: 5, threshold: 3 });
    assert.equal(shareLines.length, 5);
    const s2 = await openStoreOnly(dataDir);
    const rec2 = parseSealRecord(await s2.store.getMeta('seal'));
    const audit = await verifyChain(s2.store, s2.vaultId, s2.auditPublicKey);
    const tail = await s2.store.auditTail(1);
    await s2.store.close();
    assert.ok(audit.ok, 'the re-key is in a valid audit chain');
    assert.equal(tail[0]!.operation, 'rekey_shares');
    if (rec2.kind !== 'shares') return assert.fail('still shares');
    await assert.rejects(rootFromShares(rec2.shares, vaultId, init.shareLines!), code('invalid_share'), 'old shares no longer work');
    const r2 = await rootFromShares(rec2.shares, vaultId, [shareLines[4]!, shareLines[1]!, shareLines[3]!]);
    assert.ok(equalBytes(r, r2), 'same root key after re-key');
    const again = await openVault({ dataDir, root: r2 });
    const sig = await again.vault.sign({ principal: ADMIN, requestId: 's', key: key.id, payload: { kind: 'message', bytes: new Uint8Array([1]) }, options: {}, context: {} });
    assert.equal(sig.signature.length, 64);
    await again.close();
  } finally {
    cleanup();
  }
});
