/**
 * Lightning: a node's per-object state (a channel's monitor is an object), one stored record
 * per object, each version encrypted to the node's backup key and signed by the vault
 * (crypto/lightning-record.ts), streamed to a backup target before it is committed
 * (lightning/backup.ts); reconciliation with the node; and the hsmd hook (ECDH and ECIES
 * decryption with the node's keys), each with its own scope, policy and audit.
 *
 * An update costs the same at 100 objects as at 100,000: it reads and writes one row by its
 * primary key, never a list of objects or of past versions.
 */
import type { KeyObject } from 'node:crypto';
import { CustosError, isCustosError } from '../core/errors.js';
import { assertPurpose } from '../core/purpose.js';
import { bytesToHex, equalBytes, wipe } from '../core/bytes.js';
import type { AuditDraft, KeyRecord } from '../core/types.js';
import type { Operation } from '../accounts/principals.js';
import { eciesDecrypt, eciesEncrypt } from '../crypto/ecies.js';
import { checkObjectId, checkVersion, decodeRecord, MAX_STATE_BYTES, recordHash, recordVerifier, sameHash, sealRecord, verifyRecord, ZERO_HASH, type LightningRecord } from '../crypto/lightning-record.js';
import type { BackupTarget } from '../lightning/backup.js';
import { SIGNER_OBJECT_PREFIX } from '../lightning/channel-policy.js';
import { BACKUP_PATH, ecdhSha256, ephemeralFor, ephemeralKeyOf, hookPath, nodeKeys, withSecret, type NodeKeys } from '../lightning/keys.js';
import { decodeMaster, publicKeyAt, wipeMaster, type HdMaster } from '../wallet/hd.js';
import { parsePath } from '../wallet/paths.js';
import type { StoredObject } from '../store/store.js';
import { isKeyStateError, type Ctx, type VaultCore } from './core.js';
import { decideSignCommit } from './step.js';

export type ReconcileStatus = 'in_sync' | 'node_behind' | 'vault_behind';

export interface LightningMetrics {
  update(seconds: number): void;
  fork(): void;
  reconciled(status: string): void;
}

export interface ObjectVersion {
  objectId: string;
  version: bigint;
  record: Uint8Array;
  hash: Uint8Array;
}

const view = (o: StoredObject): ObjectVersion => ({ objectId: o.objectId, version: o.version, record: o.record, hash: o.hash });

export class Lightning {
  /**
   * Per key id and version: its public keys, its record key (a KeyObject, as the software
   * backend keeps prepared keys) and that key's verifier. Deriving them needs the master;
   * they never change. Dropped at close.
   */
  private readonly nodes = new Map<string, NodeKeys & { signer: KeyObject; verifier: KeyObject; ephemeralKey: KeyObject }>();

  constructor(
    private readonly core: VaultCore,
    private readonly backup: BackupTarget | null,
    private readonly metrics: LightningMetrics | null = null,
  ) {}

  /** A node's key, for `operation` under `scope`: an active BIP32 key with the lightning purpose. (Also the channel signer's, vault/lightning-signer.ts.) */
  async nodeKey(ctx: Ctx, operation: string, scope: Operation, ref: string): Promise<KeyRecord> {
    const key = await this.core.usableKey(ctx, operation, ref, scope);
    return this.core.refuseOnError(ctx, operation, key, {}, () => {
      assertPurpose(key, 'lightning');
      if (key.attributes.hd !== 'bip32') throw new CustosError('bad_request', `${key.label} is not a BIP32 HD key: create the node's key from its seed (custos wallet create --purpose lightning).`);
      return key;
    });
  }

  withMaster<T>(key: KeyRecord, f: (m: HdMaster) => T): T {
    const secret = this.core.deps.keyring.openSecret(key);
    let master: HdMaster | undefined;
    try {
      master = decodeMaster(secret);
      return f(master);
    } finally {
      wipe(secret);
      if (master) wipeMaster(master);
    }
  }

