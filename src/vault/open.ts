/**
 * Opening a vault (`custos serve`): the sealed root key, the keys derived from it, the checks
 * of the database against its anchors, and the vault served over it. Creating one is init.ts;
 * the data directory and its database are data-dir.ts.
 */
import type { GuardPolicy } from '../accounts/guard.js';
import type { SessionLimits } from './sessions.js';
import { CustosError } from '../core/errors.js';
import { bytesToHex, utf8, wipe } from '../core/bytes.js';
import { deriveSubkey } from '../crypto/kdf.js';
import type { Store } from '../store/store.js';
import { PassphraseSeal, parseSealRecord } from '../keystore/seal.js';
import { Keyring } from '../keystore/keyring.js';
import { SoftwareBackend } from '../backends/software/software.js';
import { Backends, type Backend } from '../backends/backend.js';
import { AuditSigner, verifyChain } from '../audit/chain.js';
import { AnchorKeeper, anchorNow, fileAnchorPlace, type AnchorPlace } from '../audit/anchor.js';
import { RowMac } from '../keystore/row-mac.js';
import { GroupCommitter } from './commit.js';
import { Vault, type VaultMetrics } from './vault.js';
import { checkDatabase } from './integrity.js';
import { anchorPath, openStoreOnly } from './data-dir.js';

export type { OpenMode } from './integrity.js';
export { anchorPath, CONFIG_FILE, DB_FILE, openStoreOnly, prepareDataDir, storeUrlIn } from './data-dir.js';
export { DEFAULT_CONFIG_TOML, storeConfigToml } from './default-config.js';
export { initVault, joinVault, sealDetails, SYSTEM } from './init.js';
export type { InitOptions, InitResult } from './init.js';

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
