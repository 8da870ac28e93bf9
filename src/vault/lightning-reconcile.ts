/**
 * Bringing a Lightning node's records back in line with the vault's (vault/lightning.ts keeps
 * them): reconciliation with the node, which says which version of an object it holds and may
 * hand over vault-signed records the vault lacks; and an operator's restore of records checked
 * from the backup. A fork is refused, audited and counted, never resolved here.
 */
import { CustosError, isCustosError } from '../core/errors.js';
import type { AuditDraft } from '../core/types.js';
import { checkObjectId, checkVersion, decodeRecord, recordHash, sameHash, verifyRecord, ZERO_HASH, type LightningRecord } from '../crypto/lightning-record.js';
import { SIGNER_OBJECT_PREFIX } from '../lightning/channel-policy.js';
import type { Ctx, VaultCore } from './core.js';
import type { Lightning, LightningMetrics } from './lightning.js';

export type ReconcileStatus = 'in_sync' | 'node_behind' | 'vault_behind';

/** The version of an object the node holds, the SHA-256 of its record, and any records it hands over. */
export interface ReconcileRequest {
  objectId: string;
  version: bigint;
  hash: Uint8Array;
  records?: Uint8Array[];
}

/** The vault's answer: the status, the version and record hash it holds, and what goes back or was applied. */
export interface Reconciled {
  status: ReconcileStatus;
  version: bigint | null;
  hash: Uint8Array | null;
  record?: Uint8Array;
  state?: Uint8Array;
  applied?: number;
}

/** What a restore did: records applied, objects kept as the vault holds them, and each object refused, with why. */
export interface Restored {
  applied: number;
  kept: number;
  refused: Array<{ object: string; version: string; code: string; reason: string }>;
}

/**
 * The node says which version of an object it holds (and the hash of its record). The vault
 * answers in sync; node behind (the latest record and its state, to replay); vault behind
 * (the node hands over the vault-signed records after the vault's version, and the vault,
 * having checked its own signatures and the chain, applies them); or a fork, refused,
 * audited and counted (custos_lightning_forks_total).
 */
