/**
 * What a channel signer operation (vault/lightning-signer.ts) works out before the vault's step:
 * its plan (the request the channel rules decide, the facts, the digest, how the signature or
 * secret is made), and the BOLT 3 pieces plans share: the channel's parameters, the keys of the
 * counterparty's commitment, per-commitment points and LDK's commitment indexes.
 */
import { CustosError } from '../core/errors.js';
import { bytesToHex } from '../core/bytes.js';
import { derivePublicKey, INITIAL_COMMITMENT_NUMBER, point, revocationPublicKey } from '../lightning/bolt3.js';
import type { ChannelPublicKeys, ChannelSecrets } from '../lightning/channel-keys.js';
import type { ChannelParams, ChannelRequest, ChannelState } from '../lightning/channel-policy.js';
import { OutScript } from '@scure/btc-signer';
import { sha256 } from '@noble/hashes/sha2.js';

export const hex = (b: Uint8Array) => bytesToHex(b);
export const unhex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
export const bad = (m: string) => new CustosError('bad_request', m, { tag: 'lightning_tx' });
export const wsh = (script: Uint8Array) => OutScript.encode({ type: 'wsh', hash: sha256(script) });

/** LDK's commitment index (counting down from 2^48 - 1) as a BOLT 3 number. */
export function numberOfIndex(idx: bigint): number {
  if (typeof idx !== 'bigint' || idx < 0n || idx > INITIAL_COMMITMENT_NUMBER) throw new CustosError('bad_request', 'A commitment index is a 48-bit number.');
  return Number(INITIAL_COMMITMENT_NUMBER - idx);
}

export function checkPoint(b: Uint8Array, what: string): Uint8Array {
  point(b, what);
  return b;
}

/** What an operation hands the step: the request the rules decide, the facts, the digest, and how the answer is made. */
export interface Plan<T> {
  request: ChannelRequest | null;
  /** Facts for the audit entry and the policy documents. */
  facts: Record<string, string>;
  /** The digest a `sign` request is about (policy documents may look at it). */
  digest?: Uint8Array;
  produce: (secrets: ChannelSecrets) => T;
}

export function paramsOf(state: ChannelState): ChannelParams {
  if (!state.params) throw new CustosError('policy_denied', 'The channel has no parameters yet: the node gives them (provide_channel_parameters) before anything is signed.', { tag: 'lightning_params' });
  return state.params;
}

/** The keys of the counterparty's commitment at `pcp` (it broadcasts; this node countersigns). */
export function counterpartyKeys(p: ChannelParams, pub: ChannelPublicKeys, pcp: Uint8Array) {
  return {
    revocationKey: revocationPublicKey(pub.revocation, pcp),
    broadcasterHtlcKey: derivePublicKey(unhex(p.counterparty.htlc), pcp),
    countersignatoryHtlcKey: derivePublicKey(pub.htlc, pcp),
    broadcasterDelayedKey: derivePublicKey(unhex(p.counterparty.delayed), pcp),
  };
}
