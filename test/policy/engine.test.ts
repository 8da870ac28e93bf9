import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { CustosError } from '../../src/core/errors.js';
import { parsePolicy, validatePolicy } from '../../src/policy/document.js';
import { compilePolicy, evaluate, explain, policyKeyOf, stateScopes } from '../../src/policy/engine.js';
import type { PolicyRequest } from '../../src/policy/model.js';
import { PolicySet } from '../../src/policy/policy-set.js';
import { policyOf, psbtRequest, request, StateMap, T0 } from './helpers.js';

const EXAMPLE = readFileSync(new URL('../../examples/policy-treasury.toml', import.meta.url), 'utf8');
const none = () => undefined;

test('deny wins over approval, approval over allow; every rule is still in the trace', () => {
  const rules = (deny: boolean) =>
    '[[rules]]\ntype = "approval"\napprovers = ["token:alice"]\nrequired = 1\n' +
    `[[rules]]\nid = "ops"\ntype = "operations"\noperations = ["${deny ? 'export' : 'sign'}"]\n` +
    '[[rules]]\ntype = "principals"\ndeny = ["token:nobody"]\n';
  const d = evaluate(policyOf(rules(true)), request(), none);
  assert.deepEqual(d.decision, { kind: 'deny', tag: 'operations', reason: 'Policy p v1, rule ops: operation sign is not allowed (allowed: export).' });
  assert.deepEqual(d.trace.map((t) => [t.rule, t.tag, t.result]), [['rules[0]', 'approval', 'approval'], ['ops', 'operations', 'deny'], ['rules[2]', 'principals', 'pass']]);
  assert.equal(evaluate(policyOf(rules(false)), request(), none).decision.kind, 'needs_approval');
  assert.deepEqual(evaluate(policyOf('[[rules]]\ntype = "principals"\ndeny = ["x"]\n'), request(), none).decision, { kind: 'allow' });
  assert.deepEqual(evaluate([], request(), none), { decision: { kind: 'allow' }, trace: [], stateUpdates: [] });
});

test('the first denial in order gives the tag, across several policies', () => {
  const a = policyOf('[[rules]]\ntype = "amount_limit"\nlimit = 10\n', 'a');
  const b = policyOf('[[rules]]\ntype = "fee_cap"\nmax_fee = 1\n', 'b');
  const e = evaluate([b, a], psbtRequest([50n]), none);
  assert.equal(e.decision.kind === 'deny' && e.decision.tag, 'fee_cap');
  assert.deepEqual(e.trace.map((t) => `${t.policy}:${t.result}`), ['b:deny', 'a:deny']);
});

test('several approval rules: union of approvers, largest required; each rule still checks its own approvers', () => {
  const p = policyOf(
    '[[rules]]\ntype = "approval"\napprovers = ["token:alice", "token:bob", "token:carol"]\nrequired = 2\n' +
      '[[rules]]\ntype = "approval"\napprovers = ["token:dave", "token:bob"]\nrequired = 1\nwhen = { payload_types = ["raw"] }\n',
  );
  assert.deepEqual(evaluate(p, request(), none).decision, { kind: 'needs_approval', approvers: ['token:alice', 'token:bob', 'token:carol', 'token:dave'], required: 2 });
  // Two of the union, but the second rule has none of its own: still pending, on that rule only.
  const partial = evaluate(p, request({ approvedBy: ['token:alice', 'token:carol'] }), none);
  assert.deepEqual(partial.decision, { kind: 'needs_approval', approvers: ['token:dave', 'token:bob'], required: 1 });
  assert.deepEqual(partial.trace.map((t) => t.result), ['pass', 'approval']);
  assert.deepEqual(evaluate(p, request({ approvedBy: ['token:alice', 'token:bob'] }), none).decision, { kind: 'allow' });
  // The condition does not hold for a digest: only the first rule asks.
  assert.deepEqual(evaluate(p, request({ payloadType: 'digest' }), none).decision, { kind: 'needs_approval', approvers: ['token:alice', 'token:bob', 'token:carol'], required: 2 });
});

