/**
 * LDK with its channel keys in Custos: node A's `SignerProvider` (test/helpers/ldk-signer.ts)
 * holds no channel key; every per-commitment point and secret, every commitment, HTLC and
 * closing signature comes from a running `custos serve` (vault/lightning-signer.ts), called
 * synchronously from LDK's callbacks (src/client/blocking.ts). Node B is plain LDK
 * (KeysManager): it verifies every signature and revocation A sends, so an open, payments
 * both ways and a mutual close going through prove the vault's BOLT 3 work against LDK's.
 *
 * Then the channel rules, on the state the vault kept: a current commitment's secret is not
 * released, a revoked holder commitment is not signed, a commitment number does not go back,
 * nothing is signed after the mutual close; and a force close signs the latest holder
 * commitment, whose secret is then never released.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { custos, custosAsync, serve } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';
import { CustosPersister, LdkNet, hex, initLdk, unwrap, type LdkNode } from '../helpers/ldk.js';
import { CustosSignerProvider } from '../helpers/ldk-signer.js';
import { CustosClient } from '../../src/client/client.js';
import { BlockingCustosClient } from '../../src/client/blocking.js';
import { CustosApiError } from '../../src/client/transport.js';
import { generateMnemonic } from '../../src/wallet/hd.js';
import * as ldk from 'lightningdevkit';
import { Transaction } from '@scure/btc-signer';
import { verifyDigest } from '../../src/lightning/bolt3.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'lightning signer test passphrase' };

function init(dataDir: string): string {
  const r = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV);
  assert.equal(r.status, 0, r.stderr);
  return /custos_[A-Za-z0-9_-]{43}/.exec(r.stdout)![0];
}

interface SignerState {
  holder: { validated: number; releasedThrough: number; signed: number };
  counterparty: { signed: number; revokedThrough: number };
  closingSigned: boolean;
}

const IDX = (n: number) => ((1n << 48n) - 1n - BigInt(n)).toString();

function refusal(f: () => unknown, tag: string, what: string): void {
  assert.throws(f, (e: unknown) => e instanceof CustosApiError && e.fullCode === `policy_denied:${tag}`, what);
}

test('an LDK node whose channel keys are in Custos opens channels, pays both ways, closes one mutually and force-closes another with a plain LDK peer; the vault enforces the channel rules, and a fresh vault restored from the seed and the backup still does', { timeout: 180_000 }, async (t) => {
  const { dir: root, cleanup } = tempDir();
  t.after(cleanup);
  const dir = join(root, 'vault');
  const backup = join(root, 'ln-backup');
  const token = init(dir);
  appendFileSync(join(dir, 'custos.toml'), `\n[lightning]\nbackup = "${backup}"\n`);
  const vault = await serve(['--data-dir', dir], PASSENV);
  t.after(() => vault.stop());
  const client = new CustosClient({ addr: vault.url, token });
  t.after(() => client.close());
  const mnemonicA = join(root, 'a.mnemonic');
  writeFileSync(mnemonicA, generateMnemonic(), { mode: 0o600 });
  await client.createHdKey({ label: 'ln-a', curve: 'secp256k1', mnemonic: readFileSync(mnemonicA, 'utf8').trim(), purpose: 'lightning' });
  await client.createHdKey({ label: 'ln-b', curve: 'secp256k1', mnemonic: generateMnemonic(), purpose: 'lightning' });
  // The node's token: the signer role, scopes sign and state, its own key only (not an admin's).
  const nodeToken = (await client.createToken({ name: 'ln-a-node', role: 'signer', operations: ['sign', 'state'], keys: ['ln-a'] })).token!;
  const api = new BlockingCustosClient({ addr: vault.url, token: nodeToken });
  t.after(() => api.close());

  await initLdk();
  const net = new LdkNet();
  let provider!: CustosSignerProvider;
  const nodeClient = new CustosClient({ addr: vault.url, token: nodeToken });
  t.after(() => nodeClient.close());
  const A: LdkNode = net.makeLdkNode('A', randomBytes(32), new CustosPersister(nodeClient, 'ln-a'), {
    signer: (keys) => (provider = new CustosSignerProvider(api, 'ln-a', keys)).provider,
  });
  const B: LdkNode = net.makeLdkNode('B', randomBytes(32), new CustosPersister(client, 'ln-b'));
  await net.connect(A, B);

  // ---- open, pay both ways
  try {
    await net.openChannel(A, B, 1_000_000n);
  } catch (e) {
    throw new Error(`${(e as Error).message}; signer calls: ${JSON.stringify(provider.calls)}`);
  }
  await net.confirm([A, B], 6);
  assert.equal(A.cm.list_usable_channels().length, 1, 'the channel is usable');
  await net.pay(A, B, 50_000_000n);
  await net.pay(B, A, 20_000_000n);
  await net.pay(A, B, 5_000_000n);
  const failed = provider.calls.filter((c) => !c.ok);
  assert.deepEqual(failed, [], 'every signer call succeeded');
  const ops = new Set(provider.calls.map((c) => c.op));
  for (const op of ['get_per_commitment_point', 'provide_channel_parameters', 'sign_counterparty_commitment', 'validate_holder_commitment', 'release_commitment_secret', 'validate_counterparty_revocation']) assert.ok(ops.has(op), `LDK called ${op} through Custos`);

  const channel = provider.calls.find((c) => c.op === 'sign_counterparty_commitment')!.channel;
  const objectOf = `signer:${channel}`;
  const state = async (): Promise<SignerState> => JSON.parse(Buffer.from((await client.lightningGet('ln-a', objectOf)).state, 'base64').toString()) as SignerState;
  const s1 = await state();
  assert.ok(s1.holder.validated >= 6, `holder commitments validated: ${s1.holder.validated}`);
  assert.equal(s1.holder.releasedThrough, s1.holder.validated - 1, 'every holder commitment but the latest is revoked');
  assert.equal(s1.counterparty.revokedThrough, s1.counterparty.signed - 1, "every counterparty commitment but the latest is revoked");

  // ---- the rules, asked directly
  const base = `/v1/lightning/ln-a/channels/${channel}`;
  refusal(() => api.call('POST', `${base}/release-secret`, { index: IDX(s1.holder.validated) }), 'lightning_revoke_current', "the current holder commitment's secret is not released");
  // An earlier secret again is fine (a revoke_and_ack sent again) and is the one LDK's peer got.
  const again = api.call<{ secret: string }>('POST', `${base}/release-secret`, { index: IDX(0) });
  assert.match(again.secret, /^[0-9a-f]{64}$/);
  const first = (op: string) => provider.calls.find((c) => c.channel === channel && c.op === op && c.ok)!.body as Record<string, unknown>;
  refusal(() => api.call('POST', `${base}/sign-holder`, { tx: first('validate_holder_commitment').tx }), 'lightning_revoked', 'a revoked holder commitment is not signed');
  refusal(() => api.call('POST', `${base}/sign-counterparty`, first('sign_counterparty_commitment')), 'lightning_commitment', 'a counterparty commitment number does not go back');
  refusal(() => api.call('POST', `${base}/setup`, { ...first('provide_channel_parameters'), value_sat: '999' }), 'lightning_params', 'the parameters are set once');
  // A node cannot write the signer's state through the object API.
  await assert.rejects(client.lightningPut('ln-a', objectOf, 1000n, new Uint8Array([1])), (e: unknown) => e instanceof CustosApiError && e.code === 'forbidden');

  // ---- mutual close
  net.allowCloses = true;
  const chan = A.cm.list_channels()[0]!;
  unwrap(A.cm.close_channel(chan.get_channel_id(), B.nodeId), ldk.Result_NoneAPIErrorZ_OK, 'close_channel');
  await net.pump();
  assert.ok(provider.calls.some((c) => c.op === 'sign_closing_transaction' && c.ok), 'the closing transaction was signed by Custos');
  const closing = A.broadcast.map((b) => Transaction.fromRaw(b, { allowUnknownOutputs: true, disableScriptCheck: true })).find((tx) => tx.inputsLength === 1 && tx.getInput(0).finalScriptWitness?.length === 4);
  assert.ok(closing, 'A broadcast the mutual close, fully witnessed');
  assert.ok(A.closed.includes('CooperativeClosure') || A.closed.some((r) => r.includes('Cooperative')), `A saw the close: ${A.closed.join(',')}`);
  assert.equal((await state()).closingSigned, true);
  // The close pays this node at the vault's wallet script; one paying its share elsewhere is refused.
  const wallet = Buffer.from(api.call<{ script: string }>('GET', '/v1/lightning/ln-a/wallet-script').script, 'hex');
  const closeTx = Transaction.fromRaw(Buffer.from(String(first('sign_closing_transaction').tx), 'hex'), { allowUnknownOutputs: true, disableScriptCheck: true });
  const mine = Array.from({ length: closeTx.outputsLength }, (_, i) => i).find((i) => Buffer.from(closeTx.getOutput(i).script!).equals(wallet));
  assert.ok(mine !== undefined, "the mutual close pays the vault's wallet script");
  const ourOut = closeTx.getOutput(mine);
  closeTx.updateOutput(mine, { amount: ourOut.amount! - 100_000n });
  refusal(() => api.call('POST', `${base}/sign-closing`, { tx: hex(closeTx.toBytes(true, false)) }), 'lightning_fee', "a close burning this node's balance in fees");
  closeTx.updateOutput(mine, { amount: ourOut.amount!, script: Buffer.from('0014' + '77'.repeat(20), 'hex') });
  refusal(() => api.call('POST', `${base}/sign-closing`, { tx: hex(closeTx.toBytes(true, false)) }), 'lightning_balance', "a close paying this node's share elsewhere");
  // The node cannot hand the vault signer state through reconcile either.
  await assert.rejects(nodeClient.lightningReconcile('ln-a', { object: objectOf, version: '1', hash: '00'.repeat(32) }), (e: unknown) => e instanceof CustosApiError && e.code === 'forbidden');
  refusal(() => api.call('POST', `${base}/release-secret`, { index: IDX(s1.holder.validated) }), 'lightning_revoke_current', 'still not the current secret');

  const wallet2 = () => Buffer.from(api.call<{ script: string }>('GET', '/v1/lightning/ln-a/wallet-script').script, 'hex');

  // ---- a second channel, force-closed by A: Custos signs the latest holder commitment, whose secret is then never released
  const second = await net.openChannel(A, B, 500_000n);
  await net.confirm([A, B], 6);
  await net.pay(A, B, 1_000_000n);
  const ch2 = A.cm.list_channels().find((c) => c.get_funding_txo().get_index() === Number(second.object.split('_')[1]) && hex(c.get_funding_txo().get_txid().slice().reverse()) === second.object.split('_')[0])!;
  const before = A.broadcast.length;
  unwrap(A.cm.force_close_broadcasting_latest_txn(ch2.get_channel_id(), B.nodeId, 'test'), ldk.Result_NoneAPIErrorZ_OK, 'force_close_broadcasting_latest_txn');
  await net.pump();
  const signedHolder = provider.calls.find((c) => c.op === 'sign_holder_commitment' && c.ok);
  assert.ok(signedHolder, `Custos signed the holder commitment: ${JSON.stringify(provider.calls.filter((c) => c.op === 'sign_holder_commitment'))}`);
  const forceTx = A.broadcast.slice(before).map((b) => Transaction.fromRaw(b, { allowUnknownOutputs: true, disableScriptCheck: true })).find((tx) => tx.getInput(0).finalScriptWitness?.length === 4);
  assert.ok(forceTx, 'A broadcast its commitment, fully witnessed');
  const ch2Signer = signedHolder.channel;
  const s2 = JSON.parse(Buffer.from((await client.lightningGet('ln-a', `signer:${ch2Signer}`)).state, 'base64').toString()) as SignerState;
  assert.equal(s2.holder.signed, s2.holder.validated, 'the latest holder commitment was signed');
  refusal(() => api.call('POST', `/v1/lightning/ln-a/channels/${ch2Signer}/release-secret`, { index: IDX(s2.holder.signed) }), 'lightning_revoke_signed', "a broadcast commitment's secret is never released");

  // The commitment confirms; after the delay B imposed, LDK hands A its to_local to sweep, and Custos signs the sweep to its wallet.
  net.mine(forceTx.toBytes(true, true));
  await net.confirm([A, B], 1);
  await net.confirm([A, B], 150);
  const delayed = A.spendable.find((d): d is ldk.SpendableOutputDescriptor_DelayedPaymentOutput => d instanceof ldk.SpendableOutputDescriptor_DelayedPaymentOutput);
  assert.ok(delayed, `LDK handed A its to_local to sweep (${A.spendable.map((d) => d.constructor.name).join(', ') || 'nothing'})`);
  const d = delayed.delayed_payment_output;
  const out = d.get_output();
  const sweep = new Transaction({ version: 2, allowUnknownOutputs: true });
  sweep.addInput({ txid: hex(d.get_outpoint().get_txid().slice().reverse()), index: d.get_outpoint().get_index(), sequence: d.get_to_self_delay() });
  sweep.addOutput({ script: wallet2(), amount: out.value - 500n });
  const sweepBody = { tx: hex(sweep.toBytes(true, false)), input: 0, amount_sat: out.value.toString(), output: 'to_local', per_commitment_point: hex(d.get_per_commitment_point()) };
  const sweepSig = Buffer.from(api.call<{ signature: string }>('POST', `/v1/lightning/ln-a/channels/${ch2Signer}/sign-sweep`, sweepBody).signature, 'hex');
  // Checked with LDK's own script and key for that output.
  const ourDelayed = ldk.DelayedPaymentBasepoint.constructor_new(Buffer.from(api.call<Record<string, string>>('GET', `/v1/lightning/ln-a/channels/${ch2Signer}`).delayed_payment_basepoint!, 'hex'));
  const delayedKey = ldk.DelayedPaymentKey.constructor_from_basepoint(ourDelayed, d.get_per_commitment_point());
  const toLocalScript = ldk.UtilMethods.constructor_get_revokeable_redeemscript(d.get_revocation_pubkey(), d.get_to_self_delay(), delayedKey);
  assert.ok(verifyDigest(sweepSig, sweep.preimageWitnessV0(0, toLocalScript, 1, out.value), delayedKey.to_public_key()), "the sweep's signature, under LDK's delayed key for that output");
  sweep.updateOutput(0, { script: Buffer.from('0014' + '77'.repeat(20), 'hex') });
  refusal(() => api.call('POST', `/v1/lightning/ln-a/channels/${ch2Signer}/sign-sweep`, { ...sweepBody, tx: hex(sweep.toBytes(true, false)) }), 'lightning_destination', 'a sweep elsewhere than the wallet');

  // ---- audit: each decision is on the record
  const audit = await client.auditTail(500);
  for (const op of ['lightning_sign_counterparty', 'lightning_validate_holder', 'lightning_release_secret', 'lightning_validate_revocation', 'lightning_sign_closing']) {
    assert.ok(audit.some((e) => e.operation === op && e.outcome === 'ok'), `${op} audited`);
  }
  // HTLC transactions were signed too (the payments' commitments carried HTLCs), and B took them.
  assert.ok(audit.some((e) => e.operation === 'lightning_sign_counterparty' && e.outcome === 'ok' && Number(e.details.htlcs) >= 1), 'a commitment with HTLCs signed');
  assert.ok(audit.some((e) => e.operation === 'lightning_release_secret' && e.outcome === 'denied' && e.reason === 'policy_denied:lightning_revoke_current'), 'the refusal audited');

  // ---- the seed and the backup alone give the signer's state back: a fresh vault keeps refusing
  const finalState = (await client.lightningGet('ln-a', objectOf)).state;
  const fresh = join(root, 'fresh');
  const token2 = init(fresh);
  const vault2 = await serve(['--data-dir', fresh], PASSENV);
  t.after(() => vault2.stop());
  const r = await custosAsync(['lightning', 'restore', '--backup', backup, '--mnemonic-file', mnemonicA, '--label', 'ln-a', '--json'], { CUSTOS_ADDR: vault2.url, CUSTOS_TOKEN: token2 });
  assert.equal(r.status, 0, r.stderr);
  const client2 = new CustosClient({ addr: vault2.url, token: token2 });
  t.after(() => client2.close());
  assert.equal((await client2.lightningGet('ln-a', objectOf)).state, finalState, "the restored vault holds the channel's signer state");
  const api2 = new BlockingCustosClient({ addr: vault2.url, token: token2 });
  t.after(() => api2.close());
  refusal(() => api2.call('POST', `${base}/sign-holder`, { tx: first('validate_holder_commitment').tx }), 'lightning_revoked', 'restored: a revoked holder commitment is still not signed');
  refusal(() => api2.call('POST', `${base}/sign-counterparty`, first('sign_counterparty_commitment')), 'lightning_closed', 'restored: nothing is signed after the close');
  assert.deepEqual(api2.call('GET', base), api.call('GET', base), 'restored: the same channel keys from the seed');
});
