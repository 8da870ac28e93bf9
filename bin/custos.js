#!/usr/bin/env node
// The `custos` executable. It runs the compiled JavaScript in dist/ (built by `npm ci` through
// the `prepare` script, and by `npm test`), which starts in a fraction of the time TypeScript
// through tsx takes. A checkout whose sources are newer than that build (an edit not yet
// built), or that has none, runs the sources through tsx's loader instead, so it is never stale.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const stamp = `${root}dist/.tsbuildinfo`;

function newestSource(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : e.name.endsWith('.ts') ? statSync(p).mtimeMs : 0);
  }
  return newest;
}

const built = existsSync(stamp) && existsSync(`${root}dist/cli/main.js`) && (!existsSync(`${root}src`) || newestSource(`${root}src`) <= statSync(stamp).mtimeMs);
if (built) {
  await import('../dist/cli/main.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
