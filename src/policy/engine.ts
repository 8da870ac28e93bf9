/**
 * The policy engine: evaluates compiled policy documents against one request, purely. No I/O,
 * no clock (the request carries `now`), no hidden state: what stateful rules remember comes
 * in through `readState` and goes out as `stateUpdates`.
 *
 * Combination: every rule of every policy is evaluated, in order, for the trace. Any deny wins
 * (the first in order gives the tag and reason); otherwise any pending approval gives
 * needs_approval with the union of the pending rules' approvers and the largest `required`;
 * otherwise allow. No policy at all is allow.
 *
 * Fail closed: a rule asked about a request it has no facts for (`cannot_judge`: an amount
 * limit asked about raw bytes, a PSBT rule about an export) denies it, with its own tag,
 * unless the rule or its document says `other_payloads = "allow"`. A document whose only rule
 * is an amount limit therefore signs PSBTs within the limit and nothing else.
 *
 * State, and what the caller must do with it:
 *   - `stateUpdates` is non-empty only with an allow. The caller commits them in the same
 *     durable transaction as the "decided" audit entry, before any signature leaves. A deny
 *     consumes nothing.
 *   - needs_approval consumes nothing either. When the approvers have answered, the caller
 *     evaluates again with `approvedBy` and the state as it is then, and commits that
 *     evaluation's updates if, and only if, it is an allow. Budget spent by other requests
 *     meanwhile is therefore respected, and a request that is never approved spends nothing.
 *     The union-and-max summary is what to ask approvers for; each approval rule checks its
 *     own approvers on the re-evaluation, so a rule's M-of-N is never weakened by another's.
 *   - Each update carries the `previous` state it was computed from, so a store may
 *     compare-and-set (two processes racing on one budget: the loser re-evaluates). A caller
 *     that evaluates under a per-key lock may ignore it.
 *   - Scopes are `<policy id>/<rule id>/<per>`, without the policy version: uploading a new
 *     version keeps the budget already spent (a changed window carries it over, see window.ts).
 */
import { CustosError, isCustosError } from '../core/errors.js';
import { printable } from '../core/text.js';
import type { KeyRecord } from '../core/types.js';
import type { PolicyDocument } from './document.js';
import { OPERATIONS, PAYLOAD_TYPES, REQUEST_KINDS, requestKind, type RequestKind, type RuleOutcome, type CompiledRule, type EvalContext, type PolicyKey, type PolicyRequest, type ReadState, type RuleResult, type RuleState, type RuleTag, type StateUpdate } from './model.js';
import type { Decision } from './policy.js';
import { RULE_TYPES } from './rules/index.js';

export interface CompiledPolicy {
  readonly id: string;
  readonly version: number;
  readonly document: PolicyDocument;
  readonly rules: readonly CompiledRule[];
}

export interface TraceEntry {
  policy: string;
  version: number;
  /** The rule's id, or `rules[i]`. */
  rule: string;
  tag: RuleTag;
  result: RuleResult;
  explanation: string;
}

export interface Evaluation {
  decision: Decision;
  trace: TraceEntry[];
  stateUpdates: StateUpdate[];
}

/** Precomputes every rule of a validated document (sets, prefixes, formatters) once. */
export function compilePolicy(doc: PolicyDocument, version = 1): CompiledPolicy {
  const rules = doc.rules.map((r) => ({
    ...RULE_TYPES[r.type].compile(r.spec, { policyId: doc.id, ruleId: r.id ?? `rules[${r.index}]` }),
    otherPayloads: r.otherPayloads ?? doc.otherPayloads ?? 'deny',
  }));
  return { id: doc.id, version, document: doc, rules };
}

const KIND_NAMES: Record<RequestKind, string> = { raw: 'raw', digest: 'digest', psbt: 'PSBT', ssh: 'SSH', consensus: 'consensus', export: 'export', ecdh: 'ECDH', decrypt: 'decryption' };

