/**
 * This node coordinating a threshold signature (any member may): round one asks every other
 * member for nonce commitments at once and takes the first threshold − 1 to answer; round two
 * sends them the message and the round's commitments, and each cosigner decides by its own
 * policy and commits its own audit entry before its share comes back. This node's own share
 * is made in process: the vault's step around this call is this node's decision, and it
 * commits before the aggregate is released.
 *
 * The aggregate is verified against the group key before it is returned. Shares are checked
 * one by one only when it fails (RFC 9591 §5.4 allows either; checking each costs about as
 * much as the whole round), and then the faulty cosigner is named: the error, and so the
 * step's audit entry, carry `bad_share:<cosigner>`.
 */
import { CustosError, isCustosError } from '../core/errors.js';
import { bytesToBase64, bytesToHex, hexToBytes, wipe } from '../core/bytes.js';
import { onlyTimestampDiffers } from '../crypto/cometbft/compare.js';
import { decodeSignBytes } from '../crypto/cometbft/sign-bytes-decode.js';
import type { KeyRecord } from '../core/types.js';
import { purposeOf } from '../core/purpose.js';
import { verifySignature } from '../crypto/algorithms.js';
import { decodeCommitments, decodeShare, encodeCommitments, frostOf, memberOf, thresholdOf, type NonceCommitments, type ThresholdKey } from '../crypto/frost.js';
import type { SignContext, ThresholdCoordinator } from '../core/cluster.js';
import type { Peers } from './peers.js';
import { RETIRING } from '../vault/threshold.js';

interface Joined {
  name: string;
  round: string;
  commitments: NonceCommitments;
}

export class Coordinator implements ThresholdCoordinator {
  /** Called for each cosigner whose share failed verification (the cluster records it). */
  onBadShare?: (key: KeyRecord, cosigner: string) => void;

  constructor(private readonly peers: Peers) {}

  async sign(key: KeyRecord, openShare: () => Uint8Array, message: Uint8Array, request?: SignContext): Promise<{ signature: Uint8Array; signed?: Uint8Array }> {
    const t = thresholdOf(key);
    if (!t) throw new CustosError('bad_request', `${key.label} is not a threshold key.`);
    const kind = request?.kind ?? 'raw';
    if (key.attributes[RETIRING] !== undefined) throw new CustosError('threshold_round', `${key.label} is being refreshed here: its old share is retired and the new one not yet applied.`, { tag: 'refreshing' });
    if (purposeOf(key) === 'consensus' && kind === 'raw') throw new CustosError('key_purpose', `${key.label} is a threshold consensus key: it signs votes and proposals through privval.`);
    const need = t.pub.signers.min - 1;
    const known = Object.keys(t.members).filter((n) => n !== t.self && this.peers.has(n));
    if (known.length < need) {
      throw new CustosError('cosigners_unavailable', `${key.label} needs ${t.pub.signers.min} of its ${t.pub.signers.max} cosigners, and this node has only ${known.length + 1} of them configured ([[cluster.peer]]).`);
    }
    let bytes = message;
    const excluded = new Set<string>();
    const refusals: Array<{ name: string; error: unknown }> = [];
    const adoptedFrom = new Set<string>();
    let adoptions = 0;
    for (;;) {
      // A cosigner that refused or failed in round two is left out, and the round starts again
      // with the others while enough remain: one faulty or slow member blocks nothing.
      const usable = known.filter((n) => !excluded.has(n));
      if (usable.length < need) throw giveUp(key.label, t.pub.signers.min, refusals);
      let r: Awaited<ReturnType<Coordinator['round']>>;
      try {
        r = await this.round(key, t, openShare, bytes, kind, usable, need, request);
      } catch (e) {
        // Round one found too few: with cosigners already left out, say why each one was.
        if (refusals.length && isCustosError(e) && e.code === 'cosigners_unavailable') throw giveUp(key.label, t.pub.signers.min, [...refusals, { name: 'round one', error: e }]);
        throw e;
      }
      if ('signature' in r) return { signature: r.signature, ...(bytes !== message ? { signed: bytes } : {}) };
      if ('failed' in r) {
        for (const f of r.failed) {
          excluded.add(f.name);
          refusals.push(f);
        }
        continue;
      }
      // A cosigner holds other sign bytes for this position, a timestamp apart: sign those (at
      // most twice, once per cosigner). Anything else it claims leaves it out, like a refusal:
      // with t > n/2 the others' watermarks decide, and one cosigner cannot block the vote.
      const adoptable = kind === 'consensus' && onlyTimestampDiffers(message, r.signBytes) && closeInTime(message, r.signBytes) && !adoptedFrom.has(r.from) && adoptions < 2;
      if (!adoptable) {
        excluded.add(r.from);
        refusals.push({ name: r.from, error: new CustosError('policy_denied', `Cosigner ${r.from} holds other sign bytes for this position, which this request cannot take.`, { tag: 'double_sign' }) });
        continue;
      }
      adoptions++;
      adoptedFrom.add(r.from);
      bytes = r.signBytes;
    }
  }

