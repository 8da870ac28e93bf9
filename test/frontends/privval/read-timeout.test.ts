/**
 * A node that stops talking: after the SecretConnection handshake it goes silent, or sends half
 * a sealed frame, or half a privval message. The connector must drop that connection once its
 * read timeout passes and dial again, while a second validator on the same vault keeps signing.
 * Also: a node that pings is never dropped, the `[[privval]] read_timeout_seconds` setting, and
 * Celestia's SignRawBytesRequest answered with a refusal instead of a dropped connection.
 *
 * Timing: lower bounds (a timer never fires early) are asserted; upper bounds are hang guards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { makeVault, tempDir, type TestVault } from '../../helpers/tmpvault.js';
import { RawTestNode, TestNode, type RawSession } from '../../helpers/cometbft-node.js';
import { DEFAULT_READ_TIMEOUT_MS, PrivvalConnector } from '../../../src/frontends/privval/connector.js';
import { encodeMessage, frameMessage, type Vote } from '../../../src/frontends/privval/messages.js';
import { voteSignBytes, type BlockId } from '../../../src/frontends/privval/sign-bytes.js';
import { loadConfig } from '../../../src/daemon/config.js';

const CHAIN_A = 'hung-chain-a';
const CHAIN_B = 'live-chain-b';
/** Generous: only keeps a broken reconnect loop from hanging the test. */
const HANG_GUARD_MS = 20_000;

function blockId(seed: number): BlockId {
  return { hash: new Uint8Array(32).fill(seed), partSetHeader: { total: 1, hash: new Uint8Array(32).fill(seed + 1) } };
}

function prevote(height: bigint, seed = Number(height)): Vote {
  return {
    type: 1,
    height,
    round: 0,
    blockId: blockId(seed & 0xff),
    timestamp: { seconds: 1_700_000_000n + height, nanos: 0 },
    validatorAddress: new Uint8Array(20).fill(2),
    validatorIndex: 0,
    signature: new Uint8Array(0),
    extension: new Uint8Array(0),
    extensionSignature: new Uint8Array(0),
  };
}

function verifies(pub: Uint8Array, chain: string, v: Vote, sig: Uint8Array): boolean {
  const bytes = voteSignBytes(chain, { type: 'prevote', height: v.height, round: v.round, blockId: v.blockId, timestamp: v.timestamp });
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pub]);
  return nodeVerify(null, bytes, createPublicKey({ key: spki, format: 'der', type: 'spki' }), sig);
}

async function keys(v: TestVault) {
  const a = await v.vault.createKey(v.ctx(), { label: 'val-a', algorithm: 'ed25519', exportable: false, purpose: 'consensus' });
  const b = await v.vault.createKey(v.ctx(), { label: 'val-b', algorithm: 'ed25519', exportable: false, purpose: 'consensus' });
  await v.vault.createKey(v.ctx(), { label: 'identity', algorithm: 'ed25519', exportable: false });
  return { a, b };
}

/** Signs a prevote on a raw session and checks the signature. */
async function signOn(s: RawSession, pub: Uint8Array, chain: string, height: bigint): Promise<void> {
  const v = prevote(height);
  await s.sendMessage({ kind: 'sign_vote_request', vote: v, chainId: chain, skipExtensionSigning: false }, 'v0.38');
  const r = await s.receive('v0.38', HANG_GUARD_MS);
  assert.ok(r?.kind === 'signed_vote_response' && r.vote && !r.error, `h${height}: ${JSON.stringify(r?.kind === 'signed_vote_response' ? r.error : r?.kind)}`);
  assert.ok(verifies(pub, chain, v, r.vote.signature), `h${height}: the signature verifies`);
}

