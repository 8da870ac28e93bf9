/**
 * The channel signer's plans for the transactions that spend a channel's funding output: its
 * parameters, the holder's and the counterparty's commitments (each parsed here: its number,
 * its outputs, its HTLCs), revocations both ways, and a mutual close. Each is the plan of the
 * LightningChannels method of the same name (vault/lightning-signer.ts), whose comment says
 * what it signs.
 */
import { CustosError } from '../core/errors.js';
import { equalBytes, wipe } from '../core/bytes.js';
import {
  commitmentNumberOf,
  derivePrivateKey,
  derivePublicKey,
  fundingScript,
  htlcTransaction,
  INITIAL_COMMITMENT_NUMBER,
  obscuringFactor,
  onlyInput,
  parseTransaction,
  perCommitmentSecret,
  pointOf,
  revocationPublicKey,
  revokeableScript,
  segwitSighash,
  signDigest,
  verifyDigest,
  type HtlcOutput,
} from '../lightning/bolt3.js';
import { p2wpkh, type ChannelPublicKeys } from '../lightning/channel-keys.js';
import type { ChannelParams, ChannelState } from '../lightning/channel-policy.js';
import type { Transaction } from '@scure/btc-signer';
import { sha256 } from '@noble/hashes/sha2.js';
import { bad, checkPoint, counterpartyKeys, hex, numberOfIndex, paramsOf, unhex, wsh, type Plan } from './lightning-channel-plan.js';

export interface CounterpartyCommitment {
  tx: Uint8Array;
  /** The counterparty's per-commitment point for this commitment (what its keys are derived from). */
  perCommitmentPoint: Uint8Array;
  feeratePerKw: number;
  htlcs: HtlcOutput[];
}

/** A transaction spending the channel's funding output, and only it. */
function fundingSpend(p: ChannelParams, bytes: Uint8Array): Transaction {
  const tx = parseTransaction(bytes);
  const input = onlyInput(tx);
  if (input.txid !== p.fundingTxid || input.index !== p.fundingIndex) throw bad(`The transaction spends ${input.txid}:${input.index}, not the channel's funding output ${p.fundingTxid}:${p.fundingIndex}.`);
  return tx;
}

/** A commitment's number; `holder`: this node broadcasts it. The opener's payment point comes first. */
function numberOf(p: ChannelParams, pub: ChannelPublicKeys, tx: Transaction): number {
  const ours = pub.payment;
  const theirs = unhex(p.counterparty.payment);
  const factor = p.outbound ? obscuringFactor(ours, theirs) : obscuringFactor(theirs, ours);
  return Number(commitmentNumberOf(tx, factor));
}

/** The channel's parameters, checked: a static_remotekey channel, a funding outpoint, its value and contest delays. */
export function setup(params: ChannelParams): Plan<void> {
  if (params.channelType !== 'static_remotekey') throw new CustosError('bad_request', `Channel type ${String(params.channelType).slice(0, 40)} is not signed by Custos: only static_remotekey channels (LDK's default; anchor channels are not supported yet).`, { tag: 'lightning_channel_type' });
  for (const [k, v] of Object.entries(params.counterparty)) checkPoint(unhex(v), `The counterparty's ${k} key`);
  if (!/^[0-9a-f]{64}$/.test(params.fundingTxid) || !Number.isInteger(params.fundingIndex) || params.fundingIndex < 0 || params.fundingIndex > 0xffff) throw new CustosError('bad_request', 'The funding outpoint is a txid (64 hex digits) and an output index.');
  if (!/^[1-9][0-9]{0,15}$/.test(params.valueSat)) throw new CustosError('bad_request', 'The channel value is a positive number of satoshis.');
  for (const d of [params.holderDelay, params.counterpartyDelay]) if (!Number.isInteger(d) || d < 0 || d > 0xffff) throw new CustosError('bad_request', 'A contest delay is 0 to 65535 blocks.');
  return { request: { op: 'setup', params }, facts: { funding: `${params.fundingTxid}:${params.fundingIndex}` }, produce: () => undefined };
}

