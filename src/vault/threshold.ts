/**
 * Threshold keys on the side of one cosigner (cluster/ drives the rounds between cosigners):
 *
 *   storeShare  this node's share of a key set, made by DKG or sent by a dealer, stored as a
 *               key: the share sealed like any secret, the key set's public package in its
 *               attributes, its public key the group's;
 *   commit      round one: fresh nonces for one signing round, kept in memory only and used
 *               at most once (a restart forgets them, so no nonce survives a crash to be used
 *               again), and their commitments for the coordinator;
 *   cosign      round two: this node's signature share over a message, through the one
 *               decide-sign-commit step, so that its own policy decides, and its audit
 *               entries (and for consensus keys its watermark) are durable before the share
 *               leaves (DESIGN.md, persist before release).
 *
 * Beside it: vault/threshold-shares.ts (storing and dealing shares), threshold-refresh.ts (what a
 * share records of a refresh) and threshold-rounds.ts (the rounds' limits and checks).
 */
import { randomUUID } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { assertPurpose } from '../core/purpose.js';
import { bytesToHex, equalBytes, wipe } from '../core/bytes.js';
import type { AuditDraft, KeyRecord } from '../core/types.js';
import { checkSignInput } from '../crypto/algorithms.js';
import { encodePublic, frostOf, groupPublicKey, checkMembers, identifierOf, refreshDeal, THRESHOLD_ATTRIBUTES as A, thresholdOf, type FrostPublic, type NonceCommitments, type ThresholdKey } from '../crypto/frost.js';
import { decodeSignBytes, decodeVoteExtensionSignBytes, stepOf } from '../crypto/cometbft/sign-bytes-decode.js';
import { onlyTimestampDiffers } from '../crypto/cometbft/compare.js';
import { comparePosition } from '../store/store.js';
import { sha256hex, type Ctx, type VaultCore } from './core.js';
import type { Keys } from './keys.js';
import { decideSignCommit } from './step.js';
import { checkRound, MAX_OPEN_ROUNDS, ROUND_TTL_MS, type CosignKind, type OpenRound } from './threshold-rounds.js';
import { ABORTED, APPLIED, DECISION, NEXT, nextOf, pendingRefresh, RETIRING } from './threshold-refresh.js';
import { checkMajority, deal, storeShare, type DealRequest, type DealtKeySet, type NewShare } from './threshold-shares.js';

export { MAX_OPEN_ROUNDS, ROUND_TTL_MS, type CosignKind } from './threshold-rounds.js';
export { ABORTED, APPLIED, DECISION, NEXT, RETIRING } from './threshold-refresh.js';
export { checkMajority, type NewShare } from './threshold-shares.js';

export class Threshold {
  private readonly rounds = new Map<string, OpenRound>();
  /** Unused nonces are wiped when they expire, whether or not another round comes. */
  private readonly sweeper = setInterval(() => this.sweep(), ROUND_TTL_MS).unref();

  constructor(
    private readonly core: VaultCore,
    private readonly keys: Keys,
  ) {}

  /** Stores this node's share as a key, once it is checked against the key set's commitments (vault/threshold-shares.ts). */
  storeShare(ctx: Ctx, s: NewShare): Promise<KeyRecord> {
    return storeShare(this.core, this.keys, ctx, s);
  }

  /** A dealer's one-time split of an existing key, never stored whole (vault/threshold-shares.ts). */
  deal(ctx: Ctx, req: DealRequest): Promise<DealtKeySet> {
    return deal(this.core, ctx, req);
  }

