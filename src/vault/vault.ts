/**
 * The vault: the one request path every front end uses.
 *   resolve the key → check its state and the input → policy → durable "decided" audit entry
 *   → backend signs → durable outcome entry → answer.
 * Nothing is signed or exported unless the decision is on disk first (fail closed), and
 * every request that touches a key, denied ones included, leaves an audit entry.
 */
import { createHash, randomBytes } from 'node:crypto';
import { CustosError, isCustosError, markAudited } from '../core/errors.js';
import { assertPurpose, isKeyPurpose, KEY_PURPOSES, purposeOf, type KeyPurpose, type KeyUse } from '../core/purpose.js';
import { equalBytes, wipe } from '../core/bytes.js';
import type { Algorithm, AuditDraft, KeyAttributes, KeyRecord, Principal, SignOptions, SignPayload, SignRequest, SignResult } from '../core/types.js';
import { ALGORITHM_INFO, checkSignInput, generateSecret, publicKeyFromSecret, spkiPem, verifySignature } from '../crypto/algorithms.js';
import { eciesEncrypt, encodeExportedKey, type Kem } from '../crypto/ecies.js';
import { encodeOpenSshPublicKey } from '../crypto/openssh.js';
import type { Keyring } from '../keystore/keyring.js';
import { importSecret, type ImportFormat } from '../keystore/import.js';
import type { Backends } from '../backends/backend.js';
import { Pkcs11Backend } from '../backends/pkcs11/backend.js';
import { Approvals } from './approvals.js';
import { comparePosition, type StateMutation, type Store, type Watermark, type WatermarkPosition } from '../store/store.js';
import { PolicySet, type PolicyVersion } from '../policy/policy-set.js';
import { explain, policyKeyOf, stateScopes, type Evaluation } from '../policy/engine.js';
import type { PayloadType, PolicyRequest, PsbtFacts, RuleState, SshFacts } from '../policy/model.js';
import type { PolicyFormat } from '../policy/document.js';
import { DerivationCache, decodeMaster, deriveChild, encodeMaster, exportXpub, importXprv, masterFingerprint, masterFromSeed, seedFromMnemonic, wipeMaster, type HdCurve, type HdMaster } from '../wallet/hd.js';
import { isUnder, parsePath } from '../wallet/paths.js';
import { deriveFromMaster, ownsKeyFromMaster, signPsbt as signPsbtWith, analyzePsbt, type BitcoinNetwork, type PsbtAnalysis } from '../wallet/psbt.js';
import { prepareSigner } from '../crypto/algorithms.js';
import type { GroupCommitter } from './commit.js';
import { checkImportedState } from '../crypto/cometbft/imported-state.js';

const LABEL_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$/;
const ID_PREFIX = 'key_';
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** A stable key id: `key_` and 26 base32 characters (130 random bits). */
export function newKeyId(): string {
  const b = randomBytes(26);
  let s = ID_PREFIX;
  for (const x of b) s += BASE32[x & 31];
  return s;
}

export function checkLabel(label: string): void {
  if (!LABEL_RE.test(label) || label.startsWith(ID_PREFIX)) {
    throw new CustosError('invalid_label', 'A label is 1–64 characters from A–Z a–z 0–9 . _ : @ -, starts with a letter or digit, and does not start with "key_" (reserved for key ids).');
  }
}

const sha256hex = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const isKeyStateError = (e: unknown): e is CustosError => isCustosError(e) && (e.code === 'key_disabled' || e.code === 'key_destroyed');

export function isExpired(k: Pick<KeyRecord, 'attributes'>, now = Date.now()): boolean {
  const at = k.attributes.expires_at;
  return typeof at === 'string' && Date.parse(at) <= now;
}

const ATTR_KEY_RE = /^[a-z][a-z0-9_.-]{0,63}$/;

function checkAttributes(a: KeyAttributes): void {
  const entries = Object.entries(a);
  if (entries.length > 32) throw new CustosError('bad_request', 'A key has at most 32 attributes.');
  for (const [k, v] of entries) {
    if (!ATTR_KEY_RE.test(k)) throw new CustosError('bad_request', `Attribute name "${k.slice(0, 64)}" is not valid.`);
    if (typeof v === 'string' && v.length > 8192) throw new CustosError('bad_request', `Attribute ${k} is longer than 8192 characters.`);
  }
  if (a.expires_at !== undefined && (typeof a.expires_at !== 'string' || Number.isNaN(Date.parse(a.expires_at)))) {
    throw new CustosError('bad_request', 'expires_at must be an ISO 8601 time.');
  }
  if (a.purpose !== undefined && (typeof a.purpose !== 'string' || !isKeyPurpose(a.purpose))) {
    throw new CustosError('bad_request', `purpose must be one of ${KEY_PURPOSES.join(', ')}.`);
  }
}

/** Algorithms each purpose can use: a consensus key is what CometBFT accepts, and so on. */
const PURPOSE_ALGORITHMS: Record<Exclude<KeyPurpose, 'legacy'>, readonly Algorithm[] | null> = {
  general: null,
  // ed25519-expanded: Tor keys added over the agent protocol (signed by blob, never for logins).
  ssh: ['ed25519', 'ed25519-expanded', 'p256', 'rsa-2048', 'rsa-3072', 'rsa-4096'],
  consensus: ['ed25519', 'ed25519-expanded', 'secp256k1'],
  bitcoin: ['secp256k1', 'secp256k1-bip340'],
};

/** The purpose a new key gets: the one asked for, else what its origin implies. */
function choosePurpose(algorithm: Algorithm, asked: string | undefined, fallback: Exclude<KeyPurpose, 'legacy'>): Exclude<KeyPurpose, 'legacy'> {
  const p = asked ?? fallback;
  if (!isKeyPurpose(p)) throw new CustosError('bad_request', `purpose must be one of ${KEY_PURPOSES.join(', ')}.`);
  const allowed = PURPOSE_ALGORITHMS[p];
  if (allowed && !allowed.includes(algorithm)) throw new CustosError('bad_request', `A ${p} key is ${allowed.join(', ')}; ${algorithm} cannot be one.`);
  return p;
}

/**
 * What the audit log records for a key reference that matched no key: the reference itself
 * when it has the form of a label or id, else only its hash, so hostile input (control
 * characters, escape sequences) never reaches a log reader's terminal.
 */
function auditRef(ref: string): string {
  return LABEL_RE.test(ref) ? ref : `sha256:${createHash('sha256').update(ref, 'utf8').digest('hex').slice(0, 32)}`;
}

export interface PublicKeyFormats {
  raw: Uint8Array;
  spkiPem: string;
  /** `authorized_keys` line, for algorithms SSH has. */
  openssh: string | null;
}

export function publicKeyFormats(k: Pick<KeyRecord, 'algorithm' | 'publicKey' | 'label'>): PublicKeyFormats {
  let openssh: string | null = null;
  if (k.algorithm === 'ed25519' || k.algorithm === 'ed25519-expanded') openssh = encodeOpenSshPublicKey({ algorithm: 'ed25519', publicKey: k.publicKey }, k.label);
  else if (k.algorithm === 'p256') openssh = encodeOpenSshPublicKey({ algorithm: 'p256', publicKey: k.publicKey }, k.label);
  else if (ALGORITHM_INFO[k.algorithm].family === 'rsa') openssh = encodeOpenSshPublicKey({ algorithm: 'rsa', spki: k.publicKey }, k.label);
  return { raw: k.publicKey, spkiPem: spkiPem(k.algorithm, k.publicKey), openssh };
}

export interface ConsensusSignRequest {
  requestId: string;
  principal: Principal;
  key: string;
  chainId: string;
  /** Step: 1 proposal, 2 prevote, 3 precommit (FilePV numbering). */
  position: WatermarkPosition;
  /** Canonical sign bytes, built by the front end from the decoded request. */
  signBytes: Uint8Array;
  /** The front end's knowledge of its message format: do two sign bytes differ only in their timestamp? */
  onlyTimestampDiffers(stored: Uint8Array, requested: Uint8Array): boolean;
  context: Record<string, string>;
}

export interface ConsensusSignResult {
  keyId: string;
  signature: Uint8Array;
  /** The sign bytes the signature is over: the stored ones when a previous signature is reused. */
  signBytes: Uint8Array;
  reused: boolean;
}

export interface VaultMetrics {
  signed(algorithm: Algorithm): void;
  denied(reason: string): void;
  /** A protected row failed its MAC or count (store/rows.ts): the alert an operator pages on. */
  integrityAlarm?(table: string, problem: string, pk: string): void;
}

