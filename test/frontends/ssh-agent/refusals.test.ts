/**
 * Every refusal of the agent leaves one audit entry (principal ssh-agent:<name>, a precise
 * reason code, public facts only) and one `info` log line that names the real cause and the
 * setting that decided it; lock and unlock are audited too. Driven with OpenSSH's own ssh-add
 * and ssh-keygen against a real socket and vault; where ssh-add cannot produce the input (it
 * verifies a certificate's CA signature itself before sending it), with a raw frame.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { makeVault, tempDir, type TestVault } from '../../helpers/tmpvault.js';
import { requireTool } from '../../helpers/require.js';
import { ROOT, runAsync as run } from '../../helpers/process.js';
import { agentSession, capturedLogger, ed25519Pair, INFO, openSshEd25519File } from '../../helpers/ssh-agent.js';
import { SshAgent } from '../../../src/frontends/ssh-agent/agent.js';
import { parsePublicKeyBlob, type SshCertificate } from '../../../src/frontends/ssh-agent/codec.js';
import { parseOpenSshPrivateKey } from '../../../src/crypto/openssh.js';
import { publicKeyFormats } from '../../../src/vault/vault.js';
import type { AuditEntry } from '../../../src/core/types.js';

const NAME = 'refusals';
const PRINCIPAL = `ssh-agent:${NAME}`;

let v: TestVault;
let dir: string;
let cleanup: () => void;
let keys: string;
let agent: SshAgent;
let log: ReturnType<typeof capturedLogger>;
let env: Record<string, string>;

before(async () => {
  v = await makeVault();
  ({ dir, cleanup } = tempDir());
  keys = join(dir, 'keys');
  mkdirSync(keys);
  log = capturedLogger();
  agent = new SshAgent(v.vault, { name: NAME, socketPath: join(dir, 'sock', 'a.sock'), keys: ['refuse-*'], allowSha1: false, allowConfirm: false, maxConnections: 16 }, log.logger);
  await agent.listen();
  env = { SSH_AUTH_SOCK: agent.config.socketPath, SSH_ASKPASS: '', DISPLAY: '' };
});

after(async () => {
  await agent.close();
  await v.dispose();
  cleanup();
});

const sshAdd = (args: string[]) => run('ssh-add', args, env);

async function keygen(name: string, type: string[]): Promise<string> {
  const file = join(keys, name);
  const r = await run('ssh-keygen', ['-q', ...type, '-N', '', '-C', `${name}@test`, '-f', file], {});
  assert.equal(r.status, 0, r.stderr);
  return file;
}

/** The fingerprint OpenSSH prints for a public key file. */
async function fingerprintOf(pubFile: string): Promise<string> {
  const r = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubFile], {});
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split(' ')[1]!;
}

type LogLine = (typeof log.lines)[number];

/** The audit entries and log lines an action produced. */
async function observe(action: () => Promise<unknown>): Promise<{ audit: AuditEntry[]; lines: LogLine[] }> {
  const seq = (await v.vault.auditTail(1))[0]?.seq ?? 0;
  const from = log.lines.length;
  await action();
  return { audit: (await v.vault.auditTail(200)).filter((e) => e.seq > seq), lines: log.lines.slice(from) };
}

/** Exactly one denied audit entry for (operation, reason) by the agent, and exactly one info line for it. */
function oneRefusal(got: { audit: AuditEntry[]; lines: LogLine[] }, operation: string, reason: string): { entry: AuditEntry; line: LogLine } {
  const entries = got.audit.filter((e) => e.operation === operation && e.reason === reason);
  assert.equal(entries.length, 1, `one ${operation}/${reason} audit entry; got ${JSON.stringify(got.audit.map((e) => [e.operation, e.outcome, e.reason]))}`);
  const entry = entries[0]!;
  assert.equal(entry.principal, PRINCIPAL);
  assert.equal(entry.outcome, 'denied');
  const lines = got.lines.filter((l) => l.reason === reason);
  assert.equal(lines.length, 1, `one log line for ${reason}; got:\n${got.lines.map((l) => JSON.stringify(l)).join('\n')}`);
  assert.equal(lines[0]!.level, INFO, 'refusals are logged at info, the default level');
  return { entry, line: lines[0]! };
}

