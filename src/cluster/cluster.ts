/**
 * A Custos node as one cosigner among others: what the daemon builds from `[cluster]`, and
 * what the HTTP routes of frontends/http/cluster.ts call.
 *
 *   answer   a peer's call (authenticated by its client certificate): one step of a signing
 *            round, of a key generation, or a dealt share;
 *   keygen   distributed key generation driven from this node: round one everywhere, round two
 *            everywhere (secret shares go member to member), then every member stores its share
 *            and answers with the key set's public key, which must be the same everywhere;
 *   split    a dealer's one-time split of an existing key: parsed here, one share sent to each
 *            member, the whole key never stored;
 *   status   which peers answer, as seen from here.
 */
import { CustosError, isCustosError } from '../core/errors.js';
import { holdsCommit, type ClusterAnswer, type ClusterApi, type PeerStep, type RefreshState } from '../core/cluster.js';
import type { Principal } from '../core/types.js';
import { bytesToHex, wipe } from '../core/bytes.js';
import { VERSION } from '../core/version.js';
import { encodePublic, isThresholdAlgorithm } from '../crypto/frost.js';
import type { ImportFormat } from '../keystore/import.js';
import type { Vault } from '../vault/vault.js';
import { checkMajority, RETIRING } from '../vault/threshold.js';
import { Coordinator } from './coordinator.js';
import { newSession, Participant } from './participant.js';
import { Refresher } from './refresh.js';
import { Consent, type Expectation } from './consent.js';
import type { Peers } from './peers.js';

type Ctx = { principal: Principal; requestId: string };
type Answer = ClusterAnswer;

export class Cluster implements ClusterApi {
  readonly coordinator: Coordinator;
  private readonly participant: Participant;
  private readonly refresher: Refresher;
  readonly consent = new Consent();

  constructor(
    readonly peers: Peers,
    private readonly vault: () => Vault,
  ) {
    this.coordinator = new Coordinator(peers);
    // A faulty cosigner is on the record even when the signature succeeds without it.
    this.coordinator.onBadShare = (key, cosigner) => {
      void Promise.resolve()
        .then(() => this.vault().recordEvent({ principal: { id: `peer:${cosigner}`, kind: 'peer' }, requestId: `bad-share-${Date.now()}` }, 'threshold_bad_share', key, 'failed', `bad_share:${cosigner}`, { cosigner }))
        .catch(() => undefined);
    };
    this.participant = new Participant(peers, vault, this.consent);
    this.refresher = new Refresher(peers, vault, this.consent);
  }

  get name(): string {
    return this.peers.self;
  }

  /** The peer a verified client certificate belongs to. */
  peerOf(certificateSha256: string): string | undefined {
    return this.peers.byCertificate(certificateSha256);
  }

  answer(from: string, requestId: string, step: PeerStep, body: Answer): Promise<Answer> {
    const p = this.participant;
    switch (step) {
      case 'ping':
        return Promise.resolve({ name: this.name, version: VERSION, you: from });
      case 'commit':
        return p.commit(from, requestId, body);
      case 'share':
        return p.share(from, requestId, body);
      case 'dkg/round1':
        return p.dkgRound1(from, body);
      case 'dkg/round2':
        return p.dkgRound2(from, requestId, body);
      case 'dkg/deliver':
        return p.dkgDeliver(from, body);
      case 'dkg/finish':
        return p.dkgFinish(from, requestId, body);
      case 'dealt':
        return p.dealt(from, requestId, body);
      default:
        return this.refresher.answer(from, requestId, step, body);
    }
  }

  /** One step on a member: this node in process, a peer over mutual TLS. */
  private call(member: string, requestId: string, step: PeerStep, body: Answer): Promise<Answer> {
    return member === this.name ? this.answer(this.name, requestId, step, body) : this.peers.call(member, `/v1/cluster/${step}`, body);
  }

  private membersOf(given: string[] | undefined): string[] {
    const names = given?.length ? [...new Set(given)] : this.peers.names();
    if (!names.includes(this.name)) throw new CustosError('bad_request', `The members must include this node (${this.name}): it coordinates.`);
    const unknown = names.filter((n) => n !== this.name && !this.peers.has(n));
    if (unknown.length) throw new CustosError('bad_request', `${unknown.join(', ')} ${unknown.length > 1 ? 'are' : 'is'} not configured as [[cluster.peer]] here.`);
    return names;
  }

