/**
 * `approval`: M-of-N named approvers (principal ids) must agree before the signature, always or
 * only when a condition in `when` holds. `when` conditions are alternatives: approval is
 * needed when ANY of them holds (`amount_above` sats sent externally, a destination outside
 * `destination_not_in`, an operation or payload type listed, a principal matched). A request
 * re-evaluated with `approvedBy` passes once `required` distinct listed approvers are in it.
 * Tag `approval`.
 */
import { invalid } from '../fields.js';
import type { Operation, PayloadType, PolicyRequest } from '../model.js';
import { ALL_KINDS, normalizeAddress, PrincipalPatterns, PSBT_ONLY, sats, type RuleType } from './common.js';

export interface ApprovalSpec {
  approvers: string[];
  required: number;
  when?: {
    amountAbove?: bigint;
    destinationNotIn?: Set<string>;
    operations?: Set<Operation>;
    payloadTypes?: Set<PayloadType>;
    principals?: PrincipalPatterns;
  };
}

type When = NonNullable<ApprovalSpec['when']>;

/** Why approval is needed for this request, or null when no condition holds. */
function trigger(w: When, req: PolicyRequest, sent: bigint | null): string | null {
  if (w.operations?.has(req.operation)) return `operation ${req.operation}`;
  if (w.payloadTypes && req.payloadType !== null && w.payloadTypes.has(req.payloadType)) return `a ${req.payloadType} payload`;
  if (w.principals?.matches(req.principal.id)) return 'the requesting principal';
  if (w.amountAbove !== undefined && sent !== null && sent > w.amountAbove) return `${sats(sent)} sent externally, above ${sats(w.amountAbove)}`;
  if (w.destinationNotIn && req.psbt) {
    for (const [i, o] of req.psbt.outputs.entries()) {
      if (!o.isChange && (o.address === null || !w.destinationNotIn.has(normalizeAddress(o.address)))) return `output ${i} pays a destination outside the approved list`;
    }
  }
  return null;
}

export const approvalRule: RuleType<ApprovalSpec> = {
  tag: 'approval',
  fields: ['approvers', 'required', 'when'],
  stateful: false,
  parse(f) {
    const approvers = f.list('approvers', undefined, { what: 'principal ids' });
    if (approvers === undefined) throw invalid(f.at('approvers'), 'required list of approvers is missing');
    const dup = approvers.findIndex((a, i) => approvers.indexOf(a) !== i);
    if (dup >= 0) throw invalid(`${f.at('approvers')}[${dup}]`, 'names an approver twice');
    const required = f.integer('required', 1, approvers.length, 'a number of approvers');
    if (required === undefined) throw invalid(f.at('required'), 'required number of approvers is missing');
    const w = f.table('when', ['amount_above', 'destination_not_in', 'operations', 'payload_types', 'principals']);
    if (!w) return { approvers, required };
    w.needOne('amount_above', 'destination_not_in', 'operations', 'payload_types', 'principals');
    const dests = w.list('destination_not_in', normalizeAddress, { what: 'addresses' });
    const principals = w.list('principals', PrincipalPatterns.check, { what: 'principal patterns' });
    return {
      approvers,
      required,
      when: {
        amountAbove: w.amount('amount_above', { allowZero: true }),
        destinationNotIn: dests && new Set(dests),
        operations: w.operations('operations'),
        payloadTypes: w.payloadTypes('payload_types'),
        principals: principals && new PrincipalPatterns(principals),
      },
    };
  },
  compile(spec, site) {
    const of = `${spec.required} of ${spec.approvers.join(', ')}`;
    const listed = new Set(spec.approvers);
    // Amounts and destinations are PSBT facts: on any other request such a condition can
    // neither hold nor be ruled out, so the rule cannot judge it (fail closed, engine.ts).
    const psbtConditions = spec.when !== undefined && (spec.when.amountAbove !== undefined || spec.when.destinationNotIn !== undefined);
    return {
      id: site.ruleId,
      tag: 'approval',
      judges: psbtConditions ? PSBT_ONLY : ALL_KINDS,
      scope: () => null,
      evaluate(req, ctx) {
        const why = spec.when ? trigger(spec.when, req, ctx.sentExternally) : 'every request';
        if (why === null && psbtConditions && !req.psbt) return { result: 'cannot_judge', explanation: 'its amount and destination conditions apply to PSBT signatures only' };
        if (why === null) return { result: 'not_applicable', explanation: 'no approval condition holds' };
        const got = new Set((req.approvedBy ?? []).filter((a) => listed.has(a)));
        if (got.size >= spec.required) return { result: 'pass', explanation: `approved by ${[...got].join(', ')} (${of} needed for ${why})` };
        return { result: 'approval', explanation: `needs ${of} for ${why}${got.size ? ` (${got.size} so far)` : ''}`, approvers: spec.approvers, required: spec.required };
      },
    };
  },
};
