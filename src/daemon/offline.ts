/**
 * Operator commands that open a stopped vault once, outside `serve` (`custos upgrade`,
 * `custos audit accept-database`): the root comes from the passphrase, from operator or
 * recovery shares, or, for a vault sealed by an HSM, from its token as `serve` would get it,
 * and the token's copy of the audit anchor is checked and rewritten like the file's.
 */
import { join } from 'node:path';
import { CustosError } from '../core/errors.js';
import { wipe } from '../core/bytes.js';
import type { AnchorPlace } from '../audit/anchor.js';
import { hsmRootAd } from '../keystore/hsm-seal.js';
import { parseSealRecord } from '../keystore/seal.js';
import { rootFromShares } from '../keystore/shares.js';
import { CONFIG_FILE, openStoreOnly, type OpenMode } from '../vault/open.js';
import { openOnce } from '../vault/operator.js';
import type { Vault } from '../vault/vault.js';
import { loadConfig } from './config.js';
import { tokenAnchorPlace, tokenBackends, tokenRootWrapper } from './hsm.js';

export interface OfflineUnlock {
  passphrase?: Uint8Array;
  shareLines?: string[];
  /** The vault's configuration (for `[[pkcs11]]` and `[seal.pkcs11]`); default: custos.toml in the data directory. */
  configPath?: string;
}

export async function openOffline(dataDir: string, unlock: OfflineUnlock, mode: OpenMode, act?: (vault: Vault) => Promise<void>): Promise<{ headSeq: number }> {
  const { store, vaultId } = await openStoreOnly(dataDir, true);
  let record;
  try {
    record = parseSealRecord(await store.getMeta('seal'));
  } finally {
    await store.close();
  }
  const config = record.kind === 'hsm' ? loadConfig(unlock.configPath ?? join(dataDir, CONFIG_FILE), unlock.configPath !== undefined) : null;
  const tokens = config ? tokenBackends(config.pkcs11) : [];
  let root: Uint8Array | undefined;
  try {
    const places: AnchorPlace[] = [];
    const sp = config?.seal.pkcs11;
    const backend = sp ? tokens.find((t) => t.tokenName === sp.token) : undefined;
    if (record.kind === 'hsm' && backend && sp) {
      // The token keeps a copy of the anchor whichever way the root is rebuilt.
      places.push(tokenAnchorPlace(backend, vaultId, 0));
      if (!unlock.shareLines) root = await tokenRootWrapper(backend, record.tokenLabel, record.keyLabel).unwrap(new Uint8Array(Buffer.from(record.wrappedRoot, 'base64')), hsmRootAd(vaultId));
    }
    if (unlock.shareLines) {
      if (record.kind === 'passphrase') throw new CustosError('bad_request', 'This vault is sealed by a passphrase: give it instead of shares.');
      root = await rootFromShares(record.kind === 'shares' ? record.shares : record.recovery, vaultId, unlock.shareLines, record.kind === 'shares' ? 'shares' : 'recovery');
    }
    if (!root && record.kind !== 'passphrase') throw new CustosError('vault_sealed', 'This vault is sealed by shares (or an HSM that is not configured here): give --share-file.');
    return await openOnce(dataDir, root ? { root } : { passphrase: unlock.passphrase }, mode, places, act);
  } finally {
    wipe(root);
    for (const t of tokens) await t.close();
  }
}

/** How the vault in `dataDir` is sealed: what an offline command must ask the operator for. */
export async function sealKindOf(dataDir: string): Promise<'passphrase' | 'shares' | 'hsm'> {
  const { store } = await openStoreOnly(dataDir, true);
  try {
    return parseSealRecord(await store.getMeta('seal')).kind;
  } finally {
    await store.close();
  }
}
