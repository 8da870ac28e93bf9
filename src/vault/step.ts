/**
 * The one step that makes a signature leave the vault, for every front end and backend (raw
 * and digest payloads, HD children, PSBT inputs, consensus votes, wrapped exports):
 *
 *   decide  policy documents in force (deny, approvals, budgets) and a confirm key's person;
 *   sign    in memory: nothing is released;
 *   commit  ONE durable transaction: the key still active, the policy generation and every
 *           budget the decision spends (compare-and-set on what was read), the state the
 *           operation moves (a consensus watermark), the `decided` and `ok` audit entries;
 *   release only now the answer leaves.
 *
 * Persist before release (DESIGN.md): a crash before the commit loses the signature and
 * nothing else. A refused compare-and-set (another request or process spent the budget,
 * moved the watermark, changed the policies) drops the signature unreleased and decides again
 * from fresh state; a key disabled or destroyed meanwhile drops it for good. Refusals are
 * audited; group commit shares one fsync among concurrent requests.
 */
import { CustosError, isCustosError } from '../core/errors.js';
import type { AuditDraft, KeyRecord } from '../core/types.js';
import { policyKeyOf } from '../policy/engine.js';
import type { StateMutation } from '../store/store.js';
import { Turn } from './lanes.js';
import { isKeyStateError, POLICY_GENERATION, STATE_PREFIX, type Ctx, type PolicySubject, type VaultCore } from './core.js';

/** The longest value of an approval's summary an approver is shown. */
const SUMMARY_MAX = 4096;

export interface SignStep<T> {
  ctx: Ctx;
  key: KeyRecord;
  /** What policy sees: `sign` or `export`; also the operation of the `decided` entry. */
  operation: import('../policy/model.js').Operation;
  /** The operation of the `ok` entry (`sign_psbt` for a PSBT), when it differs. */
  outcomeOperation?: string;
  subject: PolicySubject;
  details: AuditDraft['details'];
  /** A validator cannot wait for people: a rule asking for approval refuses instead. */
  noApprovals?: boolean;
  /**
   * Read fresh at every attempt, before the policy decision: either an answer that needs no
   * new signature (a consensus signature reused), or the state mutations the commit must
   * make with the signature (a watermark moved by compare-and-set on what was read).
   */
  prepare?: () => Promise<{ done: T } | { mutations: (t: T) => StateMutation[] } | undefined>;
  /** Makes the signature (or the wrapped export) in memory. */
  produce: () => Promise<T>;
  /** What the `ok` entry adds about the result (a hash of the signature, never the secret). */
  outcome: (t: T) => AuditDraft['details'];
}

/** Retries when concurrent requests keep winning the compare-and-set. */
const ATTEMPTS = 8;

export async function decideSignCommit<T>(core: VaultCore, s: SignStep<T>): Promise<T> {
  const { ctx, key, operation, details } = s;
  const okOperation = s.outcomeOperation ?? operation;
  let approvedBy: string[] | undefined;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    // Requests spending the same budget in this process take turns from decision to commit.
    const turn = new Turn(core.lanes);
    try {
      const prepared = s.prepare ? await s.prepare() : undefined;
      if (prepared && 'done' in prepared) return prepared.done;
      // The first attempt decides on the documents already loaded; a lost compare-and-set reloads.
      const mutations = await decide(core, s, approvedBy, (a) => (approvedBy = a), attempt === 0, turn);
      let result: T;
      try {
        result = await s.produce();
      } catch (e) {
        return await core.fail(ctx, okOperation, key, e, details, 'The backend failed to sign.');
      }
      const decided = core.draft(ctx, operation, key, 'decided', null, approvedBy ? { ...details, approved_by: approvedBy.join(',') } : details);
      const ok = core.draft(ctx, okOperation, key, 'ok', null, { ...details, ...s.outcome(result) });
      try {
        // The credential too, in the same transaction (core.commitAs): revoked, rotated or put
        // back to an older copy on another node, it signs nothing.
        await core.commitAs(ctx, {
          mutations: [
            { kind: 'assertKeyActive', id: key.id, version: key.version },
            ...mutations,
            ...(prepared ? prepared.mutations(result) : []),
          ],
          audit: [decided, ok],
        });
      } catch (e) {
        // Another request or process won a compare-and-set: this signature is dropped, unreleased.
        if (isCustosError(e) && (e.tag === 'meta_moved' || e.tag === 'watermark_moved')) continue;
        if (isKeyStateError(e)) {
          core.forgetKey(key.id);
          return await core.refuse(ctx, okOperation, key, e, details);
        }
        // The key was changed (its purpose, say) after this request found it: decided on what it was.
        if (isCustosError(e) && (e.code === 'policy_denied' || e.tag === 'key_moved' || e.tag === 'credential_moved')) return await core.refuse(ctx, okOperation, key, e, details);
        throw e;
      }
      // (An ECDH or a decryption for a Lightning node is not a signature.)
      if (operation === 'sign' || operation === 'export') core.deps.metrics?.signed(key.algorithm);
      return result;
    } finally {
      turn.end();
    }
  }
  // Only other processes can keep winning (this one takes turns): a failure, on the record.
  return core.fail(ctx, okOperation, key, new CustosError('storage_unavailable', 'The policy state or the watermark kept changing under concurrent requests (another process on this database?); retry.'), details, '');
}

