/**
 * Lightning: a node's per-object state (a channel's monitor is an object), one stored record
 * per object, each version encrypted to the node's backup key and signed by the vault
 * (crypto/lightning-record.ts), streamed to a backup target before it is committed
 * (lightning/backup.ts); reconciliation with the node and an operator's restore
 * (vault/lightning-reconcile.ts); and the hsmd hook (ECDH and ECIES decryption with the
 * node's keys), each with its own scope, policy and audit.
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
import { checkObjectId, checkVersion, decodeRecord, MAX_STATE_BYTES, recordHash, recordVerifier, sealRecord, ZERO_HASH, type LightningRecord } from '../crypto/lightning-record.js';
import type { BackupTarget } from '../lightning/backup.js';
import { SIGNER_OBJECT_PREFIX } from '../lightning/channel-policy.js';
import { BACKUP_PATH, ecdhSha256, ephemeralFor, ephemeralKeyOf, hookPath, nodeKeys, withSecret, type NodeKeys } from '../lightning/keys.js';
import { decodeMaster, publicKeyAt, wipeMaster, type HdMaster } from '../wallet/hd.js';
import { parsePath } from '../wallet/paths.js';
import type { StoredObject } from '../store/store.js';
import { isKeyStateError, type Ctx, type VaultCore } from './core.js';
import { decideSignCommit } from './step.js';
import { reconcile, restore, type Reconciled, type ReconcileRequest, type Restored } from './lightning-reconcile.js';

export type { ReconcileStatus } from './lightning-reconcile.js';

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

  /** The public key that verifies this node's state records (reconciliation's, vault/lightning-reconcile.ts). */
  verifierOf(key: KeyRecord): KeyObject {
    return this.publicsOf(key).verifier;
  }

  /** The node's public keys, record keys and verifier, derived once per key version. */
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

  /** Reconciliation with the node (vault/lightning-reconcile.ts): in sync, node behind, vault behind, or a fork refused. */
  reconcile(ctx: Ctx, ref: string, req: ReconcileRequest): Promise<Reconciled> {
    return reconcile(this.core, this, this.metrics, ctx, ref, req);
  }

  /** Restores records checked from the backup (vault/lightning-reconcile.ts). An operator's act: scope `manage`. */
  restore(ctx: Ctx, ref: string, records: Uint8Array[]): Promise<Restored> {
    return restore(this.core, this, this.metrics, ctx, ref, records);
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
