/**
 * FrontEnds: the set of [[privval]] connectors follows the newest wanted configuration even
 * when a reload races the unseal that opens it, and nothing starts once shutdown began.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { makeVault } from '../helpers/tmpvault.js';
import { TestNode } from '../helpers/cometbft-node.js';
import { FrontEnds } from '../../src/daemon/frontends.js';
import { Metrics } from '../../src/frontends/http/metrics.js';
import { loadConfig, type PrivvalConfig, type ServeConfig } from '../../src/daemon/config.js';
import type { PrivvalMessage } from '../../src/frontends/privval/messages.js';
import { blockId, vote } from '../helpers/validator.js';

function config(privval: PrivvalConfig[]): ServeConfig {
  return { ...loadConfig(undefined), privval };
}
/** A vault with the consensus and identity keys the entries name. */
async function vaultWithKeys() {
  const v = await makeVault();
  await v.vault.createKey(v.ctx(), { label: 'consensus', algorithm: 'ed25519', exportable: false, purpose: 'consensus' });
  await v.vault.createKey(v.ctx(), { label: 'identity', algorithm: 'ed25519', exportable: false });
  return v;
}
const entry = (name: string, address: string): PrivvalConfig => ({ name, chainId: 'fe-1', address, key: 'consensus', identityKey: 'identity', dialect: 'v0.38', allowSignBytes: false });

test('a reload racing the unseal that opens the vault is applied after it: the removed entry stops, the new one starts', async () => {
  const v = await vaultWithKeys();
  const a = await TestNode.listen();
  const b = await TestNode.listen();
  const fe = new FrontEnds(v.dataDir, pino({ level: 'silent' }), new Metrics());
  try {
    await fe.want(config([entry('a', a.address)])); // sealed: kept
    const opening = fe.open(v.vault); // the unseal: queued
    const reloaded = fe.want(config([entry('b', b.address)])); // SIGHUP while it starts
    await opening;
    const r = await reloaded;
    assert.deepEqual(r?.privval.started, ['b']);
    assert.deepEqual(r?.privval.stopped, ['a']);
    assert.deepEqual(fe.privvalStatus().map((x) => x.cfg.name), ['b']);
    await b.waitForSigner();
  } finally {
    await fe.stopAll();
    await a.close();
    await b.close();
    await v.dispose();
  }
});

test('after stopAll nothing starts: a reload during shutdown is refused and no connector outlives it', async () => {
  const v = await vaultWithKeys();
  const a = await TestNode.listen();
  const fe = new FrontEnds(v.dataDir, pino({ level: 'silent' }), new Metrics());
  try {
    await fe.open(v.vault, config([]));
    const stopping = fe.stopAll();
    await assert.rejects(fe.want(config([entry('a', a.address)])), /shutting down/);
    await stopping;
    await assert.rejects(fe.open(v.vault, config([entry('a', a.address)])), /shutting down/);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(a.connections.length, 0, 'no connector dialled after shutdown');
    assert.deepEqual(fe.privvalStatus(), []);
  } finally {
    await a.close();
    await v.dispose();
  }
});

test('a reload queued behind an unseal that fails starts nothing on that vault; the next unseal applies the newest configuration', async () => {
  const v = await vaultWithKeys();
  const a = await TestNode.listen();
  const fe = new FrontEnds(v.dataDir, pino({ level: 'silent' }), new Metrics());
  try {
    await fe.want(config([{ ...entry('broken', a.address), key: 'no-such-key' }]));
    const opening = fe.open(v.vault); // fails: the key is missing
    const reloaded = fe.want(config([entry('a', a.address)])); // queued behind it
    await assert.rejects(opening, /names no key in the vault/);
    assert.equal(await reloaded, null, 'kept for the next unseal, not applied to a vault being closed');
    assert.deepEqual(fe.privvalStatus(), []);
    const r = await fe.open(v.vault);
    assert.deepEqual(r.privval.started, ['a']);
    await a.waitForSigner();
  } finally {
    await fe.stopAll();
    await a.close();
    await v.dispose();
  }
});

test('entries labelled v0.34 and v0.37 speak the tendermint.privval wire and sign the extension of a non-nil precommit (a v0.38 node labelled older must not halt)', async () => {
  const v = await vaultWithKeys();
  const fe = new FrontEnds(v.dataDir, pino({ level: 'silent' }), new Metrics());
  const nodes = [await TestNode.listen({ dialect: 'v0.38' }), await TestNode.listen({ dialect: 'v0.38' })];
  try {
    await fe.open(v.vault, config([{ ...entry('old', nodes[0]!.address), dialect: 'v0.34' }, { ...entry('mid', nodes[1]!.address), dialect: 'v0.37', chainId: 'fe-2' }]));
    for (const [i, chain] of [[0, 'fe-1'], [1, 'fe-2']] as const) {
      await nodes[i]!.waitForSigner();
      const r = (await nodes[i]!.request({ kind: 'sign_vote_request', vote: vote(2, 5, 0, blockId(1)), chainId: chain, skipExtensionSigning: false })) as Extract<PrivvalMessage, { kind: 'signed_vote_response' }>;
      assert.equal(r.error, undefined);
      assert.equal(r.vote!.extensionSignature.length, 64);
    }
    assert.deepEqual(fe.privvalStatus().map((x) => x.cfg.dialect), ['v0.34', 'v0.37']);
  } finally {
    await fe.stopAll();
    for (const n of nodes) await n.close();
    await v.dispose();
  }
});
