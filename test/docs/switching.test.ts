/**
 * The "Switching to Custos" pages (docs/switching/*.md), run as a user would: every code block
 * whose info string is exactly `sh` is run verbatim, in order, in one bash with `set -euo
 * pipefail`, against the old signer's real file formats, with `custos` on the PATH. Blocks
 * marked `sh env` (the user's own values), `sh on-node` (the node host) and `sh transit` (the
 * old client) are shown, not run: the test supplies the values and plays the node.
 * Time to first signature is measured from the first command to the node's first signed vote.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmpvault.js';
import { BIN, ROOT } from '../helpers/process.js';
import { TestNode } from '../helpers/cometbft-node.js';
import { requireTool } from '../helpers/require.js';
import type { BlockId } from '../../src/crypto/cometbft/sign-bytes.js';
import { blockId, filePv, vote } from '../helpers/validator.js';
import type { PrivvalMessage, Vote } from '../../src/frontends/privval/messages.js';

const CHAIN = 'docs-1';
const vote2 = (height: number, bid: BlockId): Vote => vote(2, height, 0, bid);

/** The page's `sh` blocks, verbatim. */
export function runnableBlocks(page: string): string[] {
  const text = readFileSync(join(ROOT, 'docs', 'switching', page), 'utf8');
  return [...text.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

interface World {
  dir: string;
  env: Record<string, string>;
}

function world(dir: string, extra: Record<string, string>): World {
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'custos'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`);
  chmodSync(join(bin, 'custos'), 0o755);
  const home = join(dir, 'home');
  mkdirSync(home, { recursive: true, mode: 0o700 });
  return {
    dir,
    env: {
      PATH: `${bin}:${process.env.PATH}`,
      HOME: home,
      CUSTOS_PASSPHRASE: 'docs test passphrase',
      CUSTOS_DATA: join(dir, 'custos'),
      CI: process.env.CI ?? '',
      ...extra,
    },
  };
}

/**
 * Runs the blocks; resolves with the exit, the output and the pid of the `custos serve` the
 * page started in the background (the harness prints `$!` after the page's own commands).
 */
function runPage(w: World, page: string): { done: Promise<{ status: number | null; out: string }>; stopServe: () => Promise<void> } {
  const free = assertFree(8200);
  // The trap reports the background serve even when a command fails, so it is always stopped.
  // (Every background job: `$!` would name a process substitution's process instead.)
  const script = ['set -euo pipefail', `cd "${w.dir}"`, `trap 'echo "HARNESS_SERVE_PIDS=$(jobs -p | tr "\\n" " ")"' EXIT`, ...runnableBlocks(page)].join('\n');
  const env: Record<string, string | undefined> = { ...process.env, ...w.env };
  for (const k of ['CUSTOS_TOKEN', 'CUSTOS_ADDR', 'CUSTOS_TOKEN_FILE', 'SSH_AUTH_SOCK']) if (!(k in w.env)) delete env[k];
  let out = '';
  const done = free.then(
    () =>
      new Promise<{ status: number | null; out: string }>((resolve) => {
        const p = spawn('bash', ['-c', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        p.stdout!.on('data', (d) => (out += d));
        p.stderr!.on('data', (d) => (out += d));
        p.on('close', (status) => resolve({ status, out }));
      }),
  );
  const stopServe = async () => {
    await done;
    const pids = (/HARNESS_SERVE_PIDS=([\d ]*)/.exec(out)?.[1] ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
    for (const pid of pids) await stopPid(pid);
  };
  return { done, stopServe };
}

async function stopPid(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 200; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  process.kill(pid, 'SIGKILL');
}

/** The pages use the default ports: say so plainly when something else holds one. */
async function assertFree(port: number): Promise<void> {
  const { createServer } = await import('node:net');
  await new Promise<void>((resolve, reject) => {
    const srv = createServer();
    srv.once('error', () => reject(new Error(`127.0.0.1:${port} is in use by another process; the switching pages use the default ports (stop it and run again)`)));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve()));
  });
}

/** A validator key pair and a FilePV-style state that really signed height 100. */
function validator() {
  const v = filePv(CHAIN, vote2(100, blockId(1)));
  return { seed: v.seed, keyJson: v.keyJson, stateJson: v.stateJson };
}

/** Plays the node on 127.0.0.1:26659 (the pages' address): waits for Custos, signs a vote above 100. */
async function nodeSigns(t: TestContext, page: string, w: World, began: number): Promise<void> {
  const node = await TestNode.listen({ port: 26659 });
  const run = runPage(w, page);
  try {
    const signer = node.waitForSigner(60_000);
    const ended = run.done.then((r) => {
      if (r.status !== 0) throw new Error(`the page's commands failed (${r.status}):\n${r.out}`);
      return r;
    });
    await Promise.race([signer, ended.then(() => signer)]);
    const r = (await node.request({ kind: 'sign_vote_request', vote: vote2(101, blockId(2)), chainId: CHAIN, skipExtensionSigning: false })) as Extract<PrivvalMessage, { kind: 'signed_vote_response' }>;
    assert.equal(r.error, undefined);
    t.diagnostic(`${page}: time to first signature from the page's first command: ${((performance.now() - began) / 1000).toFixed(2)} s`);
    const below = (await node.request({ kind: 'sign_vote_request', vote: vote2(99, blockId(3)), chainId: CHAIN, skipExtensionSigning: false })) as Extract<PrivvalMessage, { kind: 'signed_vote_response' }>;
    assert.ok(below.error, 'below the imported watermark: refused');
    const { out } = await ended;
    assert.match(out, /connecting|connected/, 'custos privval status ran');
  } finally {
    await run.stopServe();
    await node.close();
  }
}

