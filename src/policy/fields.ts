/**
 * The one reader every policy document field goes through: it knows the path of what it reads
 * (`rules[2].limit`), rejects fields it was not told about, and turns each malformed value
 * into a CustosError('invalid_policy') whose sentence names that exact path. Rules never
 * inspect the parsed TOML/JSON themselves.
 */
import { CustosError } from '../core/errors.js';
import { printable } from '../core/text.js';
import { OPERATIONS, PAYLOAD_TYPES, type Operation, type PayloadType } from './model.js';

/** Size limits, checked before and while parsing. */
export const POLICY_LIMITS = {
  /** Bytes of TOML or JSON source. */
  documentBytes: 1024 * 1024,
  rules: 1000,
  /** Entries in any one list (addresses, principals, approvers). */
  listEntries: 10_000,
  /** Characters in any one string. */
  stringChars: 256,
} as const;

/** 21 million BTC: no amount in a policy may exceed the supply. */
export const MAX_SATS = 2_100_000_000_000_000n;

export function invalid(path: string, message: string): CustosError {
  return new CustosError('invalid_policy', `${path}: ${message}`);
}

export type Table = Record<string, unknown>;

export function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Date) return 'a date';
  if (typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v))) return `the integer ${String(v)}`;
  if (typeof v === 'number') return `the number ${String(v)}`;
  if (typeof v === 'string') return `the string "${printable(v, 40)}"`;
  if (typeof v === 'boolean') return String(v);
  return 'a table';
}

const DURATION = /^([1-9][0-9]{0,6})(s|m|h|d)$/;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const MAX_DURATION_MS = 366 * 86_400_000;

/** A table of fields at `path`; construction rejects any field not in `allowed`. */
export class Fields {
  constructor(
    readonly path: string,
    private readonly data: Table,
    allowed: readonly string[],
  ) {
    for (const k of Object.keys(data)) {
      if (!allowed.includes(k)) throw invalid(this.at(k), `unknown field (expected one of: ${allowed.join(', ')})`);
    }
  }

  static of(path: string, v: unknown, allowed: readonly string[]): Fields {
    if (!isTable(v)) throw invalid(path, `expected a table, got ${typeName(v)}`);
    return new Fields(path, v, allowed);
  }

  at(name: string): string {
    return this.path ? `${this.path}.${name}` : name;
  }

  has(name: string): boolean {
    return Object.hasOwn(this.data, name) && this.data[name] !== undefined;
  }

  raw(name: string): unknown {
    return Object.hasOwn(this.data, name) ? this.data[name] : undefined;
  }

  /** Throws unless at least one of `names` is present. */
  needOne(...names: string[]): void {
    if (!names.some((n) => this.has(n))) throw invalid(this.path, `expected at least one of ${names.join(', ')}`);
  }

  string(name: string, opts: { pattern?: RegExp; what?: string } = {}): string | undefined {
    if (!this.has(name)) return undefined;
    return checkString(this.at(name), this.raw(name), opts);
  }

  requiredString(name: string, opts: { pattern?: RegExp; what?: string } = {}): string {
    const s = this.string(name, opts);
    if (s === undefined) throw invalid(this.at(name), `required field is missing (expected ${opts.what ?? 'a string'})`);
    return s;
  }

  bool(name: string): boolean | undefined {
    if (!this.has(name)) return undefined;
    const v = this.raw(name);
    if (typeof v !== 'boolean') throw invalid(this.at(name), `expected true or false, got ${typeName(v)}`);
    return v;
  }

  /** A list of strings; `each` may check and transform every entry. Empty lists are refused. */
  list<T = string>(name: string, each?: (s: string, path: string) => T, opts: { pattern?: RegExp; what?: string } = {}): T[] | undefined {
    if (!this.has(name)) return undefined;
    const path = this.at(name);
    const v = this.raw(name);
    if (!Array.isArray(v)) throw invalid(path, `expected a list of ${opts.what ?? 'strings'}, got ${typeName(v)}`);
    if (v.length === 0) throw invalid(path, `expected a non-empty list of ${opts.what ?? 'strings'} (omit the field instead)`);
    if (v.length > POLICY_LIMITS.listEntries) throw invalid(path, `too many entries: ${v.length} (at most ${POLICY_LIMITS.listEntries})`);
    return v.map((x, i) => {
      const s = checkString(`${path}[${i}]`, x, opts);
      return each ? each(s, `${path}[${i}]`) : (s as T);
    });
  }

