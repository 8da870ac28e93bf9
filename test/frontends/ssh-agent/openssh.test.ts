/**
 * The agent against OpenSSH's own tools (ssh-add, ssh-keygen), with the keys in a real
 * vault on a SQLite file. The tools run as child processes while the agent serves them
 * from this process, so every call here is asynchronous.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { copyFileSync, chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { insertLegacyKey, makeVault, tempDir, ADMIN, type TestVault } from '../../helpers/tmpvault.js';
import { requireTool } from '../../helpers/require.js';
import { capturedLogger, INFO } from '../../helpers/ssh-agent.js';
import { ROOT, runAsync as run } from '../../helpers/process.js';
import { SshAgent, type AgentConfig } from '../../../src/frontends/ssh-agent/agent.js';
import { isCustosError } from '../../../src/core/errors.js';

const VECTORS = join(ROOT, '..', 'shared', 'vectors', 'ssh-agent', 'test-keys');

let v: TestVault;
let dir: string;
let cleanup: () => void;
let keys: string;
let agent: SshAgent;
let env: Record<string, string>;

function config(over: Partial<AgentConfig> = {}): AgentConfig {
  return { name: 'test', socketPath: join(dir, 'sock', 'agent.sock'), keys: ['vault-ssh-*'], allowSha1: true, maxConnections: 64, ...over };
}

const ssh = (args: string[], input?: string) => run('ssh-add', args, env, input);

before(async () => {
  v = await makeVault();
  ({ dir, cleanup } = tempDir());
  keys = join(dir, 'keys');
  mkdirSync(keys);
  agent = new SshAgent(v.vault, config());
  await agent.listen();
  env = { SSH_AUTH_SOCK: agent.config.socketPath, SSH_ASKPASS: '', DISPLAY: '' };
});

after(async () => {
  await agent.close();
  await v.dispose();
  cleanup();
});

/** A fresh key pair from ssh-keygen, so tests can add and remove without sharing state. */
async function keygen(name: string, type: string[]): Promise<string> {
  const file = join(keys, name);
  const r = await run('ssh-keygen', ['-q', ...type, '-N', '', '-C', `${name}@test`, '-f', file], {});
  assert.equal(r.status, 0, r.stderr);
  return file;
}

test('the socket is 0600 in a 0700 directory; a live socket is not taken over, a stale one is replaced', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  assert.equal(statSync(agent.config.socketPath).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'sock')).mode & 0o777, 0o700);
  const rival = new SshAgent(v.vault, config({ name: 'rival' }));
  await assert.rejects(rival.listen(), /Another agent is listening/);
  // A stale socket file (its process killed) is replaced.
  const staleDir = join(dir, 'stale');
  mkdirSync(staleDir, { mode: 0o700 });
  const stalePath = join(staleDir, 's.sock');
  const holder = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stalePath)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((r) => holder.stdout.once('data', r));
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
  assert.ok(existsSync(stalePath), 'the killed process left its socket file');
  const b = new SshAgent(v.vault, config({ name: 'stale2', socketPath: stalePath }));
  await b.listen();
  assert.equal((await run('ssh-add', ['-l'], { SSH_AUTH_SOCK: stalePath })).status, 1, 'the new agent answers (no identities)');
  await b.close();
});

