/**
 * This node as a cosigner answering its peers (the routes of frontends/http/cluster.ts call
 * these; so does this node's own coordinator, in process):
 *
 *   commit / share      the two rounds of a signature (vault/threshold.ts does the work);
 *   dkg round1..finish  distributed key generation: no node ever holds the whole key. Round
 *                       two's secret shares go straight to each recipient over mutual TLS,
 *                       never through the coordinator, each with the sender's hash of the
 *                       round-one transcript, so a coordinator that told members different
 *                       things is caught before any share is stored;
 *   dealt               a share sent by a dealer splitting an existing key once.
 *
 * `from` is always the authenticated peer name (or this node's own name in process).
 */
import { randomUUID } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { bytesToHex, hexToBytes, wipe } from '../core/bytes.js';
import type { Principal } from '../core/types.js';
import type { DKG_Round1, DKG_Round2, DKG_Secret } from '@noble/curves/abstract/frost.js';
import {
  decodeCommitments,
  decodePublic,
  decodeShare,
  encodeCommitments,
  encodePublic,
  frostOf,
  identifierField,
  identifierOf,
  isThresholdAlgorithm,
  MAX_PARTICIPANTS,
  type ThresholdAlgorithm,
} from '../crypto/frost.js';
import type { Vault } from '../vault/vault.js';
import type { Peers } from './peers.js';
import type { Consent } from './consent.js';
import { checkMajority } from '../vault/threshold.js';
import { sha256hex } from '../crypto/digest.js';

export const peerPrincipal = (name: string): Principal => ({ id: `peer:${name}`, kind: 'peer' });

const bad = (m: string) => new CustosError('bad_request', m);
const str = (v: unknown, what: string, max = 256): string => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : fail(`${what} is missing or invalid.`));
function fail(m: string): never {
  throw bad(m);
}

/** A DKG this node takes part in, kept in memory until it finishes or expires. */
interface DkgState {
  coordinator: string;
  label: string;
  algorithm: ThresholdAlgorithm;
  purpose: string;
  min: number;
  members: Record<string, string>;
  secret: DKG_Secret;
  own: DKG_Round1;
  /** Round one of the others, as this node received it, and the hash of the whole transcript. */
  others?: DKG_Round1[];
  transcript?: string;
  /** Round-two packages delivered to this node, by sender, with the sender's transcript hash. */
  received: Map<string, { pkg: DKG_Round2; transcript: string }>;
  expires: number;
}

const DKG_TTL_MS = 120_000;
const MAX_DKGS = 64;

export class Participant {
  private readonly dkgs = new Map<string, DkgState>();
  private readonly sweeper = setInterval(() => this.sweep(), 10_000).unref();

  constructor(
    private readonly peers: Peers,
    private readonly vault: () => Vault,
    private readonly consent: Consent,
  ) {}

  private ctx(from: string, requestId: string) {
    return { principal: peerPrincipal(from), requestId };
  }

  /** Round one of a signature: the cosigner's key must be the one the coordinator means. */
  async commit(from: string, requestId: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const label = str(body.key, 'key', 128);
    const ctx = this.ctx(from, requestId);
    const { round, commitments } = await this.vault().thresholdCommit(ctx, label, str(body.public_key, 'public_key', 200));
    return { round, commitments: encodeCommitments(commitments) };
  }

