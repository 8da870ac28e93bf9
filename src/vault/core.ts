/**
 * What every capability of the vault shares (vault/keys, signing, consensus, wallet, admin):
 * its dependencies, the audit entry of a request and of its refusal, the usable key a request
 * names, the policy documents in force and their evaluation with the budgets they read, and
 * the wait for approvals. The one step that makes a signature is vault/step.ts.
 */
import type { GuardPolicy } from '../accounts/guard.js';
import type { SessionLimits } from './sessions.js';
import { CustosError, isCustosError, markAudited } from '../core/errors.js';
import type { Algorithm, AuditDraft, KeyRecord, Principal } from '../core/types.js';
import type { Keyring } from '../keystore/keyring.js';
import type { Backends } from '../backends/backend.js';
import type { Store, WriteUnit } from '../store/store.js';
import { POLICY_GENERATION_ROW } from '../store/rows.js';
import { PolicySet, type PolicyVersion } from '../policy/policy-set.js';
import { type Evaluation } from '../policy/engine.js';
import type { PayloadType, PolicyRequest, PsbtFacts, RuleState, SshFacts } from '../policy/model.js';
import { policyKeyOf, stateScopes } from '../policy/engine.js';
import { DerivationCache } from '../wallet/hd.js';
import { Approvals } from './approvals.js';
import { Lanes } from './lanes.js';
import { authorizeNewKey, forbidden, keyInScope, permits, refInScope, type Operation } from '../accounts/principals.js';
import { granted } from '../accounts/grants.js';
import type { GroupCommitter } from './commit.js';
import { sha256hex } from '../crypto/digest.js';

export const LABEL_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$/;

export { sha256hex };

export const isKeyStateError = (e: unknown): e is CustosError => isCustosError(e) && (e.code === 'key_disabled' || e.code === 'key_destroyed');

export function isExpired(k: Pick<KeyRecord, 'attributes'>, now = Date.now()): boolean {
  const at = k.attributes.expires_at;
  return typeof at === 'string' && Date.parse(at) <= now;
}

/**
 * What the audit log records for a key reference that matched no key: the reference itself
 * when it has the form of a label or id, else only its hash, so hostile input (control
 * characters, escape sequences) never reaches a log reader's terminal.
 */
export function auditRef(ref: string): string {
  return LABEL_RE.test(ref) ? ref : `sha256:${sha256hex(ref).slice(0, 32)}`;
}

export const notFound = (ref: string) => new CustosError('key_not_found', `No key has the id or label "${ref.slice(0, 80)}".`);

export interface VaultMetrics {
  signed(algorithm: Algorithm): void;
  denied(reason: string): void;
  /** A protected row failed its MAC or count (store/rows.ts): the alert an operator pages on. */
  integrityAlarm?(table: string, problem: string, pk: string): void;
}

export interface VaultDeps {
  /** Failed authentications per source address within the window before 429 (accounts/authenticator.ts). */
  authLimits?: { maxFailures: number; windowSeconds: number };
  /** How long a request needing approval waits; the caller sees the deadline. */
  approvalTimeoutMs?: number;
  approvals?: Approvals;
  store: Store;
  keyring: Keyring;
  backend: Backends;
  committer: GroupCommitter;
  metrics?: VaultMetrics;
  /** Accounts (vault/accounts.ts): a subkey of the root for them, and the login limits. */
  accounts?: { key: Uint8Array; vaultId: string; guard?: GuardPolicy; sessions?: SessionLimits };
  /** Checks the whole audit chain with the vault's audit key and row MACs (open.ts makes it). */
  auditCheck?: () => Promise<import('../audit/chain.js').VerifyReport>;
  /** Lightning (vault/lightning.ts): where state records are streamed before they commit, and its metrics. */
  lightning?: { backup: import('../lightning/backup.js').BackupTarget | null; metrics?: import('./lightning.js').LightningMetrics };
}

/** Who asks, and the request id every audit entry of the request carries. */
export interface Ctx {
  principal: Principal;
  requestId: string;
}

/** Meta rows: policy versions (`policy.<id>.<version, 8 digits>`) and rule state (`policy_state.<scope>`). */
export const POLICY_PREFIX = 'policy.';
export const STATE_PREFIX = 'policy_state.';
export const POLICY_GENERATION = POLICY_GENERATION_ROW;
export const policyRow = (v: Pick<PolicyVersion, 'id' | 'version'>): string => `${POLICY_PREFIX}${v.id}.${String(v.version).padStart(8, '0')}`;

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

export class VaultCore {
  readonly approvals: Approvals;
  /** Intermediate HD nodes, wiped on eviction, on a key's disable or destroy, and at close. */
  readonly hdCache = new DerivationCache({ maxNodes: 4096 });
  /** Turns per policy budget, from a decision to its commit (vault/lanes.ts). */
  readonly lanes = new Lanes();
  /** A destroy could not truncate the WAL (a reader held it): retried at close. */
  purgePending = false;
  /**
   * Whether an API principal still holds, with the scope, for an operation on a key: asked once
   * an approval arrives, since a revocation or a narrower scope may have come while it waited.
   */
  recheckPrincipal: ((p: Principal, op: Operation, key: KeyRecord) => Promise<CustosError | null>) | null = null;

