/**
 * `tor_periods`: which onion-service time periods a blinded key may sign for, relative to the
 * period the request arrives in (`current`, `next`: tor signs descriptors for those two, and the
 * vault never signs for any other). Judges blinded signatures only (facts `tor_op = blind_sign`,
 * `tor_period_num`, `tor_period_length`); anything else is a request it cannot judge. Tag
 * `tor_periods`.
 */
import { printable } from '../../core/text.js';
import { invalid } from '../fields.js';
import { ROTATION_OFFSET_MINUTES } from '../../crypto/tor-blind.js';
import { ALL_KINDS, type RuleType } from './common.js';

const WHICH = ['current', 'next'] as const;

export interface TorPeriodsSpec {
  /** Offsets from the current period allowed: 0, 1. */
  allow: Set<number>;
}

export const torPeriodsRule: RuleType<TorPeriodsSpec> = {
  tag: 'tor_periods',
  fields: ['allow'],
  stateful: false,
  parse(f) {
    const allow = f.list('allow', (s, p) => {
      const i = (WHICH as readonly string[]).indexOf(s);
      if (i < 0) throw invalid(p, `expected one of ${WHICH.join(', ')}, got "${printable(s, 40)}"`);
      return i;
    }, { what: 'time periods' });
    return { allow: new Set(allow ?? [0, 1]) };
  },
  compile(spec, site) {
    const names = WHICH.filter((_, i) => spec.allow.has(i)).join(', ');
    return {
      id: site.ruleId,
      tag: 'tor_periods',
      judges: ALL_KINDS,
      scope: () => null,
      evaluate(req) {
        if (req.facts.tor_op !== 'blind_sign') return { result: 'cannot_judge', explanation: 'it judges signatures by onion-service blinded keys only' };
        const num = Number(req.facts.tor_period_num);
        const length = Number(req.facts.tor_period_length);
        if (!Number.isSafeInteger(num) || !Number.isInteger(length) || length < 1) return { result: 'deny', explanation: 'the request names no valid time period' };
        const current = Math.floor((Math.floor(req.now.getTime() / 60_000) - ROTATION_OFFSET_MINUTES) / length);
        const offset = num - current;
        if (!spec.allow.has(offset)) return { result: 'deny', explanation: `period ${num} is ${offset < 0 ? `${-offset} before` : `${offset} after`} the current one (${current}); allowed: ${names}` };
        return { result: 'pass', explanation: `period ${num} is the ${WHICH[offset]} one, allowed (${names})` };
      },
    };
  },
};
