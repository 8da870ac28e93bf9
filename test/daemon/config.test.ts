import { test } from 'node:test';
import { DEFAULT_UNSEAL_LIMITS } from '../../src/daemon/unseal.js';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/daemon/config.js';
import { DEFAULT_CONFIG_TOML, storeConfigToml } from '../../src/vault/open.js';
import { CustosError } from '../../src/core/errors.js';
import { nodeIdOf } from '../../src/crypto/cometbft/node-id.js';
import { tempDir } from '../helpers/tmpvault.js';

test('the config written by init parses to the defaults', () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFileSync(join(dir, 'c.toml'), DEFAULT_CONFIG_TOML);
    assert.deepEqual(loadConfig(join(dir, 'c.toml')), {
      api: { host: '127.0.0.1', port: 8200 },
      sshAgents: [{ enabled: false, name: 'default', socket: 'agent/agent.sock', keys: [], torKeys: [], allowSha1: true, allowConfirm: false, maxConnections: 128, requestTimeoutSeconds: 30 }],
      privval: [],
      pkcs11: [],
      seal: {},
      approvals: { timeoutSeconds: 60 },
      audit: { checkpointEvery: 1000, anchorIntervalSeconds: 1 },
      unseal: { maxFailures: DEFAULT_UNSEAL_LIMITS.maxFailures, windowSeconds: DEFAULT_UNSEAL_LIMITS.windowSeconds },
      log: { level: 'info' },
      store: {},
      accounts: { guard: { maxFailures: 5, windowSeconds: 900, lockSeconds: 900, maxDelaySeconds: 60, addressMaxFailures: 50 }, sessions: { idleSeconds: 900, absoluteSeconds: 43200 } },
      lightning: {},
    });
    // The config a node on PostgreSQL starts from names the database and nothing else differs.
    writeFileSync(join(dir, 'pg.toml'), storeConfigToml('postgresql://custos@db1:5432,db2:5432/custos?target_session_attrs=read-write'));
    assert.deepEqual(loadConfig(join(dir, 'pg.toml')).store, { url: 'postgresql://custos@db1:5432,db2:5432/custos?target_session_attrs=read-write' });
  } finally {
    cleanup();
  }
});

test('bad config files are refused with the file and the key named', () => {
  const { dir, cleanup } = tempDir();
  try {
    for (const [body, re] of [
      ['[api\nport=1', /not valid TOML/],
      ['[api]\nport = 70000', /api.port/],
      ['[api]\nhots = "x"', /unknown key api.hots/],
      ['[nope]\n', /unknown section \[nope\]/],
      ['[log]\nlevel = "loud"', /log.level/],
      ['[store]\nurl = "mysql://x/y"', /store.url: The store URL is not a PostgreSQL URL/],
      ['[store]\nurl = "postgresql://h:99999/d"', /store.url: .*port 99999/],
      ['[store]\nurl = "postgresql://h/d?target_session_attrs=primary"', /target_session_attrs=primary/],
      ['[store]\nurl = 5', /store.url must be a postgresql:\/\/ URL/],
      ['[audit]\ncheckpoint_every = 0', /checkpoint_every/],
      ['[accounts]\nmax_failures = 0', /accounts.max_failures/],
      ['[accounts]\nsession_idle = 5', /unknown key accounts.session_idle/],
      ['[audit]\ncheckpoint_every = true', /checkpoint_every/],
      ['[constructor]\n', /unknown section \[constructor\]/],
      ['[toString]\nx = 1', /unknown section \[toString\]/],
      ['[[ssh_agent]]\nname = "a"\n[[ssh_agent]]\nname = "a"\nsocket = "b.sock"', /distinct name/],
      ['[ssh_agent]\nkeys = "deploy"', /ssh_agent.keys/],
      ['[[privval]]\nname = "a"\nchain_id = "c"\naddress = "tcp://127.0.0.1:1"\nkey = "k"', /needs identity_key/],
      ['[[privval]]\nname = "a"\nchain_id = "c"\naddress = "http://x"\nkey = "k"', /\[\[privval\]\] "a": address/],
      ['[[privval]]\nname = "a"\nchain_id = "c"\naddress = "unix:///s"\nkey = "k"\ndialect = "v2"', /\[\[privval\]\] "a": dialect \(one of v0\.34, v0\.37, v0\.38, v1\)/],
    ] as const) {
      const p = join(dir, 'c.toml');
      writeFileSync(p, body);
      assert.throws(() => loadConfig(p), (e: unknown) => e instanceof CustosError && e.code === 'config_invalid' && re.test(e.message) && e.message.includes(p), body);
    }
  } finally {
    cleanup();
  }
});

test('a config file named with --config must exist; the default one may be absent', () => {
  const { dir, cleanup } = tempDir();
  try {
    assert.throws(() => loadConfig(join(dir, 'missing.toml'), true), (e: unknown) => e instanceof CustosError && /does not exist/.test(e.message));
    assert.equal(loadConfig(join(dir, 'missing.toml')).api.port, 8200);
  } finally {
    cleanup();
  }
});