  cache(key: KeyRecord) {
    return { id: `${key.id}/${key.version}`, cache: this.core.hdCache };
  }

  private publicsOf(key: KeyRecord): NodeKeys & { signer: KeyObject; verifier: KeyObject; ephemeralKey: KeyObject } {
    const id = `${key.id}/${key.version}`;
    let p = this.nodes.get(id);
    if (!p) {
      const k = this.withMaster(key, (m) => ({ ...nodeKeys(m, this.cache(key)), ephemeralKey: ephemeralKeyOf(m, this.cache(key)) }));
      p = { ...k, verifier: recordVerifier(k.recordPublic) };
      if (this.nodes.size > 1024) this.nodes.clear();
      this.nodes.set(id, p);
    }
    return p;
  }

  /** The node's public keys and where its records go. */
  async describe(ctx: Ctx, ref: string): Promise<{ key: KeyRecord; keys: NodeKeys; objects: number; backup: string | null }> {
    const key = await this.nodeKey(ctx, 'lightning_read', 'state', ref);
    return { key, keys: this.publicsOf(key), objects: await this.core.deps.store.countObjects(key.id), backup: this.backup?.name ?? null };
  }

  /**
   * Stores version `version` of `objectId`: newer than the stored one (an equal version with
   * the same state is a retry and answers what is stored). The record reaches the backup
   * target before the commit; a node told "stored" has it in both.
   */
  async put(ctx: Ctx, ref: string, objectId: string, version: bigint, state: Uint8Array): Promise<ObjectVersion & { unchanged?: true }> {
    const started = process.hrtime.bigint();
    const key = await this.nodeKey(ctx, 'lightning_put', 'state', ref);
    const details: AuditDraft['details'] = { object: objectId.slice(0, 128), version: String(version).slice(0, 20) };
    await this.core.refuseOnError(ctx, 'lightning_put', key, details, () => {
      checkObjectId(objectId);
      if (objectId.startsWith(SIGNER_OBJECT_PREFIX)) throw new CustosError('forbidden', `Objects named ${SIGNER_OBJECT_PREFIX}… are the channel signer's own state: a node cannot write them.`);
      checkVersion(version);
      if (state.length > MAX_STATE_BYTES) throw new CustosError('payload_too_large', `A Lightning state is at most ${MAX_STATE_BYTES} bytes.`);
    });
    // Updates of one object take turns in this process (another process is caught by the compare-and-set).
    const release = await this.core.lanes.acquire([`lightning:${key.id}:${objectId}`]);
    try {
      const cur = await this.core.deps.store.getObject(key.id, objectId);
      if (cur && version <= cur.version) {
        if (version === cur.version && this.holds(key, cur.record, state)) return { ...view(cur), unchanged: true };
        return await this.core.refuse(
          ctx,
          'lightning_put',
          key,
          new CustosError('conflict', `Object ${objectId} is at version ${cur.version}; version ${version} ${version === cur.version ? 'with other content ' : ''}is not newer. A node restored from an older copy reconciles first (POST /v1/lightning/${key.label}/reconcile).`, { tag: 'object_version' }),
          details,
        );
      }
      const record = this.seal(key, objectId, version, cur ? cur.hash : ZERO_HASH, state);
      await this.store(ctx, key, 'lightning_put', [{ objectId, version, bytes: record }], cur, details);
      this.metrics?.update(Number(process.hrtime.bigint() - started) / 1e9);
      return { objectId, version, record, hash: recordHash(record) };
    } finally {
      release();
    }
  }