test('a node silent after the handshake is dropped after the read timeout and redialled; another validator keeps signing meanwhile', async () => {
  const v = await makeVault();
  const { a, b } = await keys(v);
  const hung = await RawTestNode.listen();
  const live = await TestNode.listen();
  const readTimeoutMs = 2000;
  const warnings: string[] = [];
  const ca = new PrivvalConnector(
    v.vault,
    { name: 'a', chainId: CHAIN_A, address: hung.address, consensusKey: 'val-a', identityKey: 'identity', dialect: 'v0.38', readTimeoutMs },
    { info: () => {}, warn: (m, f) => warnings.push(`${m} ${String(f?.error ?? '')}`) },
  );
  const cb = new PrivvalConnector(v.vault, { name: 'b', chainId: CHAIN_B, address: live.address, consensusKey: 'val-b', identityKey: 'identity', dialect: 'v0.38' });
  try {
    ca.start();
    cb.start();
    const first = await hung.accept(HANG_GUARD_MS);
    const acceptedAt = Date.now(); // the connector's read timer starts after this
    const s = await first.handshake(hung.signer);
    assert.ok(s, 'the handshake completes');
    // ... and then the node says nothing.

    // Validator b signs while a's connection hangs: b's answers come long before a's read
    // timeout (a hang guard: on any machine three signatures take far less than 2 s).
    const conn = await live.waitForSigner(HANG_GUARD_MS);
    for (const h of [1n, 2n, 3n]) {
      const r = await conn.request({ kind: 'sign_vote_request', vote: prevote(h), chainId: CHAIN_B, skipExtensionSigning: false });
      assert.ok(r.kind === 'signed_vote_response' && r.vote && !r.error);
      assert.ok(verifies(b.publicKey, CHAIN_B, prevote(h), r.vote.signature));
    }
    assert.ok(first.isOpen, "validator b signed while validator a's silent connection was still open");
    assert.equal(ca.status().state, 'connected');

    assert.equal(await first.waitForSignerClose(readTimeoutMs + HANG_GUARD_MS), true, 'the connector drops the silent node');
    const elapsed = Date.now() - acceptedAt;
    assert.ok(elapsed >= readTimeoutMs - 5, `dropped after ${elapsed} ms, not before the ${readTimeoutMs} ms read timeout`);
    assert.ok(warnings.some((w) => w.includes('sent no request') && w.includes('read timeout')), warnings.join('\n'));

    // It dials again, and the new connection signs.
    const second = await hung.accept(HANG_GUARD_MS);
    const s2 = await second.handshake(hung.signer);
    assert.ok(s2);
    await signOn(s2, a.publicKey, CHAIN_A, 7n);
    assert.deepEqual(ca.status().lastSigned, { height: '7', round: 0, step: 2 });
    s2.close();
    s.close();
  } finally {
    await ca.stop();
    await cb.stop();
    await hung.close();
    await live.close();
    await v.dispose();
  }
});

test('a node that stops in the middle of a sealed frame or of a privval message is dropped after the read timeout and redialled', async () => {
  const v = await makeVault();
  const { a } = await keys(v);
  const node = await RawTestNode.listen();
  const readTimeoutMs = 300;
  const warnings: string[] = [];
  const connector = new PrivvalConnector(
    v.vault,
    { name: 'a', chainId: CHAIN_A, address: node.address, consensusKey: 'val-a', identityKey: 'identity', dialect: 'v0.38', readTimeoutMs },
    { info: () => {}, warn: (m, f) => warnings.push(`${m} ${String(f?.error ?? '')}`) },
  );
  try {
    connector.start();
    const request = frameMessage(encodeMessage({ kind: 'sign_vote_request', vote: prevote(5n), chainId: CHAIN_A, skipExtensionSigning: false }, 'v0.38'));
    const variants: Array<[string, (s: RawSession) => Promise<void>, string]> = [
      ['half a sealed frame', (s) => s.raw.write(s.sealFrame(request).subarray(0, 500)), 'sent no request'],
      ['half a privval message', (s) => s.send(request.subarray(0, Math.floor(request.length / 2))), 'stopped in the middle of a request'],
      ['a length prefix alone', (s) => s.send(request.subarray(0, 1)), 'stopped in the middle of a request'],
    ];
    for (const [what, sendPart, expected] of variants) {
      const raw = await node.accept(HANG_GUARD_MS);
      // Measured from before the handshake: half a sealed frame is no progress (no chunk is
      // read), so the connector's clock runs from its end of the handshake, which can come
      // before this side's under load. A point before the handshake is a true lower bound.
      const sentAt = Date.now();
      const s = await raw.handshake(node.signer);
      assert.ok(s, what);
      const warned = warnings.length;
      await sendPart(s);
      assert.equal(await raw.waitForSignerClose(readTimeoutMs + HANG_GUARD_MS), true, `${what}: the connector drops the stalled node`);
      assert.ok(Date.now() - sentAt >= readTimeoutMs - 5, `${what}: not before the read timeout`);
      assert.ok(warnings.slice(warned).some((w) => w.includes(expected)), `${what}: ${warnings.slice(warned).join('\n')}`);
      s.close();
    }
    // Nothing was signed by the halves; a whole request on the next connection is.
    assert.equal(await v.vault.getWatermark(v.ctx(), 'val-a', CHAIN_A), null);
    const raw = await node.accept(HANG_GUARD_MS);
    const s = await raw.handshake(node.signer);
    assert.ok(s);
    await signOn(s, a.publicKey, CHAIN_A, 5n);
    s.close();
  } finally {
    await connector.stop();
    await node.close();
    await v.dispose();
  }
});

