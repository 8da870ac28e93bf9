/**
 * Switching to Custos without a restart: `custos privval setup` from FilePV files and from a
 * tmkms.toml into a running vault (the test node then signs through the new connection), and
 * `custos reload` / SIGHUP applying edits of custos.toml under load while the untouched links
 * keep their connections.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, verify as nodeVerify } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmpvault.js';
import { BIN, ROOT, custos, custosAsync, runAsync, serve } from '../helpers/process.js';
import { TestNode } from '../helpers/cometbft-node.js';
import { requireTool } from '../helpers/require.js';
import type { PrivvalMessage, Vote } from '../../src/frontends/privval/messages.js';
import { blockId, filePv, vote, voteBytes } from '../helpers/validator.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'switching test passphrase' };
const CHAIN = 'switch-1';

function initVault(dataDir: string): string {
  const r = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV);
  assert.equal(r.status, 0, r.stderr);
  return /custos_[A-Za-z0-9_-]{43}/.exec(r.stdout)![0];
}

const bytesOf = voteBytes;

function verifies(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pub]);
  return nodeVerify(null, msg, createPublicKey({ key: spki, format: 'der', type: 'spki' }), sig);
}

async function signVote(node: TestNode, v: Vote, chain = CHAIN) {
  const r = (await node.request({ kind: 'sign_vote_request', vote: v, chainId: chain, skipExtensionSigning: false })) as Extract<PrivvalMessage, { kind: 'signed_vote_response' }>;
  assert.equal(r.kind, 'signed_vote_response');
  return r;
}

/** A validator's FilePV files: its key and a state that really signed height 100. */
function filepv(dir: string) {
  const last = vote(2, 100, 0, blockId(1));
  const v = filePv(CHAIN, last);
  const keyFile = join(dir, 'priv_validator_key.json');
  writeFileSync(keyFile, v.keyJson, { mode: 0o600 });
  const stateFile = join(dir, 'priv_validator_state.json');
  writeFileSync(stateFile, v.stateJson);
  return { keyFile, stateFile, pub: v.pub, last, signature: v.signature };
}

