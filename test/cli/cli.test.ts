/** The real `custos` executable end to end: init, serve, keys, sign/verify, audit, dev mode. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { tempDir } from '../helpers/tmpvault.js';
import { BIN, ROOT, custos, serve } from '../helpers/process.js';
import { EXIT } from '../../src/cli/exit.js';
import { requireTool } from '../helpers/require.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'cli test passphrase' };

let lastAuditKey = '';

function initVault(dataDir: string): string {
  const r = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV);
  assert.equal(r.status, 0, r.stderr);
  const token = /custos_[A-Za-z0-9_-]{43}/.exec(r.stdout)?.[0];
  assert.ok(token, r.stdout);
  lastAuditKey = /Audit public key[^\n]*\n\s+([0-9a-f]{64})/.exec(r.stdout)?.[1] ?? '';
  assert.match(lastAuditKey, /^[0-9a-f]{64}$/, r.stdout);
  return token;
}

test('every command answers --help with exit 0', () => {
  for (const args of [[], ['init'], ['serve'], ['keys'], ['keys', 'create'], ['keys', 'import'], ['keys', 'export'], ['sign'], ['verify'], ['audit', 'verify'], ['audit', 'tail'], ['reload'], ['status'], ['privval', 'setup'], ['privval', 'import-state'], ['privval', 'status'], ['ssh-agent', 'import'], ['tls', 'init'], ['tls', 'client'], ['tokens', 'create'], ['tokens', 'update'], ['tokens', 'revoke'], ['tokens', 'rotate'], ['tokens', 'recover-admin'], ['keys', 'import-public'], ['lightning'], ['lightning', 'info'], ['lightning', 'restore']]) {
    const r = custos([...args, '--help']);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /Usage: custos/);
  }
});

test('init makes a 0700 directory with 0600 files, prints the token once, and refuses a second init', () => {
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    initVault(dataDir);
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    for (const f of readdirSync(dataDir)) assert.equal(statSync(join(dataDir, f)).mode & 0o777, 0o600, f);
    const before = createHash('sha256').update(readFileSync(join(dataDir, 'custos.db'))).digest('hex');
    const again = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV);
    assert.equal(again.status, EXIT.refused);
    assert.match(again.stderr, /already exists/);
    assert.equal(createHash('sha256').update(readFileSync(join(dataDir, 'custos.db'))).digest('hex'), before);
  } finally {
    cleanup();
  }
});

test('init without any passphrase source explains the three ways to give one', () => {
  const { dir, cleanup } = tempDir();
  try {
    const r = custos(['init', '--data-dir', join(dir, 'v')], { CUSTOS_PASSPHRASE: undefined });
    assert.equal(r.status, EXIT.usage);
    assert.match(r.stderr, /--passphrase-file/);
    assert.equal(existsSync(join(dir, 'v', 'custos.db')), false);
  } finally {
    cleanup();
  }
});

test('serve with a wrong passphrase exits 2 with a sentence and touches nothing', () => {
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    initVault(dataDir);
    const snapshot = () => readdirSync(dataDir).sort().map((f) => `${f}:${createHash('sha256').update(readFileSync(join(dataDir, f))).digest('hex')}`).join();
    const before = snapshot();
    const r = custos(['serve', '--data-dir', dataDir, '--port', '0'], { CUSTOS_PASSPHRASE: 'wrong' });
    assert.equal(r.status, EXIT.auth);
    assert.match(r.stderr, /passphrase is wrong/);
    assert.equal(snapshot(), before);
  } finally {
    cleanup();
  }
});

test('serve refuses a non-loopback address and a broken config with a clear error', () => {
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    initVault(dataDir);
    const r = custos(['serve', '--data-dir', dataDir, '--host', '0.0.0.0'], PASSENV);
    assert.equal(r.status, EXIT.usage);
    assert.match(r.stderr, /loopback/);
    writeFileSync(join(dir, 'bad.toml'), '[api]\nport = "lots"\n');
    const c = custos(['serve', '--data-dir', dataDir, '--config', join(dir, 'bad.toml')], PASSENV);
    assert.equal(c.status, EXIT.usage);
    assert.match(c.stderr, /api.port/);
  } finally {
    cleanup();
  }
});

test('keys, sign and verify through the CLI against a served vault; SIGTERM shuts down cleanly', async (t) => {
  if (!requireTool(t, 'ssh-keygen', 'openssh-client')) return;
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'v');
  const token = initVault(dataDir);
  const auditKey = lastAuditKey;
  writeFileSync(join(dir, 'token'), token, { mode: 0o600 });
  // The TOML config in the data dir is read: set the log level there.
  writeFileSync(join(dataDir, 'custos.toml'), '[api]\nhost = "127.0.0.1"\n[log]\nlevel = "info"\n');
  const s = await serve(['--data-dir', dataDir], PASSENV);
  try {
    const api = { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: undefined };
    const k = (args: string[]) => custos([...args, '--token-file', join(dir, 'token')], api);
    let r = k(['keys', 'create', '--label', 'cli-ed', '--algorithm', 'ed25519']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /ssh-ed25519 AAAA/);
    r = k(['keys', 'create', '--label', 'cli-k1', '--algorithm', 'secp256k1', '--json']);
    assert.equal(JSON.parse(r.stdout).algorithm, 'secp256k1');
    r = k(['keys', 'list']);
    assert.match(r.stdout, /cli-ed/);
    assert.match(r.stdout, /cli-k1/);
    writeFileSync(join(dir, 'msg'), 'hello from the CLI');
    r = k(['sign', '--key', 'cli-ed', '--in', join(dir, 'msg')]);
    assert.equal(r.status, 0, r.stderr);
    const sig = r.stdout.trim();
    r = k(['verify', '--key', 'cli-ed', '--in', join(dir, 'msg'), '--signature', sig]);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /valid/);
    writeFileSync(join(dir, 'other'), 'tampered');
    r = k(['verify', '--key', 'cli-ed', '--in', join(dir, 'other'), '--signature', sig]);
    assert.equal(r.status, EXIT.checkFailed);
    // A pre-hashed digest with ECDSA, DER and raw.
    writeFileSync(join(dir, 'digest'), createHash('sha256').update('hello').digest());
    r = k(['sign', '--key', 'cli-k1', '--in', join(dir, 'digest'), '--digest', '--encoding', 'raw', '--out', join(dir, 'sig.bin')]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(dir, 'sig.bin')).length, 64);
    r = k(['verify', '--key', 'cli-k1', '--in', join(dir, 'digest'), '--digest', '--encoding', 'raw', '--signature-file', join(dir, 'sig.bin')]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    // Import an OpenSSH key made by ssh-keygen and check the public key matches.
    const ssh = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'imp', '-f', join(dir, 'idkey')]);
    assert.equal(ssh.status, 0);
    r = k(['keys', 'import', '--label', 'from-ssh', '--format', 'openssh', '--in', join(dir, 'idkey')]);
    assert.equal(r.status, 0, r.stderr);
    const pub = readFileSync(join(dir, 'idkey.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
    assert.ok(r.stdout.includes(pub), r.stdout);
    // Errors map to exit codes: unknown key 3, destroyed 4, bad token 2.
    assert.equal(k(['keys', 'show', 'nope']).status, EXIT.notFound);
    assert.equal(k(['keys', 'destroy', 'cli-k1', '--yes']).status, 0);
    assert.equal(k(['sign', '--key', 'cli-k1', '--in', join(dir, 'msg')]).status, EXIT.refused);
    assert.equal(custos(['keys', 'list', '--token', 'custos_' + 'x'.repeat(43)], { CUSTOS_ADDR: s.url }).status, EXIT.auth);
    // Export wrapped, then unwrap with the recipient secret.
    assert.equal(k(['keys', 'create', '--label', 'movable', '--algorithm', 'ed25519', '--exportable']).status, 0);
    r = custos(['keys', 'recipient', '--secret-out', join(dir, 'recipient.key')]);
    const recipientPub = r.stdout.trim();
    assert.match(recipientPub, /^[0-9a-f]{64}$/);
    r = k(['keys', 'export', 'movable', '--recipient', recipientPub, '--out', join(dir, 'movable.env')]);
    assert.equal(r.status, 0, r.stderr);
    r = custos(['keys', 'unwrap', '--in', join(dir, 'movable.env'), '--secret', join(dir, 'recipient.key'), '--out', join(dir, 'movable.secret')]);
    assert.equal(r.status, 0, r.stderr);
    const shown = JSON.parse(k(['keys', 'show', 'movable', '--json']).stdout);
    assert.equal(JSON.parse(r.stdout).public_key, shown.public_key.raw_hex);
    assert.equal(statSync(join(dir, 'movable.secret')).mode & 0o777, 0o600);
  } finally {
    const code = await s.stop('SIGTERM');
    assert.equal(code, 0, s.output());
    assert.match(s.output(), /"msg":"stopped"/);
  }
  try {
    const v = custos(['audit', 'verify', '--data-dir', dataDir, '--audit-key', auditKey]);
    assert.equal(v.status, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /audit chain OK/);
    const wrong = custos(['audit', 'verify', '--data-dir', dataDir, '--audit-key', 'ab'.repeat(32)]);
    assert.equal(wrong.status, EXIT.checkFailed);
    assert.match(wrong.stdout, /BROKEN/);
    const t = custos(['audit', 'tail', '--data-dir', dataDir, '-n', '50', '--json']);
    const entries = t.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(entries.some((e) => e.operation === 'sign' && e.outcome === 'denied' && e.reason === 'key_destroyed'));
    assert.ok(entries.some((e) => e.operation === 'destroy' && e.outcome === 'ok'));
  } finally {
    cleanup();
  }
});

test('dev mode: a throwaway vault with a demo key, a loud warning, and a curl command that signs', async (t) => {
  if (!requireTool(t, 'curl', 'curl')) return;
  const s = await serve(['--dev']);
  try {
    const out = s.output();
    assert.match(out, /DEV MODE/);
    assert.match(out, /Nothing persists/);
    const token = /Token:\s+(custos_\S+)/.exec(out)![1]!;
    const res = await fetch(`${s.url}/v1/keys/demo/sign`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ message: Buffer.from('hello').toString('base64') }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { algorithm: string; signature: string };
    assert.equal(body.algorithm, 'ed25519');
    // The printed curl command works as printed.
    const curlLines = out.split('\n').filter((l) => l.trim().startsWith('curl') || l.trim().startsWith("-d '"));
    const cmd = curlLines.map((l) => l.replace(/\\$/, '')).join(' ');
    const curl = spawnSync('bash', ['-c', cmd], { encoding: 'utf8' });
    assert.match(curl.stdout, /"signature"/, curl.stderr);
    // The printed SSH_AUTH_SOCK serves the demo key to OpenSSH's tools.
    const sock = /export SSH_AUTH_SOCK=(\S+)/.exec(out)![1]!;
    const list = await new Promise<string>((resolve) => {
      const p = spawn('ssh-add', ['-L'], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
      let o = '';
      p.stdout.on('data', (d) => (o += d));
      p.on('close', () => resolve(o));
    });
    assert.match(list, /^ssh-ed25519 AAAA\S+ demo-ssh$/m);
    // A key has one purpose: the API's demo key is not offered to SSH clients.
    assert.doesNotMatch(list, / demo$/m);
  } finally {
    const dataDir = /Data dir:\s+(\S+)/.exec(s.output())![1]!;
    assert.equal(await s.stop('SIGINT'), 0);
    assert.equal(existsSync(dataDir), false, 'dev data directory removed on exit');
  }
});

test('serve --dev starts without a deprecation warning above the banner', async () => {
  const s = await serve(['--dev']);
  try {
    // A served request, then a pause: a warning from lazily built parts has time to show.
    assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
    await new Promise((r) => setTimeout(r, 200));
    assert.doesNotMatch(s.stderr(), /DeprecationWarning|FSTDEP|FastifyWarning/, s.stderr());
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

test('keys list widens its columns for long labels (ssh-agent keys) and --json keeps every label whole', async () => {
  const s = await serve(['--dev']);
  try {
    const api = { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: /Token:\s+(custos_\S+)/.exec(s.output())![1]! };
    // The shape of a label the ssh-agent gives a key added with ssh-add, and the longest label allowed.
    const labels = ['ssh:default:SHA256:Xk3vQ9pLm-0a1b2c3d', `l${'x'.repeat(62)}9`];
    for (const label of labels) assert.equal(custos(['keys', 'create', '--label', label, '--algorithm', 'secp256k1-bip340'], api).status, 0);
    const r = custos(['keys', 'list'], api);
    assert.equal(r.status, 0, r.stderr);
    const [header, ...rows] = r.stdout.trimEnd().split('\n');
    const col = (name: string) => header!.indexOf(name);
    assert.equal(rows.length, 4, r.stdout); // demo, demo-ssh and the two above
    for (const row of rows) {
      // Every value starts under its heading, after a blank: nothing ran into the next column.
      for (const name of ['LABEL', 'ALGORITHM', 'STATE', 'EXPORTABLE']) assert.equal(row[col(name) - 1], ' ', `${name} column in:\n${r.stdout}`);
      const label = row.slice(col('LABEL'), col('ALGORITHM')).trim();
      assert.ok(['demo', 'demo-ssh', ...labels].includes(label), `label "${label}" cut or shifted in:\n${r.stdout}`);
      assert.match(row.slice(col('ALGORITHM')), /^(ed25519|secp256k1-bip340)\s+active\s+(true|false)$/, r.stdout);
    }
    const json = JSON.parse(custos(['keys', 'list', '--json'], api).stdout) as Array<{ label: string }>;
    assert.deepEqual(json.map((k) => k.label).sort(), ['demo', 'demo-ssh', ...labels].sort());
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

test('serve --agent-socket opens an ssh-agent there and prints its SSH_AUTH_SOCK', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    initVault(dataDir);
    const sock = join(dir, 'run', 'agent.sock');
    const s = await serve(['--data-dir', dataDir, '--agent-socket', sock], PASSENV);
    try {
      for (let i = 0; i < 50 && !s.output().includes('SSH_AUTH_SOCK='); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(s.output().includes(`export SSH_AUTH_SOCK=${sock}`), s.output());
      assert.equal(statSync(sock).mode & 0o777, 0o600);
      const list = await new Promise<number | null>((resolve) => spawn('ssh-add', ['-l'], { env: { ...process.env, SSH_AUTH_SOCK: sock } }).on('close', resolve));
      assert.equal(list, 1, 'an empty agent answers ssh-add -l with exit 1');
    } finally {
      assert.equal(await s.stop(), 0);
    }
    assert.equal(existsSync(sock), false, 'the socket is removed on shutdown');
  } finally {
    cleanup();
  }
});

test('a passphrase file works for init and serve, and trailing newlines are ignored', async () => {
  const { dir, cleanup } = tempDir();
  try {
    mkdirSync(join(dir, 'secrets'), { mode: 0o700 });
    writeFileSync(join(dir, 'secrets', 'pass'), 'file passphrase\n', { mode: 0o600 });
    const dataDir = join(dir, 'v');
    const r = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12', '--passphrase-file', join(dir, 'secrets', 'pass')], { CUSTOS_PASSPHRASE: undefined });
    assert.equal(r.status, 0, r.stderr);
    const s = await serve(['--data-dir', dataDir, '--passphrase-file', join(dir, 'secrets', 'pass')], { CUSTOS_PASSPHRASE: undefined });
    assert.equal(await s.stop(), 0);
  } finally {
    cleanup();
  }
});

test('on a terminal, init prompts twice without echo, and serve accepts the passphrase given there', async (t) => {
  if (!requireTool(t, 'python3', 'python3')) return;
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    const drive = join(ROOT, 'test', 'helpers', 'tty-drive.py');
    const r = spawnSync('python3', [drive, process.execPath, BIN, 'init', '--data-dir', dataDir, '--scrypt-log-n', '12'], {
      env: { ...process.env, CUSTOS_PASSPHRASE: undefined, TTY_ANSWERS: 'typed on a tty\ntyped on a tty' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Vault passphrase:/);
    assert.match(r.stdout, /Repeat passphrase:/);
    assert.doesNotMatch(r.stdout, /typed on a tty/, 'the passphrase was echoed');
    const mismatch = spawnSync('python3', [drive, process.execPath, BIN, 'init', '--data-dir', join(dir, 'w')], {
      env: { ...process.env, CUSTOS_PASSPHRASE: undefined, TTY_ANSWERS: 'one passphrase\nanother one' },
      encoding: 'utf8',
    });
    assert.equal(mismatch.status, EXIT.usage);
    assert.match(mismatch.stdout, /differ/);
    const s = await serve(['--data-dir', dataDir], { CUSTOS_PASSPHRASE: 'typed on a tty' });
    assert.equal(await s.stop(), 0);
  } finally {
    cleanup();
  }
});

test('an init killed half-way leaves no half-made vault, and a new init then succeeds', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    // scrypt at 2^20 takes seconds: the kill lands while the root key is being sealed.
    const child = spawn(process.execPath, [BIN, 'init', '--data-dir', dataDir, '--scrypt-log-n', '20'], { env: { ...process.env, ...PASSENV }, stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1200));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    assert.equal(existsSync(join(dataDir, 'custos.db')), false, 'a killed init left custos.db behind');
    initVault(dataDir);
    assert.deepEqual(readdirSync(dataDir).filter((f) => f.includes('.init-')), [], 'leftovers of the killed init were not cleaned up');
  } finally {
    cleanup();
  }
});

test('SIGTERM lets a request in flight finish before the vault closes', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'v');
    const token = initVault(dataDir);
    const s = await serve(['--data-dir', dataDir], PASSENV);
    // RSA-4096 generation takes a while: the signal arrives while it runs.
    const pending = fetch(`${s.url}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ label: 'slow', algorithm: 'rsa-4096' }),
    });
    await new Promise((r) => setTimeout(r, 150));
    const exit = s.stop('SIGTERM');
    const res = await pending;
    assert.equal(res.status, 201, await res.text());
    assert.equal(await exit, 0);
    const tail = custos(['audit', 'tail', '--data-dir', dataDir, '--json']);
    assert.ok(tail.stdout.includes('"operation":"create"'), 'the finished request is in the audit log');
  } finally {
    cleanup();
  }
});

test('privval migration through the CLI: keys import --format cometbft, privval import-state, privval status', async () => {
  const { generateKeyPairSync } = await import('node:crypto');
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'v');
  const token = initVault(dataDir);
  writeFileSync(join(dir, 'token'), token, { mode: 0o600 });
  const s = await serve(['--data-dir', dataDir], PASSENV);
  try {
    const k = (args: string[]) => custos([...args, '--token-file', join(dir, 'token')], { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: undefined });
    const kp = generateKeyPairSync('ed25519');
    const der = kp.privateKey.export({ format: 'der', type: 'pkcs8' });
    const spki = kp.publicKey.export({ format: 'der', type: 'spki' });
    const pub = spki.subarray(spki.length - 32);
    writeFileSync(
      join(dir, 'priv_validator_key.json'),
      JSON.stringify({ pub_key: { type: 'tendermint/PubKeyEd25519', value: pub.toString('base64') }, priv_key: { type: 'tendermint/PrivKeyEd25519', value: Buffer.concat([der.subarray(der.length - 32), pub]).toString('base64') } }),
      { mode: 0o600 },
    );
    writeFileSync(join(dir, 'priv_validator_state.json'), JSON.stringify({ height: '1234', round: 1, step: 3, signature: '', signbytes: '' }));
    let r = k(['keys', 'import', '--label', 'cosmos-val', '--format', 'cometbft', '--in', join(dir, 'priv_validator_key.json'), '--json']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).public_key.raw, pub.toString('base64'));
    r = k(['privval', 'import-state', '--key', 'cosmos-val', '--chain-id', 'cosmoshub-4', '--in', join(dir, 'priv_validator_state.json')]);
    assert.equal(r.status, 0, r.stderr);
    r = k(['privval', 'status', '--key', 'cosmos-val', '--chain-id', 'cosmoshub-4']);
    assert.match(r.stdout, /last signed height 1234 round 1 step 3/);
    writeFileSync(join(dir, 'old_state.json'), JSON.stringify({ height: '10', round: 0, step: 1, signature: '', signbytes: '' }));
    r = k(['privval', 'import-state', '--key', 'cosmos-val', '--chain-id', 'cosmoshub-4', '--in', join(dir, 'old_state.json')]);
    assert.equal(r.status, EXIT.refused, 'an older state never lowers the watermark');
    assert.match(r.stderr, /never moves backwards/);
  } finally {
    await s.stop();
    cleanup();
  }
});

test('serve with a [[privval]] validator: it dials the node and custos privval status reports the connection', async () => {
  const { createServer } = await import('node:net');
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'v');
  const token = initVault(dataDir);
  writeFileSync(join(dir, 'token'), token, { mode: 0o600 });
  // The "node" only accepts the connection; the connector then waits in its handshake.
  let dialled = 0;
  const node = createServer((sock) => {
    dialled++;
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => node.listen(0, '127.0.0.1', () => r()));
  const port = (node.address() as { port: number }).port;
  // Keys first (over a vault that is not serving yet), then the config that names them.
  const pre = await serve(['--data-dir', dataDir], PASSENV);
  const k = (args: string[], url: string) => custos([...args, '--token-file', join(dir, 'token')], { CUSTOS_ADDR: url, CUSTOS_TOKEN: undefined });
  assert.equal(k(['keys', 'create', '--label', 'val', '--algorithm', 'ed25519', '--purpose', 'consensus'], pre.url).status, 0);
  assert.equal(k(['keys', 'create', '--label', 'val-id', '--algorithm', 'ed25519'], pre.url).status, 0);
  assert.equal(await pre.stop(), 0);
  writeFileSync(join(dataDir, 'custos.toml'), `[[privval]]\nname = "hub"\nchain_id = "test-1"\naddress = "tcp://127.0.0.1:${port}"\nkey = "val"\nidentity_key = "val-id"\n`);
  const s = await serve(['--data-dir', dataDir], PASSENV);
  try {
    for (let i = 0; i < 100 && dialled === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(dialled > 0, 'the connector dialled the node');
    const r = k(['privval', 'status'], s.url);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^hub\s+test-1\s+v0\.38\s+(connecting|connected)\s+tcp:\/\/127\.0\.0\.1:\d+\s+nothing yet/m);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(metrics, /custos_privval_connected\{validator="hub"\} 0/, 'the connection state is a metric');
  } finally {
    assert.equal(await s.stop(), 0);
    node.close();
    cleanup();
  }
});
