/**
 * A channel's keys, held by the vault: from the node's BIP32 child at m/9735'/3' (the seed alone
 * gives them again) and the channel's 32-byte keys id (LDK's `channel_keys_id`), each secret is
 * HKDF-SHA256(child secret, salt = keys id, info = "custos-ln-channel-v1/<name>"): the funding
 * key, the revocation, payment, delayed-payment and HTLC base secrets, and the commitment seed
 * (the shachain seed of the per-commitment secrets, BOLT 3).
 */
import { hkdfSync } from 'node:crypto';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { CustosError } from '../core/errors.js';
import { wipe } from '../core/bytes.js';
import { deriveChild, type DerivationCache, type HdMaster } from '../wallet/hd.js';
import { pointOf } from './bolt3.js';
import { OutScript } from '@scure/btc-signer';
import { sha256 } from '@noble/hashes/sha2.js';
import { ripemd160 } from '@noble/hashes/legacy.js';

export const CHANNEL_PATH = "m/9735'/3'";
/**
 * The node's wallet key for what channels pay out to it (a mutual close, justice, claims): a
 * P2WPKH of this child, so the seed alone spends it (any BIP32 wallet, or a Custos PSBT).
 */
export const WALLET_PATH = "m/9735'/4'/0'";

/** The P2WPKH output script of a compressed public key. */
export function p2wpkh(publicKey: Uint8Array): Uint8Array {
  return OutScript.encode({ type: 'wpkh', hash: ripemd160(sha256(publicKey)) });
}
const NAMES = ['funding', 'revocation', 'payment', 'delayed', 'htlc', 'commitment'] as const;
export type ChannelSecretName = (typeof NAMES)[number];

export type ChannelSecrets = Record<ChannelSecretName, Uint8Array>;

export interface ChannelPublicKeys {
  funding: Uint8Array;
  revocation: Uint8Array;
  payment: Uint8Array;
  delayed: Uint8Array;
  htlc: Uint8Array;
}

export function checkKeysId(keysId: string): Uint8Array {
  if (typeof keysId !== 'string' || !/^[0-9a-f]{64}$/.test(keysId)) throw new CustosError('bad_request', 'A channel keys id is 32 bytes, as 64 lowercase hex digits.');
  return Uint8Array.from(Buffer.from(keysId, 'hex'));
}

/** Every secret of a channel; the caller wipes them (wipeSecrets). */
export function channelSecrets(master: HdMaster, keysId: string, cache?: { id: string; cache: DerivationCache }): ChannelSecrets {
  const salt = checkKeysId(keysId);
  const child = deriveChild(master, CHANNEL_PATH, cache);
  try {
    const out = {} as ChannelSecrets;
    for (const name of NAMES) {
      const k = new Uint8Array(hkdfSync('sha256', child.privateKey, salt, `custos-ln-channel-v1/${name}`, 32));
      // A value outside 1..n-1 (probability about 2^-128) is not a key: refuse rather than bias it.
      if (name !== 'commitment' && !secp256k1.utils.isValidSecretKey(k)) throw new CustosError('bad_request', 'This channel keys id gives an invalid key: choose another id.');
      out[name] = k;
    }
    return out;
  } finally {
    wipe(child.privateKey);
  }
}

export function wipeSecrets(s: ChannelSecrets): void {
  for (const name of NAMES) if (s[name]) wipe(s[name]);
}

export function channelPublicKeys(s: ChannelSecrets): ChannelPublicKeys {
  return { funding: pointOf(s.funding), revocation: pointOf(s.revocation), payment: pointOf(s.payment), delayed: pointOf(s.delayed), htlc: pointOf(s.htlc) };
}
