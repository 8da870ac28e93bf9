/**
 * Keys: creation (in this process or inside a PKCS#11 token), import, adoption of token
 * objects, purpose, enable and disable, destroy, and listing. Every change is one durable
 * transaction with its audit entry; refusals are audited.
 */
import type { StateMutation } from '../store/store.js';
import { CustosError, isCustosError } from '../core/errors.js';
import { wipe } from '../core/bytes.js';
import type { Algorithm, AuditDraft, KeyAttributes, KeyRecord, Principal } from '../core/types.js';
import { generateKey, publicKeyFromSecret } from '../crypto/algorithms.js';
import { importSecret, type ImportFormat } from '../keystore/import.js';
import { parsePublicKey, type PublicFormat } from '../crypto/public-keys.js';
import { Pkcs11Backend } from '../backends/pkcs11/backend.js';
import { keyInScope, permits } from '../accounts/principals.js';
import { isExpired, sha256hex, type Ctx, type VaultCore } from './core.js';
import { checkAttributes, checkLabel, choosePurpose, newKeyId } from './key-rules.js';
import { giveLegacyPurpose, migrateLegacyPurposes } from './legacy-purposes.js';

export { checkLabel, choosePurpose, newKeyId, publicKeyFormats } from './key-rules.js';
export type { PublicKeyFormats } from './key-rules.js';

/** Whether a failed commit may still have landed: the storage failed, not the request. */
function mayHaveCommitted(e: unknown): boolean {
  return !isCustosError(e) || e.code === 'storage_unavailable' || e.code === 'audit_unavailable' || e.code === 'internal';
}

/** The most keys one batch creates, in one transaction. */
export const MAX_BATCH = 1000;

/** What a new key is made from: its secret (and, when the generator gave it, its public key), or a token's public key and blob. */
type NewMaterial = { secret: Uint8Array; publicKey?: Uint8Array } | { publicKey: Uint8Array; sealed: Uint8Array };

/** A listed key as the API shows it: a row that failed its check is `corrupt`, not hidden. */
function shownKey(k: KeyRecord & { tampered?: true }): KeyRecord & { corrupt?: true } {
  if (!k.tampered) return k;
  const { tampered: _t, ...rest } = k;
  return { ...rest, corrupt: true as const };
}

export class Keys {
  constructor(private readonly core: VaultCore) {}

  /**
   * One page of keys in label order after `after`, and the cursor of the next page (null at
   * the end). A scoped principal's pages hold only its keys, and the cursor is always one of
   * them, never a label outside its scope.
   */
  async listKeysPage(principal: Principal, after: string | null, limit: number): Promise<{ keys: Array<KeyRecord & { corrupt?: true }>; next: string | null }> {
    const n = Math.max(1, Math.min(10_000, Math.floor(limit)));
    if (!permits(principal, 'read')) return { keys: [], next: null };
    // The page is filled with keys the principal may see, and the cursor is the last of them:
    // a cursor taken from the unfiltered rows would name keys outside its scope. (A narrow
    // scope over a large vault therefore reads on until the page fills; a prefix range per
    // glob would bound that.)
    const visible: Array<KeyRecord & { tampered?: true }> = [];
    let cursor = after;
    let more = true;
    while (visible.length < n && more) {
      const page = await this.core.deps.store.listKeysPage(cursor, n);
      more = page.length >= n;
      if (page.length > 0) cursor = page[page.length - 1]!.label;
      for (const k of page) if (visible.length < n && keyInScope(principal, k)) visible.push(k);
    }
    const next = visible.length === n && (more || visible[visible.length - 1]!.label !== cursor) ? visible[visible.length - 1]!.label : null;
    return {
      keys: visible.map(shownKey),
      next,
    };
  }

  async storeNewKey(
    ctx: Ctx,
    operation: 'create' | 'import' | 'adopt',
    label: string,
    algorithm: Algorithm,
    material: NewMaterial,
    exportable: boolean,
    attributes: KeyAttributes = {},
    /** State the key must have from its first moment, in the same transaction (a watermark). */
    more: (key: KeyRecord) => StateMutation[] = () => [],
  ): Promise<KeyRecord> {
    const made = await this.newRecord(ctx, operation, label, algorithm, material, exportable, attributes);
    try {
      await this.core.commitAs(ctx, { mutations: [{ kind: 'insertKey', key: made.key }, ...more(made.key)], audit: [made.draft] });
    } catch (e) {
      if (isCustosError(e) && e.code === 'label_taken') return this.core.refuse(ctx, operation, { id: null, label }, e);
      throw e;
    }
    return made.key;
  }