test('an existing socket directory is checked, never chmod-ed: shared (1777), group-writable and foreign ones are refused, a private one works', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const hint = join(dir, 'vault', 'agent');
  const refused = async (d: string, ...expected: RegExp[]) => {
    const a = new SshAgent(v.vault, config({ name: 'dircheck', socketPath: join(d, 'agent.sock'), privateDirHint: hint }));
    const listened = await a.listen().then(
      () => true,
      (e: unknown) => {
        assert.ok(isCustosError(e) && e.code === 'config_invalid', String(e));
        assert.ok(e.message.includes(`directory ${d} `), e.message);
        for (const re of expected) assert.match(e.message, re);
        return false;
      },
    );
    if (listened) await a.close();
    assert.equal(listened, false, `the agent listened in ${d}`);
    assert.ok(!existsSync(join(d, 'agent.sock')), 'no socket was made there');
  };
  const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // What `--agent-socket shared/agent.sock` used to turn into 0700: a sticky world-writable directory.
  const shared = join(dir, 'shared');
  mkdirSync(shared);
  chmodSync(shared, 0o1777);
  await refused(shared, /writable by group and others \(mode 1777\)/, /leave its mode alone/, new RegExp(`choose a private directory such as ${escaped(hint)}`));
  assert.equal(statSync(shared).mode & 0o7777, 0o1777, 'the shared directory keeps its mode');
  // Ours but group-writable: the exact chmod to run is named.
  const team = join(dir, 'team');
  mkdirSync(team);
  chmodSync(team, 0o770);
  await refused(team, /writable by its group \(mode 0770\)/, new RegExp(`run \`chmod 700 ${escaped(team)}\``));
  assert.equal(statSync(team).mode & 0o7777, 0o770);
  // 0755 but someone else's: as root, a temporary directory given to nobody (65534); otherwise / (root's).
  let foreign = '/';
  if (process.getuid!() === 0) {
    foreign = join(dir, 'foreign');
    mkdirSync(foreign, { mode: 0o755 });
    chownSync(foreign, 65534, 65534);
  }
  const foreignMode = statSync(foreign).mode & 0o7777;
  await refused(foreign, new RegExp(`belongs to uid ${statSync(foreign).uid}`), new RegExp(`run \`chown ${escaped(userInfo().username)} ${escaped(foreign)}\``));
  assert.equal(statSync(foreign).mode & 0o7777, foreignMode, 'the foreign directory keeps its mode');
  // A private directory that exists (0750: readable, but writable by its owner only) is used as it is.
  const mine = join(dir, 'mine');
  mkdirSync(mine);
  chmodSync(mine, 0o750);
  const ok = new SshAgent(v.vault, config({ name: 'dirok', socketPath: join(mine, 'agent.sock') }));
  await ok.listen();
  try {
    assert.equal(statSync(mine).mode & 0o7777, 0o750);
    assert.equal(statSync(ok.config.socketPath).mode & 0o777, 0o600);
    assert.equal((await run('ssh-add', ['-l'], { SSH_AUTH_SOCK: ok.config.socketPath })).status, 1, 'it answers (no identities)');
  } finally {
    await ok.close();
  }
});

test('configured vault keys are offered; ssh-add -L matches the vault public key', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const k = await v.vault.createKey(v.ctx(), { label: 'vault-ssh-deploy', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
  await v.vault.createKey(v.ctx(), { label: 'not-offered', algorithm: 'ed25519', exportable: false });
  await v.vault.createKey(v.ctx(), { label: 'vault-ssh-bitcoin', algorithm: 'secp256k1', exportable: false });
  const r = await ssh(['-L']);
  assert.equal(r.status, 0, r.stderr);
  const { publicKeyFormats } = await import('../../../src/vault/vault.js');
  assert.ok(r.stdout.includes(publicKeyFormats(k).openssh!.split(' ').slice(0, 2).join(' ')), r.stdout);
  assert.ok(!r.stdout.includes('not-offered'), 'a key outside the configured patterns is offered');
  assert.equal(r.stdout.trim().split('\n').length, 1, 'secp256k1 is not an SSH algorithm and is not offered');
});

test('only keys whose purpose allows ssh are offered: a matched consensus or general key is neither listed nor used, and is named once in the log', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const { publicKeyFormats } = await import('../../../src/vault/vault.js');
  const validator = await v.vault.createKey(v.ctx(), { label: 'purpose-validator', algorithm: 'ed25519', exportable: false, attributes: { purpose: 'consensus' } });
  const general = await v.vault.createKey(v.ctx(), { label: 'purpose-general', algorithm: 'ed25519', exportable: false, attributes: { purpose: 'general' } });
  const login = await v.vault.createKey(v.ctx(), { label: 'purpose-login', algorithm: 'ed25519', exportable: false, attributes: { purpose: 'ssh' } });
  const legacy = await insertLegacyKey(v, 'purpose-legacy');
  const log = capturedLogger();
  const pa = new SshAgent(v.vault, config({ name: 'purpose', socketPath: join(dir, 'purpose', 'a.sock'), keys: ['purpose-*'] }), log.logger);
  await pa.listen();
  try {
    const penv = { SSH_AUTH_SOCK: pa.config.socketPath };
    const blobOf = (k: typeof login) => publicKeyFormats(k).openssh!.split(' ')[1]!;
    for (let i = 0; i < 2; i++) {
      const listed = await run('ssh-add', ['-L'], penv);
      assert.equal(listed.status, 0, listed.stderr);
      assert.ok(listed.stdout.includes(blobOf(login)) && listed.stdout.includes(blobOf(legacy)), 'ssh and legacy keys are offered');
      assert.ok(!listed.stdout.includes(blobOf(validator)), 'a consensus key is not offered');
      assert.ok(!listed.stdout.includes(blobOf(general)), 'a general key is not offered');
    }
    // Not listed is not enough: asked for by its public key, it must not sign either.
    writeFileSync(join(keys, 'validator.pub'), publicKeyFormats(validator).openssh + '\n');
    assert.notEqual((await run('ssh-add', ['-T', join(keys, 'validator.pub')], penv)).status, 0, 'the consensus key signed through the agent');
    for (const [k, purpose] of [[validator, 'consensus'], [general, 'general']] as const) {
      const lines = log.lines.filter((l) => l.level === INFO && l.key === k.label && l.purpose === purpose && /does not offer/.test(l.msg));
      assert.equal(lines.length, 1, `one info line names ${k.label} and its purpose:\n${log.text()}`);
      assert.match(lines[0]!.msg, /keys pattern "purpose-\*" in \[\[ssh_agent\]\] "purpose"/);
    }
    // Keys added with ssh-add are made for SSH and nothing else.
    const added = await keygen('purpose_added', ['-t', 'ed25519']);
    assert.equal((await run('ssh-add', [added], penv)).status, 0);
    const stored = (await v.store.listKeys()).find((k) => k.attributes['ssh.comment'] === 'purpose_added@test')!;
    assert.equal(stored.attributes.purpose, 'ssh');
  } finally {
    await pa.close();
  }
});

