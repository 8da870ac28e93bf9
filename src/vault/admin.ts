/**
 * Administration: API tokens, policy documents (upload, retire, test), approvers' decisions,
 * the keys an ssh-agent socket hides, and the tail of the audit log.
 */
import { randomBytes } from 'node:crypto';
import { CustosError, isCustosError } from '../core/errors.js';
import type { AuditDraft, AuditEntry, KeyRecord, Principal } from '../core/types.js';
import type { ApiToken, AuditQuery, StateMutation } from '../store/store.js';
import type { VerifyReport } from '../audit/chain.js';
import { bytesToHex } from '../core/bytes.js';
import { certificateCredential, certificateNameCredential, hashToken, newToken, normalizeCertificateName, normalizeFingerprint, PRINCIPAL_NAME_RE } from '../accounts/credentials.js';
import { authorize, forbidden, hasKeyScope, keyInScope, permits, ROLES, type Operation } from '../accounts/principals.js';
import { PolicySet, type PolicyVersion } from '../policy/policy-set.js';
import { explain, type Evaluation } from '../policy/engine.js';
import type { PolicyFormat } from '../policy/document.js';
import { POLICY_GENERATION, policyRow, sha256hex, type Ctx, type PolicySubject, type VaultCore } from './core.js';
import { termsDetails, termsOf, tokenView, type PrincipalRequest, type TokenView } from './token-terms.js';
import { auditPageFor } from './audit-pages.js';

export { tokenView } from './token-terms.js';
export type { PrincipalRequest, TokenView } from './token-terms.js';

export class Admin {
  constructor(private readonly core: VaultCore) {}

  /**
   * Makes a principal: a bearer token (returned once; only its SHA-256 is stored) or, with a
   * certificate fingerprint, a client certificate for mutual TLS (no secret: the handshake
   * proves the certificate's key). Its role bounds what it may do and its scope narrows it
   * (accounts/principals.ts); an expiry and a rate limit are optional.
   */
  async createToken(ctx: Ctx, req: PrincipalRequest): Promise<TokenView & { token?: string }> {
    const name = req.name;
    const details = { name: String(name).slice(0, 64), role: String(req.role).slice(0, 16) };
    await this.requireAdmin(ctx, 'token_create', details);
    const { terms, fp, certName } = await this.core.refuseOnError(ctx, 'token_create', NO_KEY, details, () => {
      if (!PRINCIPAL_NAME_RE.test(name)) throw new CustosError('bad_request', 'A principal name is 1–64 letters, digits, . _ @ -, starting with a letter or digit.');
      if (!(ROLES as readonly string[]).includes(req.role)) throw new CustosError('bad_request', `Unknown role "${String(req.role).slice(0, 16)}": one of ${ROLES.join(', ')}.`);
      if (req.certificateSha256 !== undefined && req.certificateName !== undefined) throw new CustosError('bad_request', 'Bind a principal to a certificate fingerprint or to a certificate name, not both.');
      const fp = req.certificateSha256 === undefined ? undefined : normalizeFingerprint(req.certificateSha256);
      const certName = req.certificateName === undefined ? undefined : normalizeCertificateName(req.certificateName);
      return { terms: { ...termsOf(req, fp), ...(certName ? { certificate_name: certName } : {}) }, fp, certName };
    });
    if (await this.core.deps.store.findTokenBy({ name })) {
      return this.core.refuse(ctx, 'token_create', NO_KEY, new CustosError('label_taken', `A principal named "${name}" already exists; principals are told apart by name.`), details);
    }
    if (fp || certName) {
      const bound = await this.core.deps.store.findToken(fp ? certificateCredential(fp) : certificateNameCredential(certName!));
      if (bound) return this.core.refuse(ctx, 'token_create', NO_KEY, new CustosError('label_taken', `That ${fp ? 'certificate' : 'certificate name'} is already bound to ${bound.name}${bound.terms.revoked_at ? ' (revoked: a revoked certificate stays refused; issue a new one)' : ''}.`), details);
    }
    const token = fp || certName ? undefined : newToken();
    const id = `${fp || certName ? 'crt' : 'tok'}_${randomBytes(8).toString('hex')}`;
    const hash = fp ? certificateCredential(fp) : certName ? certificateNameCredential(certName) : hashToken(token!);
    const row: ApiToken = { id, name, hash, role: req.role, createdAt: new Date().toISOString(), terms };
    await this.core.commitAs(ctx, {
      mutations: [{ kind: 'insertToken', token: row }],
      audit: [this.core.draft(ctx, 'token_create', NO_KEY, 'ok', null, { token_id: id, ...details, ...termsDetails(terms) })],
    });
    return { ...(token ? { token } : {}), ...tokenView(row) };
  }

