/**
 * Creating a vault (`custos init`) and opening it (`custos serve`): the data directory, the
 * sealed root key, the keys derived from it, and the admin token.
 *
 * Data directory (0700): custos.db (SQLite, 0600; SQLite gives its -wal/-shm the same mode)
 * and custos.toml (0600). The seal record, the vault id and the audit public key live in the
 * database's meta table, so one file holds everything a backup needs.
 *
 * With `[store] url = "postgresql://…"` in custos.toml the database is PostgreSQL instead,
 * shared by every node whose data directory names it; each node keeps its own custos.anchor
 * (the newest head it has seen), so each refuses a database older than what it saw itself.
 */
import { fsyncDir } from '../core/files.js';
import type { GuardPolicy } from '../accounts/guard.js';
import type { SessionLimits } from './sessions.js';
import { chmodSync, closeSync, copyFileSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { CustosError } from '../core/errors.js';
import { bytesToHex, hexToBytes, utf8, wipe } from '../core/bytes.js';
import type { Principal } from '../core/types.js';
import { deriveSubkey, type ScryptParams } from '../crypto/kdf.js';
import { parse as parseToml } from 'smol-toml';
import { SqliteStore } from '../store/sqlite.js';
import type { PostgresStore } from '../store/postgres.js';
import { parsePostgresUrl } from '../store/postgres-url.js';
import type { Store } from '../store/store.js';
import { PassphraseSeal, parseSealRecord, type SealRecord } from '../keystore/seal.js';
import { sealToShares } from '../keystore/shares.js';
import { hsmRootAd, type RootWrapper } from '../keystore/hsm-seal.js';
import { Keyring } from '../keystore/keyring.js';
import { SoftwareBackend } from '../backends/software/software.js';
import { Backends, type Backend } from '../backends/backend.js';
import { AuditSigner, chainHash, verifyChain } from '../audit/chain.js';
import { ANCHOR_FILE, AnchorKeeper, anchorNow, fileAnchorPlace, readAnchor, writeAnchorFile, type AnchorPlace } from '../audit/anchor.js';
import { RowMac } from '../keystore/row-mac.js';
import { GroupCommitter } from './commit.js';
import { Vault, type VaultMetrics } from './vault.js';
import { checkDatabase } from './integrity.js';
import { hashToken } from '../accounts/credentials.js';

export type { OpenMode } from './integrity.js';

export const DB_FILE = 'custos.db';
export const CONFIG_FILE = 'custos.toml';
export const SYSTEM: Principal = { id: 'system', kind: 'system' };

export const DEFAULT_CONFIG_TOML = `# Custos configuration. Flags given to \`custos serve\` override these values.

[api]
# Plain HTTP binds to loopback only. For another address, give a certificate and its key
# (PEM; relative paths are under the data directory): \`custos tls init\` makes a first pair.
host = "127.0.0.1"
port = 8200
# tls_cert = "tls/server-chain.pem"
# tls_key = "tls/server.key"

[[ssh_agent]]
# An ssh-agent socket whose keys live in the vault (export SSH_AUTH_SOCK=<data dir>/<socket>).
# Repeat the [[ssh_agent]] table for more sockets: each is its own principal with its own keys.
enabled = false
name = "default"              # the principal is ssh-agent:<name>
socket = "agent/agent.sock"   # relative to the data directory
keys = []                     # vault key labels (or patterns like "ssh-*") the agent offers
allow_sha1 = true             # legacy ssh-rsa signatures, asked for by OpenSSH 9.2's ssh-add -T
allow_confirm = false         # accept ssh-add -c keys: each use then waits for \`custos approve\`

# CometBFT validators: Custos dials each node's priv_validator_laddr. Uncomment and repeat.
# [[privval]]
# name = "cosmoshub"
# chain_id = "cosmoshub-4"
# address = "tcp://127.0.0.1:26659"      # or unix:///path/to/privval.sock
# key = "cosmos-val"                      # consensus key (custos keys import --format cometbft)
# identity_key = "cosmos-val-identity"    # ed25519 key for SecretConnection (tcp:// only)
# dialect = "v0.38"                       # v0.38 (also v0.39/v0.40) or v1
# allow_sign_bytes = false                # v1 SignBytes: arbitrary bytes with the consensus key

[approvals]
timeout_seconds = 60          # how long a request waits for approval before it is refused

[audit]
# A signed checkpoint of the audit chain is written after this many entries (and at shutdown).
checkpoint_every = 1000
# How often custos.anchor (the signed head, beside the database) follows the log; 0: only at
# start and clean stop. A database shorter or older than its anchor is refused.
anchor_interval_seconds = 1

[unseal]
# Refused unseal shares: more than max_failures within window_seconds are answered 429.
max_failures = 10
window_seconds = 60

[accounts]
# End users' logins (README "Accounts"): max_failures within window_seconds lock a user name
# for lock_seconds (0: until an operator unlocks it); waits double up to max_delay_seconds; an
# address may fail address_max_failures times per window. Sessions idle out and end.
max_failures = 5
window_seconds = 900
lock_seconds = 900
max_delay_seconds = 60
address_max_failures = 50
session_idle_seconds = 900
session_max_seconds = 43200

[log]
# trace | debug | info | warn | error
level = "info"

# [lightning]
# Where Lightning state records are streamed before they commit (README "Lightning"): a
# directory (relative to this one), an https:// endpoint taking PUT, or a postgresql:// URL.
# backup = "lightning-backup"
# backup_authorization_file = "lightning-backup-auth"
`;


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


export interface InitOptions {
  dataDir: string;
  /** Seal under a passphrase (the default)... */
  passphrase?: Uint8Array;
  scrypt?: ScryptParams;
  /** ...or under N operator shares of which T unseal... */
  shares?: { shares: number; threshold: number };
  /** ...or under an AES key in a PKCS#11 token, with `shares` as recovery shares. */
  hsm?: RootWrapper;
  /** A PostgreSQL database (empty) instead of the SQLite file; written to custos.toml as [store] url. */
  storeUrl?: string;
}

export interface InitResult {
  vaultId: string;
  /** Ed25519 key that signs audit checkpoints; keep it outside the vault to verify the log. */
  auditPublicKey: string;
  /** Shown to the operator once; only its SHA-256 is stored. */
  adminToken: string;
  /** Operator shares (or HSM recovery shares), one line each: hand each to its holder once. */
  shareLines?: string[];
}

async function makeSealRecord(opts: InitOptions, root: Uint8Array, vaultId: string): Promise<{ record: SealRecord; shareLines?: string[] }> {
  if (opts.hsm) {
    if (!opts.shares) throw new CustosError('bad_request', 'An HSM seal needs recovery shares (--shares N --threshold T) for the day the token is lost.');
    const recovery = await sealToShares(root, vaultId, opts.shares.shares, opts.shares.threshold, 'recovery');
    const wrappedRoot = await opts.hsm.wrap(root, hsmRootAd(vaultId));
    return { record: { kind: 'hsm', tokenLabel: opts.hsm.tokenLabel, keyLabel: opts.hsm.keyLabel, wrappedRoot: Buffer.from(wrappedRoot).toString('base64'), recovery: recovery.record }, shareLines: recovery.lines };
  }
  if (opts.shares) {
    const { record, lines } = await sealToShares(root, vaultId, opts.shares.shares, opts.shares.threshold);
    return { record: { kind: 'shares', shares: record }, shareLines: lines };
  }
  if (!opts.passphrase) throw new CustosError('bad_request', 'Choose a seal: a passphrase, operator shares or an HSM.');
  const seal = new PassphraseSeal(opts.passphrase, opts.scrypt);
  try {
    return { record: await seal.seal(root, vaultId) };
  } finally {
    seal.destroy();
  }
}

export async function initVault(opts: InitOptions): Promise<InitResult> {
  if (opts.storeUrl) return initVaultOnServer(opts, opts.storeUrl);
  const dbPath = join(opts.dataDir, DB_FILE);
  const exists = () => new CustosError('vault_exists', `A vault already exists in ${opts.dataDir}; nothing was changed. To start over, move that directory away first.`);
  if (existsSync(dbPath)) throw exists();
  prepareDataDir(opts.dataDir);
  for (const f of readdirSync(opts.dataDir)) {
    if (f.startsWith(`.${DB_FILE}.init-`)) rmSync(join(opts.dataDir, f), { force: true }); // from an init that was killed
  }
  // Built under a temporary name and linked into place only when complete, so an init that
  // is interrupted (Ctrl-C during scrypt, a crash) never leaves a half-made custos.db.
  const tmpPath = join(opts.dataDir, `.${DB_FILE}.init-${randomBytes(6).toString('hex')}`);
  const store = SqliteStore.open(tmpPath);
  let linked = false;
  try {
    await store.migrate();
    const made = await populate(store, opts);
    // Closing the last connection folds the WAL into the file and removes it.
    await store.close();
    try {
      linkSync(tmpPath, dbPath); // atomic, and fails if another init won the race
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw exists();
      throw e;
    }
    linked = true;
    return finishDataDir(opts, made, DEFAULT_CONFIG_TOML);
  } finally {
    await store.close();
    for (const f of [tmpPath, `${tmpPath}-wal`, `${tmpPath}-shm`]) rmSync(f, { force: true });
    if (linked) fsyncDir(opts.dataDir);
  }
}

/**
 * A vault in a PostgreSQL database: the database must hold no Custos tables yet (two inits
 * racing on one database: one creates them, the other is refused before writing a row).
 */
async function initVaultOnServer(opts: InitOptions, url: string): Promise<InitResult> {
  refuseUsedDataDir(opts.dataDir);
  prepareDataDir(opts.dataDir);
  const store = await (await import('../store/postgres.js')).PostgresStore.open(url);
  try {
    await store.migrate();
    if (!store.createdSchema) {
      throw new CustosError(
        'vault_exists',
        `The database ${store.path} already holds Custos tables; nothing was changed. To add this machine as another node of that vault, run \`custos init --join --store-url …\`; to start over, drop and create the database (it must hold nothing you need).`,
      );
    }
    const made = await populate(store, opts);
    await store.close();
    return finishDataDir(opts, made, storeConfigToml(url));
  } finally {
    await store.close();
  }
}

/** A node on a shared database starts from a data directory that holds no vault's files. */
function refuseUsedDataDir(dataDir: string): void {
  if ([CONFIG_FILE, ANCHOR_FILE, DB_FILE].some((f) => existsSync(join(dataDir, f)))) {
    throw new CustosError('vault_exists', `${dataDir} already holds a vault's files; nothing was changed. Give a new data directory for this node.`);
  }
}

/** The default config with `[store] url` set: what a node on a PostgreSQL database starts from. */
export function storeConfigToml(url: string): string {
  return DEFAULT_CONFIG_TOML.replace(/^\[api\]$/m, `[store]\n# The shared PostgreSQL database (several hosts: host1:5432,host2:5432 with\n# target_session_attrs=read-write). A password may instead come from PGPASSWORD.\nurl = ${JSON.stringify(url)}\n\n[api]`);
}

interface Made {
  vaultId: string;
  adminToken: string;
  auditSigner: AuditSigner;
  shareLines?: string[];
  head: { seq: number; hash: Uint8Array };
  digest: Awaited<ReturnType<Store['rowsDigest']>>['digest'];
}

/** Fills a new, migrated database: the seal, the row MACs' counts, the meta rows, the admin token. */
async function populate(store: Store, opts: InitOptions): Promise<Made> {
  const vaultId = randomUUID();
  const root = new Uint8Array(randomBytes(32));
  const rowMac = new RowMac(root, vaultId);
  try {
    const { record: sealRecord, shareLines } = await makeSealRecord(opts, root, vaultId);
    const auditSeed = deriveSubkey(root, utf8(vaultId), 'custos/v1/audit-checkpoint');
    const auditSigner = new AuditSigner(auditSeed, vaultId);
    wipe(auditSeed);
    store.setRowAuthenticator(rowMac, chainHash);
    await store.sealRows(); // the per-table counts, from zero
    await store.initMeta({
      vault_id: vaultId,
      seal: JSON.stringify(sealRecord),
      audit_public_key: bytesToHex(auditSigner.publicKey),
      created_at: new Date().toISOString(),
      // Never absent from here on (store/rows.ts): deleting it with the documents is caught.
      policy_generation: '0',
    });
    const adminToken = `custos_${randomBytes(32).toString('base64url')}`;
    const committer = new GroupCommitter(store, auditSigner);
    await committer.commit({
      mutations: [{ kind: 'insertToken', token: { id: `tok_${randomBytes(8).toString('hex')}`, name: 'admin', hash: hashToken(adminToken), role: 'admin', createdAt: new Date().toISOString(), terms: {} } }],
      audit: [{ requestId: randomUUID(), principal: SYSTEM.id, operation: 'init', keyId: null, keyLabel: null, outcome: 'ok', reason: null, details: sealDetails(vaultId, sealRecord) }],
    });
    await committer.close();
    // The first anchor: from now on a database shorter than this, or without it, is refused.
    const { head, digest } = await store.rowsDigest();
    return { vaultId, adminToken, auditSigner, head, digest, ...(shareLines ? { shareLines } : {}) };
  } finally {
    wipe(root);
    rowMac.destroy();
  }
}

function finishDataDir(opts: InitOptions, made: Made, configToml: string): InitResult {
  const { vaultId, head, digest, auditSigner } = made;
  writeAnchorFile(join(opts.dataDir, ANCHOR_FILE), { vaultId, seq: head.seq, hash: head.hash, ts: new Date().toISOString(), clean: true, rows: digest }, auditSigner, auditSigner.publicKey);
  const configPath = join(opts.dataDir, CONFIG_FILE);
  if (!existsSync(configPath)) writeFileSync(configPath, configToml, { mode: 0o600 });
  return { vaultId, adminToken: made.adminToken, auditPublicKey: bytesToHex(auditSigner.publicKey), ...(made.shareLines ? { shareLines: made.shareLines } : {}) };
}

/** What the audit log says about a seal: its kind and shape, never anything secret. */
export function sealDetails(vaultId: string, r: SealRecord): Record<string, string | number> {
  if (r.kind === 'passphrase') return { vault_id: vaultId, seal: 'passphrase', kdf: r.kdf };
  if (r.kind === 'shares') return { vault_id: vaultId, seal: 'shares', shares: r.shares.shares, threshold: r.shares.threshold };
  return { vault_id: vaultId, seal: 'hsm', token: r.tokenLabel, key: r.keyLabel, recovery_shares: r.recovery.shares, recovery_threshold: r.recovery.threshold };
}

export interface OpenOptions {
  dataDir: string;
  /** Lightning state records: the backup target they are streamed to, and metrics. */
  lightning?: import('./core.js').VaultDeps['lightning'];
  /** For a passphrase seal; or give `root` unsealed by shares or an HSM. */
  passphrase?: Uint8Array;
  root?: Uint8Array;
  checkpointEvery?: number;
  metrics?: VaultMetrics & { batch?(units: number, seconds: number): void };
  /** How long a request needing approval waits (default 60 s). */
  approvalTimeoutMs?: number;
  /** Failed authentications per source address per window before 429 (default 20 per 60 s). */
  authLimits?: { maxFailures: number; windowSeconds: number };
  /** Password-guessing limits for account logins (default: 5 failures in 15 minutes lock a user name). */
  loginGuard?: GuardPolicy;
  /** Account sessions' idle and absolute lifetimes (default 15 minutes and 12 hours). */
  sessionLimits?: SessionLimits;
  /** Backends beside the software one (PKCS#11 tokens); closed with the vault. */
  backends?: Backend[];
  /** How often the audit anchor file follows the head while serving (default 1000 ms; 0: only at open and stop). */
  anchorIntervalMs?: number;
  /** Places that keep an anchor besides the file (the token of an HSM-sealed vault). */
  anchorPlaces?: AnchorPlace[];
  /** An anchor that could not be written (disk full, token gone): reported, the log itself is durable. */
  onAnchorError?(e: Error, where: string): void;
  /**
   * `custos audit accept-database`: serve this database although its anchor is newer or
   * missing (a deliberate restore from a backup); every other check still applies, and the
   * decision is audited.
   */
  acceptRollback?: boolean;
  /** `custos upgrade`: add row MACs to a database from before them (never done by `serve`). */
  upgrade?: boolean;
  /** The PostgreSQL database (else the data directory's custos.toml says, else its SQLite file). */
  storeUrl?: string;
}

export interface OpenVault {
  vault: Vault;
  store: Store;
  vaultId: string;
  auditPublicKey: Uint8Array;
  close(): Promise<void>;
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

/**
 * Prepares a new node's data directory for a vault already in a PostgreSQL database: the
 * config naming it, and a copy of an existing node's anchor (`anchorFrom`, its custos.anchor),
 * so that the new node refuses from its first start any database older than what that node
 * had seen. Nothing is written to the database; the node's first `serve` (with the seal's
 * passphrase, shares or HSM) checks the anchor's signature and the database as every start does.
 */
export async function joinVault(dataDir: string, url: string, anchorFrom: string): Promise<{ vaultId: string; auditPublicKey: string; anchorSeq: number }> {
  refuseUsedDataDir(dataDir);
  const { store, vaultId, auditPublicKey } = await openStoreOnly(dataDir, true, url);
  let anchor: Awaited<ReturnType<typeof readAnchor>>;
  try {
    // Checked against the audit key the database names; `serve` checks it again against the
    // key the root derives, so a database that lies about its key gains nothing here.
    anchor = await readAnchor(fileAnchorPlace(anchorFrom), vaultId, auditPublicKey);
  } finally {
    await store.close();
  }
  if (!anchor) throw new CustosError('bad_request', `${anchorFrom} does not exist: give the custos.anchor of a node already serving this vault (copy it over a trusted channel).`);
  prepareDataDir(dataDir);
  copyFileSync(anchorFrom, join(dataDir, ANCHOR_FILE));
  chmodSync(join(dataDir, ANCHOR_FILE), 0o600);
  writeFileSync(join(dataDir, CONFIG_FILE), storeConfigToml(url), { mode: 0o600 });
  fsyncDir(dataDir);
  return { vaultId, auditPublicKey: bytesToHex(auditPublicKey), anchorSeq: anchor.seq };
}

/** Where a vault's anchor lives: beside its database. */
export const anchorPath = (dataDir: string): string => join(dataDir, ANCHOR_FILE);

/** Unseals the vault in `dataDir`. A wrong passphrase throws `wrong_passphrase` and writes nothing. */
export async function openVault(opts: OpenOptions): Promise<OpenVault> {
  const { store, vaultId, auditPublicKey } = await openStoreOnly(opts.dataDir, false, opts.storeUrl);
  const seal = opts.passphrase ? new PassphraseSeal(opts.passphrase) : null;
  let root: Uint8Array | undefined;
  let rowMac: RowMac | undefined;
  let committer: GroupCommitter | undefined;
  try {
    const record = parseSealRecord(await store.getMeta('seal'));
    if (opts.root) root = Uint8Array.from(opts.root);
    else if (seal) root = await seal.unseal(record, vaultId);
    else throw new CustosError('vault_sealed', 'The vault is sealed: give its passphrase, or unseal it with operator shares.');
    const auditSeed = deriveSubkey(root, utf8(vaultId), 'custos/v1/audit-checkpoint');
    const auditSigner = new AuditSigner(auditSeed, vaultId);
    wipe(auditSeed);
    if (bytesToHex(auditSigner.publicKey) !== bytesToHex(auditPublicKey)) {
      throw new CustosError('database_corrupt', 'The audit public key stored in the database does not belong to this vault; the database was altered. Restore it from a backup.');
    }
    rowMac = new RowMac(root, vaultId, (table, pk, problem) => opts.metrics?.integrityAlarm?.(table, problem, pk));
    const makeCommitter = () => (committer ??= new GroupCommitter(store, auditSigner, opts.checkpointEvery ?? 1000, opts.metrics?.batch?.bind(opts.metrics)));
    const places = [fileAnchorPlace(anchorPath(opts.dataDir), opts.anchorIntervalMs ?? 1000), ...(opts.anchorPlaces ?? [])];
    await checkDatabase(store, places, vaultId, auditSigner, rowMac, makeCommitter, { acceptRollback: opts.acceptRollback, upgrade: opts.upgrade }, (e, where) => opts.onAnchorError?.(e, where));
    // Vouch for what was just verified: a process killed before its next checkpoint (SIGKILL,
    // power loss) would otherwise leave every later start re-verifying an ever longer tail.
    const head = await store.verifiedHead();
    const checkpoints = await store.checkpoints();
    if (head.seq > (checkpoints[checkpoints.length - 1]?.seq ?? 0)) await store.putCheckpoint(auditSigner.checkpoint(head, new Date().toISOString()));
    const anchors = new AnchorKeeper(store, places, auditSigner, auditPublicKey, (e, p) => opts.onAnchorError?.(e, p.where));
    await anchorNow(store, places, auditSigner, auditPublicKey, false, (e, p) => opts.onAnchorError?.(e, p.where));
    anchors.start();
    const vault = new Vault({ store, keyring: new Keyring(root, vaultId), backend: new Backends(new SoftwareBackend(), opts.backends ?? []), committer: makeCommitter(), auditCheck: () => verifyChain(store, vaultId, auditPublicKey, { auth: rowMac!, interleave: 500 }), metrics: opts.metrics, approvalTimeoutMs: opts.approvalTimeoutMs, ...(opts.lightning ? { lightning: opts.lightning } : {}), ...(opts.authLimits ? { authLimits: opts.authLimits } : {}), accounts: { key: deriveSubkey(root, utf8(vaultId), 'custos/v1/accounts'), vaultId, ...(opts.loginGuard ? { guard: opts.loginGuard } : {}), ...(opts.sessionLimits ? { sessions: opts.sessionLimits } : {}) } });
    try {
      await vault.loadPolicies();
      await vault.migratePurposes();
    } catch (e) {
      await anchors.stop(false).catch(() => undefined);
      await vault.close().catch(() => undefined);
      throw e;
    }
    const macs = rowMac;
    return {
      vault,
      store,
      vaultId,
      auditPublicKey,
      close: async () => {
        // The last word, after the last commit and before a token backend closes: an anchor
        // of the final head with the digest of every protected row.
        await vault.close(() => anchors.stop(true).catch((e) => opts.onAnchorError?.(e as Error, 'the anchors')));
        macs.destroy();
        await store.close();
      },
    };
  } catch (e) {
    rowMac?.destroy();
    await store.close();
    throw e;
  } finally {
    wipe(root);
    seal?.destroy();
  }
}
