/** Test fixtures: a real vault in a temporary directory, on a real SQLite file. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { initVault, openVault, type OpenOptions, type OpenVault } from '../../src/vault/open.js';
import type { Algorithm, KeyRecord, Principal } from '../../src/core/types.js';
import { PassphraseSeal, parseSealRecord } from '../../src/keystore/seal.js';
import { Keyring } from '../../src/keystore/keyring.js';
import { chainHash } from '../../src/audit/chain.js';
import { generateSecret, publicKeyFromSecret } from '../../src/crypto/algorithms.js';
import { newKeyId } from '../../src/vault/vault.js';
import type { Backend } from '../../src/backends/backend.js';
import type { GuardPolicy } from '../../src/accounts/guard.js';

export const PASS = new TextEncoder().encode('test passphrase');
/** Cheap scrypt for tests; the production default is exercised by the CLI tests. */
export const FAST_SCRYPT = { N: 2 ** 10, r: 8, p: 1 };
export const ADMIN: Principal = { id: 'token:admin', kind: 'admin' };

export function tempDir(prefix = 'custos-test-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestVault extends OpenVault {
  dataDir: string;
  adminToken: string;
  ctx(): { principal: Principal; requestId: string };
  dispose(): Promise<void>;
}

export async function makeVault(opts: { checkpointEvery?: number; approvalTimeoutMs?: number; backends?: Backend[]; authLimits?: { maxFailures: number; windowSeconds: number }; loginGuard?: GuardPolicy; lightning?: OpenOptions['lightning'] } = {}): Promise<TestVault> {
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'vault');
  const { adminToken } = await initVault({ dataDir, passphrase: PASS, scrypt: FAST_SCRYPT });
  const opened = await openVault({ dataDir, passphrase: PASS, checkpointEvery: opts.checkpointEvery, approvalTimeoutMs: opts.approvalTimeoutMs, backends: opts.backends, ...(opts.authLimits ? { authLimits: opts.authLimits } : {}), ...(opts.loginGuard ? { loginGuard: opts.loginGuard } : {}), ...(opts.lightning ? { lightning: opts.lightning } : {}) });
  return {
    ...opened,
    dataDir,
    adminToken,
    ctx: () => ({ principal: ADMIN, requestId: randomUUID() }),
    dispose: async () => {
      await opened.close().catch(() => {});
      cleanup();
    },
  };
}

/**
 * A key written the way a Custos from before key purposes wrote it (no `purpose` attribute:
 * a `legacy` key), into a vault opened with `PASS`.
 */
export async function insertLegacyKey(v: OpenVault, label: string, algorithm: Algorithm = 'ed25519'): Promise<KeyRecord> {
  const vaultId = (await v.store.getMeta('vault_id'))!;
  const root = await new PassphraseSeal(PASS).unseal(parseSealRecord(await v.store.getMeta('seal')), vaultId);
  const secret = algorithm === 'ed25519' ? new Uint8Array(randomBytes(32)) : await generateSecret(algorithm);
  const now = new Date().toISOString();
  const key: KeyRecord = { id: newKeyId(), label, algorithm, publicKey: publicKeyFromSecret(algorithm, secret), state: 'active', exportable: false, origin: 'imported', version: 1, createdAt: now, updatedAt: now, sealed: null, attributes: {} };
  key.sealed = new Keyring(root, vaultId).sealSecret(key, secret);
  root.fill(0);
  secret.fill(0);
  const [err] = await v.store.commit([{ mutations: [{ kind: 'insertKey', key }], audit: [] }], chainHash, now);
  if (err) throw err;
  return key;
}
