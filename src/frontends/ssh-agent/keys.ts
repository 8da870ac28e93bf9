/**
 * Between SSH's key and signature formats and the vault's: the public key blob of a vault
 * key, the vault import of a key added with `ssh-add`, the SSH signature blob of a vault
 * signature, and verification of a server's session-bind signature.
 */
import { createHash, createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { CustosError } from '../../core/errors.js';
import type { Algorithm, HashName, KeyRecord } from '../../core/types.js';
import { ALGORITHM_INFO, publicKeyFromSecret, validateSecret } from '../../crypto/algorithms.js';
import { equalBytes } from '../../core/bytes.js';
import { rsaKeyFromParts, sshPublicKeyBlob, SshReader } from '../../crypto/openssh.js';
import { ecdsaSigBlob, encodePublicKeyBlob, encodeSshSignature, isCertificate, KEY_ED25519_EXPANDED, MAX_FRAME, parsePublicKeyBlob, publicKeyBlobOf, SSH_AGENT_RSA_SHA2_256, SSH_AGENT_RSA_SHA2_512, type AgentPrivateKey } from './codec.js';
import { sha256hex } from '../../crypto/digest.js';

/** Vault algorithms an agent client can sign with. */
export function sshCapable(alg: Algorithm): boolean {
  return alg === 'ed25519' || alg === 'ed25519-expanded' || alg === 'p256' || ALGORITHM_INFO[alg].family === 'rsa';
}

/** The SSH public key blob of a vault key (the certificate, for a key added with one). */
export function blobOf(k: KeyRecord): Uint8Array {
  const cert = k.attributes['ssh.certificate'];
  if (typeof cert === 'string') return new Uint8Array(Buffer.from(cert, 'base64'));
  if (k.algorithm === 'ed25519' || k.algorithm === 'ed25519-expanded') return sshPublicKeyBlob({ algorithm: 'ed25519', publicKey: k.publicKey });
  if (k.algorithm === 'p256') return sshPublicKeyBlob({ algorithm: 'p256', publicKey: k.publicKey });
  return sshPublicKeyBlob({ algorithm: 'rsa', spki: k.publicKey });
}

/** A key blob's SHA-256, in hex. */
export const fingerprint = sha256hex;

/** The fingerprint `ssh-add -l` and `ssh-keygen -l` print (SHA256:, unpadded base64), for logs and audit. */
export function sshFingerprint(blob: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** RSA sizes the vault holds (its rsa-2048/3072/4096 algorithms). */
const RSA_BITS = new Set([2048, 3072, 4096]);

/** The size of an RSA modulus given as an unsigned big-endian magnitude. */
export function rsaBits(n: Uint8Array): number {
  let i = 0;
  while (i < n.length && n[i] === 0) i++;
  return i === n.length ? 0 : (n.length - i) * 8 - Math.clz32(n[i]!) + 24;
}

/**
 * What the vault imports for a key added over the protocol; `null` when the vault cannot
 * hold it (P-384, P-521, RSA of another size). Throws when the key's parts are inconsistent.
 */
export function importableOf(k: AgentPrivateKey): { algorithm: Algorithm; format: 'raw' | 'pkcs8'; material: Uint8Array; publicKey?: Uint8Array } | null {
  if (k.keyType === 'ssh-rsa' && !RSA_BITS.has(rsaBits(k.n))) return null;
  if (k.keyType === 'ssh-rsa-cert-v01@openssh.com' && k.cert.key.keyType === 'ssh-rsa' && !RSA_BITS.has(rsaBits(k.cert.key.n))) return null;
  switch (k.keyType) {
    case 'ssh-ed25519':
    case 'ssh-ed25519-cert-v01@openssh.com':
      return { algorithm: 'ed25519', format: 'raw', material: k.seed.slice(), publicKey: k.publicKey };
    case 'ecdsa-sha2-nistp256':
      return { algorithm: 'p256', format: 'raw', material: k.d.slice() };
    case 'ecdsa-sha2-nistp256-cert-v01@openssh.com':
      return { algorithm: 'p256', format: 'raw', material: k.d.slice() };
    case 'ssh-rsa': {
      const { pkcs8, bits } = rsaKeyFromParts(k);
      return { algorithm: `rsa-${bits}` as Algorithm, format: 'pkcs8', material: pkcs8 };
    }
    case 'ssh-rsa-cert-v01@openssh.com': {
      const cert = k.cert.key;
      if (cert.keyType !== 'ssh-rsa') return null;
      const { pkcs8, bits } = rsaKeyFromParts({ n: cert.n, e: cert.e, d: k.d, iqmp: k.iqmp, p: k.p, q: k.q });
      return { algorithm: `rsa-${bits}` as Algorithm, format: 'pkcs8', material: pkcs8 };
    }
    case KEY_ED25519_EXPANDED:
      return { algorithm: 'ed25519-expanded', format: 'raw', material: k.expandedSecret.slice(), publicKey: k.publicKey };
    default:
      // P-384/P-521: the vault has no such curve yet.
      return null;
  }
}

/** What is wrong with an added key, in the words of its audit reason code. */
export type AddedKeyFault = 'invalid_key' | 'key_mismatch' | 'invalid_certificate';

/**
 * Whether an added key is what it claims: the private part is a valid key, the public key
 * derived from it equals the key's (or its certificate's) public key, and a certificate
 * carries a valid signature of its CA (PROTOCOL.certkeys: the signature covers everything
 * before it). Returns null when it is, else which of these failed, so that a bad CA
 * signature is never reported as a key mismatch.
 */
export function checkAddedKey(k: AgentPrivateKey, imp: { algorithm: Algorithm; material: Uint8Array }): AddedKeyFault | null {
  let derivedBlob: Uint8Array;
  try {
    validateSecret(imp.algorithm, imp.material);
    const derived = publicKeyFromSecret(imp.algorithm, imp.material);
    derivedBlob =
      imp.algorithm === 'p256'
        ? sshPublicKeyBlob({ algorithm: 'p256', publicKey: derived })
        : ALGORITHM_INFO[imp.algorithm].family === 'rsa'
          ? sshPublicKeyBlob({ algorithm: 'rsa', spki: derived })
          : sshPublicKeyBlob({ algorithm: 'ed25519', publicKey: derived });
  } catch {
    return 'invalid_key';
  }
  if ('certificate' in k) {
    if (!equalBytes(derivedBlob, encodePublicKeyBlob(k.cert.key))) return 'key_mismatch';
    const signed = k.certificate.subarray(0, k.certificate.length - 4 - k.cert.signature.length);
    return verifyHostSignature(k.cert.signatureKey, signed, k.cert.signature) ? null : 'invalid_certificate';
  }
  return equalBytes(derivedBlob, publicKeyBlobOf(k)) ? null : 'key_mismatch';
}

/**
 * How an RSA signature is requested: flags pick the hash (RFC 8332 §3.2); 0 means legacy
 * SHA-1. With both SHA-2 flags set, SHA-256 wins: RFC 8332 does not say, and OpenSSH's agent
 * tests SSH_AGENT_RSA_SHA2_256 before SSH_AGENT_RSA_SHA2_512 (ssh-agent.c agent_decode_alg,
 * since SHA-2 signatures arrived in 7.2; hardening.test.ts compares with 9.2's agent), so a
 * client that sends 6 gets the same algorithm from either agent.
 */
export function rsaHashFor(flags: number): { hash: HashName; name: string } {
  if (flags & SSH_AGENT_RSA_SHA2_256) return { hash: 'sha256', name: 'rsa-sha2-256' };
  if (flags & SSH_AGENT_RSA_SHA2_512) return { hash: 'sha512', name: 'rsa-sha2-512' };
  return { hash: 'sha1', name: 'ssh-rsa' };
}

/** The SSH signature blob for a vault signature (ECDSA arrives as raw r‖s). */
export function sshSignature(alg: Algorithm, signature: Uint8Array, rsaName: string): Uint8Array {
  if (alg === 'ed25519' || alg === 'ed25519-expanded') return encodeSshSignature('ssh-ed25519', signature);
  if (alg === 'p256') return encodeSshSignature('ecdsa-sha2-nistp256', ecdsaSigBlob(signature));
  return encodeSshSignature(rsaName, signature);
}

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const CURVES: Record<string, { crv: string; hash: string; size: number }> = {
  nistp256: { crv: 'P-256', hash: 'sha256', size: 32 },
  nistp384: { crv: 'P-384', hash: 'sha384', size: 48 },
  nistp521: { crv: 'P-521', hash: 'sha512', size: 66 },
};

function hostKeyObject(blob: Uint8Array): { key: KeyObject; type: string; curve?: string } {
  // A host certificate (ssh binds kex->initial_hostkey, the certificate when the server has
  // one): the signature is made by the certified key.
  const parsed = parsePublicKeyBlob(blob);
  if (isCertificate(parsed)) blob = encodePublicKeyBlob(parsed.key);
  const r = new SshReader(blob, MAX_FRAME);
  const type = Buffer.from(r.string('key type')).toString('latin1');
  if (type === 'ssh-ed25519') {
    const pk = r.string('ed25519 key');
    if (pk.length !== 32) throw new Error('ed25519 key length');
    return { key: createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, pk]), format: 'der', type: 'spki' }), type };
  }
  if (type.startsWith('ecdsa-sha2-')) {
    const curve = Buffer.from(r.string('curve')).toString('latin1');
    const c = CURVES[curve];
    const q = r.string('point');
    if (!c || q.length !== 1 + 2 * c.size || q[0] !== 4) throw new Error('ecdsa point');
    const jwk = { kty: 'EC', crv: c.crv, x: Buffer.from(q.subarray(1, 1 + c.size)).toString('base64url'), y: Buffer.from(q.subarray(1 + c.size)).toString('base64url') };
    return { key: createPublicKey({ key: jwk, format: 'jwk' }), type, curve };
  }
  if (type === 'ssh-rsa') {
    const e = r.mpint('e');
    const n = r.mpint('n');
    return { key: createPublicKey({ key: { kty: 'RSA', n: Buffer.from(n).toString('base64url'), e: Buffer.from(e).toString('base64url') }, format: 'jwk' }), type };
  }
  throw new Error(`host key type ${type.slice(0, 40)}`);
}

