/**
 * The CometBFT front end through the real `custos` executable, for what an operator writes and
 * runs: `[[privval]]` node pins in custos.toml (`tcp://<node-id>@host:port`, `node_key` as a node
 * id or a public key) against the in-repo test node, and `custos privval import-state` with
 * sign bytes and signatures that must match the imported state.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPublicKey, generateKeyPairSync, randomBytes, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { custos, serve, type ServeProcess } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';
import { TestNode } from '../helpers/cometbft-node.js';
import { EXIT } from '../../src/cli/exit.js';
import { nodeIdOf } from '../../src/crypto/cometbft/node-id.js';
import { voteSignBytes, type BlockId } from '../../src/crypto/cometbft/sign-bytes.js';
import type { PrivvalMessage, Vote } from '../../src/frontends/privval/messages.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'privval cli test passphrase' };
const DERIVED_FILE = fileURLToPath(new URL('../shared/vectors/cometbft/sign_bytes/derived_sign_bytes_and_signatures.json', new URL('../../', import.meta.url)));
const SKIP_VECTORS = existsSync(DERIVED_FILE)
  ? false
  : `CometBFT derived vectors not found at ${DERIVED_FILE}; they are read from the shared folder (<repo>/../shared/vectors/cometbft/sign_bytes) and never copied into the repo`;

interface Vault {
  dataDir: string;
  tokenFile: string;
  /** Runs a client command against `url`. */
  k(args: string[], url: string): ReturnType<typeof custos>;
}

function initVault(dir: string): Vault {
  const dataDir = join(dir, 'vault');
  const init = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '10'], PASSENV);
  assert.equal(init.status, 0, init.stderr);
  const token = /custos_[A-Za-z0-9_-]{43}/.exec(init.stdout)![0];
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, token, { mode: 0o600 });
  return { dataDir, tokenFile, k: (args, url) => custos([...args, '--token-file', tokenFile], { CUSTOS_ADDR: url, CUSTOS_TOKEN: undefined }) };
}

