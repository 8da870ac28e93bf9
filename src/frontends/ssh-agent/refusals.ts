/**
 * How the agent says no. The client only ever gets SSH_AGENT_FAILURE (RFC 9987 has no
 * reason field), so the cause goes to the operator instead: every refusal is one audit
 * entry (principal `ssh-agent:<name>`, a stable reason code) and one `info` log line that
 * names the real cause and, where a setting decided it, the setting. Details carry public
 * facts only (key type, fingerprints, hashes): never a passphrase, PIN, private key or the
 * bytes a client asked to have signed.
 */
import { sha256hex } from '../../crypto/digest.js';
import { printable } from '../../core/text.js';
import type { AuditDraft, KeyRecord } from '../../core/types.js';
import { SshReader } from '../../crypto/openssh.js';
import { AgentCodecError, AgentMessage, MAX_FRAME, publicKeyBlobOf, type AgentPrivateKey, type AgentRequest } from './codec.js';
import { sshFingerprint } from './keys.js';

/** Audit operations the agent writes itself (the vault writes `sign`, `import`, `destroy` ... for what reaches it). */
export type AgentOperation = 'sign' | 'agent_add' | 'agent_remove' | 'agent_lock' | 'agent_unlock' | 'agent_session_bind' | 'agent_request';

export type Details = AuditDraft['details'];

export interface Refusal {
  operation: AgentOperation;
  /** Stable code: the audit entry's reason. */
  reason: string;
  key: Pick<KeyRecord, 'id' | 'label'> | null;
  /** The cause, in a sentence an operator can act on. */
  why: string;
  details?: Details;
  /**
   * Logged, not audited: requests that decide nothing about a key (malformed or unknown
   * messages, extension queries), which any local process can send in any number.
   */
  logOnly?: boolean;
}

const WHAT: Record<AgentOperation, string> = {
  sign: 'a sign request',
  agent_add: 'adding a key (ssh-add)',
  agent_remove: 'removing a key (ssh-add -d/-D)',
  agent_lock: 'locking (ssh-add -x)',
  agent_unlock: 'unlocking (ssh-add -X)',
  agent_session_bind: 'a session-bind',
  agent_request: 'a request',
};

export function refusalLine(socket: string, r: Refusal): string {
  return `ssh-agent "${socket}" refused ${WHAT[r.operation]}: ${r.why}`;
}

/** A setting as the operator writes it: `allow_confirm = false in [[ssh_agent]] "default"`. */
export function setting(socket: string, assignment: string): string {
  return `${assignment} in [[ssh_agent]] "${socket}"`;
}

export { sha256hex };

/** Public facts of a key a client sent to be added. */
export function addedKeyDetails(key: AgentPrivateKey): Details {
  let fp = '';
  try {
    fp = sshFingerprint(publicKeyBlobOf(key));
  } catch {
    // A key whose public part cannot be encoded is refused anyway; its type still says enough.
  }
  return { key_type: printable(key.keyType, 64), ...(fp ? { key_fingerprint: fp } : {}) };
}

/**
 * While locked, only UNLOCK, a (empty) listing and session-bind are served. `key` is the
 * vault key a sign or remove request names, when the agent has one with that blob.
 */
export function lockedRefusal(req: AgentRequest, key: Pick<KeyRecord, 'id' | 'label'> | null): Refusal {
  const why = 'the agent is locked (ssh-add -X unlocks it)';
  switch (req.type) {
    case 'sign_request':
      return { operation: 'sign', reason: 'agent_locked', key, why, details: { key_fingerprint: sshFingerprint(req.keyBlob), message_sha256: sha256hex(req.data) } };
    case 'add_identity':
    case 'add_id_constrained':
      return { operation: 'agent_add', reason: 'agent_locked', key: null, why, details: addedKeyDetails(req.key) };
    case 'remove_identity':
      return { operation: 'agent_remove', reason: 'agent_locked', key, why, details: { key_fingerprint: sshFingerprint(req.keyBlob) } };
    case 'remove_all_identities':
      return { operation: 'agent_remove', reason: 'agent_locked', key: null, why, details: { all: true } };
    case 'lock':
      return { operation: 'agent_lock', reason: 'already_locked', key: null, why: 'the agent is already locked' };
    default:
      return { operation: 'agent_request', reason: 'agent_locked', key: null, why: `the agent is locked (request ${req.type})`, logOnly: true };
  }
}

/**
 * A frame that did not decode. An ADD is audited when the codec could tell why (unsupported
 * key type, a public key that contradicts its secret or certificate, an unknown constraint);
 * anything else is only logged.
 */
export function malformedRefusal(body: Uint8Array, err: AgentCodecError): Refusal {
  const type = body[0];
  if (type === AgentMessage.ADD_IDENTITY || type === AgentMessage.ADD_ID_CONSTRAINED) {
    let keyType = '';
    try {
      keyType = printable(new TextDecoder().decode(new SshReader(body.subarray(1), MAX_FRAME).string('key type')), 64);
    } catch {
      // Not even a key type: malformed_request says it all.
    }
    const reason = err.refusal ?? 'malformed_request';
    const why =
      reason === 'unsupported_algorithm'
        ? `${keyType} keys are not supported (Ed25519, ECDSA P-256, RSA and their certificates are)`
        : `the key does not decode: ${err.message}`;
    // Bytes that are not a key at all decide nothing about one: logged only, so garbage
    // cannot fill the audit log faster than refusals that mean something.
    return { operation: 'agent_add', reason, key: null, why, details: keyType ? { key_type: keyType } : {}, logOnly: reason === 'malformed_request' };
  }
  return { operation: 'agent_request', reason: 'malformed_request', key: null, why: `message type ${type ?? 'none'} does not decode: ${err.message}`, logOnly: true };
}