  /** This node's operator agrees to a key set a peer will propose (see consent.ts). */
  expect(req: { label: string; kind: Expectation['kind']; purpose?: string; threshold: number; members: string[]; coordinator: string; algorithm?: string; minutes?: number }): Answer {
    if (!req.members.includes(this.name)) throw new CustosError('bad_request', `The members must include this node (${this.name}).`);
    checkMajority(req.purpose ?? 'general', req.threshold, req.members.length);
    const e = this.consent.expect({ ...req, purpose: req.purpose ?? 'general', minutes: req.minutes ?? 15 });
    return { ...e, expires: new Date(e.expires).toISOString() };
  }

  /** Distributed key generation across the members; resolves with the key set's public key. */
  async keygen(ctx: Ctx, req: { label: string; algorithm: string; threshold: number; members?: string[]; purpose?: string }): Promise<Answer> {
    if (!isThresholdAlgorithm(req.algorithm)) throw new CustosError('unsupported_algorithm', 'A threshold key is ed25519 or secp256k1-bip340.');
    const members = this.membersOf(req.members);
    const session = newSession();
    const id = ctx.requestId;
    const all = (step: PeerStep, body: Answer) => settledAll(members, (m) => this.call(m, id, step, body));
    const r1 = await all('dkg/round1', { session, label: req.label, algorithm: req.algorithm, threshold: req.threshold, members, ...(req.purpose ? { purpose: req.purpose } : {}) });
    await all('dkg/round2', { session, round1: r1.map((r) => r.round1) });
    const done = await Promise.allSettled(members.map((m) => this.call(m, id, 'dkg/finish', { session })));
    return this.agreed(req.label, members, req.threshold, done);
  }

  /** A dealer's split of `material` (an import format) into one share per member. */
  async split(ctx: Ctx, req: { label: string; format: ImportFormat; material: Uint8Array; algorithm?: string; threshold: number; members?: string[]; purpose?: string }): Promise<Answer> {
    const members = this.membersOf(req.members);
    const dealt = await this.vault().deal(ctx, { label: req.label, format: req.format, material: req.material, ...(req.algorithm ? { algorithm: req.algorithm } : {}), threshold: req.threshold, members });
    try {
      const pub = encodePublic(dealt.pub);
      const done = await Promise.allSettled(
        members.map((m) =>
          this.call(m, ctx.requestId, 'dealt', { label: req.label, algorithm: dealt.algorithm, public: pub, members: dealt.members, share: bytesToHex(dealt.shares[m]!), ...(req.purpose ? { purpose: req.purpose } : {}) }),
        ),
      );
      return this.agreed(req.label, members, req.threshold, done);
    } finally {
      for (const s of Object.values(dealt.shares)) wipe(s);
    }
  }

