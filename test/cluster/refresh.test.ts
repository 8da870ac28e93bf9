/**
 * Refresh failure cases, in process (test/helpers/cluster-inprocess.ts): an apply lost on two
 * members is resumed from any member; votes signed while a replacement runs are in the new
 * member's watermark; a share retired by one refresh is not taken by another; --resume and
 * --abort racing each other end the same way everywhere (the arbiter decides first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agree, makeNodes, type Node } from '../helpers/cluster-inprocess.js';
import { voteSignBytes } from '../../src/crypto/cometbft/sign-bytes.js';
import { onlyTimestampDiffers } from '../../src/crypto/cometbft/compare.js';
import { CustosError } from '../../src/core/errors.js';

const CHAIN = 'refresh-chain';
const bid = (n: number) => ({ hash: new Uint8Array(32).fill(n), partSetHeader: { total: 1, hash: new Uint8Array(32).fill(n + 1) } });
const prevote = (h: bigint, n: number) => voteSignBytes(CHAIN, { type: 'prevote', height: h, round: 0, blockId: bid(n), timestamp: { seconds: 1_700_000_000n, nanos: 0 } });
const vote = (n: Node, h: bigint, v: number) =>
  n.tv.vault.signConsensus({ requestId: `r-${n.name}-${h}-${v}-${Math.random()}`, principal: { id: 'privval:val', kind: 'privval' }, key: 'val', chainId: CHAIN, position: { height: h, round: 0, step: 2 }, signBytes: prevote(h, v), onlyTimestampDiffers, context: {} });
const dropApply = (n: Node) => (n.intercept = (_f, step) => (step === 'refresh/apply' ? Promise.reject(new CustosError('cosigners_unavailable', `${n.name} did not answer`, { tag: 'unreachable' })) : undefined));
/** A 3-of-n consensus key made by DKG from a, and every member's consent to refresh it. */
async function consensusKey(nodes: Record<string, Node>, names: string[]): Promise<void> {
  agree(nodes, 'a', { label: 'val', kind: 'keygen', threshold: 3, members: names, purpose: 'consensus' });
  await nodes.a!.cluster.keygen(nodes.a!.tv.ctx(), { label: 'val', algorithm: 'ed25519', threshold: 3, members: names, purpose: 'consensus' });
  agree(nodes, 'a', { label: 'val', kind: 'reshare', threshold: 3, members: names, purpose: 'consensus' });
}
const retired = async (n: Node) => (await n.tv.vault.getKey('val')).attributes['threshold.retiring'] !== undefined;

test('a refresh whose apply is lost on two of five members: they sign nothing meanwhile, and --resume from any member finishes it', { timeout: 60_000 }, async () => {
  const names = ['a', 'b', 'c', 'd', 'e'];
  const { nodes, close } = await makeNodes(names);
  try {
    const a = nodes.a!;
    await consensusKey(nodes, names);
    dropApply(nodes.d!);
    dropApply(nodes.e!);
    await assert.rejects(a.cluster.refresh(a.tv.ctx(), { label: 'val' }), /--resume/);
    nodes.d!.intercept = undefined;
    nodes.e!.intercept = undefined;
    assert.deepEqual(await Promise.all(names.map((n) => retired(nodes[n]!))), [false, false, false, true, true]);
    // The retired members sign nothing (their old share is out of use).
    await assert.rejects(vote(nodes.d!, 5n, 1), /being refreshed/);
    // Any member resumes it; applying again is harmless.
    await nodes.d!.cluster.refresh(nodes.d!.tv.ctx(), { label: 'val', resume: true });
    await a.cluster.refresh(a.tv.ctx(), { label: 'val', resume: true });
    assert.deepEqual(await Promise.all(names.map((n) => retired(nodes[n]!))), [false, false, false, false, false]);
    for (const [i, n] of names.entries()) await vote(nodes[n]!, BigInt(10 + i), 1);
  } finally {
    await close();
  }
});