test('state: updates only with an allow, each with the state it was computed from; an approval spends only when re-evaluated as allowed', () => {
  const p = policyOf(
    '[[rules]]\nid = "v"\ntype = "velocity"\nlimit = 1000\nwindow = "24h"\n' +
      '[[rules]]\nid = "r"\ntype = "rate_limit"\nlimit = 10\nwindow = "1h"\nper = "principal"\n' +
      '[[rules]]\ntype = "approval"\napprovers = ["token:alice"]\nrequired = 1\nwhen = { amount_above = 500 }\n',
  );
  const s = new StateMap();
  const first = s.run(p, psbtRequest([300n]));
  assert.equal(first.decision.kind, 'allow');
  assert.deepEqual(first.stateUpdates.map((u) => [u.scope, u.previous]), [['p/v/key=k1', null], ['p/r/principal=token%3Abot', null]]);
  const pending = s.run(p, psbtRequest([600n]));
  assert.equal(pending.decision.kind, 'needs_approval');
  assert.deepEqual(pending.stateUpdates, []);
  // Meanwhile another payment spends budget; the approved one no longer fits and spends nothing.
  assert.equal(s.run(p, psbtRequest([200n])).decision.kind, 'allow');
  const approved = s.run(p, psbtRequest([600n], { approvedBy: ['token:alice'] }));
  assert.equal(approved.decision.kind, 'deny');
  const before = structuredClone(s.map.get('p/v/key=k1'));
  const ok = s.run(p, psbtRequest([500n], { approvedBy: ['token:alice'] }));
  assert.equal(ok.decision.kind, 'allow');
  assert.deepEqual(ok.stateUpdates[0]!.previous, before);
  assert.match(explain(ok), /p\/v\/key=k1: 500 -> 1000/);
  assert.deepEqual(stateScopes(p, psbtRequest([1n])), ['p/v/key=k1', 'p/r/principal=token%3Abot']);
  assert.deepEqual(stateScopes(p, request()), ['p/r/principal=token%3Abot']);
});

test('explain prints the decision and every rule, in order, with its verdict', () => {
  const set = new PolicySet();
  set.upload(EXAMPLE, { at: T0 });
  const key = { id: 'k1', label: 'treasury-hot', algorithm: 'secp256k1' as const, tags: [] };
  const e = set.evaluate(psbtRequest([2_000_000n], { key, principal: { id: 'token:treasury-bot', kind: 'token' } }), none);
  const text = explain(e);
  assert.match(text, /^Decision: deny \(policy_denied:destinations\)\n  Policy treasury v1, rule counterparties: output 0 pays ext0, which is not on the allow list\.\n/);
  assert.equal(text.split('\n').filter((l) => /^ {2}\[(pass|deny|approval|not_applicable)\]/.test(l)).length, 10);
  assert.match(text, /\[approval\] +treasury v1 officers +approval: needs 2 of token:alice, token:bob, token:carol for output 0 pays a destination outside the approved list/);
});

