/**
 * Regression tests for agent attacks a local or forwarded client could try, spoken directly
 * in the protocol (real vault, real socket): binds while locked, identity overwrite with a
 * foreign private key, huge listings, cross-socket keys.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { join } from 'node:path';
import { makeVault, tempDir, type TestVault } from '../../helpers/tmpvault.js';
import { SshAgent, type AgentConfig } from '../../../src/frontends/ssh-agent/agent.js';
import { encodeSshSignature, parseSshSignature, SSH_AGENT_RSA_SHA2_256, SSH_AGENT_RSA_SHA2_512, type AgentRequest } from '../../../src/frontends/ssh-agent/codec.js';
import { agentSession as session, ed25519Pair, rsaPair, startOpenSshAgent } from '../../helpers/ssh-agent.js';
import { requireTool } from '../../helpers/require.js';

let v: TestVault;
let dir: string;
let cleanup: () => void;

before(async () => {
  v = await makeVault();
  ({ dir, cleanup } = tempDir());
});
after(async () => {
  await v.dispose();
  cleanup();
});

async function agentFor(name: string, over: Partial<AgentConfig> = {}): Promise<SshAgent> {
  const a = new SshAgent(v.vault, { name, socketPath: join(dir, name, 'a.sock'), keys: [], allowSha1: false, maxConnections: 16, ...over });
  await a.listen();
  return a;
}

const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
const str = (b: Uint8Array | string) => Buffer.concat([u32(Buffer.byteLength(b as string)), Buffer.from(b as string)]);

/** A host's session-bind: its host key signs the session id, as in the key exchange. */
function bind(host: ReturnType<typeof ed25519Pair>, sessionId: Uint8Array, isForwarding: boolean): AgentRequest {
  const sig = encodeSshSignature('ssh-ed25519', new Uint8Array(nodeSign(null, sessionId, host.privateKey)));
  return { type: 'session_bind', hostKey: host.blob, sessionId, signature: sig, isForwarding };
}

/** A publickey-hostbound-v00 userauth request, what ssh asks the agent to sign for a login. */
function userauth(sessionId: Uint8Array, user: string, keyBlob: Uint8Array, hostKeyBlob: Uint8Array): Uint8Array {
  return new Uint8Array(
    Buffer.concat([str(sessionId), Buffer.from([50]), str(user), str('ssh-connection'), str('publickey-hostbound-v00@openssh.com'), Buffer.from([1]), str('ssh-ed25519'), str(keyBlob), str(hostKeyBlob)]),
  );
}

test('a session bound while the agent was locked still counts: a restricted key cannot be used from that forwarded hop', async () => {
  const agent = await agentFor('locked');
  const user = ed25519Pair();
  const hostB = ed25519Pair(); // where the agent was forwarded to
  const hostH1 = ed25519Pair(); // the only allowed destination, from the origin
  const c = session(agent.config.socketPath);
  try {
    const added = await c.send({
      type: 'add_id_constrained',
      key: { keyType: 'ssh-ed25519', publicKey: user.pub, seed: user.seed, comment: 'restricted' },
      constraints: [{ kind: 'restrict-destination', constraints: [{ from: { user: '', hostname: '', hostKeys: [] }, to: { user: '', hostname: 'h1', hostKeys: [{ blob: hostH1.blob, isCa: false }] } }] }],
    });
    assert.equal(added.type, 'success');
    const pass = new TextEncoder().encode('lock-pass');
    assert.equal((await c.send({ type: 'lock', passphrase: pass })).type, 'success');
    // ssh opened the forwarded channel to host B while the agent was locked.
    const fwd = session(agent.config.socketPath);
    await fwd.send(bind(hostB, randomBytes(32), true));
    assert.equal((await c.send({ type: 'unlock', passphrase: pass })).type, 'success');
    // On B, an attacker binds a real session to H1 and asks for a login signature.
    const sid = randomBytes(32);
    assert.equal((await fwd.send(bind(hostH1, sid, false))).type, 'success');
    const r = await fwd.send({ type: 'sign_request', keyBlob: user.blob, data: userauth(sid, 'root', user.blob, hostH1.blob), flags: 0 });
    assert.equal(r.type, 'failure', 'origin → B is not an allowed hop, whatever the lock state was');
    fwd.close();
    // From the origin itself, the same login to H1 is allowed.
    const direct = session(agent.config.socketPath);
    const sid2 = randomBytes(32);
    assert.equal((await direct.send(bind(hostH1, sid2, false))).type, 'success');
    assert.equal((await direct.send({ type: 'sign_request', keyBlob: user.blob, data: userauth(sid2, 'root', user.blob, hostH1.blob), flags: 0 })).type, 'sign_response');
    // ...but not for a userauth request naming another key, nor for another session id.
    const other = ed25519Pair();
    assert.equal((await direct.send({ type: 'sign_request', keyBlob: user.blob, data: userauth(sid2, 'root', other.blob, hostH1.blob), flags: 0 })).type, 'failure');
    assert.equal((await direct.send({ type: 'sign_request', keyBlob: user.blob, data: userauth(randomBytes(32), 'root', user.blob, hostH1.blob), flags: 0 })).type, 'failure');
    direct.close();
  } finally {
    c.close();
    await agent.close();
  }
});

