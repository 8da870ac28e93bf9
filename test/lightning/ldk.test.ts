/**
 * LDK end to end against a real `custos serve`: two LDK nodes (lightningdevkit@0.1.0, the
 * TypeScript/WASM bindings, in this process; see test/helpers/ldk.ts) open a channel and pay each
 * other, and every ChannelMonitor they persist goes through Custos as a Lightning object.
 *
 * Persistence is asynchronous, as LDK expects of a remote store: each `Persist` call serializes
 * the monitor, starts a `lightningPut` (object `<funding txid>_<vout>`, version 1, 2, 3, … one per
 * call, kept by the adapter: LDK persists full monitors again at an unchanged update id while
 * blocks connect) and answers `InProgress`; when Custos acknowledges the put (in the backup, then
 * committed), `ChainMonitor.channel_monitor_updated(outpoint, update id)` releases the channel.
 * The pump awaits every outstanding put before it delivers another message.
 *
 * Each node's key is a lightning-purpose HD key made from a fresh mnemonic, and its LDK seed is
 * the first 32 bytes of that mnemonic's BIP39 seed, so the mnemonic alone is the node. After the
 * payments the vault is SIGKILLed; a fresh vault is restored from the directory backup and each
 * mnemonic (`custos lightning restore`), and each node's latest monitor, read from the new vault
 * with a KeysManager rebuilt from the mnemonic alone, has the live node's latest update id and
 * funding outpoint. (Monitors are compared by update id and outpoint, never by bytes: LDK writes
 * some maps in random order.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { custos, custosAsync, serve } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';
import { CustosPersister, LdkNet, hex, initLdk, keysFromSeed, nodeIdOf, outpointId, readMonitor, type LdkNode } from '../helpers/ldk.js';
import { CustosClient } from '../../src/client/client.js';
import { generateMnemonic, seedFromMnemonic } from '../../src/wallet/hd.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'lightning ldk test passphrase' };

function init(dataDir: string): string {
  const r = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV);
  assert.equal(r.status, 0, r.stderr);
  return /custos_[A-Za-z0-9_-]{43}/.exec(r.stdout)![0];
}

/** The LDK seed of a node: the first 32 bytes of its mnemonic's BIP39 seed. */
const ldkSeed = (mnemonic: string): Uint8Array => seedFromMnemonic(mnemonic.trim()).slice(0, 32);