/**
 * The decision: the documents in force with the budgets they read, approvals when they ask
 * (once per request: a retry keeps the approvers' answers), a confirm key's person. Returns
 * the compare-and-set mutations the commit must hold; refusals are audited and thrown. Holds
 * `turn` on the budgets it reads from their read to the commit, but never while a person is
 * asked.
 */
async function decide<T>(core: VaultCore, s: SignStep<T>, approvedBy: string[] | undefined, approved: (a: string[]) => void, cached: boolean, turn: Turn): Promise<StateMutation[]> {
  const { ctx, key, operation, subject, details } = s;
  const { set, generation } = await core.currentPolicies(cached);
  // A refusal commits nothing, so no compare-and-set would notice stale documents: before
  // refusing on the documents already loaded, make sure they are still the ones in force.
  const stale = async () => cached && (await core.currentPolicies(false)).generation !== generation;
  // The documents this decision rests on must still be the ones in force at commit.
  const mutations: StateMutation[] = [{ kind: 'compareAndSetMeta', name: POLICY_GENERATION, expected: generation, value: generation }];
  if (set.forKey(policyKeyOf(key)).length > 0) {
    const evaluate = async (by: string[] | undefined) => {
      const req = core.policyRequest(ctx, key, operation, subject, by);
      await turn.take(core.stateScopesOf(req, set));
      return core.evaluatePolicies(req, set);
    };
    let { ev, raw } = await evaluate(approvedBy);
    if (ev.decision.kind !== 'allow' && (await stale())) {
      turn.end();
      return decide(core, s, approvedBy, approved, false, turn);
    }
    if (ev.decision.kind === 'needs_approval' && s.noApprovals) {
      return core.refuse(ctx, operation, key, new CustosError('policy_denied', 'A consensus signature cannot wait for approvals; the policy asks for them.', { tag: 'approval' }), details);
    }
    if (ev.decision.kind === 'needs_approval' && approvedBy === undefined) {
      const summary: Record<string, string> = {
        ...subject.facts,
        ...(subject.psbt
          ? {
              sent_externally_sats: subject.psbt.sentExternally.toString(),
              fee_sats: subject.psbt.fee.toString(),
              destinations: subject.psbt.outputs.filter((o) => !o.isChange).map((o) => o.address ?? '(no address)').join(' '),
              change_sats: subject.psbt.outputs.filter((o) => o.isChange).reduce((a, o) => a + o.amount, 0n).toString(),
              // One line per output, in the transaction's order: what an approver reads to decide.
              outputs: [
                ...subject.psbt.outputs.slice(0, 50).map((o) => `${o.address ?? '(no address)'} ${o.amount} sats${o.isChange ? ' (change)' : ''}`),
                ...(subject.psbt.outputs.length > 50 ? [`… and ${subject.psbt.outputs.length - 50} more outputs`] : []),
              ].join('\n'),
            }
          : {}),
        // What asked for the approval, so an approver can tell why it is theirs to give.
        asked_by: ev.trace.filter((t) => t.result === 'approval').map((t) => `${t.policy} v${t.version} ${t.rule}: ${t.explanation}`).join('; '),
      };
      // What approvers read is bounded, whatever the policy or the transaction's size.
      for (const [k, v] of Object.entries(summary)) if (v.length > SUMMARY_MAX) summary[k] = `${v.slice(0, SUMMARY_MAX)}… (${v.length - SUMMARY_MAX} more characters)`;
      turn.end();
      approvedBy = await core.awaitApproval(ctx, key, operation, ev.decision.required, summary, details, ev.decision.approvers);
      approved(approvedBy);
      // Decide again with the approvers' answers and the budgets as they are now.
      ({ ev, raw } = await evaluate(approvedBy));
    }
    if (ev.decision.kind === 'deny') return core.refuse(ctx, operation, key, new CustosError('policy_denied', ev.decision.reason, { tag: ev.decision.tag }), details);
    if (ev.decision.kind === 'needs_approval') return core.refuse(ctx, operation, key, new CustosError('policy_denied', 'The approvals given do not satisfy the policy.', { tag: 'approval' }), details);
    for (const u of ev.stateUpdates) mutations.push({ kind: 'compareAndSetMeta', name: STATE_PREFIX + u.scope, expected: raw.get(u.scope) ?? null, value: JSON.stringify(u.state) });
  }
  // A key added with a confirm constraint (ssh-add -c) needs a person's yes for every use;
  // the budgets read before the wait are stale after it, so the policy decides again.
  if (approvedBy === undefined && key.attributes.confirm === true && !s.noApprovals) {
    turn.end();
    const by = await core.awaitApproval(ctx, key, operation, 1, subject.facts, details);
    approved(by);
    return decide(core, s, by, approved, cached, turn);
  }
  return mutations;
}
