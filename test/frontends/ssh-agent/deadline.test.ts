/**
 * A backend that does not answer (an HSM taken away, simulated by holding one key's signatures
 * at the backend) never hangs an agent client: the request gets FAILURE at the socket's
 * deadline, audited; the requests pipelined after it on the same connection are answered, in
 * order; another connection is served meanwhile; and a request that changes the socket's keys
 * waits for the late one. Every claim is an order of events (what arrives while the backend
 * still holds the signature), never a measured duration.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import { makeVault, tempDir, type TestVault } from '../../helpers/tmpvault.js';
import { SshAgent } from '../../../src/frontends/ssh-agent/agent.js';
import { encodeRequest, decodeResponse, frame, FrameReader, encodePublicKeyBlob, type AgentResponse } from '../../../src/frontends/ssh-agent/codec.js';
import type { KeyRecord } from '../../../src/core/types.js';

let v: TestVault;
let dir: string;
let cleanup: () => void;
const agents: SshAgent[] = [];

before(async () => {
  v = await makeVault();
  ({ dir, cleanup } = tempDir());
});
after(async () => {
  for (const a of agents) await a.close();
  await v.dispose();
  cleanup();
});

async function agentWith(name: string, requestTimeoutMs: number): Promise<SshAgent> {
  const a = new SshAgent(v.vault, { name, socketPath: join(dir, name, 'agent.sock'), keys: ['ssh-*'], allowSha1: false, maxConnections: 16, requestTimeoutMs });
  await a.listen();
  agents.push(a);
  return a;
}

/** One connection, the requests pipelined; `reply(i)` resolves when the i-th answer arrives. */
function open(agent: SshAgent, reqs: Uint8Array[]): { reply: (i: number) => Promise<AgentResponse>; received: () => number } {
  const got: AgentResponse[] = [];
  const waiting = new Map<number, (r: AgentResponse) => void>();
  const s = connect(agent.config.socketPath);
  const reader = new FrameReader();
  s.on('data', (d) => {
    for (const b of reader.push(d)) {
      got.push(decodeResponse(b));
      waiting.get(got.length - 1)?.(got[got.length - 1]!);
    }
    if (got.length === reqs.length) s.end();
  });
  s.on('connect', () => s.write(Buffer.concat(reqs.map((r) => frame(r)))));
  return {
    reply: (i) => (got[i] ? Promise.resolve(got[i]!) : new Promise((resolve) => waiting.set(i, resolve))),
    received: () => got.length,
  };
}

test('a request the backend never answers gets FAILURE at the deadline; the rest of the connection and other connections go on; a change to the keys waits for it', async () => {
  const slow = await v.vault.createKey(v.ctx(), { label: 'ssh-slow', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
  const fast = await v.vault.createKey(v.ctx(), { label: 'ssh-fast', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
  // The backend holds ssh-slow's signatures until the test lets them go (an HSM that stopped answering).
  const backend = (v.vault as unknown as { core: { deps: { backend: { sign: (k: KeyRecord, ...rest: unknown[]) => Promise<unknown> } } } }).core.deps.backend;
  const original = backend.sign.bind(backend);
  let release!: () => void;
  let gate = new Promise<void>((r) => (release = r));
  backend.sign = async (k: KeyRecord, ...rest: unknown[]) => {
    if (k.label === 'ssh-slow') await gate;
    return original(k, ...rest);
  };
  try {
    const sign = (k: KeyRecord) => encodeRequest({ type: 'sign_request', keyBlob: encodePublicKeyBlob({ keyType: 'ssh-ed25519', publicKey: k.publicKey }), data: new Uint8Array(40).fill(7), flags: 0 });

    // Another connection is not behind a held request: on a socket whose deadline is far away,
    // a second connection is answered while the backend still holds the first.
    const patient = await agentWith('patient', 600_000);
    const held = open(patient, [sign(slow)]);
    const other = open(patient, [sign(fast)]);
    assert.equal((await other.reply(0)).type, 'sign_response', 'another connection is served');
    assert.equal(held.received(), 0, 'while the held request is still waiting');
    release();
    assert.equal((await held.reply(0)).type, 'sign_response', 'the held request finishes once the backend answers');

    // With a deadline: the held request fails (the backend never answered it), and what follows
    // on its connection is answered, in order.
    gate = new Promise<void>((r) => (release = r));
    const strict = await agentWith('strict', 400);
    const conn = open(strict, [sign(slow), sign(fast), encodeRequest({ type: 'extension_query' }), encodeRequest({ type: 'request_identities' }), encodeRequest({ type: 'remove_all_rsa_identities' })]);
    assert.equal((await conn.reply(0)).type, 'failure', 'the held request fails at its deadline');
    assert.equal((await conn.reply(1)).type, 'sign_response', 'the next request on the connection is answered');
    assert.equal((await conn.reply(2)).type, 'query_response', 'in order');
    assert.equal((await conn.reply(3)).type, 'identities_answer', 'a listing does not wait for the late request');
    // A change to the socket's keys (here the harmless SSH-1 remove-all; an add, a remove or a
    // lock likewise) waits for the late request still running, so the two never interleave.
    // (A request that did not wait would be answered right after the listing; give it the time.)
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(conn.received(), 4, 'the removal is not answered while the late signature still runs');
    release();
    assert.equal((await conn.reply(4)).type, 'success', 'and is answered once it finished');
    const audit = await v.vault.auditTail(30);
    assert.ok(audit.some((e) => e.outcome === 'denied' && e.reason === 'deadline'), 'the deadline is on the record');
  } finally {
    release();
    backend.sign = original;
  }
});

test('a sign request looks its key up once: the deadline check hands what it found to the signature (issue 11: no per-request work twice)', async () => {
  const k = await v.vault.createKey(v.ctx(), { label: 'ssh-once', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
  const agent = await agentWith('once', 30_000);
  const blob = encodePublicKeyBlob({ keyType: 'ssh-ed25519', publicKey: k.publicKey });
  const sign = encodeRequest({ type: 'sign_request', keyBlob: blob, data: new Uint8Array(40).fill(9), flags: 0 });
  // Warm: the socket's list of keys is built at the first request.
  assert.equal((await open(agent, [sign]).reply(0)).type, 'sign_response');
  const store = v.vault.store as unknown as { keysVersion(): Promise<number | null> };
  const real = store.keysVersion.bind(store);
  let lookups = 0;
  store.keysVersion = () => {
    lookups++;
    return real();
  };
  try {
    const c = open(agent, [sign, sign, sign]);
    for (let i = 0; i < 3; i++) assert.equal((await c.reply(i)).type, 'sign_response');
  } finally {
    // The class's own method again (not a bound copy left on the instance).
    delete (store as { keysVersion?: unknown }).keysVersion;
  }
  assert.equal(lookups, 3, 'one look-up of the socket key list per sign request');
});
