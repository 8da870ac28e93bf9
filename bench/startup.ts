/**
 * Start-up of the `custos` executable, as an operator's shell runs it (bin/custos.js through
 * its own first lines): `custos --version`, which a script calling the CLI once per key pays
 * every time, and `custos serve --dev` from spawn to its ready line. Issue 11's aims:
 * `--version` ≤ 0.3 s, `serve --dev` ready ≤ 1 s. The baseline, in the same run, is node
 * itself starting and exiting (`node -e ''`).
 *
 *   node --import tsx bench/startup.ts [--runs N]
 *
 * It compiles dist/ first (`tsc -p tsconfig.build.json`, incremental: it writes nothing when
 * dist/ is current, as after `npm ci` or `npm test`), so that what is timed is the compiled
 * JavaScript the executable runs, not the tsx fallback of a tree edited since its build. One JSON document goes to
 * stdout, progress to stderr; timings never make the exit status non-zero.
 */
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BIN, ROOT, serve } from '../test/helpers/process.js';

const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const { values } = parseArgs({ options: { runs: { type: 'string', default: '10' } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive whole number');

const VERSION_AIM_MS = 300;
const READY_AIM_MS = 1000;

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const round = (x: number) => Math.round(x * 10) / 10;
function summary(xs: number[]): { p50_ms: number; max_ms: number; runs: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { p50_ms: round(s[Math.floor((s.length - 1) / 2)]!), max_ms: round(s[s.length - 1]!), runs: s.length };
}

function timed(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const t = ms(t0);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return t;
}

log('compiling dist/ (tsc -p tsconfig.build.json; nothing is written when it is current)');
const build = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, encoding: 'utf8' });
if (build.status !== 0) throw new Error(`tsc failed: ${build.stdout}${build.stderr}`);

// One of each first, not counted: the page cache and the compile cache warm.
timed(process.execPath, ['-e', '']);
timed(BIN, ['--version']);
const node: number[] = [];
const version: number[] = [];
for (let i = 0; i < runs; i++) {
  node.push(timed(process.execPath, ['-e', '']));
  version.push(timed(BIN, ['--version']));
}
log(`--version: ${runs} runs`);
const ready: number[] = [];
for (let i = 0; i <= runs; i++) {
  const t0 = process.hrtime.bigint();
  const s = await serve(['--dev'], {}, 30_000, true);
  const t = ms(t0);
  await s.stop('SIGINT');
  if (i > 0) ready.push(t);
}
log(`serve --dev: ${runs} starts`);

const n = summary(node);
const v = summary(version);
const r = summary(ready);
console.log(
  JSON.stringify(
    {
      machine: { cpus: cpus().length, node: process.version },
      baseline: { node_start_exit: n },
      version: { ...v, p50_minus_node_ms: round(v.p50_ms - n.p50_ms) },
      serve_dev_ready: r,
      aim: { version_p50_ms: VERSION_AIM_MS, ready_p50_ms: READY_AIM_MS, met: v.p50_ms <= VERSION_AIM_MS && r.p50_ms <= READY_AIM_MS },
    },
    null,
    2,
  ),
);
