/**
 * Threshold (2-of-3 FROST) consensus signing end to end, against what it is built from,
 * measured in the same run:
 *   - floors: fsync of a 256-byte write, a raw node:crypto Ed25519 signature, and the
 *     library's own 2-of-3 session in one process (two commits, two shares, the aggregate),
 *     with and without verifying each share;
 *   - end to end: three real `custos serve` processes on loopback (mutual TLS between them),
 *     a validator key split 2-of-3 from a priv_validator_key.json, a privval connector on one
 *     of them dialling a test CometBFT node in this process over SecretConnection; votes one
 *     at a time, p50/p99;
 *   - the same connector with a plain (single) consensus key on the same server.
 * Horcrux publishes p50 19 ms and p99 30 ms for its 2-of-3 signing: the aim is below it.
 *
 *   node --import tsx bench/threshold.ts [--votes N]
 *
 * One JSON document on stdout. Never exits non-zero because of a timing.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { ed25519_FROST } from '@noble/curves/ed25519.js';
import { fsyncFloor, pct, round, signFloor } from './lib/floors.js';
import { tempDir } from '../test/helpers/tmpvault.js';
import { agree, makeCluster } from '../test/helpers/cluster.js';
import { TestNode } from '../test/helpers/cometbft-node.js';
import { blockId, filePv, vote } from '../test/helpers/validator.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const VOTES = arg('--votes', 300);
const CHAIN = 'bench-threshold';
const HORCRUX = { p50_ms: 19, p99_ms: 30, source: 'Horcrux README (2-of-3, published figure)' };
const now = () => Number(process.hrtime.bigint()) / 1e6;
const stats = (xs: number[]) => ({ p50_ms: round(pct(xs, 50)), p99_ms: round(pct(xs, 99)), n: xs.length });

function librarySession(n: number, verifyShares: boolean): number[] {
  const F = ed25519_FROST;
  const ids = ['a', 'b', 'c'].map((x) => F.Identifier.derive(x));
  const deal = F.trustedDealer({ min: 2, max: 3 }, ids);
  const msg = randomBytes(120);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = now();
    const r = ids.slice(0, 2).map((id) => ({ id, c: F.commit(deal.secretShares[id]!) }));
    const list = r.map((x) => x.c.commitments);
    const shares = Object.fromEntries(r.map((x) => [x.id, F.signShare(deal.secretShares[x.id]!, deal.public, x.c.nonces, list, msg)]));
    if (verifyShares) for (const x of r) F.verifyShare(deal.public, list, msg, x.id, shares[x.id]!);
    F.aggregate(deal.public, list, msg, shares);
    out.push(now() - t);
  }
  return out;
}

async function main(): Promise<void> {
  process.stderr.write('[bench] floors\n');
  const fsync = fsyncFloor(VOTES);
  const sign = signFloor(VOTES);
  const lib = librarySession(Math.min(VOTES, 100), false);
  const libVerified = librarySession(Math.min(VOTES, 50), true);

  process.stderr.write('[bench] three servers\n');
  const { dir, cleanup } = tempDir('custos-bench-threshold-');
  const c = await makeCluster(dir, ['a', 'b', 'c']);
  const node = await TestNode.listen({ dialect: 'v0.38' });
  try {
    const a = c.node('a');
    const pv = filePv(CHAIN, vote(2, 1, 0, blockId(1)));
    await agree(c.nodes, 'a', { label: 'tval', kind: 'split', threshold: 2, members: ['a', 'b', 'c'], purpose: 'consensus' });
    await a.client.clusterSplit({ label: 'tval', format: 'cometbft', material: new TextEncoder().encode(pv.keyJson), threshold: 2, purpose: 'consensus' });
    await a.client.createKey({ label: 'single', algorithm: 'ed25519', purpose: 'consensus' });
    await a.client.createKey({ label: 'pv-id', algorithm: 'ed25519' });
    for (const [name, key] of [['thr', 'tval'], ['one', 'single']] as const) {
      appendFileSync(join(a.dataDir, 'custos.toml'), `\n[[privval]]\nname = "${name}"\nchain_id = "${CHAIN}-${name}"\naddress = "${node.address}"\nkey = "${key}"\nidentity_key = "pv-id"\ndialect = "v0.38"\nread_timeout_seconds = 3600\n`);
    }
    await a.client.reload();
    const conns = await node.waitForSigners(2, 15_000);
    const ping = async (conn: (typeof conns)[number]) => {
      const t = now();
      await conn.request({ kind: 'ping_request' });
      return now() - t;
    };
    const heights: Record<string, number> = {};
    const run = async (conn: (typeof conns)[number], chain: string, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const h = (heights[chain] = (heights[chain] ?? 10) + 1);
        // Prevotes for nil: one consensus signature each, no vote extension.
        const v = { ...vote(1, h, 0, blockId(1)), blockId: { hash: new Uint8Array(0), partSetHeader: { total: 0, hash: new Uint8Array(0) } } };
        const t = now();
        const r = await conn.request({ kind: 'sign_vote_request', vote: v, chainId: chain, skipExtensionSigning: false }, 30_000);
        out.push(now() - t);
        if (r.kind !== 'signed_vote_response' || r.error) throw new Error(`vote ${h}: ${JSON.stringify(r.kind === 'signed_vote_response' ? r.error : r.kind)}`);
      }
      return out;
    };
    // Which connection is which: ask each for its public key.
    const keyOf = async (conn: (typeof conns)[number]) => {
      const r = await conn.request({ kind: 'pub_key_request', chainId: `${CHAIN}-thr` });
      return r.kind === 'pub_key_response' && !r.error ? 'thr' : 'one';
    };
    const byName: Record<string, (typeof conns)[number]> = {};
    for (const conn of conns) byName[await keyOf(conn)] = conn;
    process.stderr.write(`[bench] ${VOTES} votes, threshold key\n`);
    await run(byName.thr!, `${CHAIN}-thr`, 10); // warm-up
    const thr = await run(byName.thr!, `${CHAIN}-thr`, VOTES).catch((e) => Promise.reject(e));
    process.stderr.write(`[bench] ${VOTES} votes, single key\n`);
    const one = await run(byName.one!, `${CHAIN}-one`, VOTES);
    const pings: number[] = [];
    for (let i = 0; i < 50; i++) pings.push(await ping(byName.thr!));
    const floor = pct(pings, 50) + pct(fsync, 50) + pct(lib, 50);
    out({
      bench: 'threshold',
      votes: VOTES,
      floors: { fsync: stats(fsync), node_sign: stats(sign), frost_2of3_in_process: stats(lib), frost_2of3_every_share_verified: stats(libVerified), privval_ping: stats(pings) },
      threshold_2of3_end_to_end: stats(thr),
      single_key_end_to_end: stats(one),
      horcrux_published: HORCRUX,
      ratios: {
        p50_vs_horcrux: round(pct(thr, 50) / HORCRUX.p50_ms),
        p99_vs_horcrux: round(pct(thr, 99) / HORCRUX.p99_ms),
        p50_vs_floor_ping_fsync_library_session: round(pct(thr, 50) / floor),
        p50_vs_single_key: round(pct(thr, 50) / pct(one, 50)),
      },
      aim: { p50_below_ms: HORCRUX.p50_ms, p99_below_ms: HORCRUX.p99_ms, met: pct(thr, 50) < HORCRUX.p50_ms && pct(thr, 99) < HORCRUX.p99_ms },
    });
  } finally {
    await node.close();
    await c.close();
    cleanup();
  }
}

function out(j: unknown): void {
  process.stdout.write(JSON.stringify(j, null, 2) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
