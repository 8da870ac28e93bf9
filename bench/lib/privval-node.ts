/**
 * A CometBFT node's side of the privval link, in a process of its own, for bench/privval.ts:
 * the repository's test node (test/helpers/cometbft-node.ts) listening on 127.0.0.1 with a
 * real SecretConnection. Once a signer has dialled in it measures, one request at a time:
 *   - ping round trips (the floor of the loopback link and the connection's framing);
 *   - prevote/precommit sign requests at rising heights, as a validator sends them.
 * Prints `address tcp://...` when listening, then one JSON line with the latencies.
 */
import { TestNode } from '../../test/helpers/cometbft-node.js';
import { BENCH_BLOCK_ID, benchVoteTimestamp } from './votes.js';

const votes = Number(process.argv[2] ?? 1000);
const chainId = process.argv[3] ?? 'bench-e2e';
// v1, with vote extensions off (skip_extension_signing), as most chains run: one signature a vote.
const node = await TestNode.listen({ dialect: 'v1' });
process.stdout.write(`address ${node.address}\n`);
await node.waitForSigner(30_000);

const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;
const pings: number[] = [];
for (let i = 0; i < 200 + votes; i++) {
  const t = process.hrtime.bigint();
  const r = await node.request({ kind: 'ping_request' });
  if (r.kind !== 'ping_response') throw new Error(`unexpected answer to a ping: ${r.kind}`);
  if (i >= 200) pings.push(ms(t));
}
const signs: number[] = [];
for (let i = 0; i < 50 + votes; i++) {
  const height = BigInt(1 + Math.floor(i / 2));
  const type = i % 2 === 0 ? 1 : 2;
  const vote = { type, height, round: 0, blockId: BENCH_BLOCK_ID, timestamp: benchVoteTimestamp(height), validatorAddress: new Uint8Array(20).fill(3), validatorIndex: 0, signature: new Uint8Array(0), extension: new Uint8Array(0), extensionSignature: new Uint8Array(0) };
  const t = process.hrtime.bigint();
  const r = await node.request({ kind: 'sign_vote_request', vote, chainId, skipExtensionSigning: true } as never, 10_000);
  const took = ms(t);
  if (r.kind !== 'signed_vote_response' || r.error) throw new Error(`the signer refused a vote: ${JSON.stringify(r.kind === 'signed_vote_response' ? r.error : r.kind)}`);
  if (i >= 50) signs.push(took);
}
process.stdout.write(JSON.stringify({ pings, signs }) + '\n');
await node.close();
