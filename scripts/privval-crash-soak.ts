/**
 * Privval crash soak: one vault, one test CometBFT node (test/helpers/cometbft-node.ts). Per
 * cycle: start `custos serve` (configured with a [[privval]] validator pointing at the node),
 * wait for the signer to connect, stream sign requests at it — prevotes and precommits advancing
 * through heights and rounds, and after every restart re-sends of the last few requests and
 * conflicting requests (same height/round/type, different block) — then SIGKILL the process at
 * a random moment 50–400 ms in (mid-request is fine) and start it again.
 *
 * Every signature ever returned is recorded with its sign bytes. At the end an independent
 * check (node:crypto Ed25519 against the consensus public key from the API) requires that
 *   - every returned signature verifies over its sign bytes, and
 *   - no two signatures at the same chain/height/round/type cover different sign bytes
 *     (FilePV semantics: a timestamp-only change gets the stored signature back, so any two
 *     different sign bytes at one position is a double sign).
 *
 *   node --import tsx scripts/privval-crash-soak.ts --cycles 1000
 *
 * The test suite runs a short version (test/frontends/privval/crash-race.test.ts).
 */
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { custos, serve, type ServeProcess } from '../test/helpers/process.js';
import { TestNode, type SignerConn } from '../test/helpers/cometbft-node.js';
import type { PrivvalMessage, Vote } from '../src/frontends/privval/messages.js';
import { voteSignBytes, type BlockId, type Timestamp } from '../src/frontends/privval/sign-bytes.js';

export const CHAIN = 'test-1';
export const PASS = { CUSTOS_PASSPHRASE: 'privval crash soak passphrase' };

export interface PrivvalSoakReport {
  cycles: number;
  signatures: number;
  conflictsRefused: number;
  violations: number;
  /** Details of the first few violations (empty when there are none). */
  details: string[];
}

export interface RecordedSig {
  height: bigint;
  round: number;
  type: number;
  signBytes: Uint8Array;
  signature: Uint8Array;
  cycle: number;
}

// ---------------------------------------------------------------------------------------------
// Shared with the race test.

export function blockId(seed: number): BlockId {
  return { hash: new Uint8Array(32).fill(seed & 0xff), partSetHeader: { total: 1, hash: new Uint8Array(32).fill((seed + 1) & 0xff) } };
}

export function makeVote(type: number, height: bigint, round: number, bid: BlockId, ts: Timestamp): Vote {
  return {
    type,
    height,
    round,
    blockId: bid,
    timestamp: ts,
    validatorAddress: new Uint8Array(20).fill(7),
    validatorIndex: 0,
    signature: new Uint8Array(0),
    extension: new Uint8Array(0),
    extensionSignature: new Uint8Array(0),
  };
}

export function signRequest(v: Vote): PrivvalMessage {
  return { kind: 'sign_vote_request', vote: v, chainId: CHAIN, skipExtensionSigning: false };
}

/** The sign bytes the returned signature must cover: the request's vote with the response's timestamp. */
export function bytesFor(v: Vote, ts: Timestamp): Uint8Array {
  return voteSignBytes(CHAIN, { type: v.type === 1 ? 'prevote' : 'precommit', height: v.height, round: v.round, blockId: v.blockId.hash.length === 0 ? null : v.blockId, timestamp: ts });
}

export function ed25519Verify(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pub]);
    return nodeVerify(null, msg, createPublicKey({ key: spki, format: 'der', type: 'spki' }), sig);
  } catch {
    return false;
  }
}

/** The independent check: every signature verifies, and one sign-bytes value per chain/H/R/type. */
export function checkSignatures(pub: Uint8Array, sigs: RecordedSig[]): { violations: number; details: string[] } {
  let violations = 0;
  const details: string[] = [];
  const note = (s: string) => {
    violations++;
    if (details.length < 20) details.push(s);
  };
  const byPos = new Map<string, RecordedSig>();
  for (const s of sigs) {
    const pos = `${CHAIN}/${s.height}/${s.round}/${s.type}`;
    if (!ed25519Verify(pub, s.signBytes, s.signature)) note(`signature does not verify at ${pos} (cycle ${s.cycle})`);
    const first = byPos.get(pos);
    if (!first) byPos.set(pos, s);
    else if (Buffer.compare(first.signBytes, s.signBytes) !== 0) note(`double sign at ${pos}: cycles ${first.cycle} and ${s.cycle} signed different sign bytes`);
  }
  return { violations, details };
}

