/**
 * HSM keys through the vault's own request path, against a SoftHSM2 token made for this file:
 * token and wrapped keys created, signed with, verified with node:crypto/noble, adopted and
 * destroyed; a wrapped key signing after a restart with no plaintext copy in the database;
 * and the ssh-agent (real ssh-add / ssh-keygen) and privval (test node) front ends serving
 * HSM keys unchanged.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { createSoftHsm, type SoftHsm } from '../../helpers/softhsm.js';
import { ADMIN, makeVault, PASS, type TestVault } from '../../helpers/tmpvault.js';
import { requireTool } from '../../helpers/require.js';
import { runAsync as run } from '../../helpers/process.js';
import { Pkcs11Token } from '../../../src/backends/pkcs11/token.js';
import { Pkcs11Backend } from '../../../src/backends/pkcs11/backend.js';
import { decodeWrapped } from '../../../src/backends/pkcs11/wrapped.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { verifySignature } from '../../../src/crypto/algorithms.js';
import { openVault } from '../../../src/vault/open.js';
import { SshAgent } from '../../../src/frontends/ssh-agent/agent.js';
import { PrivvalConnector } from '../../../src/frontends/privval/connector.js';
import { TestNode } from '../../helpers/cometbft-node.js';
import { voteSignBytes } from '../../../src/frontends/privval/sign-bytes.js';
import { isCustosError } from '../../../src/core/errors.js';
import type { Algorithm } from '../../../src/core/types.js';

const ctx = () => ({ principal: ADMIN, requestId: randomUUID() });
const msg = new TextEncoder().encode('signed inside the token');

// One SoftHSM installation per process (it reads its configuration once): shared by the tests.
let shared: SoftHsm | null | undefined;
after(() => shared?.cleanup());

async function hsmVault(t: TestContext): Promise<{ hsm: SoftHsm; v: TestVault; backend: Pkcs11Backend } | null> {
  if (shared === undefined) shared = createSoftHsm(t);
  const hsm = shared;
  if (!hsm) return null;
  const token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin });
  const backend = new Pkcs11Backend('main', token);
  const v = await makeVault({ backends: [backend] });
  t.after(() => v.dispose());
  return { hsm, v, backend };
}

test('token keys of every type sign through the vault and verify with node:crypto / noble', async (t) => {
  const h = await hsmVault(t);
  if (!h) return;
  const { v } = h;
  for (const alg of ['ed25519', 'secp256k1', 'p256', 'rsa-2048'] as Algorithm[]) {
    const key = await v.vault.createKey(ctx(), { label: `hsm-${alg}`, algorithm: alg, exportable: false, backend: 'pkcs11:main' });
    assert.equal(key.attributes.backend, 'pkcs11:main');
    assert.equal(key.attributes['pkcs11.kind'], 'token');
    const opts = alg === 'secp256k1' || alg === 'p256' ? { encoding: 'der' as const } : {};
    const r = await v.vault.sign({ ...ctx(), key: key.label, payload: { kind: 'message', bytes: msg }, options: opts, context: {} });
    assert.ok(verifySignature(alg, key.publicKey, { kind: 'message', bytes: msg }, r.signature, opts), `${alg} signature verifies`);
    const { valid } = await v.vault.verify(ctx(), key.label, { kind: 'message', bytes: msg }, r.signature, opts);
    assert.ok(valid);
  }
  await assert.rejects(
    v.vault.createKey(ctx(), { label: 'hsm-exp', algorithm: 'ed25519', exportable: true, backend: 'pkcs11:main' }),
    (e) => isCustosError(e) && e.code === 'bad_request',
    'HSM keys are never exportable',
  );
  await assert.rejects(v.vault.createKey(ctx(), { label: 'nope', algorithm: 'ed25519', exportable: false, backend: 'pkcs11:other' }), /No backend "pkcs11:other"/);
});

test('a wrapped key signs after a restart, and what the vault stores of it is the token blob, never the scalar', async (t) => {
  const h = await hsmVault(t);
  if (!h) return;
  const { v, hsm } = h;
  const key = await v.vault.createKey(ctx(), { label: 'wrapped-k1', algorithm: 'secp256k1', exportable: false, backend: 'pkcs11:main', wrapped: true });
  assert.equal(key.attributes['pkcs11.kind'], 'wrapped');
  const sig1 = await v.vault.sign({ ...ctx(), key: key.id, payload: { kind: 'message', bytes: msg }, options: {}, context: {} });
  assert.ok(verifySignature('secp256k1', key.publicKey, { kind: 'message', bytes: msg }, sig1.signature, {}));
  // What the vault stores for the key, opened with the vault's own key: the token-wrapped blob.
  // What the vault holds for the key, opened with the vault's own key: it must be the token's
  // wrapped blob, with the private scalar nowhere in it (no 32-byte window whose public key is
  // the key's), so the plaintext key was never in this process to be stored.
  const stored = (await v.store.findKey(key.id))!;
  const material = (v.vault as unknown as { core: { deps: { keyring: { openSecret(k: unknown): Uint8Array } } } }).core.deps.keyring.openSecret(stored);
  assert.equal(decodeWrapped(material).algorithm, 'secp256k1');
  for (let i = 0; i + 32 <= material.length; i++) {
    const w = material.subarray(i, i + 32);
    let pub: Uint8Array | null = null;
    try {
      pub = secp256k1.getPublicKey(w, true);
    } catch {
      // not a valid scalar
    }
    assert.ok(!pub || !Buffer.from(pub).equals(Buffer.from(key.publicKey)), `the private scalar sits at offset ${i} of the stored material`);
  }
  await v.close();

  // "Restart": a new token session and a new vault process on the same files.
  const token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin });
  const reopened = await openVault({ dataDir: v.dataDir, passphrase: PASS, backends: [new Pkcs11Backend('main', token)] });
  try {
    const sig2 = await reopened.vault.sign({ ...ctx(), key: key.id, payload: { kind: 'message', bytes: msg }, options: {}, context: {} });
    assert.ok(verifySignature('secp256k1', key.publicKey, { kind: 'message', bytes: msg }, sig2.signature, {}));
    // Without the token the key cannot be used at all: a vault with no PKCS#11 backend refuses.
  } finally {
    await reopened.close();
  }
  const bare = await openVault({ dataDir: v.dataDir, passphrase: PASS });
  try {
    await assert.rejects(
      bare.vault.sign({ ...ctx(), key: key.id, payload: { kind: 'message', bytes: msg }, options: {}, context: {} }),
      (e) => isCustosError(e) && e.code === 'hsm_unavailable' && /pkcs11:main/.test(e.message),
    );
  } finally {
    await bare.close();
  }
});

test('adopts an existing non-extractable token key once; destroy deletes the token objects the vault made, not adopted ones', async (t) => {
  const h = await hsmVault(t);
  if (!h) return;
  const { v, backend } = h;
  const made = await backend.token.generateKeyPair('p256', { label: 'made-elsewhere' });
  const key = await v.vault.adoptKey(ctx(), { label: 'adopted', backend: 'pkcs11:main', objectLabel: 'made-elsewhere' });
  assert.deepEqual(key.publicKey, made.publicKey);
  const r = await v.vault.sign({ ...ctx(), key: 'adopted', payload: { kind: 'message', bytes: msg }, options: {}, context: {} });
  assert.ok(verifySignature('p256', key.publicKey, { kind: 'message', bytes: msg }, r.signature, {}));
  await assert.rejects(v.vault.adoptKey(ctx(), { label: 'ghost', backend: 'pkcs11:main', objectLabel: 'no-such' }), (e) => isCustosError(e) && e.code === 'key_not_found');
  await assert.rejects(v.vault.adoptKey(ctx(), { label: 'adopted-twice', backend: 'pkcs11:main', objectLabel: 'made-elsewhere' }), (e) => isCustosError(e) && e.code === 'label_taken');
  await v.vault.destroyKey(ctx(), 'adopted');
  assert.ok(await backend.token.findByLabel('made-elsewhere'), 'an adopted object predates the vault and stays on the token');
  // A key the vault made on the token is deleted from it with its record.
  const own = await v.vault.createKey(ctx(), { label: 'own', algorithm: 'p256', exportable: false, backend: 'pkcs11:main' });
  assert.ok(await backend.token.findById(Buffer.from(String(own.attributes['pkcs11.id']), 'hex')));
  await v.vault.destroyKey(ctx(), 'own');
  assert.equal(await backend.token.findById(Buffer.from(String(own.attributes['pkcs11.id']), 'hex')), null, 'the token object is gone');
  const tail = await v.vault.auditTail(50);
  assert.ok(tail.some((e) => e.operation === 'adopt' && e.outcome === 'ok'));
  assert.ok(tail.some((e) => e.operation === 'destroy' && e.outcome === 'ok'));
});

test('the ssh-agent serves an HSM key to real ssh-add and ssh-keygen -Y sign', async (t) => {
  if (!requireTool(t, 'ssh-keygen', 'openssh-client')) return;
  const h = await hsmVault(t);
  if (!h) return;
  const { v } = h;
  const key = await v.vault.createKey(ctx(), { label: 'ssh-hsm', algorithm: 'ed25519', exportable: false, backend: 'pkcs11:main', purpose: 'ssh' });
  const dir = join(v.dataDir, '..', 'ssh');
  mkdirSync(dir, { mode: 0o700 });
  const agent = new SshAgent(v.vault, { name: 'hsm', socketPath: join(dir, 'agent.sock'), keys: ['ssh-hsm'], allowSha1: false, maxConnections: 8 });
  await agent.listen();
  try {
    const env = { ...process.env, SSH_AUTH_SOCK: agent.config.socketPath };
    const list = await run('ssh-add', ['-L'], env);
    assert.equal(list.status, 0, list.stderr);
    const pubLine = list.stdout.trim().split('\n').find((l) => l.startsWith('ssh-ed25519'))!;
    assert.ok(pubLine, 'the HSM key is listed');
    const pubFile = join(dir, 'id.pub');
    writeFileSync(pubFile, pubLine + '\n');
    const data = join(dir, 'data.txt');
    writeFileSync(data, 'hello from the token\n');
    const signed = await run('ssh-keygen', ['-Y', 'sign', '-n', 'file', '-f', pubFile, data], env);
    assert.equal(signed.status, 0, signed.stderr);
    const allowed = join(dir, 'allowed');
    writeFileSync(allowed, `hsm@test ${pubLine}\n`);
    const check = await run('ssh-keygen', ['-Y', 'verify', '-f', allowed, '-I', 'hsm@test', '-n', 'file', '-s', `${data}.sig`], env, readFileSync(data));
    assert.equal(check.status, 0, check.stderr + check.stdout);
    assert.ok(key.publicKey.length === 32);
  } finally {
    await agent.close();
  }
});

test('the privval connector signs votes with an HSM consensus key', async (t) => {
  const h = await hsmVault(t);
  if (!h) return;
  const { v } = h;
  const consensus = await v.vault.createKey(ctx(), { label: 'val-hsm', algorithm: 'ed25519', exportable: false, backend: 'pkcs11:main', purpose: 'consensus' });
  await v.vault.createKey(ctx(), { label: 'identity', algorithm: 'ed25519', exportable: false });
  const chainId = 'hsm-chain';
  const node = await TestNode.listen({ dialect: 'v0.38' });
  const connector = new PrivvalConnector(v.vault, { name: 'hsm', chainId, address: node.address, consensusKey: 'val-hsm', identityKey: 'identity', dialect: 'v0.38' });
  try {
    connector.start();
    await node.waitForSigner(15_000);
    const pk = await node.request({ kind: 'pub_key_request', chainId });
    assert.ok(pk.kind === 'pub_key_response' && pk.pubKey);
    assert.deepEqual(pk.pubKey.bytes, consensus.publicKey);
    const ts = { seconds: 1_700_000_000n, nanos: 0 };
    const bid = { hash: new Uint8Array(32).fill(7), partSetHeader: { total: 1, hash: new Uint8Array(32).fill(8) } };
    const vote = { type: 1 as const, height: 5n, round: 0, blockId: bid, timestamp: ts, validatorAddress: new Uint8Array(20).fill(1), validatorIndex: 0, signature: new Uint8Array(0), extension: new Uint8Array(0), extensionSignature: new Uint8Array(0) };
    const r = await node.request({ kind: 'sign_vote_request', vote, chainId, skipExtensionSigning: false });
    assert.ok(r.kind === 'signed_vote_response' && r.vote && !r.error);
    const bytes = voteSignBytes(chainId, { type: 'prevote', height: 5n, round: 0, blockId: bid, timestamp: r.vote.timestamp });
    assert.ok(verifySignature('ed25519', consensus.publicKey, { kind: 'message', bytes }, r.vote.signature, {}));
    // A conflicting vote at the same height/round/step is still refused: the watermark is the vault's.
    const conflict = await node.request({ kind: 'sign_vote_request', vote: { ...vote, blockId: { ...bid, hash: new Uint8Array(32).fill(9) } }, chainId, skipExtensionSigning: false });
    assert.ok(conflict.kind === 'signed_vote_response' && conflict.error);
  } finally {
    await connector.stop();
    await node.close();
  }
});