  /** One round: commitments from the first cosigners to answer, then their shares and this node's. */
  private async round(
    key: KeyRecord,
    t: ThresholdKey,
    openShare: () => Uint8Array,
    message: Uint8Array,
    kind: string,
    known: string[],
    need: number,
    request?: SignContext,
  ): Promise<{ signature: Uint8Array } | { signBytes: Uint8Array; from: string } | { failed: Array<{ name: string; error: unknown }> }> {
    const F = frostOf(t.algorithm);
    const publicKey = bytesToHex(key.publicKey);
    const secret = openShare();
    let own;
    try {
      own = F.commit({ identifier: t.identifier, signingShare: secret });
    } finally {
      wipe(secret);
    }
    try {
      const joined = await firstAnswers(known, need, async (name): Promise<Joined> => {
        const r = await this.peers.call(name, '/v1/cluster/commit', { key: key.label, public_key: publicKey });
        const commitments = decodeCommitments(t.algorithm, r.commitments);
        if (commitments.identifier !== t.members[name]) throw new CustosError('bad_request', `Cosigner ${name} answered with another identifier.`);
        return { name, round: String(r.round), commitments };
      });
      const list = [own.commitments, ...joined.map((j) => j.commitments)];
      const encoded = list.map(encodeCommitments);
      // Round two: every chosen cosigner commits its own decision (and watermark) before its share returns.
      const pending = Promise.allSettled(
        joined.map((j) =>
          this.peers.call(j.name, '/v1/cluster/share', {
            key: key.label,
            public_key: publicKey,
            round: j.round,
            algorithm: t.algorithm,
            kind,
            message: bytesToBase64(message),
            commitments: encoded,
            ...(request ? { requested_by: request.principal, request_id: request.requestId } : {}),
          }),
        ),
      );
      // This node's share while the others make theirs (the requests are on the wire first).
      await new Promise((r) => setImmediate(r));
      const s2 = openShare();
      let ownShare: Uint8Array;
      try {
        ownShare = F.signShare({ identifier: t.identifier, signingShare: s2 }, t.pub, own.nonces, list, message);
      } finally {
        wipe(s2);
      }
      const answers = await pending;
      const failed = answers.map((a, i) => ({ a, name: joined[i]!.name })).filter((x) => x.a.status === 'rejected');
      if (failed.length) return { failed: failed.map((f) => ({ name: f.name, error: (f.a as PromiseRejectedResult).reason })) };
      const values = answers.map((a) => (a as PromiseFulfilledResult<Record<string, unknown>>).value);
      // Held sign bytes are an answer only to a consensus request; anything else a cosigner
      // sends that is not a well-formed share leaves it out of the next round.
      const other = values.findIndex((v) => typeof v.sign_bytes === 'string');
      if (other >= 0 && kind === 'consensus') {
        try {
          return { signBytes: hexToBytes(String(values[other]!.sign_bytes), 'sign_bytes'), from: joined[other]!.name };
        } catch (e) {
          return { failed: [{ name: joined[other]!.name, error: e }] };
        }
      }
      const shares: Record<string, Uint8Array> = { [t.identifier]: ownShare };
      const malformed: Array<{ name: string; error: unknown }> = [];
      values.forEach((v, i) => {
        try {
          shares[t.members[joined[i]!.name]!] = decodeShare(t.algorithm, v.share);
        } catch (e) {
          malformed.push({ name: joined[i]!.name, error: new CustosError('bad_share', `Cosigner ${joined[i]!.name} answered without a well-formed share.`, { tag: joined[i]!.name }) });
          void e;
        }
      });
      if (malformed.length) return { failed: malformed };
      try {
        return { signature: aggregate(key, t, list, message, shares) };
      } catch (e) {
        // A bad share: named, audited by the caller (onBadShare), and its cosigner left out.
        if (isCustosError(e) && e.code === 'bad_share') {
          const bad = e.message.match(/cosigner (.+?) did not verify/)?.[1]?.split(', ') ?? [];
          const names = bad.filter((n) => joined.some((j) => j.name === n));
          if (names.length && !names.includes(t.self)) {
            for (const n of names) this.onBadShare?.(key, n);
            return { failed: names.map((n) => ({ name: n, error: new CustosError('bad_share', `The signature share of cosigner ${n} did not verify against its verifying share: it is faulty or compromised.`, { tag: n }) })) };
          }
        }
        throw e;
      }
    } finally {
      wipe(own.nonces.hiding, own.nonces.binding);
    }
  }
}