export interface VaultDeps {
  /** How long a request needing approval waits; the caller sees the deadline. */
  approvalTimeoutMs?: number;
  approvals?: Approvals;
  store: Store;
  keyring: Keyring;
  backend: Backends;
  committer: GroupCommitter;
  metrics?: VaultMetrics;
}

/** Meta rows: policy versions (`policy.<id>.<version, 8 digits>`) and rule state (`policy_state.<scope>`). */
const POLICY_PREFIX = 'policy.';
const STATE_PREFIX = 'policy_state.';
const POLICY_GENERATION = 'policy_generation';
const policyRow = (v: Pick<PolicyVersion, 'id' | 'version'>) => `${POLICY_PREFIX}${v.id}.${String(v.version).padStart(8, '0')}`;

/** What a sign request is, for policy: the payload type and the facts rules may use. */
export interface PolicySubject {
  payloadType: PayloadType | null;
  facts: Record<string, string>;
  payload?: Uint8Array;
  psbt?: PsbtFacts;
  ssh?: SshFacts;
  /** HD keys: the derivation paths signed with. */
  paths?: number[][];
}

interface Ctx {
  principal: Principal;
  requestId: string;
}

export class Vault {
  private purgePending = false;
  readonly approvals: Approvals;

  private policySet: PolicySet;
  /** The `policy_generation` meta value the set was loaded at; another process's upload bumps it. */
  private policyGeneration: string | null = null;
  private policiesLoaded = false;

  constructor(private readonly deps: VaultDeps) {
    this.approvals = deps.approvals ?? new Approvals();
    this.policySet = new PolicySet();
  }

  get store(): Store {
    return this.deps.store;
  }

  get policies(): PolicySet {
    return this.policySet;
  }

  /**
   * Reloads the policy documents when another process (or this one) changed them: every
   * upload and retirement bumps `policy_generation`, and decisions compare-and-set it, so a
   * request is never decided on documents that were replaced meanwhile.
   */
  private async currentPolicies(): Promise<{ set: PolicySet; generation: string | null }> {
    const generation = await this.deps.store.getMeta(POLICY_GENERATION);
    if (!this.policiesLoaded || generation !== this.policyGeneration) {
      const rows = await this.deps.store.listMeta(POLICY_PREFIX);
      try {
        this.policySet = PolicySet.restore(rows.map((r) => JSON.parse(r.value) as PolicyVersion));
      } catch (e) {
        throw new CustosError('database_corrupt', `A stored policy document does not load (${(e as Error).message}); the database was altered. Restore it from a backup.`);
      }
      this.policyGeneration = generation;
      this.policiesLoaded = true;
    }
    return { set: this.policySet, generation };
  }

  /** Loads the policy documents in force (at open, so a broken one stops the start, not a request). */
  async loadPolicies(): Promise<void> {
    await this.currentPolicies();
  }

  private draft(ctx: Ctx, operation: string, key: { id: string | null; label: string | null }, outcome: AuditDraft['outcome'], reason: string | null, details: AuditDraft['details'] = {}): AuditDraft {
    return { requestId: ctx.requestId, principal: ctx.principal.id, operation, keyId: key.id, keyLabel: key.label, outcome, reason, details };
  }

  /**
   * An audit entry for something a front end decided on its own (an ssh-agent lock, unlock or
   * refused add, a privval connection refused for its node id): every refusal leaves a
   * record with its reason code, whichever layer refused. Resolves once durable.
   */
  async recordEvent(
    ctx: Ctx,
    operation: string,
    key: Pick<KeyRecord, 'id' | 'label'> | null,
    outcome: 'ok' | 'denied' | 'failed',
    reason: string | null,
    details: AuditDraft['details'] = {},
  ): Promise<void> {
    if (outcome === 'denied' && reason) this.deps.metrics?.denied(reason);
    await this.deps.committer.audit(this.draft(ctx, operation, key ? { id: key.id, label: key.label } : { id: null, label: null }, outcome, reason, details));
  }

  /** Audits a refusal, then throws it. If even the refusal cannot be audited, that error wins. */
  private async refuse(ctx: Ctx, operation: string, key: { id: string | null; label: string | null }, err: CustosError, details: AuditDraft['details'] = {}): Promise<never> {
    this.deps.metrics?.denied(err.fullCode);
    await this.deps.committer.audit(this.draft(ctx, operation, key, 'denied', err.fullCode, details));
    throw markAudited(err);
  }

  /**
   * Commits an audit entry for a key operation, together with a check that the key is still
   * active at that moment: a request racing a disable or destroy loses the race.
   */
  private async commitGuarded(key: KeyRecord, entry: AuditDraft): Promise<void> {
    await this.deps.committer.commit({ mutations: [{ kind: 'assertKeyActive', id: key.id }], audit: [entry] });
  }

  /** Finds a key by id or label, for an operation that needs it usable. */
  private async usableKey(ctx: Ctx, operation: string, ref: string): Promise<KeyRecord> {
    let key: KeyRecord | null;
    try {
      key = await this.deps.store.findKey(ref);
    } catch (e) {
      // A key row edited outside Custos: never obeyed, and the refusal is on the record.
      if (isCustosError(e) && e.code === 'database_corrupt') return this.refuse(ctx, operation, { id: null, label: auditRef(ref) }, e);
      throw e;
    }
    if (!key) return this.refuse(ctx, operation, { id: null, label: auditRef(ref) }, new CustosError('key_not_found', `No key has the id or label "${ref.slice(0, 80)}".`));
    if (key.state === 'destroyed') return this.refuse(ctx, operation, key, new CustosError('key_destroyed', `The key ${key.label} was destroyed; it can no longer be used.`));
    if (key.state === 'disabled') return this.refuse(ctx, operation, key, new CustosError('key_disabled', `The key ${key.label} is disabled; enable it first.`));
    if (isExpired(key)) return this.refuse(ctx, operation, key, new CustosError('key_expired', `The key ${key.label} expired at ${key.attributes.expires_at}; it is destroyed shortly.`));
    return key;
  }

  /** A key as stored, its bound fields (public key, exportable) authenticated by its envelope. */
  async getKey(ref: string): Promise<KeyRecord> {
    const key = await this.deps.store.findKey(ref);
    if (!key) throw new CustosError('key_not_found', `No key has the id or label "${ref.slice(0, 80)}".`);
    this.deps.keyring.checkRecord(key);
    return key;
  }

  /** All keys; one whose record fails authentication is listed with `corrupt: true`, not hidden. */
  async listKeys(): Promise<Array<KeyRecord & { corrupt?: true }>> {
    const keys = await this.deps.store.listKeys();
    return keys.map((k) => {
      if (k.tampered) return { ...k, corrupt: true as const };
      try {
        this.deps.keyring.checkRecord(k);
        return k;
      } catch {
        return { ...k, corrupt: true as const };
      }
    });
  }

  private async storeNewKey(
    ctx: Ctx,
    operation: 'create' | 'import' | 'adopt',
    label: string,
    algorithm: Algorithm,
    material: { secret: Uint8Array } | { publicKey: Uint8Array; sealed: Uint8Array },
    exportable: boolean,
    attributes: KeyAttributes = {},
  ): Promise<KeyRecord> {
    if (attributes.purpose === undefined) attributes = { ...attributes, purpose: 'general' };
    checkAttributes(attributes);
    const now = new Date().toISOString();
    const key: KeyRecord = {
      id: newKeyId(),
      label,
      algorithm,
      publicKey: 'secret' in material ? publicKeyFromSecret(algorithm, material.secret) : material.publicKey,
      state: 'active',
      exportable,
      origin: operation === 'create' ? 'generated' : 'imported',
      version: 1,
      createdAt: now,
      updatedAt: now,
      sealed: null,
      attributes,
    };
    key.sealed = this.deps.keyring.sealSecret(key, 'secret' in material ? material.secret : material.sealed);
    const backend = attributes.backend;
    try {
      await this.deps.committer.commit({
        mutations: [{ kind: 'insertKey', key }],
        audit: [this.draft(ctx, operation, key, 'ok', null, { algorithm, exportable, purpose: String(attributes.purpose), public_key_sha256: sha256hex(key.publicKey), ...(typeof backend === 'string' ? { backend, pkcs11_kind: String(attributes['pkcs11.kind']) } : {}) })],
      });
    } catch (e) {
      if (isCustosError(e) && e.code === 'label_taken') return this.refuse(ctx, operation, { id: null, label }, e);
      throw e;
    }
    return key;
  }