test('lock, unlock and wrong passphrases are audited and logged; signing while locked is refused as agent_locked; no passphrase reaches either', async (t) => {
  if (!requireTool(t, 'python3', 'python3') || !requireTool(t, 'ssh-add', 'openssh-client')) return;
  const drive = join(ROOT, 'test', 'helpers', 'tty-drive.py');
  const withTty = (args: string[], answers: string[]) => run('python3', [drive, 'ssh-add', ...args], { ...env, TTY_ANSWERS: answers.join('\n') });
  const pass = 'lockpass-7f3a9c';
  const guess = 'wrong-guess-51be';
  const key = await keygen('locked_ed', ['-t', 'ed25519']);
  assert.equal((await sshAdd([key])).status, 0);
  const stored = (await v.store.listKeys()).find((k) => k.attributes['ssh.comment'] === 'locked_ed@test')!;
  const all: AuditEntry[] = [];

  const locked = await observe(async () => assert.equal((await withTty(['-x'], [pass, pass])).status, 0));
  const lockOk = locked.audit.filter((e) => e.operation === 'agent_lock');
  assert.equal(lockOk.length, 1);
  assert.equal(lockOk[0]!.outcome, 'ok');
  assert.equal(lockOk[0]!.principal, PRINCIPAL);
  assert.ok(locked.lines.some((l) => l.level === INFO && /locked/.test(l.msg)));
  all.push(...locked.audit);

  const signLocked = await observe(async () => assert.notEqual((await sshAdd(['-T', `${key}.pub`])).status, 0));
  const sl = oneRefusal(signLocked, 'sign', 'agent_locked');
  assert.equal(sl.entry.keyId, stored.id, 'the refused sign names the key it asked for');
  assert.equal(sl.entry.details.key_fingerprint, await fingerprintOf(`${key}.pub`));
  assert.match(sl.line.msg, /the agent is locked/);
  all.push(...signLocked.audit);

  const again = await observe(async () => assert.notEqual((await withTty(['-x'], [pass, pass])).status, 0));
  assert.match(oneRefusal(again, 'agent_lock', 'already_locked').line.msg, /already locked/);
  all.push(...again.audit);

  const wrong = await observe(async () => assert.notEqual((await withTty(['-X'], [guess])).status, 0));
  const w = oneRefusal(wrong, 'agent_unlock', 'wrong_passphrase');
  assert.equal(w.entry.details.failed_attempts, 1);
  all.push(...wrong.audit);

  const unlocked = await observe(async () => assert.equal((await withTty(['-X'], [pass])).status, 0));
  const unlockOk = unlocked.audit.filter((e) => e.operation === 'agent_unlock');
  assert.equal(unlockOk.length, 1);
  assert.equal(unlockOk[0]!.outcome, 'ok');
  all.push(...unlocked.audit);

  const notLocked = await observe(async () => assert.notEqual((await withTty(['-X'], [pass])).status, 0));
  oneRefusal(notLocked, 'agent_unlock', 'not_locked');
  all.push(...notLocked.audit);

  // Neither the audit log nor the log holds a passphrase, in any encoding.
  const everything = JSON.stringify(all) + log.text();
  for (const secret of [pass, guess]) {
    for (const form of [secret, Buffer.from(secret).toString('hex'), Buffer.from(secret).toString('base64')]) assert.ok(!everything.includes(form), `${form} was recorded`);
  }
});

