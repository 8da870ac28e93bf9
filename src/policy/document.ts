/**
 * Policy documents: the TOML or JSON an operator uploads, validated into a `PolicyDocument`.
 * Every field is read through `Fields`, so an unknown field, a wrong type or an out-of-range
 * value is refused with CustosError('invalid_policy', '<exact path>: <what was expected>'),
 * paths written like `rules[2].limit` (indices from 0).
 *
 *   id = "treasury"                          # [A-Za-z0-9._-], at most 64; the version is the PolicySet's
 *   description = "..."                      # optional
 *   [applies_to]                             # at least one of:
 *   keys = ["treasury-hot"]                  #   key ids or labels
 *   tags = ["treasury"]                      #   key tags (the key's `tags` attribute)
 *   all_keys = true                          #   every key
 *   other_payloads = "deny"                  # optional: what rules do with requests they cannot judge
 *   [[rules]]                                # 1 to 1000 rules
 *   id = "daily"                             # optional, unique; required for velocity and rate_limit
 *   type = "velocity"                        # the rule type, which is also its stable tag
 *   other_payloads = "allow"                 # optional, overrides the document's for this rule
 *   ...                                      # the rule type's own fields (see rules/*.ts)
 *
 * Amounts are satoshis: TOML integers, or in JSON safe-integer numbers or decimal strings
 * ("2100000000000000"); a decimal string works in TOML too. Never floats.
 */
import { parse as parseToml, TomlError } from 'smol-toml';
import { CustosError } from '../core/errors.js';
import { Fields, invalid, isTable, POLICY_LIMITS } from './fields.js';
import { RULE_TAGS, type RuleTag } from './model.js';
import { RULE_TYPES } from './rules/index.js';

export type PolicyFormat = 'toml' | 'json';

export interface PolicyRule {
  index: number;
  /** The author's id; stateful rules always have one. */
  id: string | undefined;
  type: RuleTag;
  description: string | undefined;
  /** The rule type's validated fields (see the rule module's `*Spec`). */
  spec: unknown;
  /** Set on the rule itself; else the document's `other_payloads` applies. */
  otherPayloads: OtherPayloads | undefined;
}

/**
 * What a rule does with a request it has no facts for (an amount limit asked about raw
 * bytes): `deny`, the default, so that a document fails closed; `allow` only when written.
 */
export type OtherPayloads = 'deny' | 'allow';

export interface PolicyDocument {
  id: string;
  description: string | undefined;
  appliesTo: { keys: string[]; tags: string[]; allKeys: boolean };
  rules: PolicyRule[];
  otherPayloads: OtherPayloads;
}

export const POLICY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ID_WHAT = 'an id of letters, digits, ".", "_" or "-" (at most 64, starting with a letter or digit)';

/** `json` when the text starts with `{`, else `toml`. */
export function detectFormat(source: string): PolicyFormat {
  return source.trimStart().startsWith('{') ? 'json' : 'toml';
}

/** Parses and validates a policy document. Throws only CustosError('invalid_policy'). */
export function parsePolicy(source: string, format: PolicyFormat = detectFormat(source)): PolicyDocument {
  if (typeof source !== 'string') throw new CustosError('invalid_policy', 'policy document: expected text');
  const bytes = Buffer.byteLength(source, 'utf8');
  if (bytes > POLICY_LIMITS.documentBytes) throw new CustosError('invalid_policy', `policy document: ${bytes} bytes, more than the limit of ${POLICY_LIMITS.documentBytes}`);
  let value: unknown;
  if (format === 'json') {
    try {
      value = JSON.parse(source);
    } catch (e) {
      throw new CustosError('invalid_policy', `policy document is not valid JSON: ${(e as Error).message}`);
    }
  } else {
    try {
      value = parseToml(source, { integersAsBigInt: true, maxDepth: 16 });
    } catch (e) {
      const where = e instanceof TomlError ? ` (line ${e.line}, column ${e.column})` : '';
      const first = String((e as Error)?.message ?? e).split('\n')[0]!.replace(/^Invalid TOML document: /, '');
      throw new CustosError('invalid_policy', `policy document is not valid TOML${where}: ${first}`);
    }
  }
  return validatePolicy(value);
}

