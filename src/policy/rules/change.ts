/**
 * `change_must_return`: what does not leave the wallet comes back on its change path, and the
 * decoder's accounting agrees with the outputs. Precisely, the transaction is refused when
 *   - the outputs not marked `isChange` do not add up to `sentExternally` (the amount rules
 *     would be fed a wrong number);
 *   - a change output has no address (change is verified by its derivation path, so it has one);
 *   - there are more than `max_change_outputs` change outputs (default 1);
 *   - a non-change output pays one of `own_addresses`: this wallet's own addresses outside the
 *     change path, such as its receive addresses, which would move funds without them being
 *     counted as change or as leaving.
 * Tag `change_must_return`.
 */
import { printable } from '../../core/text.js';
import { PSBT_ONLY, normalizeAddress, NO_PSBT_FACTS, NOT_PSBT, psbtOf, sats, type RuleType } from './common.js';

export interface ChangeSpec {
  maxChangeOutputs: number;
  ownAddresses?: Set<string>;
}

export const changeMustReturnRule: RuleType<ChangeSpec> = {
  tag: 'change_must_return',
  fields: ['max_change_outputs', 'own_addresses'],
  stateful: false,
  parse(f) {
    const own = f.list('own_addresses', normalizeAddress, { what: 'addresses' });
    return { maxChangeOutputs: f.integer('max_change_outputs', 0, 100, 'a number of outputs') ?? 1, ownAddresses: own && new Set(own) };
  },
  compile(spec, site) {
    return {
      id: site.ruleId,
      tag: 'change_must_return',
      judges: PSBT_ONLY,
      scope: () => null,
      evaluate(req) {
        const psbt = psbtOf(req);
        if (psbt === 'not_psbt') return NOT_PSBT;
        if (psbt === 'missing') return NO_PSBT_FACTS;
        let external = 0n;
        let change = 0;
        for (const [i, o] of psbt.outputs.entries()) {
          if (o.isChange) {
            change++;
            if (o.address === null) return { result: 'deny', explanation: `change output ${i} has no address` };
          } else {
            external += o.amount;
            if (o.address !== null && spec.ownAddresses?.has(normalizeAddress(o.address))) {
              return { result: 'deny', explanation: `output ${i} pays this wallet's own address ${printable(o.address, 100)} outside the change path` };
            }
          }
        }
        if (external !== psbt.sentExternally) return { result: 'deny', explanation: `the non-change outputs add up to ${sats(external)} but the transaction declares ${sats(psbt.sentExternally)} sent externally` };
        if (change > spec.maxChangeOutputs) return { result: 'deny', explanation: `${change} change outputs, more than the ${spec.maxChangeOutputs} allowed` };
        return { result: 'pass', explanation: `${change} change output${change === 1 ? '' : 's'} on the change path; ${sats(external)} leaves the wallet` };
      },
    };
  },
};
