/**
 * `amount_limit`: at most `limit` satoshis sent externally by one transaction. "Sent
 * externally" is the larger of the decoder's `sentExternally` and the sum of the outputs not
 * marked as change, so an inconsistent decoder can only make the rule stricter. Tag `amount_limit`.
 */
import { invalid } from '../fields.js';
import { PSBT_ONLY, NO_PSBT_FACTS, NOT_PSBT, psbtOf, sats, type RuleType } from './common.js';

export interface AmountLimitSpec {
  limit: bigint;
}

export const amountLimitRule: RuleType<AmountLimitSpec> = {
  tag: 'amount_limit',
  fields: ['limit'],
  stateful: false,
  parse(f) {
    const limit = f.amount('limit');
    if (limit === undefined) throw invalid(f.at('limit'), 'required amount in satoshis is missing');
    return { limit };
  },
  compile(spec, site) {
    return {
      id: site.ruleId,
      tag: 'amount_limit',
      judges: PSBT_ONLY,
      scope: () => null,
      evaluate(req, ctx) {
        const psbt = psbtOf(req);
        if (psbt === 'not_psbt') return NOT_PSBT;
        if (psbt === 'missing') return NO_PSBT_FACTS;
        const amount = ctx.sentExternally!;
        if (amount > spec.limit) return { result: 'deny', explanation: `the transaction sends ${sats(amount)} externally, over the limit of ${sats(spec.limit)}` };
        return { result: 'pass', explanation: `the transaction sends ${sats(amount)} externally, within ${sats(spec.limit)}` };
      },
    };
  },
};