/** Nobody left to ask: the refusals as they came, with the code they share if they all agree. */
function giveUp(label: string, min: number, refusals: Array<{ name: string; error: unknown }>): CustosError {
  const why = refusals.map((r) => `${r.name}: ${isCustosError(r.error) ? r.error.message.replace(/^Cosigner \S+: /, '') : String(r.error)}`).join('; ');
  // What an operator must see first: a faulty cosigner, then a refusal every cosigner shares.
  const errors = refusals.map((r) => r.error).filter(isCustosError);
  const bad = errors.find((e) => e.code === 'bad_share');
  const codes = new Set(errors.map((e) => e.fullCode));
  const lead = bad ?? (codes.size === 1 && errors.length === refusals.length && errors[0]!.code !== 'internal' ? errors[0] : undefined);
  if (lead) return new CustosError(lead.code, `Too few cosigners of ${label} signed (${min} needed). ${why}`, lead.tag ? { tag: lead.tag } : undefined);
  return new CustosError('cosigners_unavailable', `Too few cosigners of ${label} signed (${min} needed)${why ? `: ${why}` : '.'}`);
}

/** Adopted sign bytes may move the vote's timestamp by a minute at most: a cosigner cannot set it. */
function closeInTime(asked: Uint8Array, held: Uint8Array): boolean {
  try {
    const at = (b: Uint8Array) => {
      const m = decodeSignBytes(b);
      const ts = m.kind === 'vote' ? m.vote.timestamp : m.proposal.timestamp;
      return Number(ts.seconds) + ts.nanos / 1e9;
    };
    return Math.abs(at(asked) - at(held)) <= 60;
  } catch {
    return false;
  }
}

/** The aggregate, verified; on failure the cosigners whose shares do not verify are named. */
function aggregate(key: KeyRecord, t: ThresholdKey, list: NonceCommitments[], message: Uint8Array, shares: Record<string, Uint8Array>): Uint8Array {
  const F = frostOf(t.algorithm);
  let sig: Uint8Array | undefined;
  try {
    sig = F.aggregate(t.pub, list, message, shares);
  } catch {
    sig = undefined;
  }
  if (sig && verifySignature(key.algorithm, key.publicKey, { kind: 'message', bytes: message }, sig, {})) return sig;
  const bad = Object.keys(shares)
    .filter((id) => !F.verifyShare(t.pub, list, message, id, shares[id]!))
    .map((id) => memberOf(t, id) ?? id);
  if (bad.length === 0) throw new CustosError('internal', 'The aggregate signature did not verify although every share did.');
  throw new CustosError('bad_share', `The signature share of cosigner ${bad.join(', ')} did not verify against its verifying share: it is faulty or compromised. Nothing was released.`, { tag: bad[0]! });
}

/**
 * Calls `f` for every name at once and resolves with the first `need` answers; rejects as
 * soon as too many failed for `need` to be reached, naming them.
 */
export function firstAnswers<T>(names: string[], need: number, f: (name: string) => Promise<T>): Promise<T[]> {
  if (need === 0) return Promise.resolve([]);
  return new Promise((resolve, reject) => {
    const got: T[] = [];
    const failed: string[] = [];
    let done = false;
    for (const n of names) {
      f(n).then(
        (v) => {
          if (done) return;
          got.push(v);
          if (got.length === need) {
            done = true;
            resolve(got);
          }
        },
        (e: unknown) => {
          if (done) return;
          failed.push(`${n} (${isCustosError(e) ? e.message.replace(/^Cosigner \S+: /, '') : (e as Error).message})`);
          if (names.length - failed.length < need) {
            done = true;
            reject(new CustosError('cosigners_unavailable', `Only ${got.length + 1} of the ${need + 1} cosigners needed answered; failed: ${failed.join('; ')}.`));
          }
        },
      );
    }
  });
}
