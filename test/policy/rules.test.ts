import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicy, coverageWarnings, evaluate, uncoveredKinds, type Evaluation } from '../../src/policy/engine.js';
import { parsePolicy } from '../../src/policy/document.js';
import type { CompiledPolicy } from '../../src/policy/engine.js';
import type { PolicyRequest } from '../../src/policy/model.js';
import { policyOf, psbt, psbtRequest, request, StateMap, T0 } from './helpers.js';

const none = () => undefined;
const compileDoc = (toml: string): CompiledPolicy => compilePolicy(parsePolicy(toml));
const run = (p: CompiledPolicy, r: PolicyRequest): Evaluation => evaluate(p, r, none);

function allowed(p: CompiledPolicy, r: PolicyRequest): void {
  const e = run(p, r);
  assert.deepEqual(e.decision, { kind: 'allow' }, JSON.stringify(e.trace));
}
function denied(p: CompiledPolicy, r: PolicyRequest, tag: string, reason: RegExp): void {
  const e = run(p, r);
  assert.equal(e.decision.kind, 'deny', JSON.stringify(e.trace));
  if (e.decision.kind !== 'deny') return;
  assert.equal(e.decision.tag, tag);
  assert.match(e.decision.reason, reason);
}
/** A request the rule has no facts for: denied with the rule's own tag (fail closed)... */
function unjudged(p: CompiledPolicy, r: PolicyRequest): void {
  const e = run(p, r);
  assert.equal(e.decision.kind, 'deny', JSON.stringify(e.trace));
  if (e.decision.kind === 'deny') {
    assert.equal(e.decision.tag, e.trace[0]!.tag);
    assert.match(e.decision.reason, /cannot judge .*other_payloads = "allow"/);
  }
}

test('operations: allows listed operations and payload types, denies others', () => {
  const p = policyOf('[[rules]]\nid = "ops"\ntype = "operations"\noperations = ["sign"]\npayload_types = ["psbt", "digest"]\n');
  allowed(p, request({ payloadType: 'digest' }));
  allowed(p, psbtRequest([1n]));
  denied(p, request({ payloadType: 'raw' }), 'operations', /^Policy p v1, rule ops: signing a raw payload is not allowed \(allowed: psbt, digest\)\.$/);
  denied(p, request({ operation: 'export', payloadType: null }), 'operations', /operation export is not allowed \(allowed: sign\)/);
});

test('principals: exact ids and trailing-* prefixes; deny wins over allow', () => {
  const p = policyOf('[[rules]]\ntype = "principals"\nallow = ["token:bot", "token:ops-*"]\ndeny = ["token:ops-intern"]\n');
  allowed(p, request());
  allowed(p, request({ principal: { id: 'token:ops-alice', kind: 'token' } }));
  denied(p, request({ principal: { id: 'token:ops-intern', kind: 'token' } }), 'principals', /rule rules\[0\]: principal token:ops-intern is on the deny list/);
  denied(p, request({ principal: { id: 'token:bot2', kind: 'token' } }), 'principals', /not on the allow list/);
  denied(p, request({ principal: { id: 'token:ops', kind: 'token' } }), 'principals', /not on the allow list/);
  const everyone = policyOf('[[rules]]\ntype = "principals"\nallow = ["*"]\n');
  allowed(everyone, request({ principal: { id: 'anything', kind: 'admin' } }));
});

test('time_window: days and UTC hours, from inclusive and to exclusive', () => {
  const p = policyOf('[[rules]]\ntype = "time_window"\ndays = ["mon", "tue", "wed", "thu", "fri"]\nfrom = "09:00"\nto = "17:00"\n');
  allowed(p, request({ now: new Date('2026-11-10T09:00:00Z') }));
  allowed(p, request({ now: new Date('2026-11-10T16:59:59Z') }));
  denied(p, request({ now: new Date('2026-11-10T17:00:00Z') }), 'time_window', /tue 17:00 UTC is outside 09:00-17:00 UTC/);
  denied(p, request({ now: new Date('2026-11-10T08:59:00Z') }), 'time_window', /outside/);
  denied(p, request({ now: new Date('2026-11-08T12:00:00Z') }), 'time_window', /sun 12:00 UTC is not on an allowed day \(mon, tue, wed, thu, fri\)/);
});

