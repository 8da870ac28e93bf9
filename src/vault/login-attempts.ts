/**
 * Login attempts on the record: every login start, login finish and registration code is
 * judged against, and counted in, its user name's and its source address's guard rows
 * (accounts/guard.ts decides; here the rows are read and moved by compare-and-set, each move
 * with its audit entry).
 */
import { CustosError, isCustosError } from '../core/errors.js';
import type { StateMutation } from '../store/store.js';
import { addressKey, formatGuard, isLocked, mayAttempt, parseGuard, takePending, withFailure, withPending, withSuccess, type GuardPolicy, type GuardState } from '../accounts/guard.js';
import type { Ctx, VaultCore } from './core.js';
import { CAS_ATTEMPTS, guardRow } from './account-rows.js';

const NO_KEY = { id: null, label: null };

/** A wrong password, an unknown name and a replayed finish all get this one answer. */
export const badLogin = () => new CustosError('unauthorized', 'The user name or password is wrong.');

/**
 * Records an attempt in the name's and the address's guards, compare-and-set with its audit
 * entry. `start`: refused while locked or too soon (audited), else counted as a failure and
 * its start id kept. `success` / `fail`: the start id must still be pending (a start is
 * finished once; a replay is refused and not counted again) and is spent; a success clears
 * the name's failures and takes the address's count back. `code_ok` / `code_bad`: a
 * registration code, judged and counted on the address only.
 */
export async function countAttempt(core: VaultCore, guard: GuardPolicy, ctx: Ctx, name: string, address: string, what: 'start' | 'success' | 'fail' | 'code_ok' | 'code_bad', operation: string, start?: { startId: string; deadline: number }, accountId?: string): Promise<void> {
  const store = core.deps.store;
  const addr = addressKey(address);
  const details = { user: name, address: addr, ...(accountId ? { account: accountId } : {}) };
  const code = what === 'code_ok' || what === 'code_bad';
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    const now = Date.now();
    const nRaw = code ? null : await store.getMeta(guardRow('name', name));
    const aRaw = await store.getMeta(guardRow('addr', addr));
    const [n, a] = [parseGuard(nRaw), parseGuard(aRaw)];
    const finishing = what === 'success' || what === 'fail';
    let taken: { found: boolean; rest: GuardState } | null = null;
    if (finishing) {
      taken = takePending(n, start!.startId);
      if (!taken.found) {
        await core.deps.committer.audit(core.draft(ctx, operation, NO_KEY, 'denied', 'unauthorized:replayed', details));
        throw badLogin();
      }
    }
    // A finish is judged without the failure its own start recorded.
    const verdict = mayAttempt(n, a, guard, now, finishing ? 1 : 0);
    if (!verdict.allowed) {
      const locked = verdict.reason === 'locked';
      await core.deps.committer.audit(core.draft(ctx, operation, NO_KEY, 'denied', locked ? 'rate_limited:login_locked' : 'rate_limited:slow_down', details));
      const when = verdict.retryAfterSeconds === null ? 'until an operator unlocks it' : `for ${verdict.retryAfterSeconds} s`;
      throw new CustosError('rate_limited', locked ? `Too many failed logins for this user name: it is locked ${when}.` : `Too many failed logins: wait ${verdict.retryAfterSeconds} s before the next attempt.`, { tag: locked ? 'login_locked' : 'slow_down' });
    }
    if (what === 'code_ok') return;
    let n2: GuardState = n;
    let a2: GuardState = a;
    let outcome: 'ok' | 'denied' = 'ok';
    let reason: string | null = null;
    if (what === 'start') {
      n2 = withPending(withFailure(n, guard, now, 'name'), start!.startId, start!.deadline, now);
      a2 = withFailure(a, guard, now, 'address');
    } else if (what === 'success') {
      // Other logins of the name still in progress (a second device) keep their starts.
      n2 = { ...withSuccess(taken!.rest, 'name'), pending: taken!.rest.pending };
      a2 = withSuccess(a, 'address');
    } else if (what === 'fail') {
      n2 = taken!.rest;
      outcome = 'denied';
      reason = 'unauthorized';
    } else {
      a2 = withFailure(a, guard, now, 'address');
      outcome = 'denied';
      reason = 'unauthorized';
    }
    const mutations: StateMutation[] = [];
    if (!code && formatGuard(n2) !== nRaw) mutations.push({ kind: 'compareAndSetMeta', name: guardRow('name', name), expected: nRaw, value: formatGuard(n2) });
    if (formatGuard(a2) !== aRaw) mutations.push({ kind: 'compareAndSetMeta', name: guardRow('addr', addr), expected: aRaw, value: formatGuard(a2) });
    const audit = [core.draft(ctx, operation, NO_KEY, outcome, reason, details)];
    // The moment a failure completes a lock is on the record.
    const before = finishing ? { ...n, fails: n.fails.slice(0, -1) } : n;
    if (what === 'fail' && isLocked(n2, guard, now) && !isLocked(before, guard, now)) audit.push(core.draft(ctx, 'login_lockout', NO_KEY, 'ok', null, { ...details, failures: n2.fails.length }));
    try {
      await core.commitAs(ctx, { mutations, audit });
      return;
    } catch (e) {
      if (isCustosError(e) && e.tag === 'meta_moved') continue;
      throw e;
    }
  }
  throw new CustosError('storage_unavailable', 'Other logins for this user name or address kept changing its counters; retry.', { tag: 'meta_moved' });
}
