/**
 * Administration: API tokens, policy documents (upload, retire, test), approvers' decisions,
 * the keys an ssh-agent socket hides, and the tail of the audit log.
 */
import { createHash, randomBytes } from 'node:crypto';
import { CustosError, isCustosError } from '../core/errors.js';
import type { KeyRecord } from '../core/types.js';
import { PolicySet, type PolicyVersion } from '../policy/policy-set.js';
import { explain, type Evaluation } from '../policy/engine.js';
import type { PolicyFormat } from '../policy/document.js';
import { POLICY_GENERATION, policyRow, type Ctx, type PolicySubject, type VaultCore } from './core.js';

export class Admin {
  constructor(private readonly core: VaultCore) {}

  /**
   * Makes an API token for a named person or application: `admin`, or `approver` (may only
   * list and decide approvals: the distinct principals M-of-N approvals need). The token is
   * returned once; only its SHA-256 is stored.
   */
  async createToken(ctx: Ctx, name: string, role: 'admin' | 'approver', certificateSha256?: string): Promise<{ token?: string; id: string; name: string; role: string; certificate_sha256?: string }> {
    if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(name)) throw new CustosError('bad_request', 'A token name is 1–64 letters, digits, . _ @ -, starting with a letter or digit.');
    if ((await this.core.deps.store.listTokens()).some((t) => t.name === name)) {
      return this.core.refuse(ctx, 'token_create', { id: null, label: null }, new CustosError('label_taken', `A token named "${name}" already exists; approvers are told apart by name.`), { name });
    }
    // A principal bound to a client certificate (mutual TLS) has no secret: the TLS handshake
    // proves the certificate's key, and the row keeps the hash of its fingerprint instead.
    const fp = certificateSha256 === undefined ? undefined : normalizeFingerprint(certificateSha256);
    const token = fp ? undefined : `custos_${randomBytes(32).toString('base64url')}`;
    const id = `${fp ? 'crt' : 'tok'}_${randomBytes(8).toString('hex')}`;
    const hash = fp ? certificateCredential(fp) : new Uint8Array(createHash('sha256').update(token!, 'utf8').digest());
    await this.core.deps.committer.commit({
      mutations: [{ kind: 'insertToken', token: { id, name, hash, role, createdAt: new Date().toISOString() } }],
      audit: [this.core.draft(ctx, 'token_create', { id: null, label: null }, 'ok', null, { token_id: id, name, role, ...(fp ? { certificate_sha256: fp } : {}) })],
    });
    return fp ? { id, name, role, certificate_sha256: fp } : { token, id, name, role };
  }

  async listTokens(): Promise<Array<{ id: string; name: string; role: string; createdAt: string }>> {
    return (await this.core.deps.store.listTokens()).map((t) => ({ id: t.id, name: t.name, role: t.role, createdAt: t.createdAt }));
  }

  /** Validates and stores a new version of a policy document, audited, then puts it in force. */
  async uploadPolicy(ctx: Ctx, source: string, format?: PolicyFormat): Promise<PolicyVersion & { warnings: string[] }> {
    await this.core.currentPolicies();
    let v: PolicyVersion;
    try {
      v = this.core.policies.prepare(source, { at: new Date(), ...(format ? { format } : {}) });
    } catch (e) {
      if (isCustosError(e)) return this.core.refuse(ctx, 'policy_upload', { id: null, label: null }, e, { source_sha256: createHash('sha256').update(source, 'utf8').digest('hex') });
      throw e;
    }
    const stored = await this.storePolicyVersion(ctx, v, 'policy_upload');
    return { ...stored, warnings: PolicySet.warnings(stored) };
  }

  async retirePolicy(ctx: Ctx, id: string): Promise<PolicyVersion> {
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
      await this.core.deps.committer.commit({
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
  async testPolicy(ctx: Ctx, ref: string, operation: 'sign' | 'export', subject: PolicySubject): Promise<{ evaluation: Evaluation; explanation: string }> {
    const key = await this.core.getKey(ref);
    const { set } = await this.core.currentPolicies();
    const { ev } = await this.core.evaluatePolicies(this.core.policyRequest(ctx, key, operation, subject), set);
    return { evaluation: ev, explanation: explain(ev) };
  }

  /** An approver's decision on a pending request; audited as the approver's own act. */
  async decideApproval(ctx: Ctx, id: string, approve: boolean) {
    const { request, settled } = this.core.approvals.decide(id, ctx.principal, approve);
    await this.core.deps.committer.audit(
      this.core.draft(ctx, approve ? 'approve' : 'deny', { id: request.keyId, label: request.keyLabel }, 'ok', null, { approval_id: request.id, operation: request.operation, requester: request.requester, settled: settled ?? 'pending' }),
    );
    return { request, settled };
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

  async hideForAgent(ctx: Ctx, agent: string, key: KeyRecord): Promise<void> {
    const name = `ssh_agent.${agent}.hidden`;
    for (let attempt = 0; attempt < 8; attempt++) {
      const before = await this.core.deps.store.getMeta(name);
      const hidden = new Set(before ? (JSON.parse(before) as string[]) : []);
      hidden.add(key.id);
      try {
        // The row and its audit entry in one transaction, compare-and-set against a racing socket.
        await this.core.deps.committer.commit({ mutations: [{ kind: 'compareAndSetMeta', name, expected: before, value: JSON.stringify([...hidden]) }], audit: [this.core.draft(ctx, 'agent_hide', key, 'ok', null, { agent })] });
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
    const before = await this.core.deps.store.getMeta(name);
    const restored = before ? (JSON.parse(before) as string[]).length : 0;
    await this.core.deps.committer.commit({
      mutations: before === null ? [] : [{ kind: 'compareAndSetMeta', name, expected: before, value: null }],
      audit: [this.core.draft(ctx, 'agent_restore', { id: null, label: null }, 'ok', null, { agent, restored })],
    });
    return restored;
  }

  auditTail(limit: number) {
    return this.core.deps.store.auditTail(limit);
  }
}

/** A certificate's SHA-256 fingerprint as 64 lowercase hex digits (colons and case accepted). */
export function normalizeFingerprint(fp: string): string {
  const hex = fp.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new CustosError('bad_request', 'A certificate fingerprint is its SHA-256: 64 hex digits (colons allowed).');
  return hex;
}

/** What a certificate-bound principal's row stores in place of a token hash. */
export function certificateCredential(fingerprintHex: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`custos-client-certificate:${fingerprintHex}`, 'utf8').digest());
}