/**
 * Checks a session-bind: the server's signature over the session id (the exchange hash H)
 * with its host key, as the server sent it in the key exchange (RFC 4253 §8, RFC 5656 §4).
 */
export function verifyHostSignature(hostKeyBlob: Uint8Array, sessionId: Uint8Array, signatureBlob: Uint8Array): boolean {
  try {
    const { key, type, curve } = hostKeyObject(hostKeyBlob);
    const r = new SshReader(signatureBlob, MAX_FRAME);
    const alg = Buffer.from(r.string('signature algorithm')).toString('latin1');
    const sig = r.string('signature');
    r.end('signature');
    if (type === 'ssh-ed25519') return alg === 'ssh-ed25519' && nodeVerify(null, sessionId, key, sig);
    if (type === 'ssh-rsa') {
      const hash = alg === 'rsa-sha2-512' ? 'sha512' : alg === 'rsa-sha2-256' ? 'sha256' : null;
      return hash !== null && nodeVerify(hash, sessionId, key, sig);
    }
    const c = CURVES[curve!]!;
    if (alg !== type) return false;
    const rs = new SshReader(sig, MAX_FRAME);
    const rr = rs.mpint('r');
    const ss = rs.mpint('s');
    rs.end('ecdsa signature');
    if (rr.length > c.size || ss.length > c.size) return false;
    const raw = new Uint8Array(2 * c.size);
    raw.set(rr, c.size - rr.length);
    raw.set(ss, 2 * c.size - ss.length);
    return nodeVerify(c.hash, sessionId, { key, dsaEncoding: 'ieee-p1363' }, raw);
  } catch {
    return false;
  }
}

export function unsupported(what: string): CustosError {
  return new CustosError('unsupported_algorithm', what);
}
