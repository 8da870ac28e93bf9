/**
 * `velocity`: at most `limit` satoshis sent externally per rolling `window` (per key by
 * default). The counter is the fixed ring of window.ts (24 one-hour buckets for "24h"), so
 * its state has the same size after one payment or a million. Only allowed requests spend
 * budget. Tag `velocity`.
 */
import { invalid } from '../fields.js';
import { readWindow, recordInWindow } from '../window.js';
import { PSBT_ONLY, formatDuration, NO_PSBT_FACTS, NOT_PSBT, parseWindow, perPhrase, psbtOf, sats, scopeOf, type RuleType, type WindowSpec } from './common.js';

export interface VelocitySpec extends WindowSpec {
  limit: bigint;
}

export const velocityRule: RuleType<VelocitySpec> = {
  tag: 'velocity',
  fields: ['limit', 'window', 'buckets', 'per'],
  stateful: true,
  parse(f) {
    const limit = f.amount('limit');
    if (limit === undefined) throw invalid(f.at('limit'), 'required amount in satoshis is missing');
    return { ...parseWindow(f), limit };
  },
  compile(spec, site) {
    const span = `${formatDuration(spec.windowMs)} ${perPhrase(spec.per)}`;
    return {
      id: site.ruleId,
      tag: 'velocity',
      judges: PSBT_ONLY,
      scope: (req) => (psbtOf(req) === 'not_psbt' ? null : scopeOf(site, spec.per, req)),
      evaluate(req, ctx) {
        const psbt = psbtOf(req);
        if (psbt === 'not_psbt') return NOT_PSBT;
        if (psbt === 'missing') return NO_PSBT_FACTS;
        const amount = ctx.sentExternally!;
        const scope = scopeOf(site, spec.per, req);
        const previous = ctx.readState(scope);
        const w = readWindow(previous, spec, ctx.nowMs, scope);
        const spent = BigInt(w.total);
        const after = spent + amount;
        if (after > spec.limit) return { result: 'deny', explanation: `sending ${sats(amount)} would bring the total of the last ${span} to ${sats(after)}, over the limit of ${sats(spec.limit)} (${sats(spent)} already sent)` };
        const explanation = `${sats(after)} of ${sats(spec.limit)} sent in the last ${span} after this one`;
        if (amount === 0n) return { result: 'pass', explanation };
        return { result: 'pass', explanation, update: { scope, previous: previous ?? null, state: recordInWindow(w, Number(amount)) } };
      },
    };
  },
};
