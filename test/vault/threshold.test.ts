/**
 * One cosigner's side of a threshold key (vault/threshold.ts), in process: what it checks
 * before its share leaves. The cluster tests run the same against real servers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { makeVault, type TestVault } from '../helpers/tmpvault.js';
import { frostOf, groupPublicKey, identifierOf, refreshCombine, refreshDeal, type NonceCommitments } from '../../src/crypto/frost.js';
import { voteExtensionSignBytes } from '../../src/crypto/cometbft/sign-bytes.js';
import { blockId, vote, voteBytes } from '../helpers/validator.js';
import type { Principal } from '../../src/core/types.js';

const PEER: Principal = { id: 'peer:b', kind: 'peer' };
const NAMES = ['a', 'b', 'c'];
const CHAIN = 'chain-t';
const code = (c: string) => (e: Error & { fullCode?: string; code?: string }) => (e.fullCode ?? e.code) === c || e.code === c;

/** Vault `a` holds its share of a dealer-made 2-of-3 key; the test plays cosigner `b`. */
async function setup(purpose?: string) {
  const v = await makeVault();
  const F = frostOf('ed25519');
  const members = Object.fromEntries(NAMES.map((n) => [n, identifierOf('ed25519', n)]));
  const dealt = F.trustedDealer({ min: 2, max: 3 }, Object.values(members));
  await v.vault.storeShare(v.ctx(), { label: 'tk', algorithm: 'ed25519', share: dealt.secretShares[members.a!]!.signingShare, pub: dealt.public, self: 'a', members, origin: 'dealer', ...(purpose ? { purpose } : {}) });
  const ctx = () => ({ principal: PEER, requestId: randomBytes(8).toString('hex') });
  const publicKey = Buffer.from(groupPublicKey('ed25519', dealt.public)).toString('hex');
  /** One round: `a` commits, `b` (the test) commits, `a` is asked for its share. */
  const round = async (message: Uint8Array, kind: 'raw' | 'consensus' | 'vote_extension' = 'raw', tamper?: (list: NonceCommitments[]) => NonceCommitments[]) => {
    const mine = await v.vault.thresholdCommit(ctx(), 'tk', publicKey);
    const b = F.commit(dealt.secretShares[members.b!]!);
    const list = tamper ? tamper([mine.commitments, b.commitments]) : [mine.commitments, b.commitments];
    const ask = () => v.vault.cosign(ctx(), { label: 'tk', publicKey, round: mine.round, message, commitments: list, kind, context: {} });
    return { ask, finish: async () => {
      const r = await ask();
      if (!('share' in r)) return r;
      const shares = { [members.a!]: r.share, [members.b!]: F.signShare(dealt.secretShares[members.b!]!, dealt.public, b.nonces, list, message) };
      return { signature: F.aggregate(dealt.public, list, message, shares) };
    } };
  };
  return { v, F, dealt, members, round };
}

test('a share is stored only if it matches the key set; a cosigner signs a round once, with its own commitments, for a threshold key only', async () => {
  const { v, F, dealt, members, round } = await setup();
  try {
    const wrong = F.trustedDealer({ min: 2, max: 3 }, Object.values(members));
    await assert.rejects(v.vault.storeShare(v.ctx(), { label: 'x', algorithm: 'ed25519', share: wrong.secretShares[members.a!]!.signingShare, pub: dealt.public, self: 'a', members, origin: 'dealer' }), code('invalid_key_material'));
    await assert.rejects(v.vault.storeShare(v.ctx(), { label: 'y', algorithm: 'ed25519', share: wrong.secretShares[members.a!]!.signingShare, pub: wrong.public, self: 'a', members: { ...members, d: identifierOf('ed25519', 'd') }, origin: 'dealer' }), code('bad_request'));
    // One record per key set: a second copy would be a second watermark for a coordinator to pick.
    await assert.rejects(v.vault.storeShare(v.ctx(), { label: 'y', algorithm: 'ed25519', share: dealt.secretShares[members.a!]!.signingShare, pub: dealt.public, self: 'a', members, origin: 'dealer' }), code('conflict'));
    // A consensus key needs a threshold above half its members.
    const four = Object.fromEntries(['a', 'b', 'c', 'd'].map((n) => [n, identifierOf('ed25519', n)]));
    const half = F.trustedDealer({ min: 2, max: 4 }, Object.values(four));
    await assert.rejects(v.vault.storeShare(v.ctx(), { label: 'half', algorithm: 'ed25519', share: half.secretShares[four.a!]!.signingShare, pub: half.public, self: 'a', members: four, origin: 'dealer', purpose: 'consensus' }), /above half/);

    const msg = randomBytes(40);
    const r = await round(msg);
    const out = await r.finish();
    assert.ok('signature' in out && (await v.vault.verify(v.ctx(), 'tk', { kind: 'message', bytes: msg }, out.signature, {})).valid);
    await assert.rejects(r.ask(), code('threshold_round'), 'the same round again: its nonces are gone');

    // Commitments not as this cosigner issued them, or a list without it, or too short.
    const swap = (l: NonceCommitments[]) => [{ ...l[0]!, hiding: l[1]!.hiding }, l[1]!];
    await assert.rejects((await round(msg, 'raw', swap)).ask(), code('bad_request'));
    await assert.rejects((await round(msg, 'raw', (l) => [l[1]!])).ask(), code('bad_request'));
    await assert.rejects((await round(msg, 'raw', (l) => [l[0]!, { ...l[1]!, identifier: identifierOf('ed25519', 'zz') }])).ask(), code('bad_request'));

    // A plain key is no threshold key.
    await v.vault.createKey(v.ctx(), { label: 'plain', algorithm: 'ed25519', exportable: false });
    await assert.rejects(v.vault.thresholdCommit({ principal: PEER, requestId: 'x' }, 'plain', '00'), code('bad_request'));
    // Another key set under the label, or a peer outside the key set: refused.
    await assert.rejects(v.vault.thresholdCommit({ principal: PEER, requestId: 'x' }, 'tk', '00'.repeat(32)), code('conflict'));
    await assert.rejects(v.vault.thresholdCommit({ principal: { id: 'peer:zz', kind: 'peer' }, requestId: 'x' }, 'tk', Buffer.from(groupPublicKey('ed25519', dealt.public)).toString('hex')), code('forbidden'));
    // Each share is on the record under the coordinator that asked.
    const tail = await v.vault.auditTail(200);
    assert.ok(tail.some((e) => e.principal === 'peer:b' && e.operation === 'sign' && e.outcome === 'ok' && typeof e.details.share_sha256 === 'string'));
  } finally {
    await v.dispose();
  }
});