  private policySet = new PolicySet();
  /** The `policy_generation` value the set was loaded at; another process's upload bumps it. */
  private policyGeneration: string | null = null;
  private policiesLoaded = false;

  constructor(readonly deps: VaultDeps) {
    this.approvals = deps.approvals ?? new Approvals();
  }

  get store(): Store {
    return this.deps.store;
  }

  get policies(): PolicySet {
    return this.policySet;
  }

  /**
   * The policy documents in force. Every upload and retirement bumps `policy_generation`,
   * and every decision's commit compare-and-sets it, so a request is never committed on
   * documents replaced meanwhile. A signature therefore decides on the documents this process
   * last loaded (`cached`) and reads the generation only when its commit lost that
   * compare-and-set (another process uploaded): one read less per signature.
   */
  async currentPolicies(cached = false): Promise<{ set: PolicySet; generation: string | null }> {
    if (cached && this.policiesLoaded) return { set: this.policySet, generation: this.policyGeneration };
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

  /**
   * Commits a change made for `ctx`'s principal; one with a credential row has it re-checked in
   * the same transaction (store.ts `assertCredential`): revoked, rotated, expired, or an older
   * copy put back on another node, it changes nothing, however long its authentication is cached.
   */
  commitAs(ctx: Ctx, unit: WriteUnit): Promise<void> {
    const { credential, guards } = ctx.principal;
    if (credential === undefined && guards === undefined) return this.deps.committer.commit(unit);
    const first: WriteUnit['mutations'] = [];
    if (credential !== undefined) first.push({ kind: 'assertCredential', credential, now: new Date().toISOString() });
    // (expected === value: a guard, nothing written.)
    for (const g of guards ?? []) first.push({ kind: 'compareAndSetMeta', name: g.name, expected: g.value, value: g.value });
    return this.deps.committer.commit({ ...unit, mutations: [...first, ...unit.mutations] });
  }

  /** The credential re-checked in a transaction of its own, before an act that writes nothing first (an approval). */
  async checkCredential(ctx: Ctx): Promise<void> {
    if (ctx.principal.credential !== undefined) await this.commitAs(ctx, { mutations: [], audit: [] });
  }

  draft(ctx: Ctx, operation: string, key: { id: string | null; label: string | null }, outcome: AuditDraft['outcome'], reason: string | null, details: AuditDraft['details'] = {}): AuditDraft {
    return { requestId: ctx.requestId, principal: ctx.principal.id, operation, keyId: key.id, keyLabel: key.label, outcome, reason, details };
  }

  /** Audits a refusal, then throws it. If even the refusal cannot be audited, that error wins. */
  async refuse(ctx: Ctx, operation: string, key: { id: string | null; label: string | null }, err: CustosError, details: AuditDraft['details'] = {}): Promise<never> {
    this.deps.metrics?.denied(err.fullCode);
    await this.deps.committer.audit(this.draft(ctx, operation, key, 'denied', err.fullCode, details));
    throw markAudited(err);
  }

  /** Audits an attempt that failed after it was decided (a backend error), then throws it. */
  async fail(ctx: Ctx, operation: string, key: KeyRecord, e: unknown, details: AuditDraft['details'], what: string): Promise<never> {
    const err = isCustosError(e) ? e : new CustosError('internal', what, { cause: e });
    await this.deps.committer.audit(this.draft(ctx, operation, key, 'failed', err.fullCode, details));
    throw markAudited(err);
  }

  /** Runs `f`; a CustosError it throws is refused (audited) as `operation` on `key`. */
  async refuseOnError<T>(ctx: Ctx, operation: string, key: { id: string | null; label: string | null }, details: AuditDraft['details'], f: () => T | Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (isCustosError(e)) return this.refuse(ctx, operation, key, e, details);
      throw e;
    }
  }

  /**
   * Finds a key by id or label that the principal may use for `op` (accounts/principals.ts);
   * a refusal is audited as `operation`. For a scoped principal a reference outside its scope
   * is `forbidden` whether or not such a key exists: not-found reveals nothing beyond its scope.
   */
  async scopedKey(ctx: Ctx, operation: string, op: Operation, ref: string): Promise<KeyRecord> {
    const p = ctx.principal;
    if (!permits(p, op)) return this.refuse(ctx, operation, { id: null, label: auditRef(ref) }, forbidden(p, op));
    let key: KeyRecord | null;
    try {
      key = await this.deps.store.findKey(ref);
    } catch (e) {
      // A key row edited outside Custos: never obeyed, and the refusal is on the record.
      if (isCustosError(e) && e.code === 'database_corrupt') return this.refuse(ctx, operation, { id: null, label: auditRef(ref) }, e);
      throw e;
    }
    if (!key) return this.refuse(ctx, operation, { id: null, label: auditRef(ref) }, refInScope(p, ref) ? notFound(ref) : forbidden(p, `${op} with keys outside its scope`));
    // An account's key is in scope for a principal the account granted it to (accounts/grants.ts).
    if (!keyInScope(p, key) && !(await granted(this.deps.store, p, op, key))) return this.refuse(ctx, operation, key, forbidden(p, `${op} with keys outside its scope`));
    return key;
  }

