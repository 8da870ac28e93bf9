/**
 * Proactive refresh of a threshold key, and the replacement of a lost cosigner: the same public
 * key, every share new, old shares useless (crypto/frost.ts has the arithmetic).
 *
 *   start      every participant learns the session (its operator agreed: consent.ts); each
 *              dealer (a member holding a share) re-deals it and answers with its commitments;
 *   round2     each dealer sends each receiver its value directly (mutual TLS), with its hash of
 *              every dealer's commitments, so a coordinator that told members different things
 *              is caught;
 *   finish     each receiver checks every value against its dealer's commitments (and a dealer,
 *              each dealer's first commitment against λ times its old verifying share) and
 *              computes its new share; a holder retires its old share and seals the new one
 *              beside it in one commit (a retired share signs nothing);
 *   decide     every holder records commit (or abort), durably and for good: the arbiter (the
 *              member that started the refresh) first, then the others, each only once the
 *              arbiter holds the same decision;
 *   apply      only once every holder holds commit: each applies its new share (a new member
 *              stores one, from the dealers' watermarks taken now that they are retired);
 *   unretire   a holder that recorded abort takes its old share back (an apply anywhere would
 *              need its commit, which can then never come).
 *
 * Resume and abort (cluster.ts conclude) run decide then apply or unretire from any member, so
 * a refresh interrupted anywhere is finished or undone; of two attempts pulling opposite ways,
 * the one that reaches the arbiter second fails before it records anything.
 */
import { createHash } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { bytesToHex, hexToBytes, wipe } from '../core/bytes.js';
import { holdsCommit, type ClusterAnswer, type PeerStep, type RefreshState } from '../core/cluster.js';
import type { Principal } from '../core/types.js';
import {
  checkDealerCommitments,
  decodeShare,
  encodePublic,
  identifierOf,
  isThresholdAlgorithm,
  MAX_PARTICIPANTS,
  refreshCombine,
  type FrostPublic,
  type ThresholdAlgorithm,
} from '../crypto/frost.js';
import type { Vault } from '../vault/vault.js';
import { peerPrincipal } from './participant.js';
import type { Peers } from './peers.js';
import type { Consent } from './consent.js';
import { ABORTED, APPLIED, checkMajority, DECISION, RETIRING } from '../vault/threshold.js';
import { comparePosition } from '../store/store.js';
import { sha256hex } from '../crypto/digest.js';

interface Session {
  coordinator: string;
  label: string;
  algorithm: ThresholdAlgorithm;
  publicKey: Uint8Array;
  min: number;
  purpose: string;
  dealers: string[];
  receivers: string[];
  /** A dealer: its old public package, to check every dealer's commitments against. */
  old?: FrostPublic;
  /** This node holds a record of the key (a dealer, or a member rejoining): its version at start. */
  version?: number;

  values?: Record<string, Uint8Array>;
  commitments?: Record<string, Uint8Array[]>;
  transcript?: string;
  received: Map<string, { value: Uint8Array; transcript: string }>;
  pending?: { share: Uint8Array; pub: FrostPublic };
  expires: number;
}

const TTL_MS = 120_000;
const bad = (m: string) => new CustosError('bad_request', m);
const names = (v: unknown, what: string): string[] => {
  if (!Array.isArray(v) || v.length < 2 || v.length > MAX_PARTICIPANTS || v.some((n) => typeof n !== 'string' || !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(n)) || new Set(v).size !== v.length) throw bad(`${what} must be 2 to 16 distinct cosigner names.`);
  return v as string[];
};

export class Refresher {
  private readonly sessions = new Map<string, Session>();
  private readonly sweeper = setInterval(() => this.sweep(), 10_000).unref();

  constructor(
    private readonly peers: Peers,
    private readonly vault: () => Vault,
    private readonly consent: Consent,
  ) {}

  private ctx(from: string, requestId: string): { principal: Principal; requestId: string } {
    return { principal: peerPrincipal(from), requestId };
  }