  /**
   * A dealer's part of a refresh: this node's share re-dealt (f(0) = λ·share) to `receivers`.
   * The values are secret (one per receiver, sent straight to it); the commitments public.
   */
  async refreshDeal(ctx: Ctx, label: string, publicKey: Uint8Array, dealers: string[], receivers: string[], min: number): Promise<{ commitments: Uint8Array[]; values: Record<string, Uint8Array>; t: ThresholdKey; purpose: string }> {
    const { key, t } = await this.describe(ctx, label, true);
    if (!equalBytes(key.publicKey, publicKey)) throw new CustosError('conflict', `This cosigner's ${label} is another key set.`);
    if (key.attributes[RETIRING] !== undefined) throw new CustosError('conflict', `${label} is retired here by refresh ${String(key.attributes[RETIRING])}: finish it (custos cluster refresh --resume) or abort it (--abort) first.`);
    const secret = this.core.deps.keyring.openSecret(key);
    try {
      const ids = (names: string[]) => names.map((n) => identifierOf(t.algorithm, n));
      const dealt = refreshDeal(t.algorithm, secret, t.identifier, ids(dealers), ids(receivers), min);
      await this.core.deps.committer.audit(this.core.draft(ctx, 'threshold_refresh_deal', key, 'ok', null, { dealers: dealers.join(','), receivers: receivers.join(','), threshold: min }));
      return { ...dealt, t, purpose: String(key.attributes.purpose) };
    } finally {
      wipe(secret);
    }
  }

  /**
   * A refresh applied on a member that held the key: the new share agreed at finish (sealed
   * beside the old one since) replaces the old one, with the public key unchanged. Idempotent,
   * and needs nothing held in memory: a refresh interrupted after finish is resumed with it.
   */
  async applyRetired(ctx: Ctx, label: string, session: string): Promise<KeyRecord> {
    const { key, t } = await this.describe(ctx, label, true);
    if (key.attributes[APPLIED] === session && key.attributes[RETIRING] === undefined) return key;
    const op = 'threshold_refresh';
    const next = await this.core.refuseOnError(ctx, op, key, {}, () => {
      if (key.attributes[RETIRING] !== session) throw new CustosError('conflict', `${label} was not retired by that refresh here (another refresh, or a change since).`);
      if (key.attributes[DECISION] !== 'commit') throw new CustosError('conflict', `${label}: that refresh is not decided here yet (run custos cluster refresh --resume).`);
      return nextOf(t.algorithm, key);
    });
    const both = this.core.deps.keyring.openSecret(key);
    try {
      if (both.length !== 64) throw new CustosError('key_record_corrupt', `${label} is retiring but holds no new share.`);
      const share = both.subarray(32);
      if (next.members[t.self] !== t.identifier) throw new CustosError('bad_request', 'This node is not a member of the refreshed key set.');
      frostOf(t.algorithm).validateSecret({ identifier: t.identifier, signingShare: share }, next.pub);
      const { [RETIRING]: _r, [NEXT]: _n, [DECISION]: _d, ...kept } = key.attributes;
      const attributes = { ...kept, 'threshold.min': next.pub.signers.min, 'threshold.max': next.pub.signers.max, [A.members]: JSON.stringify(next.members), [A.public]: encodePublic(next.pub), [APPLIED]: session.slice(0, 64) };
      return await this.rewrap(ctx, key, attributes, share, op, { members: Object.keys(next.members).join(','), threshold: next.pub.signers.min });
    } finally {
      wipe(both);
    }
  }

  /**
   * Records, durably and once, what is decided for the refresh this share is retired by. Answers
   * `done` where there is nothing to decide (never retired by it: an abort needs nothing here;
   * already applied: a commit is done).
   */
  async decideRefresh(ctx: Ctx, label: string, session: string, decision: 'commit' | 'abort', recordEarlyAbort = false): Promise<'decided' | 'done'> {
    const { key } = await this.describe(ctx, label, true);
    if (key.attributes[RETIRING] !== session) {
      if (decision === 'abort' && key.attributes[APPLIED] !== session) {
        // Recorded (for a refresh this node takes part in), so that a finish still running here
        // cannot retire this share after the abort. Nothing is written for a session this node
        // does not know: a made-up abort must not move the key's version (and drop its rounds).
        if (recordEarlyAbort && key.attributes[ABORTED] !== session) await this.rewrapSame(ctx, key, { ...key.attributes, [ABORTED]: session.slice(0, 64) }, 'threshold_refresh_decide', { session: session.slice(0, 64), decision });
        return 'done';
      }
      if (decision === 'commit' && key.attributes[APPLIED] === session) return 'done';
      throw new CustosError('conflict', decision === 'commit' ? `${label} did not finish that refresh here: it cannot be applied; abort it (custos cluster refresh --abort).` : `${label}: that refresh is applied here; it cannot be aborted.`);
    }
    const had = key.attributes[DECISION];
    if (had === decision) return 'decided';
    if (had !== undefined) throw new CustosError('conflict', `${label}: that refresh is decided ${String(had)} here; it cannot be ${decision === 'abort' ? 'aborted' : 'applied'} now.`);
    await this.rewrapSame(ctx, key, { ...key.attributes, [DECISION]: decision }, 'threshold_refresh_decide', { session: session.slice(0, 64), decision });
    return 'decided';
  }

