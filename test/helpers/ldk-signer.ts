/**
 * An LDK `SignerProvider` whose channel signers hold no key: every `ChannelSigner` and
 * `EcdsaChannelSigner` call goes to Custos' channel signer (POST /v1/lightning/:key/channels/…),
 * synchronously (LDK's callbacks cannot await: src/client/blocking.ts blocks this thread on a
 * worker's request). What LDK hands over is turned into what Custos checks itself:
 * transactions as bytes (Custos reads the commitment number out of them), and the HTLCs of a
 * commitment (from `CommitmentTransaction`'s serialization: the bindings expose no getter).
 *
 * A refusal or failure answers LDK with `Err` and is recorded (`refusals`); callers decide
 * whether that is the test's point or a failure. The shutdown and destination scripts are the
 * vault's wallet script (a close or claim paying elsewhere is refused).
 */
import { randomBytes } from 'node:crypto';
import * as ldk from 'lightningdevkit';

export interface SyncApi {
  call<T>(method: string, path: string, body?: unknown): T;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
const reversed = (b: Uint8Array): Uint8Array => Uint8Array.from(b).reverse();

/** A BigSize (BOLT 1) at `pos`: its value and the position after it. */
function bigSize(b: Uint8Array, pos: number): [number, number] {
  const first = b[pos];
  if (first === undefined) throw new Error('truncated LDK serialization');
  if (first < 0xfd) return [first, pos + 1];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (first === 0xfd) return [v.getUint16(pos + 1), pos + 3];
  if (first === 0xfe) return [v.getUint32(pos + 1), pos + 5];
  return [Number(v.getBigUint64(pos + 1)), pos + 9];
}

/** The records of a length-prefixed TLV stream (LDK's `impl_writeable_tlv_based` serialization), by type. */
export function tlvRecords(bytes: Uint8Array): Map<number, Uint8Array> {
  const [len, start] = bigSize(bytes, 0);
  const end = start + len;
  if (end > bytes.length) throw new Error('truncated TLV stream');
  const out = new Map<number, Uint8Array>();
  let pos = start;
  while (pos < end) {
    const [type, p1] = bigSize(bytes, pos);
    const [l, p2] = bigSize(bytes, p1);
    out.set(type, bytes.subarray(p2, p2 + l));
    pos = p2 + l;
  }
  return out;
}

/** The length-prefixed items of a `required_vec` field, each as its own serialization. */
function items(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const [l, p] = bigSize(bytes, pos);
    out.push(bytes.subarray(pos, p + l));
    pos = p + l;
  }
  return out;
}

/** The commitment transaction inside a HolderCommitmentTransaction (TLV type 0). */
export function holderCommitmentOf(h: ldk.HolderCommitmentTransaction): ldk.CommitmentTransaction {
  const inner = tlvRecords(h.write()).get(0);
  if (!inner) throw new Error('HolderCommitmentTransaction without its commitment');
  const r = ldk.CommitmentTransaction.constructor_read(inner);
  if (!(r instanceof ldk.Result_CommitmentTransactionDecodeErrorZ_OK)) throw new Error('CommitmentTransaction does not read');
  return r.res;
}

/** An HTLC as the channel routes take it. */
export function htlcJson(h: ldk.HTLCOutputInCommitment): { offered: boolean; amount_msat: string; cltv_expiry: number; payment_hash: string } {
  return { offered: !!h.get_offered(), amount_msat: h.get_amount_msat().toString(), cltv_expiry: h.get_cltv_expiry(), payment_hash: hex(h.get_payment_hash()) };
}

/** The non-dust HTLCs of a commitment (TLV type 12), in LDK's order. */
export function htlcsOf(c: ldk.CommitmentTransaction): Array<{ offered: boolean; amount_msat: string; cltv_expiry: number; payment_hash: string; output_index: number }> {
  const field = tlvRecords(c.write()).get(12) ?? new Uint8Array(0);
  return items(field).flatMap((b) => {
    const r = ldk.HTLCOutputInCommitment.constructor_read(b);
    if (!(r instanceof ldk.Result_HTLCOutputInCommitmentDecodeErrorZ_OK)) throw new Error('HTLCOutputInCommitment does not read');
    const h = r.res;
    const idx = h.get_transaction_output_index();
    if (!(idx instanceof ldk.Option_u32Z_Some)) return [];
    return [{ ...htlcJson(h), output_index: idx.some }];
  });
}

export interface SignerCall {
  channel: string;
  op: string;
  ok: boolean;
  error?: string;
  /** What was sent to Custos (for tests that replay a request). */
  body?: unknown;
}

/** The Custos-backed SignerProvider and a log of every call it made. */
export class CustosSignerProvider {
  readonly calls: SignerCall[] = [];
  private readonly hold: unknown[] = [];
  readonly provider: ldk.SignerProvider;