  /** Refuses (audited) a new key's label and attributes outside the principal's scope. */
  async checkNewKey(ctx: Ctx, operation: string, label: string, attributes: KeyRecord['attributes'] = {}): Promise<void> {
    await this.refuseOnError(ctx, operation, { id: null, label: auditRef(label) }, {}, () => authorizeNewKey(ctx.principal, { label, attributes }));
  }

  /** Finds a key by id or label, for an operation that needs it usable. */
  async usableKey(ctx: Ctx, operation: string, ref: string, scope?: Operation): Promise<KeyRecord> {
    const key = await this.scopedKey(ctx, operation, scope ?? (operation === 'export' ? 'export' : operation === 'xpub' ? 'read' : 'sign'), ref);
    if (key.state !== 'active') {
      // Disabled or destroyed, perhaps by another process: drop anything still prepared for it.
      this.forgetKey(key.id);
      if (key.state === 'destroyed') return this.refuse(ctx, operation, key, new CustosError('key_destroyed', `The key ${key.label} was destroyed; it can no longer be used.`));
      return this.refuse(ctx, operation, key, new CustosError('key_disabled', `The key ${key.label} is disabled; enable it first.`));
    }
    if (isExpired(key)) return this.refuse(ctx, operation, key, new CustosError('key_expired', `The key ${key.label} expired at ${key.attributes.expires_at}; it is destroyed shortly.`));
    return key;
  }

  /**
   * A key as stored. Its row's MAC (checked by the store) covers every field, so nothing is
   * decrypted to show it: listing a thousand keys opens no envelope.
   */
  async getKey(ref: string): Promise<KeyRecord> {
    const key = await this.deps.store.findKey(ref);
    if (!key) throw notFound(ref);
    return key;
  }

  /**
   * Waits for `required` distinct approvals of this operation, or throws
   * `policy_denied:approval` on a denial or when the deadline passes. Audited both ways.
   */
  async awaitApproval(ctx: Ctx, key: KeyRecord, operation: string, required: number, summary: Record<string, string>, details: AuditDraft['details'], approvers: string[] = []): Promise<string[]> {
    // Too many requests already waiting is a refusal like any other: on the record.
    const { request, outcome } = await this.refuseOnError(ctx, operation, key, details, () =>
      this.approvals.open(
        { requester: ctx.principal.id, keyId: key.id, keyLabel: key.label, operation, summary, required: Math.max(1, required), approvers },
        this.deps.approvalTimeoutMs ?? 60_000,
      ),
    );
    try {
      await this.deps.committer.audit(this.draft(ctx, operation, key, 'decided', 'approval_pending', { ...details, approval_id: request.id }));
    } catch (e) {
      // Not on the record, so nobody may approve it.
      this.approvals.withdraw(request.id);
      throw e;
    }
    const o = await outcome;
    if (o !== 'approved') {
      const why = o === 'denied' ? 'An approver denied this request.' : `Nobody approved this request before ${request.expiresAt}.`;
      return this.refuse(ctx, operation, key, new CustosError('policy_denied', why, { tag: 'approval' }), { ...details, approval_id: request.id, approval: o });
    }
    // Checked against the scope the operation needs (an ECDH's is `ecdh`, not `sign`).
    const scope: Operation = operation === 'export' || operation === 'ecdh' || operation === 'decrypt' ? operation : 'sign';
    const stale = await this.recheckPrincipal?.(ctx.principal, scope, key);
    if (stale) return this.refuse(ctx, operation, key, stale, { ...details, approval_id: request.id });
    return [...request.approvedBy];
  }

  /** The policy request for a key and subject, at `now`. */
  policyRequest(ctx: Ctx, key: KeyRecord, operation: import('../policy/model.js').Operation, subject: PolicySubject, approvedBy?: string[]): PolicyRequest {
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

  /** The policy state scopes a decision on `req` reads (and may spend): the lanes it takes turns in. */
  stateScopesOf(req: PolicyRequest, set: PolicySet = this.policySet): string[] {
    return stateScopes(set.forKey(req.key), req);
  }

  /** Evaluates the policies in force with their committed state; returns the raw state read, for compare-and-set. */
  async evaluatePolicies(req: PolicyRequest, set: PolicySet = this.policySet): Promise<{ ev: Evaluation; raw: Map<string, string | null> }> {
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

  /** Drops what this process holds prepared for a key (its signer, its HD nodes). */
  forgetKey(keyId: string): void {
    this.deps.backend.forget(keyId);
    this.hdCache.forget(keyId);
  }
}
