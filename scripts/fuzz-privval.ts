/**
 * Fuzzes a live privval connector from the node's side. A raw test node
 * (test/helpers/cometbft-node.ts `RawTestNode`) accepts each connection the connector dials
 * and plays one case: garbage instead of the SecretConnection handshake, an oversized or
 * low-order handshake message, a forged AuthSig, bad MACs, impossible frame lengths, half
 * frames, oversized privval length prefixes, wrong protobuf tags, random bytes in sealed
 * frames, requests split at random points (across frames and across TCP writes), and
 * connections closed or gone silent mid-frame.
 *
 * Each case must end one of three ways, within a hang guard: the connector drops the
 * connection (`dropped`), answers with a well-formed response (`answered`; a refusal for any
 * sign request, since every seed names another chain), or waits for more bytes until we hang
 * up (`abandoned`, only where the input is incomplete). After every case the connector must
 * dial again. At the end a normal vote is signed and verified, and the consensus watermark
 * must be exactly what it was before the junk.
 *
 *   node --import tsx scripts/fuzz-privval.ts --seconds 600 [--seed N] [--read-timeout-ms 1000]
 *   node --import tsx scripts/fuzz-privval.ts --passes 1 --seed N     # the suite's run, replayed
 *
 * The test suite runs one pass over every case kind (test/frontends/privval/fuzz.test.ts).
 */
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { makeVault, type TestVault } from '../test/helpers/tmpvault.js';
import { RawTestNode, type RawSession, type RawSignerSocket } from '../test/helpers/cometbft-node.js';
import { PrivvalConnector } from '../src/frontends/privval/connector.js';
import { MAX_PRIVVAL_MESSAGE_BYTES, encodeMessage, frameMessage, type PrivvalMessage, type Vote } from '../src/frontends/privval/messages.js';
import { encodeEphemeralKeyMessage, SEALED_FRAME_SIZE } from '../src/frontends/privval/secret-connection.js';
import { voteSignBytes, type BlockId } from '../src/frontends/privval/sign-bytes.js';
import type { Watermark } from '../src/store/store.js';

export const FUZZ_CHAIN = 'fuzz-chain-1';
/** Every seed request names this chain, so no mutation of one can be signed. */
const OTHER_CHAIN = 'some-other-chain-9';
const DIALECT = 'v0.38' as const;

export type FuzzOutcome = 'dropped' | 'answered' | 'abandoned';

/**
 * Handshake-stage kinds (which make the connector back off, doubling) are spaced out by kinds
 * that follow a good handshake (which reset its backoff), so a pass in this order stays fast.
 */
export const CASE_KINDS = [
  'garbage-handshake',
  'bad-mac',
  'random-sealed-frame',
  'oversized-handshake-prefix',
  'truncated-sealed-frame-silent',
  'truncated-sealed-frame-close',
  'low-order-ephemeral',
  'bad-frame-length',
  'oversized-privval-prefix',
  'short-ephemeral-key',
  'random-plaintext',
  'mutated-request',
  'truncated-handshake',
  'wrong-tag',
  'split-request',
  'forged-authsig',
  'split-tcp-writes',
  'half-message-silent',
  'garbage-authsig-frame',
  'half-message-close',
  'response-from-node',
  'unknown-case',
  'celestia-raw-bytes',
] as const;
export type CaseKind = (typeof CASE_KINDS)[number];

const HANDSHAKE_KINDS = new Set<CaseKind>([
  'garbage-handshake',
  'oversized-handshake-prefix',
  'low-order-ephemeral',
  'short-ephemeral-key',
  'truncated-handshake',
  'forged-authsig',
  'garbage-authsig-frame',
]);

