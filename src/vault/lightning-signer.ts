/**
 * The Lightning channel signer: a node's channel keys live in the vault (lightning/channel-keys.ts)
 * and the node asks for each signature and secret, as LDK's `ChannelSigner`/`EcdsaChannelSigner`
 * do. The vault parses every transaction it signs itself (lightning/bolt3.ts): the commitment
 * number comes out of the transaction, the funding outpoint and value from the channel's
 * parameters, each HTLC is checked against the commitment's output. The rules
 * (lightning/channel-policy.ts) decide on the channel's signer state, and the state they move is
 * written to the backup target and committed, with the audit entry, before the answer leaves:
 * a crash can lose a signature, never let the vault forget a revocation.
 *
 * Signatures and secrets go through the vault's one step (vault/step.ts: policy documents, the
 * key still active, state, audit, then release) as `sign` requests of payload type `digest`
 * (the BIP143 sighash) with facts `protocol = lightning` and `lightning_op`.
 */
import { CustosError, isCustosError } from '../core/errors.js';
import { bytesToHex, equalBytes, wipe } from '../core/bytes.js';
import type { AuditDraft, KeyRecord } from '../core/types.js';
import { decodeRecord, recordHash, ZERO_HASH } from '../crypto/lightning-record.js';
import {
  commitmentNumberOf,
  derivePrivateKey,
  derivePublicKey,
  fundingScript,
  htlcScript,
  htlcTransaction,
  INITIAL_COMMITMENT_NUMBER,
  obscuringFactor,
  onlyInput,
  parseTransaction,
  perCommitmentSecret,
  point,
  pointOf,
  revocationPrivateKey,
  revocationPublicKey,
  revokeableScript,
  segwitSighash,
  signDigest,
  verifyDigest,
  type HtlcOutput,
} from '../lightning/bolt3.js';
import { channelPublicKeys, channelSecrets, checkKeysId, p2wpkh, WALLET_PATH, wipeSecrets, type ChannelPublicKeys, type ChannelSecrets } from '../lightning/channel-keys.js';
import { publicKeyAt } from '../wallet/hd.js';
import { decideChannel, decodeState, encodeState, freshState, SIGNER_OBJECT_PREFIX, type ChannelParams, type ChannelRequest, type ChannelState } from '../lightning/channel-policy.js';
import { OutScript, type Transaction } from '@scure/btc-signer';
import { sha256 } from '@noble/hashes/sha2.js';
import { ripemd160 } from '@noble/hashes/legacy.js';
import type { Ctx, VaultCore } from './core.js';
import type { Lightning } from './lightning.js';
import { decideSignCommit } from './step.js';

const hex = (b: Uint8Array) => bytesToHex(b);
const unhex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const bad = (m: string) => new CustosError('bad_request', m, { tag: 'lightning_tx' });
const wsh = (script: Uint8Array) => OutScript.encode({ type: 'wsh', hash: sha256(script) });

/** Signs `digest` with the BOLT 3 key derived from a base secret and a per-commitment point (the key wiped after). */
const signTweaked = (digest: Uint8Array, base: (s: ChannelSecrets) => Uint8Array, pcp: Uint8Array) => (s: ChannelSecrets): Uint8Array => {
  const k = derivePrivateKey(base(s), pcp);
  try {
    return signDigest(digest, k);
  } finally {
    wipe(k);
  }
};

/** The holder's per-commitment point at LDK index `idx` (the secret on the way is wiped). */
function holderPointOf(commitmentSeed: Uint8Array, idx: bigint): Uint8Array {
  const secret = perCommitmentSecret(commitmentSeed, idx);
  try {
    return pointOf(secret);
  } finally {
    wipe(secret);
  }
}

/** LDK's commitment index (counting down from 2^48 - 1) as a BOLT 3 number. */
function numberOfIndex(idx: bigint): number {
  if (typeof idx !== 'bigint' || idx < 0n || idx > INITIAL_COMMITMENT_NUMBER) throw new CustosError('bad_request', 'A commitment index is a 48-bit number.');
  return Number(INITIAL_COMMITMENT_NUMBER - idx);
}

function checkPoint(b: Uint8Array, what: string): Uint8Array {
  point(b, what);
  return b;
}

export interface CounterpartyCommitment {
  tx: Uint8Array;
  /** The counterparty's per-commitment point for this commitment (what its keys are derived from). */
  perCommitmentPoint: Uint8Array;
  feeratePerKw: number;
  htlcs: HtlcOutput[];
}