  /** The backend a key is to be created in: `software` (default) or a configured `pkcs11:<name>`. */
  private backendFor(name: string | undefined) {
    if (name === undefined || name === 'software') return null;
    const b = this.deps.backend.get(name);
    if (!b?.generate) throw new CustosError('bad_request', `No backend "${name.slice(0, 80)}" is configured here (backends: ${this.deps.backend.names().join(', ')}).`);
    return b;
  }

  /**
   * Generates a key: in this process (software), or inside a PKCS#11 token (`backend`
   * `pkcs11:<name>`), where `wrapped` keeps it as a token-wrapped blob in the database
   * instead of a token object. HSM keys are never exportable.
   */
  async createKey(ctx: Ctx, req: { label: string; algorithm: Algorithm; exportable: boolean; attributes?: KeyAttributes; backend?: string; wrapped?: boolean; purpose?: string }): Promise<KeyRecord> {
    checkLabel(req.label);
    const purpose = choosePurpose(req.algorithm, req.purpose ?? (req.attributes?.purpose as string | undefined), 'general');
    req = { ...req, attributes: { ...req.attributes, purpose } };
    const backend = this.backendFor(req.backend);
    if (backend) {
      if (req.exportable) throw new CustosError('bad_request', 'A key held by an HSM is never exportable; create it without exportable.');
      const g = await backend.generate!(req.algorithm, req.label, { wrapped: req.wrapped === true });
      try {
        return await this.storeNewKey(ctx, 'create', req.label, req.algorithm, { publicKey: g.publicKey, sealed: g.material }, false, { ...req.attributes, ...g.attributes });
      } catch (e) {
        // Not recorded (label taken, storage down): do not leave an orphan object on the token.
        await backend.destroy?.({ attributes: g.attributes } as KeyRecord).catch(() => undefined);
        throw e;
      } finally {
        wipe(g.material);
      }
    }
    if (req.wrapped) throw new CustosError('bad_request', 'wrapped applies to keys created in a PKCS#11 backend.');
    const secret = await generateSecret(req.algorithm);
    try {
      return await this.storeNewKey(ctx, 'create', req.label, req.algorithm, { secret }, req.exportable, req.attributes);
    } finally {
      wipe(secret);
    }
  }

  /** The private keys on a PKCS#11 token, with the vault key (if any) each is recorded as: what `adopt` can take. */
  async tokenObjects(backendName: string): Promise<Array<{ id: string; label: string; algorithm: Algorithm | null; extractable: boolean; sensitive: boolean; vaultKey: string | null }>> {
    const backend = this.backendFor(backendName);
    if (!(backend instanceof Pkcs11Backend)) throw new CustosError('bad_request', 'Listing objects needs a PKCS#11 backend (pkcs11:<name>).');
    const objects = await backend.listObjects();
    const keys = (await this.deps.store.listKeys()).filter((k) => k.state !== 'destroyed' && k.attributes.backend === backendName);
    return objects.map((o) => {
      const id = Buffer.from(o.id).toString('hex');
      return { id, label: o.label, algorithm: o.algorithm, extractable: o.extractable, sensitive: o.sensitive, vaultKey: keys.find((k) => k.attributes['pkcs11.id'] === id)?.label ?? null };
    });
  }

  /** Takes a key that already exists on a PKCS#11 token (by CKA_LABEL or CKA_ID) under the vault's policy and audit. */
  async adoptKey(ctx: Ctx, req: { label: string; backend: string; objectLabel?: string; objectId?: string; purpose?: string }): Promise<KeyRecord> {
    checkLabel(req.label);
    const backend = this.backendFor(req.backend);
    if (!(backend instanceof Pkcs11Backend)) throw new CustosError('bad_request', 'Adopting needs a PKCS#11 backend (--backend pkcs11:<name>).');
    try {
      const a = await backend.adopt({ objectLabel: req.objectLabel, objectId: req.objectId });
      const twin = (await this.deps.store.listKeys()).find((k) => k.state !== 'destroyed' && k.attributes.backend === a.attributes.backend && k.attributes['pkcs11.id'] === a.attributes['pkcs11.id']);
      if (twin) throw new CustosError('label_taken', `That token object is already in the vault as ${twin.label}; one object, one key record (so its budgets and policies cannot be split).`);
      const purpose = choosePurpose(a.algorithm, req.purpose, 'general');
      return await this.storeNewKey(ctx, 'adopt', req.label, a.algorithm, { publicKey: a.publicKey, sealed: a.material }, false, { ...a.attributes, purpose });
    } catch (e) {
      if (isCustosError(e) && e.code !== 'label_taken') return this.refuse(ctx, 'adopt', { id: null, label: req.label }, e, { backend: req.backend });
      throw e;
    }
  }

  /**
   * Gives a key made before purposes existed (`legacy`) its one purpose, once: the envelope is
   * sealed again with the new attribute bound into it, and the change is audited. A key that
   * already has a purpose keeps it: purposes are fixed at creation.
   */
  async setPurpose(ctx: Ctx, ref: string, purpose: string, details: AuditDraft['details'] = {}): Promise<KeyRecord> {
    const key = await this.deps.store.findKey(ref);
    if (!key) return this.refuse(ctx, 'set_purpose', { id: null, label: auditRef(ref) }, new CustosError('key_not_found', `No key has the id or label "${ref.slice(0, 80)}".`));
    const current = purposeOf(key);
    try {
      if (key.state === 'destroyed') throw new CustosError('key_destroyed', `The key ${key.label} was destroyed.`);
      if (current !== 'legacy') throw new CustosError('key_purpose', `The key ${key.label} is a ${current} key: a purpose is fixed at creation and never changes. Create a new key for the other use.`);
      choosePurpose(key.algorithm, purpose, 'general');
      if (purpose === 'bitcoin' && key.attributes.hd === 'slip10') throw new CustosError('bad_request', 'A SLIP-10 ed25519 HD key cannot be a bitcoin key.');
      if (key.attributes.hd !== undefined && purpose !== 'bitcoin' && purpose !== 'general') throw new CustosError('bad_request', 'An HD key is a bitcoin or a general key.');
    } catch (e) {
      if (isCustosError(e)) return this.refuse(ctx, 'set_purpose', key, e, { purpose: purpose.slice(0, 32) });
      throw e;
    }
    const attributes = { ...key.attributes, purpose };
    const next = { ...key, attributes, version: key.version + 1 };
    const secret = this.deps.keyring.openSecret(key);
    let sealed: Uint8Array;
    try {
      sealed = this.deps.keyring.sealSecret(next, secret);
    } finally {
      wipe(secret);
    }
    const now = new Date().toISOString();
    await this.deps.committer.commit({
      mutations: [{ kind: 'rewrapKey', id: key.id, expectedVersion: key.version, version: next.version, attributes, sealed, updatedAt: now }],
      audit: [this.draft(ctx, 'set_purpose', key, 'ok', null, { ...details, from: 'legacy', purpose })],
    });
    this.deps.backend.forget(key.id);
    this.hdCache.forget(key.id);
    return { ...next, sealed, updatedAt: now };
  }