test('a node that keeps pinging within the read timeout is never dropped', async () => {
  const v = await makeVault();
  await keys(v);
  const node = await RawTestNode.listen();
  const readTimeoutMs = 1000;
  const connector = new PrivvalConnector(v.vault, { name: 'a', chainId: CHAIN_A, address: node.address, consensusKey: 'val-a', identityKey: 'identity', dialect: 'v0.38', readTimeoutMs });
  try {
    connector.start();
    const raw = await node.accept(HANG_GUARD_MS);
    const s = await raw.handshake(node.signer);
    assert.ok(s);
    // Ping every 50 ms for 2.5 read timeouts, measuring the largest gap between our requests.
    let last = Date.now();
    let maxGap = 0;
    const end = last + 2.5 * readTimeoutMs;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      const now = Date.now();
      maxGap = Math.max(maxGap, now - last);
      await s.sendMessage({ kind: 'ping_request' }, 'v0.38');
      const r = await s.receive('v0.38', HANG_GUARD_MS);
      if (r === null) break;
      assert.deepEqual(r, { kind: 'ping_response' });
      last = Date.now();
    }
    // Only a machine so loaded that our own pings were a read timeout apart may see a drop.
    if (maxGap < readTimeoutMs - 100) {
      assert.ok(raw.isOpen, `dropped although the largest gap between pings was ${maxGap} ms`);
      assert.equal(node.accepted, 1);
    }
    s.close();
  } finally {
    await connector.stop();
    await node.close();
    await v.dispose();
  }
});

test("Celestia's SignRawBytesRequest gets a refusal in a SignedRawBytesResponse and the connection stays up", async () => {
  const v = await makeVault();
  await keys(v);
  const node = await TestNode.listen({ dialect: 'v0.38' });
  const connector = new PrivvalConnector(v.vault, { name: 'celestia', chainId: CHAIN_A, address: node.address, consensusKey: 'val-a', identityKey: 'identity', dialect: 'v0.38' });
  try {
    connector.start();
    const conn = await node.waitForSigner(HANG_GUARD_MS);
    const r = await conn.request({ kind: 'sign_raw_bytes_request', chainId: CHAIN_A, rawBytes: new TextEncoder().encode('fibre commitment'), uniqueId: 'fibre-commitment' });
    assert.equal(r.kind, 'signed_raw_bytes_response');
    assert.ok(r.kind === 'signed_raw_bytes_response');
    assert.equal(r.signature.length, 0);
    assert.equal(r.error?.code, 1);
    assert.match(r.error?.description ?? '', /SignRawBytesRequest/);
    assert.equal(connector.status().refusals, 1);
    // Same connection, still serving.
    assert.equal(node.connections.length, 1);
    assert.deepEqual(await conn.request({ kind: 'ping_request' }), { kind: 'ping_response' });
    const signed = await conn.request({ kind: 'sign_vote_request', vote: prevote(3n), chainId: CHAIN_A, skipExtensionSigning: false });
    assert.ok(signed.kind === 'signed_vote_response' && signed.vote && !signed.error);
    assert.ok(conn.isOpen);
  } finally {
    await connector.stop();
    await node.close();
    await v.dispose();
  }
});

test('[[privval]] read_timeout_seconds: a per-validator setting, validated; the connector refuses nonsense', async () => {
  const { dir, cleanup } = tempDir('custos-privval-config-');
  try {
    const path = join(dir, 'custos.toml');
    const entry = (extra: string, name = 'a') => `[[privval]]\nname = "${name}"\nchain_id = "c"\naddress = "unix:///tmp/pv.sock"\nkey = "k"\n${extra}`;
    writeFileSync(path, `${entry('read_timeout_seconds = 15\n')}\n${entry('', 'b')}`);
    const cfg = loadConfig(path, true);
    assert.equal(cfg.privval[0]!.readTimeoutSeconds, 15);
    assert.equal(cfg.privval[1]!.readTimeoutSeconds, undefined, 'absent: the connector default');
    assert.equal(DEFAULT_READ_TIMEOUT_MS, 10_000);
    for (const bad of ['0', '3601', '1.5', '"10"']) {
      writeFileSync(path, entry(`read_timeout_seconds = ${bad}\n`));
      assert.throws(() => loadConfig(path, true), /read_timeout_seconds/, bad);
    }
  } finally {
    cleanup();
  }
  const v = await makeVault();
  try {
    for (const readTimeoutMs of [0, -1, 1.5, Number.NaN, 3_600_001]) {
      assert.throws(
        () => new PrivvalConnector(v.vault, { name: 'x', chainId: 'c', address: 'unix:///tmp/x.sock', consensusKey: 'k', identityKey: '', dialect: 'v0.38', readTimeoutMs }),
        /read timeout/,
        String(readTimeoutMs),
      );
    }
  } finally {
    await v.dispose();
  }
});