  async listTokens(ctx?: Ctx): Promise<TokenView[]> {
    if (ctx) await this.requireAdmin(ctx, 'token_list', {});
    return (await this.core.deps.store.listTokens()).map(tokenView);
  }

  /** Principals, policies spanning every key and the agents' hiding are an admin's (or the system's). */
  private async requireAdmin(ctx: Ctx, operation: string, details: AuditDraft['details']): Promise<void> {
    const k = ctx.principal.kind;
    if (k !== 'admin' && k !== 'system') await this.core.refuse(ctx, operation, NO_KEY, forbidden(ctx.principal, 'manage principals'), details);
  }

  /** Changes a principal's scope, expiry or rate limit; holds from the next request in every process. */
  async updateToken(ctx: Ctx, name: string, change: Omit<PrincipalRequest, 'name' | 'role' | 'certificateSha256' | 'certificateName'>): Promise<TokenView> {
    return this.changeToken(ctx, 'token_update', name, (t) => {
      const merged: PrincipalRequest = {
        name: t.name,
        role: t.role,
        operations: change.operations ?? t.terms.scope?.operations,
        keys: change.keys ?? t.terms.scope?.keys,
        tags: change.tags ?? t.terms.scope?.tags,
        expiresAt: change.expiresAt === undefined ? t.terms.expires_at : change.expiresAt,
        rateLimit: change.rateLimit === undefined ? t.terms.rate_limit : change.rateLimit,
      };
      return { ...t, terms: { ...termsOf(merged, t.terms.certificate_sha256), ...(t.terms.certificate_name ? { certificate_name: t.terms.certificate_name } : {}), ...(t.terms.rotated_at ? { rotated_at: t.terms.rotated_at } : {}) } };
    }).then((r) => r.view);
  }

  /** Revokes a principal: its credential fails from the next request in every process; the row stays for the record. */
  async revokeToken(ctx: Ctx, name: string): Promise<TokenView> {
    // A principal bound to a certificate name gives the name back (another principal may be
    // bound to it later); its own credential can never authenticate again either way.
    const view = await this.changeToken(ctx, 'token_revoke', name, (x) => ({
      ...x,
      ...(x.terms.certificate_name !== undefined ? { hash: certificateNameCredential(`revoked:${x.id}`) } : {}),
      terms: { ...x.terms, revoked_at: new Date().toISOString() },
    })).then((r) => r.view);
    // Its requests waiting here for approval go with it (other processes re-check it once approved).
    this.core.approvals.denyAllFrom(view.principal);
    return view;
  }

  /**
   * Replaces a principal's secret (or, for mutual TLS, its bound certificate): the old one fails
   * from the next request; name, role and scope stay. Returns the new token once.
   */
  async rotateToken(ctx: Ctx, name: string, certificateSha256?: string): Promise<TokenView & { token?: string }> {
    let token: string | undefined;
    const r = await this.changeToken(ctx, 'token_rotate', name, (t) => {
      if (t.terms.certificate_name !== undefined) {
        throw new CustosError('bad_request', `${name} is bound to the certificate name ${t.terms.certificate_name}: a renewed certificate with that name works as it is. For another name, make a new principal.`);
      }
      const wasCert = t.terms.certificate_sha256 !== undefined;
      if (wasCert !== (certificateSha256 !== undefined)) {
        throw new CustosError('bad_request', wasCert ? `${name} authenticates by client certificate: give the new certificate to rotate it.` : `${name} is a token principal: it rotates to a new token, not to a certificate.`);
      }
      const fp = certificateSha256 === undefined ? undefined : normalizeFingerprint(certificateSha256);
      token = fp ? undefined : newToken();
      return { ...t, hash: fp ? certificateCredential(fp) : hashToken(token!), terms: { ...t.terms, ...(fp ? { certificate_sha256: fp } : {}), rotated_at: new Date().toISOString() } };
    });
    // Requests waiting here with the old credential go with it (other processes re-check it).
    this.core.approvals.denyAllFrom(r.view.principal);
    return { ...(token ? { token } : {}), ...r.view };
  }