  /**
   * At open: a legacy key that has ever signed a consensus vote (it has a watermark) becomes a
   * consensus key, so that from now on it signs nothing its watermark does not see. Other
   * legacy keys keep every use they had, except consensus signing (see core/purpose.ts).
   */
  async migratePurposes(): Promise<number> {
    const marked = new Set((await this.deps.store.listWatermarks()).map((w) => w.keyId));
    let n = 0;
    for (const k of await this.deps.store.listKeys()) {
      if (k.tampered || k.state === 'destroyed' || purposeOf(k) !== 'legacy' || !marked.has(k.id)) continue;
      try {
        await this.setPurpose({ principal: { id: 'system', kind: 'system' }, requestId: `purpose-${k.id}` }, k.id, 'consensus', { migrated: true, reason: 'has a consensus watermark' });
        n++;
      } catch (e) {
        // Another process starting at the same moment migrated it first.
        if (isCustosError(e) && (e.tag === 'key_moved' || e.code === 'key_purpose')) continue;
        throw e;
      }
    }
    return n;
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
      if (isCustosError(e) && e.code !== 'invalid_label') return this.refuse(ctx, 'import', { id: null, label: req.label }, e, { format: req.format });
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

  async setEnabled(ctx: Ctx, ref: string, enabled: boolean): Promise<KeyRecord> {
    const operation = enabled ? 'enable' : 'disable';
    const key = await this.deps.store.findKey(ref);
    if (!key) return this.refuse(ctx, operation, { id: null, label: auditRef(ref) }, new CustosError('key_not_found', `No key has the id or label "${ref.slice(0, 80)}".`));
    if (key.state === 'destroyed') return this.refuse(ctx, operation, key, new CustosError('key_destroyed', `The key ${key.label} was destroyed.`));
    const now = new Date().toISOString();
    await this.deps.committer.commit({
      mutations: [{ kind: 'setKeyState', id: key.id, state: enabled ? 'active' : 'disabled', updatedAt: now }],
      audit: [this.draft(ctx, operation, key, 'ok', null)],
    });
    if (!enabled) {
      this.deps.backend.forget(key.id);
      this.hdCache.forget(key.id);
    }
    return { ...key, state: enabled ? 'active' : 'disabled', updatedAt: now };
  }

  async destroyKey(ctx: Ctx, ref: string): Promise<KeyRecord> {
    const key = await this.deps.store.findKey(ref);
    if (!key) return this.refuse(ctx, 'destroy', { id: null, label: auditRef(ref) }, new CustosError('key_not_found', `No key has the id or label "${ref.slice(0, 80)}".`));
    if (key.state === 'destroyed') return this.refuse(ctx, 'destroy', key, new CustosError('key_destroyed', `The key ${key.label} was already destroyed.`));
    this.deps.backend.forget(key.id);
    this.hdCache.forget(key.id);
    const now = new Date().toISOString();
    await this.deps.committer.commit({
      mutations: [{ kind: 'destroyKey', id: key.id, updatedAt: now }],
      audit: [this.draft(ctx, 'destroy', key, 'ok', null)],
    });
    this.deps.backend.forget(key.id);
    // The record is destroyed first (so no state has an active key without its object), then
    // the token object. An adopted object predates the vault and stays on the token. If the
    // token cannot delete it now, the audit log says so and the vault can never use it again.
    if (key.attributes['pkcs11.adopted'] !== true) {
      try {
        await this.deps.backend.destroy(key);
      } catch (e) {
        await this.deps.committer.audit(this.draft(ctx, 'destroy_token_object', key, 'failed', isCustosError(e) ? e.fullCode : 'internal', { backend: String(key.attributes.backend ?? '') })).catch(() => undefined);
      }
    }
    // The destroy is committed; wiping the old bytes out of the WAL is best effort here and
    // retried at shutdown (a reader holding the WAL open can postpone it).
    this.purgePending = !(await this.deps.store.purgeFreed().catch(() => false));
    return { ...key, state: 'destroyed', sealed: null, updatedAt: now };
  }

  async sign(req: SignRequest): Promise<SignResult> {
    const ctx: Ctx = { principal: req.principal, requestId: req.requestId };
    const key = await this.usableKey(ctx, 'sign', req.key);
    // Front-end context first, so it can never overwrite the vault's own facts.
    const details: AuditDraft['details'] = { ...req.context, [`${req.payload.kind}_sha256`]: sha256hex(req.payload.bytes), algorithm: key.algorithm };
    const use: KeyUse = req.use ?? (req.path !== undefined ? 'derived' : req.context.protocol === 'ssh-agent' ? 'ssh' : 'raw');
    try {
      checkSignInput(key.algorithm, req.payload, req.options);
    } catch (e) {
      if (isCustosError(e)) return this.refuse(ctx, 'sign', key, e, details);
      throw e;
    }
    if (key.attributes.hd !== undefined) {
      if (req.path === undefined) return this.refuse(ctx, 'sign', key, new CustosError('bad_request', `${key.label} is an HD master key: give the derivation path of the child key that signs.`), details);
      details.path = req.path;
      try {
        this.checkPathAllowed(key, parsePath(req.path));
      } catch (e) {
        if (isCustosError(e)) return this.refuse(ctx, 'sign', key, e, details);
        throw e;
      }
    } else if (req.path !== undefined) {
      return this.refuse(ctx, 'sign', key, new CustosError('bad_request', `${key.label} is not an HD master key; a derivation path does not apply.`), details);
    }
    try {
      // Before any policy or signature: a consensus key never signs here what its watermark
      // did not see, an SSH key signs only for its agent (core/purpose.ts).
      assertPurpose(key, use);
    } catch (e) {
      return this.refuse(ctx, 'sign', key, e as CustosError, details);
    }
    const subject: PolicySubject = {
      payloadType: req.context.protocol === 'ssh-agent' ? 'ssh' : req.payload.kind === 'digest' ? 'digest' : 'raw',
      facts: { ...req.context, ...(req.path ? { path: req.path } : {}) },
      ...(req.path !== undefined ? { paths: [parsePath(req.path)] } : {}),
      ...(req.payload.kind === 'message' ? { payload: req.payload.bytes } : {}),
      ...(req.context.protocol === 'ssh-agent' ? { ssh: { host: req.context.host, user: req.context.user, namespace: req.context.namespace } } : {}),
    };
    // Persist before sign: the decision (and any policy budget it spends) is durable before
    // the backend is asked.
    await this.decideAndCommit(ctx, key, 'sign', subject, details);
    let out;
    try {
      out =
        req.path !== undefined
          ? await this.signDerived(key, req.path, req.payload, req.options)
          : await this.deps.backend.sign(key, () => this.deps.keyring.openSecret(key), req.payload, req.options);
    } catch (e) {
      const err = isCustosError(e) ? e : new CustosError('internal', 'The backend failed to sign.', { cause: e });
      await this.deps.committer.audit(this.draft(ctx, 'sign', key, 'failed', err.fullCode, details));
      throw err;
    }
    // The signature leaves only with its durable outcome entry, and only if the key is still
    // active: a destroy that committed while we signed wins, and the signature is dropped.
    try {
      await this.commitGuarded(key, this.draft(ctx, 'sign', key, 'ok', null, { ...details, signature_sha256: sha256hex(out.signature), encoding: out.encoding }));
    } catch (e) {
      if (isKeyStateError(e)) {
        this.deps.backend.forget(key.id);
        await this.deps.committer.audit(this.draft(ctx, 'sign', key, 'failed', e.fullCode, details));
      }
      throw e;
    }
    this.deps.metrics?.signed(key.algorithm);
    return { keyId: key.id, algorithm: key.algorithm, signature: out.signature, encoding: out.encoding };
  }

  /**
   * Signs a consensus message with double-sign protection (CometBFT FilePV semantics), per
   * key and chain: below the watermark → refused; at the watermark with identical sign bytes
   * → the stored signature; differing only in the timestamp (as `onlyTimestampDiffers` says)
   * → the stored signature and the stored sign bytes, whose timestamp the caller must use;
   * anything else at the watermark → refused. A new position is signed in memory, then the
   * watermark, the signature and the audit entries are made durable in one transaction
   * before anything is returned. Two processes on one database cannot both advance from the
   * same state: the loser's signature is dropped unreleased and it decides again.
   */
  async signConsensus(req: ConsensusSignRequest): Promise<ConsensusSignResult> {
    const ctx: Ctx = { principal: req.principal, requestId: req.requestId };
    const key = await this.usableKey(ctx, 'sign', req.key);
    const pos = req.position;
    const where = `height ${pos.height} round ${pos.round} step ${pos.step} on ${req.chainId}`;
    const details: AuditDraft['details'] = {
      ...req.context,
      message_sha256: sha256hex(req.signBytes),
      algorithm: key.algorithm,
      chain_id: req.chainId,
      height: pos.height.toString(),
      round: pos.round,
      step: pos.step,
    };
    if (!['ed25519', 'ed25519-expanded', 'secp256k1'].includes(key.algorithm) || key.attributes.hd !== undefined) {
      return this.refuse(ctx, 'sign', key, new CustosError('unsupported_algorithm', `${key.algorithm} is not a consensus key type (ed25519 or secp256k1).`), details);
    }
    try {
      assertPurpose(key, 'consensus');
    } catch (e) {
      return this.refuse(ctx, 'sign', key, e as CustosError, details);
    }
    for (let attempt = 0; attempt < 5; attempt++) {
      const wm = await this.deps.store.getWatermark(key.id, req.chainId);
      const cmp = wm ? comparePosition(pos, wm) : 1;
      if (wm && cmp < 0) {
        return this.refuse(ctx, 'sign', key, new CustosError('policy_denied', `Refusing to sign ${where}: the key already signed height ${wm.height} round ${wm.round} step ${wm.step} (regression).`, { tag: 'double_sign' }), details);
      }
      if (wm && cmp === 0) {
        const identical = equalBytes(wm.signBytes, req.signBytes);
        if (wm.signature && (identical || req.onlyTimestampDiffers(wm.signBytes, req.signBytes))) {
          await this.deps.committer.audit(this.draft(ctx, 'sign', key, 'ok', null, { ...details, reused: true, signature_sha256: sha256hex(wm.signature) }));
          return { signature: wm.signature, signBytes: wm.signBytes, reused: true, keyId: key.id };
        }
        if (!identical) {
          return this.refuse(ctx, 'sign', key, new CustosError('policy_denied', `Refusing to sign ${where}: conflicting data (a different message was already signed there).`, { tag: 'double_sign' }), details);
        }
        // Identical bytes decided before a crash, never signed: signing them now is safe.
      }
      // Policy documents apply to consensus keys too (principals, time windows, rate limits);
      // a validator cannot wait for people, so a rule asking for approval refuses.
      const policyMutations = await this.consensusPolicy(ctx, key, req, details);
      // Sign in memory first, then make the watermark, the signature and the audit entries
      // durable in ONE transaction, and only then answer: one fsync per vote. Nothing leaves
      // the process before the commit, so a crash in between loses a signature but can never
      // release one, and a rival that advanced the watermark meanwhile makes the commit fail
      // (compare-and-set on what was read): this signature is dropped and we decide again.
      let out;
      try {
        out = await this.deps.backend.sign(key, () => this.deps.keyring.openSecret(key), { kind: 'message', bytes: req.signBytes }, key.algorithm === 'secp256k1' ? { encoding: 'raw' } : {});
      } catch (e) {
        const err = isCustosError(e) ? e : new CustosError('internal', 'The backend failed to sign.', { cause: e });
        await this.deps.committer.audit(this.draft(ctx, 'sign', key, 'failed', err.fullCode, details));
        throw err;
      }
      try {
        await this.deps.committer.commit({
          mutations: [
            { kind: 'assertKeyActive', id: key.id },
            ...policyMutations,
            { kind: 'advanceWatermark', keyId: key.id, chainId: req.chainId, expected: wm, next: { ...pos, signBytes: req.signBytes, signature: out.signature } },
          ],
          audit: [this.draft(ctx, 'sign', key, 'decided', null, details), this.draft(ctx, 'sign', key, 'ok', null, { ...details, signature_sha256: sha256hex(out.signature) })],
        });
      } catch (e) {
        if (isCustosError(e) && (e.tag === 'watermark_moved' || e.tag === 'meta_moved')) continue; // another signer moved it: decide again
        if (isKeyStateError(e) || (isCustosError(e) && e.code === 'policy_denied')) return this.refuse(ctx, 'sign', key, e as CustosError, details);
        throw e;
      }
      this.deps.metrics?.signed(key.algorithm);
      return { signature: out.signature, signBytes: req.signBytes, reused: false, keyId: key.id };
    }
    throw new CustosError('storage_unavailable', `The watermark for ${req.chainId} kept moving under concurrent signers; retry.`);
  }

  /** Policy for a consensus signature: the mutations its decision commits (budgets, generation). */
  private async consensusPolicy(ctx: Ctx, key: KeyRecord, req: ConsensusSignRequest, details: AuditDraft['details']): Promise<StateMutation[]> {
    const { set, generation } = await this.currentPolicies();
    if (set.forKey(policyKeyOf(key)).length === 0) return generation === null ? [] : [{ kind: 'compareAndSetMeta', name: POLICY_GENERATION, expected: generation, value: generation }];
    const facts = { ...req.context, chain_id: req.chainId, height: req.position.height.toString(), round: String(req.position.round), step: String(req.position.step) };
    const { ev, raw } = await this.evaluatePolicies(this.policyRequest(ctx, key, 'sign', { payloadType: 'consensus', facts }), set);
    if (ev.decision.kind === 'deny') return this.refuse(ctx, 'sign', key, new CustosError('policy_denied', ev.decision.reason, { tag: ev.decision.tag }), details);
    if (ev.decision.kind === 'needs_approval') return this.refuse(ctx, 'sign', key, new CustosError('policy_denied', 'A consensus signature cannot wait for approvals; the policy asks for them.', { tag: 'approval' }), details);
    return [
      { kind: 'compareAndSetMeta', name: POLICY_GENERATION, expected: generation, value: generation },
      ...ev.stateUpdates.map((u) => ({ kind: 'compareAndSetMeta' as const, name: STATE_PREFIX + u.scope, expected: raw.get(u.scope) ?? null, value: JSON.stringify(u.state) })),
    ];
  }

  /**
   * Seeds a key's consensus watermark from another signer's state (CometBFT FilePV's
   * priv_validator_state.json, say), so that moving a validator to Custos keeps its double-
   * sign protection. A watermark never moves backwards: an older state is refused.
   */
  async importWatermark(ctx: Ctx, ref: string, chainId: string, state: { height: bigint; round: number; step: number; signBytes?: Uint8Array; signature?: Uint8Array }): Promise<Watermark> {
    const key = await this.getKey(ref);
    // A watermark guards a consensus key; on any other key it would guard nothing.
    try {
      assertPurpose(key, 'consensus');
    } catch (e) {
      return this.refuse(ctx, 'import_state', key, e as CustosError, { chain_id: chainId });
    }
    if (state.height < 0n || state.round < 0 || state.step < 0 || state.step > 3) throw new CustosError('bad_request', 'A watermark has height ≥ 0, round ≥ 0 and step 0–3.');
    const details: AuditDraft['details'] = { chain_id: chainId, height: state.height.toString(), round: state.round, step: state.step };
    if (state.signBytes?.length) details.sign_bytes_sha256 = sha256hex(state.signBytes);
    // A stored signature is handed back to the node as the one for this position, so it must be
    // the key's, over sign bytes of exactly this chain and height/round/step (finding 14).
    try {
      checkImportedState(key, chainId, state);
    } catch (e) {
      if (isCustosError(e)) return this.refuse(ctx, 'import_state', key, e, details);
      throw e;
    }
    const current = await this.deps.store.getWatermark(key.id, chainId);
    if (current && comparePosition(state, current) < 0) {
      return this.refuse(ctx, 'import_state', key, new CustosError('policy_denied', `The state (height ${state.height} round ${state.round} step ${state.step}) is behind the vault's watermark (height ${current.height} round ${current.round} step ${current.step}); a watermark never moves backwards.`, { tag: 'double_sign' }), details);
    }
    const next: Watermark = { height: state.height, round: state.round, step: state.step, signBytes: state.signBytes ?? new Uint8Array(0), signature: state.signature ?? null };
    await this.deps.committer.commit({
      mutations: [{ kind: 'advanceWatermark', keyId: key.id, chainId, expected: current, next }],
      audit: [this.draft(ctx, 'import_state', key, 'ok', null, details)],
    });
    return next;
  }

  async getWatermark(ref: string, chainId: string): Promise<Watermark | null> {
    const key = await this.getKey(ref);
    return this.deps.store.getWatermark(key.id, chainId);
  }

  /**
   * Waits for `required` distinct approvals of this operation, or throws
   * `policy_denied:approval` on a denial or when the deadline passes. Audited both ways.
   */
  private async awaitApproval(ctx: Ctx, key: KeyRecord, operation: string, required: number, summary: Record<string, string>, details: AuditDraft['details'], approvers: string[] = []): Promise<string[]> {
    const { request, outcome } = this.approvals.open(
      { requester: ctx.principal.id, keyId: key.id, keyLabel: key.label, operation, summary, required: Math.max(1, required), approvers },
      this.deps.approvalTimeoutMs ?? 60_000,
    );
    await this.deps.committer.audit(this.draft(ctx, operation, key, 'decided', 'approval_pending', { ...details, approval_id: request.id }));
    const o = await outcome;
    if (o !== 'approved') {
      const why = o === 'denied' ? 'An approver denied this request.' : `Nobody approved this request before ${request.expiresAt}.`;
      return this.refuse(ctx, operation, key, new CustosError('policy_denied', why, { tag: 'approval' }), { ...details, approval_id: request.id, approval: o });
    }
    return [...request.approvedBy];
  }

  /** The policy request for a key and subject, at `now`. */
  private policyRequest(ctx: Ctx, key: KeyRecord, operation: 'sign' | 'export', subject: PolicySubject, approvedBy?: string[]): PolicyRequest {
    return {
      principal: ctx.principal,
      key: policyKeyOf(key),
      operation,
      payloadType: subject.payloadType,
      now: new Date(),
      facts: subject.facts,
      ...(subject.payload ? { payload: subject.payload } : {}),
      ...(subject.psbt ? { psbt: subject.psbt } : {}),
      ...(subject.ssh ? { ssh: subject.ssh } : {}),
      ...(subject.paths ? { paths: subject.paths } : {}),
      ...(approvedBy ? { approvedBy } : {}),
    };
  }

  /** Evaluates the policies in force with their committed state; returns the raw state read, for compare-and-set. */
  private async evaluatePolicies(req: PolicyRequest, set: PolicySet = this.policySet): Promise<{ ev: Evaluation; raw: Map<string, string | null> }> {
    const policies = set.forKey(req.key);
    const raw = new Map<string, string | null>();
    for (const scope of stateScopes(policies, req)) raw.set(scope, await this.deps.store.getMeta(STATE_PREFIX + scope));
    const read = (scope: string): RuleState | undefined => {
      const v = raw.get(scope);
      if (v === undefined || v === null) return undefined;
      try {
        return JSON.parse(v) as RuleState;
      } catch {
        throw new CustosError('database_corrupt', `The stored policy state ${scope} is not JSON; the database was altered.`);
      }
    };
    return { ev: set.evaluate(req, read), raw };
  }

  /**
   * The whole decision for a key operation: the policy documents in force (deny, approvals,
   * stateful budgets) and the key's own confirm constraint; then the
   * durable "decided" entry, committed in one transaction with the key-still-active check and
   * every budget the decision spends (compare-and-set on what was read: a concurrent spender
   * makes this decide again). Refusals are audited and thrown.
   */
  private async decideAndCommit(ctx: Ctx, key: KeyRecord, operation: 'sign' | 'export', subject: PolicySubject, details: AuditDraft['details']): Promise<void> {
    let approvedBy: string[] | undefined;
    for (let attempt = 0; attempt < 8; attempt++) {
      const { set, generation } = await this.currentPolicies();
      // The documents this decision rests on must still be the ones in force at commit.
      let mutations: StateMutation[] = [{ kind: 'compareAndSetMeta', name: POLICY_GENERATION, expected: generation, value: generation }];
      if (set.forKey(policyKeyOf(key)).length > 0) {
        let { ev, raw } = await this.evaluatePolicies(this.policyRequest(ctx, key, operation, subject, approvedBy), set);
        if (ev.decision.kind === 'needs_approval' && approvedBy === undefined) {
          const summary = { ...subject.facts, ...(subject.psbt ? { sent_externally_sats: subject.psbt.sentExternally.toString(), fee_sats: subject.psbt.fee.toString(), destinations: subject.psbt.outputs.filter((o) => !o.isChange).map((o) => o.address ?? '(no address)').join(' ') } : {}) };
          approvedBy = await this.awaitApproval(ctx, key, operation, ev.decision.required, summary, details, ev.decision.approvers);
          // Decide again with the approvers' answers and the budgets as they are now.
          ({ ev, raw } = await this.evaluatePolicies(this.policyRequest(ctx, key, operation, subject, approvedBy), set));
        }
        if (ev.decision.kind === 'deny') return this.refuse(ctx, operation, key, new CustosError('policy_denied', ev.decision.reason, { tag: ev.decision.tag }), details);
        if (ev.decision.kind === 'needs_approval') return this.refuse(ctx, operation, key, new CustosError('policy_denied', 'The approvals given do not satisfy the policy.', { tag: 'approval' }), details);
        mutations = [...mutations, ...ev.stateUpdates.map((u) => ({ kind: 'compareAndSetMeta' as const, name: STATE_PREFIX + u.scope, expected: raw.get(u.scope) ?? null, value: JSON.stringify(u.state) }))];
      }
      // A key added with a confirm constraint (ssh-add -c) needs a person's yes for every use.
      if (approvedBy === undefined && key.attributes.confirm === true) approvedBy = await this.awaitApproval(ctx, key, operation, 1, subject.facts, details);
      const entry = this.draft(ctx, operation, key, 'decided', null, approvedBy ? { ...details, approved_by: approvedBy.join(',') } : details);
      try {
        await this.deps.committer.commit({ mutations: [{ kind: 'assertKeyActive', id: key.id }, ...mutations], audit: [entry] });
        return;
      } catch (e) {
        if (isCustosError(e) && e.tag === 'meta_moved') continue; // another request spent from the same budget: decide again
        if (isKeyStateError(e)) return this.refuse(ctx, operation, key, e, details);
        throw e;
      }
    }
    throw new CustosError('storage_unavailable', 'The policy state kept changing under concurrent requests; retry.');
  }

  // ---- HD keys and PSBTs ----------------------------------------------------------------------

  private readonly hdCache = new DerivationCache({ maxNodes: 4096 });

  /**
   * Creates an HD master key: BIP32 (secp256k1) or SLIP-10 (ed25519), generated, or from a
   * BIP39 mnemonic (+ passphrase) or an xprv. One record stands for every child key: children
   * are derived on demand and never stored. `allowedPaths` (path prefixes) limits the subtrees
   * any request may sign with. The mnemonic and xprv arrive as strings (JSON); they cannot be
   * wiped, only dropped.
   */
  async createHdKey(ctx: Ctx, req: { label: string; curve: HdCurve; mnemonic?: string; passphrase?: string; xprv?: string; allowedPaths?: string[]; tags?: string[]; purpose?: string }): Promise<KeyRecord> {
    checkLabel(req.label);
    // A BIP32 tree is a Bitcoin wallet's; a SLIP-10 ed25519 tree signs raw payloads by path.
    const purpose = req.purpose ?? (req.curve === 'secp256k1' ? 'bitcoin' : 'general');
    if (purpose !== 'bitcoin' && purpose !== 'general') throw new CustosError('bad_request', 'An HD key is a bitcoin or a general key.');
    choosePurpose(req.curve === 'secp256k1' ? 'secp256k1' : 'ed25519', purpose, 'general');
    const allowed = (req.allowedPaths ?? []).map((p) => parsePath(p));
    let master: HdMaster;
    let origin: 'create' | 'import' = 'import';
    if (req.xprv !== undefined) {
      if (req.curve !== 'secp256k1') throw new CustosError('bad_request', 'An xprv is a BIP32 secp256k1 key; use curve secp256k1.');
      master = importXprv(req.xprv).master;
    } else {
      const seed = req.mnemonic !== undefined ? seedFromMnemonic(req.mnemonic, req.passphrase ?? '') : new Uint8Array(randomBytes(32));
      if (req.mnemonic === undefined) origin = 'create';
      try {
        master = masterFromSeed(seed, req.curve);
      } finally {
        wipe(seed);
      }
    }
    const stored = encodeMaster(master);
    try {
      const publicKey = deriveChild(master, 'm').publicKey;
      return await this.storeNewKey(ctx, origin, req.label, req.curve === 'secp256k1' ? 'secp256k1' : 'ed25519', { publicKey, sealed: stored }, false, {
        hd: req.curve === 'secp256k1' ? 'bip32' : 'slip10',
        purpose,
        'hd.fingerprint': masterFingerprint(master).toString(16).padStart(8, '0'),
        ...(allowed.length ? { 'hd.allowed_paths': (req.allowedPaths ?? []).join(',') } : {}),
        ...(req.tags?.length ? { tags: req.tags.join(',') } : {}),
      });
    } finally {
      wipe(stored);
      wipeMaster(master);
    }
  }

  private openMaster(key: KeyRecord): HdMaster {
    if (key.attributes.hd === undefined) throw new CustosError('bad_request', `${key.label} is not an HD master key.`);
    const secret = this.deps.keyring.openSecret(key);
    try {
      return decodeMaster(secret);
    } finally {
      wipe(secret);
    }
  }

  /** Refuses a path outside the key's allowed subtrees. */
  private checkPathAllowed(key: KeyRecord, path: readonly number[]): void {
    const allowed = key.attributes['hd.allowed_paths'];
    if (typeof allowed !== 'string' || allowed === '') return;
    if (!allowed.split(',').some((p) => isUnder(path, parsePath(p)))) {
      throw new CustosError('policy_denied', `The path is outside the subtrees key ${key.label} may sign with (${allowed}).`, { tag: 'path' });
    }
  }

  /** Signs with the child of an HD master at `path` (derived now, wiped after). */
  private async signDerived(key: KeyRecord, path: string, payload: SignPayload, options: SignOptions): Promise<{ signature: Uint8Array; encoding: string; algorithm: Algorithm }> {
    const master = this.openMaster(key);
    let child: { privateKey: Uint8Array } | undefined;
    try {
      child = deriveChild(master, path, { id: key.id, cache: this.hdCache });
      const signer = prepareSigner(key.algorithm, child.privateKey);
      try {
        return { ...signer.sign(payload, options), algorithm: key.algorithm };
      } finally {
        signer.destroy();
      }
    } finally {
      wipe(child?.privateKey);
      wipeMaster(master);
    }
  }

  /** The public key (and, for BIP32, the xpub) of an HD key's child at `path`. */
  async hdPublicKey(ctx: Ctx, ref: string, path: string, network: 'mainnet' | 'testnet' = 'mainnet'): Promise<{ key: KeyRecord; publicKey: Uint8Array; xpub: string | null }> {
    const key = await this.usableKey(ctx, 'xpub', ref);
    const details = { path: path.slice(0, 256), network };
    let p: number[];
    try {
      if (key.attributes.hd === undefined) throw new CustosError('bad_request', `${key.label} is not an HD master key.`);
      assertPurpose(key, 'derived');
      p = parsePath(path);
      this.checkPathAllowed(key, p);
    } catch (e) {
      if (isCustosError(e)) return this.refuse(ctx, 'xpub', key, e, details);
      throw e;
    }
    const master = this.openMaster(key);
    try {
      const d = deriveChild(master, p, { id: key.id, cache: this.hdCache });
      wipe(d.privateKey);
      const xpub = master.curve === 'secp256k1' ? exportXpub(master, p, network) : null;
      // Handing out an xpub reveals a whole subtree's addresses: audited like any key use.
      await this.deps.committer.audit(this.draft(ctx, 'xpub', key, 'ok', null, { ...details, public_key_sha256: sha256hex(d.publicKey) }));
      return { key, publicKey: d.publicKey, xpub };
    } finally {
      wipeMaster(master);
    }
  }

  /**
   * Signs a PSBT with an HD (BIP32) key: decodes it, checks each input it signs is ours (its
   * BIP32 derivation fields, verified by deriving), computes the fee and recognises change,
   * runs policy on those facts (amounts, destinations, velocity, approvals), makes the
   * decision durable, then signs only our inputs.
   */
  async signPsbt(ctx: Ctx, req: { key: string; psbt: Uint8Array; network: BitcoinNetwork }): Promise<{ key: KeyRecord; psbt: Uint8Array; signedInputs: number[]; analysis: PsbtAnalysis }> {
    const key = await this.usableKey(ctx, 'sign_psbt', req.key);
    const details: AuditDraft['details'] = { psbt_sha256: sha256hex(req.psbt), network: req.network };
    const hd = key.attributes.hd === 'bip32';
    const standalone = key.attributes.hd === undefined && key.algorithm === 'secp256k1' && key.attributes.backend === undefined;
    if (!hd && !standalone) return this.refuse(ctx, 'sign_psbt', key, new CustosError('bad_request', `${key.label} cannot sign PSBTs: use a BIP32 HD key or a stand-alone secp256k1 software key.`), details);
    try {
      assertPurpose(key, 'psbt');
    } catch (e) {
      return this.refuse(ctx, 'sign_psbt', key, e as CustosError, details);
    }
    // An HD key owns what derives from it; a stand-alone key owns inputs whose derivation
    // fields name its public key (33-byte, or x-only for taproot), whatever the origin.
    const master = hd ? this.openMaster(key) : null;
    const secret = hd ? null : this.deps.keyring.openSecret(key);
    try {
      const cache = { id: key.id, cache: this.hdCache };
      const pub = key.publicKey;
      const pctx = {
        network: req.network,
        ownsKey: master ? ownsKeyFromMaster(master, cache) : (p: Uint8Array) => equalBytes(p.length === 32 ? pub.subarray(1) : pub, p),
      };
      const derive = master ? deriveFromMaster(master, cache) : () => Uint8Array.from(secret!);
      let analysis: PsbtAnalysis;
      try {
        analysis = analyzePsbt(req.psbt, pctx);
        if (hd) for (const i of analysis.inputs) for (const o of i.ourKeys ?? []) this.checkPathAllowed(key, o.origin.path);
      } catch (e) {
        return this.refuse(ctx, 'sign_psbt', key, isCustosError(e) ? e : new CustosError('invalid_psbt', 'The PSBT could not be analysed.', { cause: e }), details);
      }
      const ours = analysis.inputs.filter((i) => i.ours).length;
      Object.assign(details, { txid: analysis.txid, fee_sats: analysis.fee.toString(), sent_externally_sats: analysis.sentExternally.toString(), inputs: analysis.inputs.length, our_inputs: ours });
      if (ours === 0) return this.refuse(ctx, 'sign_psbt', key, new CustosError('invalid_psbt', 'No input of this PSBT belongs to this key (by its BIP32 derivation fields); nothing to sign.'), details);
      const subject: PolicySubject = {
        payloadType: 'psbt',
        facts: { protocol: 'psbt', network: req.network, txid: analysis.txid },
        psbt: { outputs: analysis.outputs.map((o) => ({ address: o.address, amount: o.amount, isChange: o.isChange })), fee: analysis.fee, sentExternally: analysis.sentExternally, inputCount: analysis.inputs.length },
        ...(hd ? { paths: analysis.inputs.flatMap((i) => (i.ourKeys ?? []).map((k) => [...k.origin.path])) } : {}),
      };
      await this.decideAndCommit(ctx, key, 'sign', subject, details);
      let signed;
      try {
        signed = signPsbtWith(req.psbt, pctx, derive);
      } catch (e) {
        const err = isCustosError(e) ? e : new CustosError('internal', 'Signing the PSBT failed.', { cause: e });
        await this.deps.committer.audit(this.draft(ctx, 'sign_psbt', key, 'failed', err.fullCode, details));
        throw err;
      }
      await this.commitGuarded(key, this.draft(ctx, 'sign_psbt', key, 'ok', null, { ...details, signed_inputs: signed.signedInputs.join(','), psbt_out_sha256: sha256hex(signed.psbt) }));
      return { key, psbt: signed.psbt, signedInputs: signed.signedInputs, analysis: signed.analysis };
    } finally {
      if (master) wipeMaster(master);
      wipe(secret ?? undefined);
    }
  }

  // ---- API tokens ---------------------------------------------------------------------------

  /**
   * Makes an API token for a named person or application: `admin`, or `approver` (may only
   * list and decide approvals: the distinct principals M-of-N approvals need). The token is
   * returned once; only its SHA-256 is stored.
   */
  async createToken(ctx: Ctx, name: string, role: 'admin' | 'approver'): Promise<{ token: string; id: string; name: string; role: string }> {
    if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(name)) throw new CustosError('bad_request', 'A token name is 1–64 letters, digits, . _ @ -, starting with a letter or digit.');
    if ((await this.deps.store.listTokens()).some((t) => t.name === name)) {
      return this.refuse(ctx, 'token_create', { id: null, label: null }, new CustosError('label_taken', `A token named "${name}" already exists; approvers are told apart by name.`), { name });
    }
    const token = `custos_${randomBytes(32).toString('base64url')}`;
    const id = `tok_${randomBytes(8).toString('hex')}`;
    await this.deps.committer.commit({
      mutations: [{ kind: 'insertToken', token: { id, name, hash: new Uint8Array(createHash('sha256').update(token, 'utf8').digest()), role, createdAt: new Date().toISOString() } }],
      audit: [this.draft(ctx, 'token_create', { id: null, label: null }, 'ok', null, { token_id: id, name, role })],
    });
    return { token, id, name, role };
  }