test('privval setup from FilePV files into a running vault: the node signs through it with no restart, from the imported watermark on', async (t) => {
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'v');
  const token = initVault(dataDir);
  const s = await serve(['--data-dir', dataDir], PASSENV);
  const node = await TestNode.listen();
  try {
    const pv = filepv(dir);
    const began = performance.now();
    const env = { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    const noState = custos(['privval', 'setup', '--filepv-key', pv.keyFile, '--chain-id', CHAIN, '--address', node.address, '--data-dir', dataDir, '--yes'], env);
    assert.equal(noState.status, 64, 'without the state file (or --never-signed) nothing happens');
    assert.match(noState.stderr, /Give --filepv-state FILE .* or --never-signed/);
    const r = custos(['privval', 'setup', '--filepv-key', pv.keyFile, '--filepv-state', pv.stateFile, '--chain-id', CHAIN, '--address', node.address, '--data-dir', dataDir, '--yes'], env);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /imported the consensus key as switch-1-consensus/);
    assert.match(r.stdout, /watermark of switch-1-consensus on switch-1: height 100 round 0 step 3/);
    assert.match(r.stdout, /priv_validator_laddr = "tcp:\/\/127\.0\.0\.1:\d+"/, 'it prints the line to set on the node');
    await node.waitForSigner(10_000);
    // The exact vote FilePV signed last: re-served, the same signature (FilePV semantics).
    const again = await signVote(node, pv.last);
    assert.equal(again.error, undefined);
    assert.deepEqual(again.vote!.signature, pv.signature);
    const first = await signVote(node, vote(2, 101, 0, blockId(2)));
    const seconds = (performance.now() - began) / 1000;
    assert.equal(first.error, undefined);
    assert.ok(verifies(pv.pub, bytesOf(CHAIN, vote(2, 101, 0, blockId(2))), first.vote!.signature), 'signed by the imported key');
    t.diagnostic(`time to first signature from privval setup (FilePV): ${seconds.toFixed(2)} s`);
    // Below the imported watermark: refused.
    const old = await signVote(node, vote(2, 99, 0, blockId(3)));
    assert.ok(old.error, 'a vote below the imported watermark is refused');
    assert.match(readFileSync(join(dataDir, 'custos.toml'), 'utf8'), /\[\[privval\]\]\nname = "switch-1"/);
    // A rerun recognises what is done (key, a watermark already ahead, the entry) and finishes.
    const rerun = custos(['privval', 'setup', '--filepv-key', pv.keyFile, '--filepv-state', pv.stateFile, '--chain-id', CHAIN, '--address', node.address, '--data-dir', dataDir, '--yes'], env);
    assert.equal(rerun.status, 0, rerun.stderr);
    assert.match(rerun.stdout, /already in the vault as switch-1-consensus .*: kept/);
    assert.match(rerun.stdout, /watermark .* is ahead of .*: kept/);
    assert.match(rerun.stdout, /is already in .*custos\.toml as this command would write it: kept/);
    // Another node under the same name, or the same node under another name, is refused before anything is imported.
    const other = custos(['privval', 'setup', '--filepv-key', pv.keyFile, '--filepv-state', pv.stateFile, '--chain-id', CHAIN, '--address', 'tcp://127.0.0.1:1', '--data-dir', dataDir, '--yes'], env);
    assert.match(other.stderr, /already has a \[\[privval\]\] named "switch-1"/);
    const twice = custos(['privval', 'setup', '--name', 'again', '--filepv-key', pv.keyFile, '--filepv-state', pv.stateFile, '--chain-id', CHAIN, '--address', node.address.replace('127.0.0.1', 'localhost'), '--data-dir', dataDir, '--yes'], env);
    assert.match(twice.stderr, /already signs for the node at/);
    // Status comes from the store and survives a restart.
    assert.equal(await s.stop(), 0);
    const s2 = await serve(['--data-dir', dataDir], PASSENV);
    try {
      const st = custos(['privval', 'status', '--json'], { CUSTOS_ADDR: s2.url, CUSTOS_TOKEN: token });
      assert.equal(st.status, 0, st.stderr);
      const [row] = JSON.parse(st.stdout);
      assert.deepEqual(row.watermark, { height: '101', round: 0, step: 3 });
      assert.deepEqual(row.last_signed, { height: '101', round: 0, step: 3 });
      assert.equal(row.dialect, 'v0.38');
    } finally {
      assert.equal(await s2.stop(), 0);
    }
  } finally {
    await s.stop();
    await node.close();
    cleanup();
  }
});

test('privval setup from a tmkms.toml (v0.15 form: sign_extensions, no protocol_version): softsign key, tmkms state (steps 0/1/2, strings); without --yes off a terminal it changes nothing', async () => {
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'v');
  const token = initVault(dataDir);
  const s = await serve(['--data-dir', dataDir], PASSENV);
  const node = await TestNode.listen();
  try {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(16);
    const pub = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
    writeFileSync(join(dir, 'consensus.key'), seed.toString('base64'), { mode: 0o600 });
    writeFileSync(join(dir, 'secret_connection.key'), Buffer.alloc(32, 9).toString('base64'), { mode: 0o600 });
    // tmkms state: prevote (tmkms step 1) at 200/1.
    writeFileSync(join(dir, `${CHAIN}_priv_validator_state.json`), JSON.stringify({ height: '200', round: '1', step: 1, block_id: { hash: 'AA'.repeat(32), parts: { total: '1', hash: 'BB'.repeat(32) } } }));
    const port = node.address.split(':').pop();
    writeFileSync(
      join(dir, 'tmkms.toml'),
      [
        '[[chain]]',
        `id = "${CHAIN}"`,
        'key_format = { type = "bech32", account_key_prefix = "cosmospub", consensus_key_prefix = "cosmosvalconspub" }',
        'sign_extensions = true',
        '',
        '[[validator]]',
        `chain_id = "${CHAIN}"`,
        `addr = "tcp://${'ab'.repeat(20)}@127.0.0.1:${port}"`,
        'secret_key = "secret_connection.key"',
        'reconnect = true',
        '',
        '[[providers.softsign]]',
        `chain_ids = ["${CHAIN}"]`,
        'key_type = "consensus"',
        'path = "consensus.key"',
        '',
      ].join('\n'),
    );
    const env = { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    const args = ['privval', 'setup', '--tmkms-config', join(dir, 'tmkms.toml'), '--data-dir', dataDir];
    const refused = custos(args, env);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /Stop tmkms first/);
    assert.equal(existsSync(join(dataDir, 'custos.toml')) && /^\[\[privval\]\]/m.test(readFileSync(join(dataDir, 'custos.toml'), 'utf8')), false, 'nothing written');
    assert.match(custos(['keys', 'list'], env).stdout, /^(?![\s\S]*consensus)/, 'nothing imported');
    const r = custos([...args, '--yes'], env);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /tmkms pins node a?b/);
    assert.match(r.stdout, /height 200 round 1 step 2 \(tmkms steps 0\/1\/2 read as 1\/2\/3\)/);
    assert.match(readFileSync(join(dataDir, 'custos.toml'), 'utf8'), /dialect = "v0\.38"/, 'tmkms protocol_version is not the node version: the tendermint.privval wire, extensions signed');
    await node.waitForSigner(10_000);
    const pk = (await node.request({ kind: 'pub_key_request', chainId: CHAIN })) as Extract<PrivvalMessage, { kind: 'pub_key_response' }>;
    assert.deepEqual(pk.pubKey?.bytes, pub);
    // The prevote tmkms recorded (no sign bytes kept) is refused; the precommit after it signs.
    assert.ok((await signVote(node, vote(1, 200, 1, blockId(5)))).error, 'the same position again is refused: tmkms kept no sign bytes to compare');
    const pc = await signVote(node, vote(2, 200, 1, blockId(5)));
    assert.equal(pc.error, undefined);
    assert.ok(verifies(pub, bytesOf(CHAIN, vote(2, 200, 1, blockId(5))), pc.vote!.signature));
    assert.equal(pc.vote!.extensionSignature.length, 64, 'the extension is signed (tmkms had sign_extensions = true; a v0.34/v0.37 node skips the field)');
  } finally {
    await s.stop();
    await node.close();
    cleanup();
  }
});