  /**
   * A proactive refresh of `label` from this node (a member): every member re-deals its share to
   * every member, or, with `replace`, the surviving members re-deal to themselves and a new one.
   */
  async refresh(ctx: Ctx, req: { label: string; replace?: { old: string; new: string }; resume?: boolean; abort?: boolean }): Promise<Answer> {
    if (req.resume || req.abort) {
      const v = this.vault();
      const { key } = await v.describeThreshold(ctx, req.label, true);
      const pending = v.pendingRefresh(key);
      if (!pending || key.attributes[RETIRING] === undefined) {
        if (req.resume && pending) return this.conclude(ctx, req.label, pending.session, pending.members, 'commit');
        throw new CustosError('conflict', `${req.label} has no refresh in progress on this node.`);
      }
      // The refresh's participants: the members of its new key set.
      return this.conclude(ctx, req.label, pending.session, pending.members, req.resume ? 'commit' : 'abort');
    }
    const { key, t } = await this.vault().describeThreshold(ctx, req.label, true);
    const members = Object.keys(t.members);
    let dealers = members;
    let receivers = members;
    if (req.replace) {
      const { old, new: added } = req.replace;
      if (!members.includes(old)) throw new CustosError('bad_request', `${old} is not a member of ${req.label} (members: ${members.join(', ')}).`);
      // old=old: that member's share is replaced by a new one (it missed a refresh, or is suspect).
      if (added !== old && members.includes(added)) throw new CustosError('bad_request', `${added} is already a member of ${req.label}.`);
      if (old === this.name) throw new CustosError('bad_request', 'Run the replacement from a member that stays.');
      dealers = members.filter((m) => m !== old);
      receivers = added === old ? members : [...dealers, added];
    }
    if (dealers.length < t.pub.signers.min) throw new CustosError('cosigners_unavailable', `A refresh needs at least ${t.pub.signers.min} members holding shares.`);
    this.membersOf([...new Set([...dealers, ...receivers])]);
    const session = newSession();
    const id = ctx.requestId;
    const everyone = [...new Set([...dealers, ...receivers])];
    const onAll = (who: string[], step: PeerStep, body: Answer) => settledAll(who, (m) => this.call(m, id, step, body));
    const started = await onAll(everyone, 'refresh/start', { session, label: req.label, algorithm: t.algorithm, purpose: String(key.attributes.purpose), public_key: bytesToHex(key.publicKey), threshold: t.pub.signers.min, dealers, receivers });
    const commitments = Object.fromEntries(dealers.map((d) => [d, started[everyone.indexOf(d)]!.commitments]));
    await onAll(dealers, 'refresh/round2', { session, commitments });
    await onAll(receivers.filter((r) => !dealers.includes(r)), 'refresh/round2', { session, commitments });
    const finished = await Promise.allSettled(receivers.map((m) => this.call(m, id, 'refresh/finish', { session })));
    try {
      this.agreed(req.label, receivers, t.pub.signers.min, finished, false);
    } catch (e) {
      // Not every receiver finished: abort it everywhere (retired shares come back only once
      // every holder has the abort decision).
      await this.conclude(ctx, req.label, session, everyone, 'abort').catch(() => undefined);
      throw e;
    }
    // Every receiver finished and agreed: decide commit everywhere, then apply.
    await this.conclude(ctx, req.label, session, receivers, 'commit');
    return { label: req.label, public_key: bytesToHex(key.publicKey), threshold: t.pub.signers.min, members: receivers };
  }