  async listTokens(): Promise<Array<{ id: string; name: string; role: string; createdAt: string }>> {
    return (await this.deps.store.listTokens()).map((t) => ({ id: t.id, name: t.name, role: t.role, createdAt: t.createdAt }));
  }

  // ---- policy documents ---------------------------------------------------------------------

  /** Validates and stores a new version of a policy document, audited, then puts it in force. */
  async uploadPolicy(ctx: Ctx, source: string, format?: PolicyFormat): Promise<PolicyVersion & { warnings: string[] }> {
    await this.currentPolicies();
    let v: PolicyVersion;
    try {
      v = this.policySet.prepare(source, { at: new Date(), ...(format ? { format } : {}) });
    } catch (e) {
      if (isCustosError(e)) return this.refuse(ctx, 'policy_upload', { id: null, label: null }, e, { source_sha256: createHash('sha256').update(source, 'utf8').digest('hex') });
      throw e;
    }
    const stored = await this.storePolicyVersion(ctx, v, 'policy_upload');
    return { ...stored, warnings: PolicySet.warnings(stored) };
  }

  async retirePolicy(ctx: Ctx, id: string): Promise<PolicyVersion> {
    await this.currentPolicies();
    let v: PolicyVersion;
    try {
      v = this.policySet.prepareRetire(id, new Date());
    } catch (e) {
      if (isCustosError(e)) return this.refuse(ctx, 'policy_retire', { id: null, label: null }, e, { policy_id: id.slice(0, 64) });
      throw e;
    }
    return this.storePolicyVersion(ctx, v, 'policy_retire');
  }

