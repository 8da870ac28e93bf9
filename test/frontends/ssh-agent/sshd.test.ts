/**
 * Real logins: OpenSSH's `ssh` authenticates to an `sshd` that this test starts on a
 * loopback port, with the private keys held by the vault behind the Custos agent. First a
 * plain user key, then a certificate that a CA key in the vault signed with `ssh-keygen -s`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { makeVault, tempDir, type TestVault } from '../../helpers/tmpvault.js';
import { hasTool } from '../../helpers/require.js';
import { SshAgent } from '../../../src/frontends/ssh-agent/agent.js';
import { publicKeyFormats } from '../../../src/vault/vault.js';

const SSHD = '/usr/sbin/sshd';

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

let skip: string | null = null;
let v: TestVault;
let dir: string;
let cleanup: () => void;
let agent: SshAgent;
let sshd: ChildProcess | null = null;
let sshdLog = '';
let port = 0;

before(async () => {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!existsSync(SSHD) || !hasTool('ssh') || !isRoot) {
    skip = !isRoot ? 'sshd needs root to run a login test' : 'sshd or ssh is not installed: apt-get install -y openssh-server openssh-client';
    if (process.env.CI) throw new Error(`${skip} (required in CI)`);
    return;
  }
  v = await makeVault();
  ({ dir, cleanup } = tempDir());
  agent = new SshAgent(v.vault, { name: 'login', socketPath: join(dir, 'agent', 'a.sock'), keys: ['login-*'], allowSha1: false, maxConnections: 32 });
  await agent.listen();
  const user = await v.vault.createKey(v.ctx(), { label: 'login-user', algorithm: 'ed25519', exportable: false });
  const ca = await v.vault.createKey(v.ctx(), { label: 'login-ca', algorithm: 'ed25519', exportable: false });
  await v.vault.createKey(v.ctx(), { label: 'login-certuser', algorithm: 'p256', exportable: false });
  writeFileSync(join(dir, 'authorized_keys'), publicKeyFormats(user).openssh + '\n', { mode: 0o600 });
  writeFileSync(join(dir, 'ca.pub'), publicKeyFormats(ca).openssh + '\n');
  const hk = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'hostkey')]);
  assert.equal(hk.code, 0, hk.stderr);
  port = await freePort();
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'hostkey')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `TrustedUserCAKeys ${join(dir, 'ca.pub')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin yes',
      'StrictModes no',
      'AllowAgentForwarding yes',
      'LogLevel VERBOSE',
    ].join('\n') + '\n',
  );
  sshd = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  sshd.stderr!.on('data', (d) => (sshdLog += d));
  for (let i = 0; i < 100 && !sshdLog.includes('Server listening'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(sshdLog, /Server listening on 127\.0\.0\.1/);
});

after(async () => {
  if (skip) return;
  sshd?.kill('SIGTERM');
  await agent.close();
  await v.dispose();
  cleanup();
});

function ssh(extra: string[], command: string) {
  return run(
    'ssh',
    [
      '-p', String(port),
      '-o', `IdentityAgent=${agent.config.socketPath}`,
      '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=no',
      '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
      '-o', 'PreferredAuthentications=publickey',
      '-F', '/dev/null',
      ...extra,
      'root@127.0.0.1',
      command,
    ],
  );
}

test('ssh logs in to sshd with a user key held in the vault; the audit log names the user and the bound session', async (t) => {
  if (skip) return t.skip(skip);
  const r = await ssh([], 'echo hello-from-sshd');
  assert.equal(r.code, 0, `${r.stderr}\n--- sshd ---\n${sshdLog.slice(-2000)}`);
  assert.equal(r.stdout.trim(), 'hello-from-sshd');
  const entries = await v.store.auditTail(20);
  const signed = entries.find((e) => e.operation === 'sign' && e.outcome === 'ok' && e.principal === 'ssh-agent:login');
  assert.ok(signed, 'the login signature is audited');
  assert.equal(signed!.details.ssh_user, 'root');
  assert.equal(signed!.details.ssh_session_bound, 'yes', 'ssh bound the session before asking for the signature');
});

test('a certificate signed by a CA key in the vault (ssh-keygen -s through the agent) logs in', async (t) => {
  if (skip) return t.skip(skip);
  const certUser = await v.vault.getKey('login-certuser');
  writeFileSync(join(dir, 'certuser.pub'), publicKeyFormats(certUser).openssh + '\n');
  // The CA's private key never leaves the vault: ssh-keygen asks the agent to sign (-U).
  const s = await run('ssh-keygen', ['-s', join(dir, 'ca.pub'), '-U', '-I', 'custos-test', '-n', 'root', '-V', '+1h', join(dir, 'certuser.pub')], {
    SSH_AUTH_SOCK: agent.config.socketPath,
  });
  assert.equal(s.code, 0, s.stderr);
  const cert = readFileSync(join(dir, 'certuser-cert.pub'), 'utf8');
  assert.match(cert, /^ecdsa-sha2-nistp256-cert-v01@openssh\.com /);
  // Only the certificate can work: the plain key is not in authorized_keys.
  const r = await ssh(['-o', 'IdentitiesOnly=yes', '-i', join(dir, 'certuser.pub'), '-o', `CertificateFile=${join(dir, 'certuser-cert.pub')}`], 'echo cert-login');
  assert.equal(r.code, 0, `${r.stderr}\n--- sshd ---\n${sshdLog.slice(-2000)}`);
  assert.equal(r.stdout.trim(), 'cert-login');
  assert.match(sshdLog, /Accepted publickey for root .* ECDSA-CERT/);
});
