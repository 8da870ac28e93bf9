/**
 * Human approvals: a request that needs M approvals waits (with a deadline the caller knows)
 * while approvers list pending requests with a summary and approve or deny them through the
 * CLI or the API. Each decision is an authenticated act of a distinct approver, audited by
 * the vault. Pending requests live in memory: a restart drops them, and their callers get a
 * refusal (fail closed).
 */
import { randomBytes } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import type { Principal } from '../core/types.js';

export interface ApprovalRequest {
  id: string;
  createdAt: string;
  expiresAt: string;
  /** Who asked (the requesting principal, e.g. `ssh-agent:default`). */
  requester: string;
  keyId: string;
  keyLabel: string;
  operation: string;
  /** What a person needs to decide: user@host, namespace, amount ... */
  summary: Record<string, string>;
  required: number;
  /** Who may approve: principal ids named by the policy; empty means any principal but the requester. */
  approvers: string[];
  approvedBy: string[];
}

export type ApprovalOutcome = 'approved' | 'denied' | 'timeout';

interface Waiting {
  request: ApprovalRequest;
  settle: (o: ApprovalOutcome) => void;
  timer: NodeJS.Timeout;
}

export class Approvals {
  private readonly waiting = new Map<string, Waiting>();

  constructor(
    private readonly maxPending = 1000,
    /** One requester (a socket, a token) cannot crowd out the others. */
    private readonly maxPerRequester = 32,
  ) {}

  pending(): ApprovalRequest[] {
    return [...this.waiting.values()].map((w) => ({ ...w.request, approvedBy: [...w.request.approvedBy] }));
  }

  /** Opens a request and resolves when it is approved, denied, or times out. */
  open(input: Omit<ApprovalRequest, 'id' | 'createdAt' | 'expiresAt' | 'approvedBy'>, timeoutMs: number): { request: ApprovalRequest; outcome: Promise<ApprovalOutcome> } {
    if (this.waiting.size >= this.maxPending) throw new CustosError('policy_denied', 'Too many requests are waiting for approval; try again later.', { tag: 'approval' });
    if ([...this.waiting.values()].filter((w) => w.request.requester === input.requester).length >= this.maxPerRequester) {
      throw new CustosError('policy_denied', `${input.requester} already has ${this.maxPerRequester} requests waiting for approval; try again later.`, { tag: 'approval' });
    }
    const now = Date.now();
    const request: ApprovalRequest = {
      ...input,
      id: `apr_${randomBytes(10).toString('hex')}`,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + timeoutMs).toISOString(),
      approvedBy: [],
    };
    const outcome = new Promise<ApprovalOutcome>((resolve) => {
      const settle = (o: ApprovalOutcome) => {
        const w = this.waiting.get(request.id);
        if (!w) return;
        clearTimeout(w.timer);
        this.waiting.delete(request.id);
        resolve(o);
      };
      const timer = setTimeout(() => settle('timeout'), timeoutMs);
      this.waiting.set(request.id, { request, settle, timer });
    });
    return { request, outcome };
  }

  /** Records one approver's decision; returns the request as it stands afterwards. */
  decide(id: string, approver: Principal, approve: boolean): { request: ApprovalRequest; settled: ApprovalOutcome | null } {
    const w = this.waiting.get(id);
    if (!w) throw new CustosError('not_found', `No request ${id.slice(0, 40)} is waiting for approval (decided, timed out, or never existed).`);
    if (w.request.requester === approver.id) throw new CustosError('forbidden', 'A requester cannot approve its own request.');
    if (w.request.approvers.length > 0 && !w.request.approvers.includes(approver.id)) {
      throw new CustosError('forbidden', `${approver.id} is not one of the approvers this request needs (${w.request.approvers.join(', ')}).`);
    }
    if (!approve) {
      w.settle('denied');
      return { request: w.request, settled: 'denied' };
    }
    if (w.request.approvedBy.includes(approver.id)) {
      throw new CustosError('forbidden', `${approver.id} has already approved this request; another approver is needed.`);
    }
    w.request.approvedBy.push(approver.id);
    if (w.request.approvedBy.length >= w.request.required) {
      w.settle('approved');
      return { request: w.request, settled: 'approved' };
    }
    return { request: w.request, settled: null };
  }

  /** Takes a request back (its pending entry could not be written): approvers no longer see it. */
  withdraw(id: string): void {
    this.waiting.get(id)?.settle('denied');
  }

  /** Refuses everything a requester still has waiting (an ssh-agent socket being locked). */
  denyAllFrom(requester: string): void {
    for (const w of [...this.waiting.values()]) if (w.request.requester === requester) w.settle('denied');
  }

  /** Refuses everything still waiting (shutdown). */
  close(): void {
    for (const w of [...this.waiting.values()]) w.settle('denied');
  }
}