  private async changeToken(ctx: Ctx, operation: string, name: string, change: (t: ApiToken) => ApiToken): Promise<{ view: TokenView }> {
    const details = { name: String(name).slice(0, 64) };
    await this.requireAdmin(ctx, operation, details);
    // Read before the admins' generation, so that the compare-and-set below covers this view.
    const generation = await this.core.deps.store.getMeta(ADMIN_GENERATION);
    const all = await this.core.deps.store.listTokens();
    const current = all.find((t) => t.name === name);
    if (!current) return this.core.refuse(ctx, operation, NO_KEY, new CustosError('not_found', `No principal is named "${String(name).slice(0, 64)}" (custos tokens list shows them).`), details);
    if (current.terms.revoked_at !== undefined) return this.core.refuse(ctx, operation, NO_KEY, new CustosError('conflict', `${name} was revoked at ${current.terms.revoked_at}; make a new principal instead.`), details);
    const next = await this.core.refuseOnError(ctx, operation, NO_KEY, details, () => change(current));
    // An admin that is revoked or made to expire needs another admin that stays: one active and
    // never expiring. Every such change moves the admins' generation by compare-and-set, so two
    // processes revoking each other's admin cannot both win.
    const lasting = (t: ApiToken) => t.role === 'admin' && t.terms.revoked_at === undefined && t.terms.expires_at === undefined;
    const weakensAdmin = lasting(current) && !lasting(next);
    if (weakensAdmin && !all.some((t) => t.id !== current.id && lasting(t))) {
      return this.core.refuse(ctx, operation, NO_KEY, new CustosError('conflict', `${name} is the last admin that does not expire: revoking it or giving it an expiry would leave nobody able to manage the vault. Create another admin first.`), details);
    }
    const guard: StateMutation[] = weakensAdmin ? [{ kind: 'compareAndSetMeta', name: ADMIN_GENERATION, expected: generation, value: String(Number(generation ?? '0') + 1) }] : [];
    try {
      await this.core.commitAs(ctx, {
        mutations: [...guard, { kind: 'updateToken', expected: current, token: next }],
        audit: [this.core.draft(ctx, operation, NO_KEY, 'ok', null, { token_id: current.id, ...details, role: next.role, ...termsDetails(next.terms) })],
      });
    } catch (e) {
      if (isCustosError(e) && e.tag === 'token_moved') return this.core.refuse(ctx, operation, NO_KEY, e, details);
      if (isCustosError(e) && e.tag === 'meta_moved') {
        return this.core.refuse(ctx, operation, NO_KEY, new CustosError('storage_unavailable', 'The admins changed in another process while this change was decided; nothing was changed. Retry.', { tag: 'token_moved' }), details);
      }
      throw e;
    }
    return { view: tokenView(next) };
  }

  /** Validates and stores a new version of a policy document, audited, then puts it in force. */
  async uploadPolicy(ctx: Ctx, source: string, format?: PolicyFormat): Promise<PolicyVersion & { warnings: string[] }> {
    await this.requireUnscoped(ctx, 'policy_upload', 'policy', 'change policies');
    await this.core.currentPolicies();
    let v: PolicyVersion;
    try {
      v = this.core.policies.prepare(source, { at: new Date(), ...(format ? { format } : {}) });
    } catch (e) {
      if (isCustosError(e)) return this.core.refuse(ctx, 'policy_upload', { id: null, label: null }, e, { source_sha256: sha256hex(source) });
      throw e;
    }
    const stored = await this.storePolicyVersion(ctx, v, 'policy_upload');
    return { ...stored, warnings: PolicySet.warnings(stored) };
  }

  async retirePolicy(ctx: Ctx, id: string): Promise<PolicyVersion> {
    await this.requireUnscoped(ctx, 'policy_retire', 'policy', 'change policies');
    await this.core.currentPolicies();
    let v: PolicyVersion;
    try {
      v = this.core.policies.prepareRetire(id, new Date());
    } catch (e) {
      if (isCustosError(e)) return this.core.refuse(ctx, 'policy_retire', { id: null, label: null }, e, { policy_id: id.slice(0, 64) });
      throw e;
    }
    return this.storePolicyVersion(ctx, v, 'policy_retire');
  }

  private async storePolicyVersion(ctx: Ctx, v: PolicyVersion, operation: string): Promise<PolicyVersion> {
    const generation = await this.core.deps.store.getMeta(POLICY_GENERATION);
    const next = String(Number(generation ?? '0') + 1);
    const details = { policy_id: v.id, version: v.version, sha256: v.sha256, retired: v.retired };
    try {
      await this.core.commitAs(ctx, {
        mutations: [
          { kind: 'compareAndSetMeta', name: policyRow(v), expected: null, value: JSON.stringify(v) },
          { kind: 'compareAndSetMeta', name: POLICY_GENERATION, expected: generation, value: next },
        ],
        audit: [this.core.draft(ctx, operation, { id: null, label: null }, 'ok', null, details)],
      });
    } catch (e) {
      if (isCustosError(e) && e.tag === 'meta_moved') {
        return this.core.refuse(ctx, operation, { id: null, label: null }, new CustosError('storage_unavailable', 'The policies changed in another process while this one was stored; nothing was changed. Retry.', { tag: 'meta_moved' }), details);
      }
      throw e;
    }
    await this.core.currentPolicies();
    return v;
  }

