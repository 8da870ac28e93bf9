/** Test fixtures: a real vault in a temporary directory, on a real SQLite file. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { initVault, openVault, type OpenVault } from '../../src/vault/open.js';
import type { Principal } from '../../src/core/types.js';
import type { Backend } from '../../src/backends/backend.js';

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

export async function makeVault(opts: { checkpointEvery?: number; approvalTimeoutMs?: number; backends?: Backend[] } = {}): Promise<TestVault> {
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'vault');
  const { adminToken } = await initVault({ dataDir, passphrase: PASS, scrypt: FAST_SCRYPT });
  const opened = await openVault({ dataDir, passphrase: PASS, checkpointEvery: opts.checkpointEvery, approvalTimeoutMs: opts.approvalTimeoutMs, backends: opts.backends });
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
