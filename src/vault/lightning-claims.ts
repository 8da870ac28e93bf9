/**
 * The channel signer's plans for the transactions that take a commitment's outputs to the
 * node's wallet once a channel is closing: justice on a revoked commitment, HTLC transactions
 * and claims, and sweeps of the node's own outputs. Each is the plan of the LightningChannels
 * method of the same name (vault/lightning-signer.ts), whose comment says what it signs.
 */
import { CustosError } from '../core/errors.js';
import { equalBytes, wipe } from '../core/bytes.js';
import {
  derivePrivateKey,
  derivePublicKey,
  htlcScript,
  INITIAL_COMMITMENT_NUMBER,
  parseTransaction,
  pointOf,
  revocationPrivateKey,
  revocationPublicKey,
  revokeableScript,
  segwitSighash,
  signDigest,
  type HtlcOutput,
} from '../lightning/bolt3.js';
import { WALLET_PATH, type ChannelPublicKeys, type ChannelSecrets } from '../lightning/channel-keys.js';
import { decideChannel, type ChannelState } from '../lightning/channel-policy.js';
import { OutScript, type Transaction } from '@scure/btc-signer';
import { sha256 } from '@noble/hashes/sha2.js';
import { ripemd160 } from '@noble/hashes/legacy.js';
import { bad, checkPoint, counterpartyKeys, hex, numberOfIndex, paramsOf, unhex, wsh, type Plan } from './lightning-channel-plan.js';

/** What a justice transaction spends: a revoked counterparty commitment's to_local, or one of its HTLC outputs. */
export interface JusticeClaim {
  tx: Uint8Array;
  input: number;
  amount: bigint;
  perCommitmentSecret: Uint8Array;
  htlc?: HtlcOutput;
}

/** The holder's HTLC transaction, of its commitment of LDK index `index`. */
export interface HolderHtlcClaim {
  tx: Uint8Array;
  input: number;
  index: bigint;
  htlc: HtlcOutput;
}

/** A claim of an HTLC output of the counterparty's commitment at `perCommitmentPoint`. */
export interface CounterpartyHtlcClaim {
  tx: Uint8Array;
  input: number;
  amount: bigint;
  perCommitmentPoint: Uint8Array;
  htlc: HtlcOutput;
}

/** A sweep of one of this node's own outputs of a closed channel. */
export interface SweepClaim {
  tx: Uint8Array;
  input: number;
  amount: bigint;
  output: 'to_local' | 'to_remote';
  perCommitmentPoint?: Uint8Array;
}

/** Signs `digest` with the BOLT 3 key derived from a base secret and a per-commitment point (the key wiped after). */
const signTweaked = (digest: Uint8Array, base: (s: ChannelSecrets) => Uint8Array, pcp: Uint8Array) => (s: ChannelSecrets): Uint8Array => {
  const k = derivePrivateKey(base(s), pcp);
  try {
    return signDigest(digest, k);
  } finally {
    wipe(k);
  }
};

function sighash(tx: Transaction, input: number, script: Uint8Array, amount: bigint): Uint8Array {
  if (!Number.isInteger(input) || input < 0 || input >= tx.inputsLength) throw bad(`Input ${input} is not an input of the transaction.`);
  if (amount <= 0n || amount > 21_000_000n * 100_000_000n) throw bad('The amount is not a number of satoshis.');
  return segwitSighash(tx, input, script, amount);
}

/**
 * Every output of a transaction paying the channel's funds back to this node goes to its
 * wallet script, and they are worth the input signed, less a fee: at most a quarter of it, or
 * 10,000 sat when more (a transaction gathering several inputs pays out more than this one).
 */
function paysWallet(tx: Transaction, wallet: Uint8Array, what: string, amount: bigint): void {
  if (tx.outputsLength === 0) throw bad(`The ${what} has no output.`);
  let total = 0n;
  for (let i = 0; i < tx.outputsLength; i++) {
    const o = tx.getOutput(i);
    if (!o.script || !equalBytes(o.script, wallet)) throw new CustosError('policy_denied', `Output ${i} of the ${what} does not pay the node's wallet script (${WALLET_PATH}).`, { tag: 'lightning_destination' });
    total += o.amount ?? 0n;
  }
  const fee = amount / 4n > 10_000n ? amount / 4n : 10_000n;
  if (total < amount - fee) throw new CustosError('policy_denied', `The ${what} pays the wallet ${total} sat of the ${amount} sat it spends here: more than ${fee} sat would go to fees.`, { tag: 'lightning_fee' });
}

/** Justice: the revoked output's script from the counterparty's per-commitment secret, paid to the wallet. */
export function signJustice(req: JusticeClaim, state: ChannelState, pub: ChannelPublicKeys, wallet: Uint8Array): Plan<Uint8Array> {
  const p = paramsOf(state);
  let pcp: Uint8Array;
  try {
    pcp = pointOf(req.perCommitmentSecret);
  } catch {
    throw new CustosError('bad_request', 'A per-commitment secret is a 32-byte secp256k1 secret key.');
  }
  const keys = counterpartyKeys(p, pub, pcp);
  const script = req.htlc ? htlcScript(req.htlc, keys) : revokeableScript(keys.revocationKey, p.holderDelay, keys.broadcasterDelayedKey);
  const tx = parseTransaction(req.tx);
  paysWallet(tx, wallet, 'justice transaction', req.amount);
  const digest = sighash(tx, req.input, script, req.amount);
  return {
    request: null,
    facts: { txid: tx.id, input: String(req.input), amount_sat: req.amount.toString() },
    digest,
    produce: (s) => {
      const k = revocationPrivateKey(s.revocation, req.perCommitmentSecret);
      try {
        return signDigest(digest, k);
      } finally {
        wipe(k);
      }
    },
  };
}