  async answer(from: string, requestId: string, step: PeerStep, body: ClusterAnswer): Promise<ClusterAnswer> {
    if (step === 'refresh/start') return this.start(from, requestId, body);
    const id = String(body.session ?? '');
    if (step === 'refresh/watermarks') return this.watermarks(from, requestId, id, body);
    if (step === 'refresh/decide') return this.decide(from, requestId, id, body);
    if (step === 'refresh/unretire') return this.unretire(from, requestId, id, body);
    if (step === 'refresh/state') return this.state(from, requestId, id, body);
    const s = this.sessions.get(id);
    // A resume: the refresh finished here before (its new share is sealed beside the old one),
    // and a member of the new key set asks this node to apply it (the vault applies only what
    // every holder decided to commit).
    if (step === 'refresh/apply' && (!s || s.coordinator !== from || s.version !== undefined)) return this.resumeApply(from, requestId, id, body);
    if (!s || s.expires < Date.now()) throw new CustosError('threshold_round', 'No refresh by that id is open here (expired, finished, or lost in a restart); start it again.');
    if (step === 'refresh/deliver') return this.deliver(s, from, body);
    if (s.coordinator !== from) throw new CustosError('forbidden', `Only ${s.coordinator}, which started that refresh, drives it.`);
    try {
      if (step === 'refresh/round2') return await this.round2(id, s, requestId, body);
      if (step === 'refresh/finish') return await this.finish(id, s, from, requestId);
      if (step === 'refresh/apply') return await this.apply(id, s, from, requestId);
    } catch (e) {
      this.abandon(id);
      throw e;
    }
    throw bad(`Unknown step ${step}.`);
  }

  private async start(from: string, requestId: string, b: ClusterAnswer): Promise<ClusterAnswer> {
    this.sweep();
    if (this.sessions.size >= 16) throw new CustosError('rate_limited', 'Too many refreshes are open on this cosigner; retry in two minutes.', { tag: 'threshold' });
    const id = typeof b.session === 'string' && b.session.length <= 64 ? b.session : '';
    if (!id || this.sessions.has(id)) throw bad('A new session id is needed.');
    const algorithm = String(b.algorithm);
    if (!isThresholdAlgorithm(algorithm)) throw bad('algorithm must be ed25519 or secp256k1-bip340.');
    const dealers = names(b.dealers, 'dealers');
    const receivers = names(b.receivers, 'receivers');
    const min = b.threshold;
    if (!Number.isInteger(min) || (min as number) < 2 || (min as number) > receivers.length || dealers.length < (min as number)) throw bad('2 ≤ threshold ≤ receivers, and at least the threshold of dealers.');
    const me = this.peers.self;
    if (!dealers.includes(me) && !receivers.includes(me)) throw bad('This node takes no part in that refresh.');
    // Only a member holding a share drives a refresh of it.
    if (!dealers.includes(from)) throw new CustosError('forbidden', `${from} holds no share of that key set to deal: only a member drives its refresh.`);
    for (const n of new Set([...dealers, ...receivers])) if (n !== me && !this.peers.has(n)) throw bad(`${n} is not a peer of this node.`);
    const label = typeof b.label === 'string' && b.label.length <= 128 ? b.label : '';
    const publicKey = hexToBytes(String(b.public_key ?? ''), 'public_key');
    const purpose = typeof b.purpose === 'string' ? b.purpose : 'general';
    checkMajority(purpose, min as number, receivers.length);
    const s: Session = { coordinator: from, label, algorithm, publicKey, min: min as number, purpose, dealers, receivers, received: new Map(), expires: Date.now() + TTL_MS };
    // Every refresh needs this node's operator's consent: without it, one peer could leave the
    // members with shares that do not combine.
    this.consent.take({ from, self: me, label, kind: 'reshare', purpose, threshold: s.min, members: receivers, algorithm });
    const ctx = this.ctx(from, requestId);
    const held = await this.vault().getKey(label).catch(() => null);
    let commitments: string[] | null = null;
    if (held && held.state !== 'destroyed') {
      const { key, t } = await this.vault().describeThreshold(ctx, label, true);
      if (bytesToHex(key.publicKey) !== bytesToHex(publicKey)) throw new CustosError('conflict', `This node's ${label} is another key set.`);
      // The purpose and threshold stay what they are here.
      if (key.attributes.purpose !== purpose || t.pub.signers.min !== s.min) throw new CustosError('conflict', `${label} is a ${String(key.attributes.purpose)} key of threshold ${t.pub.signers.min} here; a refresh keeps both.`);
      s.version = key.version;
      if (dealers.includes(me)) {
        for (const d of dealers) if (t.members[d] === undefined) throw bad(`${d} holds no share of ${label}.`);
        const dealt = await this.vault().refreshDeal(ctx, label, publicKey, dealers, receivers, s.min);
        s.old = dealt.t.pub;
        s.values = dealt.values;
        commitments = dealt.commitments.map(bytesToHex);
      }
    } else if (dealers.includes(me)) {
      throw bad(`This node holds no share of ${label} to deal.`);
    }
    this.sessions.set(id, s);
    return { commitments };
  }