test('keys added with ssh-add (ed25519 with certificate, ECDSA, RSA) are vault keys, list, and sign for ssh-add -T', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  if (!existsSync(VECTORS)) return t.skip('the OpenSSH test keys come from ../shared/vectors/ssh-agent (absent here)');
  for (const f of ['k_ed25519', 'k_ed25519.pub', 'k_ed25519-cert.pub', 'k_ecdsa', 'k_ecdsa.pub', 'k_rsa', 'k_rsa.pub']) {
    copyFileSync(join(VECTORS, f), join(keys, f));
    chmodSync(join(keys, f), 0o600);
  }
  const add = await ssh([join(keys, 'k_ed25519'), join(keys, 'k_ecdsa'), join(keys, 'k_rsa')]);
  assert.equal(add.status, 0, add.stderr);
  assert.match(add.stderr, /Certificate added/);
  const list = await ssh(['-l']);
  assert.match(list.stdout, /ED25519-CERT/);
  assert.match(list.stdout, /ECDSA/);
  assert.match(list.stdout, /3072 .* \(RSA\)/);
  const stored = (await v.store.listKeys()).filter((k) => k.attributes['ssh.socket'] === 'test');
  assert.equal(stored.length, 4, 'key, certificate, ECDSA and RSA are stored in the vault');
  assert.ok(stored.every((k) => k.sealed !== null && k.origin === 'imported'));
  // -T signs 1 KiB with each key and verifies locally; RSA with flags 0 wants ssh-rsa (SHA-1).
  const tst = await ssh(['-T', join(keys, 'k_ed25519.pub'), join(keys, 'k_ecdsa.pub'), join(keys, 'k_rsa.pub')]);
  assert.equal(tst.status, 0, tst.stderr);
  const audit = await v.store.auditTail(40);
  assert.ok(audit.some((e) => e.principal === 'ssh-agent:test' && e.operation === 'sign' && e.outcome === 'ok'));
});

test('legacy ssh-rsa (SHA-1) signatures are refused when the socket does not allow them', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const strict = new SshAgent(v.vault, config({ name: 'strict', socketPath: join(dir, 'strict', 'a.sock'), allowSha1: false }));
  await strict.listen();
  try {
    const senv = { SSH_AUTH_SOCK: strict.config.socketPath };
    const rsa = await keygen('strict_rsa', ['-t', 'rsa', '-b', '2048']);
    assert.equal((await run('ssh-add', [rsa], senv)).status, 0);
    const r = await run('ssh-add', ['-T', `${rsa}.pub`], senv);
    assert.notEqual(r.status, 0, 'ssh-add -T should fail: it asks for SHA-1');
    // ssh-keygen -Y sign asks for rsa-sha2-512, which is fine.
    writeFileSync(join(keys, 'doc'), 'a document');
    const s = await run('ssh-keygen', ['-Y', 'sign', '-f', `${rsa}.pub`, '-n', 'file', join(keys, 'doc')], senv);
    assert.equal(s.status, 0, s.stderr);
  } finally {
    await strict.close();
  }
});