  private async storePolicyVersion(ctx: Ctx, v: PolicyVersion, operation: string): Promise<PolicyVersion> {
    const generation = await this.deps.store.getMeta(POLICY_GENERATION);
    const next = String(Number(generation ?? '0') + 1);
    const details = { policy_id: v.id, version: v.version, sha256: v.sha256, retired: v.retired };
    try {
      await this.deps.committer.commit({
        mutations: [
          { kind: 'compareAndSetMeta', name: policyRow(v), expected: null, value: JSON.stringify(v) },
          { kind: 'compareAndSetMeta', name: POLICY_GENERATION, expected: generation, value: next },
        ],
        audit: [this.draft(ctx, operation, { id: null, label: null }, 'ok', null, details)],
      });
    } catch (e) {
      if (isCustosError(e) && e.tag === 'meta_moved') {
        return this.refuse(ctx, operation, { id: null, label: null }, new CustosError('storage_unavailable', 'The policies changed in another process while this one was stored; nothing was changed. Retry.', { tag: 'meta_moved' }), details);
      }
      throw e;
    }
    await this.currentPolicies();
    return v;
  }

  /** What the policies would decide for a request, rule by rule; nothing is spent or audited. */
  async testPolicy(ctx: Ctx, ref: string, operation: 'sign' | 'export', subject: PolicySubject): Promise<{ evaluation: Evaluation; explanation: string }> {
    const key = await this.getKey(ref);
    const { set } = await this.currentPolicies();
    const { ev } = await this.evaluatePolicies(this.policyRequest(ctx, key, operation, subject), set);
    return { evaluation: ev, explanation: explain(ev) };
  }