  private async round2(id: string, s: Session, requestId: string, b: ClusterAnswer): Promise<ClusterAnswer> {
    const given = b.commitments as Record<string, unknown> | undefined;
    if (typeof given !== 'object' || given === null) throw bad('commitments are missing.');
    const commitments: Record<string, Uint8Array[]> = {};
    for (const d of s.dealers) {
      const c = given[d];
      if (!Array.isArray(c) || c.length !== s.min || c.some((x) => typeof x !== 'string')) throw bad(`${d}'s commitments are missing or malformed.`);
      commitments[d] = (c as string[]).map((x) => hexToBytes(x, 'commitment'));
      if (s.old) checkDealerCommitments(s.algorithm, s.old, s.dealers.map((n) => identifierOf(s.algorithm, n)), identifierOf(s.algorithm, d), commitments[d]!);
    }
    s.commitments = commitments;
    s.transcript = transcriptOf(s, commitments);
    if (!s.values) return { delivered: 0 };
    const me = this.peers.self;
    try {
      await Promise.all(
        s.receivers.map((r) => {
          const body = {
            session: id,
            value: bytesToHex(s.values![identifierOf(s.algorithm, r)]!),
            transcript_sha256: s.transcript,
          };
          return r === me ? this.deliver(s, me, body) : this.peers.call(r, '/v1/cluster/refresh/deliver', body);
        }),
      );
    } finally {
      for (const v of Object.values(s.values)) wipe(v);
      delete s.values;
    }
    void requestId;
    return { delivered: s.receivers.length };
  }

  private deliver(s: Session, from: string, b: ClusterAnswer): ClusterAnswer {
    if (!s.dealers.includes(from)) throw new CustosError('forbidden', `${from} is no dealer of that refresh.`);
    if (!s.receivers.includes(this.peers.self)) throw bad('This node receives nothing in that refresh.');
    if (s.received.has(from)) throw new CustosError('conflict', `${from} has already delivered its value.`);
    const transcript = typeof b.transcript_sha256 === 'string' ? b.transcript_sha256.slice(0, 64) : '';
    s.received.set(from, { value: decodeShare(s.algorithm, b.value), transcript });
    return { ok: true };
  }

  private async finish(id: string, s: Session, from: string, requestId: string): Promise<ClusterAnswer> {
    if (!s.commitments || !s.transcript) throw new CustosError('conflict', 'Round two of that refresh has not run here.');
    const missing = s.dealers.filter((d) => !s.received.has(d));
    if (missing.length) throw new CustosError('cosigners_unavailable', `No value arrived from ${missing.join(', ')}.`);
    const diverged = s.dealers.filter((d) => s.received.get(d)!.transcript !== s.transcript);
    if (diverged.length) throw new CustosError('conflict', `${diverged.join(', ')} saw other commitments than this node: the coordinator told members different things. Nothing changes.`);
    const me = identifierOf(s.algorithm, this.peers.self);
    s.pending = refreshCombine(
      s.algorithm,
      me,
      s.receivers.map((r) => identifierOf(s.algorithm, r)),
      s.min,
      s.dealers.map((d) => ({ dealer: d, commitments: s.commitments![d]!, value: s.received.get(d)!.value })),
      s.publicKey,
    );
    for (const r of s.received.values()) wipe(r.value);
    // Before anyone applies a new share, this node's old one signs no more; the new one is
    // sealed beside it in the same commit, so the refresh can be resumed after any crash.
    if (s.version !== undefined) {
      await this.vault().retireShare(this.ctx(from, requestId), s.label, id, s.version, { share: s.pending.share, pub: s.pending.pub, members: Object.fromEntries(s.receivers.map((r) => [r, identifierOf(s.algorithm, r)])), arbiter: s.coordinator });
    }
    return { public_key: bytesToHex(s.publicKey), public_sha256: sha256hex(encodePublic(s.pending.pub)) };
  }