test('ssh-keygen -Y sign through the agent verifies with -Y verify, and audit names the namespace', async (t) => {
  if (!requireTool(t, 'ssh-keygen', 'openssh-client')) return;
  const key = await keygen('sig_ed', ['-t', 'ed25519']);
  assert.equal((await ssh([key])).status, 0);
  const doc = join(keys, 'release.tar');
  writeFileSync(doc, 'release contents');
  const s = await run('ssh-keygen', ['-Y', 'sign', '-f', `${key}.pub`, '-n', 'file', doc], env);
  assert.equal(s.status, 0, s.stderr);
  const pub = readFileSync(`${key}.pub`, 'utf8').trim();
  writeFileSync(join(keys, 'allowed'), `signer@test ${pub}\n`);
  const ok = await run('ssh-keygen', ['-Y', 'verify', '-f', join(keys, 'allowed'), '-I', 'signer@test', '-n', 'file', '-s', `${doc}.sig`], env, 'release contents');
  assert.equal(ok.status, 0, ok.stderr + ok.stdout);
  assert.match(ok.stdout, /Good "file" signature/);
  const entries = await v.store.auditTail(10);
  assert.ok(entries.some((e) => e.operation === 'sign' && e.outcome === 'ok' && e.details.sshsig_namespace === 'file'));
});

test('ssh-add -d destroys a key added over the agent, but only hides a configured vault key', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  // The socket made its (empty) list of hidden keys when it started.
  assert.equal(await v.store.getMeta('ssh_agent.test.hidden'), '[]');
  const key = await keygen('del_ed', ['-t', 'ed25519']);
  assert.equal((await ssh([key])).status, 0);
  const added = (await v.store.listKeys()).find((k) => k.attributes['ssh.comment'] === 'del_ed@test')!;
  assert.equal((await ssh(['-d', `${key}.pub`])).status, 0);
  assert.equal((await v.vault.getKey(added.id)).state, 'destroyed');
  const vk = await v.vault.createKey(v.ctx(), { label: 'vault-ssh-hideme', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
  const line = (await import('../../../src/vault/vault.js')).publicKeyFormats(vk).openssh!;
  writeFileSync(join(keys, 'hideme.pub'), line + '\n');
  assert.equal((await ssh(['-d', join(keys, 'hideme.pub')])).status, 0);
  assert.ok(!(await ssh(['-L'])).stdout.includes('vault-ssh-hideme'), 'hidden from this socket');
  assert.equal((await v.vault.getKey(vk.id)).state, 'active', 'the vault key itself is untouched');
  // Hidden until an operator restores it, across agent restarts too.
  await agent.close();
  agent = new SshAgent(v.vault, config());
  await agent.listen();
  assert.ok(!(await ssh(['-L'])).stdout.includes('vault-ssh-hideme'), 'still hidden after a restart');
  assert.equal(await v.vault.restoreAgent(v.ctx(), 'test'), 1);
  assert.ok((await ssh(['-L'])).stdout.includes('vault-ssh-hideme'), 'offered again after restore');
  // The socket's list is emptied, not removed: a row always there is read without a count of the table.
  assert.equal(await v.store.getMeta('ssh_agent.test.hidden'), '[]');
  assert.equal(await v.vault.restoreAgent(v.ctx(), 'test'), 0);
  const tail = await v.store.auditTail(10);
  assert.ok(tail.some((e) => e.operation === 'agent_hide' && e.keyId === vk.id));
  assert.ok(tail.some((e) => e.operation === 'agent_restore'));
});

test('ssh-add -t: the key is forgotten when its lifetime ends (destroyed in the vault)', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const key = await keygen('short', ['-t', 'ed25519']);
  assert.equal((await ssh(['-t', '1', key])).status, 0);
  assert.match((await ssh(['-l'])).stdout, /short@test/);
  await new Promise((r) => setTimeout(r, 1500));
  assert.doesNotMatch((await ssh(['-l'])).stdout, /short@test/);
  const k = (await v.store.listKeys()).find((x) => x.attributes['ssh.comment'] === 'short@test')!;
  await v.vault.destroyExpired(ADMIN);
  assert.equal((await v.vault.getKey(k.id)).state, 'destroyed');
});

test('ssh-add -c is refused (no approver configured), and nothing is added', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const key = await keygen('confirm', ['-t', 'ed25519']);
  const r = await ssh(['-c', key]);
  assert.notEqual(r.status, 0);
  assert.doesNotMatch((await ssh(['-l'])).stdout, /confirm@test/);
});