export interface Vault {
  dir: string;
  dataDir: string;
  /** With a PostgreSQL store: the data directory of a second node of the same vault (`init --join`). */
  secondNode?: string;
  token: string;
  /** The consensus public key as the API reported it at creation. */
  consensusPub: Uint8Array;
  cleanup(): void;
}

async function createKey(url: string, token: string, label: string, purpose = 'general'): Promise<Uint8Array> {
  const res = await fetch(`${url}/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ label, algorithm: 'ed25519', purpose }),
  });
  if (!res.ok) throw new Error(`creating key ${label}: HTTP ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { public_key: { raw: string } };
  return new Uint8Array(Buffer.from(body.public_key.raw, 'base64'));
}

/** init + keys "val"/"val-id" (through a serve without privval config) + custos.toml pointing at `nodeAddress`. */
/** `storeUrl`: the vault in that (empty) PostgreSQL database, with a second node joined to it. */
export async function makePrivvalVault(nodeAddress: string, prefix = 'custos-privval-soak-', storeUrl?: string): Promise<Vault> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const dataDir = join(dir, 'vault');
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  try {
    const init = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '10', ...(storeUrl ? ['--store-url', storeUrl] : [])], PASS);
    if (init.status !== 0) throw new Error(`init failed: ${init.stderr}`);
    const token = /custos_[A-Za-z0-9_-]{43}/.exec(init.stdout)?.[0];
    if (!token) throw new Error(`no admin token in the init output:\n${init.stdout}`);
    const s = await serve(['--data-dir', dataDir, '--log-level', 'warn'], PASS);
    let consensusPub: Uint8Array;
    try {
      consensusPub = await createKey(s.url, token, 'val', 'consensus');
      await createKey(s.url, token, 'val-id');
    } finally {
      await s.stop('SIGTERM');
    }
    const config = `${storeUrl ? `[store]\nurl = "${storeUrl}"\n\n` : ''}[[privval]]\nname = "hub"\nchain_id = "${CHAIN}"\naddress = "${nodeAddress}"\nkey = "val"\nidentity_key = "val-id"\n`;
    writeFileSync(join(dataDir, 'custos.toml'), config);
    if (!storeUrl) return { dir, dataDir, token, consensusPub, cleanup };
    const secondNode = join(dir, 'vault-b');
    const joined = custos(['init', '--join', '--data-dir', secondNode, '--store-url', storeUrl, '--anchor', join(dataDir, 'custos.anchor')]);
    if (joined.status !== 0) throw new Error(`init --join failed: ${joined.stderr}`);
    writeFileSync(join(secondNode, 'custos.toml'), config);
    return { dir, dataDir, secondNode, token, consensusPub, cleanup };
  } catch (e) {
    cleanup();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runPrivvalCrashCycles(opts: { cycles: number; log?: (s: string) => void }): Promise<PrivvalSoakReport> {
  const log = opts.log ?? (() => {});
  const node = await TestNode.listen();
  let vault: Vault | undefined;
  let current: ServeProcess | undefined;
  const sigs: RecordedSig[] = [];
  let conflictsRefused = 0;
  let otherErrors = 0;
  // The consensus walk: height, round, and the step within the round (0 = prevote, 1 = precommit).
  let height = 1n;
  let round = 0;
  let step = 0;
  let seq = 0;
  /** The last few requests sent (whether or not answered), for re-sends after a restart. */
  const recent: Vote[] = [];
  try {
    vault = await makePrivvalVault(node.address);
    const pub = vault.consensusPub;

    const send = async (conn: SignerConn, v: Vote, cycle: number, conflicting: boolean): Promise<void> => {
      const r = await conn.request(signRequest(v), 5000);
      if (r.kind !== 'signed_vote_response') throw new Error(`unexpected response ${r.kind}`);
      if (r.vote && !r.error) {
        sigs.push({ height: v.height, round: v.round, type: v.type, signBytes: bytesFor(v, r.vote.timestamp), signature: r.vote.signature, cycle });
      } else if (r.error?.code === 2) {
        if (conflicting) conflictsRefused++;
      } else {
        otherErrors++;
        log(`cycle ${cycle}: unexpected error ${JSON.stringify(r.error)}`);
      }
    };

    for (let cycle = 1; cycle <= opts.cycles; cycle++) {
      const s = await serve(['--data-dir', vault.dataDir, '--log-level', 'warn'], PASS);
      current = s;
      const conn = await node.waitForSigner(15_000);
      const killAfter = 50 + Math.random() * 350;
      let stop = false;
      const killed = sleep(killAfter).then(async () => {
        stop = true;
        await s.stop('SIGKILL');
      });
      const before = sigs.length;
      try {
        // After a restart: re-send the last few requests (the node's retry), and conflicts.
        for (const v of recent.slice(-3)) {
          if (stop) break;
          await send(conn, v, cycle, false);
          if (stop) break;
          const other = makeVote(v.type, v.height, v.round, blockId((v.blockId.hash[0] ?? 0) + 100), { seconds: v.timestamp.seconds + 1n, nanos: 0 });
          await send(conn, other, cycle, true);
        }
        // Then advance: prevote, precommit, sometimes a new round, else the next height.
        while (!stop) {
          const type: 1 | 2 = step === 0 ? 1 : 2;
          const seed = Number(height % 97n) + round;
          const bid = Math.random() < 0.1 ? { hash: new Uint8Array(0), partSetHeader: { total: 0, hash: new Uint8Array(0) } } : blockId(seed);
          const v = makeVote(type, height, round, bid, { seconds: 1_700_000_000n + BigInt(seq++), nanos: 0 });
          recent.push(v);
          if (recent.length > 8) recent.shift();
          if (step === 0) step = 1;
          else {
            step = 0;
            if (Math.random() < 0.25) round++;
            else {
              height++;
              round = 0;
            }
          }
          await send(conn, v, cycle, false);
          // Occasionally a conflicting request right away (same H/R/type, other block).
          if (!stop && Math.random() < 0.1) await send(conn, makeVote(v.type, v.height, v.round, blockId((v.blockId.hash[0] ?? 0) + 50), v.timestamp), cycle, true);
        }
      } catch (e) {
        // The process died under a request: expected once `stop` is set.
        if (!stop) {
          await killed.catch(() => {});
          throw new Error(`cycle ${cycle}: request failed before the kill: ${(e as Error).message}\n${s.output()}`);
        }
      }
      await killed;
      current = undefined;
      // Let the node see the dead connection before the next process connects.
      await Promise.race([conn.closed, sleep(2000)]);
      if (conn.isOpen) await conn.close();
      log(`cycle ${cycle}/${opts.cycles}: ${sigs.length - before} signatures (total ${sigs.length}), refused conflicts ${conflictsRefused}, at h${height} r${round}`);
    }

    const { violations, details } = checkSignatures(pub, sigs);
    for (const d of details) log(`VIOLATION: ${d}`);
    if (otherErrors > 0) log(`${otherErrors} unexpected non-double-sign errors`);
    return { cycles: opts.cycles, signatures: sigs.length, conflictsRefused, violations, details };
  } finally {
    if (current) await current.stop('SIGKILL').catch(() => {});
    await node.close();
    vault?.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--cycles');
  const cycles = i > 0 ? Number(process.argv[i + 1]) : 200;
  const report = await runPrivvalCrashCycles({ cycles, log: (s) => process.stderr.write(s + '\n') });
  const { details, ...summary } = report;
  process.stdout.write(JSON.stringify(summary) + '\n');
  if (details.length) process.stderr.write(details.join('\n') + '\n');
  process.exitCode = report.violations === 0 ? 0 : 1;
}
