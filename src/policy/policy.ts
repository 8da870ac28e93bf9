/**
 * A policy decision, as every front end sees it. The rule engine that makes it is engine.ts
 * (documents in document.ts, one module per rule type in rules/, attachment and versions in
 * policy-set.ts); the vault runs it on every sign and export (vault.ts `decideAndCommit`).
 */

export type Decision =
  | { kind: 'allow' }
  /** `tag` is the rule's stable tag: it appears as `policy_denied:<tag>` to clients and in audit. */
  | { kind: 'deny'; tag: string; reason: string }
  | { kind: 'needs_approval'; approvers: string[]; required: number };