  /** A new key's record, its secret sealed into it, and its audit draft: every new key passes here, within its principal's scope. */
  private async newRecord(
    ctx: Ctx,
    operation: 'create' | 'import' | 'adopt',
    label: string,
    algorithm: Algorithm,
    material: NewMaterial,
    exportable: boolean,
    attributes: KeyAttributes,
  ): Promise<{ key: KeyRecord; draft: AuditDraft }> {
    if (attributes.purpose === undefined) attributes = { ...attributes, purpose: 'general' };
    checkAttributes(attributes);
    // Every new key passes here: a scoped principal creates only within its globs and tags.
    await this.core.checkNewKey(ctx, operation, label, attributes);
    const now = new Date().toISOString();
    const key: KeyRecord = {
      id: newKeyId(),
      label,
      algorithm,
      publicKey: 'secret' in material ? (material.publicKey ?? publicKeyFromSecret(algorithm, material.secret)) : material.publicKey,
      state: 'active',
      exportable,
      origin: operation === 'create' ? 'generated' : 'imported',
      version: 1,
      createdAt: now,
      updatedAt: now,
      sealed: null,
      attributes,
    };
    key.sealed = this.core.deps.keyring.sealSecret(key, 'secret' in material ? material.secret : material.sealed);
    const backend = attributes.backend;
    const draft = this.core.draft(ctx, operation, key, 'ok', null, { algorithm, exportable, purpose: String(attributes.purpose), public_key_sha256: sha256hex(key.publicKey), ...(typeof backend === 'string' ? { backend, pkcs11_kind: String(attributes['pkcs11.kind']) } : {}) });
    return { key, draft };
  }

  /**
   * Generates many keys of one kind and records them in ONE unit: one transaction with an audit
   * entry per key, all of them or none. A taken label refuses the whole batch, and objects a
   * token made for it are destroyed. `POST /v1/keys/batch` (so `keys generate --count`) drives
   * this: one transaction per hundred keys instead of one per key.
   */
  async createKeys(ctx: Ctx, req: { labels: string[]; algorithm: Algorithm; backend?: string; wrapped?: boolean; purpose?: string }): Promise<KeyRecord[]> {
    if (req.labels.length < 1 || req.labels.length > MAX_BATCH) throw new CustosError('bad_request', `A batch holds 1 to ${MAX_BATCH} keys.`);
    for (const label of req.labels) checkLabel(label);
    const twice = req.labels.find((l, i) => req.labels.indexOf(l) !== i);
    if (twice !== undefined) throw new CustosError('bad_request', `The batch names ${twice} twice.`);
    const purpose = choosePurpose(req.algorithm, req.purpose, 'general');
    // Before a token generates anything (newRecord checks again, as for every way in).
    for (const label of req.labels) await this.core.checkNewKey(ctx, 'create', label, { purpose });
    const backend = this.backendFor(req.backend);
    if (!backend && req.wrapped) throw new CustosError('bad_request', 'wrapped applies to keys created in a PKCS#11 backend.');
    const made: Array<{ key: KeyRecord; draft: AuditDraft }> = [];
    const onToken: KeyAttributes[] = [];
    let committing = false;
    try {
      for (const label of req.labels) {
        if (backend) {
          const g = await backend.generate!(req.algorithm, label, { wrapped: req.wrapped === true });
          onToken.push(g.attributes);
          try {
            made.push(await this.newRecord(ctx, 'create', label, req.algorithm, { publicKey: g.publicKey, sealed: g.material }, false, { purpose, ...g.attributes }));
          } finally {
            wipe(g.material);
          }
        } else {
          const g = await generateKey(req.algorithm);
          try {
            made.push(await this.newRecord(ctx, 'create', label, req.algorithm, g, false, { purpose }));
          } finally {
            wipe(g.secret);
          }
        }
      }
      committing = true;
      await this.core.commitAs(ctx, { mutations: made.map((m) => ({ kind: 'insertKey' as const, key: m.key })), audit: made.map((m) => m.draft) });
    } catch (e) {
      // Not recorded: leave no orphan object on the token. But a commit whose answer was lost
      // (the connection dropped) may have landed: then the objects are left (keys token-objects
      // lists them; adopt takes one), never destroyed under keys that may exist.
      if (!committing || !mayHaveCommitted(e)) for (const attributes of onToken) await backend?.destroy?.({ attributes } as KeyRecord).catch(() => undefined);
      if (isCustosError(e) && e.code === 'label_taken') return this.core.refuse(ctx, 'create', { id: null, label: null }, e, { batch_first: req.labels[0]!, batch_count: req.labels.length });
      throw e;
    }
    return made.map((m) => m.key);
  }

