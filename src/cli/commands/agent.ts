/** The ssh-agent sockets of a running vault, over the HTTP API. */
import type { Command } from 'commander';
import { clientFrom, out, withApi } from '../common.js';

export function registerAgent(program: Command): void {
  const agentCmd = program.command('ssh-agent').description('Manage the ssh-agent sockets of a running vault');
  withApi(agentCmd.command('restore').description('Offer again the vault keys that ssh-add -d/-D hid from a socket').argument('<name>', 'socket name from [[ssh_agent]] (default: default)')).action(
    async (name: string, o) => {
      const r = await clientFrom(o).restoreAgent(name);
      out(o.json ? JSON.stringify(r) : `${r.restored} key(s) offered again on ssh-agent ${r.agent}.`);
    },
  );

}