test('ssh-add -c on a socket with approvals: each use waits for `custos approve`; a denial refuses it', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const confirmAgent = new SshAgent(v.vault, config({ name: 'confirming', socketPath: join(dir, 'confirm', 'a.sock'), allowConfirm: true }));
  await confirmAgent.listen();
  try {
    const cenv = { SSH_AUTH_SOCK: confirmAgent.config.socketPath };
    const key = await keygen('confirmed', ['-t', 'ed25519']);
    assert.equal((await run('ssh-add', ['-c', key], cenv)).status, 0);
    const approver = { principal: { id: 'token:admin', kind: 'admin' as const }, requestId: 'approve' };
    const waitPending = async () => {
      for (let i = 0; i < 300; i++) {
        const [p] = v.vault.approvals.pending();
        if (p) return p;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error('no approval request appeared');
    };
    const approved = run('ssh-add', ['-T', `${key}.pub`], cenv);
    const p1 = await waitPending();
    assert.equal(p1.requester, 'ssh-agent:confirming');
    await v.vault.decideApproval(approver, p1.id, true);
    assert.equal((await approved).status, 0, 'approved: ssh-add -T succeeds');
    const denied = run('ssh-add', ['-T', `${key}.pub`], cenv);
    await v.vault.decideApproval(approver, (await waitPending()).id, false);
    assert.notEqual((await denied).status, 0, 'denied: ssh-add -T fails');
  } finally {
    await confirmAgent.close();
  }
});

test('keys added over the agent survive an agent restart', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const key = await keygen('durable', ['-t', 'ecdsa', '-b', '256']);
  assert.equal((await ssh([key])).status, 0);
  await agent.close();
  agent = new SshAgent(v.vault, config());
  await agent.listen();
  assert.match((await ssh(['-l'])).stdout, /durable@test/);
});

test('lock and unlock: a locked agent lists nothing and signs nothing; a wrong passphrase is refused', async (t) => {
  if (!requireTool(t, 'python3', 'python3') || !requireTool(t, 'ssh-add', 'openssh-client')) return;
  const drive = join(ROOT, 'test', 'helpers', 'tty-drive.py');
  const withTty = (args: string[], answers: string[]) => run('python3', [drive, 'ssh-add', ...args], { ...env, TTY_ANSWERS: answers.join('\n') });
  const before = (await ssh(['-l'])).stdout;
  assert.ok(before.trim().length > 0);
  assert.equal((await withTty(['-x'], ['lockpass', 'lockpass'])).status, 0);
  const locked = await ssh(['-l']);
  assert.equal(locked.status, 1, 'a locked agent lists no identities');
  const wrong = await withTty(['-X'], ['nope']);
  assert.notEqual(wrong.status, 0);
  assert.equal((await withTty(['-X'], ['lockpass'])).status, 0);
  assert.equal((await ssh(['-l'])).stdout, before);
});

test('ssh-add -D removes everything on this socket (type 19, then the legacy type 9)', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const r = await ssh(['-D']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr + r.stdout, /All identities removed/);
  assert.equal((await ssh(['-l'])).status, 1);
});

test('a stuck client (half a frame, never finished) does not stall other clients', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const stuck = connect(agent.config.socketPath);
  await new Promise((r) => stuck.on('connect', r));
  stuck.write(Uint8Array.from([0, 0, 0, 50, 11])); // promises 50 bytes, sends 1
  const silent = connect(agent.config.socketPath); // connects and never sends
  await new Promise((r) => silent.on('connect', r));
  const r = await ssh(['-l']);
  assert.ok(r.status === 0 || r.status === 1, r.stderr);
  stuck.destroy();
  silent.destroy();
});

