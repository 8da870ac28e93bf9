/**
 * The privval race and crash soak with a 2-of-3 threshold key: three real `custos serve`
 * processes (mutual TLS between them), the validator key split among them, a privval connector
 * on two of them dialling one test CometBFT node. Each round sends conflicting prevotes for one
 * height (two block ids) to the two connectors at once; every few rounds a random cosigner is
 * killed with SIGKILL at a random moment and restarted. Every signature the node receives is
 * recorded and checked independently (scripts/privval-crash-soak.ts checkSignatures): it
 * verifies under the validator key, and no height/round/step has two different sign bytes.
 *
 *   node --import tsx scripts/threshold-soak.ts --rounds 2000 [--kill-every 10]
 *
 * Prints one JSON line; exits 1 on any violation.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../test/helpers/tmpvault.js';
import { agree, makeCluster } from '../test/helpers/cluster.js';
import { TestNode, type SignerConn } from '../test/helpers/cometbft-node.js';
import { filePv, vote as firstVote, blockId as testBlockId } from '../test/helpers/validator.js';
import { CHAIN, blockId, bytesFor, checkSignatures, makeVote, signRequest, type RecordedSig } from './privval-crash-soak.js';

export interface ThresholdSoakReport {
  rounds: number;
  kills: number;
  signatures: number;
  /** Rounds in which one of the two conflicting votes was signed. */
  oneSigned: number;
  /** Rounds in which neither was (both partial, a cosigner down, a connector reconnecting). */
  noneSigned: number;
  violations: number;
  details: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runThresholdSoak(opts: { rounds: number; killEvery?: number; log?: (s: string) => void }): Promise<ThresholdSoakReport> {
  const log = opts.log ?? (() => {});
  const killEvery = opts.killEvery ?? 10;
  const { dir, cleanup } = tempDir('custos-threshold-soak-');
  const c = await makeCluster(dir, ['a', 'b', 'c']);
  const node = await TestNode.listen({ dialect: 'v0.38' });
  const sigs: RecordedSig[] = [];
  let kills = 0;
  let oneSigned = 0;
  let noneSigned = 0;
  try {
    const pv = filePv(CHAIN, firstVote(2, 1, 0, testBlockId(1)));
    await agree(c.nodes, 'a', { label: 'validator', kind: 'split', threshold: 2, members: ['a', 'b', 'c'], purpose: 'consensus' });
    await c.node('a').client.clusterSplit({ label: 'validator', format: 'cometbft', material: new TextEncoder().encode(pv.keyJson), threshold: 2, purpose: 'consensus' });
    for (const name of ['a', 'b']) {
      const n = c.node(name);
      await n.client.createKey({ label: 'pv-id', algorithm: 'ed25519' });
      appendFileSync(join(n.dataDir, 'custos.toml'), `\n[[privval]]\nname = "val"\nchain_id = "${CHAIN}"\naddress = "${node.address}"\nkey = "validator"\nidentity_key = "pv-id"\ndialect = "v0.38"\nread_timeout_seconds = 5\n`);
      await n.client.reload();
    }
    await node.waitForSigners(2, 15_000);
    const ts = { seconds: 1_700_000_000n, nanos: 0 };
    /** The newest open connection from each connector's node (found by its remote port's owner is not known, so by order: any two open). */
    const open = () => node.connections.filter((x) => x.isOpen);
    const send = async (conn: SignerConn, v: ReturnType<typeof makeVote>, round: number): Promise<boolean> => {
      try {
        const r = await conn.request(signRequest(v), 20_000);
        if (r.kind !== 'signed_vote_response' || r.error || !r.vote) return false;
        sigs.push({ height: v.height, round: v.round, type: v.type, signBytes: bytesFor(v, r.vote.timestamp), signature: r.vote.signature, cycle: round });
        return true;
      } catch {
        return false;
      }
    };
    let killing: Promise<void> = Promise.resolve();
    for (let round = 1; round <= opts.rounds; round++) {
      if (round % killEvery === 0) {
        // A random cosigner dies at a random moment during this round, and comes back.
        const victim = ['a', 'b', 'c'][Math.floor(Math.random() * 3)]!;
        kills++;
        killing = (async () => {
          await sleep(Math.random() * 40);
          await c.stop(victim, 'SIGKILL');
          await c.start(victim);
        })();
      }
      let conns = open();
      for (let i = 0; i < 100 && conns.length < 2; i++) {
        await sleep(100);
        conns = open();
      }
      const h = BigInt(round + 10);
      const [x, y] = conns.length >= 2 ? conns.slice(-2) : [conns[0], conns[0]];
      const results = x ? await Promise.all([send(x, makeVote(1, h, 0, blockId(round), ts), round), send(y!, makeVote(1, h, 0, blockId(round + 1), ts), round)]) : [false, false];
      const n = results.filter(Boolean).length;
      if (n === 1) oneSigned++;
      if (n === 0) noneSigned++;
      await killing;
      if (round % 50 === 0) log(`round ${round}/${opts.rounds}: ${sigs.length} signatures, ${kills} kills, one signed ${oneSigned}, none ${noneSigned}`);
    }
    const pub = new Uint8Array(pv.pub);
    const { violations, details } = checkSignatures(pub, sigs);
    for (const d of details) log(`VIOLATION: ${d}`);
    return { rounds: opts.rounds, kills, signatures: sigs.length, oneSigned, noneSigned, violations, details };
  } finally {
    await node.close();
    await c.close();
    cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string, d: number) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : d;
  };
  const report = await runThresholdSoak({ rounds: arg('--rounds', 2000), killEvery: arg('--kill-every', 10), log: (s) => process.stderr.write(s + '\n') });
  const { details, ...summary } = report;
  process.stdout.write(JSON.stringify(summary) + '\n');
  if (details.length) process.stderr.write(details.join('\n') + '\n');
  process.exitCode = report.violations === 0 ? 0 : 1;
}
