/**
 * System components the tests use. Locally a missing one skips the test with the install
 * command; in CI (CI=true) it fails, so nothing is silently skipped there.
 */
import { spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';

export function hasTool(cmd: string): boolean {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0;
}

/** Returns true when the tool is there; otherwise skips (locally) or throws (CI). */
export function requireTool(t: TestContext, cmd: string, debianPackage: string): boolean {
  if (hasTool(cmd)) return true;
  const why = `${cmd} is not installed: apt-get install -y ${debianPackage}`;
  if (process.env.CI) throw new Error(`${why} (required in CI)`);
  t.skip(why);
  return false;
}