  private async apply(id: string, s: Session, from: string, requestId: string): Promise<ClusterAnswer> {
    if (!s.pending) throw new CustosError('conflict', 'That refresh has not finished here.');
    const members = Object.fromEntries(s.receivers.map((r) => [r, identifierOf(s.algorithm, r)]));
    try {
      const ctx = this.ctx(from, requestId);
      const v = this.vault();
      {
        // A new member starts from the highest position any dealer holds, each asked now that
        // its old share is retired (it signs nothing more): every group that signed before
        // included a dealer, so nothing signed is below it.
        const top = new Map<string, { chainId: string; height: bigint; round: number; step: number }>();
        const lists = await Promise.all(s.dealers.map((d) => (d === this.peers.self ? this.watermarks(this.peers.self, requestId, id, { label: s.label }) : this.peers.call(d, '/v1/cluster/refresh/watermarks', { session: id, label: s.label }))));
        for (const list of lists.map(parseWatermarks)) {
          for (const w of list) {
            const cur = top.get(w.chainId);
            if (!cur || comparePosition(w, cur) > 0) top.set(w.chainId, w);
          }
        }
        await v.storeShare(ctx, { label: s.label, algorithm: s.algorithm, share: s.pending.share, pub: s.pending.pub, self: this.peers.self, members, origin: 'refresh', purpose: s.purpose, watermarks: [...top.values()], applied: id });
      }
      return { public_key: bytesToHex(s.publicKey), public_sha256: sha256hex(encodePublic(s.pending.pub)) };
    } finally {
      this.abandon(id);
    }
  }

  /** A dealer's positions for the key, once its old share is retired (or replaced) by this refresh. */
  private async watermarks(from: string, requestId: string, session: string, b: ClusterAnswer): Promise<ClusterAnswer> {
    const label = labelOf(b);
    const v = this.vault();
    const { key } = await v.describeThreshold(this.ctx(from, requestId), label, true);
    const pending = v.pendingRefresh(key);
    if (!pending || pending.session !== session || !pending.members.includes(from)) throw new CustosError('forbidden', `${from} is not joining ${label} through that refresh here, or this node has not retired its share for it.`);
    const list = await v.thresholdWatermarks(key);
    return { watermarks: list.map((w) => ({ chain_id: w.chainId, height: w.height.toString(), round: w.round, step: w.step })) };
  }

  /**
   * Records what is decided for a refresh this node is retired by (`commit` or `abort`), asked
   * by a member of the key set (old or new). Deciding `abort` also forgets the refresh here if it
   * has not finished yet, so it can never finish after it.
   */
  private async decide(from: string, requestId: string, session: string, b: ClusterAnswer): Promise<ClusterAnswer> {
    const decision = b.decision === 'commit' || b.decision === 'abort' ? b.decision : fail('decision must be commit or abort.');
    const label = labelOf(b);
    const v = this.vault();
    const inMemory = this.sessions.get(session);
    const held = await v.getKey(label).catch(() => null);
    if (!held || held.state === 'destroyed') {
      // A new member: an abort from a participant of that refresh forgets it here.
      if (decision === 'abort' && inMemory && inMemory.receivers.includes(from)) this.abandon(session);
      return { decided: 'nothing held' };
    }
    const { key, t } = await v.describeThreshold(this.ctx(from, requestId), label, true);
    const pending = v.pendingRefresh(key);
    // Only participants of the refresh (members of its new key set) decide it.
    const allowed = key.attributes[RETIRING] === session ? new Set(pending?.members ?? []) : new Set([...Object.keys(t.members), ...(pending?.members ?? [])]);
    if (!allowed.has(from)) throw new CustosError('forbidden', `${from} takes no part in that refresh of ${label}.`);
    // A decision already recorded here stands on its own: asking again could only stall it.
    const recorded = key.attributes[RETIRING] === session && key.attributes[DECISION] === decision;
    if (key.attributes[RETIRING] === session && !recorded && pending?.arbiter !== undefined && pending.arbiter !== this.peers.self) await this.followArbiter(label, session, pending, decision);
    if (decision === 'abort' && inMemory) this.abandon(session);
    return { decided: await v.decideRefresh(this.ctx(from, requestId), label, session, decision, inMemory !== undefined && inMemory.receivers.includes(from)) };
  }

