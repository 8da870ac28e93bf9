/**
 * How the HTTP front end authenticates and authorizes: the credentials a request carries (a
 * bearer token, else the client certificate of a mutual-TLS connection) go to the vault, which
 * answers with a principal (accounts/authenticator.ts); each route names the operation it
 * performs, and a route that names none is for admins only (deny by default).
 */
import type { TLSSocket } from 'node:tls';
import { certificateNames, type Credentials, type Operation, type PeerCertificate } from '../../vault/vault.js';

/**
 * The operation each route performs, by method and route pattern. Key routes are checked
 * again by the vault against the key's label and tags; a route absent here is admin-only
 * (tokens, reload, HSM objects, adopting token objects).
 */
export const ROUTE_OPERATIONS: Readonly<Record<string, Operation>> = {
  'GET /v1/keys': 'read',
  'POST /v1/keys': 'create',
  'POST /v1/keys/batch': 'create',
  'POST /v1/keys/import': 'create',
  'POST /v1/keys/public': 'create',
  'POST /v1/keys/hd': 'create',
  'GET /v1/keys/:key': 'read',
  'GET /v1/keys/:key/hd/public': 'read',
  'GET /v1/keys/:key/watermarks/:chain': 'read',
  'PUT /v1/keys/:key/watermarks/:chain': 'manage',
  'POST /v1/keys/:key/disable': 'manage',
  'POST /v1/keys/:key/enable': 'manage',
  'POST /v1/keys/:key/purpose': 'manage',
  'DELETE /v1/keys/:key': 'destroy',
  'POST /v1/keys/:key/sign': 'sign',
  'POST /v1/keys/:key/sign-psbt': 'sign',
  'POST /v1/keys/:key/verify': 'verify',
  'POST /v1/keys/:key/export': 'export',
  'GET /v1/lightning/:key': 'state',
  'PUT /v1/lightning/:key/objects/:object': 'state',
  'GET /v1/lightning/:key/objects/:object': 'state',
  'GET /v1/lightning/:key/objects': 'state',
  'POST /v1/lightning/:key/reconcile': 'state',
  'POST /v1/lightning/:key/restore': 'manage',
  'GET /v1/lightning/:key/hook-key': 'state',
  'POST /v1/lightning/:key/ecdh': 'ecdh',
  'POST /v1/lightning/:key/decrypt': 'decrypt',
  'POST /v1/tor/relay-masters': 'create',
  'POST /v1/tor/relay-masters/import': 'create',
  'POST /v1/tor/:key/relay-cert': 'sign',
  'POST /v1/tor/onion-services': 'create',
  'POST /v1/tor/onion-services/import': 'create',
  'GET /v1/tor/:key/onion': 'read',
  'POST /v1/tor/:key/blind-sign': 'sign',
  'POST /v1/tor/rsa-identities': 'create',
  'POST /v1/tor/rsa-identities/import': 'create',
  'POST /v1/tor/:key/rsa-sign': 'sign',
  'POST /v1/tor/x25519-keys': 'create',
  'POST /v1/tor/x25519-keys/import': 'create',
  'POST /v1/tor/:key/x25519': 'ecdh',
  'GET /v1/lightning/:key/wallet-script': 'sign',
  'GET /v1/lightning/:key/channels/:channel': 'sign',
  'GET /v1/lightning/:key/channels/:channel/points/:index': 'sign',
  'POST /v1/lightning/:key/channels/:channel/setup': 'sign',
  'POST /v1/lightning/:key/channels/:channel/validate-holder': 'sign',
  'POST /v1/lightning/:key/channels/:channel/release-secret': 'sign',
  'POST /v1/lightning/:key/channels/:channel/sign-counterparty': 'sign',
  'POST /v1/lightning/:key/channels/:channel/validate-revocation': 'sign',
  'POST /v1/lightning/:key/channels/:channel/sign-holder': 'sign',
  'POST /v1/lightning/:key/channels/:channel/sign-closing': 'sign',
  'POST /v1/lightning/:key/channels/:channel/sign-justice': 'sign',
  'POST /v1/lightning/:key/channels/:channel/sign-holder-htlc': 'sign',
  'POST /v1/lightning/:key/channels/:channel/sign-counterparty-htlc': 'sign',
  'POST /v1/lightning/:key/channels/:channel/sign-sweep': 'sign',
  'GET /v1/policies': 'policy',
  'POST /v1/policies': 'policy',
  'GET /v1/policies/:id': 'policy',
  'DELETE /v1/policies/:id': 'policy',
  'POST /v1/policies/test': 'policy',
  'GET /v1/approvals': 'approve',
  'POST /v1/approvals/:id/approve': 'approve',
  'POST /v1/approvals/:id/deny': 'approve',
  'GET /v1/privval': 'read',
  'POST /v1/ssh-agents/:name/restore': 'manage',
  'GET /v1/audit': 'audit',
  'GET /v1/audit/status': 'audit',
  'GET /v1/ssh-agents': 'read',
  'POST /v1/accounts': 'manage',
  'GET /v1/accounts/:name': 'manage',
  'POST /v1/accounts/:name/unlock': 'manage',
  'POST /v1/accounts/:name/end-sessions': 'manage',
};

/** What a request carries: `Authorization: Bearer …`, else its connection's client certificate. */
export function credentialsOf(header: string | undefined, socket: unknown, remote: string, requestId: string): Credentials {
  if (header !== undefined) {
    // Anything but a bearer token is an invalid token (and counts as a failed attempt).
    const m = /^Bearer (\S+)$/.exec(header);
    return { token: m ? m[1]! : '', remote, requestId };
  }
  const certificate = peerOf(socket);
  return { ...(certificate ? { certificate } : {}), remote, requestId };
}

/** The client certificate of a TLS connection that asked for one ([api] client_ca), if it sent one. */
export function peerOf(socket: unknown): PeerCertificate | undefined {
  const s = socket as TLSSocket;
  if (typeof s.getPeerX509Certificate !== 'function') return undefined;
  const cert = s.getPeerX509Certificate();
  if (!cert) return undefined;
  let err: unknown = s.authorizationError;
  // Valid at the handshake is not enough for a connection kept alive for hours, or a resumed
  // session: the certificate must be valid at each request.
  const now = Date.now();
  if (!err && (Date.parse(cert.validTo) < now || Date.parse(cert.validFrom) > now)) err = 'CERT_HAS_EXPIRED';
  const error = err ? (typeof err === 'string' ? err : (err as Error).message) : undefined;
  return { authorized: s.authorized === true && !error, ...(error ? { error } : {}), fingerprint: cert.fingerprint256.replace(/:/g, '').toLowerCase(), names: certificateNames(cert.subjectAltName, cert.subject) };
}
