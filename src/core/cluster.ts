/**
 * What cosigners say to each other (cluster/), and what the HTTP front end needs of a node's
 * cluster to serve it: the routes are `POST /v1/cluster/<step>` for peers (mutual TLS, known
 * by their client certificates) and a few admin routes.
 */
import type { KeyRecord, Principal } from './types.js';

/** Who asked for a signature and what its bytes are, for a backend whose cosigners record and check it. */
export interface SignContext {
  principal: string;
  requestId: string;
  /** What the bytes are: a threshold key's cosigners each check them (a vote against their own watermark). */
  kind?: 'raw' | 'consensus' | 'vote_extension';
}

/** What the threshold backend asks of this node's cluster (cluster/coordinator.ts). */
export interface ThresholdCoordinator {
  /**
   * The aggregate signature over `message`, verified against the group key, made with this
   * node's share (opened on demand) and the shares of enough cosigners; `signed` when
   * cosigners held other sign bytes for a consensus position, a timestamp apart.
   */
  sign(key: KeyRecord, openShare: () => Uint8Array, message: Uint8Array, request?: SignContext): Promise<{ signature: Uint8Array; signed?: Uint8Array }>;
}

/** The steps a peer may call: a ping, the two rounds of a signature, key generation, a dealt share, a refresh. */
export const PEER_STEPS = ['ping', 'commit', 'share', 'dkg/round1', 'dkg/round2', 'dkg/deliver', 'dkg/finish', 'dealt', 'refresh/start', 'refresh/round2', 'refresh/deliver', 'refresh/finish', 'refresh/apply', 'refresh/decide', 'refresh/unretire', 'refresh/state', 'refresh/watermarks'] as const;
export type PeerStep = (typeof PEER_STEPS)[number];

export type ClusterAnswer = Record<string, unknown>;

/** What a member holds for a refresh (`refresh/state`): what resume, abort and apply decide on. */
export interface RefreshState {
  held?: boolean;
  retiring?: boolean;
  decision?: string | null;
  applied?: boolean;
  aborted?: boolean;
  arbiter?: string;
}

/** A member that decided commit for the refresh, or already applied it. */
export const holdsCommit = (st: RefreshState): boolean => st.applied === true || (st.retiring === true && st.decision === 'commit');

export interface ClusterApi {
  readonly name: string;
  /** The peer a verified client certificate (its SHA-256, hex) belongs to, if any. */
  peerOf(certificateSha256: string): string | undefined;
  answer(from: string, requestId: string, step: PeerStep, body: ClusterAnswer): Promise<ClusterAnswer>;
  status(): Promise<ClusterAnswer>;
  keygen(ctx: { principal: Principal; requestId: string }, req: { label: string; algorithm: string; threshold: number; members?: string[]; purpose?: string }): Promise<ClusterAnswer>;
  expect(req: { label: string; kind: 'keygen' | 'split' | 'reshare'; purpose?: string; threshold: number; members: string[]; coordinator: string; algorithm?: string; minutes?: number }): ClusterAnswer;
  refresh(ctx: { principal: Principal; requestId: string }, req: { label: string; replace?: { old: string; new: string }; resume?: boolean; abort?: boolean }): Promise<ClusterAnswer>;
  split(
    ctx: { principal: Principal; requestId: string },
    req: { label: string; format: 'raw' | 'hex' | 'pkcs8' | 'openssh' | 'cometbft'; material: Uint8Array; algorithm?: string; threshold: number; members?: string[]; purpose?: string },
  ): Promise<ClusterAnswer>;
}
