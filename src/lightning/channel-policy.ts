/**
 * The Lightning channel signer's rules, as a pure function of a channel's signer state and one
 * request: what the vault must hold durably before it releases a signature or a secret.
 *
 *   holder commitments     validated in order (n, then n + 1), each with a valid counterparty
 *                          signature; the secret of n is released only once n + 1 is
 *                          validated (n is then revoked); a revoked commitment is never signed,
 *                          nor any but the latest validated one; once one is signed for
 *                          broadcast (a force close), no secret from it on is ever released and
 *                          no new commitment is validated or signed;
 *   counterparty commitments signed in order (n, then n + 1), at most one ahead of the last
 *                          revoked (so at most two unrevoked); the same n is signed again only
 *                          for the same transaction, point, HTLCs and feerate; revocations
 *                          arrive in order and must open the point that commitment was signed
 *                          with;
 *   closing                a mutual close pays the counterparty no more than its balance in
 *                          the latest validated holder commitment (plus that commitment's fee
 *                          when it opened the channel: it pays the fee), with no HTLC pending,
 *                          a fee of at most that commitment's and a margin, and this node's
 *                          balance to the vault's own wallet script (the caller sums the
 *                          outputs); once one is signed, no commitment is;
 *   parameters             set once (counterparty keys, funding outpoint, value, who opened);
 *                          another set for the same channel is refused.
 *
 * Numbers are BOLT 3 commitment numbers (0, 1, 2, …), not LDK's indices counting down.
 * The state is stored as a Lightning object of the node (`signer:<channel keys id>`),
 * compare-and-set, in the same commit as the audit entry of the operation it allows.
 */
import { CustosError } from '../core/errors.js';

export interface CounterpartyKeys {
  funding: string;
  revocation: string;
  payment: string;
  delayed: string;
  htlc: string;
}

export interface ChannelParams {
  /** BOLT 9 channel type: only `static_remotekey` (LDK's default) is signed; anchors are refused. */
  channelType: 'static_remotekey';
  /** Whether this node opened the channel (its payment basepoint comes first in the obscuring factor). */
  outbound: boolean;
  /** The delay this node imposes on the counterparty's own outputs (in the counterparty's commitments). */
  holderDelay: number;
  /** The delay the counterparty imposes on this node's outputs. */
  counterpartyDelay: number;
  counterparty: CounterpartyKeys;
  /** Display-order hex. */
  fundingTxid: string;
  fundingIndex: number;
  valueSat: string;
}

export interface ChannelState {
  v: 1;
  keysId: string;
  params: ChannelParams | null;
  holder: {
    /** The latest holder commitment validated (-1: none yet), and its txid. */
    validated: number;
    validatedTxid: string | null;
    /** In that commitment: this node's to_local, the counterparty's output, the fee, its HTLC outputs (what a mutual close is held to). */
    ourSat: string;
    theirSat: string;
    feeSat: string;
    htlcs: number;
    /** Secrets released for commitments 0..releasedThrough (-1: none). */
    releasedThrough: number;
    /** The first holder commitment signed for broadcast (-1: none): no secret from it on is released; and its txid. */
    signed: number;
    signedTxid: string | null;
  };
  counterparty: {
    /** The latest counterparty commitment signed (-1: none), its txid, and a hash of its point, HTLCs and feerate. */
    signed: number;
    signedTxid: string | null;
    signedWith: string | null;
    /** Revocations received for 0..revokedThrough (-1: none). */
    revokedThrough: number;
    /** The per-commitment points of signed commitments not yet revoked, by number. */
    points: Record<string, string>;
  };
  closingSigned: boolean;
}

export const SIGNER_OBJECT_PREFIX = 'signer:';
/** What a mutual close may pay in fees beyond the latest commitment's (LDK's force-close-avoidance margin is 1,000 sat). */
export const CLOSE_FEE_MARGIN_SAT = 1000n;

export function freshState(keysId: string): ChannelState {
  return { v: 1, keysId, params: null, holder: { validated: -1, validatedTxid: null, ourSat: '0', theirSat: '0', feeSat: '0', htlcs: 0, releasedThrough: -1, signed: -1, signedTxid: null }, counterparty: { signed: -1, signedTxid: null, signedWith: null, revokedThrough: -1, points: {} }, closingSigned: false };
}

