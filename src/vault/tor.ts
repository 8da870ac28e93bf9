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
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { constants, createHash, createPrivateKey, privateEncrypt } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { assertPurpose } from '../core/purpose.js';
import type { KeyRecord } from '../core/types.js';
import { decodeTagged, hoursOf, relayCertBody } from '../crypto/tor-cert.js';
import { blindPublicKey, blindSigningSecret, checkPeriod, expandSeed, onionAddress, periodAt, subcredential, type TimePeriod } from '../crypto/tor-blind.js';
import { prepareSigner } from '../crypto/algorithms.js';
import { wipe } from '../core/bytes.js';
import { sha256hex, type Ctx, type VaultCore } from './core.js';
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
    const details = { period: `${String(req.period.num).slice(0, 16)}/${String(req.period.length).slice(0, 8)}`, message_sha256: sha256hex(req.message) };
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
      outcome: (sig) => ({ signature_sha256: sha256hex(sig) }),
    });
    return { signature, blindedPublicKey: blinded };
  }

  /** A relay's (or directory authority's) RSA-1024 identity key, from tor's `secret_id_key` (PEM, PKCS#1 or PKCS#8). */
  async importRsaIdentity(ctx: Ctx, req: { label: string; pem: Uint8Array }): Promise<KeyRecord> {
    const der = await this.core.refuseOnError(ctx, 'import', { id: null, label: req.label }, {}, () => {
      let k;
      try {
        k = createPrivateKey({ key: Buffer.from(req.pem.buffer, req.pem.byteOffset, req.pem.byteLength), format: 'pem' });
      } catch {
        throw new CustosError('bad_request', 'The file is not a PEM RSA private key (tor\'s secret_id_key is "-----BEGIN RSA PRIVATE KEY-----").');
      }
      if (k.asymmetricKeyType !== 'rsa' || k.asymmetricKeyDetails?.modulusLength !== 1024) throw new CustosError('bad_request', "A Tor RSA identity key is RSA-1024 (tor's secret_id_key).");
      return k.export({ format: 'der', type: 'pkcs8' }) as Uint8Array; // wiped below
    });
    try {
      return await this.keys.importKey(ctx, { label: req.label, algorithm: 'rsa-1024', format: 'pkcs8', material: der, exportable: false, purpose: 'tor', attributes: { tor_role: 'rsa-identity' } });
    } finally {
      wipe(der);
    }
  }

  /** A new RSA-1024 identity key for Tor (a new relay or directory authority). */
  async createRsaIdentity(ctx: Ctx, req: { label: string }): Promise<KeyRecord> {
    return this.keys.createKey(ctx, { label: req.label, algorithm: 'rsa-1024', exportable: false, purpose: 'tor', attributes: { tor_role: 'rsa-identity' } });
  }

  /**
   * Tor's `crypto_pk_private_sign`: RSA PKCS#1 v1.5 (block type 1) over the digest itself, with
   * no DigestInfo. Only a 20-byte (SHA-1) or 32-byte (SHA-256) digest: a longer input could be a
   * DigestInfo the caller built, and the result an ordinary PKCS#1 signature for anything.
   */
  async rsaSign(ctx: Ctx, ref: string, digest: Uint8Array): Promise<Uint8Array> {
    const key = await this.core.usableKey(ctx, 'tor_rsa_sign', ref, 'sign');
    const details = { digest: sha256hex(digest), digest_bytes: String(digest.length) };
    await this.core.refuseOnError(ctx, 'tor_rsa_sign', key, details, () => {
      assertPurpose(key, 'tor');
      if (key.attributes.tor_role !== 'rsa-identity' || key.algorithm !== 'rsa-1024') throw new CustosError('bad_request', `${key.label} is not a Tor RSA identity key.`);
      if (digest.length !== 20 && digest.length !== 32) throw new CustosError('bad_request', 'Tor signs a SHA-1 (20-byte) or SHA-256 (32-byte) digest with its RSA keys; nothing else is signed raw.');
    });
    return decideSignCommit(this.core, {
      ctx,
      key,
      operation: 'sign',
      outcomeOperation: 'tor_rsa_sign',
      subject: { payloadType: 'digest', facts: { protocol: 'tor', tor_op: 'rsa_sign' }, payload: digest },
      details,
      produce: async () => {
        const secret = this.core.deps.keyring.openSecret(key);
        try {
          const k = createPrivateKey({ key: Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength), format: 'der', type: 'pkcs8' }); // a view: no copy to forget
          return new Uint8Array(privateEncrypt({ key: k, padding: constants.RSA_PKCS1_PADDING }, digest));
        } finally {
          wipe(secret);
        }
      },
      outcome: (sig) => ({ signature_sha256: sha256hex(sig) }),
    });
  }

  /** A new X25519 key for Tor (an ntor onion key, a descriptor-decryption key): it agrees on keys and signs nothing. */
  async createX25519(ctx: Ctx, req: { label: string }): Promise<KeyRecord> {
    return this.keys.createKey(ctx, { label: req.label, algorithm: 'x25519', exportable: false, purpose: 'tor', attributes: { tor_role: 'x25519' } });
  }

  /** An existing X25519 secret (32 bytes, as tor and Arti keep it). */
  async importX25519(ctx: Ctx, req: { label: string; secret: Uint8Array }): Promise<KeyRecord> {
    return this.keys.importKey(ctx, { label: req.label, algorithm: 'x25519', format: 'raw', material: req.secret, exportable: false, purpose: 'tor', attributes: { tor_role: 'x25519' } });
  }

  /**
   * X25519(k, peer) with a vault key (ntor, descriptor decryption): the shared secret, as
   * RFC 7748 gives it. A peer key of small order (an all-zero result) is refused.
   */
  async x25519(ctx: Ctx, ref: string, peer: Uint8Array): Promise<Uint8Array> {
    const key = await this.core.usableKey(ctx, 'tor_x25519', ref, 'ecdh');
    const details = { peer: Buffer.from(peer).toString('hex').slice(0, 64) };
    await this.core.refuseOnError(ctx, 'tor_x25519', key, details, () => {
      assertPurpose(key, 'tor');
      if (key.algorithm !== 'x25519' || key.attributes.tor_role !== 'x25519') throw new CustosError('bad_request', `${key.label} is not a Tor X25519 key.`);
      if (peer.length !== 32) throw new CustosError('bad_request', 'An X25519 public key is 32 bytes.');
    });
    return decideSignCommit(this.core, {
      ctx,
      key,
      operation: 'ecdh',
      outcomeOperation: 'tor_x25519',
      subject: { payloadType: null, facts: { protocol: 'tor', tor_op: 'x25519' } },
      details,
      produce: async () => {
        const secret = this.core.deps.keyring.openSecret(key);
        try {
          let shared: Uint8Array;
          try {
            shared = x25519.getSharedSecret(secret, peer);
          } catch {
            shared = new Uint8Array(32);
          }
          if (shared.every((b) => b === 0)) throw new CustosError('bad_request', 'The peer key is of small order (the shared secret would be zero): refused.');
          return shared;
        } finally {
          wipe(secret);
        }
      },
      outcome: () => ({}),
    });
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
