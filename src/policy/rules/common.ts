/**
 * What every rule module provides (its field names, a parser over `Fields`, a compiler to a
 * `CompiledRule`), and the pieces several rules share: the rolling-window fields and state
 * scope of the stateful rules, the PSBT applicability test, and how amounts are printed.
 */
import { printable } from '../../core/text.js';
import { Fields, invalid } from '../fields.js';
import { REQUEST_KINDS, type CompiledRule, type PolicyRequest, type PsbtFacts, type RequestKind, type RuleOutcome, type RuleTag } from '../model.js';
import type { WindowGeometry } from '../window.js';

/** Where a compiled rule lives: used for state scopes and messages. */
export interface RuleSite {
  policyId: string;
  /** The rule's explicit id, or `rules[i]`. */
  ruleId: string;
}

export interface RuleType<S> {
  readonly tag: RuleTag;
  /** The fields this rule type accepts besides `id`, `type` and `description`. */
  readonly fields: readonly string[];
  /** Stateful rules must carry an explicit `id`: their state is keyed by it across versions. */
  readonly stateful: boolean;
  parse(f: Fields): S;
  compile(spec: S, site: RuleSite): CompiledRule;
}

/** Which requests share one budget of a stateful rule. */
export const PER = ['key', 'principal', 'key_and_principal', 'policy'] as const;
export type Per = (typeof PER)[number];

export interface WindowSpec extends WindowGeometry {
  windowMs: number;
  per: Per;
}

const DEFAULT_BUCKETS = [24, 20, 12, 10, 8, 6, 5, 4, 3, 2, 1];

export function parseWindow(f: Fields): WindowSpec {
  const windowMs = f.duration('window');
  if (windowMs === undefined) throw invalid(f.at('window'), 'required duration is missing (such as "1h" or "24h")');
  const given = f.integer('buckets', 1, 1440, 'a number of buckets');
  const buckets = given ?? DEFAULT_BUCKETS.find((b) => windowMs % b === 0)!;
  if (windowMs % buckets !== 0) throw invalid(f.at('buckets'), `${buckets} buckets do not divide the window of ${formatDuration(windowMs)} into whole milliseconds`);
  const perRaw = f.string('per') ?? 'key';
  if (!(PER as readonly string[]).includes(perRaw)) throw invalid(f.at('per'), `expected one of ${PER.join(', ')}, got "${printable(perRaw, 40)}"`);
  return { windowMs, buckets, bucketMs: windowMs / buckets, per: perRaw as Per };
}

/** `<policy>/<rule>/key=<id>`: policy and rule ids are restricted to [A-Za-z0-9._-], the rest is URI-encoded. */
export function scopeOf(site: RuleSite, per: Per, req: PolicyRequest): string {
  const base = `${site.policyId}/${site.ruleId}/`;
  switch (per) {
    case 'key':
      return `${base}key=${encodeURIComponent(req.key.id)}`;
    case 'principal':
      return `${base}principal=${encodeURIComponent(req.principal.id)}`;
    case 'key_and_principal':
      return `${base}key=${encodeURIComponent(req.key.id)}&principal=${encodeURIComponent(req.principal.id)}`;
    case 'policy':
      return `${base}policy`;
  }
}

export function perPhrase(per: Per): string {
  return { key: 'for this key', principal: 'for this principal', key_and_principal: 'for this key and principal', policy: 'across the policy' }[per];
}

export function formatDuration(ms: number): string {
  for (const [unit, n] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % n === 0 && (unit !== 'd' || ms >= 2 * n)) return `${ms / n}${unit}`;
  }
  return `${ms}ms`;
}

export function sats(n: bigint): string {
  return `${n} sats`;
}

/**
 * PSBT rules apply to a request that signs a PSBT or carries decoded PSBT facts. A PSBT
 * request without its facts fails closed.
 */
export function psbtOf(req: PolicyRequest): PsbtFacts | 'not_psbt' | 'missing' {
  if (req.psbt) return req.psbt;
  return req.payloadType === 'psbt' ? 'missing' : 'not_psbt';
}

export const NOT_PSBT: RuleOutcome = { result: 'cannot_judge', explanation: 'it judges PSBT signatures only' };
/** Every kind of request: rules that need no payload facts (principals, time, rate). */
export const ALL_KINDS: ReadonlySet<RequestKind> = new Set(REQUEST_KINDS);
export const PSBT_ONLY: ReadonlySet<RequestKind> = new Set<RequestKind>(['psbt']);
export const NO_PSBT_FACTS: RuleOutcome = { result: 'deny', explanation: 'a PSBT signature arrived without its decoded outputs and amounts' };

/** Bech32 addresses are case-insensitive (BIP173): compare them in lower case; base58 as written. */
export function normalizeAddress(a: string): string {
  return /^(bc|tb|bcrt)1/i.test(a) ? a.toLowerCase() : a;
}

/** Exact principal ids, or prefixes written with one trailing `*` (`token:ops-*`; `*` alone matches everyone). */
export class PrincipalPatterns {
  private readonly exact = new Set<string>();
  private readonly prefixes: string[] = [];

  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      if (p.endsWith('*')) this.prefixes.push(p.slice(0, -1));
      else this.exact.add(p);
    }
  }

  static check(s: string, path: string): string {
    if (s.indexOf('*') !== -1 && s.indexOf('*') !== s.length - 1) throw invalid(path, 'a principal pattern is an exact id or a prefix ending in one trailing * (such as "token:ops-*")');
    return s;
  }

  matches(id: string): boolean {
    if (this.exact.has(id)) return true;
    for (const p of this.prefixes) if (id.startsWith(p)) return true;
    return false;
  }
}
