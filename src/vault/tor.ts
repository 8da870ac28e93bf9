/**
 * Tor: a relay's ed25519 master identity key held in the vault (purpose `tor`), which signs
 * only relay signing certificates (torspec cert-spec, type 4 with the master key in extension
 * 4) over a medium-term key the relay host makes itself: the master never leaves, and a
 * relay run with `OfflineMasterKey 1` needs only the signing key and its certificate.
 *
 * A certificate's lifetime is bounded by the key: at most its `tor_max_lifetime_hours`
 * attribute (fixed when the key is made or imported; 720 h, tor's default 30 days, if absent),
 * and never past the key's own `expires_at`. Each certificate goes through the vault's signing
 * step (policy documents, audit) as a `sign` request with facts `protocol = tor`.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { createHash } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { assertPurpose } from '../core/purpose.js';
import type { KeyRecord } from '../core/types.js';
import { decodeTagged, hoursOf, relayCertBody } from '../crypto/tor-cert.js';
import { blindPublicKey, blindSigningSecret, checkPeriod, expandSeed, onionAddress, periodAt, subcredential, type TimePeriod } from '../crypto/tor-blind.js';
import { prepareSigner } from '../crypto/algorithms.js';
import { wipe } from '../core/bytes.js';
import type { Ctx, VaultCore } from './core.js';
import type { Keys } from './keys.js';
import { decideSignCommit } from './step.js';

export const DEFAULT_MAX_LIFETIME_HOURS = 720;
/** Ten years: a bound on what an operator can set, far beyond any sane signing-key lifetime. */
const MAX_MAX_LIFETIME_HOURS = 24 * 3650;

export interface RelayCert {
  /** The certificate (signed part and signature), as tor's `ed25519_signing_cert` holds it after its header. */
  cert: Uint8Array;
  masterPublicKey: Uint8Array;
  expiresHours: number;
}

function checkMaxLifetime(h: number | undefined): number {
  const v = h ?? DEFAULT_MAX_LIFETIME_HOURS;
  if (!Number.isInteger(v) || v < 1 || v > MAX_MAX_LIFETIME_HOURS) throw new CustosError('bad_request', `A maximum certificate lifetime is 1 to ${MAX_MAX_LIFETIME_HOURS} hours.`);
  return v;
}

export class Tor {
  constructor(
    private readonly core: VaultCore,
    private readonly keys: Keys,
  ) {}

  /** A new relay master identity key (Ed25519, purpose tor). */
  async createRelayMaster(ctx: Ctx, req: { label: string; maxLifetimeHours?: number }): Promise<KeyRecord> {
    const max = checkMaxLifetime(req.maxLifetimeHours);
    return this.keys.createKey(ctx, { label: req.label, algorithm: 'ed25519', exportable: false, purpose: 'tor', attributes: { tor_role: 'relay-master', tor_max_lifetime_hours: max } });
  }

  /** A relay's existing master key, from tor's `ed25519_master_id_secret_key` (the expanded secret; no seed). */
  async importRelayMaster(ctx: Ctx, req: { label: string; file: Uint8Array; maxLifetimeHours?: number }): Promise<KeyRecord> {
    const max = checkMaxLifetime(req.maxLifetimeHours);
    const { body } = await this.core.refuseOnError(ctx, 'import', { id: null, label: req.label }, {}, () => decodeTagged(req.file, 'ed25519v1-secret', 'type0'));
    const material = Uint8Array.from(body);
    try {
      return await this.keys.importKey(ctx, { label: req.label, algorithm: 'ed25519-expanded', format: 'raw', material, exportable: false, purpose: 'tor', attributes: { tor_role: 'relay-master', tor_max_lifetime_hours: max } });
    } finally {
      wipe(material);
    }
  }

  /** A new onion-service identity key K_hs_id (Ed25519, purpose tor): it signs only as its blinded keys. */
  async createOnionService(ctx: Ctx, req: { label: string }): Promise<KeyRecord> {
    return this.keys.createKey(ctx, { label: req.label, algorithm: 'ed25519', exportable: false, purpose: 'tor', attributes: { tor_role: 'onion-service' } });
  }

