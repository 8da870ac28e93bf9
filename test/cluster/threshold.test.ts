/**
 * Threshold keys across real `custos serve` processes on loopback, talking mutual TLS: DKG and
 * a dealer split, signatures checked by node:crypto (Ed25519) and BIP340 verification, one
 * cosigner down and the key still signs, too few up and it refuses, each cosigner's own audit
 * entry per share.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, verify as nodeVerify, randomBytes } from 'node:crypto';
import { schnorr } from '@noble/curves/secp256k1.js';
import { tempDir } from '../helpers/tmpvault.js';
import { requireTool } from '../helpers/require.js';
import { agree, makeCluster, type ClusterNode } from '../helpers/cluster.js';
import https from 'node:https';
import { createHash } from 'node:crypto';
import { appendFileSync, cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { custosAsync } from '../helpers/process.js';
import { decodeCommitments, decodePublic, encodeCommitments, encodePublic, frostOf } from '../../src/crypto/frost.js';
import { join } from 'node:path';
import { TestNode } from '../helpers/cometbft-node.js';
import { blockId, filePv, TS, vote, voteBytes } from '../helpers/validator.js';
import type { PrivvalMessage, Vote } from '../../src/frontends/privval/messages.js';

const CHAIN = 'threshold-chain';

const ED_SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const edVerify = (pub: string, msg: Uint8Array, sig: Uint8Array) => nodeVerify(null, msg, createPublicKey({ key: Buffer.concat([ED_SPKI, Buffer.from(pub, 'hex')]), format: 'der', type: 'spki' }), sig);

test('2-of-3 by DKG: any node coordinates, node:crypto and BIP340 verify, one cosigner down still signs, two down refuses', async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const { dir, cleanup } = tempDir();
  const c = await makeCluster(dir, ['a', 'b', 'c']);
  try {
    const a = c.node('a').client;
    const status = await a.clusterStatus();
    assert.deepEqual(status.peers.map((p) => [p.name, p.reachable]), [['b', true], ['c', true]], JSON.stringify(status));
    // No member takes part in a key set its operator did not agree to, nor in another one than agreed.
    await assert.rejects(a.clusterKeygen({ label: 'val', algorithm: 'ed25519', threshold: 2 }), (e: Error & { code?: string; tag?: string }) => e.code === 'forbidden' && e.tag === 'consent' && /custos cluster expect --keygen/.test(e.message));
    await agree(c.nodes, 'a', { label: 'val', kind: 'keygen', threshold: 2, members: ['a', 'b', 'c'] });
    await assert.rejects(a.clusterKeygen({ label: 'val', algorithm: 'ed25519', threshold: 2, purpose: 'consensus' }), (e: Error & { code?: string; tag?: string }) => e.tag === 'consent', 'agreed to a general key, not a consensus one');

    await agree(c.nodes, 'a', { label: 'val', kind: 'keygen', threshold: 2, members: ['a', 'b', 'c'] });
    const made = await a.clusterKeygen({ label: 'val', algorithm: 'ed25519', threshold: 2 });
    assert.deepEqual(made.members, ['a', 'b', 'c']);
    for (const n of c.nodes) {
      const k = (await n.client.listKeys()).find((x) => x.label === 'val')!;
      assert.equal(k.public_key.raw_hex, made.public_key, `${n.name} holds a share of the same key set`);
    }
    const msg = randomBytes(100);
    for (const n of c.nodes) {
      const r = await n.client.sign('val', { message: msg });
      assert.ok(edVerify(made.public_key, msg, r.signature), `${n.name} coordinated a valid Ed25519 signature`);
    }

    await agree(c.nodes, 'b', { label: 'taproot', kind: 'keygen', threshold: 2, members: ['a', 'b', 'c'], algorithm: 'secp256k1-bip340' });
    const tr = await c.node('b').client.clusterKeygen({ label: 'taproot', algorithm: 'secp256k1-bip340', threshold: 2 });
    const m2 = randomBytes(32);
    const s2 = await c.node('c').client.sign('taproot', { message: m2 });
    assert.ok(schnorr.verify(s2.signature, m2, Buffer.from(tr.public_key, 'hex')), 'a valid BIP340 signature');

    // One cosigner down: the other two sign.
    await c.stop('c', 'SIGKILL');
    const r = await a.sign('val', { message: msg });
    assert.ok(edVerify(made.public_key, msg, r.signature));
    // Two down: refused, with which cosigners failed.
    await c.stop('b', 'SIGKILL');
    await assert.rejects(a.sign('val', { message: msg }), (e: Error & { code?: string }) => e.code === 'cosigners_unavailable' && /b \(/.test(e.message));
    // Back: signs again (its nonces died with it; new rounds start fresh).
    await c.start('b');
    assert.ok(edVerify(made.public_key, msg, (await a.sign('val', { message: msg })).signature));
  } finally {
    await c.close();
    cleanup();
  }
});

test('privval with a 2-of-3 key split from a priv_validator_key.json: connectors on two nodes, votes verify under the validator key, conflicting votes race and at most one is signed, one cosigner down still signs', { timeout: 120_000 }, async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const { dir, cleanup } = tempDir();
  const c = await makeCluster(dir, ['a', 'b', 'c']);
  const node = await TestNode.listen({ dialect: 'v0.38' });
  try {
    const pv = filePv(CHAIN, vote(2, 1, 0, blockId(1)));
    await agree(c.nodes, 'a', { label: 'validator', kind: 'split', threshold: 2, members: ['a', 'b', 'c'], purpose: 'consensus' });
    const split = await c.node('a').client.clusterSplit({ label: 'validator', format: 'cometbft', material: new TextEncoder().encode(pv.keyJson), threshold: 2, purpose: 'consensus' });
    assert.equal(split.public_key, Buffer.from(pv.pub).toString('hex'), 'the split key set has the validator key');
    for (const n of c.nodes) assert.equal((await n.client.listKeys()).find((k) => k.label === 'validator')?.purpose, 'consensus');
    // A connector on a and on b, both dialling the node.
    for (const name of ['a', 'b']) {
      const n = c.node(name);
      await n.client.createKey({ label: 'pv-id', algorithm: 'ed25519' });
      appendFileSync(join(n.dataDir, 'custos.toml'), `\n[[privval]]\nname = "val"\nchain_id = "${CHAIN}"\naddress = "${node.address}"\nkey = "validator"\nidentity_key = "pv-id"\ndialect = "v0.38"\n`);
      await n.client.reload();
    }
    const [ca, cb] = await node.waitForSigners(2, 15_000);
    const signVote = async (conn: typeof ca, v: Vote) => {
      const r = await conn!.request({ kind: 'sign_vote_request', vote: v, chainId: CHAIN, skipExtensionSigning: false }, 15_000);
      assert.equal(r.kind, 'signed_vote_response');
      return r as Extract<PrivvalMessage, { kind: 'signed_vote_response' }>;
    };
    const ok = (r: Awaited<ReturnType<typeof signVote>>, v: Vote) => !r.error && edVerify(split.public_key, voteBytes(CHAIN, { ...v, timestamp: r.vote!.timestamp }), r.vote!.signature);

    // A precommit with its extension, through each connector.
    const p1 = vote(2, 2, 0, blockId(2));
    const r1 = await signVote(ca, p1);
    assert.ok(ok(r1, p1), `a signed: ${r1.error?.description}`);
    assert.equal(r1.vote!.extensionSignature.length, 64, 'the vote extension is signed too');
    const p2 = vote(2, 3, 0, blockId(3));
    assert.ok(ok(await signVote(cb, p2), p2), 'b signed');

    // The same position with another timestamp through the other connector: the first timestamp, signed again.
    const later = { ...p2, timestamp: { seconds: TS.seconds + 5n, nanos: 0 } };
    const again = await signVote(ca, later);
    assert.ok(!again.error, again.error?.description);
    assert.equal(again.vote!.timestamp.seconds, TS.seconds, 'the timestamp the cosigners hold');
    assert.ok(ok(again, p2));

    // Conflicting prevotes for one position, one per connector, at once: never both signed.
    let both = 0;
    let one = 0;
    for (let h = 10; h < 16; h++) {
      const [x, y] = await Promise.all([signVote(ca, vote(1, h, 0, blockId(h))), signVote(cb, vote(1, h, 0, blockId(h + 100)))]);
      const sx = ok(x, vote(1, h, 0, blockId(h)));
      const sy = ok(y, vote(1, h, 0, blockId(h + 100)));
      if (sx && sy) both++;
      if (sx !== sy) one++;
    }
    assert.equal(both, 0, 'no height got two conflicting signatures');
    t.diagnostic(`conflicting prevotes: ${one} of 6 heights got one signature, none got two`);

    // A cosigner down: the other two still sign.
    await c.stop('c', 'SIGKILL');
    const p3 = vote(1, 20, 0, blockId(20));
    assert.ok(ok(await signVote(ca, p3), p3));
  } finally {
    await node.close();
    await c.close();
    cleanup();
  }
});

test('a cosigner that returns a bad share is named, and nothing is released', { timeout: 60_000 }, async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const { dir, cleanup } = tempDir();
  const c = await makeCluster(dir, ['a', 'b', 'c']);
  // c is replaced by an impostor holding c's real share (dealt to it) that corrupts its shares.
  await c.stop('c');
  const fake = await fakeCosigner(c.node('c'), c.node('a').dataDir);
  try {
    // Through the CLI: b's operator agrees, a splits a raw key from a file and destroys the file.
    const api = (n: string) => ['--addr', c.node(n).url, '--token-file', join(dir, `${n}.token`), '--ca', join(c.node('a').dataDir, 'tls', 'ca.pem')];
    const expect = await custosAsync(['cluster', 'expect', '--split', '--label', 'k', '--threshold', '2', '--members', 'a,b,c', '--coordinator', 'a', ...api('b')]);
    assert.equal(expect.status, 0, expect.stderr);
    const keyFile = join(dir, 'k.key');
    writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
    const split = await custosAsync(['cluster', 'split', '--label', 'k', '--threshold', '2', '--format', 'raw', '--algorithm', 'ed25519', '--in', keyFile, '--destroy-input', '--json', ...api('a')]);
    assert.equal(split.status, 0, split.stderr);
    assert.equal(existsSync(keyFile), false, 'the whole key file is gone');
    const made = JSON.parse(split.stdout) as { public_key: string; input_destroyed: boolean };
    assert.equal(made.input_destroyed, true);
    await c.stop('b');
    await assert.rejects(c.node('a').client.sign('k', { message: randomBytes(20) }), (e: Error & { code?: string; tag?: string }) => e.code === 'bad_share' && e.tag === 'c' && /cosigner c/.test(e.message));
    const tail = await c.node('a').client.auditTail(20);
    assert.ok(tail.some((e) => e.outcome === 'failed' && e.reason === 'bad_share:c'), 'the coordinator audited the faulty cosigner');
    fake.honest = true;
    const msg = randomBytes(20);
    assert.ok(edVerify(made.public_key, msg, (await c.node('a').client.sign('k', { message: msg })).signature), 'an honest share signs');
  } finally {
    fake.close();
    await c.close();
    cleanup();
  }
});

/** An HTTPS server at a node's address with its certificate, playing that node as a cosigner with a real share. */
async function fakeCosigner(n: ClusterNode, caDir: string) {
  const F = frostOf('ed25519');
  let share: { identifier: string; signingShare: Uint8Array } | undefined;
  let pub: ReturnType<typeof decodePublic> | undefined;
  const rounds = new Map<string, ReturnType<typeof F.commit>>();
  const state = { honest: false, close: () => server.close() };
  const server = https.createServer({ cert: readFileSync(join(n.dataDir, 'tls', 'server-chain.pem')), key: readFileSync(join(n.dataDir, 'tls', 'server.key')), ca: readFileSync(join(caDir, 'tls', 'ca.pem')), requestCert: true }, (req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const b = JSON.parse(body || '{}');
      let answer: unknown = {};
      if (req.url === '/v1/cluster/dealt') {
        pub = decodePublic('ed25519', b.public);
        share = { identifier: b.members[n.name], signingShare: Buffer.from(b.share, 'hex') };
        answer = { public_key: Buffer.from(pub.commitments[0]!).toString('hex'), public_sha256: createHash('sha256').update(encodePublic(pub)).digest('hex') };
      } else if (req.url === '/v1/cluster/commit') {
        const round = randomBytes(8).toString('hex');
        const made = F.commit(share!);
        rounds.set(round, made);
        answer = { round, commitments: encodeCommitments(made.commitments) };
      } else if (req.url === '/v1/cluster/share') {
        const made = rounds.get(b.round)!;
        const s = F.signShare(share!, pub!, made.nonces, b.commitments.map((x: unknown) => decodeCommitments('ed25519', x)), Buffer.from(b.message, 'base64'));
        if (!state.honest) s[0] = s[0]! ^ 1;
        answer = { share: Buffer.from(s).toString('hex') };
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((r) => server.listen(n.port, '127.0.0.1', () => r()));
  return state;
}

test('refresh: same public key, old shares useless; a lost cosigner replaced by a new node', { timeout: 120_000 }, async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const { dir, cleanup } = tempDir();
  const c = await makeCluster(dir, ['a', 'b', 'c', 'd']);
  try {
    const a = c.node('a').client;
    // A consensus key needs a threshold above half its members.
    await assert.rejects(a.clusterKeygen({ label: 'half', algorithm: 'ed25519', threshold: 2, purpose: 'consensus' }), /above half/);
    await agree(c.nodes, 'a', { label: 'rk', kind: 'keygen', threshold: 2, members: ['a', 'b', 'c'] });
    const made = await a.clusterKeygen({ label: 'rk', algorithm: 'ed25519', threshold: 2, members: ['a', 'b', 'c'] });
    const msg = randomBytes(30);
    // c's vault as it is now: its old share, kept aside.
    await c.stop('c');
    cpSync(c.node('c').dataDir, join(dir, 'c-old'), { recursive: true });
    await c.start('c');
    // Every refresh needs each other member's agreement: one peer alone cannot split a key set.
    await assert.rejects(a.clusterRefresh('rk'), (e: Error & { code?: string; tag?: string }) => e.code === 'forbidden' && e.tag === 'consent');
    await agree(c.nodes, 'a', { label: 'rk', kind: 'reshare', threshold: 2, members: ['a', 'b', 'c'] });
    const r = await a.clusterRefresh('rk');
    assert.equal(r.public_key, made.public_key);
    assert.ok(edVerify(made.public_key, msg, (await a.sign('rk', { message: msg })).signature), 'the refreshed key signs');
    // c back on its old share: with b away, a and c cannot sign, and c is named.
    await c.stop('c');
    rmSync(c.node('c').dataDir, { recursive: true });
    cpSync(join(dir, 'c-old'), c.node('c').dataDir, { recursive: true });
    await c.start('c');
    await c.stop('b');
    await assert.rejects(a.sign('rk', { message: msg }), (e: Error & { code?: string; tag?: string }) => e.code === 'bad_share' && e.tag === 'c');
    // Replace c by d: a and b re-deal to a, b and d.
    await c.start('b');
    // Replacing a member changes who holds shares: b and d agree first; without it b refuses.
    await assert.rejects(a.clusterRefresh('rk', { old: 'c', new: 'd' }), (e: Error & { code?: string; tag?: string }) => e.code === 'forbidden' && e.tag === 'consent');
    await agree(c.nodes, 'a', { label: 'rk', kind: 'reshare', threshold: 2, members: ['a', 'b', 'd'] });
    const rep = await a.clusterRefresh('rk', { old: 'c', new: 'd' });
    assert.deepEqual(rep.members, ['a', 'b', 'd']);
    // A consensus key: the new member starts from the highest position its dealers hold.
    await agree(c.nodes, 'a', { label: 'rv', kind: 'keygen', threshold: 2, members: ['a', 'b', 'd'], purpose: 'consensus' });
    await a.clusterKeygen({ label: 'rv', algorithm: 'ed25519', threshold: 2, members: ['a', 'b', 'd'], purpose: 'consensus' });
    await a.importWatermark('rv', 'wm-chain', { height: '50', round: 0, step: 2 });
    await c.node('b').client.importWatermark('rv', 'wm-chain', { height: '40', round: 1, step: 3 });
    await c.node('d').client.importWatermark('rv', 'wm-chain', { height: '70', round: 0, step: 1 });
    await agree(c.nodes, 'a', { label: 'rv', kind: 'reshare', threshold: 2, members: ['a', 'b', 'c'], purpose: 'consensus' });
    await a.clusterRefresh('rv', { old: 'd', new: 'c' });
    const wm = await c.node('c').client.getWatermark('rv', 'wm-chain');
    assert.deepEqual([wm.height, wm.round, wm.step], ['50', 0, 2], "the highest of a's and b's");
    assert.equal((await c.node('d').client.listKeys()).find((k) => k.label === 'rk')?.public_key.raw_hex, made.public_key);
    await c.stop('c');
    await c.stop('b');
    assert.ok(edVerify(made.public_key, msg, (await c.node('d').client.sign('rk', { message: msg })).signature), 'd and a sign');
  } finally {
    await c.close();
    cleanup();
  }
});

test('3-of-5 by DKG across five servers: three sign, two refuse', { timeout: 120_000 }, async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const { dir, cleanup } = tempDir();
  const c = await makeCluster(dir, ['a', 'b', 'c', 'd', 'e']);
  try {
    await agree(c.nodes, 'c', { label: 'five', kind: 'keygen', threshold: 3, members: ['a', 'b', 'c', 'd', 'e'] });
    const made = await c.node('c').client.clusterKeygen({ label: 'five', algorithm: 'secp256k1-bip340', threshold: 3 });
    assert.equal(made.members.length, 5);
    const msg = randomBytes(32);
    assert.ok(schnorr.verify((await c.node('e').client.sign('five', { message: msg })).signature, msg, Buffer.from(made.public_key, 'hex')));
    await c.stop('a', 'SIGKILL');
    await c.stop('b', 'SIGKILL');
    assert.ok(schnorr.verify((await c.node('d').client.sign('five', { message: msg })).signature, msg, Buffer.from(made.public_key, 'hex')), 'three of five sign');
    await c.stop('c', 'SIGKILL');
    await assert.rejects(c.node('d').client.sign('five', { message: msg }), (e: Error & { code?: string }) => e.code === 'cosigners_unavailable');
  } finally {
    await c.close();
    cleanup();
  }
});
