/**
 * `custos ssh-agent import`: key files (one with a passphrase, given through OpenSSH's own
 * askpass) and the keys a running OpenSSH ssh-agent holds move into the vault through a Custos
 * socket, with OpenSSH's ssh-add reading the files; then OpenSSH signs through Custos.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmpvault.js';
import { custos, custosAsync, runAsync, serve } from '../helpers/process.js';
import { requireTool } from '../helpers/require.js';
import { startOpenSshAgent } from '../helpers/ssh-agent.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'ssh import test passphrase' };

test('ssh-agent import: ~/.ssh key files (one encrypted) and --from-agent move into the vault; ssh-keygen -Y sign works through Custos', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client') || !requireTool(t, 'ssh-agent', 'openssh-client')) return;
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'v');
  assert.equal(custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV).status, 0);
  writeFileSync(join(dataDir, 'custos.toml'), '[[ssh_agent]]\nname = "me"\nsocket = "agent/me.sock"\n', { mode: 0o600 });
  const s = await serve(['--data-dir', dataDir], PASSENV);
  const old = await startOpenSshAgent(join(dir, 'old-agent.sock'));
  try {
    const sock = join(dataDir, 'agent', 'me.sock');
    const ssh = join(dir, 'ssh');
    mkdirSync(ssh, { mode: 0o700 });
    const keygen = (args: string[]) => assert.equal(runSync('ssh-keygen', ['-q', ...args]), 0);
    keygen(['-t', 'ed25519', '-N', '', '-C', 'plain', '-f', join(ssh, 'id_ed25519')]);
    keygen(['-t', 'ecdsa', '-b', '256', '-N', 'file passphrase', '-C', 'locked', '-f', join(ssh, 'id_ecdsa')]);
    const askpass = join(dir, 'askpass.sh');
    writeFileSync(askpass, '#!/bin/sh\necho "file passphrase"\n');
    chmodSync(askpass, 0o700);
    const env = { SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0' };

    const r = await custosAsync(['ssh-agent', 'import', '--socket', sock, '--ssh-dir', ssh], env);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /2 of 2 key\(s\) are in the vault now/);
    const listed = await runAsync('ssh-add', ['-L'], { SSH_AUTH_SOCK: sock });
    for (const f of ['id_ed25519', 'id_ecdsa']) {
      const blob = readFileSync(join(ssh, `${f}.pub`), 'utf8').split(' ')[1]!;
      assert.ok(listed.stdout.includes(blob), `${f} is offered by the Custos socket`);
    }
    // OpenSSH signs through the vault with the imported key.
    writeFileSync(join(dir, 'msg'), 'hello');
    const sig = await runAsync('ssh-keygen', ['-Y', 'sign', '-f', join(ssh, 'id_ecdsa.pub'), '-n', 'file', join(dir, 'msg')], { SSH_AUTH_SOCK: sock });
    assert.equal(sig.status, 0, sig.stderr);

    // --from-agent: the old agent holds one key with a file and one whose file is gone.
    const other = join(dir, 'other');
    mkdirSync(other, { mode: 0o700 });
    keygen(['-t', 'ed25519', '-N', '', '-C', 'with-file', '-f', join(other, 'id_work')]);
    keygen(['-t', 'ed25519', '-N', '', '-C', 'agent-only', '-f', join(other, 'id_gone')]);
    assert.equal((await runAsync('ssh-add', [join(other, 'id_work'), join(other, 'id_gone')], { SSH_AUTH_SOCK: old.path })).status, 0);
    rmSync(join(other, 'id_gone'));
    rmSync(join(other, 'id_gone.pub'));
    const fa = await custosAsync(['ssh-agent', 'import', '--socket', sock, '--from-agent', '--ssh-dir', other, '--json'], { SSH_AUTH_SOCK: old.path });
    assert.equal(fa.status, 1, 'a key held only by the agent is reported, and the exit says not everything moved');
    const j = JSON.parse(fa.stdout);
    assert.deepEqual(j.imported.map((x: { file: string; imported: boolean }) => [x.file, x.imported]), [[join(other, 'id_work'), true]]);
    assert.deepEqual(j.held_only_by_the_agent, ['agent-only']);
    assert.ok((await runAsync('ssh-add', ['-L'], { SSH_AUTH_SOCK: sock })).stdout.includes(readFileSync(join(other, 'id_work.pub'), 'utf8').split(' ')[1]!));
  } finally {
    await old.stop();
    await s.stop();
    cleanup();
  }
});

function runSync(cmd: string, args: string[]): number | null {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status;
}