  /** New attributes, the sealed secret unchanged (re-sealed: the attributes are bound into it). */
  private async rewrapSame(ctx: Ctx, key: KeyRecord, attributes: KeyRecord['attributes'], op: string, details: AuditDraft['details']): Promise<void> {
    const secret = this.core.deps.keyring.openSecret(key);
    try {
      await this.rewrap(ctx, key, attributes, secret, op, details);
    } finally {
      wipe(secret);
    }
  }

  /** The refresh a retiring share waits for, and the members of its new key set (for a resume). */
  pendingRefresh(key: KeyRecord): { session: string; members: string[]; arbiter: string | undefined } | null {
    return pendingRefresh(key);
  }

  /** The public side of a threshold key this principal may use. */
  async describe(ctx: Ctx, label: string, forRefresh = false): Promise<{ key: KeyRecord; t: ThresholdKey }> {
    const key = await this.core.usableKey(ctx, 'sign', label);
    const t = thresholdOf(key);
    if (!t) return this.core.refuse(ctx, 'sign', key, new CustosError('bad_request', `${key.label} is not a threshold key.`));
    // A share retired by a refresh in progress signs nothing: no old and new key set at once.
    if (!forRefresh && key.attributes[RETIRING] !== undefined) {
      return this.core.refuse(ctx, 'sign', key, new CustosError('threshold_round', `${key.label} is being refreshed here: its old share is retired and the new one not yet applied (run the refresh again to finish it).`, { tag: 'refreshing' }));
    }
    return { key, t };
  }

  /** The positions this node holds for a key, for a member joining its key set. */
  async watermarksOf(key: KeyRecord): Promise<Array<{ chainId: string; height: bigint; round: number; step: number }>> {
    return (await this.core.deps.store.listWatermarks()).filter((w) => w.keyId === key.id).map((w) => ({ chainId: w.chainId, height: w.height, round: w.round, step: w.step }));
  }

  /**
   * A refresh's receivers retire their old share (durably) before any of them applies a new
   * one: whatever happens next, the old key set can no longer reach its threshold with them.
   */
  async retireShare(ctx: Ctx, label: string, session: string, version: number, next: { share: Uint8Array; pub: FrostPublic; members: Record<string, string>; arbiter: string }): Promise<KeyRecord> {
    const { key, t } = await this.describe(ctx, label, true);
    if (key.version !== version) throw new CustosError('conflict', `${label} changed here since the refresh started.`);
    if (key.attributes[RETIRING] !== undefined) throw new CustosError('conflict', `${label} is retired here by another refresh (${String(key.attributes[RETIRING])}): finish it (custos cluster refresh --resume) or abort it (--abort) first.`);
    checkMembers(t.algorithm, next.members);
    if (next.members[next.arbiter] === undefined) throw new CustosError('bad_request', `The refresh's arbiter ${next.arbiter} is not a member of its new key set.`);
    if (key.attributes[ABORTED] === session.slice(0, 64)) throw new CustosError('conflict', `${label}: that refresh was aborted here.`);
    if (!equalBytes(groupPublicKey(t.algorithm, next.pub), key.publicKey)) throw new CustosError('bad_request', 'A refresh keeps the public key.');
    checkMajority(String(key.attributes.purpose), next.pub.signers.min, next.pub.signers.max);
    frostOf(t.algorithm).validateSecret({ identifier: t.identifier, signingShare: next.share }, next.pub);
    const old = this.core.deps.keyring.openSecret(key);
    const both = new Uint8Array(64);
    try {
      both.set(old, 0);
      both.set(next.share, 32);
      // The new share is sealed beside the old one, and the new key set recorded, in the same
      // commit as the retirement: an interrupted refresh can be resumed, never half-forgotten.
      const attributes = { ...key.attributes, [RETIRING]: session.slice(0, 64), [NEXT]: JSON.stringify({ public: JSON.parse(encodePublic(next.pub)), members: next.members, arbiter: next.arbiter }) };
      return await this.rewrap(ctx, key, attributes, both, 'threshold_retire', {});
    } finally {
      wipe(old, both);
    }
  }