/** A stored state, checked for shape (the vault wrote it, but a restore may hand over anything signed). */
export function decodeState(bytes: Uint8Array, keysId: string): ChannelState {
  let s: ChannelState;
  try {
    s = JSON.parse(Buffer.from(bytes).toString('utf8')) as ChannelState;
  } catch {
    throw new CustosError('database_corrupt', `The signer state of channel ${keysId} does not parse.`);
  }
  const int = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= -1;
  if (s?.v !== 1 || s.keysId !== keysId || !int(s.holder?.validated) || !int(s.holder?.htlcs) || typeof s.holder.ourSat !== 'string' || typeof s.holder.theirSat !== 'string' || typeof s.holder.feeSat !== 'string' || !int(s.holder?.releasedThrough) || !int(s.holder?.signed) || !int(s.counterparty?.signed) || !int(s.counterparty?.revokedThrough) || typeof s.counterparty.points !== 'object') {
    throw new CustosError('database_corrupt', `The signer state of channel ${keysId} is not one the vault writes.`);
  }
  return s;
}

export const encodeState = (s: ChannelState): Uint8Array => new TextEncoder().encode(JSON.stringify(s));

const deny = (tag: string, m: string) => new CustosError('policy_denied', m, { tag });
const clone = (s: ChannelState): ChannelState => structuredClone(s);

export type ChannelRequest =
  | { op: 'setup'; params: ChannelParams }
  | { op: 'validate_holder'; n: number; txid: string; counterpartySigValid: boolean; ourSat: bigint; theirSat: bigint; feeSat: bigint; htlcs: number }
  | { op: 'release_secret'; n: number }
  | { op: 'sign_holder'; n: number; txid: string }
  | { op: 'sign_counterparty'; n: number; txid: string; point: string; signedWith: string }
  | { op: 'validate_revocation'; n: number; pointOfSecret: string }
  | { op: 'sign_closing'; othersSat: bigint; walletSat: bigint; feeSat: bigint }
  /** The holder's HTLC transaction of commitment n (a force close): a commitment signed for broadcast, not revoked. */
  | { op: 'sign_holder_htlc'; n: number; spends: string };

/**
 * The decision: the state to commit (null when nothing changes: a repeat the vault already
 * holds), or a refusal (thrown, `policy_denied:<tag>`).
 */
