/**
 * Policy evaluation cost per request, beside a raw node:crypto Ed25519 signature measured in
 * the same run:
 *   - 10 rules: the example treasury policy (every PSBT rule, a time zone, velocity and a rate
 *     limit with their state read and updated), on an allowed 2-output PSBT;
 *   - 1,000 rules: that mix repeated 100 times (100 velocity and 100 rate-limit states);
 *   - 1,000 stateless rules: the mix without velocity and rate_limit, repeated 125 times.
 * Also the one-off cost of parsing and compiling the 1,000-rule document.
 *
 *   node --import tsx bench/policy.ts [--iterations N]
 *
 * One JSON document on stdout. Never exits non-zero because of a timing.
 */
import { generateKeyPairSync, randomBytes, sign as nodeSign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parsePolicy } from '../src/policy/document.js';
import { compilePolicy, evaluate, type CompiledPolicy } from '../src/policy/engine.js';
import type { PolicyRequest, RuleState } from '../src/policy/model.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('--iterations', 20_000);

const us = (ns: bigint) => Number(ns) / 1e3;
const round = (x: number) => Number(x.toFixed(3));
function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
  return { mean_us: round(xs.reduce((a, b) => a + b, 0) / xs.length), p50_us: round(at(50)), p99_us: round(at(99)) };
}

function time(n: number, f: (i: number) => void): number[] {
  for (let i = 0; i < Math.min(2000, n); i++) f(i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    f(i);
    out.push(us(process.hrtime.bigint() - t));
  }
  return out;
}

const example = readFileSync(new URL('../examples/policy-treasury.toml', import.meta.url), 'utf8').replace(/^#.*\n/gm, '');
/** The example's rules repeated `times`, ids suffixed so that they stay unique. */
function repeated(times: number, stateless = false): string {
  const [head, ...all] = example.split('[[rules]]');
  const blocks = stateless ? all.filter((b) => !/type = "(velocity|rate_limit)"/.test(b)) : all;
  const out = [head];
  for (let k = 0; k < times; k++) for (const b of blocks) out.push(`[[rules]]${b.replace(/^id = "([^"]+)"/m, `id = "$1-${k}"`)}`);
  return out.join('');
}

const request = (i: number): PolicyRequest => ({
  principal: { id: `token:treasury-ops-${i % 50}`, kind: 'token' },
  key: { id: 'k1', label: 'treasury-hot', algorithm: 'secp256k1', tags: ['treasury'] },
  operation: 'sign',
  payloadType: 'psbt',
  // Tuesdays, 14:00 to 17:00 UTC: within New York office hours; a new time each request.
  now: new Date(Date.parse('2026-11-10T14:00:00Z') + (i % 10_000) * 1000),
  facts: {},
  psbt: {
    outputs: [
      { address: 'bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq', amount: 50_000_000n, isChange: false },
      { address: 'bc1qchangechangechange', amount: 1_000_000n, isChange: true },
    ],
    fee: 5_000n,
    sentExternally: 50_000_000n,
    inputCount: 2,
    vsize: 200,
  },
});

function bench(p: CompiledPolicy) {
  const state = new Map<string, RuleState>();
  // Budgets are large enough that every request is allowed and spends: the full path.
  let allowed = 0;
  const samples = time(N, (i) => {
    const e = evaluate(p, request(i), (s) => state.get(s));
    if (e.decision.kind === 'allow') allowed++;
    for (const u of e.stateUpdates) state.set(u.scope, u.state);
  });
  return { samples, allowed };
}

function main(): void {
  const { privateKey } = generateKeyPairSync('ed25519');
  const msg = randomBytes(120);
  const sign = stats(time(N, () => nodeSign(null, msg, privateKey)));

  // Raise budgets so that no request of the run is refused.
  const generous = (src: string) =>
    src.replace(/limit = 2_000_000_000/g, 'limit = 2_000_000_000_000_000').replace(/limit = 60\n/g, 'limit = 1000000000\n').replace(/when = \{[^}]*\}/g, 'when = { amount_above = 100_000_000 }');
  const ten = compilePolicy(parsePolicy(generous(example)));
  const t0 = process.hrtime.bigint();
  const thousandDoc = parsePolicy(generous(repeated(100)));
  const t1 = process.hrtime.bigint();
  const thousand = compilePolicy(thousandDoc);
  const t2 = process.hrtime.bigint();
  const stateless = compilePolicy(parsePolicy(generous(repeated(125, true))));

  const results = [];
  for (const [p, stateful] of [[ten, 2], [thousand, 200], [stateless, 0]] as const) {
    const { samples, allowed } = bench(p);
    const s = stats(samples);
    results.push({ rules: p.rules.length, stateful_rules: stateful, ...s, ratio_to_sign_p50: round(s.p50_us / sign.p50_us), allowed_of: `${allowed}/${N + Math.min(2000, N)}`, ratio_to_sign_mean: round(s.mean_us / sign.mean_us) });
  }
  process.stdout.write(
    `${JSON.stringify(
      {
        machine: { cpus: cpus().length, node: process.version },
        iterations: N,
        baseline: { ed25519_node_crypto_sign: sign },
        policy: results,
        one_off: { parse_1000_rules_ms: round(Number(t1 - t0) / 1e6), compile_1000_rules_ms: round(Number(t2 - t1) / 1e6) },
      },
      null,
      2,
    )}\n`,
  );
}

main();
