/** The ssh-agent sockets of a running vault: `ssh-agent restore` over the HTTP API, `ssh-agent import` over the socket. */
import type { Command } from 'commander';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { CustosError } from '../../core/errors.js';
import { EXIT } from '../exit.js';
import { clientFrom, out, withApi } from '../common.js';

export function registerAgent(program: Command): void {
  const agentCmd = program.command('ssh-agent').description('Manage the ssh-agent sockets of a running vault');
  withApi(agentCmd.command('restore').description('Offer again the vault keys that ssh-add -d/-D hid from a socket').argument('<name>', 'socket name from [[ssh_agent]] (default: default)')).action(
    async (name: string, o) => {
      const r = await clientFrom(o).restoreAgent(name);
      out(o.json ? JSON.stringify(r) : `${r.restored} key(s) offered again on ssh-agent ${r.agent}.`);
    },
  );

  agentCmd
    .command('import')
    .description("Move SSH keys into the vault through a Custos agent socket: key files (default ~/.ssh/id_*), or --from-agent the files of the keys your current agent holds. OpenSSH's own ssh-add reads each file and asks for its passphrase")
    .argument('[files...]', 'private key files (default: every ~/.ssh/id_* that has a .pub beside it)')
    .requiredOption('--socket <path>', 'the Custos ssh-agent socket ([[ssh_agent]] socket, e.g. DATA_DIR/agent/agent.sock)')
    .option('--from-agent', 'import the keys the agent at $SSH_AUTH_SOCK holds, found by their .pub files (an agent never gives out a private key)')
    .option('--ssh-dir <dir>', 'where to look for key files', join(homedir(), '.ssh'))
    .option('--json', 'print JSON')
    .action(async (files: string[], o: { socket: string; fromAgent?: boolean; sshDir: string; json?: boolean }) => {
      const socket = resolve(o.socket);
      if (!existsSync(socket)) throw new CustosError('not_found', `No socket at ${socket}: start custos serve with an [[ssh_agent]] entry (or --agent-socket) and give its path.`);
      if (spawnSync('ssh-add', ['-h'], { stdio: 'ignore' }).error) throw new CustosError('not_found', 'ssh-add is not installed (apt-get install -y openssh-client): it reads the key files and their passphrases.');
      let chosen = files.map((f) => resolve(f));
      const notFound: string[] = [];
      if (o.fromAgent) {
        const from = process.env.SSH_AUTH_SOCK;
        if (!from) throw new CustosError('bad_request', '--from-agent reads the agent at $SSH_AUTH_SOCK, which is not set.');
        if (resolve(from) === socket) throw new CustosError('bad_request', '$SSH_AUTH_SOCK is the Custos socket itself; point it at the agent you are leaving.');
        const listed = spawnSync('ssh-add', ['-L'], { env: { ...process.env, SSH_AUTH_SOCK: from }, encoding: 'utf8' });
        if (listed.status === 1) throw new CustosError('not_found', `The agent at ${from} holds no keys.`);
        if (listed.status !== 0) throw new CustosError('storage_unavailable', `Cannot list the agent at ${from}: ${listed.stderr.trim()}`);
        const held = listed.stdout.split('\n').map(blobOf).filter((b): b is string => !!b);
        const byBlob = new Map(keyFiles(o.sshDir).map((f) => [blobOf(readFileSync(`${f}.pub`, 'utf8')), f]));
        for (const line of listed.stdout.split('\n').filter(Boolean)) {
          const f = byBlob.get(blobOf(line));
          if (f) chosen.push(f);
          else notFound.push(line.split(' ').slice(2).join(' ') || line.split(' ')[0]!);
        }
        if (held.length === 0) throw new CustosError('not_found', `The agent at ${from} holds no keys.`);
      } else if (chosen.length === 0) chosen = keyFiles(o.sshDir);
      chosen = [...new Set(chosen)];
      if (chosen.length === 0 && notFound.length === 0) throw new CustosError('not_found', `No key files: none given, and no ${o.sshDir}/id_* with a .pub beside it.`);
      const results: Array<{ file: string; imported: boolean; reason?: string }> = [];
      for (const file of chosen) {
        if (!o.json) process.stderr.write(`importing ${file}\n`);
        // ssh-add talks to the terminal itself (passphrase prompts, SSH_ASKPASS).
        await new Promise<void>((done) => {
          const p = spawn('ssh-add', [file], { env: { ...process.env, SSH_AUTH_SOCK: socket }, stdio: ['inherit', 'ignore', 'pipe'] });
          let err = '';
          p.stderr!.on('data', (d) => (err += d));
          p.on('close', (c) => {
            if (c !== 0) results.push({ file, imported: false, reason: err.trim().split('\n').pop() ?? `ssh-add exited with ${c}` });
            else results.push({ file, imported: true });
            done();
          });
        });
      }
      const ok = results.filter((r) => r.imported).length;
      if (o.json) out(JSON.stringify({ socket, imported: results, held_only_by_the_agent: notFound }, null, 2));
      else {
        for (const r of results) out(`${r.imported ? 'imported' : 'failed  '}  ${r.file}${r.reason ? `: ${r.reason}` : ''}`);
        for (const n of notFound) out(`not found ${n}: no key file in ${o.sshDir} matches it (a hardware or PKCS#11 key stays where it is)`);
        out(`${ok} of ${results.length} key(s) are in the vault now, offered on ${socket}. Test it: SSH_AUTH_SOCK=${socket} ssh-add -l`);
        if (ok > 0) out('Once you have checked them, delete the key files (keep an offline backup if your policy wants one): the vault holds them.');
      }
      if (ok < results.length || notFound.length > 0) process.exitCode = EXIT.checkFailed;
    });
}

/** The key blob (second field) of an OpenSSH public key line. */
function blobOf(line: string): string | undefined {
  const parts = line.trim().split(/\s+/);
  return parts.length >= 2 && /^[A-Za-z0-9+/]+={0,2}$/.test(parts[1]!) ? parts[1] : undefined;
}

/** `id_*` private key files in a directory that have a `.pub` beside them. */
function keyFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.startsWith('id_') && !f.endsWith('.pub') && existsSync(join(dir, `${f}.pub`)))
    .sort()
    .map((f) => join(dir, f));
}