  /**
   * A holder records a decision only once the refresh's arbiter (the member that started it)
   * holds it: the arbiter's decision is recorded first and never changes, so two attempts
   * pulling opposite ways cannot leave some holders with commit and others with abort. An
   * arbiter that never retired for the refresh can never commit: it can then only be aborted.
   * An arbiter lost for good (a node answering in its place holds nothing) is stood in for by
   * the participants themselves: commit once one of them holds commit or applied (the arbiter
   * recorded it before it was lost), abort once every one answers and none does.
   */
  private async followArbiter(label: string, session: string, pending: { members: string[]; arbiter?: string | undefined }, decision: 'commit' | 'abort'): Promise<void> {
    const arbiter = pending.arbiter!;
    const ask = (m: string) => this.peers.call(m, '/v1/cluster/refresh/state', { session, label }) as Promise<RefreshState>;
    let st: Awaited<ReturnType<typeof ask>>;
    try {
      st = await ask(arbiter);
    } catch (e) {
      throw new CustosError('cosigners_unavailable', `${arbiter}, which decides that refresh of ${label} first, did not answer (${(e as Error).message.slice(0, 160)}): nothing was recorded here.`, { tag: 'unreachable' });
    }
    if (!st.held) {
      const others = pending.members.filter((m) => m !== arbiter && m !== this.peers.self);
      const answers = await Promise.allSettled(others.map(ask));
      const anyCommitted = answers.some((a) => a.status === 'fulfilled' && holdsCommit(a.value));
      if (decision === 'commit' && anyCommitted) return;
      if (decision === 'abort' && !anyCommitted && answers.every((a) => a.status === 'fulfilled')) return;
      throw new CustosError(
        'conflict',
        decision === 'commit'
          ? `${arbiter}, which decides that refresh of ${label} first, holds nothing of the key (lost, and a node answering in its place), and no other participant holds commit: it can only be aborted. Nothing was recorded here.`
          : `${arbiter}, which decides that refresh of ${label} first, holds nothing of the key, and ${anyCommitted ? 'a participant holds commit: finish it with --resume' : 'not every participant answered (one could hold commit): run it again when they do'}. Nothing was recorded here.`,
      );
    }
    const ok = decision === 'commit' ? holdsCommit(st) : st.aborted === true || (st.retiring === true && st.decision === 'abort') || (!st.retiring && !st.applied);
    if (!ok) {
      const where = st.applied ? 'applied it' : st.retiring ? `holds ${String(st.decision ?? 'no decision yet')}` : 'never retired its share for it';
      throw new CustosError('conflict', `${arbiter}, which decides that refresh of ${label} first, ${where}: ${decision} was not recorded here.`);
    }
  }

  /** Gives the retired share back, once this node has the `abort` decision for that refresh. */
  private async unretire(from: string, requestId: string, session: string, b: ClusterAnswer): Promise<ClusterAnswer> {
    const label = labelOf(b);
    const v = this.vault();
    const held = await v.getKey(label).catch(() => null);
    if (!held || held.state === 'destroyed') return { unretired: false };
    const { key, t } = await v.describeThreshold(this.ctx(from, requestId), label, true);
    if (t.members[from] === undefined) throw new CustosError('forbidden', `${from} is not a member of ${label}'s key set.`);
    if (key.attributes[RETIRING] !== session) return { unretired: false };
    // This holder's own abort is enough: an apply anywhere needs every participant's commit, this
    // one's included, which can now never be given. (unretireShare checks the decision.)
    return { unretired: await v.unretireShare(this.ctx(from, requestId), label, session) };
  }

  /** What this node holds for a refresh, for another member checking before it acts. */
  private async state(from: string, requestId: string, session: string, b: ClusterAnswer): Promise<ClusterAnswer> {
    const label = labelOf(b);
    const v = this.vault();
    const held = await v.getKey(label).catch(() => null);
    if (!held || held.state === 'destroyed') return { held: false };
    const { key, t } = await v.describeThreshold(this.ctx(from, requestId), label, true);
    const pending = v.pendingRefresh(key);
    if (t.members[from] === undefined && !(pending?.members ?? []).includes(from)) throw new CustosError('forbidden', `${from} is not a member of ${label}'s key set.`);
    const retiring = key.attributes[RETIRING] === session;
    return { held: true, retiring, decision: retiring ? (key.attributes[DECISION] ?? null) : null, applied: key.attributes[APPLIED] === session, aborted: key.attributes[ABORTED] === session, ...(retiring && pending?.arbiter ? { arbiter: pending.arbiter } : {}) };
  }

