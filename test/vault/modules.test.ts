/**
 * Issue 11's shape of the vault and the CLI: one module per capability over the shared step,
 * each small enough to read in one sitting (no file over 400 lines), and the CLI one file per
 * command group behind a small main.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/process.js';

const MAX_LINES = 400;

function overLong(dir: string): string[] {
  return readdirSync(join(ROOT, dir))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => [`${dir}/${f}`, readFileSync(join(ROOT, dir, f), 'utf8').split('\n').length - 1] as const)
    .filter(([, n]) => n > MAX_LINES)
    .map(([f, n]) => `${f} (${n} lines)`);
}

test(`no module of the vault is over ${MAX_LINES} lines: a capability that grows is split, as policy/rules/ is`, () => {
  assert.deepEqual(overLong('src/vault'), []);
});

test(`the CLI is one file per command group, none over ${MAX_LINES} lines`, () => {
  assert.deepEqual([...overLong('src/cli'), ...overLong('src/cli/commands')], []);
  assert.ok(readdirSync(join(ROOT, 'src/cli/commands')).length >= 10, 'the command groups live in src/cli/commands/');
});