test('a replacement: a vote signed while it runs is in the new member watermark, so no conflicting vote is signed after it', { timeout: 60_000 }, async () => {
  const { nodes, close } = await makeNodes(['a', 'b', 'c', 'd']);
  try {
    const { a, b, d } = nodes as Record<string, Node>;
    agree(nodes, 'a', { label: 'val', kind: 'keygen', threshold: 2, members: ['a', 'b', 'c'], purpose: 'consensus' });
    await a!.cluster.keygen(a!.tv.ctx(), { label: 'val', algorithm: 'ed25519', threshold: 2, members: ['a', 'b', 'c'], purpose: 'consensus' });
    // Between the refresh's start and a's finish, a's connector signs prevote(block 1) at 10/0/2 with c.
    let during = '';
    a!.intercept = (from, step, body) => {
      if (step !== 'refresh/finish') return undefined;
      a!.intercept = undefined;
      a!.reach.delete('b');
      return vote(a!, 10n, 1)
        .then(() => (during = 'signed'), (e: Error) => (during = e.message))
        .finally(() => a!.reach.add('b'))
        .then(() => a!.cluster.answer(from, 'fin', step as never, body));
    };
    agree(nodes, 'b', { label: 'val', kind: 'reshare', threshold: 2, members: ['a', 'b', 'd'], purpose: 'consensus' });
    const rep = await b!.cluster.refresh(b!.tv.ctx(), { label: 'val', replace: { old: 'c', new: 'd' } });
    assert.deepEqual(rep.members, ['a', 'b', 'd']);
    assert.equal(during, 'signed', 'a and c signed while the refresh ran');
    const wm = await d!.tv.vault.getWatermark(d!.tv.ctx(), 'val', CHAIN);
    assert.equal(wm?.height, 10n, "d took a's watermark after a retired");
    // b's connector, a conflicting prevote at 10/0/2: b and d refuse it (d's watermark), a too.
    await assert.rejects(vote(b!, 10n, 2), (e: Error & { code?: string }) => e.code === 'policy_denied');
  } finally {
    await close();
  }
});

test('a member cannot decide or apply a refresh on others by itself: the arbiter decides first, and each holder checks every participant before it applies', { timeout: 60_000 }, async () => {
  const names = ['a', 'b', 'c', 'd', 'e'];
  const { nodes, close } = await makeNodes(names);
  try {
    const a = nodes.a!;
    agree(nodes, 'a', { label: 'val', kind: 'keygen', threshold: 2, members: names });
    await a.cluster.keygen(a.tv.ctx(), { label: 'val', algorithm: 'ed25519', threshold: 2, members: names });
    agree(nodes, 'a', { label: 'val', kind: 'reshare', threshold: 2, members: names });
    // e never finishes: the refresh is aborted, but suppose the abort is lost everywhere.
    nodes.e!.intercept = (_f, step) => (step === 'refresh/finish' || step === 'refresh/decide' ? Promise.reject(new CustosError('cosigners_unavailable', 'e did not answer', { tag: 'unreachable' })) : undefined);
    for (const n of ['b', 'c', 'd']) nodes[n]!.intercept = (_f, step) => (step === 'refresh/decide' ? Promise.reject(new CustosError('cosigners_unavailable', 'lost', { tag: 'unreachable' })) : undefined);
    await assert.rejects(a.cluster.refresh(a.tv.ctx(), { label: 'val' }));
    for (const n of ['b', 'c', 'd']) nodes[n]!.intercept = undefined;
    const session = String((await nodes.b!.tv.vault.getKey('val')).attributes['threshold.retiring']);
    assert.ok(session.length > 10, 'b is retired by the refresh');
    // Member c, on its own, asks b to decide commit: b asks the arbiter (a, which started the
    // refresh and recorded abort) and refuses; asked to apply, b checks everyone and refuses.
    await assert.rejects(nodes.b!.cluster.answer('c', 'x', 'refresh/decide', { session, label: 'val', decision: 'commit' }), /a, which decides that refresh of val first, holds abort/);
    await assert.rejects(nodes.b!.cluster.answer('c', 'x', 'refresh/apply', { session, label: 'val' }), /Not every member agrees/);
    // d decided abort takes its old share back on its own word (an apply anywhere would need its
    // commit, which can never come); b, holding commit, can then never apply.
    await nodes.d!.cluster.answer('c', 'x', 'refresh/decide', { session, label: 'val', decision: 'abort' });
    assert.deepEqual(await nodes.d!.cluster.answer('c', 'x', 'refresh/unretire', { session, label: 'val' }), { unretired: true });
    await assert.rejects(nodes.b!.cluster.answer('c', 'x', 'refresh/apply', { session, label: 'val' }), /Not every member agrees/);
  } finally {
    await close();
  }
});

