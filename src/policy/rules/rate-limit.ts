/**
 * `rate_limit`: at most `limit` requests per rolling `window`, per key, per principal, per
 * key and principal, or across the policy. Only requests the whole policy set allows consume
 * budget (the engine returns the new counter only with an allow). Tag `rate_limit`.
 */
import { invalid } from '../fields.js';
import { readWindow, recordInWindow } from '../window.js';
import { ALL_KINDS, formatDuration, parseWindow, perPhrase, scopeOf, type RuleType, type WindowSpec } from './common.js';

export interface RateLimitSpec extends WindowSpec {
  limit: number;
}

export const rateLimitRule: RuleType<RateLimitSpec> = {
  tag: 'rate_limit',
  fields: ['limit', 'window', 'buckets', 'per'],
  stateful: true,
  parse(f) {
    const limit = f.integer('limit', 1, 1_000_000_000, 'a number of requests');
    if (limit === undefined) throw invalid(f.at('limit'), 'required number of requests is missing');
    return { ...parseWindow(f), limit };
  },
  compile(spec, site) {
    const span = `${formatDuration(spec.windowMs)} ${perPhrase(spec.per)}`;
    return {
      id: site.ruleId,
      tag: 'rate_limit',
      judges: ALL_KINDS,
      scope: (req) => scopeOf(site, spec.per, req),
      evaluate(req, ctx) {
        const scope = scopeOf(site, spec.per, req);
        const previous = ctx.readState(scope);
        const w = readWindow(previous, spec, ctx.nowMs, scope);
        if (w.total + 1 > spec.limit) return { result: 'deny', explanation: `${w.total} requests in the last ${span} already reach the limit of ${spec.limit}` };
        return { result: 'pass', explanation: `request ${w.total + 1} of ${spec.limit} in ${span}`, update: { scope, previous: previous ?? null, state: recordInWindow(w, 1) } };
      },
    };
  },
};