/** The outcomes each kind may have; anything else is a violation. */
const ALLOWED: Record<CaseKind, readonly FuzzOutcome[]> = {
  'garbage-handshake': ['dropped', 'abandoned'],
  'oversized-handshake-prefix': ['dropped'],
  'low-order-ephemeral': ['dropped'],
  'short-ephemeral-key': ['dropped'],
  'truncated-handshake': ['abandoned', 'dropped'],
  'forged-authsig': ['dropped'],
  'garbage-authsig-frame': ['dropped'],
  'bad-mac': ['dropped'],
  'random-sealed-frame': ['dropped'],
  'truncated-sealed-frame-silent': ['dropped'],
  'truncated-sealed-frame-close': ['abandoned', 'dropped'],
  'bad-frame-length': ['dropped'],
  'oversized-privval-prefix': ['dropped'],
  'random-plaintext': ['dropped', 'answered'],
  'mutated-request': ['dropped', 'answered'],
  'wrong-tag': ['dropped', 'answered'],
  'split-request': ['answered'],
  'split-tcp-writes': ['answered'],
  'half-message-silent': ['dropped'],
  'half-message-close': ['abandoned', 'dropped'],
  'response-from-node': ['dropped'],
  'unknown-case': ['dropped'],
  'celestia-raw-bytes': ['answered'],
};

export interface PrivvalFuzzReport {
  seed: number;
  cases: number;
  seconds: number;
  outcomes: Record<string, Partial<Record<FuzzOutcome, number>>>;
  /** Connections the connector dialled after the first. */
  reconnects: number;
  /** Cases that ended in a read timeout where an answer was expected (a loaded machine); not violations. */
  lateAnswers: number;
  watermarkUnchanged: boolean;
  finalVoteVerified: boolean;
  violations: number;
  details: string[];
}

/** mulberry32: a small seeded PRNG, so a failing run can be replayed with --seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function blockId(seed: number): BlockId {
  return { hash: new Uint8Array(32).fill(seed & 0xff), partSetHeader: { total: 1, hash: new Uint8Array(32).fill((seed + 1) & 0xff) } };
}

function vote(height: bigint, bid: BlockId): Vote {
  return {
    type: 1,
    height,
    round: 0,
    blockId: bid,
    timestamp: { seconds: 1_700_000_000n + height, nanos: 5 },
    validatorAddress: new Uint8Array(20).fill(7),
    validatorIndex: 0,
    signature: new Uint8Array(0),
    extension: new Uint8Array(0),
    extensionSignature: new Uint8Array(0),
  };
}

/** Requests a node sends, all for another chain (so none can move the watermark). */
function seedRequests(): PrivvalMessage[] {
  return [
    { kind: 'ping_request' },
    { kind: 'pub_key_request', chainId: OTHER_CHAIN },
    { kind: 'sign_vote_request', vote: vote(5n, blockId(3)), chainId: OTHER_CHAIN, skipExtensionSigning: false },
    { kind: 'sign_vote_request', vote: { ...vote(7n, blockId(4)), type: 2, extension: new Uint8Array(40).fill(9) }, chainId: OTHER_CHAIN, skipExtensionSigning: false },
    {
      kind: 'sign_proposal_request',
      proposal: { type: 32, height: 9n, round: 1, polRound: -1, blockId: blockId(5), timestamp: { seconds: 1_700_000_123n, nanos: 0 }, signature: new Uint8Array(0) },
      chainId: OTHER_CHAIN,
    },
  ];
}

const RESPONSE_TO: Partial<Record<PrivvalMessage['kind'], PrivvalMessage['kind']>> = {
  ping_request: 'ping_response',
  pub_key_request: 'pub_key_response',
  sign_vote_request: 'signed_vote_response',
  sign_proposal_request: 'signed_proposal_response',
  sign_raw_bytes_request: 'signed_raw_bytes_response',
};

function ed25519Verify(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pub]);
    return nodeVerify(null, msg, createPublicKey({ key: spki, format: 'der', type: 'spki' }), sig);
  } catch {
    return false;
  }
}