interface Plan<T> {
  request: ChannelRequest | null;
  /** Facts for the audit entry and the policy documents. */
  facts: Record<string, string>;
  /** The digest a `sign` request is about (policy documents may look at it). */
  digest?: Uint8Array;
  produce: (secrets: ChannelSecrets) => T;
}

export class LightningChannels {
  constructor(
    private readonly core: VaultCore,
    private readonly ln: Lightning,
  ) {}

  /**
   * Public values that never change for a key version, kept so that a call does not redo their
   * point multiplications: each channel's public keys, the node's wallet script; and each
   * channel's last state, by the SHA-256 of the record it was read from (a record read again
   * is not decrypted again; a changed row has another hash). Dropped at close and when full.
   */
  private readonly publics = new Map<string, ChannelPublicKeys>();
  private readonly wallets = new Map<string, Uint8Array>();
  private readonly states = new Map<string, { hash: string; state: ChannelState }>();

  private remember<V>(m: Map<string, V>, k: string, v: V): V {
    if (m.size >= 4096) m.clear();
    m.set(k, v);
    return v;
  }

  private publicKeysOf(key: KeyRecord, keysId: string, secrets: ChannelSecrets): ChannelPublicKeys {
    const id = `${key.id}/${key.version}/${keysId}`;
    return this.publics.get(id) ?? this.remember(this.publics, id, channelPublicKeys(secrets));
  }

  /** Forgets what is kept (a key destroyed or sealed away). */
  clear(): void {
    this.publics.clear();
    this.wallets.clear();
    this.states.clear();
  }

  private secretsOf(key: KeyRecord, keysId: string): ChannelSecrets {
    return this.ln.withMaster(key, (m) => channelSecrets(m, keysId, this.ln.cache(key)));
  }

  /** The channel's public keys (what the node hands its peer at open). */
  async publicKeys(ctx: Ctx, ref: string, keysId: string): Promise<ChannelPublicKeys> {
    const key = await this.ln.nodeKey(ctx, 'lightning_channel', 'sign', ref);
    await this.core.refuseOnError(ctx, 'lightning_channel', key, {}, () => checkKeysId(keysId));
    const kept = this.publics.get(`${key.id}/${key.version}/${keysId}`);
    if (kept) return kept;
    const s = this.secretsOf(key, keysId);
    try {
      return this.publicKeysOf(key, keysId, s);
    } finally {
      wipeSecrets(s);
    }
  }

  /** The holder's per-commitment point of LDK index `idx` (public; nothing is recorded). */
  async perCommitmentPoint(ctx: Ctx, ref: string, keysId: string, idx: bigint): Promise<Uint8Array> {
    const key = await this.ln.nodeKey(ctx, 'lightning_channel', 'sign', ref);
    await this.core.refuseOnError(ctx, 'lightning_channel', key, {}, () => (checkKeysId(keysId), numberOfIndex(idx)));
    const s = this.secretsOf(key, keysId);
    try {
      return holderPointOf(s.commitment, idx);
    } finally {
      wipeSecrets(s);
    }
  }

  /** The channel's parameters, once (provide_channel_parameters). */
  async setup(ctx: Ctx, ref: string, keysId: string, params: ChannelParams): Promise<void> {
    await this.step(ctx, ref, keysId, 'setup', false, () => {
      if (params.channelType !== 'static_remotekey') throw new CustosError('bad_request', `Channel type ${String(params.channelType).slice(0, 40)} is not signed by Custos: only static_remotekey channels (LDK's default; anchor channels are not supported yet).`, { tag: 'lightning_channel_type' });
      for (const [k, v] of Object.entries(params.counterparty)) checkPoint(unhex(v), `The counterparty's ${k} key`);
      if (!/^[0-9a-f]{64}$/.test(params.fundingTxid) || !Number.isInteger(params.fundingIndex) || params.fundingIndex < 0 || params.fundingIndex > 0xffff) throw new CustosError('bad_request', 'The funding outpoint is a txid (64 hex digits) and an output index.');
      if (!/^[1-9][0-9]{0,15}$/.test(params.valueSat)) throw new CustosError('bad_request', 'The channel value is a positive number of satoshis.');
      for (const d of [params.holderDelay, params.counterpartyDelay]) if (!Number.isInteger(d) || d < 0 || d > 0xffff) throw new CustosError('bad_request', 'A contest delay is 0 to 65535 blocks.');
      return { request: { op: 'setup', params }, facts: { funding: `${params.fundingTxid}:${params.fundingIndex}` }, produce: () => undefined };
    });
  }