test('PolicySet: versions per id, history kept, resolution by key id, label, tag and all_keys, retirement, restore', () => {
  const set = new PolicySet();
  const doc = (id: string, applies: string, limit = 10) => `id = "${id}"\n[applies_to]\n${applies}\n[[rules]]\ntype = "amount_limit"\nlimit = ${limit}\n`;
  const v1 = set.upload(doc('by-label', 'keys = ["hot"]'), { at: T0 });
  set.upload(doc('by-id', 'keys = ["k9"]'), { at: T0 });
  set.upload(doc('by-tag', 'tags = ["treasury"]'), { at: T0 });
  set.upload(JSON.stringify({ id: 'global', applies_to: { all_keys: true }, rules: [{ type: 'amount_limit', limit: 5 }] }), { at: T0 });
  const v2 = set.upload(doc('by-label', 'keys = ["hot"]', 20), { at: new Date(T0.getTime() + 1000) });
  assert.deepEqual([v1.version, v2.version], [1, 2]);
  assert.equal(v2.format, 'toml');
  assert.match(v2.sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(set.history('by-label').map((v) => v.version), [1, 2]);
  const key = { id: 'k1', label: 'hot', algorithm: 'secp256k1' as const, tags: ['treasury'] };
  assert.deepEqual(set.forKey(key).map((p) => `${p.id}@${p.version}`), ['by-label@2', 'by-tag@1', 'global@1']);
  assert.deepEqual(set.forKey({ id: 'k9', label: 'cold', tags: [] }).map((p) => p.id), ['by-id', 'global']);
  set.retire('global', T0);
  assert.deepEqual(set.forKey({ id: 'k9', label: 'cold', tags: [] }).map((p) => p.id), ['by-id']);
  assert.deepEqual(set.history('global').map((v) => [v.version, v.retired]), [[1, false], [2, true]]);
  assert.equal(set.upload(doc('global', 'all_keys = true'), { at: T0 }).version, 3);

  const all = set.ids().flatMap((id) => [...set.history(id)]);
  const again = PolicySet.restore(all.reverse());
  assert.deepEqual(again.forKey(key).map((p) => `${p.id}@${p.version}`), set.forKey(key).map((p) => `${p.id}@${p.version}`));
  assert.throws(() => again.apply({ ...v1, version: 7 }), (e: unknown) => e instanceof CustosError && e.code === 'invalid_policy' && e.message === 'Policy by-label: version 7 does not follow version 2.');
  assert.throws(() => set.retire('missing', T0), (e: unknown) => e instanceof CustosError && e.code === 'not_found');
  assert.throws(() => set.upload('id = "x"', { at: T0 }), (e: unknown) => e instanceof CustosError && e.code === 'invalid_policy');
  assert.deepEqual(set.history('x'), []);
});

test("policyKeyOf reads the key's comma-separated tags attribute", () => {
  const k = policyKeyOf({ id: 'k', label: 'l', algorithm: 'ed25519', attributes: { tags: ' treasury, hot ,,' } });
  assert.deepEqual(k.tags, ['treasury', 'hot']);
  assert.deepEqual(policyKeyOf({ id: 'k', label: 'l', algorithm: 'ed25519', attributes: {} }).tags, []);
});

test('1,000 rules compile once and evaluate with a full trace', () => {
  const rules = Array.from({ length: 1000 }, (_, i) => `[[rules]]\nid = "r${i}"\ntype = "${i % 2 ? 'principals' : 'destinations'}"\n${i % 2 ? 'allow = ["token:*"]' : 'deny = ["evil"]'}\n`).join('');
  const p = policyOf(rules);
  const e = evaluate(p, psbtRequest([1n]), none);
  assert.equal(e.trace.length, 1000);
  assert.equal(e.decision.kind, 'allow');
});

// ---- robustness: whatever the document or request, only CustosError is thrown ----

const word = fc.constantFrom('sign', 'export', 'raw', 'psbt', 'digest', 'ssh', 'consensus', 'key', 'principal', 'policy', 'mon', 'sun', '09:00', '24:00', '1h', '24h', '0s', 'UTC', 'Europe/Paris', 'token:*', 'bc1qabc', '1901', 'x', '');
const scalar = fc.oneof(word, fc.integer({ min: -5, max: 3000 }), fc.bigInt({ min: -5n, max: 3_000_000_000_000_000n }), fc.boolean(), fc.double(), fc.constant(null), fc.string({ maxLength: 8 }));
const value = fc.oneof(scalar, fc.array(scalar, { maxLength: 4 }), fc.dictionary(fc.constantFrom('amount_above', 'destination_not_in', 'operations', 'x'), scalar, { maxKeys: 2 }));
const FIELDS = ['id', 'type', 'description', 'operations', 'payload_types', 'allow', 'deny', 'days', 'from', 'to', 'timezone', 'limit', 'window', 'buckets', 'per', 'allow_unaddressed', 'max_fee', 'max_fee_rate', 'max_fee_bps', 'max_change_outputs', 'own_addresses', 'formats', 'prefixes_hex', 'min_length', 'max_length', 'approvers', 'required', 'when', 'bogus'];
const TYPES = ['operations', 'principals', 'time_window', 'rate_limit', 'amount_limit', 'velocity', 'destinations', 'fee_cap', 'change_must_return', 'payload_format', 'approval', 'nope'];
const rule = fc.record({ type: fc.constantFrom(...TYPES), rest: fc.dictionary(fc.constantFrom(...FIELDS), value, { maxKeys: 5 }) }).map(({ type, rest }) => ({ ...rest, type }));
const documentValue = fc.record({
  id: fc.oneof(fc.constant('p'), scalar),
  applies_to: fc.oneof(fc.constant({ all_keys: true }), fc.dictionary(fc.constantFrom('keys', 'tags', 'all_keys', 'x'), value, { maxKeys: 2 })),
  rules: fc.oneof(fc.array(rule, { maxLength: 5 }), scalar),
}, { requiredKeys: [] });

/** Documents built from valid rules of every type, with random parameters. */
const amount = fc.bigInt({ min: 1n, max: 10n ** 9n });
const addrs = fc.array(fc.constantFrom('ext0', 'ext1', 'bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq', 'evil', 'mine'), { minLength: 1, maxLength: 3 });
const sub = <T>(xs: readonly T[]) => fc.subarray([...xs], { minLength: 1 });
const validRule = fc.oneof(
  fc.record({ type: fc.constant('operations'), operations: sub(['sign', 'export']), payload_types: sub(['raw', 'digest', 'psbt', 'ssh', 'consensus']) }, { requiredKeys: ['type', 'operations'] }),
  fc.record({ type: fc.constant('principals'), allow: fc.array(fc.constantFrom('token:bot', 'token:*', '*', 'token:alice'), { minLength: 1 }) }),
  fc.record({ type: fc.constant('time_window'), days: sub(['mon', 'tue', 'sat']), from: fc.constantFrom('00:00', '09:00', '22:00'), to: fc.constantFrom('06:00', '17:00', '24:00'), timezone: fc.constantFrom('UTC', 'Asia/Tokyo') }),
  fc.record({ type: fc.constant('rate_limit'), limit: fc.integer({ min: 1, max: 3 }), window: fc.constantFrom('1m', '1h'), per: fc.constantFrom('key', 'principal', 'key_and_principal', 'policy') }),
  fc.record({ type: fc.constant('amount_limit'), limit: amount }),
  fc.record({ type: fc.constant('velocity'), limit: amount, window: fc.constantFrom('1h', '24h', '7d'), buckets: fc.constantFrom(1, 4, 24) }),
  fc.record({ type: fc.constant('destinations'), allow: addrs, deny: addrs, allow_unaddressed: fc.boolean() }, { requiredKeys: ['type', 'allow'] }),
  fc.record({ type: fc.constant('fee_cap'), max_fee: amount, max_fee_rate: fc.integer({ min: 1, max: 50 }), max_fee_bps: fc.integer({ min: 1, max: 10000 }) }, { requiredKeys: ['type', 'max_fee_bps'] }),
  fc.record({ type: fc.constant('change_must_return'), max_change_outputs: fc.integer({ min: 0, max: 3 }), own_addresses: addrs }, { requiredKeys: ['type'] }),
  fc.record({ type: fc.constant('payload_format'), formats: fc.constant(['bip322']), prefixes_hex: fc.constant(['19']), max_length: fc.integer({ min: 0, max: 12 }) }, { requiredKeys: ['type', 'max_length'] }),
  fc.record({ type: fc.constant('approval'), approvers: fc.constant(['token:alice', 'token:bob']), required: fc.constantFrom(1, 2), when: fc.record({ amount_above: amount, destination_not_in: addrs }, { requiredKeys: ['amount_above'] }) }, { requiredKeys: ['type', 'approvers', 'required'] }),
);
const validDocument = fc.array(validRule, { minLength: 1, maxLength: 8 }).map((rules) => ({ id: 'p', applies_to: { all_keys: true }, rules: rules.map((r, i) => ({ id: `r${i}`, ...r })) }));

function onlyCustosErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof CustosError)) throw e;
  }
}