export async function reconcile(core: VaultCore, ln: Lightning, metrics: LightningMetrics | null, ctx: Ctx, ref: string, req: ReconcileRequest): Promise<Reconciled> {
  const key = await ln.nodeKey(ctx, 'lightning_reconcile', 'state', ref);
  const details: AuditDraft['details'] = { object: req.objectId.slice(0, 128), node_version: String(req.version).slice(0, 20) };
  await core.refuseOnError(ctx, 'lightning_reconcile', key, details, () => {
    checkObjectId(req.objectId);
    // The channel signer's state comes back only through an operator's restore (which checks the whole history).
    if (req.objectId.startsWith(SIGNER_OBJECT_PREFIX)) throw new CustosError('forbidden', `Objects named ${SIGNER_OBJECT_PREFIX}… are the channel signer's own state: they are not reconciled (an operator restores them from the backup).`);
    checkVersion(req.version);
    if (req.hash.length !== 32) throw new CustosError('bad_request', 'hash is the 32-byte SHA-256 of the record the node holds.');
    if ((req.records?.length ?? 0) > 100) throw new CustosError('payload_too_large', 'At most 100 records per reconciliation (hand over the rest in another).');
  });
  const release = await core.lanes.acquire([`lightning:${key.id}:${req.objectId}`]);
  try {
    const stored = await core.deps.store.getObject(key.id, req.objectId);
    const cur = stored ? { ...stored, prevHashOf: decodeRecord(stored.record).prevHash } : null;
    const curHash = cur ? cur.hash : null;
    const fork = async (why: string): Promise<never> => {
      metrics?.fork();
      return core.refuse(ctx, 'lightning_reconcile', key, new CustosError('conflict', `Object ${req.objectId} has forked: ${why}. Nothing was changed; find out which copy the node's channel really is at before going on.`, { tag: 'fork' }), details);
    };
    if (cur && cur.version === req.version) {
      if (!sameHash(curHash!, req.hash)) return await fork(`the node and the vault both hold version ${cur.version}, with different records`);
      metrics?.reconciled('in_sync');
      return { status: 'in_sync', version: cur.version, hash: curHash };
    }
    if (cur && cur.version > req.version) {
      // Records the node hands over can prove it is on another history (a sibling of the
      // vault's record): then it is not merely behind.
      const handed = (req.records ?? []).flatMap((bytes) => {
        try {
          const r = decodeRecord(bytes);
          return r.objectId === req.objectId && verifyRecord(ln.verifierOf(key), r) ? [{ r, bytes }] : [];
        } catch {
          return [];
        }
      });
      const sibling = siblingOf(handed, cur, curHash!);
      if (sibling) return await fork(`the node's version ${sibling.r.version} and the vault's version ${cur.version} both follow the same record`);
      const state = ln.open(key, decodeRecord(cur.record));
      await core.commitAs(ctx, { mutations: [{ kind: 'assertKeyActive', id: key.id, version: key.version }], audit: [core.draft(ctx, 'lightning_reconcile', key, 'ok', null, { ...details, status: 'node_behind', vault_version: cur.version.toString() })] });
      metrics?.reconciled('node_behind');
      return { status: 'node_behind', version: cur.version, hash: curHash, record: cur.record, state };
    }
    // The vault is behind (or has never seen the object): the node hands over the records.
    if (!req.records?.length) {
      metrics?.reconciled('vault_behind');
      return { status: 'vault_behind', version: cur?.version ?? null, hash: curHash };
    }
    const verifier = ln.verifierOf(key);
    const chain: Array<{ r: LightningRecord; bytes: Uint8Array }> = [];
    for (const bytes of req.records) {
      const r = await core.refuseOnError(ctx, 'lightning_reconcile', key, details, () => {
        const r = decodeRecord(bytes);
        if (r.objectId !== req.objectId) throw new CustosError('bad_request', `A record handed over is object ${r.objectId}'s, not ${req.objectId}'s.`);
        if (!verifyRecord(verifier, r)) throw new CustosError('bad_request', `The record of ${req.objectId} version ${r.version} was not signed by this node's vault: refused.`, { tag: 'record_signature' });
        return r;
      });
      chain.push({ r, bytes });
    }
    // A record the vault holds, signed differently at the same version: a fork.
    const same = cur ? chain.find((c) => c.r.version === cur.version) : undefined;
    if (same && !sameHash(recordHash(same.bytes), curHash!)) return await fork(`the node's record of version ${cur!.version} differs from the vault's`);
    // The node's records pass through the vault's record's parent, then go another way: a fork.
    if (cur) {
      const i = chain.findIndex((c) => sameHash(recordHash(c.bytes), cur.prevHashOf));
      const next = i >= 0 ? chain[i + 1] : undefined;
      if (next && !sameHash(recordHash(next.bytes), curHash!)) return await fork(`the node's history leaves the vault's after the record before version ${cur.version} (the node's next is version ${next.r.version})`);
      const sibling = siblingOf(chain, cur, curHash!);
      if (sibling) return await fork(`the node's version ${sibling.r.version} and the vault's version ${cur.version} both follow the same record`);
    }
    const after = chain.filter((c) => !cur || c.r.version > cur.version);
    const refuse = (m: string) => core.refuse(ctx, 'lightning_reconcile', key, new CustosError('bad_request', m, { tag: 'record_chain' }), details);
    if (!after.length) return await refuse(`No record handed over is newer than the vault's version ${cur?.version}.`);
    let prev = cur ? curHash! : null;
    for (const c of after) {
      if (prev && !sameHash(c.r.prevHash, prev)) return await refuse(`The record of version ${c.r.version} does not follow ${cur && prev === curHash ? `the vault's version ${cur.version}` : 'the record before it'}: hand over every record after version ${cur?.version ?? 'none'}, in order.`);
      prev = recordHash(c.bytes);
    }
    const last = after[after.length - 1]!;
    if (last.r.version !== req.version || !sameHash(recordHash(last.bytes), req.hash)) return await refuse(`The last record handed over is not the version ${req.version} the node says it holds.`);
    await ln.store(ctx, key, 'lightning_reconcile', after.map((c) => ({ objectId: req.objectId, version: c.r.version, bytes: c.bytes })), cur, { ...details, status: 'vault_behind', applied: after.length });
    metrics?.reconciled('vault_behind');
    return { status: 'vault_behind', version: last.r.version, hash: req.hash, applied: after.length };
  } finally {
    release();
  }
}

/**
 * Restores records checked by `custos lightning restore` (lightning/backup.ts HistoryCheck):
 * each object's latest, signed by this node's record key. A record is applied where the
 * object is absent or the record follows the stored one; one the vault already holds (or a
 * newer one) is kept; anything else is refused: a record of the stored version with other
 * content is a fork (audited and counted), and a newer one that does not follow is a gap
 * (reconcile with the node instead). An operator's act: scope `manage`.
 */
export async function restore(core: VaultCore, ln: Lightning, metrics: LightningMetrics | null, ctx: Ctx, ref: string, records: Uint8Array[]): Promise<Restored> {
  const key = await ln.nodeKey(ctx, 'lightning_restore', 'manage', ref);
  const verifier = ln.verifierOf(key);
  let applied = 0;
  let kept = 0;
  // An object refused (audited) does not stop the others: each is checked on its own.
  const refused: Array<{ object: string; version: string; code: string; reason: string }> = [];
  const refuse = async (r: LightningRecord, err: CustosError, details: AuditDraft['details']) => {
    await core.refuse(ctx, 'lightning_restore', key, err, details).catch(() => undefined);
    refused.push({ object: r.objectId, version: r.version.toString(), code: err.fullCode, reason: err.message });
  };
  for (const bytes of records) {
    const r = await core.refuseOnError(ctx, 'lightning_restore', key, {}, () => {
      const r = decodeRecord(bytes);
      if (!verifyRecord(verifier, r)) throw new CustosError('bad_request', `The record of ${r.objectId} version ${r.version} was not signed by this node's key: the backup is from another seed, or altered.`, { tag: 'record_signature' });
      return r;
    });
    const details = { object: r.objectId, version: r.version.toString() };
    const release = await core.lanes.acquire([`lightning:${key.id}:${r.objectId}`]);
    try {
      const cur = await core.deps.store.getObject(key.id, r.objectId);
      const curHash = cur ? cur.hash : null;
      if (cur && cur.version === r.version && !sameHash(curHash!, recordHash(bytes))) {
        metrics?.fork();
        await refuse(r, new CustosError('conflict', `Object ${r.objectId} has forked: the backup's version ${r.version} differs from the vault's. Nothing was changed for it.`, { tag: 'fork' }), details);
        continue;
      }
      if (cur && cur.version >= r.version) {
        kept++;
        continue;
      }
      if (cur && !sameHash(r.prevHash, curHash!)) {
        await refuse(r, new CustosError('bad_request', `The backup's version ${r.version} of ${r.objectId} does not follow the vault's version ${cur.version}: reconcile with the node (it hands over the records between), or restore into a fresh vault.`, { tag: 'record_chain' }), details);
        continue;
      }
      try {
        await ln.store(ctx, key, 'lightning_restore', [{ objectId: r.objectId, version: r.version, bytes }], cur, details);
        applied++;
      } catch (e) {
        // A storage or backup failure stops the restore (nothing after it is tried); a
        // refusal of this object (another writer moved it meanwhile) does not.
        if (!isCustosError(e) || e.code === 'storage_unavailable' || e.code === 'audit_unavailable' || e.code === 'database_corrupt') throw e;
        refused.push({ object: r.objectId, version: r.version.toString(), code: e.fullCode, reason: e.message });
      }
    } finally {
      release();
    }
  }
  return { applied, kept, refused };
}

/** A record following the same record as the vault's own, and not the vault's: a sibling, so a fork. (Two first records of an object cannot be told apart from siblings: none is claimed.) */
function siblingOf(records: Array<{ r: LightningRecord; bytes: Uint8Array }>, cur: { prevHashOf: Uint8Array }, curHash: Uint8Array): { r: LightningRecord } | undefined {
  if (sameHash(cur.prevHashOf, ZERO_HASH)) return undefined;
  return records.find((c) => sameHash(c.r.prevHash, cur.prevHashOf) && !sameHash(recordHash(c.bytes), curHash));
}