  /** An amount in satoshis: TOML integer, JSON safe integer, or a decimal string. */
  amount(name: string, opts: { allowZero?: boolean } = {}): bigint | undefined {
    if (!this.has(name)) return undefined;
    const path = this.at(name);
    const v = this.raw(name);
    const what = opts.allowZero ? 'a non-negative integer amount in satoshis' : 'a positive integer amount in satoshis';
    let n: bigint;
    if (typeof v === 'bigint') n = v;
    else if (typeof v === 'number' && Number.isSafeInteger(v)) n = BigInt(v);
    else if (typeof v === 'string' && /^[0-9]{1,19}$/.test(v)) n = BigInt(v);
    else throw invalid(path, `expected ${what}`);
    if (n < 0n || (n === 0n && !opts.allowZero)) throw invalid(path, `expected ${what}`);
    if (n > MAX_SATS) throw invalid(path, `expected ${what}, at most ${MAX_SATS} (21 million BTC)`);
    return n;
  }

  /** A whole number in [min, max]. */
  integer(name: string, min: number, max: number, what = 'an integer'): number | undefined {
    if (!this.has(name)) return undefined;
    const v = this.raw(name);
    const n = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : null;
    if (n === null || n < BigInt(min) || n > BigInt(max)) throw invalid(this.at(name), `expected ${what} from ${min} to ${max}, got ${typeName(v)}`);
    return Number(n);
  }

  /** A duration such as `90s`, `15m`, `24h`, `7d`, in milliseconds. */
  duration(name: string): number | undefined {
    if (!this.has(name)) return undefined;
    const path = this.at(name);
    const v = this.raw(name);
    const m = typeof v === 'string' ? DURATION.exec(v) : null;
    if (!m) throw invalid(path, `expected a duration such as "90s", "15m", "24h" or "7d", got ${typeName(v)}`);
    const ms = Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
    if (ms > MAX_DURATION_MS) throw invalid(path, 'expected a duration of at most 366 days');
    return ms;
  }

  table(name: string, allowed: readonly string[]): Fields | undefined {
    if (!this.has(name)) return undefined;
    return Fields.of(this.at(name), this.raw(name), allowed);
  }

  operations(name: string): Set<Operation> | undefined {
    const l = this.list(name, (s, p) => {
      if (!(OPERATIONS as readonly string[]).includes(s)) throw invalid(p, `unknown operation "${printable(s, 40)}" (expected one of: ${OPERATIONS.join(', ')})`);
      return s as Operation;
    }, { what: 'operations' });
    return l && new Set(l);
  }

  payloadTypes(name: string): Set<PayloadType> | undefined {
    const l = this.list(name, (s, p) => {
      if (!(PAYLOAD_TYPES as readonly string[]).includes(s)) throw invalid(p, `unknown payload type "${printable(s, 40)}" (expected one of: ${PAYLOAD_TYPES.join(', ')})`);
      return s as PayloadType;
    }, { what: 'payload types' });
    return l && new Set(l);
  }
}

function checkString(path: string, v: unknown, opts: { pattern?: RegExp; what?: string }): string {
  if (typeof v !== 'string') throw invalid(path, `expected ${opts.what ?? 'a string'}, got ${typeName(v)}`);
  if (v.length === 0) throw invalid(path, `expected ${opts.what ?? 'a string'}, got an empty string`);
  if (v.length > POLICY_LIMITS.stringChars) throw invalid(path, `string too long: ${v.length} characters (at most ${POLICY_LIMITS.stringChars})`);
  if (opts.pattern && !opts.pattern.test(v)) throw invalid(path, `expected ${opts.what ?? 'a string'}, got "${printable(v, 40)}"`);
  return v;
}