  /**
   * Encrypts to the node's backup key and signs with its record key. The same state at the
   * same place (object, version, previous record) gives the same record, byte for byte: the
   * envelope's ephemeral key is derived from them (HMAC under a key of the node's), and Ed25519
   * is deterministic. So a retry whose first answer was lost files the same record again
   * instead of a rival beside it.
   */
  seal(key: KeyRecord, objectId: string, version: bigint, prevHash: Uint8Array, state: Uint8Array): Uint8Array {
    const { backupPublic, signer, ephemeralKey } = this.publicsOf(key);
    const eph = ephemeralFor(ephemeralKey, objectId, version, prevHash, state);
    try {
      const ciphertext = eciesEncrypt('secp256k1', backupPublic, state, eph);
      return sealRecord(signer, { objectId, version, prevHash, ciphertext });
    } finally {
      wipe(eph);
    }
  }

  open(key: KeyRecord, record: LightningRecord): Uint8Array {
    return this.withMaster(key, (m) => withSecret(m, BACKUP_PATH, (s) => eciesDecrypt(s, record.ciphertext), this.cache(key)));
  }

  /** Whether a stored record holds exactly `state` (a retried update). */
  private holds(key: KeyRecord, record: Uint8Array, state: Uint8Array): boolean {
    const plain = this.open(key, decodeRecord(record));
    try {
      return plain.length === state.length && equalBytes(plain, state);
    } finally {
      wipe(plain);
    }
  }

  /**
   * Writes records (the last is the object's new version) to the backup target, then commits
   * the last one in place of `cur` (compare-and-set), with its audit entry.
   */
  async store(ctx: Ctx, key: KeyRecord, operation: string, records: Array<{ objectId: string; version: bigint; bytes: Uint8Array }>, cur: StoredObject | null, details: AuditDraft['details']): Promise<void> {
    const last = records[records.length - 1]!;
    try {
      for (const r of records) await this.writeBackup(key, r.objectId, r.version, r.bytes);
    } catch (e) {
      return this.core.fail(ctx, operation, key, e, details, 'The backup target failed.');
    }
    // A record whose commit then fails stays in the backup: records are a function of their
    // state and place, so the same file may be a twin's committed record (the same update sent
    // to another instance), and deleting it could take a committed version out of the backup.
    // The check of a backup leaves such a record out as a side branch.
    try {
      await this.core.commitAs(ctx, {
        mutations: [
          { kind: 'assertKeyActive', id: key.id, version: key.version },
          { kind: 'putObject', keyId: key.id, objectId: last.objectId, expectedVersion: cur?.version ?? null, version: last.version, record: last.bytes },
        ],
        audit: [this.core.draft(ctx, operation, key, 'ok', null, { ...details, record_sha256: bytesToHex(recordHash(last.bytes)) })],
      });
    } catch (e) {
      if (isKeyStateError(e)) {
        this.core.forgetKey(key.id);
        return this.core.refuse(ctx, operation, key, e, details);
      }
      if (isCustosError(e) && (e.tag === 'object_moved' || e.tag === 'object_version' || e.tag === 'key_moved')) {
        return this.core.refuse(ctx, operation, key, e.tag === 'object_moved' ? new CustosError('conflict', `Object ${last.objectId} changed while this update was decided (another writer): read it and decide again.`, { tag: 'object_moved' }) : e, details);
      }
      throw e;
    }
  }

  /** Writes a record to the backup target (if one is configured). */
  async writeBackup(key: KeyRecord, objectId: string, version: bigint, bytes: Uint8Array): Promise<void> {
    await this.backup?.write(this.publicsOf(key).node, objectId, version, bytes);
  }

  /** The latest version of an object, its record, and (decrypted for the node) its state. */
  async get(ctx: Ctx, ref: string, objectId: string): Promise<ObjectVersion & { state: Uint8Array }> {
    const key = await this.nodeKey(ctx, 'lightning_get', 'state', ref);
    const cur = await this.read(ctx, key, 'lightning_get', objectId);
    const state = this.open(key, decodeRecord(cur.record));
    await this.core.commitAs(ctx, { mutations: [{ kind: 'assertKeyActive', id: key.id, version: key.version }], audit: [this.core.draft(ctx, 'lightning_get', key, 'ok', null, { object: objectId, version: cur.version.toString() })] });
    return { ...view(cur), state };
  }