test('privval setup on a terminal asks for what the flags did not give, the stopped signer included', async (t) => {
  if (!requireTool(t, 'python3', 'python3')) return;
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'v');
  const token = initVault(dataDir);
  const s = await serve(['--data-dir', dataDir], PASSENV);
  const node = await TestNode.listen();
  try {
    const pv = filepv(dir);
    const answers = ['filepv', pv.keyFile, pv.stateFile, CHAIN, node.address, 'asked', 'v0.38', dataDir, 'yes'].join('\n');
    const r = await runAsync('python3', [join(ROOT, 'test', 'helpers', 'tty-drive.py'), process.execPath, BIN, 'privval', 'setup'], { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token, TTY_ANSWERS: answers });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Move from FilePV .* or tmkms .*\? filepv\/tmkms:/);
    assert.match(r.stdout, /Is the node \(FilePV signs inside it\) stopped, and will it stay stopped\? yes\/no \[no\]:/);
    assert.match(r.stdout, /added \[\[privval\]\] "asked"/);
    await node.waitForSigner(10_000);
    assert.equal((await signVote(node, vote(2, 101, 0, blockId(2)))).error, undefined);
  } finally {
    await s.stop();
    await node.close();
    cleanup();
  }
});

test('custos reload and SIGHUP under load: added, changed and removed entries apply, untouched links never drop, a broken file changes nothing', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'v');
  const token = initVault(dataDir);
  const env = (url: string) => ({ CUSTOS_ADDR: url, CUSTOS_TOKEN: token });
  const pre = await serve(['--data-dir', dataDir], PASSENV);
  for (const [label, purpose] of <Array<[string, string]>>[['a-key', 'consensus'], ['b-key', 'consensus'], ['id', 'general'], ['ops-key', 'ssh']]) {
    assert.equal(custos(['keys', 'create', '--label', label, '--algorithm', 'ed25519', '--purpose', purpose], env(pre.url)).status, 0);
  }
  assert.equal(await pre.stop(), 0);
  const nodeA = await TestNode.listen();
  const nodeB = await TestNode.listen();
  const nodeB2 = await TestNode.listen();
  const toml = join(dataDir, 'custos.toml');
  const entry = (name: string, chain: string, address: string, key: string) => `\n[[privval]]\nname = "${name}"\nchain_id = "${chain}"\naddress = "${address}"\nkey = "${key}"\nidentity_key = "id"\n`;
  const agent = '\n[[ssh_agent]]\nname = "ops"\nsocket = "agent/ops.sock"\nkeys = ["ops-key"]\n';
  // serve with an entry naming a key the vault lacks: exit 3, and the sentence names the entry.
  writeFileSync(toml, entry('a', 'chain-a', nodeA.address, 'not-imported'), { mode: 0o600 });
  const missing = custos(['serve', '--data-dir', dataDir, '--port', '0'], PASSENV);
  assert.equal(missing.status, 3);
  assert.match(missing.stderr, /\[\[privval\]\] "a": key = "not-imported" names no key in the vault\. Import it first/);
  writeFileSync(toml, entry('a', 'chain-a', nodeA.address, 'a-key') + agent, { mode: 0o600 });
  const s = await serve(['--data-dir', dataDir], PASSENV);
  let load: Promise<void> | undefined;
  let stop = false;
  try {
    const connA = await nodeA.waitForSigner(10_000);
    const sock = join(dataDir, 'agent', 'ops.sock');
    assert.equal((await runAsync('ssh-add', ['-l'], { SSH_AUTH_SOCK: sock })).status, 0, 'the agent socket serves');
    // Load on validator a for the whole test: every height must sign.
    let signed = 0;
    load = (async () => {
      for (let h = 1; !stop; h++) {
        const r = await connA.request({ kind: 'sign_vote_request', vote: vote(2, h, 0, blockId(1)), chainId: 'chain-a', skipExtensionSigning: false });
        assert.equal(r.kind, 'signed_vote_response');
        assert.equal((r as { error?: unknown }).error, undefined, `height ${h} signed`);
        signed++;
      }
    })();
    // 1. Add validator b.
    appendFileSync(toml, entry('b', 'chain-b', nodeB.address, 'b-key'));
    let r = await custosAsync(['reload'], env(s.url));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\[\[privval\]\]: started b; unchanged a/);
    const connB = await nodeB.waitForSigner(10_000);
    assert.equal((await signVote(nodeB, vote(2, 5, 0, blockId(2)), 'chain-b')).error, undefined);
    // 2. Change b's address, by SIGHUP this time.
    writeFileSync(toml, readFileSync(toml, 'utf8').replace(nodeB.address, nodeB2.address));
    s.proc.kill('SIGHUP');
    await nodeB2.waitForSigner(10_000);
    await connB.closed;
    assert.equal((await signVote(nodeB2, vote(2, 6, 0, blockId(2)), 'chain-b')).error, undefined);
    // 3. Remove the ssh-agent socket.
    writeFileSync(toml, readFileSync(toml, 'utf8').replace(agent, '\n'));
    r = await custosAsync(['reload', '--json'], env(s.url));
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).ssh_agent.stopped, ['ops']);
    assert.notEqual((await runAsync('ssh-add', ['-l'], { SSH_AUTH_SOCK: sock })).status, 0, 'the socket is gone');
    // 4. Broken files change nothing and say what is wrong, naming the entry.
    const good = readFileSync(toml, 'utf8');
    writeFileSync(toml, good + '\n[[privval\nname = "c"\n');
    r = await custosAsync(['reload'], env(s.url));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /not valid TOML/);
    writeFileSync(toml, good + entry('c', 'chain-c', 'tcp://127.0.0.1:1', 'no-such-key'));
    r = await custosAsync(['reload'], env(s.url));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /\[\[privval\]\] "c": key = "no-such-key" names no key in the vault/);
    writeFileSync(toml, good.replace('name = "b"', 'name = "b"\ndialect = "v9"'));
    r = await custosAsync(['reload'], env(s.url));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /\[\[privval\]\] "b": dialect/);
    assert.equal((await signVote(nodeB2, vote(2, 7, 0, blockId(2)), 'chain-b')).error, undefined, 'b still serves after the refused reloads');
    // The untouched link never dropped.
    stop = true;
    await load;
    assert.ok(signed > 0);
    assert.equal(connA.isOpen, true, "validator a's connection stayed up through every reload");
    assert.equal(nodeA.connections.length, 1, 'and was never redialled');
    assert.match(s.output(), /"msg":"configuration reloaded"/);
  } finally {
    stop = true;
    await load?.catch(() => {});
    await s.stop();
    for (const n of [nodeA, nodeB, nodeB2]) await n.close();
    cleanup();
  }
});