  /** The backend a key is to be created in: `software` (default) or a configured `pkcs11:<name>`. */
  backendFor(name: string | undefined) {
    if (name === undefined || name === 'software') return null;
    const b = this.core.deps.backend.get(name);
    if (!b?.generate) throw new CustosError('bad_request', `No backend "${name.slice(0, 80)}" is configured here (backends: ${this.core.deps.backend.names().join(', ')}).`);
    return b;
  }

  /**
   * Generates a key: in this process (software), or inside a PKCS#11 token (`backend`
   * `pkcs11:<name>`), where `wrapped` keeps it as a token-wrapped blob in the database
   * instead of a token object. HSM keys are never exportable.
   */
  async createKey(ctx: Ctx, req: { label: string; algorithm: Algorithm; exportable: boolean; attributes?: KeyAttributes; backend?: string; wrapped?: boolean; purpose?: string }): Promise<KeyRecord> {
    checkLabel(req.label);
    // Before a token generates anything (storeNewKey checks again, for every way in).
    await this.core.checkNewKey(ctx, 'create', req.label, req.attributes);
    const purpose = choosePurpose(req.algorithm, req.purpose ?? (req.attributes?.purpose as string | undefined), 'general');
    req = { ...req, attributes: { ...req.attributes, purpose } };
    const backend = this.backendFor(req.backend);
    if (backend) {
      if (req.exportable) throw new CustosError('bad_request', 'A key held by an HSM is never exportable; create it without exportable.');
      const g = await backend.generate!(req.algorithm, req.label, { wrapped: req.wrapped === true });
      try {
        return await this.storeNewKey(ctx, 'create', req.label, req.algorithm, { publicKey: g.publicKey, sealed: g.material }, false, { ...req.attributes, ...g.attributes });
      } catch (e) {
        // Not recorded (label taken, refused): do not leave an orphan object on the token; unless
        // the commit's answer was lost and the key may exist (see createKeys).
        if (!mayHaveCommitted(e)) await backend.destroy?.({ attributes: g.attributes } as KeyRecord).catch(() => undefined);
        throw e;
      } finally {
        wipe(g.material);
      }
    }
    if (req.wrapped) throw new CustosError('bad_request', 'wrapped applies to keys created in a PKCS#11 backend.');
    const g = await generateKey(req.algorithm);
    try {
      return await this.storeNewKey(ctx, 'create', req.label, req.algorithm, g, req.exportable, req.attributes);
    } finally {
      wipe(g.secret);
    }
  }

  /** The private keys on a PKCS#11 token, with the vault key (if any) each is recorded as: what `adopt` can take. */
  async tokenObjects(backendName: string): Promise<Array<{ id: string; label: string; algorithm: Algorithm | null; extractable: boolean; sensitive: boolean; vaultKey: string | null }>> {
    const backend = this.backendFor(backendName);
    if (!(backend instanceof Pkcs11Backend)) throw new CustosError('bad_request', 'Listing objects needs a PKCS#11 backend (pkcs11:<name>).');
    const objects = await backend.listObjects();
    const out = [];
    for (const o of objects) {
      const id = Buffer.from(o.id).toString('hex');
      // By the attribute index, one object at a time: never every key of the vault.
      const vaultKey = (await this.twinOf(backendName, id))?.label ?? null;
      out.push({ id, label: o.label, algorithm: o.algorithm, extractable: o.extractable, sensitive: o.sensitive, vaultKey });
    }
    return out;
  }