test('several [[ssh_agent]] sockets, each with its own keys', () => {
  const { dir, cleanup } = tempDir();
  try {
    const p = join(dir, 'c.toml');
    writeFileSync(p, '[[ssh_agent]]\nname = "alice"\nsocket = "a.sock"\nkeys = ["alice-*"]\n[[ssh_agent]]\nname = "ci"\nsocket = "ci.sock"\nkeys = ["deploy"]\nallow_sha1 = false\n');
    const c = loadConfig(p);
    assert.deepEqual(c.sshAgents.map((a) => [a.name, a.socket, a.keys, a.allowSha1]), [['alice', 'a.sock', ['alice-*'], true], ['ci', 'ci.sock', ['deploy'], false]]);
  } finally {
    cleanup();
  }
});

test('[[privval]] node pins: the id in tcp://<node-id>@host:port, node_key as the 40-hex id or the 64-hex public key, or both when they agree', () => {
  const { dir, cleanup } = tempDir();
  try {
    const publicKey = 'ab'.repeat(32);
    const idOfKey = nodeIdOf(new Uint8Array(Buffer.from(publicKey, 'hex')));
    const id = '0123456789abcdef0123456789abcdef01234567';
    const head = '[[privval]]\nname = "v"\nchain_id = "c-1"\nkey = "k"\nidentity_key = "i"\n';
    const cases: Array<[string, { nodeId?: string; nodeKey?: string }]> = [
      [`address = "tcp://127.0.0.1:26659"`, {}],
      [`address = "tcp://${id}@10.0.0.5:26659"`, { nodeId: id }],
      [`address = "tcp://${id.toUpperCase()}@[::1]:26659"`, { nodeId: id }],
      [`address = "tcp://10.0.0.5:26659"\nnode_key = "${id.toUpperCase()}"`, { nodeId: id }],
      [`address = "tcp://10.0.0.5:26659"\nnode_key = "${publicKey}"`, { nodeId: idOfKey, nodeKey: publicKey }],
      [`address = "tcp://${id}@10.0.0.5:26659"\nnode_key = "${id}"`, { nodeId: id }],
      [`address = "tcp://${idOfKey}@10.0.0.5:26659"\nnode_key = "${publicKey.toUpperCase()}"`, { nodeId: idOfKey, nodeKey: publicKey }],
    ];
    for (const [lines, want] of cases) {
      const p = join(dir, 'c.toml');
      writeFileSync(p, `${head}${lines}\n`);
      const c = loadConfig(p).privval[0]!;
      assert.deepEqual({ nodeId: c.nodeId, nodeKey: c.nodeKey }, { nodeId: want.nodeId, nodeKey: want.nodeKey }, lines);
    }
  } finally {
    cleanup();
  }
});

test('[[privval]] node pins that disagree, are malformed, or sit on a unix:// socket are refused at load', () => {
  const { dir, cleanup } = tempDir();
  try {
    const id = '0123456789abcdef0123456789abcdef01234567';
    const head = '[[privval]]\nname = "v"\nchain_id = "c-1"\nkey = "k"\nidentity_key = "i"\n';
    for (const [lines, re] of [
      [`address = "tcp://${id}@10.0.0.5:26659"\nnode_key = "${'f'.repeat(40)}"`, /names node f{40} but the address names node 0123.*must agree/],
      [`address = "tcp://${id}@10.0.0.5:26659"\nnode_key = "${'ab'.repeat(32)}"`, /must agree/],
      [`address = "tcp://${id.slice(1)}@10.0.0.5:26659"`, /node id in the privval address .* 40 hex digits/],
      [`address = "tcp://${id}:secret@10.0.0.5:26659"`, /40 hex digits/],
      [`address = "tcp://@10.0.0.5:26659"`, /40 hex digits/],
      [`address = "tcp://10.0.0.5:26659"\nnode_key = "${'a'.repeat(39)}"`, /node_key is invalid.*40 hex digits.*64 hex digits/],
      [`address = "tcp://10.0.0.5:26659"\nnode_key = "${'g'.repeat(64)}"`, /node_key is invalid/],
      [`address = "tcp://10.0.0.5:26659"\nnode_key = 12`, /node_key must be a string/],
      [`address = "unix://${id}@/run/node.sock"`, /names a node id, but a unix:\/\/ socket has no SecretConnection handshake/],
      [`address = "unix:///run/node.sock"\nnode_key = "${id}"`, /node_key needs a tcp:\/\/ address/],
    ] as const) {
      const p = join(dir, 'c.toml');
      writeFileSync(p, `${head}${lines}\n`);
      assert.throws(() => loadConfig(p), (e: unknown) => e instanceof CustosError && e.code === 'config_invalid' && re.test(e.message) && e.message.includes('privval "v"'), lines);
    }
  } finally {
    cleanup();
  }
});

test('[lightning]: a backup target, and plain HTTP only on loopback', () => {
  const { dir, cleanup } = tempDir();
  try {
    const load = (toml: string) => (writeFileSync(join(dir, 'l.toml'), toml), loadConfig(join(dir, 'l.toml')));
    assert.deepEqual(load('[lightning]\nbackup = "ln-backup"\nbackup_authorization_file = "auth"\n').lightning, { backup: 'ln-backup', backupAuthorizationFile: 'auth' });
    assert.equal(load('[lightning]\nbackup = "http://127.0.0.1:9000/b"\n').lightning.backup, 'http://127.0.0.1:9000/b');
    assert.throws(() => load('[lightning]\nbackup = "http://backup.example/b"\n'), /https:\/\//);
    assert.throws(() => load('[lightning]\nbackups = "x"\n'), /backups/);
  } finally {
    cleanup();
  }
});
