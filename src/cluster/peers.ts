/**
 * The other cosigners this node knows: each by name, its API address and the SHA-256 of the
 * client certificate it presents. Outbound, this node calls them over mutual TLS (its own
 * client certificate, their server certificates checked against the cluster CA); inbound, a
 * request on a cluster route is from a peer only if its verified client certificate is the one
 * configured for that peer.
 */
import { CustosError, isCustosError } from '../core/errors.js';
import { Transport } from '../client/transport.js';

/** A cosigner this node talks to (`[[cluster.peer]]`). */
export interface PeerConfig {
  /** Its name in the cluster (its FROST identifier is derived from it). */
  name: string;
  /** Its API, https:// (mutual TLS). */
  url: string;
  /** SHA-256 of the client certificate it presents: how this node knows it is that peer. */
  certificateSha256: string;
}

/** `[cluster]`: this node as one cosigner among others. Relative paths are under the data directory. */
export interface ClusterConfig {
  name: string;
  /** The client certificate and key this node presents to its peers. */
  clientCert: string;
  clientKey: string;
  /** The CA the peers' server certificates chain to (default: api.client_ca). */
  ca: string;
  /** How long a peer may take to answer one step of a round. */
  timeoutSeconds: number;
  peers: PeerConfig[];
}

/** The TLS material of this node's calls to its peers (PEM). */
export interface PeerTls {
  cert: Uint8Array;
  key: Uint8Array;
  ca: Uint8Array;
}

export class Peers {
  private readonly transports = new Map<string, Transport>();

  constructor(
    readonly config: ClusterConfig,
    tls: PeerTls,
  ) {
    for (const p of config.peers) {
      // Never retried: a repeated round step would be a second one.
      this.transports.set(p.name, new Transport({ addr: p.url, ca: tls.ca, cert: tls.cert, key: tls.key, timeoutMs: config.timeoutSeconds * 1000, retries: 0, requireServerAuth: true }));
    }
  }

  get self(): string {
    return this.config.name;
  }

  /** This node and its peers, by name. */
  names(): string[] {
    return [this.config.name, ...this.config.peers.map((p) => p.name)];
  }

  has(name: string): boolean {
    return this.transports.has(name);
  }

  /** The peer whose client certificate has this SHA-256, if any. */
  byCertificate(sha256: string): string | undefined {
    return this.config.peers.find((p) => p.certificateSha256 === sha256)?.name;
  }

  /**
   * POSTs one step of a round to a peer. A peer that cannot be reached, or answers with an
   * error, throws a CustosError whose message names it.
   */
  async call(peer: string, path: string, body: unknown): Promise<Record<string, unknown>> {
    const t = this.transports.get(peer);
    if (!t) throw new CustosError('bad_request', `${peer} is not a peer of this node ([[cluster.peer]]).`);
    const url = this.config.peers.find((p) => p.name === peer)!.url;
    try {
      const res = await t.request('POST', path, body, undefined);
      return Transport.check(res, url) as Record<string, unknown>;
    } catch (e) {
      if (isCustosError(e) && e.tag === 'unreachable') throw new CustosError('cosigners_unavailable', `Cosigner ${peer} (${url}) did not answer: ${e.message}`, { tag: 'unreachable' });
      // A peer's words, bounded and printable, never taken as this node's own.
      if (isCustosError(e)) throw new CustosError(e.code, `Cosigner ${peer}: ${e.message.replace(/[^\x20-\x7e]/g, '?').slice(0, 400)}`, e.tag && /^[a-z0-9_.-]{1,32}$/.test(e.tag) ? { tag: e.tag } : undefined);
      throw e;
    }
  }

  close(): void {
    for (const t of this.transports.values()) t.close();
  }
}
