/**
 * The node flags the `custos` executable starts the daemon, `custos serve`, with (the first
 * `exec node …` on the second line of bin/custos.js), so that a benchmark's stand-in for the
 * daemon (the vault in the benchmark's own process, the ssh-agent child, `custos serve`
 * started through node) runs as an operator's does. Read from that line, not repeated here.
 */
import { readFileSync } from 'node:fs';

const BIN = new URL('../../bin/custos.js', import.meta.url);

export function daemonNodeFlags(): string[] {
  const line = readFileSync(BIN, 'utf8').split('\n', 3)[1] ?? '';
  const m = /exec node ((?:--[\w-]+(?:=\S+)? )*)"\$0"/.exec(line);
  if (!m) throw new Error(`bin/custos.js no longer starts with its "exec node <flags> \\"$0\\"" line: ${line}`);
  return m[1]!.trim().split(' ').filter(Boolean);
}