test('100,000 mutated frames and length lies never hurt the agent: it answers each and keeps serving', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const { fuzzAgent } = await import('../../../scripts/fuzz-agent.js');
  const r = await fuzzAgent(agent.config.socketPath, Number(process.env.CUSTOS_AGENT_FUZZ_FRAMES ?? 100_000));
  t.diagnostic(JSON.stringify(r));
  assert.ok(r.answered > 0.8 * r.sent, `only ${r.answered} of ${r.sent} frames were answered`);
  const big = new Uint8Array(8);
  new DataView(big.buffer).setUint32(0, 256 * 1024 + 1);
  await new Promise<void>((resolve) => {
    const s = connect(agent.config.socketPath);
    s.on('connect', () => s.write(big));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
  const list = await ssh(['-l']);
  assert.ok(list.status === 0 || list.status === 1, list.stderr);
  assert.equal((await v.store.integrityCheck()).length, 0);
});

test('Tor ed25519-expanded keys: added over the protocol, never listed, sign only through tor-sign@custos.dev, never a plain sign request or an SSH login', async (t) => {
  const { encodeRequest, decodeResponse, frame: frameOf, FrameReader, KEY_ED25519_EXPANDED, encodePublicKeyBlob } = await import('../../../src/frontends/ssh-agent/codec.js');
  const { verifySignature } = await import('../../../src/crypto/algorithms.js');
  const { sha512 } = await import('@noble/hashes/sha2.js');
  const { ed25519 } = await import('@noble/curves/ed25519.js');
  // An expanded key as Tor makes it: SHA-512 of a seed, clamped; public key a·B.
  const h = sha512(new Uint8Array(32).fill(9));
  h[0]! &= 248;
  h[31]! &= 63;
  h[31]! |= 64;
  let a = 0n;
  for (let i = 31; i >= 0; i--) a = (a << 8n) | BigInt(h[i]!);
  const publicKey = ed25519.Point.BASE.multiply(a % ed25519.Point.Fn.ORDER).toBytes();
  const talk = (reqs: Uint8Array[]) =>
    new Promise<ReturnType<typeof decodeResponse>[]>((resolve, reject) => {
      const s = connect(agent.config.socketPath);
      const reader = new FrameReader();
      const out: ReturnType<typeof decodeResponse>[] = [];
      s.on('data', (d) => {
        for (const b of reader.push(d)) out.push(decodeResponse(b));
        if (out.length === reqs.length) s.end();
      });
      s.on('close', () => resolve(out));
      s.on('error', reject);
      s.on('connect', () => s.write(Buffer.concat(reqs.map((r) => frameOf(r)))));
    });
  const blob = encodePublicKeyBlob({ keyType: 'ssh-ed25519', publicKey });
  const data = new TextEncoder().encode('onion service descriptor');
  const userauth = Buffer.concat([Buffer.from([0, 0, 0, 32]), Buffer.alloc(32, 1), Buffer.from([50]), ...['root', 'ssh-connection', 'publickey'].map((x) => Buffer.concat([Buffer.from([0, 0, 0, x.length]), Buffer.from(x)])), Buffer.from([1]), Buffer.from([0, 0, 0, 11]), Buffer.from('ssh-ed25519'), Buffer.from([0, 0, 0, blob.length]), Buffer.from(blob)]);
  const { encodeTorExtension, decodeTorReply, EXT_TOR_SIGN } = await import('../../../src/frontends/ssh-agent/tor-extensions.js');
  const [added, listed, plain, login, signed, query] = await talk([
    encodeRequest({ type: 'add_identity', key: { keyType: KEY_ED25519_EXPANDED, publicKey, expandedSecret: h, comment: 'hs_ed25519' } }),
    encodeRequest({ type: 'request_identities' }),
    encodeRequest({ type: 'sign_request', keyBlob: blob, data, flags: 0 }),
    encodeRequest({ type: 'sign_request', keyBlob: blob, data: new Uint8Array(userauth), flags: 0 }),
    encodeRequest({ type: 'extension', name: EXT_TOR_SIGN, data: encodeTorExtension({ name: EXT_TOR_SIGN, keyBlob: blob, data }) }),
    encodeRequest({ type: 'extension_query' }),
  ]);
  assert.equal(added!.type, 'success');
  assert.ok(listed!.type === 'identities_answer' && !listed!.identities.some((i) => Buffer.compare(i.keyBlob, blob) === 0), 'an expanded key is listed');
  assert.equal(plain!.type, 'failure', 'a Tor key does not answer a plain sign request');
  assert.equal(login!.type, 'failure', 'a Tor key must not sign an SSH login');
  assert.ok(signed!.type === 'extension_response' && signed!.name === EXT_TOR_SIGN, JSON.stringify(signed));
  const [sig] = decodeTorReply((signed as { data: Uint8Array }).data, 1);
  assert.ok(verifySignature('ed25519', publicKey, { kind: 'message', bytes: data }, sig!, {}), 'the signature verifies under the Tor public key');
  assert.ok(query!.type === 'query_response' && query!.extensions.includes(EXT_TOR_SIGN), 'query advertises the Tor extensions');
});