/** One request of a kind `r` cannot judge: what it becomes under its `other_payloads`. */
function unjudged(r: CompiledRule, kind: RequestKind, why: string): RuleOutcome {
  const what = kind === 'export' ? 'an export' : `${kind === 'ssh' || kind === 'ecdh' ? 'an' : 'a'} ${KIND_NAMES[kind]} request`;
  if (r.otherPayloads === 'allow') return { result: 'not_applicable', explanation: `cannot judge ${what} (${why}); other_payloads = "allow" lets it through` };
  return { result: 'deny', explanation: `cannot judge ${what} (${why}), and a rule denies what it cannot judge unless it (or its document) sets other_payloads = "allow"` };
}

/**
 * Kinds of request (payload types and exports) that no rule of the document judges, and
 * what happens to them: the warnings `policy upload` prints, so an author sees at once that
 * an amount limit alone also refuses raw signatures (or, with other_payloads = "allow",
 * lets them through unlimited).
 */
export function uncoveredKinds(p: CompiledPolicy): Array<{ kind: RequestKind; outcome: 'denied' | 'allowed'; rules: string[] }> {
  const out: Array<{ kind: RequestKind; outcome: 'denied' | 'allowed'; rules: string[] }> = [];
  for (const kind of REQUEST_KINDS) {
    if (p.rules.some((r) => r.judges.has(kind))) continue;
    const denying = p.rules.filter((r) => r.otherPayloads !== 'allow');
    out.push({ kind, outcome: denying.length > 0 ? 'denied' : 'allowed', rules: (denying.length > 0 ? denying : p.rules).map((r) => `${r.id} (${r.tag})`) });
  }
  return out;
}

/** Sentences for `uncoveredKinds`, one per outcome. */
export function coverageWarnings(p: CompiledPolicy): string[] {
  const u = uncoveredKinds(p);
  const lines: string[] = [];
  const denied = u.filter((x) => x.outcome === 'denied');
  const allowed = u.filter((x) => x.outcome === 'allowed');
  const names = (xs: typeof u) => xs.map((x) => (x.kind === 'export' ? 'exports' : x.kind === 'ecdh' ? 'ECDH requests' : x.kind === 'decrypt' ? 'decryptions' : `${KIND_NAMES[x.kind]} signatures`)).join(', ');
  if (denied.length > 0) lines.push(`No rule of policy ${p.id} judges ${names(denied)}: they are DENIED for the keys it applies to (${denied[0]!.rules.join(', ')} cannot judge them). Add a rule that does, or set other_payloads = "allow" to let them through.`);
  if (allowed.length > 0) lines.push(`No rule of policy ${p.id} judges ${names(allowed)}: other_payloads = "allow" lets them through unchecked.`);
  return lines;
}

/** The key as policy sees it; tags are the key's `tags` attribute, comma-separated. */
export function policyKeyOf(key: Pick<KeyRecord, 'id' | 'label' | 'algorithm' | 'attributes'>): PolicyKey {
  const t = key.attributes.tags;
  const tags = typeof t === 'string' ? t.split(',').map((s) => s.trim()).filter((s) => s.length > 0) : [];
  return { id: key.id, label: key.label, algorithm: key.algorithm, tags };
}

/** Every state scope `evaluate` may read for this request: load them before evaluating. */
export function stateScopes(policies: CompiledPolicy | readonly CompiledPolicy[], req: PolicyRequest): string[] {
  checkRequest(req);
  const out: string[] = [];
  for (const p of asList(policies)) for (const r of p.rules) {
    const s = r.scope(req);
    if (s !== null) out.push(s);
  }
  return out;
}