test('a consensus share: the cosigner decodes the vote and holds it to its own watermark; conflicts, regressions and disguised votes are refused', async () => {
  const { v, round } = await setup('consensus');
  try {
    await assert.rejects((await round(randomBytes(40), 'raw')).ask(), code('key_purpose'), 'raw bytes from a consensus key');
    const p = vote(1, 10, 0, blockId(1));
    const out = await (await round(voteBytes(CHAIN, p), 'consensus')).finish();
    assert.ok('signature' in out);
    const wm = await v.vault.getWatermark(v.ctx(), 'tk', CHAIN);
    assert.equal(wm?.height, 10n);
    assert.equal(wm?.signature, null, 'a share is no signature to hand back');
    // The same vote again: another share is fine (same bytes).
    assert.ok('signature' in (await (await round(voteBytes(CHAIN, p), 'consensus')).finish()));
    // A conflicting vote at that position.
    await assert.rejects((await round(voteBytes(CHAIN, vote(1, 10, 0, blockId(2))), 'consensus')).ask(), code('policy_denied:double_sign'));
    // The same vote a timestamp apart: the bytes the cosigner holds come back instead of a share.
    const later = voteBytes(CHAIN, { ...p, timestamp: { seconds: p.timestamp.seconds + 9n, nanos: 0 } });
    const held = await (await round(later, 'consensus')).ask();
    assert.ok('signBytes' in held && Buffer.from(held.signBytes).equals(Buffer.from(voteBytes(CHAIN, p))));
    // Below the watermark.
    await assert.rejects((await round(voteBytes(CHAIN, vote(1, 9, 0, blockId(1))), 'consensus')).ask(), code('policy_denied:double_sign'));
    // A vote presented as raw bytes or as a vote extension never passes.
    await assert.rejects((await round(voteBytes(CHAIN, vote(1, 11, 0, blockId(2))), 'vote_extension')).ask(), code('bad_request'));
    // An extension only with the precommit for a block this cosigner signed at that position.
    const ext = (h: bigint) => voteExtensionSignBytes(CHAIN, { height: h, round: 0, extension: new Uint8Array([7]) });
    await assert.rejects((await round(ext(10n), 'vote_extension')).ask(), code('policy_denied:double_sign'), 'height 10 holds a prevote');
    assert.ok('signature' in (await (await round(voteBytes(CHAIN, vote(2, 12, 0, blockId(3))), 'consensus')).finish()));
    assert.ok('signature' in (await (await round(ext(12n), 'vote_extension')).finish()));
    assert.equal((await v.vault.getWatermark(v.ctx(), 'tk', CHAIN))?.height, 12n, 'an extension moves no watermark');
  } finally {
    await v.dispose();
  }
});

test("a cosigner's own policy decides its share", async () => {
  const { v, round } = await setup();
  try {
    await v.vault.uploadPolicy(v.ctx(), JSON.stringify({ id: 'cap', applies_to: { keys: ['tk'] }, rules: [{ id: 'burst', type: 'rate_limit', limit: 1, window: '1h', per: 'key' }] }), 'json');
    assert.ok('signature' in (await (await round(randomBytes(10))).finish()));
    await assert.rejects((await round(randomBytes(10))).ask(), (e: Error & { code?: string }) => e.code === 'policy_denied');
  } finally {
    await v.dispose();
  }
});

