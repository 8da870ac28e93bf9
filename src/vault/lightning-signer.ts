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
 *
 * What each operation parses and checks (its plan) is in vault/lightning-commitments.ts (the
 * funding output's spends) and vault/lightning-claims.ts (a closing channel's outputs); this
 * module keeps the channel's keys and state and runs every plan through the one step.
 */
import { CustosError, isCustosError } from '../core/errors.js';
import { wipe } from '../core/bytes.js';
import type { AuditDraft, KeyRecord } from '../core/types.js';
import { decodeRecord, recordHash, ZERO_HASH } from '../crypto/lightning-record.js';
import { perCommitmentSecret, pointOf } from '../lightning/bolt3.js';
import { channelPublicKeys, channelSecrets, checkKeysId, p2wpkh, WALLET_PATH, wipeSecrets, type ChannelPublicKeys, type ChannelSecrets } from '../lightning/channel-keys.js';
import { publicKeyAt } from '../wallet/hd.js';
import { decideChannel, decodeState, encodeState, freshState, SIGNER_OBJECT_PREFIX, type ChannelParams, type ChannelState } from '../lightning/channel-policy.js';
import type { Ctx, VaultCore } from './core.js';
import type { Lightning } from './lightning.js';
import { decideSignCommit } from './step.js';
import { hex, numberOfIndex, type Plan } from './lightning-channel-plan.js';
import * as commitments from './lightning-commitments.js';
import type { CounterpartyCommitment } from './lightning-commitments.js';
import * as claims from './lightning-claims.js';
import type { CounterpartyHtlcClaim, HolderHtlcClaim, JusticeClaim, SweepClaim } from './lightning-claims.js';

export type { CounterpartyCommitment } from './lightning-commitments.js';

/** The holder's per-commitment point at LDK index `idx` (the secret on the way is wiped). */
function holderPointOf(commitmentSeed: Uint8Array, idx: bigint): Uint8Array {
  const secret = perCommitmentSecret(commitmentSeed, idx);
  try {
    return pointOf(secret);
  } finally {
    wipe(secret);
  }
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
    await this.step(ctx, ref, keysId, 'setup', false, () => commitments.setup(params));
  }

  /** Releases the holder's per-commitment secret of LDK index `idx`: only for a revoked commitment. */
  async releaseSecret(ctx: Ctx, ref: string, keysId: string, idx: bigint): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, 'release_secret', true, () => commitments.releaseSecret(idx));
  }

  /** A holder commitment the counterparty signed (commitment_signed): its signature is checked, its number recorded. */
  async validateHolder(ctx: Ctx, ref: string, keysId: string, req: { tx: Uint8Array; counterpartySignature: Uint8Array }): Promise<void> {
    await this.step(ctx, ref, keysId, 'validate_holder', false, (state, pub, holderPoint) => commitments.validateHolder(req, state, pub, holderPoint));
  }

  /** Signs the holder's latest commitment for broadcast (a force close): never a revoked one. */
  async signHolder(ctx: Ctx, ref: string, keysId: string, txBytes: Uint8Array): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, 'sign_holder', true, (state, pub) => commitments.signHolder(txBytes, state, pub));
  }

  /**
   * Signs the counterparty's commitment and its HTLC transactions: the number only moves
   * forward, at most two unrevoked, each HTLC checked against the commitment's outputs.
   */
  async signCounterparty(ctx: Ctx, ref: string, keysId: string, c: CounterpartyCommitment): Promise<{ signature: Uint8Array; htlcSignatures: Uint8Array[] }> {
    return this.step(ctx, ref, keysId, 'sign_counterparty', true, (state, pub) => commitments.signCounterparty(c, state, pub));
  }

  /** The counterparty revoked its commitment of LDK index `idx`: the secret must open the point the vault signed that commitment with. */
  async validateRevocation(ctx: Ctx, ref: string, keysId: string, idx: bigint, secret: Uint8Array): Promise<void> {
    await this.step(ctx, ref, keysId, 'validate_revocation', false, () => commitments.validateRevocation(idx, secret));
  }

  /**
   * Signs a mutual close: version 2, final (sequence 0xffffffff, locktime 0), paying the
   * counterparty no more than it is owed (the rules), the rest to the vault's wallet script.
   */
  async signClosing(ctx: Ctx, ref: string, keysId: string, txBytes: Uint8Array): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, 'sign_closing', true, (state, pub, _point, wallet) => commitments.signClosing(txBytes, state, pub, wallet));
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
   * Justice: a transaction taking a revoked counterparty commitment's output (its to_local, or
   * an HTLC output when `htlc` is given) with the revocation key, which only the counterparty's
   * per-commitment secret (its revocation) opens.
   */
  async signJustice(ctx: Ctx, ref: string, keysId: string, req: JusticeClaim): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, req.htlc ? 'sign_justice_htlc' : 'sign_justice', true, (state, pub, _point, wallet) => claims.signJustice(req, state, pub, wallet));
  }

  /**
   * The holder's HTLC-success/-timeout transaction, of the commitment signed for broadcast only
   * (never of a revoked one): its output must pay this node's delayed key, revocable.
   */
  async signHolderHtlc(ctx: Ctx, ref: string, keysId: string, req: HolderHtlcClaim): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, 'sign_holder_htlc', true, (state, pub, holderPoint) => claims.signHolderHtlc(req, state, pub, holderPoint));
  }

  /**
   * Claims an HTLC output of the counterparty's commitment (with the preimage, or after its
   * timeout): only of a commitment this node signed and the counterparty has not revoked.
   */
  async signCounterpartyHtlc(ctx: Ctx, ref: string, keysId: string, req: CounterpartyHtlcClaim): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, 'sign_counterparty_htlc', true, (state, pub, _point, wallet) => claims.signCounterpartyHtlc(req, state, pub, wallet));
  }

  /**
   * Sweeps one of this node's own outputs of a closed channel to its wallet script: its
   * `to_local` on a holder commitment signed for broadcast (after the delay; `perCommitmentPoint`
   * names which), or its `to_remote` (P2WPKH of its payment point) on the counterparty's.
   */
  async signSweep(ctx: Ctx, ref: string, keysId: string, req: SweepClaim): Promise<Uint8Array> {
    return this.step(ctx, ref, keysId, `sweep_${req.output}`, true, (state, pub, holderPoint, wallet) => claims.signSweep(req, state, pub, holderPoint, wallet));
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
