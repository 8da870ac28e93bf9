/**
 * Operator commands on a stopped (or, for a re-key, serving) vault: replacing the operator
 * shares, and opening the vault once for an operator's decision (upgrade, accept-database).
 */
import { randomUUID } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { bytesToHex, utf8, wipe } from '../core/bytes.js';
import { deriveSubkey } from '../crypto/kdf.js';
import { parseSealRecord, type SealRecord } from '../keystore/seal.js';
import { rootFromShares, sealToShares } from '../keystore/shares.js';
import { RowMac } from '../keystore/row-mac.js';
import type { Vault } from './vault.js';
import { AuditSigner, chainHash } from '../audit/chain.js';
import { anchorNow, fileAnchorPlace, type AnchorPlace } from '../audit/anchor.js';
import { GroupCommitter } from './commit.js';
import type { OpenMode } from './integrity.js';
import { anchorPath, openStoreOnly, openVault, sealDetails } from './open.js';

/**
 * Replaces a vault's operator shares (or an HSM seal's recovery shares) with a new set,
 * given `threshold` current shares. The root key, and so every stored key, stays as it is;
 * the old shares stop working. Works on a serving vault too: the seal record is one row.
 */
export async function rekeyShares(dataDir: string, currentLines: string[], next: { shares: number; threshold: number }): Promise<{ shareLines: string[] }> {
  const { store, vaultId, auditPublicKey } = await openStoreOnly(dataDir, false);
  let root: Uint8Array | undefined;
  try {
    const sealJson = await store.getMeta('seal');
    const record = parseSealRecord(sealJson);
    if (record.kind === 'passphrase') throw new CustosError('bad_request', 'This vault is sealed by a passphrase, not by operator shares; there are no shares to re-key.');
    const purpose = record.kind === 'shares' ? 'shares' : 'recovery';
    const current = record.kind === 'shares' ? record.shares : record.recovery;
    root = await rootFromShares(current, vaultId, currentLines, purpose);
    const auditSeed = deriveSubkey(root, utf8(vaultId), 'custos/v1/audit-checkpoint');
    const auditSigner = new AuditSigner(auditSeed, vaultId);
    wipe(auditSeed);
    if (bytesToHex(auditSigner.publicKey) !== bytesToHex(auditPublicKey)) throw new CustosError('database_corrupt', 'The shares open a root key that does not belong to this vault; the database was altered.');
    // The entry below is MACed like any other; and the anchor follows the head it makes.
    const rowMac = new RowMac(root, vaultId);
    store.setRowAuthenticator(rowMac, chainHash);
    const made = await sealToShares(root, vaultId, next.shares, next.threshold, purpose);
    const updated: SealRecord = record.kind === 'shares' ? { kind: 'shares', shares: made.record } : { ...record, recovery: made.record };
    const committer = new GroupCommitter(store, auditSigner);
    try {
      // The new record and its audit entry in one transaction; a concurrent re-key loses.
      await committer.commit({
        mutations: [{ kind: 'compareAndSetMeta', name: 'seal', expected: sealJson, value: JSON.stringify(updated) }],
        audit: [{ requestId: randomUUID(), principal: 'operator', operation: 'rekey_shares', keyId: null, keyLabel: null, outcome: 'ok', reason: null, details: sealDetails(vaultId, updated) }],
      });
    } finally {
      await committer.close();
    }
    await anchorNow(store, [fileAnchorPlace(anchorPath(dataDir))], auditSigner, auditPublicKey, false).catch(() => undefined);
    rowMac.destroy();
    return { shareLines: made.lines };
  } finally {
    wipe(root);
    await store.close();
  }
}

/**
 * Opens the vault once, for an operator's decision rather than to serve: `acceptRollback`
 * (`custos audit accept-database`: the database is older than its anchors, on purpose) or
 * `upgrade` (`custos upgrade`: add row MACs). Every other check of `serve` still applies, the
 * decision is audited, and new anchors are written to every place (the token's too).
 */
export async function openOnce(dataDir: string, unlock: { passphrase?: Uint8Array; root?: Uint8Array }, mode: OpenMode, anchorPlaces: AnchorPlace[] = [], act?: (vault: Vault) => Promise<void>): Promise<{ headSeq: number }> {
  const v = await openVault({ dataDir, ...unlock, ...mode, anchorPlaces, anchorIntervalMs: 0 });
  try {
    // An operator's one act on the opened vault (recovering an admin), audited as the system's.
    if (act) await act(v.vault);
    const head = await v.store.auditHead();
    return { headSeq: head.seq };
  } finally {
    await v.close();
  }
}