test('time_window: a window across midnight, and an IANA time zone with daylight saving', () => {
  const night = policyOf('[[rules]]\ntype = "time_window"\nfrom = "22:00"\nto = "06:00"\n');
  allowed(night, request({ now: new Date('2026-11-10T23:30:00Z') }));
  allowed(night, request({ now: new Date('2026-11-10T05:59:00Z') }));
  denied(night, request({ now: new Date('2026-11-10T06:00:00Z') }), 'time_window', /outside 22:00-06:00 UTC/);
  const ny = policyOf('[[rules]]\ntype = "time_window"\nfrom = "09:00"\nto = "17:00"\ntimezone = "America/New_York"\n');
  // 13:30 UTC is 09:30 in New York in summer (UTC-4) but 08:30 in winter (UTC-5).
  allowed(ny, request({ now: new Date('2026-07-14T13:30:00Z') }));
  denied(ny, request({ now: new Date('2026-12-15T13:30:00Z') }), 'time_window', /tue 08:30 America\/New_York is outside 09:00-17:00 America\/New_York/);
});

test('rate_limit: N per window per key, the N+1th denied, nothing spent by the denial', () => {
  const p = policyOf('[[rules]]\nid = "rl"\ntype = "rate_limit"\nlimit = 3\nwindow = "1m"\nbuckets = 6\n');
  const s = new StateMap();
  for (let i = 0; i < 3; i++) assert.equal(s.run(p, request({ now: new Date(T0.getTime() + i * 1000) })).decision.kind, 'allow');
  const e = s.run(p, request({ now: new Date(T0.getTime() + 5000) }));
  assert.deepEqual(e.decision, { kind: 'deny', tag: 'rate_limit', reason: 'Policy p v1, rule rl: 3 requests in the last 1m for this key already reach the limit of 3.' });
  assert.deepEqual(e.stateUpdates, []);
  // Another key has its own budget.
  assert.equal(s.run(p, request({ key: { id: 'k2', label: 'other', algorithm: 'ed25519', tags: [] }, now: new Date(T0.getTime() + 5000) })).decision.kind, 'allow');
  // A window plus one bucket later, the budget is back.
  assert.equal(s.run(p, request({ now: new Date(T0.getTime() + 2000 + 70_000) })).decision.kind, 'allow');
});

test('rate_limit per principal, per key and principal, and across the policy', () => {
  const other = { id: 'token:other', kind: 'token' as const };
  const k2 = { id: 'k2', label: 'two', algorithm: 'ed25519' as const, tags: [] };
  const cases: Array<[string, PolicyRequest, boolean]> = [
    ['principal', request({ key: k2 }), false],
    ['principal', request({ principal: other }), true],
    ['key_and_principal', request({ key: k2 }), true],
    ['key_and_principal', request({ principal: other }), true],
    ['policy', request({ key: k2, principal: other }), false],
  ];
  for (const [per, second, ok] of cases) {
    const p = policyOf(`[[rules]]\nid = "rl"\ntype = "rate_limit"\nlimit = 1\nwindow = "1h"\nper = "${per}"\n`);
    const s = new StateMap();
    assert.equal(s.run(p, request()).decision.kind, 'allow');
    assert.equal(s.run(p, second).decision.kind, ok ? 'allow' : 'deny', `per = ${per}`);
  }
});