  /** Round two: this node's signature share, once its own step has committed. */
  async share(from: string, requestId: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const label = str(body.key, 'key', 128);
    const ctx = this.ctx(from, requestId);
    const publicKey = str(body.public_key, 'public_key', 200);
    // The coordinator says which suite; the vault checks the commitments against its own key's.
    const alg = body.algorithm === 'secp256k1-bip340' ? 'secp256k1-bip340' : 'ed25519';
    if (!Array.isArray(body.commitments) || body.commitments.length > MAX_PARTICIPANTS) throw bad('commitments must be a list of at most 16.');
    const commitments = body.commitments.map((c) => decodeCommitments(alg, c));
    const message = Buffer.from(str(body.message, 'message', 1_400_000), 'base64');
    const context: Record<string, string> = { protocol: 'cluster', coordinator: from };
    // What the coordinator says of its own request: its claim, recorded as such.
    if (typeof body.requested_by === 'string') context.coordinator_says_requested_by = body.requested_by.slice(0, 128).replace(/[^\x20-\x7e]/g, '?');
    if (typeof body.request_id === 'string') context.coordinator_request_id = body.request_id.slice(0, 64).replace(/[^\x20-\x7e]/g, '?');
    const kind = body.kind === undefined ? 'raw' : body.kind;
    if (kind !== 'raw' && kind !== 'consensus' && kind !== 'vote_extension') throw bad('kind must be raw, consensus or vote_extension.');
    const r = await this.vault().cosign(ctx, { label, publicKey, round: str(body.round, 'round', 64), message: new Uint8Array(message), commitments, kind, context });
    return 'share' in r ? { share: bytesToHex(r.share) } : { sign_bytes: bytesToHex(r.signBytes) };
  }

  // ---- distributed key generation

  async dkgRound1(from: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.sweep();
    if (this.dkgs.size >= MAX_DKGS) throw new CustosError('rate_limited', 'Too many key generations are open on this cosigner; retry in two minutes.', { tag: 'threshold' });
    const session = str(body.session, 'session', 64);
    if (this.dkgs.has(session)) throw new CustosError('conflict', 'That key generation has already started here.');
    const algorithm = str(body.algorithm, 'algorithm', 32);
    if (!isThresholdAlgorithm(algorithm)) throw bad('algorithm must be ed25519 or secp256k1-bip340.');
    const min = body.threshold;
    if (!Array.isArray(body.members) || body.members.some((m) => typeof m !== 'string')) throw bad('members must be a list of names.');
    const names = body.members as string[];
    if (!Number.isInteger(min) || (min as number) < 2 || (min as number) > names.length || names.length > MAX_PARTICIPANTS) throw bad(`2 ≤ threshold ≤ members ≤ ${MAX_PARTICIPANTS}.`);
    if (!names.includes(this.peers.self) || !names.includes(from)) throw bad('The members must include this node and the coordinator.');
    if (new Set(names).size !== names.length) throw bad('A member is named twice.');
    // Every member must be a cosigner this node knows: shares go to them directly.
    for (const n of names) if (n !== this.peers.self && !this.peers.has(n)) throw bad(`${n} is not a peer of this node.`);
    const members = Object.fromEntries(names.map((n) => [n, identifierOf(algorithm, n)]));
    const label = str(body.label, 'label', 128);
    const purpose = typeof body.purpose === 'string' ? body.purpose : 'general';
    checkMajority(purpose, min as number, names.length);
    // This node's operator agreed to exactly this key set, driven by this peer.
    this.consent.take({ from, self: this.peers.self, label, kind: 'keygen', purpose, threshold: min as number, members: names, algorithm });
    const F = frostOf(algorithm);
    const r1 = F.DKG.round1(members[this.peers.self]!, { min: min as number, max: names.length });
    this.dkgs.set(session, {
      coordinator: from,
      label,
      algorithm,
      purpose,
      min: min as number,
      members,
      secret: r1.secret,
      own: r1.public,
      received: new Map(),
      expires: Date.now() + DKG_TTL_MS,
    });
    return { round1: encodeRound1(r1.public) };
  }