  /**
   * Ends a refresh one way or the other, on every member concerned: first the decision is
   * recorded on each (durably, and never changed), and only once every one holds it is the new
   * share applied, or the old one given back. The arbiter records the decision before anyone
   * else, so of two attempts pulling opposite ways the second fails before it records anything.
   */
  private async conclude(ctx: Ctx, label: string, session: string, members: string[], decision: 'commit' | 'abort'): Promise<Answer> {
    const id = ctx.requestId;
    // First, read only: where the refresh stands on every participant. Nothing is recorded
    // unless this decision can be reached everywhere (and an existing decision is followed).
    const states = await Promise.allSettled(members.map((m) => this.call(m, id, 'refresh/state', { session, label })));
    const unreachable = states.map((st, i) => ({ st, m: members[i]! })).filter((x) => x.st.status === 'rejected');
    // An apply needs everyone; an abort goes ahead on those that answer (each holder's own abort
    // is all it needs to take its old share back), and the others follow when they answer.
    if (unreachable.length && decision === 'commit') {
      throw new CustosError('cosigners_unavailable', `Nothing was decided for the refresh of ${label}: ${unreachable.map((u) => named(u.m, (u.st as PromiseRejectedResult).reason).message).join('; ')}. Run custos cluster refresh --label ${label} --resume again when they answer.`);
    }
    const lost = unreachable.map((u) => u.m);
    if (unreachable.length) members = members.filter((m) => !lost.includes(m));
    const st = states.filter((x) => x.status === 'fulfilled').map((x, i) => ({ m: members[i]!, ...((x as PromiseFulfilledResult<Answer>).value as RefreshState) }));
    // The arbiter (the member that started the refresh) records the decision before anyone else.
    const arbiters = [...new Set(st.flatMap((x) => (x.retiring && typeof x.arbiter === 'string' ? [x.arbiter] : [])))];
    // (Every member records the same arbiter at retire, from the same start: two names mean a
    // record was changed outside Custos.)
    if (arbiters.length > 1) throw new CustosError('conflict', `The members of ${label} name different arbiters for that refresh (${arbiters.join(', ')}): a member's record of it was changed outside Custos. Nothing was recorded; check each member's audit log and key attributes (threshold.next).`);
    const arbiter = arbiters[0];
    if (arbiter !== undefined && lost.includes(arbiter)) {
      throw new CustosError(
        'cosigners_unavailable',
        `${arbiter}, which started the refresh of ${label} and records its decision first, did not answer: nothing was recorded. Run this again when it answers. If it is lost for good, start a node under its name and certificate (it holds nothing of the key): a refresh some participant already decided commit then finishes with --resume, any other only with --abort.`,
      );
    }
    // An arbiter that holds nothing (lost, and a node answering in its place) records nothing:
    // the participants stand in for it (refresh.ts followArbiter).
    const arbiterHolds = arbiter !== undefined && st.some((x) => x.m === arbiter && x.held);
    const appliedSomewhere = st.some((x) => x.applied);
    const abortedSomewhere = st.some((x) => x.decision === 'abort' || x.aborted);
    if (decision === 'abort' && st.some(holdsCommit)) {
      throw new CustosError('conflict', `The refresh of ${label} is decided commit${appliedSomewhere ? ' and applied' : ''} on ${st.filter(holdsCommit).map((x) => x.m).join(', ')}: it cannot be aborted; finish it (--resume). Nothing was recorded.`);
    }
    if (decision === 'commit' && !appliedSomewhere) {
      const notReady = st.filter((x) => x.held && !x.retiring);
      if (abortedSomewhere) throw new CustosError('conflict', `The refresh of ${label} is decided abort on ${st.filter((x) => x.decision === 'abort' || x.aborted).map((x) => x.m).join(', ')}: it cannot be applied; abort it (--abort). Nothing was recorded.`);
      if (notReady.length) throw new CustosError('conflict', `The refresh of ${label} did not finish on ${notReady.map((x) => x.m).join(', ')}: it cannot be applied; abort it (--abort). Nothing was recorded.`);
    }
    if (arbiter !== undefined && arbiterHolds) {
      // A losing attempt stops here, before it records anything anywhere.
      try {
        await this.call(arbiter, id, 'refresh/decide', { session, label, decision });
      } catch (e) {
        const now = (await this.call(arbiter, id, 'refresh/state', { session, label }).catch(() => null)) as { retiring?: boolean; decision?: string | null } | null;
        const other = decision === 'commit' ? 'abort' : 'commit';
        if (now?.retiring && now.decision === other) {
          throw new CustosError('conflict', `The refresh of ${label} was decided ${other} at ${arbiter}, its arbiter (another run, at the same moment or before): ${decision} was recorded nowhere. Finish it with custos cluster refresh --label ${label} --${other === 'commit' ? 'resume' : 'abort'}.`);
        }
        throw new CustosError(isCustosError(e) ? e.code : 'internal', `Nothing was recorded for the refresh of ${label}: ${named(arbiter, e).message}`);
      }
    }
    const decided = await Promise.allSettled(members.map((m) => (m === arbiter && arbiterHolds ? Promise.resolve({}) : this.call(m, id, 'refresh/decide', { session, label, decision }))));
    const undecided = decided.map((d, i) => ({ d, m: members[i]! })).filter((x) => x.d.status === 'rejected');
    const verb = decision === 'commit' ? 'apply' : 'abort';
    if (undecided.length) {
      throw new CustosError(
        'cosigners_unavailable',
        `The refresh of ${label} is not ${decision === 'commit' ? 'applied' : 'aborted'} yet: ${undecided.map((f) => named(f.m, (f.d as PromiseRejectedResult).reason).message).join('; ')}. Nothing was ${decision === 'commit' ? 'applied' : 'given back'}; retired shares sign nothing. When they answer: custos cluster refresh --label ${label} --${decision === 'commit' ? 'resume' : 'abort'} (from any member).`,
      );
    }
    const step: PeerStep = decision === 'commit' ? 'refresh/apply' : 'refresh/unretire';
    const done = await Promise.allSettled(members.map((m) => this.call(m, id, step, { session, label })));
    const failed = done.map((d, i) => ({ d, m: members[i]! })).filter((x) => x.d.status === 'rejected');
    if (failed.length) {
      throw new CustosError('cosigners_unavailable', `The refresh of ${label} is decided (${decision}) everywhere, but ${verb} failed on ${failed.map((f) => named(f.m, (f.d as PromiseRejectedResult).reason).message).join('; ')}. Run custos cluster refresh --label ${label} --${decision === 'commit' ? 'resume' : 'abort'} again once they answer${decision === 'commit' ? ' (a new member that lost its share gets one with --replace NAME=NAME)' : ''}.`);
    }
    if (unreachable.length) {
      throw new CustosError('cosigners_unavailable', `The refresh of ${label} is aborted on ${members.join(', ')}; not yet on ${unreachable.map((u) => u.m).join(', ')} (no answer): run custos cluster refresh --label ${label} --abort from one of them once it answers (its share stays retired, signing nothing, until then).`);
    }
    return { label, members, [decision === 'commit' ? 'resumed' : 'aborted']: session };
  }