test('amount_limit: per-transaction external amount; change is not counted; not applicable outside PSBTs', () => {
  const p = policyOf('[[rules]]\ntype = "amount_limit"\nlimit = 100000\n');
  allowed(p, psbtRequest([60_000n, 40_000n]));
  denied(p, psbtRequest([60_000n, 40_001n]), 'amount_limit', /sends 100001 sats externally, over the limit of 100000 sats/);
  // An under-declared sentExternally does not hide outputs: the larger of the two counts.
  denied(p, psbtRequest([150_000n], {}, { sentExternally: 10n }), 'amount_limit', /150000 sats/);
  denied(p, request({ payloadType: 'psbt' }), 'amount_limit', /without its decoded outputs/);
  unjudged(p, request());
  unjudged(p, request({ payloadType: 'digest' }));
  unjudged(p, request({ operation: 'export', payloadType: null }));
});

test('velocity: total sent per rolling window; denied payments spend nothing', () => {
  const p = policyOf('[[rules]]\nid = "daily"\ntype = "velocity"\nlimit = 1000\nwindow = "24h"\n');
  const s = new StateMap();
  assert.equal(s.run(p, psbtRequest([600n])).decision.kind, 'allow');
  const e = s.run(p, psbtRequest([500n], { now: new Date(T0.getTime() + 3_600_000) }));
  assert.deepEqual(e.decision, { kind: 'deny', tag: 'velocity', reason: 'Policy p v1, rule daily: sending 500 sats would bring the total of the last 24h for this key to 1100 sats, over the limit of 1000 sats (600 sats already sent).' });
  assert.equal(s.run(p, psbtRequest([400n], { now: new Date(T0.getTime() + 3_600_000) })).decision.kind, 'allow');
  assert.equal(s.run(p, psbtRequest([1n], { now: new Date(T0.getTime() + 3_600_000) })).decision.kind, 'deny');
  const [state] = [...s.map.values()];
  assert.equal(state!.counts.length, 25);
  unjudged(p, request());
});

test('destinations: allow-list for external outputs, deny-list for every output, unaddressed outputs', () => {
  const p = policyOf('[[rules]]\ntype = "destinations"\nallow = ["ext0", "BC1QABC"]\ndeny = ["evil"]\n');
  allowed(p, psbtRequest([5n]));
  allowed(p, request({ payloadType: 'psbt', psbt: { ...psbt([]), outputs: [{ address: 'bc1qabc', amount: 5n, isChange: false }], sentExternally: 5n } }));
  denied(p, psbtRequest([5n, 6n]), 'destinations', /output 1 pays ext1, which is not on the allow list/);
  denied(p, request({ payloadType: 'psbt', psbt: { ...psbt([]), outputs: [{ address: 'evil', amount: 5n, isChange: true }] } }), 'destinations', /output 0 pays evil, which is on the deny list/);
  denied(p, request({ payloadType: 'psbt', psbt: { ...psbt([]), outputs: [{ address: null, amount: 0n, isChange: false }] } }), 'destinations', /output 0 has no address/);
  const opReturn = policyOf('[[rules]]\ntype = "destinations"\ndeny = ["evil"]\nallow_unaddressed = true\n');
  allowed(opReturn, request({ payloadType: 'psbt', psbt: { ...psbt([]), outputs: [{ address: null, amount: 0n, isChange: false }] } }));
  unjudged(p, request());
});

test('fee_cap: absolute, rate (needs vsize) and basis points of the outputs', () => {
  const abs = policyOf('[[rules]]\ntype = "fee_cap"\nmax_fee = 500\n');
  allowed(abs, psbtRequest([10_000n]));
  denied(abs, psbtRequest([10_000n], {}, { fee: 501n }), 'fee_cap', /the fee of 501 sats is over the cap of 500 sats/);
  const rate = policyOf('[[rules]]\ntype = "fee_cap"\nmax_fee_rate = 2\n');
  allowed(rate, psbtRequest([10_000n], {}, { fee: 400n, vsize: 200 }));
  denied(rate, psbtRequest([10_000n], {}, { fee: 401n, vsize: 200 }), 'fee_cap', /fee rate of 401 sats \/ 200 vB is over 2 sat\/vB/);
  denied(rate, psbtRequest([10_000n], {}, { vsize: undefined }), 'fee_cap', /size is unknown/);
  const bps = policyOf('[[rules]]\ntype = "fee_cap"\nmax_fee_bps = 100\n');
  // Outputs carry 49,000 + 1,000 change = 50,000: 1% is 500.
  allowed(bps, psbtRequest([49_000n], {}, { fee: 500n }));
  denied(bps, psbtRequest([49_000n], {}, { fee: 501n }), 'fee_cap', /over 100 basis points of the 50000 sats the outputs carry/);
  unjudged(abs, request());
});