async function api(s: ServeProcess, v: Vault, path: string): Promise<{ status: number; body: any }> {
  const token = readFileSync(v.tokenFile, 'utf8');
  const res = await fetch(`${s.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.json() };
}

function blockId(seed: number): BlockId {
  return { hash: new Uint8Array(32).fill(seed), partSetHeader: { total: 1, hash: new Uint8Array(32).fill(seed + 1) } };
}

function prevote(height: bigint): Vote {
  return {
    type: 1,
    height,
    round: 0,
    blockId: blockId(Number(height & 0xffn)),
    timestamp: { seconds: 1_700_000_000n + height, nanos: 0 },
    validatorAddress: new Uint8Array(20).fill(2),
    validatorIndex: 0,
    signature: new Uint8Array(0),
    extension: new Uint8Array(0),
    extensionSignature: new Uint8Array(0),
  };
}

function ed25519Verifies(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pub]);
  return nodeVerify(null, msg, createPublicKey({ key: spki, format: 'der', type: 'spki' }), sig);
}

async function waitFor(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A vault with an ed25519 consensus key `val` and a SecretConnection identity `val-id`, then
 * `custos serve` with `[[privval]]` entries (`name`, `chain`, `lines` = address and pins).
 */
async function serveValidators(v: Vault, validators: Array<{ name: string; chain: string; lines: string[] }>): Promise<{ s: ServeProcess; valPub: Uint8Array }> {
  const pre = await serve(['--data-dir', v.dataDir], PASSENV);
  const created = v.k(['keys', 'create', '--label', 'val', '--algorithm', 'ed25519', '--purpose', 'consensus', '--json'], pre.url);
  assert.equal(created.status, 0, created.stderr);
  const valPub = new Uint8Array(Buffer.from(JSON.parse(created.stdout).public_key.raw, 'base64'));
  assert.equal(v.k(['keys', 'create', '--label', 'val-id', '--algorithm', 'ed25519'], pre.url).status, 0);
  assert.equal(await pre.stop(), 0);
  const toml = validators.flatMap((x) => ['[[privval]]', `name = "${x.name}"`, `chain_id = "${x.chain}"`, 'key = "val"', 'identity_key = "val-id"', ...x.lines]);
  writeFileSync(join(v.dataDir, 'custos.toml'), `${toml.join('\n')}\n`);
  return { s: await serve(['--data-dir', v.dataDir], PASSENV), valPub };
}

const port = (n: TestNode) => n.address.slice('tcp://127.0.0.1:'.length);

/**
 * The impostor completes its side of the handshake (a node does not pin the signer), asks for
 * a signature at once, and never gets one: the signer hangs up instead. Twice, since the
 * signer keeps redialling in case the pinned node takes the address back.
 */
async function assertRefusedTwice(impostor: TestNode, chainId: string): Promise<void> {
  await waitFor(() => impostor.connections.length >= 2, 'two connections to the impostor');
  for (const conn of impostor.connections.slice(0, 2)) {
    const ask: PrivvalMessage = { kind: 'sign_vote_request', vote: prevote(5n), chainId, skipExtensionSigning: false };
    await assert.rejects(conn.request(ask, 15_000), /closed|broke|write failed/, 'the impostor gets no answer: the signer hangs up');
    await conn.closed;
  }
}

/** The pinned node asks for a prevote and gets a valid signature. */
async function assertServed(node: TestNode, chainId: string, valPub: Uint8Array): Promise<void> {
  const conn = await node.waitForSigner(15_000);
  const ask = prevote(7n);
  const r = await conn.request({ kind: 'sign_vote_request', vote: ask, chainId, skipExtensionSigning: false });
  assert.ok(r.kind === 'signed_vote_response' && r.vote && !r.error, JSON.stringify(r.kind === 'signed_vote_response' ? r.error : r.kind));
  const signBytes = voteSignBytes(chainId, { type: 'prevote', height: 7n, round: 0, blockId: ask.blockId, timestamp: ask.timestamp });
  assert.ok(ed25519Verifies(valPub, signBytes, r.vote.signature), 'the pinned node gets a valid vote signature');
}

test('a node pinned by tcp://<node-id>@host:port: a node with another identity is disconnected before any request is served, logged, counted and audited; the pinned node is served', async () => {
  const { dir, cleanup } = tempDir();
  const v = initVault(dir);
  const right = await TestNode.listen();
  const wrong = await TestNode.listen();
  const rightId = nodeIdOf(right.identityPublic);
  const wrongId = nodeIdOf(wrong.identityPublic);
  let s: ServeProcess | undefined;
  try {
    // Both validators pin the same node id, written the tmkms way; only one node has that id.
    let valPub: Uint8Array;
    ({ s, valPub } = await serveValidators(v, [
      { name: 'impostor', chain: 'chain-impostor', lines: [`address = "tcp://${rightId}@127.0.0.1:${port(wrong)}"`] },
      { name: 'pinned', chain: 'chain-pinned', lines: [`address = "tcp://${rightId.toUpperCase()}@127.0.0.1:${port(right)}"`] },
    ]));

    await assertRefusedTwice(wrong, 'chain-impostor');
    const wm = await api(s, v, '/v1/keys/val/watermarks/chain-impostor');
    assert.equal(wm.status, 404, 'nothing was signed for the impostor');
    await assertServed(right, 'chain-pinned', valPub);

    // Audited once (repeats of the same impostor within a minute are counted, not re-audited).
    const audit = await api(s, v, '/v1/audit?limit=200');
    const refusals = (audit.body.entries as any[]).filter((e) => e.operation === 'privval_connect');
    assert.equal(refusals.length, 1, JSON.stringify(refusals));
    assert.equal(refusals[0].outcome, 'denied');
    assert.equal(refusals[0].reason, 'node_id_mismatch');
    assert.equal(refusals[0].key_label, 'val');
    assert.equal(refusals[0].principal, 'privval:impostor');
    assert.deepEqual(
      { expected: refusals[0].details.expected_node_id, seen: refusals[0].details.seen_node_id, chain: refusals[0].details.chain_id },
      { expected: rightId, seen: wrongId, chain: 'chain-impostor' },
    );

    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    const count = /custos_privval_connections_refused_total\{validator="impostor",reason="node_id_mismatch"\} (\d+)/.exec(metrics);
    assert.ok(count && Number(count[1]) >= 2, `every refusal is counted:\n${metrics.split('\n').filter((l) => l.includes('privval')).join('\n')}`);
    assert.doesNotMatch(metrics, /custos_privval_connections_refused_total\{validator="pinned"/);

    // Complete JSON lines only: the process may be writing another one right now.
    const warning = s
      .output()
      .split('\n')
      .flatMap((l) => {
        try {
          return [JSON.parse(l)];
        } catch {
          return [];
        }
      })
      .find((l) => l.msg === 'privval node id mismatch: refusing the node');
    assert.ok(warning, s.output());
    assert.equal(warning.level, 40, 'logged at warn');
    assert.equal(warning.expected_node_id, rightId);
    assert.equal(warning.seen_node_id, wrongId);
  } finally {
    if (s) assert.equal(await s.stop(), 0);
    await right.close();
    await wrong.close();
    cleanup();
  }
});

test('node_key as the 40-hex node id refuses a node with another id; node_key as the 64-hex public key serves the node that has it', async () => {
  const { dir, cleanup } = tempDir();
  const v = initVault(dir);
  const right = await TestNode.listen();
  const wrong = await TestNode.listen();
  const rightId = nodeIdOf(right.identityPublic);
  let s: ServeProcess | undefined;
  try {
    let valPub: Uint8Array;
    ({ s, valPub } = await serveValidators(v, [
      { name: 'by-id', chain: 'chain-by-id', lines: [`address = "tcp://127.0.0.1:${port(wrong)}"`, `node_key = "${rightId}"`] },
      // Address id and public key together: they name the same node, so the config loads.
      { name: 'by-key', chain: 'chain-by-key', lines: [`address = "tcp://${rightId}@127.0.0.1:${port(right)}"`, `node_key = "${Buffer.from(right.identityPublic).toString('hex')}"`] },
    ]));
    await assertRefusedTwice(wrong, 'chain-by-id');
    assert.equal((await api(s, v, '/v1/keys/val/watermarks/chain-by-id')).status, 404, 'nothing was signed for the impostor');
    await assertServed(right, 'chain-by-key', valPub);
    const audit = await api(s, v, '/v1/audit?limit=200');
    const refusals = (audit.body.entries as any[]).filter((e) => e.operation === 'privval_connect');
    assert.deepEqual(refusals.map((e) => [e.principal, e.reason, e.details.expected_node_id, e.details.seen_node_id]), [['privval:by-id', 'node_id_mismatch', rightId, nodeIdOf(wrong.identityPublic)]]);
  } finally {
    if (s) assert.equal(await s.stop(), 0);
    await right.close();
    await wrong.close();
    cleanup();
  }
});

test('custos serve refuses node pins that disagree or cannot be checked, naming the validator', () => {
  const { dir, cleanup } = tempDir();
  try {
    const v = initVault(dir);
    const idA = 'a'.repeat(40);
    const keyB = 'b'.repeat(64);
    const cases: Array<[string, RegExp]> = [
      [`address = "tcp://${idA}@127.0.0.1:26659"\nnode_key = "${'c'.repeat(40)}"`, /must agree/],
      [`address = "tcp://${idA}@127.0.0.1:26659"\nnode_key = "${keyB}"`, /must agree/],
      [`address = "unix://${idA}@/run/node.sock"`, /unix:\/\/.*node id|node id.*unix:\/\//],
      [`address = "unix:///run/node.sock"\nnode_key = "${idA}"`, /unix:\/\//],
      [`address = "tcp://not-a-node-id@127.0.0.1:26659"`, /40 hex digits/],
    ];
    for (const [lines, re] of cases) {
      writeFileSync(join(v.dataDir, 'custos.toml'), `[[privval]]\nname = "val"\nchain_id = "c-1"\nkey = "k"\nidentity_key = "i"\n${lines}\n`);
      const r = custos(['serve', '--data-dir', v.dataDir, '--port', '0'], PASSENV);
      assert.equal(r.status, EXIT.usage, `${lines}\n${r.stderr}`);
      assert.match(r.stderr, re, lines);
      assert.match(r.stderr, /privval "val"/, lines);
    }
  } finally {
    cleanup();
  }
});

// ---------------------------------------------------------------------------------------------
// privval import-state

/** A priv_validator_state.json as CometBFT FilePV writes it: sign bytes in upper-case hex, signature in base64. */
function filePvState(height: bigint, round: number, step: number, signBytes?: Uint8Array, signature?: Uint8Array): string {
  return JSON.stringify({
    height: height.toString(),
    round,
    step,
    ...(signature ? { signature: Buffer.from(signature).toString('base64') } : {}),
    ...(signBytes ? { signbytes: Buffer.from(signBytes).toString('hex').toUpperCase() } : {}),
  });
}

const BLOCK = blockId(9);
const TS = { seconds: 1_704_164_645n, nanos: 123_456_789 };
const precommit = (chainId: string, height: bigint, round = 0) => voteSignBytes(chainId, { type: 'precommit', height, round, blockId: BLOCK, timestamp: TS });

test('privval import-state keeps a state only if its signature is the key\'s over sign bytes of that chain, height, round and step; each refusal says why and is audited', async () => {
  const { dir, cleanup } = tempDir();
  const v = initVault(dir);
  const s = await serve(['--data-dir', v.dataDir], PASSENV);
  try {
    const kp = generateKeyPairSync('ed25519');
    const der = kp.privateKey.export({ format: 'der', type: 'pkcs8' });
    const pub = kp.publicKey.export({ format: 'der', type: 'spki' }).subarray(12);
    writeFileSync(
      join(dir, 'priv_validator_key.json'),
      JSON.stringify({ pub_key: { type: 'tendermint/PubKeyEd25519', value: pub.toString('base64') }, priv_key: { type: 'tendermint/PrivKeyEd25519', value: Buffer.concat([der.subarray(der.length - 32), pub]).toString('base64') } }),
      { mode: 0o600 },
    );
    assert.equal(v.k(['keys', 'import', '--label', 'val', '--format', 'cometbft', '--in', join(dir, 'priv_validator_key.json')], s.url).status, 0);
    const sign = (m: Uint8Array) => new Uint8Array(nodeSign(null, m, kp.privateKey));
    const importState = (name: string, body: string) => {
      writeFileSync(join(dir, name), body);
      return v.k(['privval', 'import-state', '--key', 'val', '--chain-id', 'cosmoshub-4', '--in', join(dir, name)], s.url);
    };

    const good = precommit('cosmoshub-4', 7001n);
    const otherChain = precommit('osmosis-1', 7001n);
    const older = precommit('cosmoshub-4', 7000n);
    const refusals: Array<[string, string, string, RegExp]> = [
      ['random.json', filePvState(7001n, 0, 3, good, new Uint8Array(randomBytes(64))), 'bad_request:bad_signature', /signature does not verify under this key/],
      ['other-chain.json', filePvState(7001n, 0, 3, otherChain, sign(otherChain)), 'bad_request:state_mismatch', /chain ID "osmosis-1" in the sign bytes, "cosmoshub-4" in the state/],
      ['older.json', filePvState(7001n, 0, 3, older, sign(older)), 'bad_request:state_mismatch', /height 7000 in the sign bytes, 7001 in the state/],
      ['prevote-step.json', filePvState(7001n, 0, 2, good, sign(good)), 'bad_request:state_mismatch', /step 3 \(precommit\) in the sign bytes, 2 \(prevote\) in the state/],
      ['no-bytes.json', filePvState(7001n, 0, 3, undefined, sign(good)), 'bad_request:missing_sign_bytes', /signature but no sign bytes/],
    ];
    for (const [name, body, code, re] of refusals) {
      const r = importState(name, body);
      assert.equal(r.status, EXIT.usage, `${name}: ${r.stderr}`);
      assert.match(r.stderr, re, name);
    }
    assert.equal((await api(s, v, '/v1/keys/val/watermarks/cosmoshub-4')).status, 404, 'no refused state was stored');
    const audit = (await api(s, v, '/v1/audit?limit=200')).body.entries as any[];
    const denied = audit.filter((e) => e.operation === 'import_state' && e.outcome === 'denied');
    assert.deepEqual(denied.map((e) => e.reason).sort(), refusals.map((x) => x[2]).sort());
    assert.ok(denied.every((e) => e.key_label === 'val' && e.details.chain_id === 'cosmoshub-4' && e.details.height === '7001'));

    // The genuine state is kept, and what the vault stores is exactly it.
    const sig = sign(good);
    const r = importState('good.json', filePvState(7001n, 0, 3, good, sig));
    assert.equal(r.status, 0, r.stderr);
    const wm = (await api(s, v, '/v1/keys/val/watermarks/cosmoshub-4')).body;
    assert.deepEqual(wm, { height: '7001', round: 0, step: 3, sign_bytes: Buffer.from(good).toString('hex'), signature: Buffer.from(sig).toString('base64') });
  } finally {
    assert.equal(await s.stop(), 0);
    cleanup();
  }
});

test('privval import-state accepts the shared vectors\' genuine FilePV states for ed25519 and secp256k1 keys', { skip: SKIP_VECTORS }, async () => {
  const vectors = JSON.parse(readFileSync(DERIVED_FILE, 'utf8')) as {
    keys: { ed25519: { seed_hex: string; pubkey_hex: string }; secp256k1: { privkey_hex: string; pubkey_compressed_hex: string } };
    cases: Array<{ id: string; inputs: { chain_id: string; type?: number; height: number; round: number }; sign_bytes_hex: string; ed25519_signature_hex: string; secp256k1_signature_hex: string }>;
  };
  const c = vectors.cases.find((x) => x.id === 'precommit-block')!;
  assert.ok(c, 'the precommit-block vector');
  const { dir, cleanup } = tempDir();
  const v = initVault(dir);
  const s = await serve(['--data-dir', v.dataDir], PASSENV);
  try {
    const b64 = (h: string) => Buffer.from(h, 'hex').toString('base64');
    const keyFiles = {
      ed: { pub_key: { type: 'tendermint/PubKeyEd25519', value: b64(vectors.keys.ed25519.pubkey_hex) }, priv_key: { type: 'tendermint/PrivKeyEd25519', value: b64(vectors.keys.ed25519.seed_hex + vectors.keys.ed25519.pubkey_hex) } },
      k1: { pub_key: { type: 'tendermint/PubKeySecp256k1', value: b64(vectors.keys.secp256k1.pubkey_compressed_hex) }, priv_key: { type: 'tendermint/PrivKeySecp256k1', value: b64(vectors.keys.secp256k1.privkey_hex) } },
    };
    for (const [label, sigHex] of [['ed', c.ed25519_signature_hex], ['k1', c.secp256k1_signature_hex]] as const) {
      writeFileSync(join(dir, `${label}.json`), JSON.stringify(keyFiles[label]), { mode: 0o600 });
      const imp = v.k(['keys', 'import', '--label', label, '--format', 'cometbft', '--in', join(dir, `${label}.json`)], s.url);
      assert.equal(imp.status, 0, imp.stderr);
      writeFileSync(join(dir, `${label}-state.json`), filePvState(BigInt(c.inputs.height), c.inputs.round, 3, new Uint8Array(Buffer.from(c.sign_bytes_hex, 'hex')), new Uint8Array(Buffer.from(sigHex, 'hex'))));
      const r = v.k(['privval', 'import-state', '--key', label, '--chain-id', c.inputs.chain_id, '--in', join(dir, `${label}-state.json`)], s.url);
      assert.equal(r.status, 0, `${label}: ${r.stderr}`);
    }
    // Each key's signature is refused under the other key.
    writeFileSync(join(dir, 'swapped.json'), filePvState(BigInt(c.inputs.height), c.inputs.round, 3, new Uint8Array(Buffer.from(c.sign_bytes_hex, 'hex')), new Uint8Array(Buffer.from(c.ed25519_signature_hex, 'hex'))));
    const r = v.k(['privval', 'import-state', '--key', 'k1', '--chain-id', c.inputs.chain_id, '--in', join(dir, 'swapped.json')], s.url);
    assert.equal(r.status, EXIT.usage, r.stderr);
    assert.match(r.stderr, /does not verify/);
  } finally {
    assert.equal(await s.stop(), 0);
    cleanup();
  }
});