test('signing with an unknown, removed or non-ssh key, or SHA-1 against allow_sha1 = false, is audited with its cause and logged naming the setting', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const keysSetting = 'keys = ["refuse-*"] in [[ssh_agent]] "refusals"';

  const stranger = await keygen('stranger', ['-t', 'ed25519']);
  const unknown = await observe(async () => assert.notEqual((await sshAdd(['-T', `${stranger}.pub`])).status, 0));
  const u = oneRefusal(unknown, 'sign', 'key_not_found');
  assert.equal(u.entry.keyId, null);
  assert.equal(u.entry.details.key_fingerprint, await fingerprintOf(`${stranger}.pub`));
  assert.match(String(u.entry.details.message_sha256), /^[0-9a-f]{64}$/, 'the message is recorded by hash only');
  assert.ok(u.line.msg.includes(keysSetting), u.line.msg);
  const unknownRemove = await observe(async () => assert.notEqual((await sshAdd(['-d', `${stranger}.pub`])).status, 0));
  oneRefusal(unknownRemove, 'agent_remove', 'key_not_found');

  const gone = await keygen('gone', ['-t', 'ed25519']);
  assert.equal((await sshAdd([gone])).status, 0);
  const goneKey = (await v.store.listKeys()).find((k) => k.attributes['ssh.comment'] === 'gone@test')!;
  assert.equal((await sshAdd(['-d', `${gone}.pub`])).status, 0);
  const removed = await observe(async () => assert.notEqual((await sshAdd(['-T', `${gone}.pub`])).status, 0));
  const r = oneRefusal(removed, 'sign', 'key_not_found');
  assert.equal(r.entry.keyId, goneKey.id, 'the removed key is named');
  assert.match(r.line.msg, /was removed \(ssh-add -d\/-D/);

  const validator = await v.vault.createKey(v.ctx(), { label: 'refuse-validator', algorithm: 'ed25519', exportable: false, attributes: { purpose: 'consensus' } });
  writeFileSync(join(keys, 'validator.pub'), publicKeyFormats(validator).openssh + '\n');
  const purpose = await observe(async () => assert.notEqual((await sshAdd(['-T', join(keys, 'validator.pub')])).status, 0));
  const p = oneRefusal(purpose, 'sign', 'key_purpose');
  assert.equal(p.entry.keyId, validator.id);
  assert.match(p.line.msg, /refuse-validator is a consensus key/);
  assert.ok(!purpose.audit.some((e) => e.operation === 'sign' && e.outcome === 'ok'), 'nothing was signed');

  const rsa = await keygen('legacy_rsa', ['-t', 'rsa', '-b', '2048']);
  assert.equal((await sshAdd([rsa])).status, 0);
  // OpenSSH 9.2's ssh-add -T asks RSA keys for ssh-rsa (flags 0).
  const sha1 = await observe(async () => assert.notEqual((await sshAdd(['-T', `${rsa}.pub`])).status, 0));
  const s = oneRefusal(sha1, 'sign', 'sha1_not_allowed');
  assert.ok(s.line.msg.includes('allow_sha1 = false in [[ssh_agent]] "refusals"'), s.line.msg);
  assert.equal(s.entry.keyId, (await v.store.listKeys()).find((k) => k.attributes['ssh.comment'] === 'legacy_rsa@test')!.id);
});

test('refused adds get a precise code: unsupported curve, RSA size and algorithm, confirm without allow_confirm, a private key that is not its public key\'s', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const before = (await v.store.listKeys()).length;

  const p384 = await keygen('p384', ['-t', 'ecdsa', '-b', '384']);
  const curve = await observe(async () => assert.notEqual((await sshAdd([p384])).status, 0));
  const c = oneRefusal(curve, 'agent_add', 'unsupported_algorithm');
  assert.equal(c.entry.details.key_type, 'ecdsa-sha2-nistp384');
  assert.equal(c.entry.details.key_fingerprint, await fingerprintOf(`${p384}.pub`));
  assert.match(c.line.msg, /ecdsa-sha2-nistp384 keys cannot be held by the vault/);

  const rsa1024 = await keygen('rsa1024', ['-t', 'rsa', '-b', '1024']);
  const small = await observe(async () => assert.notEqual((await sshAdd([rsa1024])).status, 0));
  assert.match(oneRefusal(small, 'agent_add', 'unsupported_algorithm').line.msg, /RSA-1024 keys cannot be held by the vault/);

  const dsa = await keygen('dsa', ['-t', 'dsa']);
  const algorithm = await observe(async () => assert.notEqual((await sshAdd([dsa])).status, 0));
  const d = oneRefusal(algorithm, 'agent_add', 'unsupported_algorithm');
  assert.equal(d.entry.details.key_type, 'ssh-dss');

  const confirmKey = await keygen('confirm_me', ['-t', 'ed25519']);
  const confirm = await observe(async () => assert.notEqual((await sshAdd(['-c', confirmKey])).status, 0));
  const cf = oneRefusal(confirm, 'agent_add', 'confirm_not_allowed');
  assert.ok(cf.line.msg.includes('allow_confirm = false in [[ssh_agent]] "refusals"'), cf.line.msg);

  // Someone's public key with a seed of one's own: the file is well formed, ssh-add sends it.
  const victim = ed25519Pair();
  const forged = new Uint8Array(randomBytes(32));
  const forgedFile = join(keys, 'forged');
  writeFileSync(forgedFile, openSshEd25519File(victim.pub, forged, 'forged@test'));
  chmodSync(forgedFile, 0o600);
  const mismatch = await observe(async () => assert.notEqual((await sshAdd([forgedFile])).status, 0));
  const m = oneRefusal(mismatch, 'agent_add', 'key_mismatch');
  assert.match(m.line.msg, /the private key does not match its public key/);

  assert.equal((await v.store.listKeys()).length, before, 'nothing was added');
  // Public facts only: no private key material in the audit log or the log.
  const everything = JSON.stringify([...curve.audit, ...small.audit, ...algorithm.audit, ...confirm.audit, ...mismatch.audit]) + log.text();
  for (const form of [Buffer.from(forged).toString('hex'), Buffer.from(forged).toString('base64')]) assert.ok(!everything.includes(form));
  for (const file of [p384, rsa1024, dsa, confirmKey]) {
    const b64 = readFileSync(file, 'utf8').split('\n').slice(1, -2).join('');
    assert.ok(!everything.includes(b64.slice(40, 100)), `${file} private key text was recorded`);
  }
});