test('change_must_return: accounting, change addresses, change count, own addresses', () => {
  const p = policyOf('[[rules]]\ntype = "change_must_return"\nown_addresses = ["mine"]\n');
  allowed(p, psbtRequest([5n]));
  denied(p, psbtRequest([5n], {}, { sentExternally: 4n }), 'change_must_return', /add up to 5 sats but the transaction declares 4 sats sent externally/);
  const two = psbt([5n]);
  denied(p, request({ payloadType: 'psbt', psbt: { ...two, outputs: [...two.outputs, { address: 'change1', amount: 1n, isChange: true }] } }), 'change_must_return', /2 change outputs, more than the 1 allowed/);
  denied(p, request({ payloadType: 'psbt', psbt: { ...two, outputs: [two.outputs[0]!, { address: null, amount: 1n, isChange: true }] } }), 'change_must_return', /change output 1 has no address/);
  denied(p, request({ payloadType: 'psbt', psbt: { ...two, outputs: [{ address: 'mine', amount: 5n, isChange: false }] } }), 'change_must_return', /output 0 pays this wallet's own address mine outside the change path/);
  unjudged(p, request());
});

test('payload_format: declared format, byte prefix and length for raw messages only', () => {
  const p = policyOf('[[rules]]\ntype = "payload_format"\nformats = ["bip322"]\nprefixes_hex = ["1901", "ff"]\nmin_length = 3\nmax_length = 8\n');
  const bytes = (...b: number[]) => Uint8Array.from(b);
  allowed(p, request({ facts: { format: 'bip322' }, payload: bytes(0x19, 0x01, 0xaa) }));
  allowed(p, request({ facts: { format: 'bip322' }, payload: bytes(0xff, 0, 0, 0) }));
  denied(p, request({ facts: { format: 'nostr' }, payload: bytes(0x19, 0x01, 0xaa) }), 'payload_format', /the message format "nostr" is not allowed \(allowed: bip322\)/);
  denied(p, request({ payload: bytes(0x19, 0x01, 0xaa) }), 'payload_format', /format is not declared/);
  denied(p, request({ facts: { format: 'bip322' }, payload: bytes(0x19, 0x02, 0xaa) }), 'payload_format', /does not start with an allowed prefix/);
  denied(p, request({ facts: { format: 'bip322' }, payload: bytes(0x19, 0x01) }), 'payload_format', /2 bytes, shorter than 3/);
  denied(p, request({ facts: { format: 'bip322' }, payload: new Uint8Array(9).fill(0xff) }), 'payload_format', /9 bytes, longer than 8/);
  denied(p, request({ facts: { format: 'bip322' } }), 'payload_format', /bytes were not given/);
  unjudged(p, psbtRequest([1n]));
});

test('approval: always, or only when a condition holds; passes once enough listed approvers agreed', () => {
  const always = policyOf('[[rules]]\ntype = "approval"\napprovers = ["token:alice", "token:bob", "token:carol"]\nrequired = 2\n');
  assert.deepEqual(run(always, request()).decision, { kind: 'needs_approval', approvers: ['token:alice', 'token:bob', 'token:carol'], required: 2 });
  assert.deepEqual(run(always, request({ approvedBy: ['token:alice'] })).decision.kind, 'needs_approval');
  assert.deepEqual(run(always, request({ approvedBy: ['token:alice', 'token:mallory', 'token:alice'] })).decision.kind, 'needs_approval');
  assert.deepEqual(run(always, request({ approvedBy: ['token:alice', 'token:carol'] })).decision, { kind: 'allow' });

  const big = policyOf('[[rules]]\ntype = "approval"\napprovers = ["token:alice"]\nrequired = 1\nwhen = { amount_above = 1000, destination_not_in = ["ext0"] }\n');
  allowed(big, psbtRequest([1000n]));
  assert.equal(run(big, psbtRequest([1001n])).decision.kind, 'needs_approval');
  assert.equal(run(big, psbtRequest([1n, 1n])).decision.kind, 'needs_approval');
  assert.match(run(big, psbtRequest([1n, 1n])).trace[0]!.explanation, /output 1 pays a destination outside the approved list/);
  unjudged(big, request());

  const exports = policyOf('[[rules]]\ntype = "approval"\napprovers = ["token:alice"]\nrequired = 1\nwhen = { operations = ["export"] }\n');
  allowed(exports, request());
  assert.equal(run(exports, request({ operation: 'export', payloadType: null })).decision.kind, 'needs_approval');
});

test('a rule denies what it cannot judge unless the rule or its document says other_payloads = "allow"', () => {
  // The review's finding: a key whose only rule was amount_limit signed any digest or message.
  const onlyAmount = policyOf('[[rules]]\ntype = "amount_limit"\nlimit = 1000\n');
  denied(onlyAmount, request({ payloadType: 'digest' }), 'amount_limit', /cannot judge a digest request \(it judges PSBT requests only\)/);
  denied(onlyAmount, request({ payloadType: 'raw' }), 'amount_limit', /cannot judge a raw request/);
  denied(onlyAmount, request({ payloadType: 'ssh' }), 'amount_limit', /cannot judge an SSH request/);
  denied(onlyAmount, request({ operation: 'export', payloadType: null }), 'amount_limit', /cannot judge an export/);
  allowed(onlyAmount, psbtRequest([1000n]));
  const ruleAllows = policyOf('[[rules]]\ntype = "amount_limit"\nlimit = 1000\nother_payloads = "allow"\n');
  allowed(ruleAllows, request({ payloadType: 'digest' }));
  assert.match(run(ruleAllows, request()).trace[0]!.explanation, /other_payloads = "allow" lets it through/);
  const docAllows = compileDoc('id = "p"\nother_payloads = "allow"\n[applies_to]\nall_keys = true\n[[rules]]\ntype = "amount_limit"\nlimit = 1\n[[rules]]\ntype = "fee_cap"\nmax_fee = 1\nother_payloads = "deny"\n');
  denied(docAllows, request(), 'fee_cap', /cannot judge a raw request/);
  // A rule that judges every kind keeps the document's verdict for the others.
  const withRate = policyOf('[[rules]]\ntype = "amount_limit"\nlimit = 1000\nother_payloads = "allow"\n[[rules]]\ntype = "principals"\nallow = ["token:bot"]\n');
  allowed(withRate, request());
});

test('upload warnings name the kinds of request no rule judges and what happens to them', () => {
  const onlyAmount = policyOf('[[rules]]\ntype = "amount_limit"\nlimit = 1000\n');
  const [w] = coverageWarnings(onlyAmount);
  assert.match(w!, /No rule of policy p judges raw signatures, digest signatures, SSH signatures, consensus signatures, exports, ECDH requests, decryptions: they are DENIED/);
  assert.match(w!, /rules\[0\] \(amount_limit\) cannot judge them/);
  const open = policyOf('[[rules]]\ntype = "fee_cap"\nmax_fee = 1\nother_payloads = "allow"\n');
  assert.match(coverageWarnings(open).join('\n'), /other_payloads = "allow" lets them through unchecked/);
  assert.deepEqual(coverageWarnings(policyOf('[[rules]]\ntype = "principals"\nallow = ["token:bot"]\n')), []);
  const rawOnly = policyOf('[[rules]]\ntype = "payload_format"\nmax_length = 10\n');
  assert.deepEqual(uncoveredKinds(rawOnly).map((u) => u.kind), ['digest', 'psbt', 'ssh', 'consensus', 'export', 'ecdh', 'decrypt']);
});