/** Validates an already parsed document (a TOML table or JSON object). */
export function validatePolicy(value: unknown): PolicyDocument {
  if (!isTable(value)) throw new CustosError('invalid_policy', 'policy document: expected a table (TOML) or an object (JSON) at the top level');
  const top = new Fields('', value, ['id', 'description', 'applies_to', 'rules', 'other_payloads']);
  const id = top.requiredString('id', { pattern: POLICY_ID, what: ID_WHAT });
  const description = top.string('description');
  const otherPayloads = otherPayloadsOf(top) ?? 'deny';

  const at = top.table('applies_to', ['keys', 'tags', 'all_keys']);
  if (!at) throw invalid('applies_to', 'required table is missing (name keys, tags, or all_keys = true)');
  at.needOne('keys', 'tags', 'all_keys');
  const allKeys = at.bool('all_keys') ?? false;
  const keys = at.list('keys', undefined, { what: 'key ids or labels' }) ?? [];
  const tags = at.list('tags', undefined, { what: 'key tags' }) ?? [];
  if (!allKeys && keys.length === 0 && tags.length === 0) throw invalid('applies_to.all_keys', 'is false and no keys or tags are named, so the policy would apply to nothing');

  const raw = top.raw('rules');
  if (raw === undefined) throw invalid('rules', 'required list of rules is missing');
  if (!Array.isArray(raw)) throw invalid('rules', 'expected a list of rule tables ([[rules]] in TOML)');
  if (raw.length === 0) throw invalid('rules', 'expected at least one rule');
  if (raw.length > POLICY_LIMITS.rules) throw invalid('rules', `too many rules: ${raw.length} (at most ${POLICY_LIMITS.rules})`);

  const seen = new Map<string, number>();
  const rules = raw.map((r, index) => {
    const path = `rules[${index}]`;
    if (!isTable(r)) throw invalid(path, 'expected a rule table');
    const t = r.type;
    if (t === undefined) throw invalid(`${path}.type`, `required rule type is missing (expected one of: ${RULE_TAGS.join(', ')})`);
    if (typeof t !== 'string' || !(RULE_TAGS as readonly string[]).includes(t)) {
      throw invalid(`${path}.type`, `unknown rule type${typeof t === 'string' ? ` "${t.slice(0, 40).replace(/[^\x20-\x7e]/g, '?')}"` : ''} (expected one of: ${RULE_TAGS.join(', ')})`);
    }
    const kind = RULE_TYPES[t as RuleTag];
    const f = new Fields(path, r, ['id', 'type', 'description', 'other_payloads', ...kind.fields]);
    const ruleId = f.string('id', { pattern: POLICY_ID, what: ID_WHAT });
    if (ruleId !== undefined) {
      const before = seen.get(ruleId);
      if (before !== undefined) throw invalid(`${path}.id`, `"${ruleId}" is already the id of rules[${before}]`);
      seen.set(ruleId, index);
    } else if (kind.stateful) {
      throw invalid(`${path}.id`, `required for a ${t} rule: its budget is kept under this id, across versions of the policy`);
    }
    const ruleDescription = f.string('description');
    const ruleOther = otherPayloadsOf(f);
    return { index, id: ruleId, type: t as RuleTag, description: ruleDescription, spec: kind.parse(f), otherPayloads: ruleOther };
  });
  return { id, description, appliesTo: { keys, tags, allKeys }, rules, otherPayloads };
}

function otherPayloadsOf(f: Fields): OtherPayloads | undefined {
  const v = f.string('other_payloads');
  if (v === undefined || v === 'deny' || v === 'allow') return v;
  throw invalid(f.at('other_payloads'), 'expected "deny" (the default: a rule denies requests it cannot judge) or "allow"');
}