  constructor(
    private readonly api: SyncApi,
    private readonly ref: string,
    keys: ldk.KeysManager,
  ) {
    const inner = keys.as_SignerProvider();
    this.hold.push(keys, inner);
    // Where the channels pay this node: the vault's wallet script (it refuses a close or a claim paying elsewhere).
    const wallet = unhex(api.call<{ script: string }>('GET', `/v1/lightning/${encodeURIComponent(ref)}/wallet-script`).script);
    if (wallet.length !== 22 || wallet[0] !== 0 || wallet[1] !== 20) throw new Error('the wallet script is not P2WPKH');
    const shutdown = ldk.ShutdownScript.constructor_new_p2wpkh(wallet.subarray(2));
    this.provider = ldk.SignerProvider.new_impl({
      // Not the u128 user_channel_id back into WASM (it may not encode): a random id.
      generate_channel_keys_id: () => new Uint8Array(randomBytes(32)),
      derive_channel_signer: (valueSat, keysId) => this.signer(valueSat, keysId),
      read_chan_signer: () => ldk.Result_EcdsaChannelSignerDecodeErrorZ.constructor_err(ldk.DecodeError.constructor_invalid_value()),
      get_destination_script: () => ldk.Result_CVec_u8ZNoneZ.constructor_ok(wallet),
      get_shutdown_scriptpubkey: () => ldk.Result_ShutdownScriptNoneZ.constructor_ok(shutdown.clone()),
    });
  }

  private path(channel: string, rest = ''): string {
    return `/v1/lightning/${encodeURIComponent(this.ref)}/channels/${channel}${rest}`;
  }

  /** Runs one call; a failure is logged and becomes LDK's `Err`. */
  private run<R>(channel: string, op: string, err: () => R, f: () => R): R {
    this.lastBody = undefined;
    try {
      const r = f();
      this.calls.push({ channel, op, ok: true, body: this.lastBody });
      return r;
    } catch (e) {
      this.calls.push({ channel, op, ok: false, error: e instanceof Error ? e.message : String(e), body: this.lastBody });
      return err();
    }
  }

  private lastBody: unknown;

