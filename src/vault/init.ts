/**
 * Creating a vault (`custos init`): a new root key sealed under a passphrase, operator shares
 * or an HSM, the database's first rows and anchor, the admin token, and the data directory's
 * config; or, with `--join`, a new node's data directory for a vault already in PostgreSQL.
 */
import { fsyncDir } from '../core/files.js';
import { chmodSync, copyFileSync, existsSync, linkSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { CustosError } from '../core/errors.js';
import { bytesToHex, utf8, wipe } from '../core/bytes.js';
import type { Principal } from '../core/types.js';
import { deriveSubkey, type ScryptParams } from '../crypto/kdf.js';
import { SqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';
import { PassphraseSeal, type SealRecord } from '../keystore/seal.js';
import { sealToShares } from '../keystore/shares.js';
import { hsmRootAd, type RootWrapper } from '../keystore/hsm-seal.js';
import { AuditSigner, chainHash } from '../audit/chain.js';
import { ANCHOR_FILE, fileAnchorPlace, readAnchor, writeAnchorFile } from '../audit/anchor.js';
import { RowMac } from '../keystore/row-mac.js';
import { GroupCommitter } from './commit.js';
import { hashToken } from '../accounts/credentials.js';
import { CONFIG_FILE, DB_FILE, openStoreOnly, prepareDataDir, refuseUsedDataDir } from './data-dir.js';
import { DEFAULT_CONFIG_TOML, storeConfigToml } from './default-config.js';

export const SYSTEM: Principal = { id: 'system', kind: 'system' };

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
