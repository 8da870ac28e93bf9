/**
 * The files a vault's secrets pass through must be the operator's alone, the way ssh refuses a
 * private key others can read ("UNPROTECTED PRIVATE KEY FILE!"): the data directory, custos.db
 * with its -wal and -shm (SQLite creates those with the database's own mode, so a 0644
 * database leaks its newest pages through a 0644 WAL), custos.toml, and a passphrase file.
 * A command that would use a loose one stops, with the chmod or chown that fixes it. Nothing
 * here changes a mode: a silent chmod would hide that the file was open, and whoever could
 * read it may already have.
 */
import { existsSync, statSync, type Stats } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { CustosError } from '../core/errors.js';
import { CONFIG_FILE, DB_FILE, prepareDataDir } from '../vault/open.js';

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CustosError('config_invalid', `Cannot check the permissions of ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`);
  }
}

/** The user running custos, as chown spells it (the uid when there is no passwd entry). */
function runningUser(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid!());
  }
}

const octal = (st: Stats) => `0${(st.mode & 0o777).toString(8)}`;

function assertOwner(st: Stats, path: string, what: string): void {
  if (st.uid === process.getuid!()) return;
  const user = runningUser();
  throw new CustosError('config_invalid', `${what} ${path} belongs to uid ${st.uid}, not to ${user} who runs custos; nothing was changed. Run \`chown ${user} ${path}\` (as root), or run custos as its owner.`);
}

/** A file only its owner, the user running custos, may read or write (a mode like 0600 or 0400). */
export function assertPrivateFile(path: string, what: string): void {
  if (typeof process.getuid !== 'function') return;
  const st = statOrNull(path);
  // Absent: the command's own error says so. Not a regular file: a pipe such as
  // `--passphrase-file <(pass show custos)` is not a file anyone else can open later.
  if (!st || !st.isFile()) return;
  assertOwner(st, path, what);
  if ((st.mode & 0o077) !== 0) {
    throw new CustosError('config_invalid', `${what} ${path} is open to other users (mode ${octal(st)}); nothing was changed. Run \`chmod 600 ${path}\` and try again.`);
  }
}

/**
 * A configuration file kept outside the data directory (say /etc/custos/custos.toml) holds no
 * secret (PINs are never in it) and may be readable by all, but whoever may change it decides
 * what the vault serves and to whom: it must belong to you or root and be writable by its owner only.
 */
export function assertConfigFile(path: string): void {
  if (typeof process.getuid !== 'function') return;
  const st = statOrNull(path);
  if (!st || !st.isFile()) return;
  if (st.uid !== 0) assertOwner(st, path, 'The configuration file');
  if ((st.mode & 0o022) !== 0) {
    throw new CustosError('config_invalid', `The configuration file ${path} may be changed by other users (mode ${octal(st)}); nothing was changed. Run \`chmod go-w ${path}\` and try again.`);
  }
}

/**
 * Before a command opens the vault for writing (`serve`, `operator rekey`): the data directory
 * 0700 and custos.db, its -wal/-shm and custos.toml 0600, all the user's; `config` is a
 * --config file, checked as a configuration file when it lies elsewhere.
 */
export function assertVaultLayout(dataDir: string, config?: string): void {
  // No directory: opening the vault says "no vault here" with its own sentence.
  if (!existsSync(dataDir)) return;
  prepareDataDir(dataDir); // an existing directory is only checked, never changed
  const files: Array<[string, string]> = [
    [DB_FILE, 'The vault database'],
    [`${DB_FILE}-wal`, "The vault database's write-ahead log"],
    [`${DB_FILE}-shm`, "The vault database's shared-memory index"],
    [CONFIG_FILE, 'The configuration file'],
  ];
  for (const [name, what] of files) assertPrivateFile(join(dataDir, name), what);
  if (config !== undefined && resolve(config) !== join(dataDir, CONFIG_FILE)) assertConfigFile(config);
}
