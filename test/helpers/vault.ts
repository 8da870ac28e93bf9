/**
 * Test helper: a fresh vault in a temporary directory, with cheap scrypt parameters.
 * Call `cleanup()` in an `after` hook.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initVault, openVault, type OpenOptions, type OpenVault } from '../../src/vault/open.js';

export const TEST_PASSPHRASE = 'test-pass';
export const TEST_SCRYPT = { N: 2 ** 10, r: 8, p: 1 } as const;

export interface TestVault {
  dataDir: string;
  adminToken: string;
  vaultId: string;
  opened: OpenVault;
  passphrase: Uint8Array;
  /** Closes the vault and removes the directory; safe to call twice. */
  cleanup(): Promise<void>;
}

export async function makeTestVault(opts: Omit<OpenOptions, 'dataDir' | 'passphrase'> = {}): Promise<TestVault> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-test-'));
  const passphrase = new TextEncoder().encode(TEST_PASSPHRASE);
  const { adminToken, vaultId } = await initVault({ dataDir, passphrase: Uint8Array.from(passphrase), scrypt: { ...TEST_SCRYPT } });
  const opened = await openVault({ ...opts, dataDir, passphrase: Uint8Array.from(passphrase) });
  let closed = false;
  return {
    dataDir,
    adminToken,
    vaultId,
    opened,
    passphrase,
    async cleanup() {
      if (closed) return;
      closed = true;
      try {
        await opened.close();
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}
