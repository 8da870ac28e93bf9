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
import { runAsync as run } from '../../helpers/process.js';
import { SshAgent } from '../../../src/frontends/ssh-agent/agent.js';
import { publicKeyFormats } from '../../../src/vault/vault.js';

const SSHD = '/usr/sbin/sshd';

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
  const user = await v.vault.createKey(v.ctx(), { label: 'login-user', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
  const ca = await v.vault.createKey(v.ctx(), { label: 'login-ca', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
  await v.vault.createKey(v.ctx(), { label: 'login-certuser', algorithm: 'p256', exportable: false, purpose: 'ssh' });
  writeFileSync(join(dir, 'authorized_keys'), publicKeyFormats(user).openssh + '\n', { mode: 0o600 });
  writeFileSync(join(dir, 'ca.pub'), publicKeyFormats(ca).openssh + '\n');
  const main = await startSshd('main');
  port = main.port;
});

interface Sshd {
  name: string;
  port: number;
  hostKeyLine: string;
  proc: ChildProcess;
  log(): string;
}

const daemons: Sshd[] = [];

/** An sshd on a free loopback port with its own host key, trusting authorized_keys and ca.pub. */
async function startSshd(name: string): Promise<Sshd> {
  const hostKey = join(dir, `hostkey_${name}`);
  const hk = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', hostKey]);
  assert.equal(hk.status, 0, hk.stderr);
  const p = await freePort();
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const cfg = join(dir, `sshd_config_${name}`);
  writeFileSync(
    cfg,
    [
      `Port ${p}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `TrustedUserCAKeys ${join(dir, 'ca.pub')}`,
      `PidFile ${join(dir, `sshd_${name}.pid`)}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin yes',
      'StrictModes no',
      'AllowAgentForwarding yes',
      'LogLevel VERBOSE',
    ].join('\n') + '\n',
  );
  const proc = spawn(SSHD, ['-D', '-e', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (d) => (log += d));
  for (let i = 0; i < 100 && !log.includes('Server listening'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(log, /Server listening on 127\.0\.0\.1/, log);
  const d: Sshd = { name, port: p, hostKeyLine: readFileSync(`${hostKey}.pub`, 'utf8').trim(), proc, log: () => log };
  daemons.push(d);
  if (name === 'main') sshdLogRef = d.log;
  return d;
}

let sshdLogRef: () => string = () => '';

after(async () => {
  if (skip) return;
  for (const d of daemons) d.proc.kill('SIGTERM');
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
  assert.equal(r.status, 0, `${r.stderr}\n--- sshd ---\n${sshdLogRef().slice(-2000)}`);
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
  assert.equal(s.status, 0, s.stderr);
  const cert = readFileSync(join(dir, 'certuser-cert.pub'), 'utf8');
  assert.match(cert, /^ecdsa-sha2-nistp256-cert-v01@openssh\.com /);
  // Only the certificate can work: the plain key is not in authorized_keys.
  const r = await ssh(['-o', 'IdentitiesOnly=yes', '-i', join(dir, 'certuser.pub'), '-o', `CertificateFile=${join(dir, 'certuser-cert.pub')}`], 'echo cert-login');
  assert.equal(r.status, 0, `${r.stderr}\n--- sshd ---\n${sshdLogRef().slice(-2000)}`);
  assert.equal(r.stdout.trim(), 'cert-login');
  assert.match(sshdLogRef(), /Accepted publickey for root .* ECDSA-CERT/);
});

test('agent forwarding with a destination-restricted key (ssh-add -h): the allowed next hop logs in, another hop is refused', async (t) => {
  if (skip) return t.skip(skip);
  const [a, b, c] = [await startSshd('hosta'), await startSshd('hostb'), await startSshd('hostc')];
  // A socket of its own that offers only the restricted key, so no other key can stand in.
  const fwd = new SshAgent(v.vault, { name: 'fwd', socketPath: join(dir, 'fwd', 'a.sock'), keys: [], allowSha1: false, maxConnections: 32 });
  await fwd.listen();
  try {
    const key = join(dir, 'restricted');
    const kg = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'restricted@test', '-f', key]);
    assert.equal(kg.status, 0, kg.stderr);
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${key}.pub`), { flag: 'a' });
    const kh = join(dir, 'known_hosts_restrict');
    writeFileSync(kh, [a, b, c].map((d) => `${d.name} ${d.hostKeyLine.split(' ').slice(0, 2).join(' ')}`).join('\n') + '\n');
    const env = { SSH_AUTH_SOCK: fwd.config.socketPath };
    const add = await run('ssh-add', ['-h', 'hosta', '-h', 'hosta>hostb', '-H', kh, key], env);
    assert.equal(add.status, 0, add.stderr);
    // Held by the vault, with its restriction bound into the envelope.
    const stored = (await v.store.listKeys()).find((k) => k.attributes['ssh.comment'] === 'restricted@test')!;
    assert.equal(typeof stored.attributes['ssh.destinations'], 'string');
    // Unbound (local) use for anything but a login is refused, as OpenSSH does.
    assert.notEqual((await run('ssh-add', ['-T', `${key}.pub`], env)).status, 0);

    const inner = (d: { port: number }, word: string) =>
      `ssh -F /dev/null -p ${d.port} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o PreferredAuthentications=publickey root@127.0.0.1 echo ${word}`;
    const outer = (command: string) =>
      run(
        'ssh',
        ['-F', '/dev/null', '-A', '-p', String(a.port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=${join(dir, 'kh_outer')}`, '-o', 'PreferredAuthentications=publickey', 'root@127.0.0.1', command],
        env,
      );
    const ok = await outer(inner(b, 'via-hostb'));
    assert.equal(ok.status, 0, `${ok.stderr}\n--- a ---\n${a.log().slice(-1500)}\n--- b ---\n${b.log().slice(-1500)}`);
    assert.equal(ok.stdout.trim(), 'via-hostb');
    const refused = await outer(inner(c, 'via-hostc'));
    assert.notEqual(refused.status, 0, 'hostc is not an allowed hop');
    assert.doesNotMatch(refused.stdout, /via-hostc/);
    assert.match(refused.stderr, /Permission denied/);
    // A direct login to hostb from the origin is not allowed either (only hosta first).
    const direct = await run('ssh', ['-F', '/dev/null', '-p', String(b.port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'PreferredAuthentications=publickey', 'root@127.0.0.1', 'echo direct'], env);
    assert.notEqual(direct.status, 0);
  } finally {
    await fwd.close();
  }
});
