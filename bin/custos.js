#!/bin/sh
":" //; case "$1" in serve) exec node --max-semi-space-size=4 "$0" "$@";; esac; exec node "$0" "$@"
// Run as a program, sh reads the line above and starts node on this file; node skips the #!
// line and reads that line as a string and a comment. (`env -S` could pass a flag in the first
// line, but BusyBox's env has no -S.) The daemon, `custos serve`, gets V8's young generation
// at 4 MB instead of 16 MB: its minor GCs come four times as often but stop it for about 1 ms
// instead of 2-3 ms, which took the p99 of a consensus vote from about 3.3 to 1.7 ms and of an
// ssh-agent signature from about 2.5 to 1.9 ms, for about 10 µs more GC per vote and no
// measurable loss of throughput (bench/README.md). One-shot commands go without it: it costs
// them about 30 ms of start-up. `node bin/custos.js` runs without it too.
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
