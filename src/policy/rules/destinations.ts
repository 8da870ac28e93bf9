/**
 * `destinations`: where external outputs may go. With `allow`, every non-change output must
 * pay a listed address; any output (change included) paying a `deny`ed address is refused.
 * An output without an address (OP_RETURN, bare scripts) is refused unless
 * `allow_unaddressed = true`. Bech32 addresses compare case-insensitively. Tag `destinations`.
 */
import { printable } from '../../core/text.js';
import { PSBT_ONLY, normalizeAddress, NO_PSBT_FACTS, NOT_PSBT, psbtOf, type RuleType } from './common.js';

export interface DestinationsSpec {
  allow?: Set<string>;
  deny?: Set<string>;
  allowUnaddressed: boolean;
}

export const destinationsRule: RuleType<DestinationsSpec> = {
  tag: 'destinations',
  fields: ['allow', 'deny', 'allow_unaddressed'],
  stateful: false,
  parse(f) {
    f.needOne('allow', 'deny');
    const allow = f.list('allow', normalizeAddress, { what: 'addresses' });
    const deny = f.list('deny', normalizeAddress, { what: 'addresses' });
    return { allow: allow && new Set(allow), deny: deny && new Set(deny), allowUnaddressed: f.bool('allow_unaddressed') ?? false };
  },
  compile(spec, site) {
    return {
      id: site.ruleId,
      tag: 'destinations',
      judges: PSBT_ONLY,
      scope: () => null,
      evaluate(req) {
        const psbt = psbtOf(req);
        if (psbt === 'not_psbt') return NOT_PSBT;
        if (psbt === 'missing') return NO_PSBT_FACTS;
        let external = 0;
        for (const [i, o] of psbt.outputs.entries()) {
          if (o.address === null) {
            if (!o.isChange && !spec.allowUnaddressed) return { result: 'deny', explanation: `output ${i} has no address (allow_unaddressed is off)` };
            continue;
          }
          const a = normalizeAddress(o.address);
          if (spec.deny?.has(a)) return { result: 'deny', explanation: `output ${i} pays ${printable(o.address, 100)}, which is on the deny list` };
          if (o.isChange) continue;
          external++;
          if (spec.allow && !spec.allow.has(a)) return { result: 'deny', explanation: `output ${i} pays ${printable(o.address, 100)}, which is not on the allow list` };
        }
        return { result: 'pass', explanation: external === 1 ? 'the external output pays a permitted address' : `all ${external} external outputs pay permitted addresses` };
      },
    };
  },
};
