/**
 * The HTTP routes of a Lightning node's channel signer (vault/lightning-signer.ts), one per
 * call of LDK's `ChannelSigner`/`EcdsaChannelSigner`. `:channel` is the channel keys id (64 hex
 * digits); transactions, points, secrets and signatures (64-byte compact ECDSA) are hex; LDK's
 * commitment indices (counting down from 2^48 - 1) are decimal strings. Every route needs the
 * principal's `sign` scope on the node's key.
 *
 *   GET  /v1/lightning/:key/wallet-script                        what channels pay this node to (P2WPKH, m/9735'/4'/0')
 *   GET  /v1/lightning/:key/channels/:channel                    the channel's public keys
 *   GET  /v1/lightning/:key/channels/:channel/points/:index      a holder per-commitment point
 *   POST /v1/lightning/:key/channels/:channel/setup              the channel's parameters, once
 *   POST /v1/lightning/:key/channels/:channel/validate-holder    a holder commitment the peer signed
 *   POST /v1/lightning/:key/channels/:channel/release-secret     a revoked holder commitment's secret
 *   POST /v1/lightning/:key/channels/:channel/sign-counterparty  the peer's commitment and its HTLC transactions
 *   POST /v1/lightning/:key/channels/:channel/validate-revocation  the peer's revocation secret
 *   POST /v1/lightning/:key/channels/:channel/sign-holder        the latest holder commitment, for broadcast
 *   POST /v1/lightning/:key/channels/:channel/sign-closing       a mutual close
 *   POST /v1/lightning/:key/channels/:channel/sign-justice       a revoked counterparty output, with the revocation key
 *   POST /v1/lightning/:key/channels/:channel/sign-holder-htlc   an HTLC transaction of the commitment signed for broadcast
 *   POST /v1/lightning/:key/channels/:channel/sign-counterparty-htlc  a claim of an HTLC on the counterparty's unrevoked commitment
 *   POST /v1/lightning/:key/channels/:channel/sign-sweep         this node's own to_local / to_remote of a closed channel, to its wallet
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { bytesToHex, hexToBytes, wipe } from '../../core/bytes.js';
import type { Principal } from '../../core/types.js';
import { MAX_TX_BYTES } from '../../lightning/bolt3.js';
import type { Vault } from '../../vault/vault.js';

const errors = { 400: { $ref: 'Error#' }, 401: { $ref: 'Error#' }, 403: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' }, 413: { $ref: 'Error#' }, 503: { $ref: 'Error#' } };
const secured = [{ bearer: [] }];
const tags = ['lightning'];
const channelParams = { type: 'object', required: ['key', 'channel'], properties: { key: { type: 'string', minLength: 1, maxLength: 128 }, channel: { type: 'string', pattern: '^[0-9a-f]{64}$' } } } as const;
const point = { type: 'string', pattern: '^[0-9a-f]{66}$', description: 'compressed secp256k1 point, hex' } as const;
const secret = { type: 'string', pattern: '^[0-9a-f]{64}$', description: '32 bytes, hex' } as const;
const signature = { type: 'string', pattern: '^[0-9a-f]{128}$', description: '64-byte compact ECDSA signature, hex' } as const;
const tx = { type: 'string', pattern: '^([0-9a-f]{2})+$', maxLength: 2 * MAX_TX_BYTES, description: 'a Bitcoin transaction, hex' } as const;
const index = { type: 'string', pattern: '^[0-9]{1,15}$', description: "LDK's commitment index (2^48 - 1 counting down), decimal" } as const;
const signed = { 200: { type: 'object', properties: { signature } }, ...errors } as const;
const nothing = { 200: { type: 'object', properties: { ok: { type: 'boolean' } } }, ...errors } as const;
const body = (required: string[], properties: Record<string, unknown>) => ({ type: 'object', additionalProperties: false, required, properties });

type P = { key: string; channel: string };

export function lightningChannelRoutes(app: FastifyInstance, vault: () => Vault, ctx: (req: FastifyRequest) => { principal: Principal; requestId: string }): void {
  const base = '/v1/lightning/:key/channels/:channel';
  const channels = () => vault().channels;
  const bodyLimit = 2 * MAX_TX_BYTES + 64 * 1024;

  app.get<{ Params: { key: string } }>('/v1/lightning/:key/wallet-script', { schema: { summary: "The script a mutual close, justice and HTLC claims must pay this node to (P2WPKH of its wallet key): give it to LDK as the shutdown and destination script", tags, security: secured, params: { type: 'object', required: ['key'], properties: { key: { type: 'string', minLength: 1, maxLength: 128 } } }, response: { 200: { type: 'object', properties: { path: { type: 'string' }, script: { type: 'string', description: 'output script, hex' } } }, ...errors } } }, async (req) => {
    const w = await channels().walletScript(ctx(req), req.params.key);
    return { path: w.path, script: bytesToHex(w.script) };
  });

  app.get<{ Params: P }>(base, { schema: { summary: "A channel's public keys (derived in the vault from the node's seed and the channel keys id)", tags, security: secured, params: channelParams, response: { 200: { type: 'object', properties: { funding_pubkey: point, revocation_basepoint: point, payment_point: point, delayed_payment_basepoint: point, htlc_basepoint: point } }, ...errors } } }, async (req) => {
    const k = await channels().publicKeys(ctx(req), req.params.key, req.params.channel);
    return { funding_pubkey: bytesToHex(k.funding), revocation_basepoint: bytesToHex(k.revocation), payment_point: bytesToHex(k.payment), delayed_payment_basepoint: bytesToHex(k.delayed), htlc_basepoint: bytesToHex(k.htlc) };
  });

  app.get<{ Params: P & { index: string } }>(`${base}/points/:index`, { schema: { summary: "The holder's per-commitment point at an LDK commitment index", tags, security: secured, params: { ...channelParams, required: [...channelParams.required, 'index'], properties: { ...channelParams.properties, index } }, response: { 200: { type: 'object', properties: { point } }, ...errors } } }, async (req) => {
    return { point: bytesToHex(await channels().perCommitmentPoint(ctx(req), req.params.key, req.params.channel, BigInt(req.params.index))) };
  });

  type Setup = { channel_type: 'static_remotekey'; outbound: boolean; holder_selected_contest_delay: number; counterparty_selected_contest_delay: number; counterparty: Record<'funding_pubkey' | 'revocation_basepoint' | 'payment_point' | 'delayed_payment_basepoint' | 'htlc_basepoint', string>; funding_txid: string; funding_output_index: number; value_sat: string };
  app.post<{ Params: P; Body: Setup }>(
    `${base}/setup`,
    {
      schema: {
        summary: "The channel's parameters (LDK's provide_channel_parameters): set once; another set is refused",
        tags,
        security: secured,
        params: channelParams,
        body: body(['channel_type', 'outbound', 'holder_selected_contest_delay', 'counterparty_selected_contest_delay', 'counterparty', 'funding_txid', 'funding_output_index', 'value_sat'], {
          channel_type: { type: 'string', enum: ['static_remotekey', 'anchors_zero_fee_htlc_tx'], description: 'only static_remotekey is signed (anchors are refused)' },
          outbound: { type: 'boolean' },
          holder_selected_contest_delay: { type: 'integer', minimum: 0, maximum: 65535 },
          counterparty_selected_contest_delay: { type: 'integer', minimum: 0, maximum: 65535 },
          counterparty: body(['funding_pubkey', 'revocation_basepoint', 'payment_point', 'delayed_payment_basepoint', 'htlc_basepoint'], { funding_pubkey: point, revocation_basepoint: point, payment_point: point, delayed_payment_basepoint: point, htlc_basepoint: point }),
          funding_txid: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'display order' },
          funding_output_index: { type: 'integer', minimum: 0, maximum: 65535 },
          value_sat: { type: 'string', pattern: '^[1-9][0-9]{0,15}$' },
        }),
        response: nothing,
      },
    },
    async (req) => {
      const b = req.body;
      const c = b.counterparty;
      await channels().setup(ctx(req), req.params.key, req.params.channel, {
        channelType: b.channel_type,
        outbound: b.outbound,
        holderDelay: b.holder_selected_contest_delay,
        counterpartyDelay: b.counterparty_selected_contest_delay,
        counterparty: { funding: c.funding_pubkey, revocation: c.revocation_basepoint, payment: c.payment_point, delayed: c.delayed_payment_basepoint, htlc: c.htlc_basepoint },
        fundingTxid: b.funding_txid,
        fundingIndex: b.funding_output_index,
        valueSat: b.value_sat,
      });
      return { ok: true };
    },
  );

  app.post<{ Params: P; Body: { tx: string; counterparty_signature: string } }>(
    `${base}/validate-holder`,
    { bodyLimit, schema: { summary: 'A holder commitment the peer signed: the signature is checked and the commitment number recorded (in order)', tags, security: secured, params: channelParams, body: body(['tx', 'counterparty_signature'], { tx, counterparty_signature: signature }), response: nothing } },
    async (req) => {
      await channels().validateHolder(ctx(req), req.params.key, req.params.channel, { tx: hexToBytes(req.body.tx, 'tx'), counterpartySignature: hexToBytes(req.body.counterparty_signature, 'counterparty_signature') });
      return { ok: true };
    },
  );

  app.post<{ Params: P; Body: { index: string } }>(
    `${base}/release-secret`,
    { schema: { summary: "A holder commitment's per-commitment secret: only once a newer holder commitment is validated (it is revoked), never for one signed for broadcast", tags, security: secured, params: channelParams, body: body(['index'], { index }), response: { 200: { type: 'object', properties: { secret } }, ...errors } } },
    async (req) => {
      const s = await channels().releaseSecret(ctx(req), req.params.key, req.params.channel, BigInt(req.body.index));
      try {
        return { secret: bytesToHex(s) };
      } finally {
        wipe(s);
      }
    },
  );

  type Htlc = { offered: boolean; amount_msat: string; cltv_expiry: number; payment_hash: string; output_index?: number };
  app.post<{ Params: P; Body: { tx: string; per_commitment_point: string; feerate_per_kw: number; htlcs: Htlc[] } }>(
    `${base}/sign-counterparty`,
    {
      bodyLimit,
      schema: {
        summary: "The peer's commitment and its HTLC transactions: the number (read from the transaction) only moves forward, at most two unrevoked, each HTLC checked against the commitment's outputs",
        tags,
        security: secured,
        params: channelParams,
        body: body(['tx', 'per_commitment_point', 'feerate_per_kw', 'htlcs'], {
          tx,
          per_commitment_point: point,
          feerate_per_kw: { type: 'integer', minimum: 0, maximum: 4294967295 },
          htlcs: { type: 'array', maxItems: 966, items: body(['offered', 'amount_msat', 'cltv_expiry', 'payment_hash', 'output_index'], { offered: { type: 'boolean' }, amount_msat: { type: 'string', pattern: '^[0-9]{1,19}$' }, cltv_expiry: { type: 'integer', minimum: 0, maximum: 4294967295 }, payment_hash: secret, output_index: { type: 'integer', minimum: 0, maximum: 65535 } }) },
        }),
        response: { 200: { type: 'object', properties: { signature, htlc_signatures: { type: 'array', items: signature } } }, ...errors },
      },
    },
    async (req) => {
      const b = req.body;
      const r = await channels().signCounterparty(ctx(req), req.params.key, req.params.channel, {
        tx: hexToBytes(b.tx, 'tx'),
        perCommitmentPoint: hexToBytes(b.per_commitment_point, 'per_commitment_point'),
        feeratePerKw: b.feerate_per_kw,
        htlcs: b.htlcs.map((h) => ({ offered: h.offered, amountMsat: BigInt(h.amount_msat), cltvExpiry: h.cltv_expiry, paymentHash: hexToBytes(h.payment_hash, 'payment_hash'), outputIndex: h.output_index! })), // required by this route's schema
      });
      return { signature: bytesToHex(r.signature), htlc_signatures: r.htlcSignatures.map(bytesToHex) };
    },
  );

  app.post<{ Params: P; Body: { index: string; secret: string } }>(
    `${base}/validate-revocation`,
    { schema: { summary: "The peer's revocation of its commitment: the secret must open the point that commitment was signed with (in order)", tags, security: secured, params: channelParams, body: body(['index', 'secret'], { index, secret }), response: nothing } },
    async (req) => {
      const s = hexToBytes(req.body.secret, 'secret');
      try {
        await channels().validateRevocation(ctx(req), req.params.key, req.params.channel, BigInt(req.body.index), s);
      } finally {
        wipe(s);
      }
      return { ok: true };
    },
  );

  app.post<{ Params: P; Body: { tx: string } }>(
    `${base}/sign-holder`,
    { bodyLimit, schema: { summary: 'The latest validated holder commitment, for broadcast: never a revoked one; its secret is then never released', tags, security: secured, params: channelParams, body: body(['tx'], { tx }), response: signed } },
    async (req) => ({ signature: bytesToHex(await channels().signHolder(ctx(req), req.params.key, req.params.channel, hexToBytes(req.body.tx, 'tx'))) }),
  );

  const htlc = body(['offered', 'amount_msat', 'cltv_expiry', 'payment_hash'], { offered: { type: 'boolean' }, amount_msat: { type: 'string', pattern: '^[0-9]{1,19}$' }, cltv_expiry: { type: 'integer', minimum: 0, maximum: 4294967295 }, payment_hash: secret, output_index: { type: 'integer', minimum: 0, maximum: 65535 } });
  const htlcOf = (h: Htlc) => ({ offered: h.offered, amountMsat: BigInt(h.amount_msat), cltvExpiry: h.cltv_expiry, paymentHash: hexToBytes(h.payment_hash, 'payment_hash'), outputIndex: h.output_index ?? 0 });
  const input = { type: 'integer', minimum: 0, maximum: 65535 } as const;
  const amount = { type: 'string', pattern: '^[1-9][0-9]{0,15}$', description: 'satoshis' } as const;

  app.post<{ Params: P; Body: { tx: string; input: number; amount_sat: string; per_commitment_secret: string; htlc?: Htlc } }>(
    `${base}/sign-justice`,
    { bodyLimit, schema: { summary: "Justice: spends a revoked counterparty commitment's to_local output (or an HTLC output, given `htlc`) with the revocation key", tags, security: secured, params: channelParams, body: body(['tx', 'input', 'amount_sat', 'per_commitment_secret'], { tx, input, amount_sat: amount, per_commitment_secret: secret, htlc }), response: signed } },
    async (req) => {
      const b = req.body;
      const sec = hexToBytes(b.per_commitment_secret, 'per_commitment_secret');
      try {
        return { signature: bytesToHex(await channels().signJustice(ctx(req), req.params.key, req.params.channel, { tx: hexToBytes(b.tx, 'tx'), input: b.input, amount: BigInt(b.amount_sat), perCommitmentSecret: sec, ...(b.htlc ? { htlc: htlcOf(b.htlc) } : {}) })) };
      } finally {
        wipe(sec);
      }
    },
  );

  app.post<{ Params: P; Body: { tx: string; input: number; index: string; htlc: Htlc } }>(
    `${base}/sign-holder-htlc`,
    { bodyLimit, schema: { summary: 'An HTLC-success/-timeout transaction of the holder commitment signed for broadcast (never of a revoked one)', tags, security: secured, params: channelParams, body: body(['tx', 'input', 'index', 'htlc'], { tx, input, index, htlc }), response: signed } },
    async (req) => ({ signature: bytesToHex(await channels().signHolderHtlc(ctx(req), req.params.key, req.params.channel, { tx: hexToBytes(req.body.tx, 'tx'), input: req.body.input, index: BigInt(req.body.index), htlc: htlcOf(req.body.htlc) })) }),
  );

  app.post<{ Params: P; Body: { tx: string; input: number; amount_sat: string; per_commitment_point: string; htlc: Htlc } }>(
    `${base}/sign-counterparty-htlc`,
    { bodyLimit, schema: { summary: "Claims an HTLC output of the counterparty's commitment (one this node signed and that is not revoked)", tags, security: secured, params: channelParams, body: body(['tx', 'input', 'amount_sat', 'per_commitment_point', 'htlc'], { tx, input, amount_sat: amount, per_commitment_point: point, htlc }), response: signed } },
    async (req) => {
      const b = req.body;
      return { signature: bytesToHex(await channels().signCounterpartyHtlc(ctx(req), req.params.key, req.params.channel, { tx: hexToBytes(b.tx, 'tx'), input: b.input, amount: BigInt(b.amount_sat), perCommitmentPoint: hexToBytes(b.per_commitment_point, 'per_commitment_point'), htlc: htlcOf(b.htlc) })) };
    },
  );

  app.post<{ Params: P; Body: { tx: string; input: number; amount_sat: string; output: 'to_local' | 'to_remote'; per_commitment_point?: string } }>(
    `${base}/sign-sweep`,
    { bodyLimit, schema: { summary: "Sweeps this node's own output of a closed channel to its wallet script: to_local of a holder commitment signed for broadcast (per_commitment_point), or to_remote", tags, security: secured, params: channelParams, body: body(['tx', 'input', 'amount_sat', 'output'], { tx, input, amount_sat: amount, output: { type: 'string', enum: ['to_local', 'to_remote'] }, per_commitment_point: point }), response: signed } },
    async (req) => {
      const b = req.body;
      return { signature: bytesToHex(await channels().signSweep(ctx(req), req.params.key, req.params.channel, { tx: hexToBytes(b.tx, 'tx'), input: b.input, amount: BigInt(b.amount_sat), output: b.output, ...(b.per_commitment_point ? { perCommitmentPoint: hexToBytes(b.per_commitment_point, 'per_commitment_point') } : {}) })) };
    },
  );

  app.post<{ Params: P; Body: { tx: string } }>(
    `${base}/sign-closing`,
    { bodyLimit, schema: { summary: 'A mutual close spending the funding output: no commitment is signed after it', tags, security: secured, params: channelParams, body: body(['tx'], { tx }), response: signed } },
    async (req) => ({ signature: bytesToHex(await channels().signClosing(ctx(req), req.params.key, req.params.channel, hexToBytes(req.body.tx, 'tx'))) }),
  );
}