  private async read(ctx: Ctx, key: KeyRecord, operation: string, objectId: string): Promise<StoredObject> {
    const cur = await this.core.refuseOnError(ctx, operation, key, { object: objectId.slice(0, 128) }, async () => {
      checkObjectId(objectId);
      return this.core.deps.store.getObject(key.id, objectId);
    });
    if (!cur) throw new CustosError('not_found', `${key.label} has no object ${objectId}.`);
    return cur;
  }

  /** A page of objects (id, version, record hash), in id order after `after`. */
  async list(ctx: Ctx, ref: string, after: string | null, limit: number): Promise<Array<{ objectId: string; version: bigint; hash: Uint8Array }>> {
    const key = await this.nodeKey(ctx, 'lightning_list', 'state', ref);
    const page = await this.core.deps.store.listObjects(key.id, after, Math.max(1, Math.min(limit, 1000)));
    return page.map((o) => ({ objectId: o.objectId, version: o.version, hash: o.hash }));
  }

  /**
   * The node says which version of an object it holds (and the hash of its record). The vault
   * answers in sync; node behind (the latest record and its state, to replay); vault behind
   * (the node hands over the vault-signed records after the vault's version, and the vault,
   * having checked its own signatures and the chain, applies them); or a fork, refused,
   * audited and counted (custos_lightning_forks_total).
   */
  async reconcile(ctx: Ctx, ref: string, req: { objectId: string; version: bigint; hash: Uint8Array; records?: Uint8Array[] }): Promise<{ status: ReconcileStatus; version: bigint | null; hash: Uint8Array | null; record?: Uint8Array; state?: Uint8Array; applied?: number }> {
    const key = await this.nodeKey(ctx, 'lightning_reconcile', 'state', ref);
    const details: AuditDraft['details'] = { object: req.objectId.slice(0, 128), node_version: String(req.version).slice(0, 20) };
    await this.core.refuseOnError(ctx, 'lightning_reconcile', key, details, () => {
      checkObjectId(req.objectId);
      // The channel signer's state comes back only through an operator's restore (which checks the whole history).
      if (req.objectId.startsWith(SIGNER_OBJECT_PREFIX)) throw new CustosError('forbidden', `Objects named ${SIGNER_OBJECT_PREFIX}… are the channel signer's own state: they are not reconciled (an operator restores them from the backup).`);
      checkVersion(req.version);
      if (req.hash.length !== 32) throw new CustosError('bad_request', 'hash is the 32-byte SHA-256 of the record the node holds.');
      if ((req.records?.length ?? 0) > 100) throw new CustosError('payload_too_large', 'At most 100 records per reconciliation (hand over the rest in another).');
    });
    const release = await this.core.lanes.acquire([`lightning:${key.id}:${req.objectId}`]);
    try {
      const stored = await this.core.deps.store.getObject(key.id, req.objectId);
      const cur = stored ? { ...stored, prevHashOf: decodeRecord(stored.record).prevHash } : null;
      const curHash = cur ? cur.hash : null;
      const fork = async (why: string): Promise<never> => {
        this.metrics?.fork();
        return this.core.refuse(ctx, 'lightning_reconcile', key, new CustosError('conflict', `Object ${req.objectId} has forked: ${why}. Nothing was changed; find out which copy the node's channel really is at before going on.`, { tag: 'fork' }), details);
      };
      if (cur && cur.version === req.version) {
        if (!sameHash(curHash!, req.hash)) return await fork(`the node and the vault both hold version ${cur.version}, with different records`);
        this.metrics?.reconciled('in_sync');
        return { status: 'in_sync', version: cur.version, hash: curHash };
      }
      if (cur && cur.version > req.version) {
        // Records the node hands over can prove it is on another history (a sibling of the
        // vault's record): then it is not merely behind.
        const handed = (req.records ?? []).flatMap((bytes) => {
          try {
            const r = decodeRecord(bytes);
            return r.objectId === req.objectId && verifyRecord(this.publicsOf(key).verifier, r) ? [{ r, bytes }] : [];
          } catch {
            return [];
          }
        });
        const sibling = siblingOf(handed, cur, curHash!);
        if (sibling) return await fork(`the node's version ${sibling.r.version} and the vault's version ${cur.version} both follow the same record`);
        const state = this.open(key, decodeRecord(cur.record));
        await this.core.commitAs(ctx, { mutations: [{ kind: 'assertKeyActive', id: key.id, version: key.version }], audit: [this.core.draft(ctx, 'lightning_reconcile', key, 'ok', null, { ...details, status: 'node_behind', vault_version: cur.version.toString() })] });
        this.metrics?.reconciled('node_behind');
        return { status: 'node_behind', version: cur.version, hash: curHash, record: cur.record, state };
      }
      // The vault is behind (or has never seen the object): the node hands over the records.
      if (!req.records?.length) {
        this.metrics?.reconciled('vault_behind');
        return { status: 'vault_behind', version: cur?.version ?? null, hash: curHash };
      }
      const { verifier } = this.publicsOf(key);
      const chain: Array<{ r: LightningRecord; bytes: Uint8Array }> = [];
      for (const bytes of req.records) {
        const r = await this.core.refuseOnError(ctx, 'lightning_reconcile', key, details, () => {
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
      const refuse = (m: string) => this.core.refuse(ctx, 'lightning_reconcile', key, new CustosError('bad_request', m, { tag: 'record_chain' }), details);
      if (!after.length) return await refuse(`No record handed over is newer than the vault's version ${cur?.version}.`);
      let prev = cur ? curHash! : null;
      for (const c of after) {
        if (prev && !sameHash(c.r.prevHash, prev)) return await refuse(`The record of version ${c.r.version} does not follow ${cur && prev === curHash ? `the vault's version ${cur.version}` : 'the record before it'}: hand over every record after version ${cur?.version ?? 'none'}, in order.`);
        prev = recordHash(c.bytes);
      }
      const last = after[after.length - 1]!;
      if (last.r.version !== req.version || !sameHash(recordHash(last.bytes), req.hash)) return await refuse(`The last record handed over is not the version ${req.version} the node says it holds.`);
      await this.store(ctx, key, 'lightning_reconcile', after.map((c) => ({ objectId: req.objectId, version: c.r.version, bytes: c.bytes })), cur, { ...details, status: 'vault_behind', applied: after.length });
      this.metrics?.reconciled('vault_behind');
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
  async restore(ctx: Ctx, ref: string, records: Uint8Array[]): Promise<{ applied: number; kept: number; refused: Array<{ object: string; version: string; code: string; reason: string }> }> {
    const key = await this.nodeKey(ctx, 'lightning_restore', 'manage', ref);
    const { verifier } = this.publicsOf(key);
    let applied = 0;
    let kept = 0;
    // An object refused (audited) does not stop the others: each is checked on its own.
    const refused: Array<{ object: string; version: string; code: string; reason: string }> = [];
    const refuse = async (r: LightningRecord, err: CustosError, details: AuditDraft['details']) => {
      await this.core.refuse(ctx, 'lightning_restore', key, err, details).catch(() => undefined);
      refused.push({ object: r.objectId, version: r.version.toString(), code: err.fullCode, reason: err.message });
    };
    for (const bytes of records) {
      const r = await this.core.refuseOnError(ctx, 'lightning_restore', key, {}, () => {
        const r = decodeRecord(bytes);
        if (!verifyRecord(verifier, r)) throw new CustosError('bad_request', `The record of ${r.objectId} version ${r.version} was not signed by this node's key: the backup is from another seed, or altered.`, { tag: 'record_signature' });
        return r;
      });
      const details = { object: r.objectId, version: r.version.toString() };
      const release = await this.core.lanes.acquire([`lightning:${key.id}:${r.objectId}`]);
      try {
        const cur = await this.core.deps.store.getObject(key.id, r.objectId);
        const curHash = cur ? cur.hash : null;
        if (cur && cur.version === r.version && !sameHash(curHash!, recordHash(bytes))) {
          this.metrics?.fork();
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
          await this.store(ctx, key, 'lightning_restore', [{ objectId: r.objectId, version: r.version, bytes }], cur, details);
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

  /** The hsmd hook: k = SHA-256(p·R) with the node's key at `path` (under m/9735'/2'). */
  async ecdh(ctx: Ctx, ref: string, req: { path?: string; point: Uint8Array }): Promise<Uint8Array> {
    return this.hook(ctx, ref, 'ecdh', req.path, { point_sha256: bytesToHex(recordHash(req.point)) }, (secret) => ecdhSha256(secret, req.point));
  }

  /** The hsmd hook: decrypts a custos-ecies-v1 envelope made to the node's key at `path`. */
  async decrypt(ctx: Ctx, ref: string, req: { path?: string; envelope: Uint8Array }): Promise<Uint8Array> {
    return this.hook(ctx, ref, 'decrypt', req.path, { envelope_sha256: bytesToHex(recordHash(req.envelope)) }, (secret) => {
      // The node's keys are secp256k1: an envelope for another curve is not theirs.
      if (req.envelope[5] !== 2) throw new CustosError('bad_request', 'The envelope is not a custos-ecies-v1 envelope to a secp256k1 key.');
      return eciesDecrypt(secret, req.envelope);
    });
  }

  /** The public key at a hook path (what the node hands its peers). */
  async hookPublicKey(ctx: Ctx, ref: string, path?: string): Promise<{ path: string; publicKey: Uint8Array }> {
    const key = await this.nodeKey(ctx, 'lightning_read', 'state', ref);
    const p = await this.core.refuseOnError(ctx, 'lightning_read', key, {}, () => hookPath(path));
    return { path: p, publicKey: this.withMaster(key, (m) => publicKeyAt(m, p, this.cache(key))) };
  }

  private async hook(ctx: Ctx, ref: string, operation: 'ecdh' | 'decrypt', path: string | undefined, details: AuditDraft['details'], f: (secret: Uint8Array) => Uint8Array): Promise<Uint8Array> {
    const key = await this.nodeKey(ctx, `lightning_${operation}`, operation, ref);
    const p = await this.core.refuseOnError(ctx, `lightning_${operation}`, key, details, () => hookPath(path));
    const d = { ...details, path: p };
    return decideSignCommit(this.core, {
      ctx,
      key,
      operation,
      outcomeOperation: `lightning_${operation}`,
      subject: { payloadType: null, facts: { protocol: 'lightning', path: p }, paths: [parsePath(p)] },
      details: d,
      produce: async () => this.withMaster(key, (m) => withSecret(m, p, f, this.cache(key))),
      outcome: () => ({}),
    });
  }

  /** Forgets cached public keys (a key destroyed or sealed away). */
  clear(): void {
    this.nodes.clear();
  }
}

/** A record following the same record as the vault's own, and not the vault's: a sibling, so a fork. (Two first records of an object cannot be told apart from siblings: none is claimed.) */
function siblingOf(records: Array<{ r: LightningRecord; bytes: Uint8Array }>, cur: { prevHashOf: Uint8Array }, curHash: Uint8Array): { r: LightningRecord } | undefined {
  if (sameHash(cur.prevHashOf, ZERO_HASH)) return undefined;
  return records.find((c) => sameHash(c.r.prevHash, cur.prevHashOf) && !sameHash(recordHash(c.bytes), curHash));
}