/** The holder's HTLC transaction: the rules first, then its one output, to the delayed key. */
export function signHolderHtlc(req: HolderHtlcClaim, state: ChannelState, pub: ChannelPublicKeys, holderPoint: (idx: bigint) => Uint8Array): Plan<Uint8Array> {
  const p = paramsOf(state);
  const n = numberOfIndex(req.index);
  const tx = parseTransaction(req.tx);
  if (!Number.isInteger(req.input) || req.input < 0 || req.input >= tx.inputsLength) throw bad(`Input ${req.input} is not an input of the transaction.`);
  const spends = Buffer.from(tx.getInput(req.input).txid!).toString('hex');
  decideChannel(state, { op: 'sign_holder_htlc', n, spends }); // the rules before the transaction's shape
  const pcp = holderPoint(req.index);
  const keys = {
    revocationKey: revocationPublicKey(unhex(p.counterparty.revocation), pcp),
    broadcasterHtlcKey: derivePublicKey(pub.htlc, pcp),
    countersignatoryHtlcKey: derivePublicKey(unhex(p.counterparty.htlc), pcp),
    broadcasterDelayedKey: derivePublicKey(pub.delayed, pcp),
  };
  const pays = wsh(revokeableScript(keys.revocationKey, p.counterpartyDelay, keys.broadcasterDelayedKey));
  if (tx.outputsLength !== 1 || !equalBytes(tx.getOutput(0).script ?? new Uint8Array(0), pays)) throw bad("An HTLC transaction of the holder's has one output, to its delayed key (revocable).");
  const digest = sighash(tx, req.input, htlcScript(req.htlc, keys), req.htlc.amountMsat / 1000n);
  return {
    request: { op: 'sign_holder_htlc', n, spends },
    facts: { commitment_number: String(n), txid: tx.id },
    digest,
    produce: signTweaked(digest, (s) => s.htlc, pcp),
  };
}

/** An HTLC claim on the counterparty's commitment: of an unrevoked commitment this node signed, paid to the wallet. */
export function signCounterpartyHtlc(req: CounterpartyHtlcClaim, state: ChannelState, pub: ChannelPublicKeys, wallet: Uint8Array): Plan<Uint8Array> {
  const p = paramsOf(state);
  const pcp = checkPoint(req.perCommitmentPoint, 'The per-commitment point');
  if (!Object.values(state.counterparty.points).includes(hex(pcp))) throw new CustosError('policy_denied', 'The per-commitment point is not that of a counterparty commitment this node signed and that is not revoked.', { tag: 'lightning_commitment' });
  if (req.amount !== req.htlc.amountMsat / 1000n) throw bad('The amount is not the HTLC\'s.');
  const keys = counterpartyKeys(p, pub, pcp);
  const tx = parseTransaction(req.tx);
  paysWallet(tx, wallet, 'HTLC claim', req.amount);
  const digest = sighash(tx, req.input, htlcScript(req.htlc, keys), req.amount);
  return {
    request: null,
    facts: { txid: tx.id, input: String(req.input) },
    digest,
    produce: signTweaked(digest, (s) => s.htlc, pcp),
  };
}

/** A sweep of this node's to_remote, or its to_local on a holder commitment signed for broadcast, to the wallet. */
export function signSweep(req: SweepClaim, state: ChannelState, pub: ChannelPublicKeys, holderPoint: (idx: bigint) => Uint8Array, wallet: Uint8Array): Plan<Uint8Array> {
  const p = paramsOf(state);
  const tx = parseTransaction(req.tx);
  paysWallet(tx, wallet, 'sweep', req.amount);
  if (req.output === 'to_remote') {
    const digest = sighash(tx, req.input, OutScript.encode({ type: 'pkh', hash: ripemd160(sha256(pub.payment)) }), req.amount);
    return { request: null, facts: { txid: tx.id, input: String(req.input) }, digest, produce: (s) => signDigest(digest, s.payment) };
  }
  const pcp = checkPoint(req.perCommitmentPoint ?? new Uint8Array(0), 'The per-commitment point');
  // Only a commitment signed for broadcast (from the first one on, through the latest validated).
  let n = -1;
  for (let m = Math.max(0, state.holder.signed); state.holder.signed >= 0 && m <= state.holder.validated && m - state.holder.signed < 64; m++) {
    if (equalBytes(holderPoint(INITIAL_COMMITMENT_NUMBER - BigInt(m)), pcp)) n = m;
  }
  if (n < 0) throw new CustosError('policy_denied', 'The per-commitment point is not that of a holder commitment signed for broadcast: only its to_local is swept.', { tag: 'lightning_commitment' });
  const script = revokeableScript(revocationPublicKey(unhex(p.counterparty.revocation), pcp), p.counterpartyDelay, derivePublicKey(pub.delayed, pcp));
  const digest = sighash(tx, req.input, script, req.amount);
  return {
    request: null,
    facts: { txid: tx.id, input: String(req.input), commitment_number: String(n) },
    digest,
    produce: signTweaked(digest, (s) => s.delayed, pcp),
  };
}
