/**
 * A cluster of real `custos serve` processes on loopback, formed the way an operator does it:
 * `custos init` on each, one CA (`tls init` on the first, `--ca-from` on the others), a client
 * certificate per node (`tls client`), then `cluster init` and `cluster add-peer` for every
 * other node. Each node listens on its own fixed port, since its peers' configurations name it.
 */
import { createServer } from 'node:net';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { CustosClient } from '../../src/client/client.js';
import { custos, serve, type ServeProcess } from './process.js';

export const CLUSTER_PASSENV = { CUSTOS_PASSPHRASE: 'cluster test passphrase' };

export interface ClusterNode {
  name: string;
  dataDir: string;
  port: number;
  url: string;
  process: ServeProcess | null;
  /** An admin client of this node. */
  client: CustosClient;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function ok(args: string[], env: Record<string, string> = {}): string {
  const r = custos(args, env);
  if (r.status !== 0) throw new Error(`custos ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

export async function makeCluster(dir: string, names: string[]): Promise<{ nodes: ClusterNode[]; node(name: string): ClusterNode; start(name: string): Promise<void>; stop(name: string, signal?: NodeJS.Signals): Promise<void>; close(): Promise<void> }> {
  const first = join(dir, names[0]!);
  const nodes: ClusterNode[] = [];
  for (const name of names) {
    const dataDir = join(dir, name);
    const port = await freePort();
    ok(['init', '--data-dir', dataDir, '--scrypt-log-n', '10', '--admin-token-file', join(dir, `${name}.token`)], CLUSTER_PASSENV);
    ok(['tls', 'init', '--data-dir', dataDir, '--host', '127.0.0.1', '--configure', '--mutual', '--listen', `127.0.0.1:${port}`, ...(name === names[0] ? [] : ['--ca-from', join(first, 'tls')])]);
    ok(['tls', 'client', '--data-dir', first, '--name', name, '--out', join(dataDir, 'cluster-identity')]);
    ok(['cluster', 'init', '--data-dir', dataDir, '--name', name, '--client-cert', join(dataDir, 'cluster-identity', `${name}.pem`), '--client-key', join(dataDir, 'cluster-identity', `${name}.key`)]);
    const url = `https://127.0.0.1:${port}`;
    const client = new CustosClient({ addr: url, token: readFileSync(join(dir, `${name}.token`), 'utf8').trim(), ca: readFileSync(join(first, 'tls', 'ca.pem')) });
    nodes.push({ name, dataDir, port, url, process: null, client });
  }
  for (const n of nodes) {
    for (const p of nodes) {
      if (p === n) continue;
      ok(['cluster', 'add-peer', '--data-dir', n.dataDir, '--name', p.name, '--url', p.url, '--certificate', join(p.dataDir, 'cluster-identity', `${p.name}.pem`)]);
    }
  }
  const node = (name: string) => nodes.find((n) => n.name === name)!;
  const start = async (name: string) => {
    const n = node(name);
    n.process = await serve(['--data-dir', n.dataDir, '--port', String(n.port)], CLUSTER_PASSENV);
  };
  const stop = async (name: string, signal: NodeJS.Signals = 'SIGTERM') => {
    const n = node(name);
    await n.process?.stop(signal);
    n.process = null;
  };
  await Promise.all(names.map(start));
  return {
    nodes,
    node,
    start,
    stop,
    close: async () => {
      for (const n of nodes) n.client.close();
      await Promise.all(names.map((n) => stop(n)));
    },
  };
}

/** Every member but the coordinator agrees to the key set first (custos cluster expect). */
export async function agree(nodes: ClusterNode[], coordinator: string, e: { label: string; kind: 'keygen' | 'split' | 'reshare'; threshold: number; members: string[]; purpose?: string; algorithm?: string }, only?: string[]): Promise<void> {
  for (const n of nodes) {
    if (n.name === coordinator || !e.members.includes(n.name) || (only && !only.includes(n.name)) || !n.process) continue;
    await n.client.clusterExpect({ ...e, coordinator });
  }
}