  /** An approver's decision on a pending request; audited as the approver's own act. */
  async decideApproval(ctx: Ctx, id: string, approve: boolean) {
    const { request, settled } = this.approvals.decide(id, ctx.principal, approve);
    await this.deps.committer.audit(
      this.draft(ctx, approve ? 'approve' : 'deny', { id: request.keyId, label: request.keyLabel }, 'ok', null, { approval_id: request.id, operation: request.operation, requester: request.requester, settled: settled ?? 'pending' }),
    );
    return { request, settled };
  }

  /** Verification needs only the public key: it is not audited and works on disabled keys too. */
  async verify(ref: string, payload: SignPayload, signature: Uint8Array, options: SignOptions): Promise<{ key: KeyRecord; valid: boolean }> {
    const key = await this.getKey(ref);
    checkSignInput(key.algorithm, payload, { ...options, auxRand: undefined });
    return { key, valid: verifySignature(key.algorithm, key.publicKey, payload, signature, options) };
  }

  /** Exports an `exportable` key wrapped to a recipient public key; never in plaintext. */
  async exportKey(ctx: Ctx, ref: string, recipient: { kem: Kem; publicKey: Uint8Array }): Promise<{ key: KeyRecord; envelope: Uint8Array }> {
    const key = await this.usableKey(ctx, 'export', ref);
    const details = { kem: recipient.kem, recipient_sha256: sha256hex(recipient.publicKey) };
    if (!key.exportable) {
      return this.refuse(ctx, 'export', key, new CustosError('key_not_exportable', `The key ${key.label} was not created exportable; it can never leave the vault.`), details);
    }
    await this.decideAndCommit(ctx, key, 'export', { payloadType: null, facts: {} }, details);
    let secret: Uint8Array | undefined;
    let plaintext: Uint8Array | undefined;
    let envelope: Uint8Array;
    try {
      secret = this.deps.keyring.openSecret(key);
      plaintext = encodeExportedKey(key.algorithm, key.publicKey, secret);
      envelope = eciesEncrypt(recipient.kem, recipient.publicKey, plaintext);
    } catch (e) {
      const err = isCustosError(e) ? e : new CustosError('internal', 'Wrapping the key failed.', { cause: e });
      await this.deps.committer.audit(this.draft(ctx, 'export', key, 'failed', err.fullCode, details));
      throw err;
    } finally {
      wipe(secret, plaintext);
    }
    try {
      await this.commitGuarded(key, this.draft(ctx, 'export', key, 'ok', null, { ...details, envelope_sha256: sha256hex(envelope) }));
    } catch (e) {
      if (isKeyStateError(e)) await this.deps.committer.audit(this.draft(ctx, 'export', key, 'failed', e.fullCode, details));
      throw e;
    }
    return { key, envelope };
  }