  private signer(valueSat: bigint, keysId: Uint8Array): ldk.EcdsaChannelSigner {
    const channel = hex(keysId);
    const k = this.api.call<Record<string, string>>('GET', this.path(channel));
    const pubkeys = ldk.ChannelPublicKeys.constructor_new(
      unhex(k.funding_pubkey!),
      ldk.RevocationBasepoint.constructor_new(unhex(k.revocation_basepoint!)),
      unhex(k.payment_point!),
      ldk.DelayedPaymentBasepoint.constructor_new(unhex(k.delayed_payment_basepoint!)),
      ldk.HtlcBasepoint.constructor_new(unhex(k.htlc_basepoint!)),
    );
    const call = <T>(rest: string, body?: unknown) => {
      this.lastBody = body;
      return this.api.call<T>(body === undefined ? 'GET' : 'POST', this.path(channel, rest), body);
    };
    const txOf = (c: ldk.CommitmentTransaction) => hex(c.trust().built_transaction().get_transaction());
    const signature = (r: { signature: string }) => unhex(r.signature);
    const cs: ldk.ChannelSignerInterface = {
      get_per_commitment_point: (idx) => this.run(channel, 'get_per_commitment_point', () => ldk.Result_PublicKeyNoneZ.constructor_err(), () => ldk.Result_PublicKeyNoneZ.constructor_ok(unhex(call<{ point: string }>(`/points/${idx}`).point))),
      release_commitment_secret: (idx) => this.run(channel, 'release_commitment_secret', () => ldk.Result__u832NoneZ.constructor_err(), () => ldk.Result__u832NoneZ.constructor_ok(unhex(call<{ secret: string }>('/release-secret', { index: idx.toString() }).secret))),
      validate_holder_commitment: (h) =>
        this.run(channel, 'validate_holder_commitment', () => ldk.Result_NoneNoneZ.constructor_err(), () => {
          call('/validate-holder', { tx: txOf(holderCommitmentOf(h)), counterparty_signature: hex(h.get_counterparty_sig()) });
          return ldk.Result_NoneNoneZ.constructor_ok();
        }),
      validate_counterparty_revocation: (idx, secret) =>
        this.run(channel, 'validate_counterparty_revocation', () => ldk.Result_NoneNoneZ.constructor_err(), () => {
          call('/validate-revocation', { index: idx.toString(), secret: hex(secret) });
          return ldk.Result_NoneNoneZ.constructor_ok();
        }),
      channel_keys_id: () => keysId,
      provide_channel_parameters: (p) =>
        void this.run(channel, 'provide_channel_parameters', () => undefined, () => {
          const cp = p.get_counterparty_parameters();
          const theirs = cp.get_pubkeys();
          const op = p.get_funding_outpoint();
          call('/setup', {
            channel_type: p.get_channel_type_features().supports_anchors_zero_fee_htlc_tx() ? 'anchors_zero_fee_htlc_tx' : 'static_remotekey',
            outbound: !!p.get_is_outbound_from_holder(), // a WASM i32 despite its boolean type
            holder_selected_contest_delay: p.get_holder_selected_contest_delay(),
            counterparty_selected_contest_delay: cp.get_selected_contest_delay(),
            counterparty: {
              funding_pubkey: hex(theirs.get_funding_pubkey()),
              revocation_basepoint: hex(theirs.get_revocation_basepoint().to_public_key()),
              payment_point: hex(theirs.get_payment_point()),
              delayed_payment_basepoint: hex(theirs.get_delayed_payment_basepoint().to_public_key()),
              htlc_basepoint: hex(theirs.get_htlc_basepoint().to_public_key()),
            },
            funding_txid: hex(reversed(op.get_txid())),
            funding_output_index: op.get_index(),
            value_sat: valueSat.toString(),
          });
        }),
    };
    const sigErr = () => ldk.Result_ECDSASignatureNoneZ.constructor_err();
    const unsupported = (op: string) => () => this.run(channel, op, sigErr, () => {
      throw new Error(`${op} is not served by the Custos channel signer yet`);
    });
    const ecdsa: ldk.EcdsaChannelSignerInterface = {
      sign_counterparty_commitment: (c) =>
        this.run(channel, 'sign_counterparty_commitment', () => ldk.Result_C2Tuple_ECDSASignatureCVec_ECDSASignatureZZNoneZ.constructor_err(), () => {
          const r = call<{ signature: string; htlc_signatures: string[] }>('/sign-counterparty', { tx: txOf(c), per_commitment_point: hex(c.per_commitment_point()), feerate_per_kw: c.feerate_per_kw(), htlcs: htlcsOf(c) });
          return ldk.Result_C2Tuple_ECDSASignatureCVec_ECDSASignatureZZNoneZ.constructor_ok(ldk.TwoTuple_ECDSASignatureCVec_ECDSASignatureZZ.constructor_new(unhex(r.signature), r.htlc_signatures.map(unhex)));
        }),
      sign_holder_commitment: (h) => this.run(channel, 'sign_holder_commitment', sigErr, () => ldk.Result_ECDSASignatureNoneZ.constructor_ok(signature(call('/sign-holder', { tx: txOf(holderCommitmentOf(h)) })))),
      sign_closing_transaction: (c) => this.run(channel, 'sign_closing_transaction', sigErr, () => ldk.Result_ECDSASignatureNoneZ.constructor_ok(signature(call('/sign-closing', { tx: hex(c.trust().built_transaction()) })))),
      sign_justice_revoked_output: (tx, input, amount, key) => this.run(channel, 'sign_justice_revoked_output', sigErr, () => ldk.Result_ECDSASignatureNoneZ.constructor_ok(signature(call('/sign-justice', { tx: hex(tx), input, amount_sat: amount.toString(), per_commitment_secret: hex(key) })))),
      sign_justice_revoked_htlc: (tx, input, amount, key, h) => this.run(channel, 'sign_justice_revoked_htlc', sigErr, () => ldk.Result_ECDSASignatureNoneZ.constructor_ok(signature(call('/sign-justice', { tx: hex(tx), input, amount_sat: amount.toString(), per_commitment_secret: hex(key), htlc: htlcJson(h) })))),
      sign_holder_htlc_transaction: (tx, input, d) => this.run(channel, 'sign_holder_htlc_transaction', sigErr, () => ldk.Result_ECDSASignatureNoneZ.constructor_ok(signature(call('/sign-holder-htlc', { tx: hex(tx), input, index: d.get_per_commitment_number().toString(), htlc: htlcJson(d.get_htlc()) })))),
      sign_counterparty_htlc_transaction: (tx, input, amount, pcp, h) => this.run(channel, 'sign_counterparty_htlc_transaction', sigErr, () => ldk.Result_ECDSASignatureNoneZ.constructor_ok(signature(call('/sign-counterparty-htlc', { tx: hex(tx), input, amount_sat: amount.toString(), per_commitment_point: hex(pcp), htlc: htlcJson(h) })))),
      sign_holder_anchor_input: unsupported('sign_holder_anchor_input'),
      sign_channel_announcement_with_funding_key: unsupported('sign_channel_announcement_with_funding_key'),
      sign_splicing_funding_input: unsupported('sign_splicing_funding_input'),
    };
    const signer = ldk.EcdsaChannelSigner.new_impl(ecdsa, cs, pubkeys);
    this.hold.push(pubkeys, cs, ecdsa);
    return signer;
  }
}