  /** Releases the holder's per-commitment secret of LDK index `idx`: only for a revoked commitment. */
  async releaseSecret(ctx: Ctx, ref: string, keysId: string, idx: bigint): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, 'release_secret', true, () => {
      const n = numberOfIndex(idx);
      return { request: { op: 'release_secret', n }, facts: { commitment_number: String(n) }, produce: (s) => perCommitmentSecret(s.commitment, idx) };
    });
  }

  /** A holder commitment the counterparty signed (commitment_signed): its signature is checked, its number recorded. */
  async validateHolder(ctx: Ctx, ref: string, keysId: string, req: { tx: Uint8Array; counterpartySignature: Uint8Array }): Promise<void> {
    await this.step(ctx, ref, keysId, 'validate_holder', false, (state, pub, holderPoint) => {
      const p = this.params(state);
      const tx = this.fundingSpend(p, req.tx);
      const n = this.numberOf(p, pub, tx);
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
    });
  }

  /** Signs the holder's latest commitment for broadcast (a force close): never a revoked one. */
  async signHolder(ctx: Ctx, ref: string, keysId: string, txBytes: Uint8Array): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, 'sign_holder', true, (state, pub) => {
      const p = this.params(state);
      const tx = this.fundingSpend(p, txBytes);
      const n = this.numberOf(p, pub, tx);
      const digest = segwitSighash(tx, 0, fundingScript(pub.funding, unhex(p.counterparty.funding)), BigInt(p.valueSat));
      return { request: { op: 'sign_holder', n, txid: tx.id }, facts: { commitment_number: String(n), txid: tx.id }, digest, produce: (s) => signDigest(digest, s.funding) };
    });
  }

  /**
   * Signs the counterparty's commitment and its HTLC transactions: the number only moves
   * forward, at most two unrevoked, each HTLC checked against the commitment's outputs.
   */
  async signCounterparty(ctx: Ctx, ref: string, keysId: string, c: CounterpartyCommitment): Promise<{ signature: Uint8Array; htlcSignatures: Uint8Array[] }> {
    return this.step(ctx, ref, keysId, 'sign_counterparty', true, (state, pub) => {
      const p = this.params(state);
      checkPoint(c.perCommitmentPoint, 'The per-commitment point');
      if (!Number.isInteger(c.feeratePerKw) || c.feeratePerKw < 0 || c.feeratePerKw > 0xffffffff) throw bad('feerate_per_kw is a 32-bit number.');
      if (c.htlcs.length > 966) throw bad('A commitment has at most 966 HTLC outputs.');
      const tx = this.fundingSpend(p, c.tx);
      const n = this.numberOf(p, pub, tx);
      const digest = segwitSighash(tx, 0, fundingScript(pub.funding, unhex(p.counterparty.funding)), BigInt(p.valueSat));
      // The counterparty's commitment, from its side: it broadcasts, this node countersigns.
      const pcp = c.perCommitmentPoint;
      const keys = this.counterpartyKeys(p, pub, pcp);
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
    });
  }

  /** The counterparty revoked its commitment of LDK index `idx`: the secret must open the point the vault signed that commitment with. */
  async validateRevocation(ctx: Ctx, ref: string, keysId: string, idx: bigint, secret: Uint8Array): Promise<void> {
    await this.step(ctx, ref, keysId, 'validate_revocation', false, () => {
      const n = numberOfIndex(idx);
      let point: Uint8Array;
      try {
        point = pointOf(secret);
      } catch {
        throw new CustosError('bad_request', 'A per-commitment secret is a 32-byte secp256k1 secret key.');
      }
      return { request: { op: 'validate_revocation', n, pointOfSecret: hex(point) }, facts: { commitment_number: String(n) }, produce: () => undefined };
    });
  }

  /**
   * Signs a mutual close: version 2, final (sequence 0xffffffff, locktime 0), paying the
   * counterparty no more than it is owed (the rules), the rest to the vault's wallet script.
   */
  async signClosing(ctx: Ctx, ref: string, keysId: string, txBytes: Uint8Array): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, 'sign_closing', true, (state, pub, _point, wallet) => {
      const p = this.params(state);
      const tx = this.fundingSpend(p, txBytes);
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
    });
  }

  /** The script channels pay this node to (a mutual close, justice, claims): P2WPKH of its wallet key. */
  async walletScript(ctx: Ctx, ref: string): Promise<{ path: string; script: Uint8Array }> {
    const key = await this.ln.nodeKey(ctx, 'lightning_channel', 'sign', ref);
    return { path: WALLET_PATH, script: this.walletScriptOf(key) };
  }

  private walletScriptOf(key: KeyRecord): Uint8Array {
    const id = `${key.id}/${key.version}`;
    return this.wallets.get(id) ?? this.remember(this.wallets, id, p2wpkh(this.ln.withMaster(key, (m) => publicKeyAt(m, WALLET_PATH, this.ln.cache(key)))));
  }

  /**
   * Every output of a transaction paying the channel's funds back to this node goes to its
   * wallet script, and they are worth the input signed, less a fee: at most a quarter of it, or
   * 10,000 sat when more (a transaction gathering several inputs pays out more than this one).
   */
  private paysWallet(tx: Transaction, wallet: Uint8Array, what: string, amount: bigint): void {
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

  /**
   * Justice: a transaction taking a revoked counterparty commitment's output (its to_local, or
   * an HTLC output when `htlc` is given) with the revocation key, which only the counterparty's
   * per-commitment secret (its revocation) opens.
   */
  async signJustice(ctx: Ctx, ref: string, keysId: string, req: { tx: Uint8Array; input: number; amount: bigint; perCommitmentSecret: Uint8Array; htlc?: HtlcOutput }): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, req.htlc ? 'sign_justice_htlc' : 'sign_justice', true, (state, pub, _point, wallet) => {
      const p = this.params(state);
      let pcp: Uint8Array;
      try {
        pcp = pointOf(req.perCommitmentSecret);
      } catch {
        throw new CustosError('bad_request', 'A per-commitment secret is a 32-byte secp256k1 secret key.');
      }
      const keys = this.counterpartyKeys(p, pub, pcp);
      const script = req.htlc ? htlcScript(req.htlc, keys) : revokeableScript(keys.revocationKey, p.holderDelay, keys.broadcasterDelayedKey);
      const tx = parseTransaction(req.tx);
      this.paysWallet(tx, wallet, 'justice transaction', req.amount);
      const digest = this.sighash(tx, req.input, script, req.amount);
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
    });
  }

  /**
   * The holder's HTLC-success/-timeout transaction, of the commitment signed for broadcast only
   * (never of a revoked one): its output must pay this node's delayed key, revocable.
   */
  async signHolderHtlc(ctx: Ctx, ref: string, keysId: string, req: { tx: Uint8Array; input: number; index: bigint; htlc: HtlcOutput }): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, 'sign_holder_htlc', true, (state, pub, holderPoint) => {
      const p = this.params(state);
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
      const digest = this.sighash(tx, req.input, htlcScript(req.htlc, keys), req.htlc.amountMsat / 1000n);
      return {
        request: { op: 'sign_holder_htlc', n, spends },
        facts: { commitment_number: String(n), txid: tx.id },
        digest,
        produce: signTweaked(digest, (s) => s.htlc, pcp),
      };
    });
  }

  /**
   * Claims an HTLC output of the counterparty's commitment (with the preimage, or after its
   * timeout): only of a commitment this node signed and the counterparty has not revoked.
   */
  async signCounterpartyHtlc(ctx: Ctx, ref: string, keysId: string, req: { tx: Uint8Array; input: number; amount: bigint; perCommitmentPoint: Uint8Array; htlc: HtlcOutput }): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, 'sign_counterparty_htlc', true, (state, pub, _point, wallet) => {
      const p = this.params(state);
      const pcp = checkPoint(req.perCommitmentPoint, 'The per-commitment point');
      if (!Object.values(state.counterparty.points).includes(hex(pcp))) throw new CustosError('policy_denied', 'The per-commitment point is not that of a counterparty commitment this node signed and that is not revoked.', { tag: 'lightning_commitment' });
      if (req.amount !== req.htlc.amountMsat / 1000n) throw bad('The amount is not the HTLC\'s.');
      const keys = this.counterpartyKeys(p, pub, pcp);
      const tx = parseTransaction(req.tx);
      this.paysWallet(tx, wallet, 'HTLC claim', req.amount);
      const digest = this.sighash(tx, req.input, htlcScript(req.htlc, keys), req.amount);
      return {
        request: null,
        facts: { txid: tx.id, input: String(req.input) },
        digest,
        produce: signTweaked(digest, (s) => s.htlc, pcp),
      };
    });
  }

  /**
   * Sweeps one of this node's own outputs of a closed channel to its wallet script: its
   * `to_local` on a holder commitment signed for broadcast (after the delay; `perCommitmentPoint`
   * names which), or its `to_remote` (P2WPKH of its payment point) on the counterparty's.
   */
  async signSweep(ctx: Ctx, ref: string, keysId: string, req: { tx: Uint8Array; input: number; amount: bigint; output: 'to_local' | 'to_remote'; perCommitmentPoint?: Uint8Array }): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, `sweep_${req.output}`, true, (state, pub, holderPoint, wallet): Plan<Uint8Array> => {
      const p = this.params(state);
      const tx = parseTransaction(req.tx);
      this.paysWallet(tx, wallet, 'sweep', req.amount);
      if (req.output === 'to_remote') {
        const digest = this.sighash(tx, req.input, OutScript.encode({ type: 'pkh', hash: ripemd160(sha256(pub.payment)) }), req.amount);
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
      const digest = this.sighash(tx, req.input, script, req.amount);
      return {
        request: null,
        facts: { txid: tx.id, input: String(req.input), commitment_number: String(n) },
        digest,
        produce: signTweaked(digest, (s) => s.delayed, pcp),
      };
    });
  }

  /** The keys of the counterparty's commitment at `pcp` (it broadcasts; this node countersigns). */
  private counterpartyKeys(p: ChannelParams, pub: ChannelPublicKeys, pcp: Uint8Array) {
    return {
      revocationKey: revocationPublicKey(pub.revocation, pcp),
      broadcasterHtlcKey: derivePublicKey(unhex(p.counterparty.htlc), pcp),
      countersignatoryHtlcKey: derivePublicKey(pub.htlc, pcp),
      broadcasterDelayedKey: derivePublicKey(unhex(p.counterparty.delayed), pcp),
    };
  }

  private sighash(tx: Transaction, input: number, script: Uint8Array, amount: bigint): Uint8Array {
    if (!Number.isInteger(input) || input < 0 || input >= tx.inputsLength) throw bad(`Input ${input} is not an input of the transaction.`);
    if (amount <= 0n || amount > 21_000_000n * 100_000_000n) throw bad('The amount is not a number of satoshis.');
    return segwitSighash(tx, input, script, amount);
  }

  private params(state: ChannelState): ChannelParams {
    if (!state.params) throw new CustosError('policy_denied', 'The channel has no parameters yet: the node gives them (provide_channel_parameters) before anything is signed.', { tag: 'lightning_params' });
    return state.params;
  }

  /** A transaction spending the channel's funding output, and only it. */
  private fundingSpend(p: ChannelParams, bytes: Uint8Array): Transaction {
    const tx = parseTransaction(bytes);
    const input = onlyInput(tx);
    if (input.txid !== p.fundingTxid || input.index !== p.fundingIndex) throw bad(`The transaction spends ${input.txid}:${input.index}, not the channel's funding output ${p.fundingTxid}:${p.fundingIndex}.`);
    return tx;
  }

  /** A commitment's number; `holder`: this node broadcasts it. The opener's payment point comes first. */
  private numberOf(p: ChannelParams, pub: ChannelPublicKeys, tx: Transaction): number {
    const ours = pub.payment;
    const theirs = unhex(p.counterparty.payment);
    const factor = p.outbound ? obscuringFactor(ours, theirs) : obscuringFactor(theirs, ours);
    return Number(commitmentNumberOf(tx, factor));
  }

  /**
   * One signer operation: read the channel's state (lane-held), plan (parse, check; a bad
   * request is refused and audited), decide (the rules; a refusal audited), then either the
   * vault's signing step (`sign`: policy documents, signature, state and audit in one commit)
   * or, for a validation, the state and its audit entry committed. The new state's record
   * reaches the backup target before the commit.
   */
  private async step<T>(ctx: Ctx, ref: string, keysId: string, op: string, signs: boolean, plan: (state: ChannelState, pub: ChannelPublicKeys, holderPoint: (idx: bigint) => Uint8Array, wallet: Uint8Array) => Plan<T>): Promise<T> {
    const operation = `lightning_${op}`;
    const key = await this.ln.nodeKey(ctx, operation, 'sign', ref);
    const details: AuditDraft['details'] = { channel: String(keysId).slice(0, 64) };
    await this.core.refuseOnError(ctx, operation, key, details, () => checkKeysId(keysId));
    const objectId = SIGNER_OBJECT_PREFIX + keysId;
    const release = await this.core.lanes.acquire([`lightning:${key.id}:${objectId}`]);
    let secrets: ChannelSecrets | null = null;
    try {
      const cur = await this.core.deps.store.getObject(key.id, objectId);
      const state = cur ? await this.core.refuseOnError(ctx, operation, key, details, () => this.readState(key, objectId, cur.hash, cur.record, keysId)) : freshState(keysId);
      secrets = this.secretsOf(key, keysId);
      const pub = this.publicKeysOf(key, keysId, secrets);
      const seed = secrets.commitment;
      const holderPoint = (idx: bigint) => holderPointOf(seed, idx);
      const p = await this.core.refuseOnError(ctx, operation, key, details, () => plan(state, pub, holderPoint, this.walletScriptOf(key)));
      Object.assign(details, p.facts);
      const next = p.request ? await this.core.refuseOnError(ctx, operation, key, details, () => decideChannel(state, p.request!)) : null;
      const version = (cur?.version ?? 0n) + 1n;
      const record = next ? this.ln.seal(key, objectId, version, cur ? cur.hash : ZERO_HASH, encodeState(next)) : null;
      const mutation = record ? [{ kind: 'putObject' as const, keyId: key.id, objectId, expectedVersion: cur?.version ?? null, version, record }] : [];
      const s = secrets;
      // The committed state, kept by its record's hash (the next call reads that row).
      const committed = () => {
        if (record && next) this.remember(this.states, `${key.id}/${key.version}/${objectId}`, { hash: hex(recordHash(record)), state: next });
      };
      const backup = async () => {
        if (record) await this.ln.writeBackup(key, objectId, version, record);
      };
      if (!signs) {
        try {
          await backup();
        } catch (e) {
          return await this.core.fail(ctx, operation, key, e, details, 'The backup target failed.');
        }
        await this.core.commitAs(ctx, {
          mutations: [{ kind: 'assertKeyActive', id: key.id, version: key.version }, ...mutation],
          audit: [this.core.draft(ctx, operation, key, 'ok', null, record ? { ...details, record_sha256: hex(recordHash(record)) } : details)],
        });
        committed();
        return p.produce(s);
      }
      const t = await decideSignCommit(this.core, {
        ctx,
        key,
        operation: 'sign',
        outcomeOperation: operation,
        subject: { payloadType: 'digest', facts: { protocol: 'lightning', lightning_op: op, ...p.facts }, ...(p.digest ? { payload: p.digest } : {}) },
        details,
        prepare: async () => (mutation.length ? { mutations: () => mutation } : undefined),
        produce: async () => {
          const t = p.produce(s);
          await backup();
          return t;
        },
        outcome: (): AuditDraft['details'] => (record ? { record_sha256: hex(recordHash(record)) } : {}),
      });
      committed();
      return t;
    } catch (e) {
      if (isCustosError(e) && e.tag === 'object_moved') return await this.core.refuse(ctx, operation, key, new CustosError('conflict', `The signer state of channel ${keysId} changed under this request (another vault process on this database?): retry.`, { tag: 'object_moved' }), details);
      throw e;
    } finally {
      if (secrets) wipeSecrets(secrets);
      release();
    }
  }

  private readState(key: KeyRecord, objectId: string, hash: Uint8Array, record: Uint8Array, keysId: string): ChannelState {
    const id = `${key.id}/${key.version}/${objectId}`;
    const h = hex(hash);
    const kept = this.states.get(id);
    // (decideChannel never changes the state it is given: it decides on a copy.)
    if (kept && kept.hash === h) return kept.state;
    const plain = this.ln.open(key, decodeRecord(record));
    try {
      return this.remember(this.states, id, { hash: h, state: decodeState(plain, keysId) }).state;
    } finally {
      wipe(plain);
    }
  }
}