test('random documents are accepted or refused with CustosError, never anything else', () => {
  fc.assert(
    fc.property(documentValue, (doc) => {
      onlyCustosErrors(() => validatePolicy(doc));
      const json = JSON.stringify(doc, (_k, v) => (typeof v === 'bigint' ? String(v) : v));
      onlyCustosErrors(() => parsePolicy(json, 'json'));
    }),
    { numRuns: 3000 },
  );
  fc.assert(fc.property(fc.string({ maxLength: 200 }), (s) => onlyCustosErrors(() => parsePolicy(s))), { numRuns: 1000 });
  fc.assert(fc.property(fc.anything(), (v) => onlyCustosErrors(() => validatePolicy(v))), { numRuns: 1000 });
});

test('random requests against random valid policies evaluate, or are refused with CustosError', () => {
  const compiled: ReturnType<typeof compilePolicy>[] = [compilePolicy(parsePolicy(EXAMPLE))];
  fc.assert(
    fc.property(validDocument, (doc) => {
      compiled.push(compilePolicy(validatePolicy(doc)));
    }),
    { numRuns: 3000 },
  );
    const output = fc.record({ address: fc.option(fc.constantFrom('ext0', 'bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq', 'evil', 'mine'), { nil: null }), amount: fc.bigInt({ min: -1n, max: 10n ** 16n }), isChange: fc.boolean() });
  const req = fc.record({
    principal: fc.record({ id: fc.constantFrom('token:bot', 'token:alice', 'token:treasury-bot', ''), kind: fc.constant('token' as const) }),
    key: fc.constant({ id: 'k1', label: 'treasury-hot', algorithm: 'secp256k1' as const, tags: ['treasury'] }),
    operation: fc.constantFrom('sign', 'export', 'delete'),
    payloadType: fc.constantFrom('raw', 'digest', 'psbt', 'ssh', 'consensus', null, 'other'),
    now: fc.date({ min: new Date(-1000), max: new Date('2100-01-01') }),
    psbt: fc.option(fc.record({ outputs: fc.array(output, { maxLength: 4 }), fee: fc.bigInt({ min: -1n, max: 10n ** 9n }), sentExternally: fc.bigInt({ min: 0n, max: 10n ** 16n }), inputCount: fc.integer({ min: -1, max: 5 }), vsize: fc.option(fc.oneof(fc.integer({ min: -1, max: 1000 }), fc.double()), { nil: undefined }) }), { nil: undefined }),
    payload: fc.option(fc.uint8Array({ maxLength: 10 }), { nil: undefined }),
    facts: fc.dictionary(fc.constantFrom('format', 'x'), fc.string({ maxLength: 6 })),
    approvedBy: fc.option(fc.array(fc.constantFrom('token:alice', 'token:bob', 'x')), { nil: undefined }),
  }) as fc.Arbitrary<unknown> as fc.Arbitrary<PolicyRequest>;
  fc.assert(
    fc.property(fc.integer({ min: 0, max: compiled.length - 1 }), req, fc.array(req, { maxLength: 3 }), (i, r, earlier) => {
      const s = new StateMap();
      for (const e of earlier) onlyCustosErrors(() => s.run(compiled[i]!, e));
      onlyCustosErrors(() => {
        const e = s.run(compiled[i]!, r);
        explain(e);
        assert.equal(e.trace.length, compiled[i]!.rules.length);
        if (e.decision.kind !== 'allow') assert.deepEqual(e.stateUpdates, []);
        for (const u of e.stateUpdates) assert.deepEqual(JSON.parse(JSON.stringify(u.state)), u.state);
      });
    }),
    { numRuns: 3000 },
  );
});
