/**
 * The `custos` executable as an operator's shell runs it: through its own first lines (sh,
 * then node with the daemon's flags), not as `node bin/custos.js` like the other CLI tests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as nodeModule from 'node:module';
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

/**
 * `custos --version` answers in about 0.1 s because the command list loads no command's work:
 * a command module loads the vault, the store, a backend or a crypto library only when its
 * command runs (issue 11: `custos --version` ≤ 0.3 s; a script calling the CLI per key pays
 * the start-up each time). One static import from a command module to, say, the daemon's
 * configuration once loaded the whole vault, and took `--version` to 0.26 s. Checked by the
 * modules node loads, not by a timing.
 */
test('--version and --help load no vault, store, backend or crypto library module', { skip: typeof (nodeModule as { register?: unknown }).register !== 'function' && 'needs node ≥ 20.6 (module.register)' }, () => {
  // A loader hook that names every module node loads (node 20: hooks run on their own thread).
  const hooks = 'export async function load(u, c, n) { process.stderr.write(`LOADED ${u}\\n`); return n(u, c); }';
  const importer = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;
  for (const args of [['--version'], ['--help'], ['tor', '--help'], ['lightning', '--help']]) {
    const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(importer)}`, join(ROOT, 'bin', 'custos.js'), ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const loaded = r.stderr.split('\n').filter((l) => l.startsWith('LOADED ')).map((l) => l.slice('LOADED '.length));
    assert.ok(loaded.some((u) => /\/cli\/main\.(js|ts)$/.test(u)), `the hook saw no module loaded: ${r.stderr.slice(0, 500)}`);
    const root = pathToFileURL(join(ROOT, '/')).href;
    const ours = loaded.filter((u) => u.startsWith(root) && !u.includes('/node_modules/')).map((u) => u.slice(root.length));
    assert.ok(ours.includes('dist/cli/main.js') || ours.includes('src/cli/main.ts'), `no module of this checkout seen under ${root}: ${ours.slice(0, 5).join(', ')}`);
    const heavy = ours.filter((p) => /^(dist|src)\/(vault|store|backends|daemon|keystore|audit|policy|frontends\/(http|ssh-agent)|wallet|lightning|accounts\/opaque)\//.test(p));
    assert.deepEqual(heavy, [], `custos ${args.join(' ')} loaded ${heavy.join(', ')}`);
    const libraries = loaded.filter((u) => /\/node_modules\/(@noble|@scure|@serenity-kit|better-sqlite3|pg|fastify|pino|pkcs11js)\//.test(u)).map((u) => u.replace(/.*\/node_modules\//, ''));
    assert.deepEqual(libraries, [], `custos ${args.join(' ')} loaded ${libraries.join(', ')}`);
  }
});