  /** Round two: checks everyone's round one, then sends each member its secret share directly. */
  async dkgRound2(from: string, requestId: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const { id, s } = this.dkgOf(from, body);
    if (s.others) throw new CustosError('conflict', 'Round two of that key generation has already run here.');
    if (!Array.isArray(body.round1) || body.round1.length !== Object.keys(s.members).length) throw bad('round1 must hold every member’s package.');
    const all = body.round1.map((p) => decodeRound1(s.algorithm, p));
    const ownIn = all.find((p) => p.identifier === s.own.identifier);
    if (!ownIn || encodeRound1(ownIn).commitment.join() !== encodeRound1(s.own).commitment.join()) throw bad("round1 does not carry this node's own package as it made it.");
    const others = all.filter((p) => p.identifier !== s.own.identifier);
    const ids = new Set(Object.values(s.members));
    if (others.some((p) => !ids.has(p.identifier)) || new Set(others.map((p) => p.identifier)).size !== others.length) throw bad('round1 names a participant outside the key set, or one twice.');
    const F = frostOf(s.algorithm);
    let packages: Record<string, DKG_Round2>;
    try {
      packages = F.DKG.round2(s.secret, others) as Record<string, DKG_Round2>;
    } catch (e) {
      this.abandon(id);
      throw new CustosError('bad_request', `A participant's round-one package failed its proof of knowledge: ${(e as Error).message}`);
    }
    s.others = others;
    s.transcript = transcriptOf(s, all);
    // Secret shares leave this node now: on the record first.
    await this.vault().recordEvent(this.ctx(from, requestId), 'threshold_dkg_deal', null, 'ok', null, { label: s.label, purpose: s.purpose, threshold: s.min, members: Object.keys(s.members).join(','), transcript_sha256: s.transcript });
    const nameOf = (ident: string) => Object.keys(s.members).find((n) => s.members[n] === ident)!;
    try {
      await Promise.all(
        Object.entries(packages).map(([to, pkg]) => {
          const body2 = { session: id, package: { identifier: pkg.identifier, signing_share: bytesToHex(pkg.signingShare) }, transcript_sha256: s.transcript };
          const recipient = nameOf(to);
          return recipient === this.peers.self ? this.dkgDeliver(this.peers.self, body2) : this.peers.call(recipient, '/v1/cluster/dkg/deliver', body2);
        }),
      );
    } finally {
      for (const pkg of Object.values(packages)) wipe(pkg.signingShare);
    }
    return { delivered: Object.keys(packages).length };
  }

  /** A secret share from another member, straight from it (authenticated by its certificate). */
  async dkgDeliver(from: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = str(body.session, 'session', 64);
    const s = this.dkgs.get(id);
    if (!s || s.expires < Date.now()) throw new CustosError('threshold_round', 'No key generation by that id is open here.');
    const ident = s.members[from];
    if (ident === undefined || from === this.peers.self) throw new CustosError('forbidden', `${from} is not another member of that key generation.`);
    if (s.received.has(from)) throw new CustosError('conflict', `${from} has already delivered its share.`);
    const p = body.package as Record<string, unknown> | undefined;
    if (typeof p !== 'object' || p === null) throw bad('package is missing.');
    if (identifierField(s.algorithm, p.identifier) !== ident) throw bad("The package's identifier is not its sender's.");
    s.received.set(from, { pkg: { identifier: ident, signingShare: decodeShare(s.algorithm, p.signing_share) } as DKG_Round2, transcript: str(body.transcript_sha256, 'transcript_sha256', 64) });
    return { ok: true };
  }

  /** Round three: checks every share received, stores this node's share as a key. */
  async dkgFinish(from: string, requestId: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const { id, s } = this.dkgOf(from, body);
    try {
      if (!s.others || !s.transcript) throw new CustosError('conflict', 'Round two of that key generation has not run here.');
      const expected = Object.keys(s.members).filter((n) => n !== this.peers.self);
      const missing = expected.filter((n) => !s.received.has(n));
      if (missing.length) throw new CustosError('cosigners_unavailable', `No share arrived from ${missing.join(', ')}.`);
      const diverged = expected.filter((n) => s.received.get(n)!.transcript !== s.transcript);
      if (diverged.length) throw new CustosError('conflict', `${diverged.join(', ')} saw another round one than this node: the coordinator told members different things. Nothing was stored.`);
      const F = frostOf(s.algorithm);
      let key;
      try {
        key = F.DKG.round3(s.secret, s.others, expected.map((n) => s.received.get(n)!.pkg));
      } catch (e) {
        throw new CustosError('invalid_key_material', `A share received does not match its sender's commitments: ${(e as Error).message}`);
      }
      try {
        const stored = await this.vault().storeShare(this.ctx(from, requestId), {
          label: s.label,
          algorithm: s.algorithm,
          share: key.secret.signingShare,
          pub: key.public,
          self: this.peers.self,
          members: s.members,
          origin: 'dkg',
          purpose: s.purpose,
        });
        return { public_key: bytesToHex(stored.publicKey), public_sha256: sha256hex(encodePublic(key.public)) };
      } finally {
        wipe(key.secret.signingShare);
      }
    } finally {
      this.abandon(id);
    }
  }