test('docs/switching/filepv.md runs as written: the node signs through Custos', async (t) => {
  const { dir, cleanup } = tempDir();
  try {
    const v = validator();
    const nodeHome = join(dir, 'node');
    mkdirSync(join(nodeHome, 'config'), { recursive: true });
    mkdirSync(join(nodeHome, 'data'), { recursive: true });
    writeFileSync(join(nodeHome, 'config', 'priv_validator_key.json'), v.keyJson, { mode: 0o600 });
    writeFileSync(join(nodeHome, 'data', 'priv_validator_state.json'), v.stateJson);
    await nodeSigns(t, 'filepv.md', world(dir, { NODE_HOME: nodeHome, CHAIN_ID: CHAIN }), performance.now());
  } finally {
    cleanup();
  }
});

test('docs/switching/tmkms.md runs as written against a tmkms.toml, softsign key and tmkms state', async (t) => {
  const { dir, cleanup } = tempDir();
  try {
    const v = validator();
    const home = join(dir, 'tmkms');
    mkdirSync(home);
    writeFileSync(join(home, 'consensus.key'), v.seed.toString('base64'), { mode: 0o600 });
    mkdirSync(join(home, 'state'));
    writeFileSync(join(home, 'state', `${CHAIN}-consensus.json`), JSON.stringify({ height: '100', round: '0', step: 2, block_id: { hash: '01'.repeat(32), parts: { total: '1', hash: '02'.repeat(32) } } }));
    writeFileSync(
      join(home, 'tmkms.toml'),
      `[[chain]]\nid = "${CHAIN}"\nkey_format = { type = "bech32", account_key_prefix = "cosmospub", consensus_key_prefix = "cosmosvalconspub" }\nstate_file = "state/${CHAIN}-consensus.json"\n\n[[validator]]\nchain_id = "${CHAIN}"\naddr = "tcp://127.0.0.1:26659"\nsecret_key = "secret_connection.key"\nprotocol_version = "v0.38"\nreconnect = true\n\n[[providers.softsign]]\nchain_ids = ["${CHAIN}"]\nkey_type = "consensus"\npath = "consensus.key"\n`,
    );
    await nodeSigns(t, 'tmkms.md', world(dir, { TMKMS_HOME: home }), performance.now());
  } finally {
    cleanup();
  }
});

test('docs/switching/horcrux.md runs as written against a Horcrux single-signer key and state (round as a string)', async (t) => {
  const { dir, cleanup } = tempDir();
  try {
    const v = validator();
    const home = join(dir, 'horcrux');
    mkdirSync(join(home, 'state'), { recursive: true });
    writeFileSync(join(home, 'priv_validator_key.json'), v.keyJson, { mode: 0o600 });
    writeFileSync(join(home, 'state', `${CHAIN}_priv_validator_state.json`), JSON.stringify({ ...JSON.parse(v.stateJson), round: '0', vote_ext_signature: '' }));
    await nodeSigns(t, 'horcrux.md', world(dir, { HORCRUX_KEY: join(home, 'priv_validator_key.json'), HORCRUX_STATE: join(home, 'state', `${CHAIN}_priv_validator_state.json`), CHAIN_ID: CHAIN }), performance.now());
  } finally {
    cleanup();
  }
});

test('docs/switching/ssh-agent.md runs as written: ~/.ssh keys end up offered by the Custos socket', async (t) => {
  if (!requireTool(t, 'ssh-add', 'openssh-client')) return;
  const { dir, cleanup } = tempDir();
  try {
    const w = world(dir, {});
    const ssh = join(w.env.HOME!, '.ssh');
    mkdirSync(ssh, { mode: 0o700 });
    for (const [type, file] of [['ed25519', 'id_ed25519'], ['ecdsa', 'id_ecdsa']]) {
      assert.equal(spawnSync('ssh-keygen', ['-q', '-t', type!, '-N', '', '-f', join(ssh, file!)]).status, 0);
    }
    const run = runPage(w, 'ssh-agent.md');
    try {
      const r = await run.done;
      assert.equal(r.status, 0, r.out);
      for (const f of ['id_ed25519', 'id_ecdsa']) assert.ok(r.out.includes(readFileSync(join(ssh, `${f}.pub`), 'utf8').split(' ')[2]?.trim() ?? '#'), `ssh-add -l lists ${f}`);
      assert.match(r.out, /2 of 2 key\(s\) are in the vault now/);
    } finally {
      await run.stopServe();
    }
  } finally {
    cleanup();
  }
});

test('docs/switching/vault-transit.md runs as written: the transit-style call signs and the signature verifies', async (t) => {
  if (!requireTool(t, 'curl', 'curl')) return;
  const { dir, cleanup } = tempDir();
  try {
    const run = runPage(world(dir, {}), 'vault-transit.md');
    try {
      const r = await run.done;
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /valid/);
    } finally {
      await run.stopServe();
    }
  } finally {
    cleanup();
  }
});
