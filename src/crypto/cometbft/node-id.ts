/**
 * CometBFT node ids: the 40-hex-digit name of an Ed25519 identity key, as operators write it
 * in `tcp://<node-id>@host:port` (tmkms `[[validator]] addr`, persistent peers). Pure.
 *
 * A node id is hex(SHA-256(ed25519 public key)[0:20]): `p2p.PubKeyToID` (p2p/key.go) over
 * the ed25519 `Address()` (crypto/ed25519/ed25519.go, `tmhash.SumTruncated`), identical in
 * CometBFT v0.38.x and v1.x. Go's `hex.EncodeToString` writes lowercase; we accept either
 * case and keep lowercase, so ids compare as strings.
 *
 * For privval the id that counts is that of the key the node's privval listener proves in
 * the SecretConnection handshake. Stock CometBFT v0.38/v1 generates that key afresh at every
 * start (privval/utils.go, "TODO: persist this key"; CometBFT #6061, tmkms #599), so it is
 * not the p2p id `cometbft show-node-id` prints from node_key.json.
 */
import { createHash } from 'node:crypto';
import { CustosError } from '../../core/errors.js';

export const NODE_ID_BYTES = 20;
export const ED25519_PUBLIC_KEY_BYTES = 32;

const NODE_ID_RE = /^[0-9a-fA-F]{40}$/;
const PUBLIC_KEY_RE = /^[0-9a-fA-F]{64}$/;

/** The node id of an Ed25519 public key. */
export function nodeIdOf(publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw new CustosError('bad_request', `A node key is a ${ED25519_PUBLIC_KEY_BYTES}-byte Ed25519 public key.`);
  }
  return createHash('sha256').update(publicKey).digest().subarray(0, NODE_ID_BYTES).toString('hex');
}

export function isNodeId(text: string): boolean {
  return NODE_ID_RE.test(text);
}

/**
 * What an operator pins a node to: always its node id, and its public key when that form was
 * given (then the whole key is compared, not just its hash prefix).
 */
export interface NodePin {
  nodeId: string;
  publicKey?: Uint8Array;
}

/**
 * `node_key` in either form: the 40-hex node id everyone else uses, or the 64-hex Ed25519
 * public key. Anything else is `config_invalid`; the value is not echoed (it may be long).
 */
export function parseNodePin(text: string): NodePin {
  if (typeof text === 'string' && NODE_ID_RE.test(text)) return { nodeId: text.toLowerCase() };
  if (typeof text === 'string' && PUBLIC_KEY_RE.test(text)) {
    const publicKey = new Uint8Array(Buffer.from(text, 'hex'));
    return { nodeId: nodeIdOf(publicKey), publicKey };
  }
  throw new CustosError(
    'config_invalid',
    "A node key is the node's id (40 hex digits: the first 20 bytes of SHA-256 of its Ed25519 SecretConnection key) or that public key itself (64 hex digits).",
  );
}