test('adding a foreign private key under someone else\'s public key fails and leaves their key alone', async () => {
  const agent = await agentFor('overwrite');
  const c = session(agent.config.socketPath);
  try {
    const victim = ed25519Pair();
    assert.equal((await c.send({ type: 'add_identity', key: { keyType: 'ssh-ed25519', publicKey: victim.pub, seed: victim.seed, comment: 'victim' } })).type, 'success');
    const r = await c.send({ type: 'add_identity', key: { keyType: 'ssh-ed25519', publicKey: victim.pub, seed: new Uint8Array(randomBytes(32)), comment: 'attacker' } });
    assert.equal(r.type, 'failure');
    const list = await c.send({ type: 'request_identities' });
    assert.ok(list.type === 'identities_answer' && list.identities.some((i) => i.comment === 'victim'), 'the victim key is still there');
    const signed = await c.send({ type: 'sign_request', keyBlob: victim.blob, data: new Uint8Array([1, 2, 3]), flags: 0 });
    assert.equal(signed.type, 'sign_response');
  } finally {
    c.close();
    await agent.close();
  }
});

test('keys added over one socket are not offered by another, even one whose patterns match everything', async () => {
  const alice = await agentFor('alice');
  const ops = await agentFor('ops', { keys: ['*'] });
  try {
    const k = ed25519Pair();
    const a = session(alice.config.socketPath);
    assert.equal((await a.send({ type: 'add_identity', key: { keyType: 'ssh-ed25519', publicKey: k.pub, seed: k.seed, comment: 'alice-only' } })).type, 'success');
    a.close();
    const o = session(ops.config.socketPath);
    const list = await o.send({ type: 'request_identities' });
    assert.ok(list.type === 'identities_answer' && !list.identities.some((i) => i.comment === 'alice-only'));
    assert.equal((await o.send({ type: 'sign_request', keyBlob: k.blob, data: new Uint8Array([1]), flags: 0 })).type, 'failure');
    o.close();
  } finally {
    await alice.close();
    await ops.close();
  }
});

test('a listing larger than clients accept is trimmed, never a crash', async () => {
  const agent = await agentFor('many', { keys: ['many-*'] });
  try {
    await Promise.all(Array.from({ length: 1100 }, (_, i) => v.vault.createKey(v.ctx(), { label: `many-${String(i).padStart(4, '0')}-${'x'.repeat(40)}`, algorithm: 'ed25519', exportable: false, purpose: 'ssh' })));
    const c = session(agent.config.socketPath);
    const r = await c.send({ type: 'request_identities' });
    assert.equal(r.type, 'identities_answer');
    assert.ok(r.type === 'identities_answer' && r.identities.length <= 1024 && r.identities.length > 500, String(r.type === 'identities_answer' && r.identities.length));
    assert.equal((await c.send({ type: 'request_identities' })).type, 'identities_answer', 'the agent is still there');
    c.close();
  } finally {
    await agent.close();
  }
});

test('RSA with both SHA-2 flags (6) signs rsa-sha2-256, as OpenSSH\'s own ssh-agent answers the same frame', async (t) => {
  const agent = await agentFor('rsaflags');
  const rsa = rsaPair();
  const data = new Uint8Array(randomBytes(64));
  const flags = SSH_AGENT_RSA_SHA2_256 | SSH_AGENT_RSA_SHA2_512;
  const algorithmOf = async (path: string) => {
    const c = session(path);
    try {
      assert.equal((await c.send({ type: 'add_identity', key: rsa.agentKey('both-flags') })).type, 'success');
      const r = await c.send({ type: 'sign_request', keyBlob: rsa.blob, data, flags });
      assert.equal(r.type, 'sign_response');
      const sig = parseSshSignature((r as { signature: Uint8Array }).signature);
      const hash = sig.algorithm === 'rsa-sha2-256' ? 'sha256' : 'sha512';
      assert.ok(nodeVerify(hash, data, rsa.publicKey, sig.signature), `${sig.algorithm} signature verifies`);
      return sig.algorithm;
    } finally {
      c.close();
    }
  };
  try {
    assert.equal(await algorithmOf(agent.config.socketPath), 'rsa-sha2-256');
  } finally {
    await agent.close();
  }
  if (!requireTool(t, 'ssh-agent', 'openssh-client')) return;
  const openssh = await startOpenSshAgent(join(dir, 'openssh-agent.sock'));
  try {
    assert.equal(await algorithmOf(openssh.path), 'rsa-sha2-256', 'OpenSSH\'s agent answers rsa-sha2-256 too');
  } finally {
    await openssh.stop();
  }
});
