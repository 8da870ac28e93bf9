/**
 * A cluster in one process: real vaults (tmpvault makeVault), the real Cluster, Participant,
 * Coordinator and Refresher, and a fake Peers whose call() routes a JSON round trip to the named
 * node (from = the caller). `reach` models a partition, `intercept` a dropped or altered step.
 * For protocol cases the real-server tests (test/cluster/threshold.test.ts) cannot stage.
 */
import { randomUUID } from 'node:crypto';
import { makeVault, type TestVault } from './tmpvault.js';
import { Cluster } from '../../src/cluster/cluster.js';
import type { Peers } from '../../src/cluster/peers.js';
import { ThresholdBackend } from '../../src/backends/threshold.js';
import { CustosError, isCustosError } from '../../src/core/errors.js';
import type { PeerStep } from '../../src/core/cluster.js';

export interface Node {
  name: string;
  tv: TestVault;
  cluster: Cluster;
  reach: Set<string>;
  /** Optional hook: intercept calls *to* this node. */
  intercept?: (from: string, step: string, body: Record<string, unknown>) => Promise<Record<string, unknown>> | undefined;
}

export async function makeNodes(names: string[]): Promise<{ nodes: Record<string, Node>; close(): Promise<void> }> {
  const nodes: Record<string, Node> = {};
  for (const name of names) {
    let cluster: Cluster | null = null;
    const tv = await makeVault({ backends: [new ThresholdBackend(() => cluster?.coordinator ?? null)] });
    const reach = new Set(names.filter((n) => n !== name));
    const peers = {
      config: { name, clientCert: '', clientKey: '', ca: '', timeoutSeconds: 5, peers: names.filter((n) => n !== name).map((n) => ({ name: n, url: `https://${n}`, certificateSha256: n.padEnd(64, '0') })) },
      get self() {
        return name;
      },
      names: () => [name, ...names.filter((n) => n !== name)],
      has: (n: string) => n !== name && names.includes(n),
      byCertificate: () => undefined,
      async call(peer: string, path: string, body: unknown): Promise<Record<string, unknown>> {
        if (!reach.has(peer)) throw new CustosError('cosigners_unavailable', `Cosigner ${peer} did not answer (partitioned)`, { tag: 'unreachable' });
        const target = nodes[peer]!;
        const step = path.replace('/v1/cluster/', '') as PeerStep;
        const b = JSON.parse(JSON.stringify(body)) as Record<string, unknown>;
        try {
          const hooked = target.intercept?.(name, step, b);
          const r = hooked ? await hooked : await target.cluster.answer(name, randomUUID(), step, b);
          return JSON.parse(JSON.stringify(r));
        } catch (e) {
          if (isCustosError(e)) throw new CustosError(e.code, `Cosigner ${peer}: ${e.message}`, e.tag ? { tag: e.tag } : undefined);
          throw e;
        }
      },
      close() {},
    } as unknown as Peers;
    cluster = new Cluster(peers, () => tv.vault);
    nodes[name] = { name, tv, cluster, reach };
  }
  return {
    nodes,
    close: async () => {
      for (const n of Object.values(nodes)) {
        n.cluster.close();
        await n.tv.dispose();
      }
    },
  };
}

/** Every named member but the coordinator agrees first (custos cluster expect), as test/helpers/cluster.ts agree() does. */
export function agree(nodes: Record<string, Node>, coordinator: string, e: { label: string; kind: 'keygen' | 'split' | 'reshare'; threshold: number; members: string[]; purpose?: string; algorithm?: string }, only?: string[]): void {
  for (const n of Object.values(nodes)) {
    if (n.name === coordinator || !e.members.includes(n.name) || (only && !only.includes(n.name))) continue;
    n.cluster.expect({ ...e, coordinator });
  }
}
