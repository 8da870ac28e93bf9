/**
 * `custos audit verify` and `custos audit anchor`: the whole chain, the anchor beside the
 * database and off-host copies of anchors, and after a clean stop every protected row
 * against the anchor's digest, with the audit public key only.
 */
import { readFileSync } from 'node:fs';
import { CustosError, isCustosError } from '../core/errors.js';
import { bytesToHex } from '../core/bytes.js';
import { verifyChain, type VerifyReport } from '../audit/chain.js';
import { checkAnchor, decodeAnchor, readAnchorFile, type Anchor } from '../audit/anchor.js';
import { isSealedEntry } from '../store/rows.js';
import { anchorPath, openStoreOnly } from './open.js';

export interface AuditVerifyReport extends VerifyReport {
  /** Where the checkpoint key came from: given by the operator, or read from the database itself. */
  keySource: 'given' | 'database';
  auditPublicKey: string;
  /** The newest anchor checked (the local file or an off-host copy), or null. */
  anchor: { seq: number; ts: string; clean: boolean; source: string } | null;
  /** Whether the protected rows were compared with a clean stop's digest (nothing written since). */
  rowsChecked: boolean;
  /** What could not be checked, in sentences (a running vault's rows, say). */
  notes: string[];
}

/**
 * Verifies the whole audit chain, the audit anchor beside the database and any off-host
 * copies of anchors (`anchors`, file paths), and after a clean stop every protected row
 * against the anchor's digest. Pass the audit public key that `custos init` printed: the copy
 * stored in the database could have been replaced by whoever rewrote the log.
 */
export async function verifyAudit(
  dataDir: string,
  options: { auditKey?: Uint8Array; anchors?: string[]; onProgress?: (done: number, total: number) => void } = {},
): Promise<AuditVerifyReport> {
  const { store, vaultId, auditPublicKey } = await openStoreOnly(dataDir, true);
  try {
    const key = options.auditKey ?? auditPublicKey;
    const base = { keySource: options.auditKey ? ('given' as const) : ('database' as const), auditPublicKey: bytesToHex(key), anchor: null, rowsChecked: false, notes: [] as string[] };
    const broken = (problem: string, seq = 0, report?: VerifyReport): AuditVerifyReport => ({
      ...base,
      ok: false,
      entries: report?.entries ?? 0,
      checkpoints: report?.checkpoints ?? 0,
      headSeq: report?.headSeq ?? 0,
      headHash: report?.headHash ?? '',
      firstBad: { seq, problem },
    });
    if (options.auditKey && bytesToHex(options.auditKey) !== bytesToHex(auditPublicKey)) {
      return broken('the audit key stored in the database is not the one you gave: the database was altered (or belongs to another vault)');
    }
    const chain = await verifyChain(store, vaultId, key, { onProgress: options.onProgress });
    if (!chain.ok) return { ...base, ...chain };
    // Anchors: the local file (required once the vault has one), then off-host copies.
    const candidates: Array<{ anchor: Anchor; source: string }> = [];
    try {
      const local = readAnchorFile(anchorPath(dataDir), vaultId, key);
      if (local) candidates.push({ anchor: local, source: anchorPath(dataDir) });
      else if (await store.integrityEnabled()) {
        return broken(`the audit anchor ${anchorPath(dataDir)} is missing: nothing outside the database vouches for its head, so a cut log cannot be told from a whole one`, chain.headSeq, chain);
      }
      for (const f of options.anchors ?? []) candidates.push({ anchor: decodeAnchor(readFileSync(f, 'utf8'), vaultId, key, f), source: f });
    } catch (e) {
      if (isCustosError(e)) return broken(e.message, chain.headSeq, chain);
      throw e;
    }
    let rowsChecked = false;
    let newest: { anchor: Anchor; source: string } | null = null;
    for (const c of candidates) {
      try {
        rowsChecked = (await checkAnchor(store, c.anchor, c.source, isSealedEntry)).rowsChecked || rowsChecked;
      } catch (e) {
        if (isCustosError(e)) return broken(e.message, Math.min(c.anchor.seq, chain.headSeq + 1), chain);
        throw e;
      }
      if (!newest || c.anchor.seq > newest.anchor.seq) newest = c;
    }
    const notes: string[] = [];
    if (newest && chain.headSeq > newest.anchor.seq) {
      notes.push(`entries ${newest.anchor.seq + 1} to ${chain.headSeq} were written after the newest anchor (the vault is running, or did not stop cleanly): they verify as a chain, and \`custos serve\` checks their MACs at its next start`);
    }
    if (!rowsChecked) notes.push('protected rows (key states, tokens, policies, budgets, watermarks) were not compared: that needs a clean stop with nothing written since; `custos serve` checks every row\'s MAC at start');
    return {
      ...base,
      ...chain,
      anchor: newest ? { seq: newest.anchor.seq, ts: newest.anchor.ts, clean: newest.anchor.clean, source: newest.source } : null,
      rowsChecked,
      notes,
    };
  } finally {
    await store.close();
  }
}

/** The anchor file's text, for a copy kept off the host (`audit verify --anchor` reads it). */
export async function readAnchorText(dataDir: string): Promise<string> {
  const { store, vaultId, auditPublicKey } = await openStoreOnly(dataDir, true);
  await store.close();
  const a = readAnchorFile(anchorPath(dataDir), vaultId, auditPublicKey);
  if (!a) throw new CustosError('not_found', `There is no audit anchor in ${dataDir} yet; start the vault once with this version of Custos.`);
  return readFileSync(anchorPath(dataDir), 'utf8');
}