export function evaluate(policies: CompiledPolicy | readonly CompiledPolicy[], req: PolicyRequest, readState: ReadState): Evaluation {
  checkRequest(req);
  const ctx = new Context(req, readState);
  const trace: TraceEntry[] = [];
  const updates: StateUpdate[] = [];
  let deny: TraceEntry | undefined;
  const approvers: string[] = [];
  const seenApprovers = new Set<string>();
  let required = 0;
  const kind = requestKind(req);
  for (const p of asList(policies)) {
    for (const r of p.rules) {
      let o = r.judges.has(kind) ? r.evaluate(req, ctx) : unjudged(r, kind, `it judges ${[...r.judges].map((k) => KIND_NAMES[k]).join(', ')} requests only`);
      if (o.result === 'cannot_judge') o = unjudged(r, kind, o.explanation);
      const entry: TraceEntry = { policy: p.id, version: p.version, rule: r.id, tag: r.tag, result: o.result, explanation: o.explanation };
      trace.push(entry);
      if (o.result === 'deny') deny ??= entry;
      else if (o.result === 'approval') {
        required = Math.max(required, o.required);
        for (const a of o.approvers) if (!seenApprovers.has(a)) (seenApprovers.add(a), approvers.push(a));
      } else if (o.result === 'pass' && o.update) updates.push(o.update);
    }
  }
  if (deny) return { decision: { kind: 'deny', tag: deny.tag, reason: `Policy ${deny.policy} v${deny.version}, rule ${deny.rule}: ${deny.explanation}.` }, trace, stateUpdates: [] };
  if (required > 0) return { decision: { kind: 'needs_approval', approvers, required }, trace, stateUpdates: [] };
  return { decision: { kind: 'allow' }, trace, stateUpdates: updates };
}

/** What `custos policy test` prints: the decision, then every rule's verdict and why. */
export function explain(e: Evaluation): string {
  const d = e.decision;
  const lines: string[] = [];
  if (d.kind === 'allow') lines.push('Decision: allow');
  else if (d.kind === 'deny') lines.push(`Decision: deny (policy_denied:${d.tag})`, `  ${d.reason}`);
  else lines.push(`Decision: needs approval from ${d.required} of ${d.approvers.join(', ')}`, '  Nothing is spent until the approvers answer and the request is evaluated again.');
  if (e.trace.length === 0) lines.push('No policy applies to this key.');
  else lines.push('', 'Rules, in order:');
  const width = Math.max(0, ...e.trace.map((t) => `${t.policy} v${t.version} ${t.rule}`.length));
  for (const t of e.trace) {
    lines.push(`  ${`[${t.result}]`.padEnd(16)} ${`${t.policy} v${t.version} ${t.rule}`.padEnd(width)}  ${t.tag}: ${t.explanation}`);
  }
  if (e.stateUpdates.length > 0) {
    lines.push('', 'State committed with this decision:');
    for (const u of e.stateUpdates) lines.push(`  ${u.scope}: ${windowTotal(u.previous)} -> ${windowTotal(u.state)}`);
  }
  return lines.join('\n');
}

function windowTotal(s: RuleState | null): string {
  if (s === null) return '0';
  let t = 0;
  for (const c of s.counts) t += c;
  return String(t);
}

function asList(p: CompiledPolicy | readonly CompiledPolicy[]): readonly CompiledPolicy[] {
  return Array.isArray(p) ? p : [p as CompiledPolicy];
}

const ZONES = new Map<string, Intl.DateTimeFormat>();
const WEEKDAY: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

class Context implements EvalContext {
  readonly nowMs: number;
  readonly sentExternally: bigint | null;
  private readonly zones = new Map<string, { day: number; minute: number }>();

  constructor(
    private readonly req: PolicyRequest,
    private readonly read: ReadState,
  ) {
    this.nowMs = req.now.getTime();
    if (req.psbt) {
      let external = 0n;
      for (const o of req.psbt.outputs) if (!o.isChange) external += o.amount;
      this.sentExternally = external > req.psbt.sentExternally ? external : req.psbt.sentExternally;
    } else this.sentExternally = null;
  }

