/**
 * `[cluster]` at start: this node's client certificate and key (checked as the API's own are:
 * readable, private, matching, current) and the CA its peers' server certificates chain to.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import type { Vault } from '../vault/vault.js';
import { Cluster } from '../cluster/cluster.js';
import { Peers, type ClusterConfig } from '../cluster/peers.js';
import { loadTls } from './tls.js';

export function startCluster(dataDir: string, cfg: ClusterConfig, vault: () => Vault): Cluster {
  const pair = loadTls({ cert: resolve(dataDir, cfg.clientCert), key: resolve(dataDir, cfg.clientKey) });
  const caPath = resolve(dataDir, cfg.ca);
  let ca: Buffer;
  try {
    ca = readFileSync(caPath);
    if (!new X509Certificate(ca).ca) throw new Error('not a CA');
  } catch {
    (pair.key as Buffer).fill(0);
    throw new CustosError('config_invalid', `cluster.ca ${caPath} is not a readable PEM CA certificate (the CA the peers' server certificates chain to).`);
  }
  return new Cluster(new Peers(cfg, { cert: pair.cert as Buffer, key: pair.key as Buffer, ca }), vault);
}

/** The SHA-256 of this node's client certificate: what its peers put in certificate_sha256. */
export function clusterIdentity(dataDir: string, cfg: ClusterConfig): { name: string; certificateSha256: string } {
  const path = resolve(dataDir, cfg.clientCert);
  try {
    return { name: cfg.name, certificateSha256: new X509Certificate(readFileSync(path)).fingerprint256.replace(/:/g, '').toLowerCase() };
  } catch {
    throw new CustosError('config_invalid', `cluster.client_cert ${path} is not a readable PEM certificate.`);
  }
}
