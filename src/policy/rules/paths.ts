/**
 * `paths`: which HD subtrees a request may sign with. `allow` lists derivation-path prefixes
 * (`m/84'/0'/3'`); `principals` (optional, exact ids or `prefix*`) limits the rule to some
 * callers, so one document can give each customer-facing service its own subtree of one seed.
 * Every path a request signs with (the raw signature's path, a PSBT's own inputs) must lie
 * under one prefix. Requests that sign with no derived key are not concerned. Tag `paths`.
 */
import { parsePath, formatPath, isUnder } from '../../wallet/paths.js';
import { isCustosError } from '../../core/errors.js';
import { invalid } from '../fields.js';
import { ALL_KINDS, PrincipalPatterns, type RuleType } from './common.js';

export interface PathsSpec {
  allow: number[][];
  principals?: PrincipalPatterns;
}

export const pathsRule: RuleType<PathsSpec> = {
  tag: 'paths',
  fields: ['allow', 'principals'],
  stateful: false,
  parse(f) {
    const allow = f.list('allow', (s, path) => {
      try {
        return parsePath(s);
      } catch (e) {
        throw invalid(path, isCustosError(e) ? e.message : 'not a derivation path');
      }
    }, { what: "derivation path prefixes like m/84'/0'" })!;
    if (!allow) throw invalid(f.at('allow'), "expected a list of derivation path prefixes like m/84'/0'");
    const principals = f.list('principals', PrincipalPatterns.check, { what: 'principal patterns' });
    return { allow, ...(principals ? { principals: new PrincipalPatterns(principals) } : {}) };
  },
  compile(spec, site) {
    const shown = spec.allow.map((p) => formatPath(p)).join(', ');
    return {
      id: site.ruleId,
      tag: 'paths',
      judges: ALL_KINDS,
      scope: () => null,
      evaluate(req) {
        if (spec.principals && !spec.principals.matches(req.principal.id)) return { result: 'not_applicable', explanation: 'the rule is for other principals' };
        if (!req.paths || req.paths.length === 0) return { result: 'cannot_judge', explanation: 'the request signs with no derived key, and this rule judges derivation paths' };
        for (const p of req.paths) {
          if (!spec.allow.some((prefix) => isUnder(p, prefix))) return { result: 'deny', explanation: `path ${formatPath(p)} is outside the allowed subtrees (${shown})` };
        }
        return { result: 'pass', explanation: `every path is under ${shown}` };
      },
    };
  },
};