  /** The live vault key recorded for this token object, if any. */
  private async twinOf(backendName: string, pkcs11Id: string): Promise<KeyRecord | undefined> {
    // The parsed attributes decide (the index reads the JSON its own way: with a duplicated
    // name it may see another value than the MACed one).
    return (await this.core.deps.store.findKeysBy({ attribute: 'pkcs11.id', value: pkcs11Id })).find((k) => !k.tampered && k.state !== 'destroyed' && k.attributes.backend === backendName && k.attributes['pkcs11.id'] === pkcs11Id);
  }

  /** Takes a key that already exists on a PKCS#11 token (by CKA_LABEL or CKA_ID) under the vault's policy and audit. */
  async adoptKey(ctx: Ctx, req: { label: string; backend: string; objectLabel?: string; objectId?: string; purpose?: string }): Promise<KeyRecord> {
    checkLabel(req.label);
    await this.core.checkNewKey(ctx, 'adopt', req.label);
    const backend = this.backendFor(req.backend);
    if (!(backend instanceof Pkcs11Backend)) throw new CustosError('bad_request', 'Adopting needs a PKCS#11 backend (--backend pkcs11:<name>).');
    try {
      const a = await backend.adopt({ objectLabel: req.objectLabel, objectId: req.objectId });
      const twin = typeof a.attributes['pkcs11.id'] === 'string' ? await this.twinOf(String(a.attributes.backend), a.attributes['pkcs11.id']) : undefined;
      if (twin) throw new CustosError('label_taken', `That token object is already in the vault as ${twin.label}; one object, one key record (so its budgets and policies cannot be split).`);
      const purpose = choosePurpose(a.algorithm, req.purpose, 'general');
      return await this.storeNewKey(ctx, 'adopt', req.label, a.algorithm, { publicKey: a.publicKey, sealed: a.material }, false, { ...a.attributes, purpose });
    } catch (e) {
      if (isCustosError(e) && e.code !== 'label_taken') return this.core.refuse(ctx, 'adopt', { id: null, label: req.label }, e, { backend: req.backend });
      throw e;
    }
  }

  /** Gives a legacy key its one purpose, once (legacy-purposes.ts). */
  setPurpose(ctx: Ctx, ref: string, purpose: string, details: AuditDraft['details'] = {}): Promise<KeyRecord> {
    return giveLegacyPurpose(this.core, ctx, ref, purpose, details);
  }

  /** At open: legacy keys with a consensus watermark become consensus keys (legacy-purposes.ts). */
  migratePurposes(): Promise<number> {
    return migrateLegacyPurposes(this, this.core);
  }

  /** `material` is wiped here once read. */
  async importKey(ctx: Ctx, req: { label: string; algorithm?: Algorithm; format: ImportFormat; material: Uint8Array; exportable: boolean; attributes?: KeyAttributes; purpose?: string }): Promise<KeyRecord> {
    let imported;
    let purpose: string;
    try {
      checkLabel(req.label);
      imported = importSecret(req.format, req.material, req.algorithm);
      // A priv_validator_key.json is a consensus key unless the operator says otherwise.
      purpose = choosePurpose(imported.algorithm, req.purpose ?? (req.attributes?.purpose as string | undefined), req.format === 'cometbft' ? 'consensus' : 'general');
    } catch (e) {
      wipe(imported?.secret);
      if (isCustosError(e) && e.code !== 'invalid_label') return this.core.refuse(ctx, 'import', { id: null, label: req.label }, e, { format: req.format });
      throw e;
    } finally {
      wipe(req.material);
    }
    try {
      return await this.storeNewKey(ctx, 'import', req.label, imported.algorithm, { secret: imported.secret }, req.exportable, { ...req.attributes, purpose });
    } finally {
      wipe(imported.secret);
    }
  }