  /** A refresh decided `abort` here gives the retired share back (an apply anywhere needs this holder's commit). */
  async unretireShare(ctx: Ctx, label: string, session: string): Promise<boolean> {
    const { key } = await this.describe(ctx, label, true);
    if (key.attributes[RETIRING] !== session) return false;
    if (key.attributes[DECISION] !== 'abort') throw new CustosError('conflict', `${label}: that refresh is not decided abort here.`);
    const both = this.core.deps.keyring.openSecret(key);
    try {
      const { [RETIRING]: _r, [NEXT]: _n, [DECISION]: _d, ...kept } = key.attributes;
      await this.rewrap(ctx, key, { ...kept, [ABORTED]: session.slice(0, 64) }, both.subarray(0, 32), 'threshold_unretire', { session: String(key.attributes[RETIRING]) });
      return true;
    } finally {
      wipe(both);
    }
  }

  private async rewrap(ctx: Ctx, key: KeyRecord, attributes: KeyRecord['attributes'], secret: Uint8Array, op: string, details: AuditDraft['details']): Promise<KeyRecord> {
    const next = { ...key, attributes, version: key.version + 1 };
    const sealed = this.core.deps.keyring.sealSecret(next, secret);
    const now = new Date().toISOString();
    await this.core.commitAs(ctx, {
      mutations: [{ kind: 'rewrapKey', id: key.id, expectedVersion: key.version, version: next.version, attributes, sealed, updatedAt: now }],
      audit: [this.core.draft(ctx, op, key, 'ok', null, details)],
    });
    this.dropRounds(key.id);
    this.core.deps.backend.forget(key.id);
    return { ...next, sealed, updatedAt: now };
  }

  private dropRounds(keyId: string): void {
    for (const [id, r] of this.rounds) {
      if (r.keyId !== keyId) continue;
      wipe(r.nonces.hiding, r.nonces.binding);
      this.rounds.delete(id);
    }
  }

  /**
   * The key a coordinator means: the same key set (public key, hex) under the label, and the
   * peer asking a member of it. Refusals are on the record.
   */
  private async roundKey(ctx: Ctx, label: string, publicKey: string): Promise<{ key: KeyRecord; t: ThresholdKey }> {
    const d = await this.describe(ctx, label);
    await this.core.refuseOnError(ctx, 'sign', d.key, {}, () => {
      if (publicKey !== bytesToHex(d.key.publicKey)) throw new CustosError('conflict', `This cosigner's ${label} is another key set (public key ${bytesToHex(d.key.publicKey)}).`);
      if (ctx.principal.kind === 'peer' && d.t.members[ctx.principal.id.slice('peer:'.length)] === undefined) throw new CustosError('forbidden', `${ctx.principal.id} is not a member of ${label}'s key set.`);
    });
    return d;
  }

