/**
 * `principals`: who may use the key. Patterns are exact principal ids (`token:treasury-bot`)
 * or prefixes with one trailing `*` (`token:ops-*`); no other wildcards, so matching is a set
 * lookup plus a few `startsWith`, never a regular expression. `deny` wins over `allow`;
 * without `allow`, everyone not denied passes. Tag `principals`.
 */
import { printable } from '../../core/text.js';
import { ALL_KINDS, PrincipalPatterns, type RuleType } from './common.js';

export interface PrincipalsSpec {
  allow?: PrincipalPatterns;
  deny?: PrincipalPatterns;
}

export const principalsRule: RuleType<PrincipalsSpec> = {
  tag: 'principals',
  fields: ['allow', 'deny'],
  stateful: false,
  parse(f) {
    f.needOne('allow', 'deny');
    const allow = f.list('allow', PrincipalPatterns.check, { what: 'principal patterns' });
    const deny = f.list('deny', PrincipalPatterns.check, { what: 'principal patterns' });
    return { allow: allow && new PrincipalPatterns(allow), deny: deny && new PrincipalPatterns(deny) };
  },
  compile(spec, site) {
    return {
      id: site.ruleId,
      tag: 'principals',
      judges: ALL_KINDS,
      scope: () => null,
      evaluate(req) {
        const who = printable(req.principal.id, 80);
        if (spec.deny?.matches(req.principal.id)) return { result: 'deny', explanation: `principal ${who} is on the deny list` };
        if (spec.allow && !spec.allow.matches(req.principal.id)) return { result: 'deny', explanation: `principal ${who} is not on the allow list` };
        return { result: 'pass', explanation: `principal ${who} is allowed` };
      },
    };
  },
};
