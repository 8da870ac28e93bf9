/**
 * A backend that does not answer (an HSM taken away, simulated by holding one key's signatures
 * at the backend) never hangs an agent client: the request gets FAILURE at the socket's
 * deadline, audited; the requests pipelined after it on the same connection are answered, in
 * order; and another connection is served meanwhile, not behind it.
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
let agent: SshAgent;
let cleanup: () => void;
let release: () => void = () => {};

before(async () => {
  v = await makeVault();
  let dir: string;
  ({ dir, cleanup } = tempDir());
  agent = new SshAgent(v.vault, { name: 'deadline', socketPath: join(dir, 'sock', 'agent.sock'), keys: ['ssh-*'], allowSha1: false, maxConnections: 16, requestTimeoutMs: 400 });
  await agent.listen();
});
after(async () => {
  release();
  await agent.close();
  await v.dispose();
  cleanup();
});

/** Sends the requests pipelined on one connection; each answer with the time it arrived. */
function talk(reqs: Uint8Array[]): Promise<Array<{ r: AgentResponse; at: number }>> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const s = connect(agent.config.socketPath);
    const reader = new FrameReader();
    const out: Array<{ r: AgentResponse; at: number }> = [];
    s.on('data', (d) => {
      for (const b of reader.push(d)) out.push({ r: decodeResponse(b), at: performance.now() - t0 });
      if (out.length === reqs.length) s.end();
    });
    s.on('close', () => resolve(out));
    s.on('error', reject);
    s.on('connect', () => s.write(Buffer.concat(reqs.map((r) => frame(r)))));
  });
}

test('a request the backend never answers gets FAILURE at the deadline; the rest of the connection and other connections go on', async () => {
  const slow = await v.vault.createKey(v.ctx(), { label: 'ssh-slow', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
  const fast = await v.vault.createKey(v.ctx(), { label: 'ssh-fast', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
  // The backend holds ssh-slow's signatures until the test lets them go (an HSM that stopped answering).
  const backend = (v.vault as unknown as { core: { deps: { backend: { sign: (k: KeyRecord, ...rest: unknown[]) => Promise<unknown> } } } }).core.deps.backend;
  const original = backend.sign.bind(backend);
  const gate = new Promise<void>((r) => (release = r));
  backend.sign = async (k: KeyRecord, ...rest: unknown[]) => {
    if (k.label === 'ssh-slow') await gate;
    return original(k, ...rest);
  };
  const sign = (k: KeyRecord) => encodeRequest({ type: 'sign_request', keyBlob: encodePublicKeyBlob({ keyType: 'ssh-ed25519', publicKey: k.publicKey }), data: new Uint8Array(40).fill(7), flags: 0 });
  const [stuck, other] = await Promise.all([
    talk([sign(slow), sign(fast), encodeRequest({ type: 'extension_query' })]),
    new Promise<Array<{ r: AgentResponse; at: number }>>((r) => setTimeout(() => void talk([sign(fast)]).then(r), 50)),
  ]);
  assert.equal(stuck[0]!.r.type, 'failure', 'the held request fails');
  assert.ok(stuck[0]!.at >= 350 && stuck[0]!.at < 5000, `at the deadline (${stuck[0]!.at.toFixed(0)} ms)`);
  assert.equal(stuck[1]!.r.type, 'sign_response', 'the next request on the connection is answered');
  assert.equal(stuck[2]!.r.type, 'query_response', 'in order');
  assert.equal(other[0]!.r.type, 'sign_response', 'another connection is served');
  assert.ok(other[0]!.at < 350, `while the first waits (${other[0]!.at.toFixed(0)} ms)`);
  const audit = await v.vault.auditTail(20);
  assert.ok(audit.some((e) => e.outcome === 'denied' && e.reason === 'deadline'), 'the deadline is on the record');
  // A request that changes the socket's keys (here the harmless SSH-1 remove-all; an add, a
  // remove or a lock likewise) waits for a late one still running on its connection, so the two
  // never interleave; a listing does not wait.
  setTimeout(() => release(), 1200);
  const [late, listing, removal] = await talk([sign(slow), encodeRequest({ type: 'request_identities' }), encodeRequest({ type: 'remove_all_rsa_identities' })]);
  assert.equal(late!.r.type, 'failure');
  assert.ok(late!.at < 1000, `the held request fails at its deadline (${late!.at.toFixed(0)} ms)`);
  assert.equal(listing!.r.type, 'identities_answer');
  assert.ok(listing!.at < 1100, `a listing does not wait (${listing!.at.toFixed(0)} ms)`);
  assert.equal(removal!.r.type, 'success');
  assert.ok(removal!.at >= 1100, `the removal waited for the late signature to finish (${removal!.at.toFixed(0)} ms)`);
  backend.sign = original;
});
