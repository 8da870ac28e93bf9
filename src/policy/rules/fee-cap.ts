/**
 * `fee_cap`: the fee may not exceed `max_fee` satoshis, `max_fee_rate` sat/vB (needs the
 * decoder's `vsize`; refused without it), or `max_fee_bps` basis points of the total of all
 * outputs (the total, not only what leaves, so a consolidation cannot burn its funds in fees).
 * Integer arithmetic throughout. Tag `fee_cap`.
 */
import { PSBT_ONLY, NO_PSBT_FACTS, NOT_PSBT, psbtOf, sats, type RuleType } from './common.js';

export interface FeeCapSpec {
  maxFee?: bigint;
  maxFeeRate?: number;
  maxFeeBps?: number;
}

export const feeCapRule: RuleType<FeeCapSpec> = {
  tag: 'fee_cap',
  fields: ['max_fee', 'max_fee_rate', 'max_fee_bps'],
  stateful: false,
  parse(f) {
    f.needOne('max_fee', 'max_fee_rate', 'max_fee_bps');
    return { maxFee: f.amount('max_fee'), maxFeeRate: f.integer('max_fee_rate', 1, 1_000_000, 'a fee rate in sat/vB'), maxFeeBps: f.integer('max_fee_bps', 1, 10_000, 'basis points') };
  },
  compile(spec, site) {
    return {
      id: site.ruleId,
      tag: 'fee_cap',
      judges: PSBT_ONLY,
      scope: () => null,
      evaluate(req) {
        const psbt = psbtOf(req);
        if (psbt === 'not_psbt') return NOT_PSBT;
        if (psbt === 'missing') return NO_PSBT_FACTS;
        const fee = psbt.fee;
        if (spec.maxFee !== undefined && fee > spec.maxFee) return { result: 'deny', explanation: `the fee of ${sats(fee)} is over the cap of ${sats(spec.maxFee)}` };
        if (spec.maxFeeRate !== undefined) {
          const vsize = psbt.vsize;
          if (vsize === undefined || vsize <= 0) return { result: 'deny', explanation: 'the fee rate cannot be checked: the transaction size is unknown' };
          if (fee > BigInt(spec.maxFeeRate) * BigInt(vsize)) return { result: 'deny', explanation: `the fee rate of ${fee} sats / ${vsize} vB is over ${spec.maxFeeRate} sat/vB` };
        }
        if (spec.maxFeeBps !== undefined) {
          let total = 0n;
          for (const o of psbt.outputs) total += o.amount;
          if (fee * 10_000n > total * BigInt(spec.maxFeeBps)) return { result: 'deny', explanation: `the fee of ${sats(fee)} is over ${spec.maxFeeBps} basis points of the ${sats(total)} the outputs carry` };
        }
        return { result: 'pass', explanation: `the fee of ${sats(fee)} is within the cap` };
      },
    };
  },
};