test('two LDK nodes persist every ChannelMonitor through Custos (InProgress, then channel_monitor_updated); a fresh vault restored from the backup and the mnemonics holds each latest monitor', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const backup = join(dir, 'ln-backup');
  const names = ['ln-a', 'ln-b'] as const;
  const mnemonicFile = (label: string) => join(dir, `${label}.mnemonic`);
  for (const label of names) writeFileSync(mnemonicFile(label), generateMnemonic(), { mode: 0o600 });

  const a = join(dir, 'a');
  const tokenA = init(a);
  appendFileSync(join(a, 'custos.toml'), `\n[lightning]\nbackup = "${backup}"\n`);
  const first = await serve(['--data-dir', a], PASSENV);

  const live = new Map<string, { node: LdkNode; persister: CustosPersister; object: string; updateId: bigint; version: bigint; channelId: string; counterparty: string; custosNode: string }>();
  try {
    const api = { CUSTOS_ADDR: first.url, CUSTOS_TOKEN: tokenA };
    for (const label of names) {
      const r = await custosAsync(['keys', 'create-hd', '--label', label, '--purpose', 'lightning', '--mnemonic-file', mnemonicFile(label)], api);
      assert.equal(r.status, 0, r.stderr);
    }
    const client = new CustosClient({ addr: first.url, token: tokenA });

    await initLdk();
    const net = new LdkNet();
    const [A, B] = names.map((label) => net.makeLdkNode(label, ldkSeed(readFileSync(mnemonicFile(label), 'utf8')), new CustosPersister(client, label))) as [LdkNode, LdkNode];
    await net.connect(A, B);
    const channel = await net.openChannel(A, B, 1_000_000n);
    await net.confirm([A, B], 6);
    for (const n of [A, B]) assert.equal(n.cm.list_usable_channels().length, 1, `${n.name}: the channel is usable after 6 blocks`);
    await net.pay(A, B, 50_000_000n);
    await net.pay(A, B, 20_000_000n);
    await net.pay(B, A, 10_000_000n);
    assert.equal(A.sent.size, 2);
    assert.equal(B.sent.size, 1);

    for (const [node, other] of [[A, B], [B, A]] as const) {
      const persister = node.persister as CustosPersister;
      const tag = node.name;
      // One monitor, the channel's, and LDK has nothing waiting to be persisted.
      assert.deepEqual(node.chainMonitor.list_monitors().map((m) => outpointId(m.get_a())), [channel.object], `${tag}: monitors`);
      for (const p of node.chainMonitor.list_pending_monitor_updates()) assert.deepEqual(p.get_b(), [], `${tag}: no update left in progress`);

      // Every Persist call produced its own Custos version, in order: 1, 2, 3, …
      const calls = persister.calls;
      assert.ok(calls.length >= 17, `${tag}: ${calls.length} Persist calls`);
      calls.forEach((c, i) => {
        assert.equal(c.object, channel.object);
        assert.equal(c.version, BigInt(i + 1), `${tag}: call ${i} is version ${i + 1}`);
        assert.equal(c.stored?.version, String(c.version), `${tag}: Custos stored version ${c.version}`);
        assert.equal(c.stored?.unchanged, undefined, `${tag}: version ${c.version} was a new version, not a retry`);
      });
      assert.equal(calls[0]!.kind, 'new');
      // Each update was in progress in LDK until its put was acknowledged, then released.
      for (const c of calls.filter((c) => c.kind !== 'chain-sync')) {
        assert.equal(c.pendingInLdk, true, `${tag}: update ${c.updateId} was pending in LDK while its put ran`);
        assert.equal(c.released, true, `${tag}: update ${c.updateId} released by channel_monitor_updated`);
      }
      // Update ids are dense (one per ChannelMonitorUpdate); chain-sync persists repeat the last one.
      const updates = calls.filter((c) => c.kind === 'update').map((c) => c.updateId);
      assert.deepEqual(updates, updates.map((_, i) => BigInt(i + 1)), `${tag}: update ids 1..${updates.length}`);
      const last = persister.objects.get(channel.object)!;
      assert.equal(last.version, BigInt(calls.length));
      assert.equal(last.updateId, BigInt(updates.length), `${tag}: the live monitor is at update ${updates.length}`);

      // The final Custos version of the object is the live monitor.
      const info = await client.lightningInfo(node.name);
      assert.equal(info.objects, 1, `${tag}: one object in Custos`);
      const listed = await client.lightningList(node.name, undefined, 10);
      assert.deepEqual(listed.objects.map((o) => [o.object, o.version]), [[channel.object, String(last.version)]]);
      const got = await client.lightningGet(node.name, channel.object);
      assert.equal(got.version, String(last.version));
      const read = readMonitor(Buffer.from(got.state, 'base64'), node.keys);
      assert.equal(read.updateId, last.updateId, `${tag}: the stored monitor's update id`);
      assert.equal(read.object, channel.object, `${tag}: the stored monitor's funding outpoint`);
      assert.equal(read.counterparty, hex(other.nodeId));
      const channelId = hex(node.cm.list_channels()[0]!.get_channel_id().get_a());
      assert.equal(read.channelId, channelId);

      live.set(node.name, { node, persister, object: channel.object, updateId: last.updateId, version: last.version, channelId, counterparty: hex(other.nodeId), custosNode: info.node });
    }
  } finally {
    await first.stop('SIGKILL');
  }

  // A fresh vault, the backup, each node's mnemonic: each node's latest monitor is back.
  const b = join(dir, 'b');
  const tokenB = init(b);
  const second = await serve(['--data-dir', b], PASSENV);
  try {
    const api = { CUSTOS_ADDR: second.url, CUSTOS_TOKEN: tokenB };
    const client = new CustosClient({ addr: second.url, token: tokenB });
    for (const label of names) {
      const was = live.get(label)!;
      const r = await custosAsync(['lightning', 'restore', '--backup', backup, '--mnemonic-file', mnemonicFile(label), '--label', label, '--json'], api);
      assert.equal(r.status, 0, r.stderr);
      const { node, objects, records, applied, kept } = JSON.parse(r.stdout) as Record<string, unknown>;
      assert.deepEqual({ node, objects, records, applied, kept }, { node: was.custosNode, objects: 1, records: was.persister.calls.length, applied: 1, kept: 0 }, r.stdout);

      const got = await client.lightningGet(label, was.object);
      assert.equal(got.version, String(was.version), `${label}: the restored version`);
      // The mnemonic alone: a KeysManager rebuilt from it is the same node and reads the monitor.
      const keys = keysFromSeed(ldkSeed(readFileSync(mnemonicFile(label), 'utf8')));
      assert.equal(hex(nodeIdOf(keys)), hex(was.node.nodeId), `${label}: the mnemonic gives the same LDK node id`);
      const read = readMonitor(Buffer.from(got.state, 'base64'), keys);
      assert.equal(read.updateId, was.updateId, `${label}: restored monitor at the live update id`);
      assert.equal(read.object, was.object, `${label}: restored monitor's funding outpoint`);
      assert.equal(read.channelId, was.channelId);
      assert.equal(read.counterparty, was.counterparty);
    }
  } finally {
    await second.stop();
  }
});
