/**
 * The channel signer's rules (src/lightning/channel-policy.ts) over random sequences of
 * requests (fast-check), near the state's current numbers so that most are in play: whatever
 * the order, a revoked holder commitment is never signed, a secret is released only for a
 * commitment with a newer validated one and never for one signed for broadcast, counterparty
 * commitment numbers never go back (the same number only for the same transaction), at most two
 * are unrevoked, a revocation must open the signed point, and nothing is signed after a close.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decideChannel, decodeState, encodeState, freshState, type ChannelRequest, type ChannelState } from '../../src/lightning/channel-policy.js';
import { isCustosError } from '../../src/core/errors.js';

const KEYS = 'ab'.repeat(32);
const params = { channelType: 'static_remotekey' as const, outbound: false, holderDelay: 144, counterpartyDelay: 144, counterparty: { funding: '02'.padEnd(66, '1'), revocation: '02'.padEnd(66, '2'), payment: '02'.padEnd(66, '3'), delayed: '02'.padEnd(66, '4'), htlc: '02'.padEnd(66, '5') }, fundingTxid: 'cd'.repeat(32), fundingIndex: 0, valueSat: '1000000' };

/** A request shape, resolved against the state so its numbers land near the current ones. */
const step = fc.record({
  // A close and a force close (sign_holder) end most of the game: they come rarely.
  op: fc.oneof(
    { arbitrary: fc.constantFrom('setup', 'setup_other', 'validate_holder', 'release_secret', 'sign_counterparty', 'validate_revocation', 'sign_holder_htlc'), weight: 30 },
    { arbitrary: fc.constantFrom('sign_holder', 'sign_closing'), weight: 1 },
  ),
  delta: fc.integer({ min: -2, max: 2 }),
  variant: fc.integer({ min: 0, max: 2 }),
  valid: fc.boolean(),
});

function resolve(s: ChannelState, x: { op: string; delta: number; variant: number; valid: boolean }): ChannelRequest {
  const txid = (n: number) => `tx${n}-${x.variant === 2 ? 'other' : 'a'}`;
  const point = (n: number) => `pt${n}`;
  switch (x.op) {
    case 'setup':
      return { op: 'setup', params };
    case 'setup_other':
      return { op: 'setup', params: { ...params, valueSat: '2000000' } };
    case 'validate_holder': {
      const n = Math.max(0, s.holder.validated + 1 + x.delta);
      return { op: 'validate_holder', n, txid: txid(n), counterpartySigValid: x.valid || x.variant > 0, ourSat: 5000n, theirSat: BigInt(x.variant * 1000), feeSat: 300n, htlcs: x.delta > 1 ? 1 : 0 };
    }
    case 'release_secret':
      return { op: 'release_secret', n: Math.max(0, s.holder.releasedThrough + 1 + x.delta) };
    case 'sign_holder': {
      const n = Math.max(0, s.holder.validated + x.delta);
      return { op: 'sign_holder', n, txid: txid(n) };
    }
    case 'sign_counterparty': {
      const n = Math.max(0, s.counterparty.signed + 1 + x.delta);
      return { op: 'sign_counterparty', n, txid: txid(n), point: point(n), signedWith: x.valid ? 'same' : 'other' };
    }
    case 'validate_revocation': {
      const n = Math.max(0, s.counterparty.revokedThrough + 1 + x.delta);
      return { op: 'validate_revocation', n, pointOfSecret: x.valid || x.variant > 0 ? point(n) : 'wrong' };
    }
    case 'sign_holder_htlc':
      return { op: 'sign_holder_htlc', n: Math.max(0, s.holder.validated + x.delta), spends: x.valid ? (s.holder.signedTxid ?? 'none') : 'elsewhere' };
    default:
      return { op: 'sign_closing', othersSat: [0n, 1300n, 5000n][x.variant]!, walletSat: x.valid ? 5000n : 3000n, feeSat: [200n, 1300n, 1301n][x.delta + 2 > 3 ? 2 : x.delta + 2 > 1 ? 1 : 0]! };
  }
}