test('a share retired by a refresh signs nothing until the new one is applied; an aborted refresh gives it back; a new member starts from its watermarks', async () => {
  const { v, F, dealt, members, round } = await setup('consensus');
  try {
    const key = await v.vault.getKey('tk');
    // A share of another key set is refused as the new one.
    const stranger = F.trustedDealer({ min: 2, max: 3 }, Object.values(members));
    await assert.rejects(v.vault.retireShare(v.ctx(), 'tk', 'sess-0', key.version, { share: stranger.secretShares[members.a!]!.signingShare, pub: stranger.public, members, arbiter: 'a' }), /keeps the public key/);
    // The real thing: a, b and c re-deal the same key.
    const ids = Object.values(members);
    const deals = NAMES.map((n) => ({ dealer: n, ...refreshDeal('ed25519', dealt.secretShares[members[n]!]!.signingShare, members[n]!, ids, ids, 2) }));
    const mine = refreshCombine('ed25519', members.a!, ids, 2, deals.map((d) => ({ dealer: d.dealer, commitments: d.commitments, value: d.values[members.a!]! })), groupPublicKey('ed25519', dealt.public));
    const other = { public: mine.pub, secretShares: { [members.a!]: { signingShare: mine.share } } };
    await v.vault.retireShare(v.ctx(), 'tk', 'sess-1', key.version, { share: other.secretShares[members.a!]!.signingShare, pub: other.public, members, arbiter: 'a' });
    await assert.rejects(v.vault.thresholdCommit({ principal: PEER, requestId: 'r' }, 'tk', Buffer.from(key.publicKey).toString('hex')), code('threshold_round:refreshing'));
    // Only the refresh that retired it applies; another refresh cannot retire it again.
    await assert.rejects(v.vault.applyRetired(v.ctx(), 'tk', 'other'), code('conflict'));
    await assert.rejects(v.vault.retireShare(v.ctx(), 'tk', 'sess-2', (await v.vault.getKey('tk')).version, { share: other.secretShares[members.a!]!.signingShare, pub: other.public, members, arbiter: 'a' }), code('conflict'));
    // Given back only once decided abort; a decision is never changed.
    await assert.rejects(v.vault.unretireShare(v.ctx(), 'tk', 'sess-1'), code('conflict'));
    await v.vault.decideRefresh(v.ctx(), 'tk', 'sess-1', 'abort');
    await assert.rejects(v.vault.decideRefresh(v.ctx(), 'tk', 'sess-1', 'commit'), code('conflict'));
    assert.equal(await v.vault.unretireShare(v.ctx(), 'tk', 'sess-1'), true);
    assert.ok('signature' in (await (await round(voteBytes(CHAIN, vote(1, 5, 0, blockId(1))), 'consensus')).finish()), 'the old share signs again');
    // An abort that arrives before this node finished is recorded: a late finish cannot retire it.
    // (Only for a refresh this node takes part in: an abort for a session it does not know writes nothing.)
    const unchanged = (await v.vault.getKey('tk')).version;
    assert.equal(await v.vault.decideRefresh(v.ctx(), 'tk', 'sess-unknown', 'abort'), 'done');
    assert.equal((await v.vault.getKey('tk')).version, unchanged);
    assert.equal(await v.vault.decideRefresh(v.ctx(), 'tk', 'sess-late', 'abort', true), 'done');
    await assert.rejects(v.vault.retireShare(v.ctx(), 'tk', 'sess-late', (await v.vault.getKey('tk')).version, { share: other.secretShares[members.a!]!.signingShare, pub: other.public, members, arbiter: 'a' }), /aborted here/);
    // Retired again and applied (twice: the second is a no-op); the new share is in use.
    await v.vault.retireShare(v.ctx(), 'tk', 'sess-3', (await v.vault.getKey('tk')).version, { share: other.secretShares[members.a!]!.signingShare, pub: other.public, members, arbiter: 'a' });
    await assert.rejects(v.vault.applyRetired(v.ctx(), 'tk', 'sess-3'), code('conflict'), 'not decided yet');
    await v.vault.decideRefresh(v.ctx(), 'tk', 'sess-3', 'commit');
    const applied = await v.vault.applyRetired(v.ctx(), 'tk', 'sess-3');
    assert.equal((await v.vault.applyRetired(v.ctx(), 'tk', 'sess-3')).version, applied.version);
    assert.equal(applied.attributes['threshold.applied'], 'sess-3');

    // A member joining with watermarks has them from its first moment.
    const w = await makeVault();
    try {
      await w.vault.storeShare(w.ctx(), { label: 'tk', algorithm: 'ed25519', share: dealt.secretShares[members.c!]!.signingShare, pub: dealt.public, self: 'c', members, origin: 'refresh', purpose: 'consensus', watermarks: [{ chainId: CHAIN, height: 77n, round: 1, step: 3 }] });
      const wm = await w.vault.getWatermark(w.ctx(), 'tk', CHAIN);
      assert.deepEqual([wm?.height, wm?.round, wm?.step], [77n, 1, 3]);
    } finally {
      await w.dispose();
    }
  } finally {
    await v.dispose();
  }
});