  /** Every member stored its share of the same key set, or the operator is told who did what. */
  private agreed(label: string, members: string[], threshold: number, done: PromiseSettledResult<Answer>[], stored = true): Answer {
    const failed = done.map((d, i) => ({ d, m: members[i]! })).filter((x) => x.d.status === 'rejected');
    const ok = done.map((d, i) => ({ d, m: members[i]! })).filter((x) => x.d.status === 'fulfilled') as Array<{ d: PromiseFulfilledResult<Answer>; m: string }>;
    if (failed.length) {
      const why = failed.map((f) => named(f.m, (f.d as PromiseRejectedResult).reason).message).join('; ');
      if (!stored) throw new CustosError('cosigners_unavailable', `The refresh of ${label} did not finish: ${why}. It was aborted on every member that answered; a member that did not keeps a retired share (signing nothing) until custos cluster refresh --label ${label} --abort is run from it.`);
      throw new CustosError('cosigners_unavailable', `The key set ${label} is incomplete: ${why}.${ok.length ? ` ${ok.map((o) => o.m).join(', ')} stored a share; destroy it there (custos keys destroy ${label}) before trying again.` : ''}`);
    }
    const keys = new Set(ok.map((o) => `${String(o.d.value.public_key)}/${String(o.d.value.public_sha256)}`));
    if (keys.size !== 1) throw new CustosError('conflict', `The members of ${label} disagree on its key set (${ok.map((o) => `${o.m}: ${String(o.d.value.public_key)}`).join(', ')}); destroy it on every member.`);
    return { label, public_key: ok[0]!.d.value.public_key, threshold, members };
  }

  /** Each peer's answer to a ping over mutual TLS, both ways authenticated. */
  async status(): Promise<Answer> {
    const peers = await Promise.all(
      this.peers.config.peers.map(async (p) => {
        const started = Date.now();
        try {
          const r = await this.peers.call(p.name, '/v1/cluster/ping', {});
          const sameName = r.name === p.name && r.you === this.name;
          return { name: p.name, url: p.url, reachable: true, ms: Date.now() - started, version: r.version, ...(sameName ? {} : { problem: `it calls itself ${String(r.name)} and this node ${String(r.you)}` }) };
        } catch (e) {
          return { name: p.name, url: p.url, reachable: false, problem: isCustosError(e) ? e.message : String(e) };
        }
      }),
    );
    return { name: this.name, peers };
  }

  close(): void {
    this.participant.destroy();
    this.refresher.destroy();
    this.peers.close();
  }
}

/**
 * One step on every member; throws the first failure, but only once every call has ended, so
 * that no step of a failed attempt is still on its way (and, say, takes an agreement an
 * operator gives for the next attempt).
 */
async function settledAll(members: string[], f: (m: string) => Promise<Answer>): Promise<Answer[]> {
  const done = await Promise.allSettled(members.map(f));
  const failed = done.findIndex((d) => d.status === 'rejected');
  if (failed >= 0) throw named(members[failed]!, (done[failed] as PromiseRejectedResult).reason);
  return done.map((d) => (d as PromiseFulfilledResult<Answer>).value);
}

function named(member: string, e: unknown): CustosError {
  if (isCustosError(e)) return e.message.startsWith(`Cosigner ${member}`) ? e : new CustosError(e.code, `${member}: ${e.message}`, e.tag ? { tag: e.tag } : undefined);
  return new CustosError('internal', `${member}: ${(e as Error).message}`);
}
