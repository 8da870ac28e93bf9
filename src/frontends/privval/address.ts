/**
 * A node's privval address, as written in `[[privval]] address`: `tcp://host:port`,
 * `tcp://<node-id>@host:port`, or `unix:///path`. Pure.
 *
 * `tcp://<node-id>@host:port` is the form tmkms operators write (tmkms `[[validator]] addr`,
 * parsed by its `net::Address`, which checks the id after the SecretConnection handshake).
 * The id is the node's SecretConnection identity; the connector refuses a node whose
 * authenticated key does not hash to it. A `unix://` socket has no handshake (CometBFT's
 * `UnixListener.Accept`, privval/socket_listeners.go, does not authenticate), so a node id
 * there would be a pin nothing checks: it is refused rather than ignored.
 */
import { CustosError } from '../../core/errors.js';
import { isNodeId } from '../../crypto/cometbft/node-id.js';

export type PrivvalEndpoint =
  | { kind: 'tcp'; host: string; port: number; /** Pinned node id, lowercase hex. */ nodeId?: string }
  | { kind: 'unix'; path: string };

/** Printable and short enough to quote in an error. */
function quote(address: string): string {
  return JSON.stringify(address.length > 200 ? `${address.slice(0, 200)}…` : address);
}

export function parsePrivvalAddress(address: string): PrivvalEndpoint {
  if (typeof address !== 'string') throw new CustosError('bad_request', 'The privval address must be a string.');
  if (address.startsWith('unix://')) {
    const path = address.slice('unix://'.length);
    if (/^[^/]*@/.test(path)) {
      throw new CustosError(
        'config_invalid',
        `The privval address ${quote(address)} names a node id, but a unix:// socket has no SecretConnection handshake to check it against; use unix:///path without an id, or tcp://<node-id>@host:port.`,
      );
    }
    if (!path.startsWith('/') && !path.startsWith('.')) {
      throw new CustosError('config_invalid', `The privval address ${quote(address)} must be unix:///absolute/path.`);
    }
    return { kind: 'unix', path };
  }
  if (address.startsWith('tcp://')) {
    let url: URL;
    try {
      url = new URL(address);
    } catch {
      throw new CustosError('config_invalid', `The privval address ${quote(address)} is not a valid tcp://host:port.`);
    }
    const port = Number(url.port);
    let host = url.hostname;
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    if (!host || !Number.isInteger(port) || port < 1 || port > 65535 || (url.pathname !== '' && url.pathname !== '/') || url.search || url.hash) {
      throw new CustosError('config_invalid', `The privval address ${quote(address)} must be tcp://host:port or tcp://<node-id>@host:port.`);
    }
    // The userinfo, read from the text itself: URL would percent-decode it and split a
    // password off, and only a bare 40-hex id may stand there.
    const authority = address.slice('tcp://'.length).split(/[/?#]/)[0]!;
    const at = authority.lastIndexOf('@');
    if (at < 0) return { kind: 'tcp', host, port };
    const nodeId = authority.slice(0, at);
    if (!isNodeId(nodeId)) {
      throw new CustosError(
        'config_invalid',
        `The node id in the privval address ${quote(address)} must be 40 hex digits (the first 20 bytes of SHA-256 of the node's Ed25519 SecretConnection key).`,
      );
    }
    return { kind: 'tcp', host, port, nodeId: nodeId.toLowerCase() };
  }
  throw new CustosError('bad_request', `The privval address ${quote(address)} must start with tcp:// or unix://.`);
}
