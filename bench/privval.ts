/**
 * Consensus vote signing with the durable double-sign watermark, against what the hardware
 * allows, measured in the same run:
 *   - baseline: fsync of a 256-byte write (the durability floor) and a raw node:crypto
 *     Ed25519 signature;
 *   - one validator: vault.signConsensus latency p50/p99 (sign in memory, then one durable
 *     commit of watermark, signature and audit entries before the answer);
 *   - ten validators signing at once (own key and chain each): throughput and latency;
 *   - end to end: a node in a process of its own (the repository's test node) sends votes over
 *     a real SecretConnection on loopback to a PrivvalConnector on the vault, one at a time,
 *     beside its ping round trip on the same connection (the link's floor).
 *
 *   node --import tsx bench/privval.ts [--votes N]
 *
 * One JSON document on stdout; the goal (issue 4) is p50 within 1.5× of fsync + sign.
 * Never exits non-zero because of a timing.
 */
import { cpus } from 'node:os';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { fsyncFloor, pct, signFloor } from './lib/floors.js';
import { makeVault } from '../test/helpers/tmpvault.js';
import { PrivvalConnector } from '../src/frontends/privval/connector.js';
import { benchVoteBytes } from './lib/votes.js';
import { onlyTimestampDiffers } from '../src/crypto/cometbft/compare.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const VOTES = arg('--votes', 1000);

const ms = (ns: bigint) => Number(ns) / 1e6;
const round = (x: number) => Number(x.toFixed(3));

async function main(): Promise<void> {
  process.stderr.write(`[bench] baselines (${VOTES} each)\n`);
  const fsync = fsyncFloor(VOTES);
  const sign = signFloor(VOTES);
  const v = await makeVault();
  try {
    const validators = await Promise.all(
      Array.from({ length: 10 }, (_, i) => v.vault.createKey(v.ctx(), { label: `bench-val-${i}`, algorithm: 'ed25519', exportable: false, purpose: 'consensus' })),
    );
    const vote = async (keyId: string, chainId: string, height: bigint, step: 2 | 3) => {
      const signBytes = benchVoteBytes(chainId, height, step);
      const t = process.hrtime.bigint();
      await v.vault.signConsensus({ requestId: `b${height}`, principal: { id: 'privval:bench', kind: 'privval' }, key: keyId, chainId, position: { height, round: 0, step }, signBytes, onlyTimestampDiffers, context: {} });
      return ms(process.hrtime.bigint() - t);
    };
    process.stderr.write('[bench] one validator, sequential votes\n');
    const one: number[] = [];
    for (let h = 1; h <= VOTES; h++) one.push(await vote(validators[0]!.id, 'bench-1', BigInt(Math.ceil(h / 2)), h % 2 === 1 ? 2 : 3));
    process.stderr.write('[bench] ten validators at once\n');
    const ten: number[] = [];
    const per = Math.max(10, Math.floor(VOTES / 10));
    const started = process.hrtime.bigint();
    await Promise.all(
      validators.map(async (k, i) => {
        for (let h = 1; h <= per; h++) ten.push(await vote(k.id, `bench-chain-${i}`, BigInt(Math.ceil(h / 2)), h % 2 === 1 ? 2 : 3));
      }),
    );
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    process.stderr.write('[bench] end to end: a node in its own process, over SecretConnection\n');
    const e2e = await endToEnd(v);
    const floor = pct(fsync, 50) + pct(sign, 50);
    const e2eFloor = pct(e2e.pings, 50) + floor;
    const result = {
      machine: { cpus: cpus().length, node: process.version },
      baseline: { fsync_256b_p50_ms: round(pct(fsync, 50)), fsync_256b_p99_ms: round(pct(fsync, 99)), ed25519_sign_p50_ms: round(pct(sign, 50)) },
      one_validator: { votes: one.length, p50_ms: round(pct(one, 50)), p99_ms: round(pct(one, 99)) },
      ten_validators: { votes: ten.length, votes_per_s: round(ten.length / seconds), p50_ms: round(pct(ten, 50)), p99_ms: round(pct(ten, 99)) },
      end_to_end: {
        votes: e2e.signs.length,
        loopback_ping_p50_ms: round(pct(e2e.pings, 50)),
        p50_ms: round(pct(e2e.signs, 50)),
        p99_ms: round(pct(e2e.signs, 99)),
      },
      goal: {
        p50_vs_fsync_plus_sign: round(pct(one, 50) / floor),
        end_to_end_p50_vs_ping_fsync_sign: round(pct(e2e.signs, 50) / e2eFloor),
        target: 1.5,
        met: pct(one, 50) <= 1.5 * floor && pct(e2e.signs, 50) <= 1.5 * e2eFloor,
      },
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } finally {
    await v.dispose();
  }
}

/** The node side in its own process (bench/lib/privval-node.ts), the connector in this one. */
async function endToEnd(v: Awaited<ReturnType<typeof makeVault>>): Promise<{ pings: number[]; signs: number[] }> {
  await v.vault.createKey(v.ctx(), { label: 'e2e-val', algorithm: 'ed25519', exportable: false, purpose: 'consensus' });
  await v.vault.createKey(v.ctx(), { label: 'e2e-identity', algorithm: 'ed25519', exportable: false });
  const script = fileURLToPath(new URL('./lib/privval-node.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, String(VOTES), 'bench-e2e'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const address = await new Promise<string>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /^address (\S+)$/m.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the node exited (${code}) before listening`)));
  });
  const connector = new PrivvalConnector(v.vault, { name: 'e2e', chainId: 'bench-e2e', address, consensusKey: 'e2e-val', identityKey: 'e2e-identity', dialect: 'v1' }, { info: () => {}, warn: () => {} });
  connector.start();
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`the node exited with ${code}`))));
    });
  } finally {
    await connector.stop();
  }
  const line = out.split('\n').find((l) => l.startsWith('{'));
  if (!line) throw new Error('the node printed no result');
  return JSON.parse(line) as { pings: number[]; signs: number[] };
}

await main();
