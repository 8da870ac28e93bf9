/**
 * The Lightning channel signer's rules, as a pure function of a channel's signer state and one
 * request: what the vault must hold durably before it releases a signature or a secret.
 *
 *   holder commitments     validated in order (n, then n + 1), each with a valid counterparty
 *                          signature; the secret of n is released only once n + 1 is
 *                          validated (n is then revoked), and never for a commitment signed for
 *                          broadcast; a revoked commitment is never signed, nor any but the
 *                          latest validated one;
 *   counterparty commitments signed in order (n, then n + 1), at most one ahead of the last
 *                          revoked (so at most two unrevoked); the same n is signed again only
 *                          for the same transaction; revocations arrive in order and must open
 *                          the per-commitment point the vault signed that commitment with;
 *   closing                once a mutual close is signed, no commitment is signed;
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
    /** Secrets released for commitments 0..releasedThrough (-1: none). */
    releasedThrough: number;
    /** A holder commitment signed for broadcast (-1: none): its secret is never released. */
    signed: number;
  };
  counterparty: {
    /** The latest counterparty commitment signed (-1: none), and its txid. */
    signed: number;
    signedTxid: string | null;
    /** Revocations received for 0..revokedThrough (-1: none). */
    revokedThrough: number;
    /** The per-commitment points of signed commitments not yet revoked, by number. */
    points: Record<string, string>;
  };
  closingSigned: boolean;
}

export const SIGNER_OBJECT_PREFIX = 'signer:';

export function freshState(keysId: string): ChannelState {
  return { v: 1, keysId, params: null, holder: { validated: -1, validatedTxid: null, releasedThrough: -1, signed: -1 }, counterparty: { signed: -1, signedTxid: null, revokedThrough: -1, points: {} }, closingSigned: false };
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
  if (s?.v !== 1 || s.keysId !== keysId || !int(s.holder?.validated) || !int(s.holder?.releasedThrough) || !int(s.holder?.signed) || !int(s.counterparty?.signed) || !int(s.counterparty?.revokedThrough) || typeof s.counterparty.points !== 'object') {
    throw new CustosError('database_corrupt', `The signer state of channel ${keysId} is not one the vault writes.`);
  }
  return s;
}

export const encodeState = (s: ChannelState): Uint8Array => new TextEncoder().encode(JSON.stringify(s));

const deny = (tag: string, m: string) => new CustosError('policy_denied', m, { tag });
const clone = (s: ChannelState): ChannelState => structuredClone(s);

export type ChannelRequest =
  | { op: 'setup'; params: ChannelParams }
  | { op: 'validate_holder'; n: number; txid: string; counterpartySigValid: boolean }
  | { op: 'release_secret'; n: number }
  | { op: 'sign_holder'; n: number; txid: string }
  | { op: 'sign_counterparty'; n: number; txid: string; point: string }
  | { op: 'validate_revocation'; n: number; pointOfSecret: string }
  | { op: 'sign_closing' };

/**
 * The decision: the state to commit (null when nothing changes: a repeat the vault already
 * holds), or a refusal (thrown, `policy_denied:<tag>`).
 */
export function decideChannel(s: ChannelState, r: ChannelRequest): ChannelState | null {
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
      if (s.closingSigned) throw deny('lightning_closed', 'A mutual close was signed: no new commitment.');
      const t = clone(s);
      t.holder.validated = r.n;
      t.holder.validatedTxid = r.txid;
      return t;
    }
    case 'release_secret': {
      if (r.n <= s.holder.releasedThrough) return null; // released before (a revoke_and_ack sent again)
      if (r.n === s.holder.signed) throw deny('lightning_revoke_signed', `Holder commitment ${r.n} was signed for broadcast: its secret is never released.`);
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
      if (s.holder.signed === r.n) return null;
      const t = clone(s);
      t.holder.signed = r.n;
      return t;
    }
    case 'sign_counterparty': {
      needParams();
      if (s.closingSigned) throw deny('lightning_closed', 'A mutual close was signed: no commitment is signed after it.');
      if (r.n === s.counterparty.signed) {
        if (r.txid !== s.counterparty.signedTxid) throw deny('lightning_commitment', `Counterparty commitment ${r.n} was signed as another transaction: the same number is signed once.`);
        return null;
      }
      if (r.n < s.counterparty.signed) throw deny('lightning_commitment', `Counterparty commitment ${r.n} is older than the latest signed (${s.counterparty.signed}): commitment numbers only move forward.`);
      if (r.n !== s.counterparty.signed + 1) throw deny('lightning_commitment', `Counterparty commitment ${r.n} skips ahead: the next is ${s.counterparty.signed + 1}.`);
      if (r.n > s.counterparty.revokedThrough + 2) throw deny('lightning_unrevoked', `Counterparty commitment ${r.n - 2} is not revoked yet: at most two are unrevoked.`);
      const t = clone(s);
      t.counterparty.signed = r.n;
      t.counterparty.signedTxid = r.txid;
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
      needParams();
      if (s.closingSigned) return null;
      const t = clone(s);
      t.closingSigned = true;
      return t;
    }
  }
}