  /** What the policies would decide for a request, rule by rule; nothing is spent or audited. */
  async testPolicy(ctx: Ctx, ref: string, operation: 'sign' | 'export', subject: PolicySubject, asPrincipal?: string): Promise<{ evaluation: Evaluation; explanation: string }> {
    const key = await this.core.scopedKey(ctx, 'policy_test', 'policy', ref);
    const { set } = await this.core.currentPolicies();
    // Decided as if `asPrincipal` asked (a name only: the test grants it nothing).
    const as = asPrincipal === undefined ? ctx : { ...ctx, principal: { id: asPrincipal, kind: 'token' as const } };
    const { ev } = await this.core.evaluatePolicies(this.core.policyRequest(as, key, operation, subject), set);
    return { evaluation: ev, explanation: explain(ev) };
  }

  /** An approver's decision on a pending request; audited as the approver's own act. */
  async decideApproval(ctx: Ctx, id: string, approve: boolean) {
    // An approver scoped to some keys decides only on requests for those keys.
    const waiting = this.core.approvals.pending().find((a) => a.id === id);
    if (waiting) await this.core.scopedKey(ctx, approve ? 'approve' : 'deny', 'approve', waiting.keyId);
    else if (!permits(ctx.principal, 'approve')) return this.core.refuse(ctx, approve ? 'approve' : 'deny', NO_KEY, forbidden(ctx.principal, 'decide approvals'));
    // An approval counts only from a credential still current in the database (revoked on
    // another node and put back with SQL, the authenticator's cache may not know yet).
    try {
      await this.core.checkCredential(ctx);
    } catch (e) {
      if (isCustosError(e) && e.tag === 'credential_moved') return this.core.refuse(ctx, approve ? 'approve' : 'deny', waiting ? { id: waiting.keyId, label: waiting.keyLabel } : NO_KEY, e);
      throw e;
    }
    const { request, settled } = this.core.approvals.decide(id, ctx.principal, approve);
    await this.core.deps.committer.audit(
      this.core.draft(ctx, approve ? 'approve' : 'deny', { id: request.keyId, label: request.keyLabel }, 'ok', null, { approval_id: request.id, operation: request.operation, requester: request.requester, settled: settled ?? 'pending' }),
    );
    return { request, settled };
  }

  /** The requests waiting for approval that this principal may decide (its scope's keys). */
  async pendingApprovals(p: Principal) {
    if (!permits(p, 'approve')) return [];
    const all = this.core.approvals.pending();
    const out = [];
    for (const a of all) {
      const key = await this.core.deps.store.findKey(a.keyId).catch(() => null);
      if (key && keyInScope(p, key)) out.push(a);
    }
    return out;
  }

  /**
   * Vault keys an ssh-agent socket no longer offers because a client removed them over the
   * protocol (`ssh-add -d/-D`); the keys themselves are untouched. Kept until an operator
   * restores them (`custos ssh-agent restore NAME`).
   */
  async hiddenForAgent(agent: string): Promise<Set<string>> {
    const v = await this.core.deps.store.getMeta(`ssh_agent.${agent}.hidden`);
    return new Set(v ? (JSON.parse(v) as string[]) : []);
  }