test('a certificate whose CA signature does not verify is refused as invalid_certificate, not as a key mismatch', async (t) => {
  if (!requireTool(t, 'ssh-keygen', 'openssh-client')) return;
  const ca = await keygen('cert_ca', ['-t', 'ed25519']);
  const user = await keygen('cert_user', ['-t', 'ed25519']);
  const signed = await run('ssh-keygen', ['-q', '-s', ca, '-I', 'refusal-test', '-n', 'root', `${user}.pub`], {});
  assert.equal(signed.status, 0, signed.stderr);
  const certificate = new Uint8Array(Buffer.from(readFileSync(`${user}-cert.pub`, 'utf8').split(' ')[1]!, 'base64'));
  const parsed = parseOpenSshPrivateKey(readFileSync(user, 'utf8'));
  assert.equal(parsed.algorithm, 'ed25519');
  const certKey = (cert: Uint8Array, seed: Uint8Array) => {
    const c = parsePublicKeyBlob(cert) as SshCertificate;
    return { keyType: 'ssh-ed25519-cert-v01@openssh.com' as const, certificate: cert, cert: c, publicKey: parsed.publicKey, seed, comment: 'cert_user@test' };
  };
  const s = agentSession(agent.config.socketPath);
  try {
    // ssh-add itself refuses to load such a certificate (sshkey_from_blob verifies it), so
    // only a client of its own can send one: the last byte of the CA's signature, flipped.
    const altered = certificate.slice();
    altered[altered.length - 1]! ^= 1;
    const bad = await observe(async () => assert.equal((await s.send({ type: 'add_identity', key: certKey(altered, parsed.secret.slice()) })).type, 'failure'));
    const b = oneRefusal(bad, 'agent_add', 'invalid_certificate');
    assert.match(b.line.msg, /certificate signature does not verify under its CA key SHA256:/);
    assert.doesNotMatch(b.line.msg, /does not match/);
    assert.equal(b.entry.details.ca_fingerprint, await fingerprintOf(`${ca}.pub`));
    // The genuine certificate with someone else's private key: that one is a key mismatch.
    const other = await observe(async () => assert.equal((await s.send({ type: 'add_identity', key: certKey(certificate, new Uint8Array(randomBytes(32))) })).type, 'failure'));
    assert.match(oneRefusal(other, 'agent_add', 'key_mismatch').line.msg, /does not match the key its certificate certifies/);
    // And the genuine pair is accepted.
    assert.equal((await s.send({ type: 'add_identity', key: certKey(certificate, parsed.secret.slice()) })).type, 'success');
  } finally {
    s.close();
  }
});