/** Releasing the holder's per-commitment secret of LDK index `idx` (the rules allow only a revoked one). */
export function releaseSecret(idx: bigint): Plan<Uint8Array> {
  const n = numberOfIndex(idx);
  return { request: { op: 'release_secret', n }, facts: { commitment_number: String(n) }, produce: (s) => perCommitmentSecret(s.commitment, idx) };
}

/** A holder commitment the counterparty signed: its number, whether the signature holds, and what a mutual close is held to. */
export function validateHolder(req: { tx: Uint8Array; counterpartySignature: Uint8Array }, state: ChannelState, pub: ChannelPublicKeys, holderPoint: (idx: bigint) => Uint8Array): Plan<void> {
  const p = paramsOf(state);
  const tx = fundingSpend(p, req.tx);
  const n = numberOf(p, pub, tx);
  const digest = segwitSighash(tx, 0, fundingScript(pub.funding, unhex(p.counterparty.funding)), BigInt(p.valueSat));
  const valid = req.counterpartySignature.length === 64 && verifyDigest(req.counterpartySignature, digest, unhex(p.counterparty.funding));
  // What a mutual close is held to: the counterparty's output (static_remotekey: to its
  // payment point), the fee, and whether HTLCs are pending (outputs that are neither
  // this node's to_local nor the counterparty's to_remote).
  const pcp = holderPoint(INITIAL_COMMITMENT_NUMBER - BigInt(n));
  const toLocal = wsh(revokeableScript(revocationPublicKey(unhex(p.counterparty.revocation), pcp), p.counterpartyDelay, derivePublicKey(pub.delayed, pcp)));
  const toRemote = p2wpkh(unhex(p.counterparty.payment));
  let ourSat = 0n;
  let theirSat = 0n;
  let total = 0n;
  let htlcs = 0;
  for (let i = 0; i < tx.outputsLength; i++) {
    const o = tx.getOutput(i);
    total += o.amount ?? 0n;
    if (o.script && equalBytes(o.script, toRemote)) theirSat += o.amount ?? 0n;
    else if (o.script && equalBytes(o.script, toLocal)) ourSat += o.amount ?? 0n;
    else htlcs++;
  }
  const feeSat = BigInt(p.valueSat) - total;
  if (feeSat < 0n) throw bad('The commitment pays out more than the channel holds.');
  return { request: { op: 'validate_holder', n, txid: tx.id, counterpartySigValid: valid, ourSat, theirSat, feeSat, htlcs }, facts: { commitment_number: String(n), txid: tx.id }, produce: () => undefined };
}

/** The holder's commitment signed for broadcast: its number, and the funding output's sighash. */
export function signHolder(txBytes: Uint8Array, state: ChannelState, pub: ChannelPublicKeys): Plan<Uint8Array> {
  const p = paramsOf(state);
  const tx = fundingSpend(p, txBytes);
  const n = numberOf(p, pub, tx);
  const digest = segwitSighash(tx, 0, fundingScript(pub.funding, unhex(p.counterparty.funding)), BigInt(p.valueSat));
  return { request: { op: 'sign_holder', n, txid: tx.id }, facts: { commitment_number: String(n), txid: tx.id }, digest, produce: (s) => signDigest(digest, s.funding) };
}