test('whatever the order of requests, the channel rules hold', () => {
  const accepted = new Map<string, number>();
  fc.assert(
    fc.property(fc.array(step, { minLength: 40, maxLength: 160 }), (steps) => {
      let s = freshState(KEYS);
      const released = new Set<number>();
      const validated = new Map<number, string>();
      let latest: { ourSat: bigint; theirSat: bigint; htlcs: number } | null = null;
      const signedTxid = new Map<number, string>();
      const holderSigned = new Set<number>();
      const cpSigned = new Map<number, string>();
      const cpRevoked = new Set<number>();
      let closed = false;
      for (const x of steps) {
        const r = resolve(s, x);
        let next: ChannelState | null;
        try {
          next = decideChannel(s, r);
        } catch (e) {
          assert.ok(isCustosError(e) && e.code === 'policy_denied', String(e));
          continue;
        }
        // Accepted (a new state, or a repeat the vault already holds): check what it allows.
        accepted.set(r.op, (accepted.get(r.op) ?? 0) + 1);
        switch (r.op) {
          case 'validate_holder':
            assert.ok(!validated.has(r.n) || validated.get(r.n) === r.txid, 'one transaction per holder number');
            if (!validated.has(r.n)) {
              assert.ok(!closed && holderSigned.size === 0, 'no new holder commitment after a close');
              latest = { ourSat: r.ourSat, theirSat: r.theirSat, htlcs: r.htlcs };
            }
            validated.set(r.n, r.txid);
            break;
          case 'release_secret':
            assert.ok([...validated.keys()].some((m) => m > r.n), `secret ${r.n} released only with a newer validated commitment`);
            assert.ok(![...holderSigned].some((m) => m <= r.n), `secret ${r.n} released at or after a commitment signed for broadcast`);
            released.add(r.n);
            break;
          case 'sign_holder':
            assert.ok(!released.has(r.n), `revoked holder commitment ${r.n} signed`);
            assert.equal(validated.get(r.n), r.txid, 'only a validated holder commitment is signed');
            if (holderSigned.size === 0) signedTxid.set(r.n, r.txid);
            holderSigned.add(r.n);
            break;
          case 'sign_holder_htlc':
            assert.ok(!released.has(r.n), 'no HTLC transaction of a revoked commitment');
            assert.ok(holderSigned.has(r.n) && r.spends === signedTxid.get(r.n), 'HTLC transactions only of the commitment signed for broadcast, spending it');
            break;
          case 'sign_counterparty': {
            assert.ok(!closed && holderSigned.size === 0, 'no commitment signed after a close');
            const newest = Math.max(-1, ...cpSigned.keys());
            assert.ok(r.n >= newest, 'counterparty numbers never go back');
            if (cpSigned.has(r.n)) assert.equal(cpSigned.get(r.n), `${r.txid}/${r.signedWith}`, 'the same number only for the same transaction, point, HTLCs, feerate');
            cpSigned.set(r.n, `${r.txid}/${r.signedWith}`);
            const unrevoked = [...cpSigned.keys()].filter((n) => !cpRevoked.has(n)).length;
            assert.ok(unrevoked <= 2, `${unrevoked} counterparty commitments unrevoked`);
            break;
          }
          case 'validate_revocation':
            if (!cpRevoked.has(r.n)) assert.equal(r.pointOfSecret, `pt${r.n}`, 'a revocation opens the signed point');
            cpRevoked.add(r.n);
            break;
          case 'sign_closing':
            assert.ok(latest && latest.htlcs === 0 && holderSigned.size === 0, 'a mutual close: no HTLC pending, no force close');
            assert.ok(r.othersSat <= latest.theirSat + 300n, `the close pays the counterparty ${r.othersSat}, more than it is owed`);
            assert.ok(r.feeSat <= 300n + 1000n, `the close pays ${r.feeSat} in fees`);
            assert.ok(r.walletSat >= latest.ourSat, `the close pays this node ${r.walletSat}, less than its balance`);
            closed = true;
            break;
        }
        if (next) {
          assert.deepEqual(decodeState(encodeState(next), KEYS), next, 'the state round-trips');
          s = next;
        }
      }
    }),
    { numRuns: 400 },
  );
  // The sequences reach every rule (not only refusals of a channel without parameters).
  for (const op of ['setup', 'validate_holder', 'release_secret', 'sign_holder', 'sign_counterparty', 'validate_revocation', 'sign_closing', 'sign_holder_htlc']) assert.ok((accepted.get(op) ?? 0) > 30, `${op} accepted ${accepted.get(op) ?? 0} times: ${JSON.stringify([...accepted])}`);
});

test('a stored state that is not one the vault writes is refused as corrupt', () => {
  for (const bad of ['', '{}', 'null', JSON.stringify({ ...freshState(KEYS), keysId: 'cd'.repeat(32) }), JSON.stringify({ ...freshState(KEYS), holder: { validated: 1.5 } })]) {
    assert.throws(() => decodeState(new TextEncoder().encode(bad), KEYS), (e: unknown) => isCustosError(e) && e.code === 'database_corrupt', bad);
  }
});
