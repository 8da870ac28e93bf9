/**
 * Policy: the one place that decides whether a request may proceed, whatever protocol it
 * came from. Rules see the principal, the key and the typed payload, never the wire.
 * The rule engine is engine.ts (documents in document.ts, one module per rule type in rules/,
 * attachment and versions in policy-set.ts); until it is wired in, the vault runs `allowAll`,
 * and the only checks are the key's own state (enabled, not destroyed) in the vault.
 */
import type { KeyRecord, Principal } from '../core/types.js';

export interface PolicyInput {
  principal: Principal;
  key: KeyRecord;
  operation: 'sign' | 'export';
  /** Facts about the payload a rule may use (message hash, protocol context). */
  facts: Record<string, string>;
}

export type Decision =
  | { kind: 'allow' }
  /** `tag` is the rule's stable tag: it appears as `policy_denied:<tag>` to clients and in audit. */
  | { kind: 'deny'; tag: string; reason: string }
  | { kind: 'needs_approval'; approvers: string[]; required: number };

export interface Policy {
  evaluate(input: PolicyInput): Promise<Decision>;
}

export const allowAll: Policy = {
  evaluate: async () => ({ kind: 'allow' }),
};