/** The counterparty's commitment: every output accounted for, each HTLC transaction's sighash. */
export function signCounterparty(c: CounterpartyCommitment, state: ChannelState, pub: ChannelPublicKeys): Plan<{ signature: Uint8Array; htlcSignatures: Uint8Array[] }> {
  const p = paramsOf(state);
  checkPoint(c.perCommitmentPoint, 'The per-commitment point');
  if (!Number.isInteger(c.feeratePerKw) || c.feeratePerKw < 0 || c.feeratePerKw > 0xffffffff) throw bad('feerate_per_kw is a 32-bit number.');
  if (c.htlcs.length > 966) throw bad('A commitment has at most 966 HTLC outputs.');
  const tx = fundingSpend(p, c.tx);
  const n = numberOf(p, pub, tx);
  const digest = segwitSighash(tx, 0, fundingScript(pub.funding, unhex(p.counterparty.funding)), BigInt(p.valueSat));
  // The counterparty's commitment, from its side: it broadcasts, this node countersigns.
  const pcp = c.perCommitmentPoint;
  const keys = counterpartyKeys(p, pub, pcp);
  const seen = new Set<number>();
  const htlcs = c.htlcs.map((h) => {
    if (seen.has(h.outputIndex)) throw bad(`HTLC output ${h.outputIndex} is listed twice.`);
    seen.add(h.outputIndex);
    const built = htlcTransaction(tx, h, keys, c.feeratePerKw, p.holderDelay);
    return segwitSighash(built.tx, 0, built.script, built.amount);
  });
  // Every other output is the counterparty's to_local, derived from this point (so the
  // point is the commitment's, and this is not a holder commitment), or this node's to_remote.
  const theirToLocal = wsh(revokeableScript(keys.revocationKey, p.holderDelay, keys.broadcasterDelayedKey));
  const ourToRemote = p2wpkh(pub.payment);
  for (let i = 0; i < tx.outputsLength; i++) {
    if (seen.has(i)) continue;
    const o = tx.getOutput(i).script;
    if (!o || !(equalBytes(o, theirToLocal) || equalBytes(o, ourToRemote))) throw bad(`Output ${i} of the commitment is neither the counterparty's to_local for this per-commitment point, nor this node's to_remote, nor a listed HTLC: this is not the counterparty's commitment described.`);
  }
  const signedWith = hex(sha256(new TextEncoder().encode(JSON.stringify({ point: hex(pcp), feerate: c.feeratePerKw, htlcs: c.htlcs.map((h) => [h.offered, h.amountMsat.toString(), h.cltvExpiry, hex(h.paymentHash), h.outputIndex]) }))));
  return {
    request: { op: 'sign_counterparty', n, txid: tx.id, point: hex(pcp), signedWith },
    facts: { commitment_number: String(n), txid: tx.id, htlcs: String(htlcs.length) },
    digest,
    produce: (s) => {
      const htlcKey = derivePrivateKey(s.htlc, pcp);
      try {
        return { signature: signDigest(digest, s.funding), htlcSignatures: htlcs.map((d) => signDigest(d, htlcKey)) };
      } finally {
        wipe(htlcKey);
      }
    },
  };
}

/** A counterparty revocation: the point its secret opens, for the rules to match. */
export function validateRevocation(idx: bigint, secret: Uint8Array): Plan<void> {
  const n = numberOfIndex(idx);
  let point: Uint8Array;
  try {
    point = pointOf(secret);
  } catch {
    throw new CustosError('bad_request', 'A per-commitment secret is a 32-byte secp256k1 secret key.');
  }
  return { request: { op: 'validate_revocation', n, pointOfSecret: hex(point) }, facts: { commitment_number: String(n) }, produce: () => undefined };
}

/** A mutual close: final, and what it pays the wallet, the counterparty and in fees. */
export function signClosing(txBytes: Uint8Array, state: ChannelState, pub: ChannelPublicKeys, wallet: Uint8Array): Plan<Uint8Array> {
  const p = paramsOf(state);
  const tx = fundingSpend(p, txBytes);
  if (onlyInput(tx).sequence !== 0xffffffff || tx.lockTime !== 0) throw bad('A mutual close is final: sequence 0xffffffff, locktime 0 (this looks like a commitment).');
  let othersSat = 0n;
  let walletSat = 0n;
  for (let i = 0; i < tx.outputsLength; i++) {
    const o = tx.getOutput(i);
    if (o.script && equalBytes(o.script, wallet)) walletSat += o.amount ?? 0n;
    else othersSat += o.amount ?? 0n;
  }
  const feeSat = BigInt(p.valueSat) - walletSat - othersSat;
  if (feeSat < 0n) throw bad('The close pays out more than the channel holds.');
  const digest = segwitSighash(tx, 0, fundingScript(pub.funding, unhex(p.counterparty.funding)), BigInt(p.valueSat));
  return { request: { op: 'sign_closing', othersSat, walletSat, feeSat }, facts: { txid: tx.id, others_sat: othersSat.toString(), wallet_sat: walletSat.toString(), fee_sat: feeSat.toString() }, digest, produce: (s) => signDigest(digest, s.funding) };
}