function uvarint(n: number): Uint8Array {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Uint8Array.from(out);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runPrivvalFuzz(opts: {
  /** Run these kinds once each, in order (the test suite); otherwise random kinds. */
  kinds?: readonly CaseKind[];
  seconds?: number;
  seed?: number;
  readTimeoutMs?: number;
  log?: (s: string) => void;
}): Promise<PrivvalFuzzReport> {
  const seed = opts.seed ?? (Date.now() & 0x7fffffff);
  const rand = prng(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
  const log = opts.log ?? (() => {});
  const readTimeoutMs = opts.readTimeoutMs ?? 1000;
  /** A case that neither ends nor gets answered within this is a hang. */
  const guard = readTimeoutMs + 10_000;
  /** How long an incomplete handshake is given before we hang up (its own timeout is 5 s). */
  const patience = 150;
  const seeds = seedRequests().map((m) => ({ m, framed: frameMessage(encodeMessage(m, DIALECT)) }));

  const outcomes: PrivvalFuzzReport['outcomes'] = {};
  const details: string[] = [];
  let violations = 0;
  let lateAnswers = 0;
  const violation = (s: string) => {
    violations++;
    if (details.length < 20) details.push(s);
    log(`VIOLATION: ${s}`);
  };
  const warnings: string[] = [];

  const node = await RawTestNode.listen();
  let v: TestVault | undefined;
  let connector: PrivvalConnector | undefined;
  const started = Date.now();
  let cases = 0;
  try {
    v = await makeVault();
    const consensus = await v.vault.createKey(v.ctx(), { label: 'consensus', algorithm: 'ed25519', exportable: false, purpose: 'consensus' });
    await v.vault.createKey(v.ctx(), { label: 'identity', algorithm: 'ed25519', exportable: false });
    connector = new PrivvalConnector(
      v.vault,
      { name: 'fuzz', chainId: FUZZ_CHAIN, address: node.address, consensusKey: 'consensus', identityKey: 'identity', dialect: DIALECT, readTimeoutMs },
      { info: () => {}, warn: (m, f) => warnings.push(`${m} ${JSON.stringify(f ?? {})}`) },
    );
    connector.start();

    /** A normal session that signs `height` and checks the signature. */
    const signNormally = async (height: bigint): Promise<boolean> => {
      const raw = await node.accept(guard);
      const s = await raw.handshake(node.signer);
      if (!s) throw new Error('the connector closed a normal handshake');
      const req = vote(height, blockId(Number(height)));
      await s.sendMessage({ kind: 'sign_vote_request', vote: req, chainId: FUZZ_CHAIN, skipExtensionSigning: false }, DIALECT);
      const r = await s.receive(DIALECT, guard);
      s.close();
      if (r?.kind !== 'signed_vote_response' || !r.vote || r.error) throw new Error(`a normal vote was not signed: ${JSON.stringify(r?.kind === 'signed_vote_response' ? r.error : r?.kind)}`);
      const signBytes = voteSignBytes(FUZZ_CHAIN, { type: 'prevote', height, round: 0, blockId: req.blockId, timestamp: r.vote.timestamp });
      return ed25519Verify(consensus.publicKey, signBytes, r.vote.signature);
    };

    if (!(await signNormally(100n))) violation('the first normal vote does not verify');
    const before: Watermark | null = await v.vault.getWatermark(v.ctx(), 'consensus', FUZZ_CHAIN);
    const acceptedBefore = node.accepted;

    /** Waits for the signer to drop the connection: 'dropped', or null if it is still open after `ms`. */
    const dropWithin = async (raw: RawSignerSocket, ms: number): Promise<FuzzOutcome | null> => ((await raw.waitForSignerClose(ms)) ? 'dropped' : null);
    /** After an incomplete input: give the connector `ms`, then hang up ourselves. */
    const dropOrAbandon = async (raw: RawSignerSocket, ms: number): Promise<FuzzOutcome> => {
      const o = await dropWithin(raw, ms);
      if (o) return o;
      raw.close();
      return 'abandoned';
    };
    /** After a complete (if mutated) input: an answer or a drop; the answer must be well-formed. */
    const answerOrDrop = async (s: RawSession, kind: CaseKind, expect?: PrivvalMessage['kind']): Promise<FuzzOutcome> => {
      const r = await s.receive(DIALECT, guard); // throws on anything that is not a privval message
      if (r === null) return 'dropped';
      if (expect && r.kind !== expect) violation(`${kind}: answered ${r.kind}, expected ${expect}`);
      if (!Object.values(RESPONSE_TO).includes(r.kind)) violation(`${kind}: the connector sent ${r.kind}`);
      if ((r.kind === 'signed_vote_response' && (r.vote || !r.error)) || (r.kind === 'signed_proposal_response' && (r.proposal || !r.error))) {
        violation(`${kind}: junk for another chain was signed`);
      }
      if ((r.kind === 'sign_bytes_response' || r.kind === 'signed_raw_bytes_response') && (r.signature.length > 0 || !r.error)) violation(`${kind}: bytes were signed`);
      if (r.kind === 'pub_key_response' && !r.error) violation(`${kind}: a public key was served for another chain`);
      return 'answered';
    };
    const mutate = (b: Uint8Array, n: number): Uint8Array => {
      const a = Array.from(b);
      for (let i = 0; i < n; i++) {
        const at = int(a.length + 1);
        const op = int(3);
        if (op === 0 && at < a.length) a[at] = int(256);
        else if (op === 1) a.splice(at, 0, int(256));
        else if (at < a.length) a.splice(at, 1);
      }
      return Uint8Array.from(a);
    };
    const pickSeed = () => seeds[int(seeds.length)]!;

    const play = async (kind: CaseKind, raw: RawSignerSocket): Promise<FuzzOutcome> => {
      switch (kind) {
        case 'garbage-handshake':
          await raw.write(bytes(1 + int(200)));
          return dropOrAbandon(raw, patience);
        case 'oversized-handshake-prefix':
          await raw.write(uvarint(1025 + int(2 ** 31)));
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        case 'low-order-ephemeral': {
          const key = new Uint8Array(32);
          if (rand() < 0.5) key[0] = 1; // u = 1 is of order 4; u = 0 is the identity
          await raw.write(encodeEphemeralKeyMessage(key));
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        }
        case 'short-ephemeral-key':
          await raw.write(Uint8Array.from([33, 0x0a, 31, ...bytes(31)]));
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        case 'truncated-handshake':
          await raw.write(encodeEphemeralKeyMessage(bytes(32)).subarray(0, 1 + int(33)));
          return dropOrAbandon(raw, patience);
        case 'forged-authsig': {
          const s = await raw.handshake(node.signer, {
            authSig: (real) => {
              const forged = real.slice();
              forged[forged.length - 1 - int(64)]! ^= 1 << int(8); // a bit of the signature
              return forged;
            },
          });
          return s === null ? 'dropped' : ((await dropWithin(raw, guard)) ?? 'abandoned');
        }
        case 'garbage-authsig-frame': {
          if (!(await raw.exchangeEphemeral())) return 'dropped';
          await raw.write(bytes(SEALED_FRAME_SIZE));
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        }
        default:
          break;
      }
      // Everything else starts after a correct handshake.
      const s = await raw.handshake(node.signer);
      if (!s) return 'dropped';
      switch (kind) {
        case 'bad-mac': {
          const sealed = s.sealFrame(pickSeed().framed.subarray(0, 1024));
          sealed[int(sealed.length)]! ^= 1 << int(8);
          await raw.write(sealed);
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        }
        case 'random-sealed-frame':
          await raw.write(bytes(SEALED_FRAME_SIZE));
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        case 'truncated-sealed-frame-silent':
          await raw.write(s.sealFrame(pickSeed().framed).subarray(0, 1 + int(SEALED_FRAME_SIZE - 1)));
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        case 'truncated-sealed-frame-close':
          await raw.write(s.sealFrame(pickSeed().framed).subarray(0, 1 + int(SEALED_FRAME_SIZE - 1)));
          return dropOrAbandon(raw, int(50));
        case 'bad-frame-length':
          await raw.write(s.sealFrame(pickSeed().framed, 1025 + int(2 ** 32 - 1025)));
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        case 'oversized-privval-prefix':
          await s.send(uvarint(MAX_PRIVVAL_MESSAGE_BYTES + 1 + int(2 ** 31)));
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        case 'random-plaintext':
          await s.send(bytes(1 + int(1024)));
          return answerOrDrop(s, kind);
        case 'mutated-request':
          await s.send(mutate(pickSeed().framed, 1 + int(6)));
          return answerOrDrop(s, kind);
        case 'wrong-tag': {
          // Rewrite one field tag: the message case, or a tag inside it.
          const { framed } = pickSeed();
          const b = framed.slice();
          const at = rand() < 0.5 ? 1 : 2 + int(Math.max(1, b.length - 2));
          b[Math.min(at, b.length - 1)] = (int(32) << 3) | int(8);
          await s.send(b);
          return answerOrDrop(s, kind);
        }
        case 'split-request': {
          const { m, framed } = pickSeed();
          const cuts = Array.from({ length: 1 + int(5) }, () => int(framed.length));
          await s.send(framed, cuts);
          return answerOrDrop(s, kind, RESPONSE_TO[m.kind]);
        }
        case 'split-tcp-writes': {
          // Sealed frames cut at random byte offsets into separate TCP writes, with pauses.
          const { m, framed } = pickSeed();
          const sealed: Uint8Array[] = [];
          for (let o = 0; o < framed.length; o += 1024) sealed.push(s.sealFrame(framed.subarray(o, o + 1024)));
          const all = new Uint8Array(Buffer.concat(sealed));
          const cuts = [...new Set([0, ...Array.from({ length: 1 + int(6) }, () => int(all.length)), all.length])].sort((a, b) => a - b);
          for (let i = 0; i + 1 < cuts.length; i++) {
            await raw.write(all.subarray(cuts[i], cuts[i + 1]));
            await sleep(int(15));
          }
          return answerOrDrop(s, kind, RESPONSE_TO[m.kind]);
        }
        case 'half-message-silent': {
          const { framed } = pickSeed();
          await s.send(framed.subarray(0, 1 + int(framed.length - 1)));
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        }
        case 'half-message-close': {
          const { framed } = pickSeed();
          await s.send(framed.subarray(0, 1 + int(framed.length - 1)));
          return dropOrAbandon(raw, int(50));
        }
        case 'response-from-node':
          await s.sendMessage(rand() < 0.5 ? { kind: 'ping_response' } : { kind: 'pub_key_response', pubKey: undefined, error: { code: 1, description: 'x' } }, DIALECT);
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        case 'unknown-case':
          // Message field 11..40 (no case in either dialect), length-delimited.
          await s.send(frameMessage(Uint8Array.from([((11 + int(30)) << 3) | 2, 2, 0x08, 0x01])));
          return (await dropWithin(raw, guard)) ?? 'abandoned';
        case 'celestia-raw-bytes':
          await s.sendMessage({ kind: 'sign_raw_bytes_request', chainId: FUZZ_CHAIN, rawBytes: bytes(1 + int(64)), uniqueId: 'fuzz' }, DIALECT);
          return answerOrDrop(s, kind, 'signed_raw_bytes_response');
        default:
          throw new Error(`unknown case kind ${kind}`);
      }
    };

    const deadline = started + (opts.seconds ?? 0) * 1000;
    let previous: CaseKind = 'bad-mac';
    for (let i = 0; opts.kinds ? i < opts.kinds.length : Date.now() < deadline; i++) {
      let kind = opts.kinds ? opts.kinds[i]! : CASE_KINDS[int(CASE_KINDS.length)]!;
      // Random runs: never two handshake-stage kinds in a row (see CASE_KINDS), for throughput.
      while (!opts.kinds && HANDSHAKE_KINDS.has(kind) && HANDSHAKE_KINDS.has(previous)) kind = CASE_KINDS[int(CASE_KINDS.length)]!;
      previous = kind;
      let raw: RawSignerSocket;
      try {
        raw = await node.accept(guard);
      } catch (e) {
        violation(`after ${cases} cases the connector did not reconnect: ${(e as Error).message}`);
        break;
      }
      const warned = warnings.length;
      let outcome: FuzzOutcome;
      try {
        outcome = await play(kind, raw);
      } catch (e) {
        violation(`${kind}: ${(e as Error).message}`);
        raw.close();
        cases++;
        continue;
      }
      if (!ALLOWED[kind].includes(outcome)) {
        // An expected answer that came too late on a loaded machine is the read timeout doing its job.
        const timedOut = outcome === 'dropped' && warnings.slice(warned).some((w) => w.includes('read_timeout') || w.includes('dropping the connection'));
        if (timedOut && ALLOWED[kind].includes('answered')) lateAnswers++;
        else violation(`${kind}: ${outcome}, expected ${ALLOWED[kind].join(' or ')}`);
      }
      (outcomes[kind] ??= {})[outcome] = (outcomes[kind]![outcome] ?? 0) + 1;
      raw.close();
      cases++;
      if (cases % 100 === 0) log(`${cases} cases, ${Math.round((Date.now() - started) / 1000)} s`);
    }

    const after = await v.vault.getWatermark(v.ctx(), 'consensus', FUZZ_CHAIN);
    const watermarkUnchanged = JSON.stringify(after, replacer) === JSON.stringify(before, replacer);
    if (!watermarkUnchanged) violation(`the watermark moved: ${JSON.stringify(before, replacer)} → ${JSON.stringify(after, replacer)}`);
    const finalVoteVerified = await signNormally(101n).catch((e: Error) => {
      violation(`the normal vote after the fuzzing failed: ${e.message}`);
      return false;
    });
    if (!finalVoteVerified) violation('the normal vote after the fuzzing does not verify');
    const wmFinal = await v.vault.getWatermark(v.ctx(), 'consensus', FUZZ_CHAIN);
    if (wmFinal?.height !== 101n) violation(`the watermark did not advance to 101 (${String(wmFinal?.height)})`);
    return {
      seed,
      cases,
      seconds: Math.round((Date.now() - started) / 100) / 10,
      outcomes,
      reconnects: node.accepted - acceptedBefore,
      lateAnswers,
      watermarkUnchanged,
      finalVoteVerified,
      violations,
      details,
    };
  } finally {
    await connector?.stop();
    await node.close();
    await v?.dispose();
  }
}

function replacer(_k: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  return value;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const seconds = Number(arg('--seconds') ?? 60);
  const seed = arg('--seed') === undefined ? undefined : Number(arg('--seed'));
  const readTimeoutMs = arg('--read-timeout-ms') === undefined ? undefined : Number(arg('--read-timeout-ms'));
  // --passes N: N passes over every kind in order (what the test suite runs), instead of --seconds.
  const passes = arg('--passes') === undefined ? undefined : Number(arg('--passes'));
  const kinds = passes === undefined ? undefined : Array.from({ length: passes }, () => [...CASE_KINDS]).flat();
  const report = await runPrivvalFuzz({ seconds, seed, readTimeoutMs, kinds, log: (s) => process.stderr.write(s + '\n') });
  const { details, ...summary } = report;
  process.stdout.write(JSON.stringify(summary) + '\n');
  if (details.length) process.stderr.write(details.join('\n') + '\n');
  process.exitCode = report.violations === 0 ? 0 : 1;
}

