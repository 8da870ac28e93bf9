/**
 * `payload_format`: for the payload types it names (default `raw`), the message must have an
 * allowed declared format (the front end's `format` fact, such as `bip322` or `nostr-event`),
 * start with one of the allowed byte prefixes, and have a length within bounds. Every
 * constraint given must hold. A byte constraint on a request without its bytes fails closed.
 * Tag `payload_format`.
 */
import { printable } from '../../core/text.js';
import { invalid } from '../fields.js';
import type { PayloadType } from '../model.js';
import type { RuleType } from './common.js';
import type { RequestKind } from '../model.js';

export interface PayloadFormatSpec {
  payloadTypes: Set<PayloadType>;
  formats?: Set<string>;
  prefixes?: Uint8Array[];
  minLength?: number;
  maxLength?: number;
}

const HEX = /^([0-9a-f]{2}){1,64}$/;

function startsWith(b: Uint8Array, p: Uint8Array): boolean {
  if (b.length < p.length) return false;
  for (let i = 0; i < p.length; i++) if (b[i] !== p[i]) return false;
  return true;
}

export const payloadFormatRule: RuleType<PayloadFormatSpec> = {
  tag: 'payload_format',
  fields: ['payload_types', 'formats', 'prefixes_hex', 'min_length', 'max_length'],
  stateful: false,
  parse(f) {
    f.needOne('formats', 'prefixes_hex', 'min_length', 'max_length');
    const formats = f.list('formats', undefined, { what: 'format names' });
    const prefixes = f.list('prefixes_hex', (s) => Uint8Array.from(Buffer.from(s, 'hex')), { pattern: HEX, what: 'lower-case hex byte prefixes (at most 64 bytes)' });
    const minLength = f.integer('min_length', 0, 1 << 30, 'a length in bytes');
    const maxLength = f.integer('max_length', 0, 1 << 30, 'a length in bytes');
    if (minLength !== undefined && maxLength !== undefined && minLength > maxLength) throw invalid(f.at('max_length'), `is less than min_length (${minLength})`);
    return { payloadTypes: f.payloadTypes('payload_types') ?? new Set(['raw']), formats: formats && new Set(formats), prefixes, minLength, maxLength };
  },
  compile(spec, site) {
    const types = [...spec.payloadTypes].join(', ');
    const formats = spec.formats && [...spec.formats].join(', ');
    const needsBytes = spec.prefixes !== undefined || spec.minLength !== undefined || spec.maxLength !== undefined;
    return {
      id: site.ruleId,
      tag: 'payload_format',
      judges: new Set<RequestKind>(spec.payloadTypes),
      scope: () => null,
      evaluate(req) {
        if (req.operation !== 'sign' || req.payloadType === null || !spec.payloadTypes.has(req.payloadType)) return { result: 'cannot_judge', explanation: `it judges ${types} payloads only` };
        if (spec.formats) {
          const f = req.facts.format;
          if (f === undefined || !spec.formats.has(f)) return { result: 'deny', explanation: `the message format ${f === undefined ? 'is not declared' : `"${printable(f, 40)}" is not allowed`} (allowed: ${formats})` };
        }
        if (needsBytes) {
          const b = req.payload;
          if (b === undefined) return { result: 'deny', explanation: 'the message bytes were not given, so their prefix and length cannot be checked' };
          if (spec.minLength !== undefined && b.length < spec.minLength) return { result: 'deny', explanation: `the message is ${b.length} bytes, shorter than ${spec.minLength}` };
          if (spec.maxLength !== undefined && b.length > spec.maxLength) return { result: 'deny', explanation: `the message is ${b.length} bytes, longer than ${spec.maxLength}` };
          if (spec.prefixes && !spec.prefixes.some((p) => startsWith(b, p))) return { result: 'deny', explanation: 'the message does not start with an allowed prefix' };
        }
        return { result: 'pass', explanation: `the ${req.payloadType} message has an allowed format` };
      },
    };
  },
};
