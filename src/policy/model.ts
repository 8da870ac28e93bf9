/**
 * What a policy rule sees and answers: the typed request (principal, key, operation, payload
 * facts, the clock), the per-rule result that makes up the trace, and the small state that
 * stateful rules (velocity, rate_limit) read and return. Plain data, no behaviour.
 */
import type { Algorithm, Principal } from '../core/types.js';

/** `ecdh` and `decrypt`: a Lightning node's key agreement and ECIES decryption (the hsmd hook). */
export const OPERATIONS = ['sign', 'export', 'ecdh', 'decrypt'] as const;
export type Operation = (typeof OPERATIONS)[number];

/** What is being signed, as the front end decoded it. */
export const PAYLOAD_TYPES = ['raw', 'digest', 'psbt', 'ssh', 'consensus'] as const;
export type PayloadType = (typeof PAYLOAD_TYPES)[number];

/** The stable tag of each rule type; a denial is reported as `policy_denied:<tag>`. */
export const RULE_TAGS = [
  'operations',
  'principals',
  'time_window',
  'rate_limit',
  'amount_limit',
  'velocity',
  'destinations',
  'fee_cap',
  'change_must_return',
  'payload_format',
  'approval',
  'paths',
  'tor_periods',
] as const;
export type RuleTag = (typeof RULE_TAGS)[number];

/** The key as policy sees it: `tags` come from the key's `tags` attribute (see `policyKeyOf`). */
export interface PolicyKey {
  id: string;
  label: string;
  algorithm: Algorithm;
  tags: readonly string[];
}

export interface PsbtOutput {
  /** Null for a script without an address (OP_RETURN, bare multisig, ...). */
  address: string | null;
  amount: bigint;
  /** True only when the output was verified to pay this wallet's own change path. */
  isChange: boolean;
}

/** What the PSBT decoder established about a transaction; amounts in satoshis. */
export interface PsbtFacts {
  outputs: readonly PsbtOutput[];
  fee: bigint;
  /** Sum of the outputs that leave the wallet (every output that is not change). */
  sentExternally: bigint;
  inputCount: number;
  /** Virtual size in vbytes, when known; needed by a `fee_cap` with `max_fee_rate`. */
  vsize?: number;
}

export interface SshFacts {
  host?: string;
  user?: string;
  namespace?: string;
}

/** One request as the engine evaluates it. Everything the rules may look at is here. */
export interface PolicyRequest {
  principal: Principal;
  key: PolicyKey;
  operation: Operation;
  /** What is signed; null for an export (nothing is signed). */
  payloadType: PayloadType | null;
  /** The clock, passed in: the engine never reads it. */
  now: Date;
  psbt?: PsbtFacts;
  ssh?: SshFacts;
  /** The message bytes of a `raw` payload, for `payload_format` prefix and length checks. */
  payload?: Uint8Array;
  /** Protocol facts from the front end (`format`, `chain_id`, ...). */
  facts: Record<string, string>;
  /** HD keys: every derivation path the request signs with (for `paths` rules). */
  paths?: ReadonlyArray<readonly number[]>;
  /**
   * Principals who have approved this very request. Absent on the first evaluation; the
   * vault re-evaluates with the approvers once they have answered (see engine.ts).
   */
  approvedBy?: readonly string[];
}

/**
 * State of one stateful rule for one scope: a fixed ring of `buckets + 1` counters, each
 * covering `bucketMs` of wall-clock time, `head` the absolute index (floor(ms / bucketMs)) of
 * the newest one. Plain JSON (counters are exact integers, see window.ts); its size never
 * grows with traffic.
 */
export interface BucketState {
  kind: 'buckets';
  bucketMs: number;
  buckets: number;
  head: number;
  counts: number[];
}
export type RuleState = BucketState;

/** A state the caller commits in the same transaction as the decision. */
export interface StateUpdate {
  /** `<policy id>/<rule id>/<per>` (see rules/scope.ts); never contains the policy version. */
  scope: string;
  /** What the engine read (null if nothing): the store may compare-and-set against it. */
  previous: RuleState | null;
  state: RuleState;
}

/** Reads the committed state of a scope; undefined when there is none yet. Synchronous: load first (see `stateScopes`). */
export type ReadState = (scope: string) => RuleState | undefined;

/**
 * `cannot_judge`: the request is of a kind the rule has no facts for (an amount limit asked
 * about raw bytes, a path rule about a key that derives nothing). The engine turns it into a
 * deny unless the rule (or its document) says `other_payloads = "allow"`: policies fail
 * closed, so a document never lets through what none of its rules looked at.
 */
export type RuleResult = 'pass' | 'deny' | 'approval' | 'not_applicable' | 'cannot_judge';

/** What a request is, for `judges`: its payload type, or `export` (which signs nothing). */
export const REQUEST_KINDS = [...PAYLOAD_TYPES, 'export', 'ecdh', 'decrypt'] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];

export function requestKind(req: Pick<PolicyRequest, 'payloadType' | 'operation'>): RequestKind {
  if (req.payloadType !== null) return req.payloadType;
  return req.operation === 'ecdh' || req.operation === 'decrypt' ? req.operation : 'export';
}

/** What one rule said about one request. */
export type RuleOutcome =
  | { result: 'pass'; explanation: string; update?: StateUpdate }
  | { result: 'not_applicable'; explanation: string }
  | { result: 'cannot_judge'; explanation: string }
  | { result: 'deny'; explanation: string }
  | { result: 'approval'; explanation: string; approvers: readonly string[]; required: number };

/** Per-evaluation helpers shared by the rules: the state reader and memoised derived facts. */
export interface EvalContext {
  readonly nowMs: number;
  readState(scope: string): RuleState | undefined;
  /** Weekday (0 = Sunday) and minute of day at `now` in an IANA time zone, computed once per zone. */
  localTime(zone: string): { day: number; minute: number };
  /** Sum of the non-change outputs, and the larger of that and the declared `sentExternally`. */
  readonly sentExternally: bigint | null;
}

/** A rule after validation: precomputed sets and patterns, ready for any number of requests. */
export interface CompiledRule {
  /** The rule's `id`, or `rules[i]` when it has none. */
  readonly id: string;
  readonly tag: RuleTag;
  /** The kinds of request this rule has the facts to judge; any other kind is `cannot_judge`. */
  readonly judges: ReadonlySet<RequestKind>;
  /** What a `cannot_judge` becomes: `deny` (the default) unless the document says `allow`. */
  readonly otherPayloads?: 'deny' | 'allow';
  /** State scope for this request, for a stateful rule that applies to it; else null. */
  scope(req: PolicyRequest): string | null;
  evaluate(req: PolicyRequest, ctx: EvalContext): RuleOutcome;
}