  /**
   * Makes the socket's list of hidden keys exist (empty) when it does not, at its first start
   * (on the record, as every change of a protected row is: the rows are anchored to the log):
   * a row that is always there is read at every request with one statement, where an absent
   * one costs a count of the table (an absence the socket obeys could be a deletion).
   * Restoring empties the list instead of removing it.
   */
  async ensureAgentRow(ctx: Ctx, agent: string): Promise<void> {
    const name = `ssh_agent.${agent}.hidden`;
    if ((await this.core.deps.store.getMeta(name)) !== null) return;
    try {
      await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name, expected: null, value: '[]' }], audit: [this.core.draft(ctx, 'agent_start', { id: null, label: null }, 'ok', null, { agent, hidden: 0 })] });
    } catch (e) {
      // Another process serving the same socket made it first.
      if (!(isCustosError(e) && e.tag === 'meta_moved')) throw e;
    }
  }

  async hideForAgent(ctx: Ctx, agent: string, key: KeyRecord): Promise<void> {
    const name = `ssh_agent.${agent}.hidden`;
    for (let attempt = 0; attempt < 8; attempt++) {
      const before = await this.core.deps.store.getMeta(name);
      const hidden = new Set(before ? (JSON.parse(before) as string[]) : []);
      hidden.add(key.id);
      try {
        // The row and its audit entry in one transaction, compare-and-set against a racing socket.
        await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name, expected: before, value: JSON.stringify([...hidden]) }], audit: [this.core.draft(ctx, 'agent_hide', key, 'ok', null, { agent })] });
        return;
      } catch (e) {
        if (isCustosError(e) && e.tag === 'meta_moved') continue;
        throw e;
      }
    }
    throw new CustosError('storage_unavailable', 'The agent\'s hidden keys kept changing under concurrent requests; retry.');
  }

  async restoreAgent(ctx: Ctx, agent: string): Promise<number> {
    // The agent's keys are any keys: restoring them is not for a principal confined to some.
    await this.requireUnscoped(ctx, 'agent_restore', 'manage', 'restore an agent\'s keys');
    const name = `ssh_agent.${agent}.hidden`;
    const before = await this.core.deps.store.getMeta(name);
    const restored = before ? (JSON.parse(before) as string[]).length : 0;
    await this.core.commitAs(ctx, {
      mutations: before === null || before === '[]' ? [] : [{ kind: 'compareAndSetMeta', name, expected: before, value: '[]' }],
      audit: [this.core.draft(ctx, 'agent_restore', { id: null, label: null }, 'ok', null, { agent, restored })],
    });
    return restored;
  }

  /**
   * The newest entries, or those matching a filter, newest first, a page at a time (`next` is
   * the cursor for older ones); a principal confined to some keys sees only theirs (audit-pages.ts).
   */
  auditPage(q: AuditQuery, p?: Principal): Promise<{ entries: AuditEntry[]; next: number | null }> {
    return auditPageFor(this.core.deps.store, q, p);
  }

  /** The newest entries in order (the oldest of them first), as `audit tail` prints them. */
  async auditTail(limit: number, p?: Principal): Promise<AuditEntry[]> {
    return (await this.auditPage({ limit }, p)).entries.reverse();
  }

  /**
   * The whole chain checked as `custos audit verify` checks it (every link, every signed
   * checkpoint, every entry's MAC), with the newest checkpoint. A check runs at most once at
   * a time; callers that ask meanwhile share it. It speaks of the whole log, so it is for a
   * principal that may read the whole log.
   */
  async auditStatus(ctx: Ctx): Promise<AuditStatus> {
    authorize(ctx.principal, 'audit');
    if (hasKeyScope(ctx.principal)) await this.core.refuse(ctx, 'audit_verify', NO_KEY, forbidden(ctx.principal, 'check the whole audit log'));
    const check = this.core.deps.auditCheck;
    if (!check) throw new CustosError('bad_request', 'This vault was opened without its audit key; run `custos audit verify --data-dir DIR` on the host.');
    if (this.verified && Date.now() - this.verified.at < AUDIT_CHECK_REUSE_MS) return this.verified.status;
    this.verifying ??= (async () => {
      try {
        const report = await check();
        const cps = await this.core.deps.store.checkpoints();
        const last = cps[cps.length - 1];
        const status = { ...report, checkedAt: new Date().toISOString(), latestCheckpoint: last ? { seq: last.seq, ts: last.ts, hash: bytesToHex(last.hash) } : null };
        this.verified = { at: Date.now(), status };
        return status;
      } finally {
        this.verifying = null;
      }
    })();
    return this.verifying;
  }

  private verifying: Promise<AuditStatus> | null = null;
  private verified: { at: number; status: AuditStatus } | null = null;

  /** Refuses (audited) an act that spans every key to a principal without `op` or confined to some keys. */
  private async requireUnscoped(ctx: Ctx, operation: string, op: Operation, what: string): Promise<void> {
    const p = ctx.principal;
    if (!permits(p, op) || hasKeyScope(p)) await this.core.refuse(ctx, operation, NO_KEY, forbidden(p, what));
  }
}

const NO_KEY = { id: null, label: null };

/** A whole-chain check answers every caller for this long: asking again and again costs one check. */
const AUDIT_CHECK_REUSE_MS = 10_000;

/** The chain's verification, when it ran, and the newest signed checkpoint. */
export interface AuditStatus extends VerifyReport {
  checkedAt: string;
  latestCheckpoint: { seq: number; ts: string; hash: string } | null;
}

/** Moved by every change that revokes an admin or makes one expire (compare-and-set). */
const ADMIN_GENERATION = 'accounts.admin_generation';
