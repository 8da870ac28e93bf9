/**
 * A full disk, for real: the vault lives on a small tmpfs that the test fills up. Signing
 * fails closed with a sentence an operator can act on, nothing acknowledged is lost, and
 * the vault works again once space is freed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CustosError } from '../../src/core/errors.js';
import { initVault, openVault } from '../../src/vault/open.js';
import { verifyAudit } from '../../src/vault/verify.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { ADMIN, FAST_SCRYPT, PASS, tempDir } from '../helpers/tmpvault.js';

function mountTmpfs(dir: string, size: string): boolean {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { encoding: 'utf8' });
  return r.status === 0;
}

test('a full disk fails signing closed with a clear sentence, loses nothing, and recovers when space returns', async (t) => {
  const { dir, cleanup } = tempDir();
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  if (!mountTmpfs(mnt, '4m')) {
    cleanup();
    const why = 'mounting a tmpfs needs root (or CAP_SYS_ADMIN); run the tests as root to exercise a real full disk';
    if (process.env.CI) throw new Error(why);
    t.skip(why);
    return;
  }
  try {
    const dataDir = join(mnt, 'vault');
    await initVault({ dataDir, passphrase: PASS, scrypt: FAST_SCRYPT });
    const v = await openVault({ dataDir, passphrase: PASS });
    const ctx = () => ({ principal: ADMIN, requestId: `r-${Math.random()}` });
    await v.vault.createKey(ctx(), { label: 'k', algorithm: 'ed25519', exportable: false });
    // Fill the file system, leaving a few pages.
    const free = statfsSync(mnt).bavail * statfsSync(mnt).bsize;
    writeFileSync(join(mnt, 'filler'), Buffer.alloc(Math.max(0, free - 16 * 1024)));
    const acknowledged: string[] = [];
    let failure: unknown;
    for (let i = 0; i < 5000 && !failure; i++) {
      try {
        const label = `fill-${i}`;
        await v.vault.createKey(ctx(), { label, algorithm: 'ed25519', exportable: false });
        acknowledged.push(label);
      } catch (e) {
        failure = e;
      }
    }
    assert.ok(failure instanceof CustosError, `expected a CustosError, got ${String(failure)}`);
    assert.ok(['audit_unavailable', 'storage_unavailable'].includes(failure.code), failure.code);
    assert.match(failure.message, /disk full|free space/i);
    t.diagnostic(failure.message);
    // A signature needs less room than a key record: sign until the last pages are gone too.
    let signFailure: unknown;
    for (let i = 0; i < 2000 && !signFailure; i++) {
      await v.vault.sign({ ...ctx(), key: 'k', payload: { kind: 'message', bytes: new Uint8Array([1]) }, options: {}, context: {} }).catch((e: unknown) => (signFailure = e));
    }
    assert.ok(signFailure instanceof CustosError && ['audit_unavailable', 'storage_unavailable'].includes(signFailure.code), String(signFailure));
    // Space comes back: the same process signs again without a restart.
    rmSync(join(mnt, 'filler'));
    const ok = await v.vault.sign({ ...ctx(), key: 'k', payload: { kind: 'message', bytes: new Uint8Array([1]) }, options: {}, context: {} });
    assert.equal(ok.signature.length, 64);
    for (const label of acknowledged) assert.ok(await v.vault.getKey(label), label);
    await v.close();
    assert.equal((await verifyAudit(dataDir)).ok, true);
    const s = SqliteStore.open(join(dataDir, 'custos.db'), { readonly: true });
    assert.deepEqual(await s.integrityCheck(), []);
    await s.close();
  } finally {
    spawnSync('umount', [mnt]);
    cleanup();
  }
});
