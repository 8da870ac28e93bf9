/**
 * Privval race: two `custos serve` processes on one data directory (or, with `--postgres`, two
 * nodes with their own data directories on one PostgreSQL database), both connected to one test
 * CometBFT node (test/helpers/cometbft-node.ts), asked to sign conflicting votes at the same
 * moment, thousands of times. The processes are started once; each round is a new height
 * (prevotes and precommits alternating) with two votes for different blocks, `a` and `b`:
 * process A is sent a then b, process B is sent b then a, concurrently, so both processes race
 * on both messages.
 *
 * Every signature returned is then checked independently of the vault (node:crypto Ed25519
 * against the public key the API reported at creation): it must verify over the sign bytes of
 * the vote it answered, and no two returned signatures may cover different sign bytes at one
 * height/round/type. A round in which nothing was signed is counted too (it would mean both
 * processes refused both votes).
 *
 *   node --import tsx scripts/privval-race.ts --rounds 2000      (npm run race:privval)
 *   node --import tsx scripts/privval-race.ts --rounds 2000 --postgres
 *     (a throwaway PostgreSQL cluster on 127.0.0.1, test/helpers/postgres.ts; needs postgresql)
 *
 * Prints {rounds, signatures, refused, conflicts, ...} as JSON; exits 1 on any conflict, bad
 * signature or unexpected answer. The test suite runs a short version
 * (test/frontends/privval/crash-race.test.ts).
 */
import { serve, type ServeProcess } from '../test/helpers/process.js';
import { TestNode, type SignerConn } from '../test/helpers/cometbft-node.js';
import type { PrivvalMessage, Vote } from '../src/frontends/privval/messages.js';
import { PASS, blockId, bytesFor, ed25519Verify, makePrivvalVault, makeVote, signRequest, type RecordedSig, type Vault } from './privval-crash-soak.js';

export interface PrivvalRaceReport {
  rounds: number;
  /** Signatures returned (a process may return the other's stored signature: counted each time). */
  signatures: number;
  /** Double-sign refusals (RemoteSignerError code 2). */
  refused: number;
  /** Positions with two returned signatures over different sign bytes. */
  conflicts: number;
  /** Returned signatures that do not verify. */
  badSignatures: number;
  /** Rounds in which neither vote was signed by either process. */
  unsignedRounds: number;
  /** Answers that were neither a signature nor a double-sign refusal. */
  unexpected: number;
  /** Rounds in which each process signed (or re-served) a signature, per process. */
  signedBy: { a: number; b: number };
  seconds: number;
  details: string[];
}

/** `storeUrl`: an empty PostgreSQL database for the vault; the two processes are then two nodes. */
export async function runPrivvalRace(opts: { rounds: number; log?: (s: string) => void; storeUrl?: string }): Promise<PrivvalRaceReport> {
  const log = opts.log ?? (() => {});
  const node = await TestNode.listen();
  let vault: Vault | undefined;
  const procs: ServeProcess[] = [];
  const sigs: RecordedSig[] = [];
  const details: string[] = [];
  let refused = 0;
  let unexpected = 0;
  let unsignedRounds = 0;
  const signedBy = { a: 0, b: 0 };
  const started = Date.now();
  try {
    vault = await makePrivvalVault(node.address, 'custos-privval-race-', opts.storeUrl);
    const dataDirs = [vault.dataDir, vault.secondNode ?? vault.dataDir];
    procs.push(...(await Promise.all(dataDirs.map((d) => serve(['--data-dir', d, '--log-level', 'warn'], PASS)))));
    const [a, b] = (await node.waitForSigners(2, 30_000)) as [SignerConn, SignerConn];

    /** Sends `votes` in order on `conn`; records what comes back. */
    const run = async (conn: SignerConn, votes: Vote[], round: number): Promise<number> => {
      let signed = 0;
      for (const v of votes) {
        const r: PrivvalMessage = await conn.request(signRequest(v), 30_000);
        if (r.kind === 'signed_vote_response' && r.vote && !r.error) {
          sigs.push({ height: v.height, round: v.round, type: v.type, signBytes: bytesFor(v, r.vote.timestamp), signature: r.vote.signature, cycle: round });
          signed++;
        } else if (r.kind === 'signed_vote_response' && r.error?.code === 2) refused++;
        else {
          unexpected++;
          if (details.length < 20) details.push(`round ${round}: unexpected answer ${JSON.stringify(r.kind === 'signed_vote_response' ? r.error : r.kind)}`);
        }
      }
      return signed;
    };

    for (let i = 0; i < opts.rounds; i++) {
      const height = BigInt(1 + i);
      const type = i % 2 === 0 ? 1 : 2;
      const ts = { seconds: 1_700_000_000n + BigInt(i), nanos: i % 1000 };
      const va = makeVote(type, height, 0, blockId(i), ts);
      const vb = makeVote(type, height, 0, blockId(i + 128), ts);
      const before = sigs.length;
      const [sa, sb] = await Promise.all([run(a, [va, vb], i), run(b, [vb, va], i)]);
      if (sa > 0) signedBy.a++;
      if (sb > 0) signedBy.b++;
      if (sigs.length === before) unsignedRounds++;
      if ((i + 1) % 500 === 0) log(`${i + 1}/${opts.rounds} rounds: ${sigs.length} signatures, ${refused} refused, ${Math.round((Date.now() - started) / 1000)} s`);
    }

    // The independent check: each signature verifies, one sign-bytes value per position.
    let badSignatures = 0;
    let conflicts = 0;
    const signedAt = new Map<string, RecordedSig>();
    for (const s of sigs) {
      const pos = `${s.height}/${s.round}/${s.type}`;
      if (!ed25519Verify(vault.consensusPub, s.signBytes, s.signature)) {
        badSignatures++;
        if (details.length < 20) details.push(`round ${s.cycle}: a signature at ${pos} does not verify`);
      }
      const first = signedAt.get(pos);
      if (!first) signedAt.set(pos, s);
      else if (Buffer.compare(first.signBytes, s.signBytes) !== 0) {
        conflicts++;
        if (details.length < 20) details.push(`round ${s.cycle}: conflicting signatures at ${pos}`);
      }
    }
    return {
      rounds: opts.rounds,
      signatures: sigs.length,
      refused,
      conflicts,
      badSignatures,
      unsignedRounds,
      unexpected,
      signedBy,
      seconds: Math.round((Date.now() - started) / 100) / 10,
      details,
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await node.close();
    vault?.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--rounds');
  const rounds = i > 0 ? Number(process.argv[i + 1]) : 2000;
  const cluster = process.argv.includes('--postgres') ? await (await import('../test/helpers/postgres.js')).startPostgres() : null;
  let report: PrivvalRaceReport;
  try {
    report = await runPrivvalRace({ rounds, log: (s) => process.stderr.write(s + '\n'), ...(cluster ? { storeUrl: await cluster.createDatabase() } : {}) });
  } finally {
    await cluster?.dispose();
  }
  const { details, ...summary } = report;
  process.stdout.write(JSON.stringify(summary) + '\n');
  if (details.length) process.stderr.write(details.join('\n') + '\n');
  process.exitCode = report.conflicts === 0 && report.badSignatures === 0 && report.unexpected === 0 && report.unsignedRounds === 0 ? 0 : 1;
}
