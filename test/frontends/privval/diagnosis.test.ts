/**
 * What the connector tells an operator: a node that hangs up right after the public key
 * exchange gets a hint naming the likely version mismatch and the setting to change, and a
 * dial timeout is measured from the dial, not from whatever held the event loop before it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeVault } from '../../helpers/tmpvault.js';
import { TestNode } from '../../helpers/cometbft-node.js';
import { PrivvalConnector } from '../../../src/frontends/privval/connector.js';
import type { PrivvalMessage } from '../../../src/frontends/privval/messages.js';

const CHAIN = 'diag-1';

async function setup() {
  const v = await makeVault();
  await v.vault.createKey(v.ctx(), { label: 'consensus', algorithm: 'ed25519', exportable: false, purpose: 'consensus' });
  await v.vault.createKey(v.ctx(), { label: 'identity', algorithm: 'ed25519', exportable: false });
  return v;
}

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a v1 node talking to a v0.38 entry hangs up after the public key: the log and the status name the dialect to set', async () => {
  const v = await setup();
  const node = await TestNode.listen({ dialect: 'v1' });
  const warns: Array<{ m: string; f?: Record<string, unknown> }> = [];
  const connector = new PrivvalConnector(
    v.vault,
    { name: 'hub', chainId: CHAIN, address: node.address, consensusKey: 'consensus', identityKey: 'identity', dialect: 'v0.38', versionLabel: 'v0.38' },
    { info: () => {}, warn: (m, f) => warns.push({ m, ...(f ? { f } : {}) }) },
  );
  try {
    connector.start();
    const conn = await node.waitForSigner();
    // The v1 node reads the v0.38 PubKeyResponse as an empty key and closes, as CometBFT does.
    const r = (await conn.request({ kind: 'pub_key_request', chainId: CHAIN })) as Extract<PrivvalMessage, { kind: 'pub_key_response' }>;
    assert.equal(r.pubKey, undefined, 'the v1 node cannot read a v0.38 public key');
    await conn.close();
    await waitFor(() => connector.status().hint !== undefined);
    const hint = connector.status().hint!;
    assert.match(hint, /another privval version than this entry's dialect = "v0\.38"/);
    assert.match(hint, /set dialect = "v1" \(CometBFT v1\.x\) in \[\[privval\]\] "hub"/);
    const w = warns.find((x) => x.m === 'privval connection closed by the node right after the public key exchange');
    assert.ok(w, 'the log line says what happened');
    assert.equal(w.f?.hint, hint);
    // A node that gets further clears the hint.
    const next = await node.waitForSigner();
    await next.request({ kind: 'ping_request' });
    assert.equal(connector.status().hint, undefined);
  } finally {
    await connector.stop();
    await node.close();
    await v.close();
  }
});

test('a refused public key request (another chain) is hinted as such', async () => {
  const v = await setup();
  const node = await TestNode.listen();
  const connector = new PrivvalConnector(v.vault, { name: 'hub', chainId: CHAIN, address: node.address, consensusKey: 'consensus', identityKey: 'identity', dialect: 'v0.38' });
  try {
    connector.start();
    const conn = await node.waitForSigner();
    const r = (await conn.request({ kind: 'pub_key_request', chainId: 'other-chain' })) as Extract<PrivvalMessage, { kind: 'pub_key_response' }>;
    assert.ok(r.error);
    await conn.close();
    await waitFor(() => connector.status().hint !== undefined);
    assert.match(connector.status().hint!, /was refused \(Chain ID mismatch.*fix chain_id or key in \[\[privval\]\] "hub"/);
  } finally {
    await connector.stop();
    await node.close();
    await v.close();
  }
});

test('a dial is not timed out by start-up work that held the event loop past the dial timeout', async () => {
  const v = await setup();
  const node = await TestNode.listen();
  const warns: string[] = [];
  const connector = new PrivvalConnector(
    v.vault,
    { name: 'hub', chainId: CHAIN, address: node.address, consensusKey: 'consensus', identityKey: 'identity', dialect: 'v0.38' },
    { info: () => {}, warn: (m, f) => warns.push(`${m} ${JSON.stringify(f ?? {})}`) },
  );
  try {
    connector.start();
    // Synchronous start-up work longer than DIAL_TIMEOUT_MS (2 s) right after the dial began:
    // the connect event and the timer are both due when the loop comes back.
    const until = Date.now() + 2300;
    while (Date.now() < until);
    await node.waitForSigner();
    assert.equal(node.connections.length, 1, 'the first dial got through');
    assert.deepEqual(warns.filter((w) => /timed out/.test(w)), [], 'no dial timeout was reported');
  } finally {
    await connector.stop();
    await node.close();
    await v.close();
  }
});