  /** An onion service's existing identity key, from tor's `hs_ed25519_secret_key` (the expanded secret). */
  async importOnionService(ctx: Ctx, req: { label: string; file: Uint8Array }): Promise<KeyRecord> {
    const { body } = await this.core.refuseOnError(ctx, 'import', { id: null, label: req.label }, {}, () => decodeTagged(req.file, 'ed25519v1-secret', 'type0'));
    const material = Uint8Array.from(body);
    try {
      return await this.keys.importKey(ctx, { label: req.label, algorithm: 'ed25519-expanded', format: 'raw', material, exportable: false, purpose: 'tor', attributes: { tor_role: 'onion-service' } });
    } finally {
      wipe(material);
    }
  }

  private checkOnion(key: KeyRecord): void {
    assertPurpose(key, 'tor');
    if (key.attributes.tor_role !== 'onion-service' || (key.algorithm !== 'ed25519' && key.algorithm !== 'ed25519-expanded')) throw new CustosError('bad_request', `${key.label} is not an onion-service identity key (tor onion-service --create or --import makes one).`);
  }

  /** An onion service's address, and the blinded public key and subcredential of a period (the current one by default). */
  async onionInfo(ctx: Ctx, ref: string, period?: TimePeriod): Promise<{ key: KeyRecord; address: string; period: TimePeriod; blindedPublicKey: Uint8Array; subcredential: Uint8Array }> {
    const key = await this.core.usableKey(ctx, 'tor_onion_info', ref, 'read');
    const p = await this.core.refuseOnError(ctx, 'tor_onion_info', key, {}, () => {
      this.checkOnion(key);
      return checkPeriod(period ?? periodAt(new Date()));
    });
    const blinded = blindPublicKey(key.publicKey, p);
    return { key, address: onionAddress(key.publicKey), period: p, blindedPublicKey: blinded, subcredential: subcredential(key.publicKey, blinded) };
  }

  /**
   * Signs `message` with the blinded key of a period (a descriptor's signing-key certificate, say):
   * the blinded secret is derived in memory from K_hs_id and wiped; K_hs_id never leaves. Only
   * the current and the next period are signed for (policy documents' `tor_periods` can narrow
   * that), and each period's signatures use their own nonce key (tor-blind.ts blindSigningSecret).
   */
  async blindSign(ctx: Ctx, ref: string, req: { period: TimePeriod; message: Uint8Array }): Promise<{ signature: Uint8Array; blindedPublicKey: Uint8Array }> {
    const key = await this.core.usableKey(ctx, 'tor_blind_sign', ref, 'sign');
    const details = { period: `${String(req.period.num).slice(0, 16)}/${String(req.period.length).slice(0, 8)}`, message_sha256: createHash('sha256').update(req.message).digest('hex') };
    const blinded = await this.core.refuseOnError(ctx, 'tor_blind_sign', key, details, () => {
      this.checkOnion(key);
      checkPeriod(req.period);
      // Only the periods tor signs for: the current one and the next (a policy's tor_periods can
      // narrow this, never widen it). A host that is later cleaned up holds nothing for after.
      const now = periodAt(new Date(), req.period.length).num;
      if (req.period.num !== now && req.period.num !== now + 1) throw new CustosError('policy_denied', `Period ${req.period.num} is neither the current (${now}) nor the next one: a blinded key signs only for those.`, { tag: 'tor_periods' });
      if (req.message.length > 64 * 1024) throw new CustosError('payload_too_large', 'A message to sign with a blinded key is at most 64 KiB.');
      return blindPublicKey(key.publicKey, req.period);
    });
    const signature = await decideSignCommit(this.core, {
      ctx,
      key,
      operation: 'sign',
      outcomeOperation: 'tor_blind_sign',
      subject: { payloadType: 'raw', facts: { protocol: 'tor', tor_op: 'blind_sign', tor_period_num: String(req.period.num), tor_period_length: String(req.period.length) }, payload: req.message },
      details: { ...details, blinded_public_key: Buffer.from(blinded).toString('hex') },
      produce: async () => {
        const secret = this.core.deps.keyring.openSecret(key);
        let expanded: Uint8Array | undefined;
        let b: Uint8Array | undefined;
        try {
          expanded = key.algorithm === 'ed25519' ? expandSeed(secret) : Uint8Array.from(secret);
          b = blindSigningSecret(expanded, key.publicKey, req.period);
          const signer = prepareSigner('ed25519-expanded', b);
          try {
            return signer.sign({ kind: 'message', bytes: req.message }, {}).signature;
          } finally {
            signer.destroy();
          }
        } finally {
          wipe(secret);
          if (expanded) wipe(expanded);
          if (b) wipe(b);
        }
      },
      outcome: (sig) => ({ signature_sha256: createHash('sha256').update(sig).digest('hex') }),
    });
    return { signature, blindedPublicKey: blinded };
  }

