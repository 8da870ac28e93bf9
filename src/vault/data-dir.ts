/**
 * A vault's data directory: its files, its mode, and the database it names.
 *
 * Data directory (0700): custos.db (SQLite, 0600; SQLite gives its -wal/-shm the same mode)
 * and custos.toml (0600). The seal record, the vault id and the audit public key live in the
 * database's meta table, so one file holds everything a backup needs.
 *
 * With `[store] url = "postgresql://…"` in custos.toml the database is PostgreSQL instead,
 * shared by every node whose data directory names it; each node keeps its own custos.anchor
 * (the newest head it has seen), so each refuses a database older than what it saw itself.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { parse as parseToml } from 'smol-toml';
import { CustosError } from '../core/errors.js';
import { hexToBytes } from '../core/bytes.js';
import { SqliteStore } from '../store/sqlite.js';
import type { PostgresStore } from '../store/postgres.js';
import { parsePostgresUrl } from '../store/postgres-url.js';
import type { Store } from '../store/store.js';
import { ANCHOR_FILE } from '../audit/anchor.js';

export const DB_FILE = 'custos.db';
export const CONFIG_FILE = 'custos.toml';

/**
 * Creates the directory 0700, or checks an existing one: it must belong to the user running
 * custos and be closed to group and others. A loose one is refused with the command that
 * fixes it, never chmodded here: a silent chmod would hide that the directory was open, and
 * whoever could read it may already have.
 */
export function prepareDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw new CustosError('config_invalid', `${dir} is not a directory; give a directory for the vault.`);
  if (typeof process.getuid !== 'function') return;
  const uid = process.getuid();
  if (st.uid !== uid) {
    let user = String(uid);
    try {
      user = userInfo().username;
    } catch {
      // No passwd entry for this uid (a container): chown takes the number as well.
    }
    throw new CustosError('config_invalid', `The data directory ${dir} belongs to uid ${st.uid}, not to ${user} who runs custos; nothing was changed. Run \`chown ${user} ${dir}\` (as root), or run custos as its owner.`);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new CustosError('config_invalid', `The data directory ${dir} is open to other users (mode 0${(st.mode & 0o777).toString(8)}); nothing was changed. Run \`chmod 700 ${dir}\` and try again.`);
  }
}

/** A node on a shared database starts from a data directory that holds no vault's files. */
export function refuseUsedDataDir(dataDir: string): void {
  if ([CONFIG_FILE, ANCHOR_FILE, DB_FILE].some((f) => existsSync(join(dataDir, f)))) {
    throw new CustosError('vault_exists', `${dataDir} already holds a vault's files; nothing was changed. Give a new data directory for this node.`);
  }
}

/**
 * The PostgreSQL URL the data directory's custos.toml names in `[store] url`, or null for the
 * embedded SQLite file. (The full config is checked by `serve`; this reads only the store.)
 */
export function storeUrlIn(dataDir: string): string | null {
  const path = join(dataDir, CONFIG_FILE);
  if (!existsSync(path)) return null;
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new CustosError('config_invalid', `${path}: not valid TOML (${(e as Error).message.split('\n')[0]}); fix it to find the vault's database.`);
  }
  const store = doc.store as { url?: unknown } | undefined;
  if (store === undefined) return null;
  if (typeof store !== 'object' || store === null || typeof store.url !== 'string') throw new CustosError('config_invalid', `${path}: [store] url must be a postgresql:// URL.`);
  try {
    parsePostgresUrl(store.url);
  } catch (e) {
    throw new CustosError('config_invalid', `${path}: [store] url: ${(e as Error).message}`);
  }
  return store.url;
}

/**
 * Opens the database at `dataDir` (its SQLite file, or the PostgreSQL database its config
 * names; `storeUrl` overrides) without unsealing, for read-only tools (`audit verify`).
 */
export async function openStoreOnly(dataDir: string, readonly = true, storeUrl?: string): Promise<{ store: Store; vaultId: string; auditPublicKey: Uint8Array }> {
  const url = storeUrl ?? storeUrlIn(dataDir);
  const dbPath = join(dataDir, DB_FILE);
  let store: Store;
  // Loaded only when named: SQLite users never pay for the PostgreSQL client.
  if (url) store = await (await import('../store/postgres.js')).PostgresStore.open(url);
  else {
    if (!existsSync(dbPath)) throw new CustosError('vault_not_found', `No vault in ${dataDir} (no ${DB_FILE}). Run \`custos init --data-dir ${dataDir}\` first.`);
    store = SqliteStore.open(dbPath, { readonly });
  }
  let vaultId: string | null;
  let pub: string | null;
  try {
    vaultId = await store.getMeta('vault_id');
    pub = await store.getMeta('audit_public_key');
  } catch (e) {
    await store.close();
    throw e;
  }
  if (!vaultId || !pub) {
    await store.close();
    throw new CustosError('vault_not_found', `${url ? (store as PostgresStore).path : dbPath} is not an initialised Custos vault. Run \`custos init\` first.`);
  }
  return { store, vaultId, auditPublicKey: hexToBytes(pub, 'audit public key') };
}

/** Where a vault's anchor lives: beside its database. */
export const anchorPath = (dataDir: string): string => join(dataDir, ANCHOR_FILE);