  /** A share from a dealer splitting an existing key: checked against the commitments, then stored. */
  async dealt(from: string, requestId: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const algorithm = str(body.algorithm, 'algorithm', 32);
    if (!isThresholdAlgorithm(algorithm)) throw bad('algorithm must be ed25519 or secp256k1-bip340.');
    const pub = decodePublic(algorithm, body.public);
    const members = body.members as Record<string, string>;
    if (typeof members !== 'object' || members === null || members[from] === undefined) throw bad('The dealer must be a member of the key set.');
    const label = str(body.label, 'label', 128);
    const purpose = typeof body.purpose === 'string' ? body.purpose : 'general';
    this.consent.take({ from, self: this.peers.self, label, kind: 'split', purpose, threshold: pub.signers.min, members: Object.keys(members), algorithm });
    const share = decodeShare(algorithm, body.share);
    try {
      const stored = await this.vault().storeShare(this.ctx(from, requestId), {
        label,
        algorithm,
        share,
        pub,
        self: this.peers.self,
        members,
        origin: 'dealer',
        purpose,
      });
      return { public_key: bytesToHex(stored.publicKey), public_sha256: sha256hex(encodePublic(pub)) };
    } finally {
      wipe(share);
    }
  }

  private dkgOf(from: string, body: Record<string, unknown>): { id: string; s: DkgState } {
    const id = str(body.session, 'session', 64);
    const s = this.dkgs.get(id);
    if (!s || s.expires < Date.now()) throw new CustosError('threshold_round', 'No key generation by that id is open here (expired, finished, or lost in a restart); start it again.');
    if (s.coordinator !== from) throw new CustosError('forbidden', `Only ${s.coordinator}, which started that key generation, drives it.`);
    return { id, s };
  }

  private abandon(id: string): void {
    const s = this.dkgs.get(id);
    if (!s) return;
    frostOf(s.algorithm).DKG.clean(s.secret);
    for (const r of s.received.values()) wipe(r.pkg.signingShare);
    this.dkgs.delete(id);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, s] of this.dkgs) if (s.expires < now) this.abandon(id);
  }

  destroy(): void {
    clearInterval(this.sweeper);
    for (const id of [...this.dkgs.keys()]) this.abandon(id);
  }
}

export const newSession = (): string => randomUUID();

export function encodeRound1(p: DKG_Round1): { identifier: string; commitment: string[]; proof: string } {
  return { identifier: p.identifier, commitment: p.commitment.map(bytesToHex), proof: bytesToHex(p.proofOfKnowledge) };
}

function decodeRound1(alg: ThresholdAlgorithm, v: unknown): DKG_Round1 {
  if (typeof v !== 'object' || v === null) throw bad('A round-one package must be an object.');
  const o = v as Record<string, unknown>;
  if (!Array.isArray(o.commitment) || o.commitment.length < 2 || o.commitment.length > MAX_PARTICIPANTS) throw bad('A round-one package carries 2 to 16 commitments.');
  const point = alg === 'ed25519' ? 64 : 66;
  const hex = (x: unknown, n: number, what: string) => (typeof x === 'string' && x.length === n && /^[0-9a-f]+$/.test(x) ? hexToBytes(x) : fail(`${what} is malformed.`));
  return {
    identifier: identifierField(alg, o.identifier),
    commitment: o.commitment.map((c) => hex(c, point, 'A commitment')),
    proofOfKnowledge: hex(o.proof, 128, 'A proof of knowledge'),
  } as DKG_Round1;
}

/**
 * One hash of round one as a member saw it: what the key set is to be (label, algorithm,
 * purpose, threshold, members) and every package, in identifier order.
 */
function transcriptOf(s: DkgState, all: DKG_Round1[]): string {
  const sorted = [...all].sort((a, b) => (a.identifier < b.identifier ? -1 : 1)).map(encodeRound1);
  return sha256hex(JSON.stringify({ label: s.label, algorithm: s.algorithm, purpose: s.purpose, min: s.min, members: Object.keys(s.members).sort(), round1: sorted }));
}
