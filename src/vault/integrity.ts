/**
 * What a vault checks about its database before it serves (called by `openVault` with the
 * root in hand): the audit anchors outside it, the log after the newest checkpoint with its
 * MACs, every protected row's MAC, count and write sequence against the state row's keyed
 * digest; and the operator's two decisions, adding row MACs (`custos upgrade`) and accepting
 * a database older than its anchors (`custos audit accept-database`).
 */
import { randomUUID } from 'node:crypto';
import { CustosError, isCustosError } from '../core/errors.js';
import type { Store } from '../store/store.js';
import type { AuditSigner } from '../audit/chain.js';
import { chainHash, verifyChain } from '../audit/chain.js';
import { ANCHOR_FILE, anchorOfHead, checkAnchor, encodeAnchor, readAnchor, type Anchor, type AnchorPlace } from '../audit/anchor.js';
import type { RowMac } from '../keystore/row-mac.js';
import { isSealedEntry, POLICY_GENERATION_ROW } from '../store/rows.js';
import type { GroupCommitter } from './commit.js';

/** What an open may do besides serving: accept a database older than its anchors, or add row MACs. */
export interface OpenMode {
  acceptRollback?: boolean;
  upgrade?: boolean;
}

/**
 * Everything a vault checks about its database before it serves, with the root in hand:
 * the audit anchors outside the database (truncation, rollback, rewritten history), the
 * checkpoints and the chain after the newest one with every entry's MAC, and every protected
 * row's MAC, count and write sequence against the keyed digest of the state row, which must
 * belong to the head of the log. A database without row MACs is refused: `custos upgrade`
 * adds them, once, on the operator's word, never `serve` by itself (whoever can write the
 * file could otherwise strip them and have every edit MACed).
 */
export async function checkDatabase(
  store: Store,
  places: readonly AnchorPlace[],
  vaultId: string,
  signer: AuditSigner,
  rowMac: RowMac,
  committer: () => GroupCommitter,
  mode: OpenMode,
  onAnchorError: (e: Error, where: string) => void = () => undefined,
): Promise<void> {
  const enabled = await store.integrityEnabled();
  if (!enabled && !mode.upgrade) {
    const anchored = (await Promise.all(places.map((p) => p.read().catch(() => null)))).some((t) => t !== null);
    throw new CustosError(
      'database_corrupt',
      anchored
        ? 'This database carries no row MACs, yet an audit anchor beside it says this vault had them: they were stripped outside Custos. Do not upgrade it; restore the database from a backup.'
        : 'This database carries no row MACs: it was written by a Custos from before them. Stop every process that uses it and run `custos upgrade --data-dir DIR` once. (If this vault was already served by this version, the MACs were stripped: restore a backup instead.)',
      { tag: 'integrity_missing' },
    );
  }
  if (enabled && mode.upgrade) throw new CustosError('bad_request', 'This database already carries row MACs; there is nothing to upgrade.');
  if (mode.upgrade && (await Promise.all(places.map((p) => p.read().catch(() => null)))).some((t) => t !== null)) {
    // Anchors came with row MACs: a database without MACs beside an anchor had them stripped.
    throw new CustosError('database_corrupt', 'This database carries no row MACs, yet an audit anchor says this vault had them: they were stripped outside Custos. Do not upgrade it; restore the database from a backup.', { tag: 'integrity_missing' });
  }
  await store.migrate();
  store.setRowAuthenticator(rowMac, chainHash);
  let rolledBack: CustosError | null = null;
  let previous: Anchor | null = null;
  for (const place of places) {
    let anchor: Anchor | null;
    try {
      anchor = await readAnchor(place, vaultId, signer.publicKey);
      if (!anchor && place.required && enabled) {
        throw new CustosError(
          'database_rolled_back',
          `The audit anchor ${place.where} is missing. This vault keeps one beside its database since it was created (or upgraded); without it Custos cannot tell this database from an older or shortened copy, so it refuses to serve. Put the anchor back from the same backup as the database, or see "Restoring from a backup" in the README. (If \`custos init\` or \`custos upgrade\` was interrupted, run init again in an empty directory, or accept this database with \`custos audit accept-database\`.)`,
          { tag: 'anchor_missing' },
        );
      }
      if (anchor) await checkAnchor(store, anchor, place.where, isSealedEntry);
    } catch (e) {
      const rolled = isCustosError(e) && e.code === 'database_rolled_back';
      // A token that cannot be read now (it just unsealed the vault, so rarely) is reported;
      // what it holds, once read, is never ignored.
      if (!rolled && !place.required) {
        onAnchorError(e as Error, place.where);
        continue;
      }
      if (!mode.acceptRollback || !rolled) throw e;
      rolledBack ??= e as CustosError;
      anchor = null;
    }
    if (anchor && (!previous || anchor.seq > previous.seq)) previous = anchor;
  }
  // Fail closed on a tampered log: check everything after the newest signed checkpoint
  // (at most checkpoint_every entries) before serving; `custos audit verify` checks it all.
  const tail = await verifyChain(store, vaultId, signer.publicKey, { fromLastCheckpoint: true, ...(enabled ? { auth: rowMac } : {}) });
  if (!tail.ok) {
    rowMac.alarm('audit', String(tail.firstBad!.seq), 'chain_broken');
    throw new CustosError(
      'database_corrupt',
      `The audit log is broken at entry ${tail.firstBad!.seq} (${tail.firstBad!.problem}); Custos will not serve a vault whose audit log was altered. Run \`custos audit verify\`, then restore the database from a backup.`,
      { tag: 'audit_log' },
    );
  }
  if (enabled) {
    const problems = await store.checkRows();
    if (problems.length > 0) {
      throw new CustosError('database_corrupt', `Rows of the database were changed outside Custos, so it will not serve: ${problems.join('; ')}. Run \`custos audit verify\`, then restore the database from a backup.`, { tag: 'row_mac' });
    }
  } else {
    // `custos upgrade`: every row is MACed as it is, on the operator's word, the log says so,
    // and the open then anchors the head. (Interrupted between the two, the vault has MACs and
    // no anchor: `custos audit accept-database` takes it from there.)
    const n = await store.sealRows();
    const generation = await store.getMeta(POLICY_GENERATION_ROW);
    await committer().commit({
      mutations: generation === null ? [{ kind: 'compareAndSetMeta', name: POLICY_GENERATION_ROW, expected: null, value: '0' }] : [],
      audit: [{ requestId: randomUUID(), principal: 'operator', operation: 'integrity_enabled', keyId: null, keyLabel: null, outcome: 'ok', reason: null, details: { rows_maced: n, anchor: ANCHOR_FILE } }],
    });
  }
  if (mode.acceptRollback) {
    // The operator's decision to serve this database although its anchor says otherwise is
    // itself on the record, with what the anchor said; the new anchor is written at open.
    const now = await store.auditHead();
    await committer().audit({
      requestId: randomUUID(),
      principal: 'operator',
      operation: 'anchor_replaced',
      keyId: null,
      keyLabel: null,
      outcome: 'ok',
      reason: rolledBack ? rolledBack.fullCode : null,
      details: { previous_anchor_seq: previous?.seq ?? -1, previous_anchor_ts: previous?.ts ?? '', database_head_seq: now.seq },
    });
    // An anchor never moves backwards by itself; these are replaced on purpose.
    const a = await anchorOfHead(store, vaultId, false);
    for (const p of places) await p.write(encodeAnchor(a, signer));
  }
}