  readState(scope: string): RuleState | undefined {
    try {
      return this.read(scope);
    } catch (e) {
      if (isCustosError(e)) throw e;
      throw new CustosError('storage_unavailable', `Could not read the policy state of ${printable(scope, 120)}.`, { cause: e });
    }
  }

  localTime(zone: string): { day: number; minute: number } {
    const hit = this.zones.get(zone);
    if (hit) return hit;
    const d = this.req.now;
    let out: { day: number; minute: number };
    if (zone === 'UTC') out = { day: d.getUTCDay(), minute: d.getUTCHours() * 60 + d.getUTCMinutes() };
    else {
      let fmt = ZONES.get(zone);
      if (!fmt) ZONES.set(zone, (fmt = new Intl.DateTimeFormat('en-US', { timeZone: zone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })));
      let day = 0;
      let minute = 0;
      for (const p of fmt.formatToParts(d)) {
        if (p.type === 'weekday') day = WEEKDAY[p.value] ?? 0;
        else if (p.type === 'hour') minute += (Number(p.value) % 24) * 60;
        else if (p.type === 'minute') minute += Number(p.value);
      }
      out = { day, minute };
    }
    this.zones.set(zone, out);
    return out;
  }
}

function bad(what: string): CustosError {
  return new CustosError('bad_request', `Policy request: ${what}.`);
}

const isBig = (v: unknown): v is bigint => typeof v === 'bigint' && v >= 0n;
const isStr = (v: unknown): v is string => typeof v === 'string';

/** The request is checked at the edge, so that no rule meets a value of the wrong type. */
export function checkRequest(req: PolicyRequest): void {
  if (typeof req !== 'object' || req === null) throw bad('expected an object');
  if (!(req.now instanceof Date) || !Number.isFinite(req.now.getTime()) || req.now.getTime() < 0) throw bad('now must be a valid date after 1970');
  if (typeof req.principal !== 'object' || req.principal === null || !isStr(req.principal.id)) throw bad('principal.id must be a string');
  const k = req.key;
  if (typeof k !== 'object' || k === null || !isStr(k.id) || !isStr(k.label) || !Array.isArray(k.tags) || !k.tags.every(isStr)) throw bad('key must have a string id and label and a list of string tags');
  if (!(OPERATIONS as readonly string[]).includes(req.operation)) throw bad(`operation must be one of ${OPERATIONS.join(', ')}`);
  if (req.payloadType !== null && !(PAYLOAD_TYPES as readonly unknown[]).includes(req.payloadType)) throw bad(`payloadType must be null or one of ${PAYLOAD_TYPES.join(', ')}`);
  if (typeof req.facts !== 'object' || req.facts === null || !Object.values(req.facts).every(isStr)) throw bad('facts must map names to strings');
  if (req.payload !== undefined && !(req.payload instanceof Uint8Array)) throw bad('payload must be bytes');
  if (req.approvedBy !== undefined && (!Array.isArray(req.approvedBy) || !req.approvedBy.every(isStr))) throw bad('approvedBy must be a list of principal ids');
  const p = req.psbt;
  if (p !== undefined) {
    if (typeof p !== 'object' || p === null || !Array.isArray(p.outputs)) throw bad('psbt.outputs must be a list');
    p.outputs.forEach((o, i) => {
      if (typeof o !== 'object' || o === null || !(o.address === null || isStr(o.address)) || !isBig(o.amount) || typeof o.isChange !== 'boolean') {
        throw bad(`psbt.outputs[${i}] must have an address (string or null), a non-negative bigint amount and a boolean isChange`);
      }
    });
    if (!isBig(p.fee) || !isBig(p.sentExternally)) throw bad('psbt.fee and psbt.sentExternally must be non-negative bigints');
    if (!Number.isSafeInteger(p.inputCount) || p.inputCount < 0) throw bad('psbt.inputCount must be a non-negative integer');
    if (p.vsize !== undefined && (!Number.isSafeInteger(p.vsize) || p.vsize <= 0)) throw bad('psbt.vsize must be a positive integer');
  }
}