test('--resume and --abort run at the same moment from two members: the arbiter decides first, so every holder ends the same way and the key signs', { timeout: 120_000 }, async () => {
  const names = ['a', 'b', 'c', 'd', 'e'];
  // A seeded jitter (0–40 ms) on every decide and state step, as the review staged the race.
  let seed = 7;
  const jitter = () => new Promise((r) => setTimeout(r, ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % 41)));
  for (let trial = 0; trial < 6; trial++) {
    const { nodes, close } = await makeNodes(names);
    try {
      const a = nodes.a!;
      await consensusKey(nodes, names);
      // e finishes (retires) but its answer is held back: a's refresh waits, every holder retired, nothing decided.
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let finished!: () => void;
      const allRetired = new Promise<void>((r) => (finished = r));
      nodes.e!.intercept = (from, step, body) => {
        if (step !== 'refresh/finish') return undefined;
        return nodes.e!.cluster.answer(from, 'fin', step as never, body).then(async (r) => (finished(), await held, r));
      };
      const first = a.cluster.refresh(a.tv.ctx(), { label: 'val' }).then(() => 'refresh', (e: Error) => e.message);
      await allRetired;
      nodes.e!.intercept = undefined;
      assert.deepEqual(await Promise.all(names.map((n) => retired(nodes[n]!))), [true, true, true, true, true]);
      for (const n of names) nodes[n]!.intercept = (from, step, body) => (step === 'refresh/decide' || step === 'refresh/state' ? jitter().then(() => nodes[n]!.cluster.answer(from, 'j', step as never, body)) : undefined);
      const [r1, r2] = await Promise.all([
        nodes.b!.cluster.refresh(nodes.b!.tv.ctx(), { label: 'val', resume: true }).then(() => 'resumed', (e: Error) => e.message),
        nodes.c!.cluster.refresh(nodes.c!.tv.ctx(), { label: 'val', abort: true }).then(() => 'aborted', (e: Error) => e.message),
      ]);
      release();
      await first;
      for (const n of names) nodes[n]!.intercept = undefined;
      const decisions = new Set((await Promise.all(names.map((n) => nodes[n]!.tv.vault.getKey('val')))).map((k) => k.attributes['threshold.decision'] ?? (k.attributes['threshold.applied'] ? 'commit' : k.attributes['threshold.aborted'] ? 'abort' : 'none')));
      assert.ok(!(decisions.has('commit') && decisions.has('abort')), `trial ${trial}: a commit/abort mix (${[...decisions].join(', ')}; resume: ${r1}; abort: ${r2})`);
      // Whichever way it went, running that way again from any member ends it, and the key signs.
      const way = decisions.has('abort') ? { abort: true } : { resume: true };
      if (await retired(nodes.d!)) await nodes.d!.cluster.refresh(nodes.d!.tv.ctx(), { label: 'val', ...way });
      if (await retired(nodes.a!)) await a.cluster.refresh(a.tv.ctx(), { label: 'val', ...way });
      assert.deepEqual(await Promise.all(names.map((n) => retired(nodes[n]!))), [false, false, false, false, false], `trial ${trial}`);
      await vote(nodes.b!, 20n, 1);
    } finally {
      await close();
    }
  }
});

test('the arbiter lost for good after it decided: the participants stand in for it (commit if one holds commit, else abort); a made-up abort writes nothing', { timeout: 60_000 }, async () => {
  const names = ['a', 'b', 'c', 'd', 'e'];
  for (const variant of ['committed', 'undecided'] as const) {
    const { nodes, close } = await makeNodes(names);
    try {
      const a = nodes.a!;
      await consensusKey(nodes, names);
      // a (the arbiter) records commit; the decide reaches b and c ('committed') or no one, then a is lost.
      const dropped = variant === 'committed' ? ['d', 'e'] : ['b', 'c', 'd', 'e'];
      for (const n of dropped) nodes[n]!.intercept = (_f, step) => (step === 'refresh/decide' ? Promise.reject(new CustosError('cosigners_unavailable', `${n} did not answer`, { tag: 'unreachable' })) : undefined);
      await assert.rejects(a.cluster.refresh(a.tv.ctx(), { label: 'val' }));
      for (const n of dropped) nodes[n]!.intercept = undefined;
      // A node answering under a's name holds nothing of the key.
      await a.tv.vault.destroyKey(a.tv.ctx(), 'val');
      const c = nodes.c!;
      if (variant === 'committed') {
        await assert.rejects(c.cluster.refresh(c.tv.ctx(), { label: 'val', abort: true }), /decided commit/);
        await c.cluster.refresh(c.tv.ctx(), { label: 'val', resume: true }).catch(() => undefined); // a, holding nothing, cannot apply
      } else {
        await assert.rejects(c.cluster.refresh(c.tv.ctx(), { label: 'val', resume: true }), /it can only be aborted/);
        await c.cluster.refresh(c.tv.ctx(), { label: 'val', abort: true });
      }
      assert.deepEqual(await Promise.all(['b', 'c', 'd', 'e'].map((n) => retired(nodes[n]!))), [false, false, false, false], variant);
      await vote(nodes.b!, 30n, 1);
      // Any member's abort for a session no one started changes nothing (no write, no version bump).
      const before = (await nodes.d!.tv.vault.getKey('val')).version;
      assert.deepEqual(await nodes.d!.cluster.answer('b', 'x', 'refresh/decide', { session: 'made-up-session-0001', label: 'val', decision: 'abort' }), { decided: 'done' });
      assert.equal((await nodes.d!.tv.vault.getKey('val')).version, before);
    } finally {
      await close();
    }
  }
});
