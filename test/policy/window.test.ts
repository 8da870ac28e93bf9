import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CustosError } from '../../src/core/errors.js';
import { evaluate } from '../../src/policy/engine.js';
import { readWindow, recordInWindow } from '../../src/policy/window.js';
import { policyOf, psbtRequest, request, StateMap } from './helpers.js';

const HOUR = 3_600_000;
const START = Date.parse('2026-11-10T00:00:00Z');

/** Requests at increasing times: [gap since the previous one in ms, amount]. */
const history = fc.array(fc.tuple(fc.integer({ min: 0, max: 3 * HOUR }), fc.bigInt({ min: 1n, max: 600n })), { minLength: 1, maxLength: 60 });

test('velocity: the bucket math matches a model, and no interval of the window length ever holds more than the limit', () => {
  fc.assert(
    fc.property(fc.constantFrom(1, 2, 3, 4, 6, 12, 24, 60), fc.bigInt({ min: 1n, max: 2000n }), history, (buckets, limit, steps) => {
      const W = 24 * HOUR;
      const b = W / buckets;
      const p = policyOf(`[[rules]]\nid = "v"\ntype = "velocity"\nlimit = ${limit}\nwindow = "24h"\nbuckets = ${buckets}\n`);
      const s = new StateMap();
      const accepted: Array<[number, bigint]> = [];
      let t = START;
      for (const [gap, amount] of steps) {
        t += gap;
        // Model: what the buckets count is every accepted spend in the current bucket and the B before it.
        const idx = Math.floor(t / b);
        let counted = 0n;
        for (const [ta, a] of accepted) if (Math.floor(ta / b) >= idx - buckets) counted += a;
        const e = s.run(p, psbtRequest([amount], { now: new Date(t) }));
        assert.equal(e.decision.kind, counted + amount <= limit ? 'allow' : 'deny');
        if (e.decision.kind === 'allow') accepted.push([t, amount]);
      }
      // Safety on the real timeline: any closed interval of length W holds at most `limit`.
      for (const [ts] of accepted) {
        let sum = 0n;
        for (const [t2, a] of accepted) if (t2 >= ts && t2 <= ts + W) sum += a;
        assert.ok(sum <= limit, `${sum} > ${limit} in [${ts}, ${ts + W}]`);
      }
      // The whole budget is back one window and one bucket after the last spend, never sooner than a window.
      const last = accepted.at(-1)?.[0] ?? t;
      const after = new StateMap();
      for (const [k, v] of s.map) after.map.set(k, v);
      assert.equal(after.run(p, psbtRequest([limit], { now: new Date(Math.max(t, last + W + b)) })).decision.kind, 'allow');
      if (accepted.length > 0 && Math.max(t, last) < last + W) {
        assert.equal(evaluate(p, psbtRequest([limit], { now: new Date(Math.max(t, last)) }), s.read).decision.kind, 'deny');
      }
    }),
    { numRuns: 300 },
  );
});

test('rate_limit: the counter matches a model of requests per window', () => {
  fc.assert(
    fc.property(fc.constantFrom(1, 4, 12, 60), fc.integer({ min: 1, max: 8 }), fc.array(fc.integer({ min: 0, max: 20 * 60_000 }), { minLength: 1, maxLength: 80 }), (buckets, limit, gaps) => {
      const W = HOUR;
      const b = W / buckets;
      const p = policyOf(`[[rules]]\nid = "r"\ntype = "rate_limit"\nlimit = ${limit}\nwindow = "1h"\nbuckets = ${buckets}\n`);
      const s = new StateMap();
      const accepted: number[] = [];
      let t = START;
      for (const gap of gaps) {
        t += gap;
        const idx = Math.floor(t / b);
        const counted = accepted.filter((ta) => Math.floor(ta / b) >= idx - buckets).length;
        const e = s.run(p, request({ now: new Date(t) }));
        assert.equal(e.decision.kind, counted + 1 <= limit ? 'allow' : 'deny');
        if (e.decision.kind === 'allow') accepted.push(t);
      }
      for (const ts of accepted) assert.ok(accepted.filter((t2) => t2 >= ts && t2 <= ts + W).length <= limit);
    }),
    { numRuns: 300 },
  );
});

