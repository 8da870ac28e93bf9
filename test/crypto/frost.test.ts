/**
 * FROST as Custos uses it (crypto/frost.ts over @noble/curves), checked against published
 * vectors, plus the codecs and checks around it.
 *
 * Vectors (values copied from the published files, each with its provenance):
 * - RFC 9591 Appendix E.1, FROST(Ed25519, SHA-512): https://www.rfc-editor.org/rfc/rfc9591.html#appendix-E.1
 *   (JSON in github.com/cfrg/draft-irtf-cfrg-frost, poc/frost-ed25519-sha512.json, tag draft-irtf-cfrg-frost-15).
 * - The Taproot (BIP340) suite, which no RFC covers: github.com/ZcashFoundation/frost,
 *   frost-secp256k1-tr/tests/helpers/vectors.json at commit 0966bd1529aa062ad3b621af99e277f976b1c0f0.
 * Round one takes the published nonce randomness through the rng `commit` draws from (hiding
 * first, then binding); the key set is rebuilt from the published secret and coefficient.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, verify as nodeVerify, randomBytes } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import fc from 'fast-check';
import { bytesToHex, hexToBytes } from '../../src/core/bytes.js';
import { checkDealerCommitments, decodeCommitments, decodePublic, encodeCommitments, encodePublic, frostOf, groupPublicKey, identifierOf, refreshCombine, refreshDeal, splitScalar, type ThresholdAlgorithm } from '../../src/crypto/frost.js';
import { publicKeyFromSecret } from '../../src/crypto/algorithms.js';
import { decodeVoteExtensionSignBytes } from '../../src/crypto/cometbft/sign-bytes-decode.js';
import { voteExtensionSignBytes, voteSignBytes } from '../../src/crypto/cometbft/sign-bytes.js';

interface Vector {
  alg: ThresholdAlgorithm;
  groupPublicKey: string;
  groupSecret: string;
  coefficient: string;
  shares: string[];
  message: string;
  round1: Array<{ id: number; hidingRandom: string; bindingRandom: string; hiding: string; binding: string }>;
  sigShares: Record<number, string>;
  sig: string;
}

const VECTORS: Record<string, Vector> = {
  'RFC 9591 E.1 FROST(Ed25519, SHA-512)': {
    alg: 'ed25519',
    groupPublicKey: '15d21ccd7ee42959562fc8aa63224c8851fb3ec85a3faf66040d380fb9738673',
    groupSecret: '7b1c33d3f5291d85de664833beb1ad469f7fb6025a0ec78b3a790c6e13a98304',
    coefficient: '178199860edd8c62f5212ee91eff1295d0d670ab4ed4506866bae57e7030b204',
    shares: ['929dcc590407aae7d388761cddb0c0db6f5627aea8e217f4a033f2ec83d93509', 'a91e66e012e4364ac9aaa405fcafd370402d9859f7b6685c07eed76bf409e80d', 'd3cb090a075eb154e82fdb4b3cb507f110040905468bb9c46da8bdea643a9a02'],
    message: '74657374',
    round1: [
      { id: 1, hidingRandom: '0fd2e39e111cdc266f6c0f4d0fd45c947761f1f5d3cb583dfcb9bbaf8d4c9fec', bindingRandom: '69cd85f631d5f7f2721ed5e40519b1366f340a87c2f6856363dbdcda348a7501', hiding: 'b5aa8ab305882a6fc69cbee9327e5a45e54c08af61ae77cb8207be3d2ce13de3', binding: '67e98ab55aa310c3120418e5050c9cf76cf387cb20ac9e4b6fdb6f82a469f932' },
      { id: 3, hidingRandom: '86d64a260059e495d0fb4fcc17ea3da7452391baa494d4b00321098ed2a0062f', bindingRandom: '13e6b25afb2eba51716a9a7d44130c0dbae0004a9ef8d7b5550c8a0e07c61775', hiding: 'cfbdb165bd8aad6eb79deb8d287bcc0ab6658ae57fdcc98ed12c0669e90aec91', binding: '7487bc41a6e712eea2f2af24681b58b1cf1da278ea11fe4e8b78398965f13552' },
    ],
    sigShares: { 1: '001719ab5a53ee1a12095cd088fd149702c0720ce5fd2f29dbecf24b7281b603', 3: 'bd86125de990acc5e1f13781d8e32c03a9bbd4c53539bbc106058bfd14326007' },
    sig: '36282629c383bb820a88b71cae937d41f2f2adfcc3d02e55507e2fb9e2dd3cbebd9d2b0844e49ae0f3fa935161e1419aab7b47d21a37ebeae1f17d4987b3160b',
  },
  'ZF frost-secp256k1-tr (BIP340)': {
    alg: 'secp256k1-bip340',
    groupPublicKey: '02f37c34b66ced1fb51c34a90bdae006901f10625cc06c4f64663b0eae87d87b4f',
    groupSecret: '0d004150d27c3bf2a42f312683d35fac7394b1e9e318249c1bfe7f0795a83114',
    coefficient: 'fbf85eadae3058ea14f19148bb72b45e4399c0b16028acaf0395c9b03c823579',
    shares: ['08f89ffe80ac94dcb920c26f3f46140bfc7f95b493f8310f5fc1ea2b01f4254c', '04f0feac2edcedc6ce1253b7fab8c86b856a797f44d83d82a385554e6e401984', '00e95d59dd0d46b0e303e500b62b7ccb0e555d49f5b849f5e748c071da8c0dbc'],
    message: '74657374',
    round1: [
      { id: 1, hidingRandom: 'bda8e748e599187762cff956f03dc6ea13fc8e04491a0427b7e6e78600f41c52', bindingRandom: '2ca682429bf05df435b9927b8edb1d748278f3e42fa11ef358e49bbf4a1b780d', hiding: '024e34ab3a7ad6b4563dbfe97e9f1206b3378cceb2502491ed0fb709765e1e5ba8', binding: '03d4b1f3a61dc67e64dfb4abfccabb712f1f6914a6ec9b67749d171370453192cb' },
      { id: 3, hidingRandom: '70818dd5170672c4a4285fd593d4f222417f941f3118e1244955e7a1098a35d8', bindingRandom: '74ca2da071ed4a2a6cad5087d6758b48a558ab5861c61117fee05757e4b1309e', hiding: '02d768658a1b94225645401a1512b803657770c7a21bf9ccccccfa09930a44951b', binding: '034570a4e5217ee8770a28401185f50b4fce4d3f3933a3af9df7ab39b42381d0eb' },
    ],
    sigShares: { 1: '2ffc305d1694fd84108b84d98306a1af807c6ad9bc3a2d8e448a09643202a15b', 3: 'a8c392566ea29e852b4080a028bf5547166c87e703e4fb7136d4ebef65f99b3f' },
    sig: '0c776a9516a77808b70a31e74f1464814a6fcf897fb3a6bd84c7a9a9a7a5bcb8d8bfc2b385379c093bcc0579abc5f6f696e8f2c0c01f28ff7b5ef55397fc3c9a',
  },
};

const ED_SPKI = Buffer.from('302a300506032b6570032100', 'hex');

for (const [name, v] of Object.entries(VECTORS)) {
  test(`${name}: commitments, signature shares and the signature match the published vector, and verify as plain ${v.alg === 'ed25519' ? 'RFC 8032 (node:crypto)' : 'BIP340'} signatures`, () => {
    const F = frostOf(v.alg);
    const { Fn } = F.utils;
    const Point = v.alg === 'ed25519' ? ed25519.Point : secp256k1.Point;
    const signers = { min: 2, max: 3 };
    const poly = F.utils.generateSecretPolynomial(signers, hexToBytes(v.groupSecret), [Fn.fromBytes(hexToBytes(v.coefficient))]);
    const ids = [1, 2, 3].map((n) => F.Identifier.fromNumber(n));
    const pubIn = { signers, commitments: poly.commitment, verifyingShares: Object.fromEntries(v.shares.map((s, i) => [ids[i]!, Point.BASE.multiply(Fn.fromBytes(hexToBytes(s))).toBytes()])) };
    // Through Custos's own codec, as a key's attributes store it.
    const pub = decodePublic(v.alg, encodePublic(pubIn as never));
    assert.equal(bytesToHex(pub.commitments[0]!), v.groupPublicKey);
    const secret = (n: number) => ({ identifier: ids[n - 1]!, signingShare: hexToBytes(v.shares[n - 1]!) });
    for (const n of [1, 2, 3]) F.validateSecret(secret(n), pub);
    const msg = hexToBytes(v.message);
    const round = v.round1.map((o) => {
      const draws = [hexToBytes(o.hidingRandom), hexToBytes(o.bindingRandom)];
      const c = F.commit(secret(o.id), () => draws.shift()! as never);
      assert.equal(bytesToHex(c.commitments.hiding), o.hiding, `P${o.id} hiding commitment`);
      assert.equal(bytesToHex(c.commitments.binding), o.binding, `P${o.id} binding commitment`);
      return { id: o.id, c };
    });
    // Commitments as they travel between cosigners.
    const list = round.map((r) => decodeCommitments(v.alg, encodeCommitments(r.c.commitments)));
    const shares: Record<string, Uint8Array> = {};
    for (const r of round) {
      const share = F.signShare(secret(r.id), pub, r.c.nonces, list, msg);
      assert.equal(bytesToHex(share), v.sigShares[r.id], `P${r.id} signature share`);
      assert.ok(F.verifyShare(pub, list, msg, ids[r.id - 1]!, share));
      shares[ids[r.id - 1]!] = share;
    }
    const sig = F.aggregate(pub, list, msg, shares);
    assert.equal(bytesToHex(sig), v.sig);
    const key = groupPublicKey(v.alg, pub);
    if (v.alg === 'ed25519') assert.ok(nodeVerify(null, msg, createPublicKey({ key: Buffer.concat([ED_SPKI, key]), format: 'der', type: 'spki' }), sig));
    else assert.ok(schnorr.verify(sig, msg, key));
  });
}

for (const alg of ['ed25519', 'secp256k1-bip340'] as const) {
  test(`${alg}: a dealer's split of an existing key keeps its public key, and 2 of 3 shares sign for it`, () => {
    const F = frostOf(alg);
    const secret = alg === 'ed25519' ? new Uint8Array(randomBytes(32)) : schnorr.utils.randomSecretKey();
    const ids = ['a', 'b', 'c'].map((n) => identifierOf(alg, n));
    const dealt = F.trustedDealer({ min: 2, max: 3 }, ids, splitScalar(alg, secret));
    assert.deepEqual(groupPublicKey(alg, dealt.public), publicKeyFromSecret(alg, secret));
    const msg = randomBytes(50);
    const [x, y] = [ids[0]!, ids[2]!].map((id) => ({ id, c: F.commit(dealt.secretShares[id]!) }));
    const list = [x!.c.commitments, y!.c.commitments];
    const sig = F.aggregate(dealt.public, list, msg, Object.fromEntries([x!, y!].map((p) => [p.id, F.signShare(dealt.secretShares[p.id]!, dealt.public, p.c.nonces, list, msg)])));
    if (alg === 'ed25519') assert.ok(ed25519.verify(sig, msg, publicKeyFromSecret(alg, secret)));
    else assert.ok(schnorr.verify(sig, msg, publicKeyFromSecret(alg, secret)));
  });
}

test('public packages and commitments from a peer: malformed, truncated or oversized input is a typed error, never a crash', () => {
  const good = encodePublic(frostOf('ed25519').trustedDealer({ min: 2, max: 3 }, ['a', 'b', 'c'].map((n) => identifierOf('ed25519', n))).public);
  for (const bad of ['', '{', 'null', '[]', '{"min":1,"max":3}', good.replace('"min":2', '"min":4'), good.slice(0, good.length - 5), good.replace(/"commitments":\["[0-9a-f]{64}"/, '"commitments":["zz"'), good.replace(/"commitments":\["[0-9a-f]{64}"/, `"commitments":["${'00'.repeat(32)}"`), JSON.stringify({ min: 2, max: 40, commitments: [], verifying_shares: {} })]) {
    assert.throws(() => decodePublic('ed25519', bad), (e: Error & { code?: string }) => e.code === 'bad_request', bad.slice(0, 60));
  }
  fc.assert(
    fc.property(fc.jsonValue(), (j) => {
      try {
        decodePublic('secp256k1-bip340', j);
        decodeCommitments('ed25519', j);
      } catch (e) {
        assert.equal((e as { code?: string }).code, 'bad_request');
      }
    }),
    { numRuns: 500 },
  );
});

test('vote extension sign bytes: accepted only as exactly CometBFT makes them; a vote is never one', () => {
  const ext = voteExtensionSignBytes('chain-1', { height: 5n, round: 1, extension: new Uint8Array([1, 2, 3]) });
  assert.deepEqual(decodeVoteExtensionSignBytes(ext), { chainId: 'chain-1', height: 5n, round: 1, extension: new Uint8Array([1, 2, 3]) });
  const v = voteSignBytes('chain-1', { type: 'prevote', height: 5n, round: 1, blockId: null, timestamp: { seconds: 1n, nanos: 0 } });
  assert.throws(() => decodeVoteExtensionSignBytes(v), /vote extension/);
  for (let i = 0; i < ext.length; i++) assert.throws(() => decodeVoteExtensionSignBytes(ext.subarray(0, i)), /vote extension/);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
      try {
        decodeVoteExtensionSignBytes(b);
      } catch (e) {
        assert.equal((e as { code?: string }).code, 'bad_request');
      }
    }),
    { numRuns: 2000 },
  );
});

for (const alg of ['ed25519', 'secp256k1-bip340'] as const) {
  test(`${alg}: a refresh keeps the public key, new shares sign, old and new shares do not combine; a lost member is replaced`, () => {
    const F = frostOf(alg);
    const id = (n: string) => identifierOf(alg, n);
    const dealt = F.trustedDealer({ min: 2, max: 3 }, ['a', 'b', 'c'].map(id));
    const key = groupPublicKey(alg, dealt.public);
    const share = (n: string) => dealt.secretShares[id(n)]!.signingShare;
    const reshare = (dealers: string[], receivers: string[]) => {
      const D = dealers.map(id);
      const R = receivers.map(id);
      const deals = dealers.map((d) => ({ dealer: d, ...refreshDeal(alg, share(d), id(d), D, R, 2) }));
      for (const d of deals) checkDealerCommitments(alg, dealt.public, D, id(d.dealer), d.commitments);
      return Object.fromEntries(receivers.map((r) => [r, refreshCombine(alg, id(r), R, 2, deals.map((d) => ({ dealer: d.dealer, commitments: d.commitments, value: d.values[id(r)]! })), key)]));
    };
    const verify = (sig: Uint8Array, msg: Uint8Array) => (alg === 'ed25519' ? ed25519.verify(sig, msg, key) : schnorr.verify(sig, msg, key));
    const sign = (pub: Parameters<typeof F.aggregate>[0], signers: Array<{ id: string; share: Uint8Array }>, msg: Uint8Array) => {
      const rs = signers.map((s) => ({ ...s, c: F.commit({ identifier: s.id, signingShare: s.share }) }));
      const list = rs.map((r) => r.c.commitments);
      return F.aggregate(pub, list, msg, Object.fromEntries(rs.map((r) => [r.id, F.signShare({ identifier: r.id, signingShare: r.share }, pub, r.c.nonces, list, msg)])));
    };
    const msg = randomBytes(30);
    const fresh = reshare(['a', 'b', 'c'], ['a', 'b', 'c']);
    assert.deepEqual(groupPublicKey(alg, fresh.a!.pub), key);
    assert.ok(verify(sign(fresh.b!.pub, [{ id: id('a'), share: fresh.a!.share }, { id: id('c'), share: fresh.c!.share }], msg), msg), 'new shares sign for the same key');
    assert.notDeepEqual(fresh.a!.share, share('a'));
    // An old share with a new one: no valid signature (the library refuses it, or it does not verify).
    let mixed = false;
    try {
      mixed = verify(sign(fresh.b!.pub, [{ id: id('a'), share: share('a') }, { id: id('c'), share: fresh.c!.share }], msg), msg);
    } catch {
      mixed = false;
    }
    assert.equal(mixed, false, 'an old share is useless after the refresh');
    // c is lost: a and b re-deal to a, b and a new member d.
    const replaced = reshare(['a', 'b'], ['a', 'b', 'd']);
    assert.ok(verify(sign(replaced.d!.pub, [{ id: id('d'), share: replaced.d!.share }, { id: id('b'), share: replaced.b!.share }], msg), msg), 'the new member signs');
    // A dealer that re-deals something else than its share is caught.
    const D = ['a', 'b'].map(id);
    const rogue = refreshDeal(alg, frostOf(alg).utils.randomScalar(), id('a'), D, ['a', 'b', 'd'].map(id), 2);
    assert.throws(() => checkDealerCommitments(alg, dealt.public, D, id('a'), rogue.commitments), /re-deal its own share/);
  });
}