  /**
   * Imports a bare public key as a key that verifies and never signs (purpose `verify`): a
   * counterparty's or an approver's key, checked through the same API as the vault's own.
   * Its envelope seals no secret; the purpose refuses every signing path before one is opened.
   */
  async importPublicKey(ctx: Ctx, req: { label: string; format: PublicFormat; material: Uint8Array; algorithm?: Algorithm; tags?: string[] }): Promise<KeyRecord> {
    let parsed: { algorithm: Algorithm; publicKey: Uint8Array };
    try {
      checkLabel(req.label);
      parsed = parsePublicKey(req.format, req.material, req.algorithm);
    } catch (e) {
      if (isCustosError(e) && e.code !== 'invalid_label') return this.core.refuse(ctx, 'import_public', { id: null, label: req.label }, e, { format: req.format });
      throw e;
    }
    return this.storeNewKey(ctx, 'import', req.label, parsed.algorithm, { publicKey: parsed.publicKey, sealed: new Uint8Array(0) }, false, {
      purpose: 'verify',
      ...(req.tags?.length ? { tags: req.tags.join(',') } : {}),
    });
  }

  async setEnabled(ctx: Ctx, ref: string, enabled: boolean): Promise<KeyRecord> {
    const operation = enabled ? 'enable' : 'disable';
    const key = await this.core.scopedKey(ctx, operation, 'manage', ref);
    if (key.state === 'destroyed') return this.core.refuse(ctx, operation, key, new CustosError('key_destroyed', `The key ${key.label} was destroyed.`));
    const now = new Date().toISOString();
    await this.core.commitAs(ctx, {
      mutations: [{ kind: 'setKeyState', id: key.id, state: enabled ? 'active' : 'disabled', updatedAt: now }],
      audit: [this.core.draft(ctx, operation, key, 'ok', null)],
    });
    if (!enabled) {
      this.core.deps.backend.forget(key.id);
      this.core.hdCache.forget(key.id);
    }
    return { ...key, state: enabled ? 'active' : 'disabled', updatedAt: now };
  }

  async destroyKey(ctx: Ctx, ref: string): Promise<KeyRecord> {
    const key = await this.core.scopedKey(ctx, 'destroy', 'destroy', ref);
    if (key.state === 'destroyed') return this.core.refuse(ctx, 'destroy', key, new CustosError('key_destroyed', `The key ${key.label} was already destroyed.`));
    this.core.deps.backend.forget(key.id);
    this.core.hdCache.forget(key.id);
    const now = new Date().toISOString();
    await this.core.commitAs(ctx, {
      mutations: [{ kind: 'destroyKey', id: key.id, updatedAt: now }],
      audit: [this.core.draft(ctx, 'destroy', key, 'ok', null)],
    });
    // Again after the commit: a request that was deriving meanwhile may have prepared more.
    this.core.forgetKey(key.id);
    // The record is destroyed first (so no state has an active key without its object), then
    // the token object. An adopted object predates the vault and stays on the token. If the
    // token cannot delete it now, the audit log says so and the vault can never use it again.
    if (key.attributes['pkcs11.adopted'] !== true) {
      try {
        await this.core.deps.backend.destroy(key);
      } catch (e) {
        await this.core.deps.committer.audit(this.core.draft(ctx, 'destroy_token_object', key, 'failed', isCustosError(e) ? e.fullCode : 'internal', { backend: String(key.attributes.backend ?? '') })).catch(() => undefined);
      }
    }
    // The destroy is committed; wiping the old bytes out of the WAL is best effort here and
    // retried at shutdown (a reader holding the WAL open can postpone it).
    this.core.purgePending = !(await this.core.deps.store.purgeFreed().catch(() => false));
    return { ...key, state: 'destroyed', sealed: null, updatedAt: now };
  }

  /**
   * Destroys every key whose `expires_at` has passed (ssh-agent lifetime constraints, say);
   * run at open and periodically, so an expired key is gone across restarts too.
   */
  async destroyExpired(principal: Principal): Promise<number> {
    let n = 0;
    for (const k of await this.core.deps.store.listExpiringKeys()) {
      if (k.state !== 'destroyed' && isExpired(k)) {
        await this.destroyKey({ principal, requestId: `expire-${k.id}` }, k.id).catch(() => undefined);
        n++;
      }
    }
    return n;
  }
}