  /**
   * Before a holder applies, it asks every other participant itself: each must hold commit or
   * have applied. A member that does not answer stops it: a new share is used only when
   * everyone concerned is known to have committed. (Taking an old share back needs only the
   * holder's own abort: see unretire.)
   */
  private async verifyAllCommitted(key: import('../core/types.js').KeyRecord, session: string): Promise<void> {
    // The refresh's participants are the members of its new key set (its dealers are among them;
    // a member being replaced took no part and holds only its old share, alone below t).
    const pending = this.vault().pendingRefresh(key);
    const others = (pending?.members ?? []).filter((m) => m !== this.peers.self);
    const answers = await Promise.allSettled(others.map((m) => this.peers.call(m, '/v1/cluster/refresh/state', { session, label: key.label }) as Promise<RefreshState>));
    // Every participant's own answer counts, and none is taken as proof for the others: a
    // participant could tell one holder "applied" and another "aborted".
    const wrong: string[] = [];
    answers.forEach((a, i) => {
      const m = others[i]!;
      if (a.status === 'rejected') return wrong.push(`${m} (${(a.reason as Error).message.slice(0, 120)})`);
      const st = a.value;
      if (!st.held) return; // holds nothing of the key: no share to split with
      // (A participant lying about itself holds one share: it cannot make two key sets of honest ones.)
      if (!holdsCommit(st)) wrong.push(`${m} (${st.retiring ? `decided ${String(st.decision ?? 'nothing yet')}` : 'not retired by it'})`);
    });
    if (wrong.length) throw new CustosError('conflict', `Not every member agrees to apply that refresh yet: ${wrong.join('; ')}. Nothing changed here.`);
  }

  /** `refresh/apply` with nothing in memory: the durable new share applied (a resume). */
  private async resumeApply(from: string, requestId: string, session: string, b: ClusterAnswer): Promise<ClusterAnswer> {
    const label = labelOf(b);
    const v = this.vault();
    const { key } = await v.describeThreshold(this.ctx(from, requestId), label, true);
    const pending = v.pendingRefresh(key);
    if (!pending || pending.session !== session) throw new CustosError('threshold_round', `This node holds no new share of ${label} from that refresh (it did not finish here: give it one with --replace ${this.peers.self}=${this.peers.self}).`);
    if (!pending.members.includes(from)) throw new CustosError('forbidden', `${from} is not a member of ${label}'s new key set.`);
    // Not on anyone's word: every other member, asked directly, must hold commit or have applied.
    if (key.attributes[RETIRING] === session) await this.verifyAllCommitted(key, session);
    const applied = await v.applyRetired(this.ctx(from, requestId), label, session);
    return { public_key: bytesToHex(applied.publicKey), applied: true };
  }

  private abandon(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    for (const v of Object.values(s.values ?? {})) wipe(v);
    for (const r of s.received.values()) wipe(r.value);
    if (s.pending) wipe(s.pending.share);
    this.sessions.delete(id);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, s] of this.sessions) if (s.expires < now) this.abandon(id);
  }

  destroy(): void {
    clearInterval(this.sweeper);
    for (const id of [...this.sessions.keys()]) this.abandon(id);
  }
}

/** The key label a refresh step names (bounded; an absent one names no key). */
function labelOf(b: ClusterAnswer): string {
  return typeof b.label === 'string' ? b.label.slice(0, 128) : '';
}

function fail(m: string): never {
  throw bad(m);
}

const MAX_HEIGHT = 2n ** 63n - 1n;

/** A dealer's positions, bounded like any watermark (a height CometBFT can reach, a round an int32). */
function parseWatermarks(answer: ClusterAnswer): Array<{ chainId: string; height: bigint; round: number; step: number }> {
  const wms = Array.isArray(answer.watermarks) ? answer.watermarks.slice(0, 64) : [];
  return wms.flatMap((w) => {
    const o = w as Record<string, unknown>;
    if (typeof o.chain_id !== 'string' || !/^[\x21-\x7e]{1,50}$/.test(o.chain_id) || typeof o.height !== 'string' || !/^\d{1,19}$/.test(o.height)) return [];
    const height = BigInt(o.height);
    if (height > MAX_HEIGHT || !Number.isInteger(o.round) || (o.round as number) < 0 || (o.round as number) > 2 ** 31 - 1 || !Number.isInteger(o.step) || (o.step as number) < 0 || (o.step as number) > 3) return [];
    return [{ chainId: o.chain_id, height, round: o.round as number, step: o.step as number }];
  });
}

/** One hash of every dealer's commitments, in dealer order, as a member saw them. */
function transcriptOf(s: Session, commitments: Record<string, Uint8Array[]>): string {
  return createHash('sha256')
    .update(JSON.stringify({ label: s.label, key: bytesToHex(s.publicKey), purpose: s.purpose, min: s.min, dealers: s.dealers, receivers: s.receivers, commitments: s.dealers.map((d) => commitments[d]!.map(bytesToHex)) }))
    .digest('hex');
}
