/**
 * What cosigners say to each other (cluster/), and what the HTTP front end needs of a node's
 * cluster to serve it: the routes are `POST /v1/cluster/<step>` for peers (mutual TLS, known
 * by their client certificates) and a few admin routes.
 */
import type { Principal } from './types.js';

/** The steps a peer may call: a ping, the two rounds of a signature, key generation, a dealt share, a refresh. */
export const PEER_STEPS = ['ping', 'commit', 'share', 'dkg/round1', 'dkg/round2', 'dkg/deliver', 'dkg/finish', 'dealt', 'refresh/start', 'refresh/round2', 'refresh/deliver', 'refresh/finish', 'refresh/apply'] as const;
export type PeerStep = (typeof PEER_STEPS)[number];

export type ClusterAnswer = Record<string, unknown>;

export interface ClusterApi {
  readonly name: string;
  /** The peer a verified client certificate (its SHA-256, hex) belongs to, if any. */
  peerOf(certificateSha256: string): string | undefined;
  answer(from: string, requestId: string, step: PeerStep, body: ClusterAnswer): Promise<ClusterAnswer>;
  status(): Promise<ClusterAnswer>;
  keygen(ctx: { principal: Principal; requestId: string }, req: { label: string; algorithm: string; threshold: number; members?: string[]; purpose?: string }): Promise<ClusterAnswer>;
  expect(req: { label: string; kind: 'keygen' | 'split' | 'reshare'; purpose?: string; threshold: number; members: string[]; coordinator: string; algorithm?: string; minutes?: number }): ClusterAnswer;
  refresh(ctx: { principal: Principal; requestId: string }, req: { label: string; replace?: { old: string; new: string } }): Promise<ClusterAnswer>;
  split(
    ctx: { principal: Principal; requestId: string },
    req: { label: string; format: 'raw' | 'hex' | 'pkcs8' | 'openssh' | 'cometbft'; material: Uint8Array; algorithm?: string; threshold: number; members?: string[]; purpose?: string },
  ): Promise<ClusterAnswer>;
}