  /**
   * Destroys every key whose `expires_at` has passed (ssh-agent lifetime constraints, say);
   * run at open and periodically, so an expired key is gone across restarts too.
   */
  async destroyExpired(principal: Principal): Promise<number> {
    let n = 0;
    for (const k of await this.deps.store.listKeys()) {
      if (k.state !== 'destroyed' && isExpired(k)) {
        await this.destroyKey({ principal, requestId: `expire-${k.id}` }, k.id).catch(() => undefined);
        n++;
      }
    }
    return n;
  }

  /**
   * Vault keys an ssh-agent socket no longer offers because a client removed them over the
   * protocol (`ssh-add -d/-D`); the keys themselves are untouched. Kept until an operator
   * restores them (`custos ssh-agent restore NAME`).
   */
  async hiddenForAgent(agent: string): Promise<Set<string>> {
    const v = await this.deps.store.getMeta(`ssh_agent.${agent}.hidden`);
    return new Set(v ? (JSON.parse(v) as string[]) : []);
  }

  async hideForAgent(ctx: Ctx, agent: string, key: KeyRecord): Promise<void> {
    const name = `ssh_agent.${agent}.hidden`;
    for (let attempt = 0; attempt < 8; attempt++) {
      const before = await this.deps.store.getMeta(name);
      const hidden = new Set(before ? (JSON.parse(before) as string[]) : []);
      hidden.add(key.id);
      try {
        // The row and its audit entry in one transaction, compare-and-set against a racing socket.
        await this.deps.committer.commit({ mutations: [{ kind: 'compareAndSetMeta', name, expected: before, value: JSON.stringify([...hidden]) }], audit: [this.draft(ctx, 'agent_hide', key, 'ok', null, { agent })] });
        return;
      } catch (e) {
        if (isCustosError(e) && e.tag === 'meta_moved') continue;
        throw e;
      }
    }
    throw new CustosError('storage_unavailable', 'The agent\'s hidden keys kept changing under concurrent requests; retry.');
  }

  async restoreAgent(ctx: Ctx, agent: string): Promise<number> {
    const name = `ssh_agent.${agent}.hidden`;
    const before = await this.deps.store.getMeta(name);
    const restored = before ? (JSON.parse(before) as string[]).length : 0;
    await this.deps.committer.commit({
      mutations: before === null ? [] : [{ kind: 'compareAndSetMeta', name, expected: before, value: null }],
      audit: [this.draft(ctx, 'agent_restore', { id: null, label: null }, 'ok', null, { agent, restored })],
    });
    return restored;
  }

  auditTail(limit: number) {
    return this.deps.store.auditTail(limit);
  }

  /**
   * Refuses new work, flushes the log, then runs `beforeRelease` (the final audit anchor,
   * which a token backend may hold) before the backends close.
   */
  async close(beforeRelease?: () => Promise<void>): Promise<void> {
    this.approvals.close();
    this.hdCache.clear();
    await this.deps.committer.close();
    if (this.purgePending) await this.deps.store.purgeFreed().catch(() => false);
    if (beforeRelease) await beforeRelease();
    await this.deps.backend.close();
    this.deps.keyring.destroy();
  }
}

