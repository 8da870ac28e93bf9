/**
 * Loose vault files are refused, with the command that fixes them, and never chmodded: the
 * real `custos` executable against a real data directory whose modes and owners are changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { custos, serve } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';
import { EXIT } from '../../src/cli/exit.js';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

/** Starts `custos serve` and reports whether it listened (then stops it) or exited, with what code and output. */
async function startOutcome(args: string[]): Promise<{ started: boolean; code: number | null; stderr: string }> {
  try {
    const s = await serve(args, { CUSTOS_PASSPHRASE: undefined });
    const code = await s.stop();
    return { started: true, code, stderr: s.stderr() };
  } catch (e) {
    const x = e as { exitCode?: number | null; output?: string };
    if (x.output === undefined) throw e;
    return { started: false, code: x.exitCode ?? null, stderr: x.output };
  }
}

const modeOf = (p: string) => statSync(p).mode & 0o777;

interface LooseCase {
  what: string;
  /** The file or directory made loose. */
  path: () => string;
  loosen: (p: string) => void;
  tighten: (p: string) => void;
  fix: (p: string) => string;
  rootOnly?: boolean;
}

test('serve refuses a loose data directory, database, WAL, config or passphrase file with the chmod/chown that fixes it, and changes no mode', async (t) => {
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    const secrets = join(dir, 'secrets');
    mkdirSync(secrets, { mode: 0o700 });
    const passFile = join(secrets, 'pass');
    writeFileSync(passFile, 'permissions test passphrase\n', { mode: 0o600 });
    const init = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12', '--passphrase-file', passFile], { CUSTOS_PASSPHRASE: undefined });
    assert.equal(init.status, 0, init.stderr);
    const inDir = (f: string) => () => join(dataDir, f);
    const chmod = (mode: number) => (p: string) => chmodSync(p, mode);
    const chown = (uid: number) => (p: string) => chownSync(p, uid, uid);
    const cases: LooseCase[] = [
      { what: 'a data directory open to all (0777)', path: () => dataDir, loosen: chmod(0o777), tighten: chmod(0o700), fix: (p) => `chmod 700 ${p}` },
      { what: 'a data directory open to its group (0750)', path: () => dataDir, loosen: chmod(0o750), tighten: chmod(0o700), fix: (p) => `chmod 700 ${p}` },
      { what: 'a data directory owned by another user', path: () => dataDir, loosen: chown(NOBODY), tighten: chown(0), fix: (p) => `chown root ${p}`, rootOnly: true },
      { what: 'a world-readable database (0644)', path: inDir('custos.db'), loosen: chmod(0o644), tighten: chmod(0o600), fix: (p) => `chmod 600 ${p}` },
      { what: 'a database owned by another user', path: inDir('custos.db'), loosen: chown(NOBODY), tighten: chown(0), fix: (p) => `chown root ${p}`, rootOnly: true },
      {
        what: 'a world-readable WAL left by an earlier run',
        path: inDir('custos.db-wal'),
        loosen: (p) => writeFileSync(p, '', { mode: 0o644 }),
        tighten: (p) => rmSync(p),
        fix: (p) => `chmod 600 ${p}`,
      },
      { what: 'a group-readable custos.toml (0640)', path: inDir('custos.toml'), loosen: chmod(0o640), tighten: chmod(0o600), fix: (p) => `chmod 600 ${p}` },
      { what: 'a world-readable passphrase file (0644)', path: () => passFile, loosen: chmod(0o644), tighten: chmod(0o600), fix: (p) => `chmod 600 ${p}` },
      { what: 'a group-readable passphrase file (0640)', path: () => passFile, loosen: chmod(0o640), tighten: chmod(0o600), fix: (p) => `chmod 600 ${p}` },
      { what: 'a passphrase file owned by another user', path: () => passFile, loosen: chown(NOBODY), tighten: chown(0), fix: (p) => `chown root ${p}`, rootOnly: true },
    ];
    for (const c of cases) {
      if (c.rootOnly && !isRoot) {
        t.diagnostic(`skipped (needs root to give a file to another user): ${c.what}`);
        continue;
      }
      const p = c.path();
      c.loosen(p);
      const before = statSync(p);
      try {
        const r = await startOutcome(['--data-dir', dataDir, '--passphrase-file', passFile]);
        assert.equal(r.started, false, `serve started with ${c.what}`);
        assert.equal(r.code, EXIT.usage, `${c.what}: ${r.stderr}`);
        assert.ok(r.stderr.includes(`Run \`${c.fix(p)}\``), `${c.what}: no "${c.fix(p)}" in: ${r.stderr}`);
        const after = statSync(p);
        assert.equal(after.mode, before.mode, `${c.what}: the mode was changed`);
        assert.equal(after.uid, before.uid, `${c.what}: the owner was changed`);
        // Refused before the database was opened: no -wal/-shm appeared, loose or not.
        if (!p.endsWith('-wal')) assert.deepEqual(readdirSync(dataDir).filter((f) => f.endsWith('-wal') || f.endsWith('-shm')), [], c.what);
      } finally {
        c.tighten(p);
      }
    }

    // A --config kept elsewhere may be readable by all (it holds no secret), not writable by others.
    const etc = join(dir, 'custos.toml');
    writeFileSync(etc, '[log]\nlevel = "info"\n');
    chmodSync(etc, 0o664); // not through writeFileSync's mode, which the umask would narrow
    const r = await startOutcome(['--data-dir', dataDir, '--passphrase-file', passFile, '--config', etc]);
    assert.equal(r.started, false);
    assert.equal(r.code, EXIT.usage);
    assert.ok(r.stderr.includes(`Run \`chmod go-w ${etc}\``), r.stderr);
    assert.equal(modeOf(etc), 0o664);
    chmodSync(etc, 0o644);

    // The layout init makes starts, and SQLite's -wal/-shm come out 0600 like the database.
    const s = await serve(['--data-dir', dataDir, '--passphrase-file', passFile, '--config', etc], { CUSTOS_PASSPHRASE: undefined });
    try {
      assert.equal(modeOf(dataDir), 0o700);
      const files = readdirSync(dataDir);
      assert.ok(files.includes('custos.db-wal') && files.includes('custos.db-shm'), files.join(' '));
      for (const f of files) assert.equal(modeOf(join(dataDir, f)), 0o600, f);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  } finally {
    cleanup();
  }
});