test('velocity: a spend at the end of a bucket is still counted a full window later, and forgotten one bucket after that', () => {
  const p = policyOf('[[rules]]\nid = "v"\ntype = "velocity"\nlimit = 100\nwindow = "24h"\n');
  const s = new StateMap();
  const t = START + HOUR - 1; // the last millisecond of the first hour bucket
  assert.equal(s.run(p, psbtRequest([100n], { now: new Date(t) })).decision.kind, 'allow');
  assert.equal(s.run(p, psbtRequest([1n], { now: new Date(t + 24 * HOUR) })).decision.kind, 'deny');
  assert.equal(s.run(p, psbtRequest([1n], { now: new Date(START + 25 * HOUR - 1) })).decision.kind, 'deny');
  assert.equal(s.run(p, psbtRequest([100n], { now: new Date(START + 25 * HOUR) })).decision.kind, 'allow');
});

test('velocity: a clock that goes backwards frees no budget', () => {
  const p = policyOf('[[rules]]\nid = "v"\ntype = "velocity"\nlimit = 100\nwindow = "1h"\n');
  const s = new StateMap();
  assert.equal(s.run(p, psbtRequest([60n], { now: new Date(START + 10 * HOUR) })).decision.kind, 'allow');
  assert.equal(s.run(p, psbtRequest([40n], { now: new Date(START) })).decision.kind, 'allow');
  assert.equal(s.run(p, psbtRequest([1n], { now: new Date(START + 2 * HOUR) })).decision.kind, 'deny');
  assert.equal(s.run(p, psbtRequest([1n], { now: new Date(START + 10 * HOUR + 30 * 60_000) })).decision.kind, 'deny');
  assert.equal(s.run(p, psbtRequest([100n], { now: new Date(START + 11 * HOUR + 5 * 60_000) })).decision.kind, 'allow');
});

test('velocity: a new policy version with another window keeps the spent budget', () => {
  const v1 = policyOf('[[rules]]\nid = "v"\ntype = "velocity"\nlimit = 100\nwindow = "24h"\n', 'p', 1);
  const v2 = policyOf('[[rules]]\nid = "v"\ntype = "velocity"\nlimit = 100\nwindow = "1h"\nbuckets = 4\n', 'p', 2);
  const s = new StateMap();
  assert.equal(s.run(v1, psbtRequest([90n], { now: new Date(START) })).decision.kind, 'allow');
  const e = s.run(v2, psbtRequest([20n], { now: new Date(START + 5 * 60_000) }));
  assert.equal(e.decision.kind, 'deny');
  assert.match(e.trace[0]!.explanation, /90 sats already sent/);
  assert.equal(s.run(v2, psbtRequest([10n], { now: new Date(START + 5 * 60_000) })).decision.kind, 'allow');
  const [state] = [...s.map.values()];
  assert.equal(state!.buckets, 4);
  assert.equal(state!.counts.length, 5);
});

test('window state is constant-size JSON, and malformed state is refused as database_corrupt', () => {
  const g = { bucketMs: HOUR, buckets: 24 };
  let state = recordInWindow(readWindow(undefined, g, START, 's'), 5);
  for (let i = 1; i < 1000; i++) state = recordInWindow(readWindow(state, g, START + i * 60_000, 's'), 5);
  assert.equal(state.counts.length, 25);
  assert.deepEqual(JSON.parse(JSON.stringify(state)), state);
  assert.equal(readWindow(state, g, START + 999 * 60_000, 's').total, 5000);
  for (const bad of [{ ...state, counts: state.counts.slice(1) }, { ...state, kind: 'other' }, { ...state, head: -1 }, { ...state, counts: state.counts.map(() => -1) }, { ...state, counts: state.counts.map(() => '1') }, { ...state, counts: state.counts.map(() => 2 ** 52) }, null]) {
    assert.throws(() => readWindow(bad as never, g, START, 'p/v/key=k1'), (e: unknown) => e instanceof CustosError && e.code === 'database_corrupt' && e.message.includes('p/v/key=k1'));
  }
});
