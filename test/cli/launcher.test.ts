/**
 * The `custos` executable as an operator's shell runs it: through its own first lines (sh,
 * then node with the daemon's flags), not as `node bin/custos.js` like the other CLI tests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { daemonNodeFlags } from '../../bench/lib/daemon-flags.js';
import { BIN, ROOT, serve } from '../helpers/process.js';

test('the custos executable runs by itself, through sh, and prints its version', () => {
  const r = spawnSync(BIN, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
});

test('a daemon started by the executable runs with the node flags the benchmarks measure', { skip: process.platform !== 'linux' && 'reads /proc' }, async () => {
  const flags = daemonNodeFlags();
  assert.ok(flags.includes('--max-semi-space-size=4'), `bin/custos.js starts node with ${flags.join(' ')}`);
  const s = await serve(['--dev'], {}, 30_000, true);
  try {
    // sh execs node in its place: the child's pid is the daemon's.
    const argv = readFileSync(`/proc/${s.proc.pid}/cmdline`, 'utf8').split('\0');
    for (const f of flags) assert.ok(argv.includes(f), `the daemon's command line ${argv.join(' ')} lacks ${f}`);
  } finally {
    await s.stop();
  }
});
