/**
 * `operations`: which operations (sign, export) and, for signatures, which payload types
 * (raw, digest, psbt, ssh, consensus) the key may be used for. Tag `operations`.
 */
import type { Operation, PayloadType } from '../model.js';
import { ALL_KINDS, type RuleType } from './common.js';

export interface OperationsSpec {
  operations?: Set<Operation>;
  payloadTypes?: Set<PayloadType>;
}

export const operationsRule: RuleType<OperationsSpec> = {
  tag: 'operations',
  fields: ['operations', 'payload_types'],
  stateful: false,
  parse(f) {
    f.needOne('operations', 'payload_types');
    return { operations: f.operations('operations'), payloadTypes: f.payloadTypes('payload_types') };
  },
  compile(spec, site) {
    const ops = spec.operations && [...spec.operations].join(', ');
    const types = spec.payloadTypes && [...spec.payloadTypes].join(', ');
    return {
      id: site.ruleId,
      tag: 'operations',
      judges: ALL_KINDS,
      scope: () => null,
      evaluate(req) {
        if (spec.operations && !spec.operations.has(req.operation)) return { result: 'deny', explanation: `operation ${req.operation} is not allowed (allowed: ${ops})` };
        if (req.operation === 'sign' && spec.payloadTypes) {
          if (req.payloadType === null || !spec.payloadTypes.has(req.payloadType)) return { result: 'deny', explanation: `signing a ${req.payloadType ?? 'unknown'} payload is not allowed (allowed: ${types})` };
          return { result: 'pass', explanation: `${req.operation} of a ${req.payloadType} payload is allowed` };
        }
        return { result: 'pass', explanation: `operation ${req.operation} is allowed` };
      },
    };
  },
};