test('init refuses an existing loose directory instead of chmodding it, and creates a missing one 0700', () => {
  const { dir, cleanup } = tempDir();
  try {
    const loose = join(dir, 'loose');
    mkdirSync(loose);
    chmodSync(loose, 0o755);
    const r = custos(['init', '--data-dir', loose, '--scrypt-log-n', '12'], { CUSTOS_PASSPHRASE: 'permissions test passphrase' });
    assert.equal(r.status, EXIT.usage, r.stderr);
    assert.ok(r.stderr.includes(`Run \`chmod 700 ${loose}\``), r.stderr);
    assert.equal(modeOf(loose), 0o755, 'init changed the mode of an existing directory');
    assert.equal(existsSync(join(loose, 'custos.db')), false);
    chmodSync(loose, 0o700);
    assert.equal(custos(['init', '--data-dir', loose, '--scrypt-log-n', '12'], { CUSTOS_PASSPHRASE: 'permissions test passphrase' }).status, 0);
    const fresh = join(dir, 'a', 'b');
    assert.equal(custos(['init', '--data-dir', fresh, '--scrypt-log-n', '12'], { CUSTOS_PASSPHRASE: 'permissions test passphrase' }).status, 0);
    assert.equal(modeOf(fresh), 0o700);
  } finally {
    cleanup();
  }
});

test('init refuses a passphrase file others can read, and operator rekey a loose database', () => {
  const { dir, cleanup } = tempDir();
  try {
    const passFile = join(dir, 'pass');
    writeFileSync(passFile, 'permissions test passphrase\n');
    chmodSync(passFile, 0o644);
    const r = custos(['init', '--data-dir', join(dir, 'p'), '--scrypt-log-n', '12', '--passphrase-file', passFile], { CUSTOS_PASSPHRASE: undefined });
    assert.equal(r.status, EXIT.usage, r.stderr);
    assert.ok(r.stderr.includes(`Run \`chmod 600 ${passFile}\``), r.stderr);
    assert.equal(existsSync(join(dir, 'p', 'custos.db')), false);

    const dataDir = join(dir, 'v');
    const shareDir = join(dir, 'shares');
    const init = custos(['init', '--data-dir', dataDir, '--shares', '2', '--threshold', '2', '--share-dir', shareDir], { CUSTOS_PASSPHRASE: undefined });
    assert.equal(init.status, 0, init.stderr);
    const db = join(dataDir, 'custos.db');
    chmodSync(db, 0o644);
    const shares = readdirSync(shareDir).map((f) => join(shareDir, f));
    const rk = custos(['operator', 'rekey', '--data-dir', dataDir, '--share-file', ...shares, '--shares', '2', '--threshold', '2']);
    assert.equal(rk.status, EXIT.usage, rk.stderr);
    assert.ok(rk.stderr.includes(`Run \`chmod 600 ${db}\``), rk.stderr);
    assert.equal(modeOf(db), 0o644);
  } finally {
    cleanup();
  }
});