export function decideChannel(s: ChannelState, r: ChannelRequest): ChannelState | null {
  const closing = () => {
    if (s.closingSigned) throw deny('lightning_closed', 'A mutual close was signed: no commitment is validated or signed after it.');
    if (s.holder.signed >= 0) throw deny('lightning_closed', 'A holder commitment was signed for broadcast (a force close): no commitment is validated or signed after it.');
  };
  const needParams = () => {
    if (!s.params) throw deny('lightning_params', 'The channel has no parameters yet: the node gives them (provide_channel_parameters) before anything is signed.');
    return s.params;
  };
  switch (r.op) {
    case 'setup': {
      if (s.params) {
        if (JSON.stringify(s.params) === JSON.stringify(r.params)) return null;
        throw deny('lightning_params', `Channel ${s.keysId} already has other parameters (counterparty keys, funding outpoint or value): they are set once.`);
      }
      const t = clone(s);
      t.params = r.params;
      return t;
    }
    case 'validate_holder': {
      needParams();
      if (!r.counterpartySigValid) throw deny('lightning_signature', `The counterparty's signature on holder commitment ${r.n} does not verify.`);
      if (r.n === s.holder.validated) {
        if (r.txid !== s.holder.validatedTxid) throw deny('lightning_commitment', `Holder commitment ${r.n} was already validated as another transaction.`);
        return null;
      }
      if (r.n !== s.holder.validated + 1) throw deny('lightning_commitment', `Holder commitment ${r.n} is out of order: the latest validated is ${s.holder.validated}.`);
      closing();
      const t = clone(s);
      t.holder.validated = r.n;
      t.holder.validatedTxid = r.txid;
      t.holder.ourSat = r.ourSat.toString();
      t.holder.theirSat = r.theirSat.toString();
      t.holder.feeSat = r.feeSat.toString();
      t.holder.htlcs = r.htlcs;
      return t;
    }
    case 'release_secret': {
      if (r.n <= s.holder.releasedThrough) return null; // released before (a revoke_and_ack sent again)
      if (s.holder.signed >= 0 && r.n >= s.holder.signed) throw deny('lightning_revoke_signed', `Holder commitment ${s.holder.signed} was signed for broadcast: no secret from it on is released.`);
      if (r.n > s.holder.validated - 1) throw deny('lightning_revoke_current', `The secret of holder commitment ${r.n} is released only once commitment ${r.n + 1} is validated (the latest validated is ${s.holder.validated}).`);
      if (r.n !== s.holder.releasedThrough + 1) throw deny('lightning_revoke_order', `Secrets are released in order: the next is ${s.holder.releasedThrough + 1}, not ${r.n}.`);
      const t = clone(s);
      t.holder.releasedThrough = r.n;
      return t;
    }
    case 'sign_holder': {
      needParams();
      if (r.n <= s.holder.releasedThrough) throw deny('lightning_revoked', `Holder commitment ${r.n} is revoked (its secret was released): signing it would hand the counterparty every output.`);
      if (r.n !== s.holder.validated || r.txid !== s.holder.validatedTxid) throw deny('lightning_commitment', `Only the latest validated holder commitment (${s.holder.validated}) is signed, as validated.`);
      if (s.holder.signed >= 0) return null; // the first one signed stays the bound
      const t = clone(s);
      t.holder.signed = r.n;
      t.holder.signedTxid = r.txid;
      return t;
    }
    case 'sign_counterparty': {
      needParams();
      closing();
      if (r.n === s.counterparty.signed) {
        if (r.txid !== s.counterparty.signedTxid || r.signedWith !== s.counterparty.signedWith) throw deny('lightning_commitment', `Counterparty commitment ${r.n} was signed as another transaction, or with another point, HTLCs or feerate: the same number is signed once.`);
        return null;
      }
      if (r.n < s.counterparty.signed) throw deny('lightning_commitment', `Counterparty commitment ${r.n} is older than the latest signed (${s.counterparty.signed}): commitment numbers only move forward.`);
      if (r.n !== s.counterparty.signed + 1) throw deny('lightning_commitment', `Counterparty commitment ${r.n} skips ahead: the next is ${s.counterparty.signed + 1}.`);
      if (r.n > s.counterparty.revokedThrough + 2) throw deny('lightning_unrevoked', `Counterparty commitment ${r.n - 2} is not revoked yet: at most two are unrevoked.`);
      const t = clone(s);
      t.counterparty.signed = r.n;
      t.counterparty.signedTxid = r.txid;
      t.counterparty.signedWith = r.signedWith;
      t.counterparty.points[String(r.n)] = r.point;
      return t;
    }
    case 'validate_revocation': {
      if (r.n <= s.counterparty.revokedThrough) return null;
      if (r.n !== s.counterparty.revokedThrough + 1 || r.n >= s.counterparty.signed) throw deny('lightning_revoke_order', `A revocation of counterparty commitment ${r.n} is out of order (revoked through ${s.counterparty.revokedThrough}, signed through ${s.counterparty.signed}).`);
      if (s.counterparty.points[String(r.n)] !== r.pointOfSecret) throw deny('lightning_revocation', `The secret given for counterparty commitment ${r.n} does not open the point it was signed with.`);
      const t = clone(s);
      t.counterparty.revokedThrough = r.n;
      delete t.counterparty.points[String(r.n)];
      return t;
    }
    case 'sign_closing': {
      const p = needParams();
      if (s.holder.signed >= 0) throw deny('lightning_closed', 'A holder commitment was signed for broadcast: the channel is force-closing.');
      if (s.holder.validated < 0) throw deny('lightning_balance', 'No holder commitment is validated: the balances a mutual close is held to are not known.');
      if (s.holder.htlcs > 0) throw deny('lightning_balance', `The latest holder commitment has ${s.holder.htlcs} HTLC output(s) pending: a mutual close comes after they settle.`);
      const commitFee = BigInt(s.holder.feeSat);
      const allowed = BigInt(s.holder.theirSat) + (p.outbound ? 0n : commitFee);
      if (r.othersSat > allowed) throw deny('lightning_balance', `The mutual close pays ${r.othersSat} sat to scripts other than the vault's wallet: the counterparty is owed at most ${allowed} sat.`);
      // The fee is money too: at most the commitment's own fee and a margin (LDK's), and this
      // node's wallet gets its balance, less what the close costs beyond the commitment's fee when it pays the fee.
      if (r.feeSat > commitFee + CLOSE_FEE_MARGIN_SAT) throw deny('lightning_fee', `The mutual close pays ${r.feeSat} sat in fees: at most the latest commitment's ${commitFee} sat and ${CLOSE_FEE_MARGIN_SAT} more.`);
      const owed = BigInt(s.holder.ourSat) - (p.outbound && r.feeSat > commitFee ? r.feeSat - commitFee : 0n);
      if (r.walletSat < owed) throw deny('lightning_balance', `The mutual close pays the vault's wallet ${r.walletSat} sat: this node's balance is ${owed} sat.`);
      if (s.closingSigned) return null;
      const t = clone(s);
      t.closingSigned = true;
      return t;
    }
    case 'sign_holder_htlc': {
      if (r.n <= s.holder.releasedThrough) throw deny('lightning_revoked', `Holder commitment ${r.n} is revoked: its HTLC transactions are not signed.`);
      if (s.holder.signed < 0 || r.n !== s.holder.signed || r.spends !== s.holder.signedTxid) throw deny('lightning_commitment', `HTLC transactions are signed only for the holder commitment signed for broadcast (${s.holder.signed < 0 ? 'none is' : s.holder.signed}), spending it.`);
      return null;
    }
  }
}
