/**
 * Issue 11's `npm run bench:all`: it runs every benchmark in bench/ and prints one JSON summary
 * of their headline figures. Run here with `--quick` (short runs, for the harness, not for
 * numbers): every benchmark is in it, each one ran (in CI; locally a missing component is
 * named), and each summary carries figures, not a harness whose keys no longer match. Nothing
 * here looks at a timing's value.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, runAsync } from '../helpers/process.js';

test('bench:all runs every benchmark in bench/ and summarises each one with figures', { timeout: 15 * 60_000 }, async (t) => {
  const r = await runAsync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'all.ts'), '--quick']);
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  const { summary, runs } = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { summary: Record<string, Record<string, unknown>>; runs: Record<string, unknown> };
  // Every benchmark at the top of bench/ (not its lib/ or probes/, and not this runner).
  const benchmarks = readdirSync(join(ROOT, 'bench'))
    .filter((f) => f.endsWith('.ts') && f !== 'all.ts')
    .map((f) => f.slice(0, -3))
    .sort();
  assert.deepEqual(Object.keys(summary).sort(), benchmarks);
  assert.deepEqual(Object.keys(runs).sort(), benchmarks);
  const skipped = Object.entries(summary).filter(([, s]) => 'skipped' in s);
  if (skipped.length > 0) {
    const why = skipped.map(([name, s]) => `${name}: ${String(s.skipped)}`).join('; ');
    if (process.env.CI) assert.fail(`benchmarks did not run (required in CI): ${why}`);
    t.diagnostic(`not run here (a missing component; .ci/run installs them): ${why}`);
  }
  for (const [name, s] of Object.entries(summary)) {
    if ('skipped' in s) continue;
    // A headline whose keys no longer match its benchmark's JSON is all undefined.
    const figures = Object.entries(s).filter(([k, v]) => k !== 'seconds' && k !== 'target' && k !== 'met' && v !== undefined && v !== null);
    assert.ok(figures.length > 0, `${name}: the summary carries no figure: ${JSON.stringify(s)}`);
    assert.equal(typeof s.seconds, 'number', name);
  }
});
