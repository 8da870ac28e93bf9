/**
 * A throwaway SoftHSM2 installation for one test file: its own softhsm2.conf and token
 * directory in a temp folder, and tokens initialised with softhsm2-util.
 *
 * SoftHSM2 reads SOFTHSM2_CONF when the module initialises, and a process has one initialised
 * copy of the module (the library is shared). So: one `createSoftHsm` per test file (node:test
 * runs each file in its own process), created before the first token is opened. Several tokens
 * can live in that one directory (`addToken`); SoftHSM sees tokens created after it
 * initialised only once every token of the process has been closed (or a token recovers).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { requireTool } from './require.js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsm {
  module: string;
  /** The first token's label, user PIN and SO PIN. */
  label: string;
  pin: Uint8Array;
  soPin: string;
  conf: string;
  dir: string;
  tokenDir: string;
  /** Initialises another token in the same directory; returns its label. */
  addToken(label: string, pin?: string): string;
  /** The directory of the token with this label (SoftHSM names them by a UUID). */
  tokenPath(label: string): string;
  /** Re-initialises an existing token from another process: all its objects are erased. */
  reinitToken(label: string, pin?: string): void;
  /** Changes the user PIN from another process, as an operator would. */
  changePin(label: string, oldPin: string, newPin: string): void;
  cleanup(): void;
}

/** Returns null when SoftHSM2 is not installed (the test is then skipped; in CI it fails). */
export function createSoftHsm(t: TestContext, opts: { label?: string; pin?: string } = {}): SoftHsm | null {
  if (!requireTool(t, 'softhsm2-util', 'softhsm2')) return null;
  const dir = mkdtempSync(join(tmpdir(), 'custos-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  const conf = join(dir, 'softhsm2.conf');
  execFileSync('mkdir', ['-p', tokenDir]);
  writeFileSync(conf, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  // Before any module load in this process: SoftHSM reads it in C_Initialize.
  process.env.SOFTHSM2_CONF = conf;
  const soPin = '87654321';
  const userPin = opts.pin ?? '123456';
  const util = (args: string[]) => {
    const r = spawnSync('softhsm2-util', args, { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`softhsm2-util ${args[0]} failed: ${r.stderr || r.stdout}`);
  };
  const addToken = (label: string, pin = userPin) => {
    util(['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', soPin]);
    return label;
  };
  const tokenPath = (label: string) => {
    for (const d of readdirSync(tokenDir)) {
      try {
        // token.object holds the label in clear (padded to 32 bytes) among its attributes.
        if (readFileSync(join(tokenDir, d, 'token.object')).includes(Buffer.from(label.padEnd(32, ' ')))) return join(tokenDir, d);
      } catch {
        // Not a token directory (or moved away by a test).
      }
    }
    throw new Error(`no SoftHSM token directory for ${label}`);
  };
  const label = addToken(opts.label ?? 'custos-test');
  return {
    module: SOFTHSM_MODULE,
    label,
    pin: new Uint8Array(Buffer.from(userPin, 'utf8')),
    soPin,
    conf,
    dir,
    tokenDir,
    addToken,
    tokenPath,
    reinitToken: (l, pin = userPin) => util(['--init-token', '--token', l, '--label', l, '--pin', pin, '--so-pin', soPin]),
    changePin: (l, oldPin, newPin) => {
      // C_SetPIN in a separate process, through the same binding.
      const script = `
        const p = require('pkcs11js'); const m = new p.PKCS11(); m.load(${JSON.stringify(SOFTHSM_MODULE)});
        m.C_Initialize({ flags: p.CKF_OS_LOCKING_OK });
        const slot = m.C_GetSlotList(true).find((s) => m.C_GetTokenInfo(s).label.trimEnd() === ${JSON.stringify(l)});
        const s = m.C_OpenSession(slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
        m.C_Login(s, p.CKU_USER, ${JSON.stringify(oldPin)}); m.C_SetPIN(s, ${JSON.stringify(oldPin)}, ${JSON.stringify(newPin)});
        m.C_Logout(s); m.C_CloseSession(s); m.C_Finalize();`;
      const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8', cwd: process.cwd() });
      if (r.status !== 0) throw new Error(`changing the PIN failed: ${r.stderr}`);
    },
    // Retries: a call abandoned by a timeout test may still be writing into the directory.
    cleanup: () => rmSync(dir, { recursive: true, force: true, maxRetries: 10 }),
  };
}