  /** Round one: nonces for one round of `label`, in memory; their commitments go to the coordinator. */
  async commit(ctx: Ctx, label: string, publicKey: string): Promise<{ round: string; commitments: NonceCommitments }> {
    const { key, t } = await this.roundKey(ctx, label, publicKey);
    this.sweep();
    let mine = 0;
    for (const r of this.rounds.values()) if (r.by === ctx.principal.id) mine++;
    if (mine >= MAX_OPEN_ROUNDS) throw new CustosError('rate_limited', `${ctx.principal.id} has ${MAX_OPEN_ROUNDS} signing rounds open on this cosigner; retry in ${ROUND_TTL_MS / 1000} s.`, { tag: 'threshold' });
    const secret = this.core.deps.keyring.openSecret(key);
    let made;
    try {
      made = frostOf(t.algorithm).commit({ identifier: t.identifier, signingShare: secret });
    } finally {
      wipe(secret);
    }
    const round = randomUUID();
    this.rounds.set(round, { by: ctx.principal.id, keyId: key.id, version: key.version, nonces: made.nonces, commitments: made.commitments, expires: Date.now() + ROUND_TTL_MS });
    return { round, commitments: made.commitments };
  }

  /**
   * Round two: this node's share over `message` for the commitments of every cosigner of the
   * round. The round's nonces are taken out first, so whatever happens they serve once.
   *
   * `kind` says what the message is, and this node checks it rather than trusting the
   * coordinator: raw bytes (a general key); a consensus vote or proposal, decoded here and held
   * to this node's own watermark, which moves in the same commit as the share's audit entries;
   * or a vote extension, which must decode as exactly that. At a position this node already
   * holds sign bytes for that differ only in their timestamp, it answers with those bytes
   * instead of a share, so that the coordinator signs them (FilePV semantics).
   */
  async cosign(ctx: Ctx, req: { label: string; publicKey: string; round: string; message: Uint8Array; commitments: NonceCommitments[]; kind: CosignKind; context: Record<string, string> }): Promise<{ share: Uint8Array } | { signBytes: Uint8Array }> {
    const open = this.rounds.get(req.round);
    this.rounds.delete(req.round);
    try {
      const { key, t } = await this.roundKey(ctx, req.label, req.publicKey);
      const payload = { kind: 'message' as const, bytes: req.message };
      const details: AuditDraft['details'] = { ...req.context, kind: req.kind, message_sha256: sha256hex(req.message), algorithm: key.algorithm, threshold_round: req.round.slice(0, 64), cosigners: req.commitments.length };
      const voteOrNot = await this.core.refuseOnError(ctx, 'sign', key, details, () => {
        if (!open || open.expires < Date.now() || open.keyId !== key.id || open.version !== key.version || open.by !== ctx.principal.id) {
          throw new CustosError('threshold_round', 'This cosigner has no open round by that id (expired, already used, or lost in a restart); start the round again.');
        }
        checkSignInput(key.algorithm, payload, {});
        checkRound(t, open.commitments, req.commitments);
        if (req.kind === 'raw') return assertPurpose(key, 'raw');
        assertPurpose(key, 'consensus');
        if (req.kind === 'vote_extension') {
          const ext = decodeVoteExtensionSignBytes(req.message);
          Object.assign(details, { chain_id: ext.chainId, height: ext.height.toString(), round: ext.round, purpose: 'vote_extension' });
          return { extension: ext };
        }
        const m = decodeSignBytes(req.message);
        const position = { height: m.kind === 'vote' ? m.vote.height : m.proposal.height, round: m.kind === 'vote' ? m.vote.round : m.proposal.round, step: stepOf(m) };
        Object.assign(details, { chain_id: m.chainId, height: position.height.toString(), round: position.round, step: position.step });
        return { chainId: m.chainId, position };
      }).then(async (checked) => {
        if (!checked || !('extension' in checked)) return checked;
        // An extension is signed only with the precommit it belongs to: this cosigner's watermark
        // is at that precommit, for a block (not nil).
        const ext = checked.extension!;
        const wm = await this.core.deps.store.getWatermark(key.id, ext.chainId);
        let ok = false;
        if (wm && wm.height === ext.height && wm.round === ext.round && wm.step === 3) {
          try {
            const m = decodeSignBytes(wm.signBytes);
            ok = m.kind === 'vote' && m.vote.type === 'precommit' && m.vote.blockId !== null;
          } catch {
            ok = false;
          }
        }
        if (!ok) return this.core.refuse(ctx, 'sign', key, new CustosError('policy_denied', `Refusing to sign a vote extension at height ${ext.height} round ${ext.round}: this cosigner has not signed a precommit for a block there.`, { tag: 'double_sign' }), details);
        return undefined;
      });
      const vote = voteOrNot as { chainId: string; position: { height: bigint; round: number; step: 1 | 2 | 3 } } | undefined;
      const where = vote ? `height ${vote.position.height} round ${vote.position.round} step ${vote.position.step} on ${vote.chainId}` : '';
      const out = await decideSignCommit<{ share: Uint8Array } | { signBytes: Uint8Array }>(this.core, {
        ctx,
        key,
        operation: 'sign',
        subject: vote
          ? { payloadType: 'consensus', facts: { ...req.context, chain_id: vote.chainId, height: vote.position.height.toString(), round: String(vote.position.round), step: String(vote.position.step) } }
          : { payloadType: 'raw', facts: { ...req.context }, payload: req.message },
        details,
        // A cosigner answers within its coordinator's step timeout: a rule asking a person refuses
        // here (the coordinator's own policy may wait for approvals before the round starts).
        noApprovals: true,
        // A vote: this node's own watermark, read fresh at each attempt, moved with the share.
        ...(vote
          ? {
              prepare: async () => {
                const wm = await this.core.deps.store.getWatermark(key.id, vote.chainId);
                const cmp = wm ? comparePosition(vote.position, wm) : 1;
                const refuse = (why: string) => this.core.refuse(ctx, 'sign', key, new CustosError('policy_denied', `Refusing a share for ${where}: ${why}.`, { tag: 'double_sign' }), details);
                if (wm && cmp < 0) return refuse(`this cosigner already signed height ${wm.height} round ${wm.round} step ${wm.step} (regression)`);
                if (wm && cmp === 0 && !equalBytes(wm.signBytes, req.message)) {
                  if (onlyTimestampDiffers(wm.signBytes, req.message)) {
                    // No share: the bytes this cosigner holds, for the coordinator to sign instead.
                    await this.core.deps.committer.audit(this.core.draft(ctx, 'sign', key, 'ok', null, { ...details, share: 'none', held_sign_bytes_sha256: sha256hex(wm.signBytes) }));
                    return { done: { signBytes: wm.signBytes } };
                  }
                  return refuse('conflicting data (this cosigner already signed a different message there)');
                }
                return { mutations: () => [{ kind: 'advanceWatermark' as const, keyId: key.id, chainId: vote.chainId, expected: wm, next: { ...vote.position, signBytes: req.message, signature: wm && cmp === 0 ? wm.signature : null } }] };
              },
            }
          : {}),
        // The same message, nonces and commitments at every attempt: the same share.
        produce: async () => {
          const secret = this.core.deps.keyring.openSecret(key);
          const nonces = { hiding: open!.nonces.hiding.slice(), binding: open!.nonces.binding.slice() };
          try {
            return { share: frostOf(t.algorithm).signShare({ identifier: t.identifier, signingShare: secret }, t.pub, nonces, req.commitments, req.message) };
          } finally {
            wipe(secret, nonces.hiding, nonces.binding);
          }
        },
        outcome: (r): AuditDraft['details'] => ('share' in r ? { share_sha256: sha256hex(r.share) } : {}),
      });
      return out;
    } finally {
      if (open) wipe(open.nonces.hiding, open.nonces.binding);
    }
  }

  /** Forgets expired rounds (their nonces wiped). */
  private sweep(): void {
    const now = Date.now();
    for (const [id, r] of this.rounds) {
      if (r.expires >= now) continue;
      wipe(r.nonces.hiding, r.nonces.binding);
      this.rounds.delete(id);
    }
  }

  /** Wipes every open round (at close). */
  destroy(): void {
    clearInterval(this.sweeper);
    for (const r of this.rounds.values()) wipe(r.nonces.hiding, r.nonces.binding);
    this.rounds.clear();
  }
}