  /**
   * A type-4 certificate for the relay's medium-term signing key `signingPublicKey`, valid
   * for `lifetimeHours` from now, signed by the master key `ref`.
   */
  async relayCert(ctx: Ctx, ref: string, req: { signingPublicKey: Uint8Array; lifetimeHours: number }): Promise<RelayCert> {
    const key = await this.core.usableKey(ctx, 'tor_relay_cert', ref, 'sign');
    const details = { lifetime_hours: String(req.lifetimeHours).slice(0, 12) };
    const { body, expiresHours } = await this.core.refuseOnError(ctx, 'tor_relay_cert', key, details, () => {
      assertPurpose(key, 'tor');
      if (key.algorithm !== 'ed25519' && key.algorithm !== 'ed25519-expanded') throw new CustosError('bad_request', `${key.label} is not an Ed25519 key: a relay master identity is.`);
      if (key.attributes.tor_role !== 'relay-master') throw new CustosError('bad_request', `${key.label} is not a relay master key (tor relay-master --create or --import makes one).`);
      const signing = req.signingPublicKey;
      let ok = signing.length === 32;
      try {
        ok &&= !ed25519.Point.fromBytes(signing).isSmallOrder();
      } catch {
        ok = false;
      }
      if (!ok) throw new CustosError('bad_request', 'The signing key is not a valid Ed25519 public key (32 bytes).');
      if (Buffer.compare(Buffer.from(signing), Buffer.from(key.publicKey)) === 0) throw new CustosError('bad_request', 'The signing key is the master key itself: make a fresh medium-term key.');
      const max = Number(key.attributes.tor_max_lifetime_hours ?? DEFAULT_MAX_LIFETIME_HOURS);
      if (!Number.isInteger(req.lifetimeHours) || req.lifetimeHours < 1) throw new CustosError('bad_request', 'A certificate lifetime is a whole number of hours, at least 1.');
      if (req.lifetimeHours > max) throw new CustosError('policy_denied', `${key.label} certifies signing keys for at most ${max} hours (${Math.floor(max / 24)} days); ${req.lifetimeHours} were asked.`, { tag: 'tor_lifetime' });
      const expiresHours = hoursOf(Date.now() + req.lifetimeHours * 3_600_000);
      // (Compared at the hour the certificate names, which is rounded up.)
      const keyExpiry = typeof key.attributes.expires_at === 'string' ? Date.parse(key.attributes.expires_at) : NaN;
      if (!Number.isNaN(keyExpiry) && expiresHours * 3_600_000 > keyExpiry) throw new CustosError('policy_denied', `${key.label} expires at ${key.attributes.expires_at}: a certificate cannot outlive it.`, { tag: 'tor_lifetime' });
      return { body: relayCertBody(signing, key.publicKey, expiresHours), expiresHours };
    });
    const signature = await decideSignCommit(this.core, {
      ctx,
      key,
      operation: 'sign',
      outcomeOperation: 'tor_relay_cert',
      subject: { payloadType: 'raw', facts: { protocol: 'tor', tor_op: 'relay_cert', lifetime_hours: String(req.lifetimeHours) }, payload: body },
      details: { ...details, signing_key: Buffer.from(req.signingPublicKey).toString('hex'), expires_hours: String(expiresHours) },
      produce: async () => (await this.core.deps.backend.sign(key, () => this.core.deps.keyring.openSecret(key), { kind: 'message', bytes: body }, {}, { principal: ctx.principal.id, requestId: ctx.requestId, kind: 'raw' })).signature,
      outcome: (sig) => ({ cert_sha256: createHash('sha256').update(body).update(sig).digest('hex') }),
    });
    const cert = new Uint8Array(body.length + signature.length);
    cert.set(body);
    cert.set(signature, body.length);
    return { cert, masterPublicKey: key.publicKey, expiresHours };
  }
}
