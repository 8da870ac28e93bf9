/**
 * PKCS#11 keys behind the vault's request path. Two kinds, named in the key's envelope-bound
 * attributes:
 *   - token keys (`pkcs11.kind = token`): generated inside the token, sensitive and never
 *     extractable; the vault seals only their CKA_ID;
 *   - wrapped keys (`pkcs11.kind = wrapped`): generated in the token, wrapped by its AES key
 *     and stored (sealed again by the vault) in the database; unwrapped into a session
 *     object for each signature. Millions of keys, one token object; plaintext key material
 *     never exists in this process for either kind.
 */
import { CustosError } from '../../core/errors.js';
import { bytesToHex, hexToBytes, wipe } from '../../core/bytes.js';
import type { Algorithm, KeyAttributes, KeyRecord, SignOptions, SignPayload } from '../../core/types.js';
import type { Backend } from '../backend.js';
import type { Pkcs11Token } from './token.js';

export const DEFAULT_WRAPPING_KEY = 'custos-wrapping-key';

export class Pkcs11Backend implements Backend {
  /** `pkcs11:<name>`, the value of a key's `backend` attribute. */
  readonly name: string;
  private current: Pkcs11Token | null = null;
  private opening: Promise<Pkcs11Token> | null = null;
  private openFailure: Error | null = null;
  private nextOpenAt = 0;
  private backoffMs = 500;
  private closed = false;

  /**
   * `token` is an open token, or a function that opens it: then a token missing at start
   * makes the backend unavailable (health, `hsm_unavailable`) instead of stopping the
   * daemon, and it is opened again, with backoff, when a request or health check comes.
   */
  constructor(readonly tokenName: string, token: Pkcs11Token | (() => Promise<Pkcs11Token>), private readonly wrappingKeyLabel = DEFAULT_WRAPPING_KEY) {
    this.name = `pkcs11:${tokenName}`;
    if (typeof token === 'function') this.opener = token;
    else this.current = token;
  }

  private opener: (() => Promise<Pkcs11Token>) | null = null;

  /** The open token; throws `hsm_unavailable` (or the login error) while it cannot be opened. */
  get token(): Pkcs11Token {
    if (this.current) return this.current;
    void this.tryOpen();
    throw this.unavailable();
  }

  private unavailable(): CustosError {
    const why = this.openFailure instanceof CustosError ? this.openFailure : null;
    return why ?? new CustosError('hsm_unavailable', `PKCS#11 token ${this.tokenName} is not open yet; retrying.`);
  }

  /** Opens the token if it is not open (at most one attempt at a time, with backoff). */
  async tryOpen(): Promise<Pkcs11Token | null> {
    if (this.current) return this.current;
    if (!this.opener || this.closed) return null;
    if (!this.opening) {
      if (Date.now() < this.nextOpenAt) return null;
      this.opening = this.opener()
        .then((t) => {
          if (this.closed) {
            void t.close();
            throw new CustosError('hsm_unavailable', 'closed');
          }
          this.current = t;
          this.openFailure = null;
          this.backoffMs = 500;
          return t;
        })
        .catch((e: unknown) => {
          this.openFailure = e as Error;
          this.nextOpenAt = Date.now() + this.backoffMs;
          this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
          throw e;
        })
        .finally(() => {
          this.opening = null;
        });
    }
    return this.opening.catch(() => null);
  }

  /** The open token, opening it if needed; throws `hsm_unavailable` (or the login error) when it cannot. */
  async ready(): Promise<Pkcs11Token> {
    const t = this.current ?? (await this.tryOpen());
    if (!t) throw this.unavailable();
    return t;
  }

  async generate(algorithm: Algorithm, label: string, options: { wrapped: boolean }): Promise<{ publicKey: Uint8Array; material: Uint8Array; attributes: KeyAttributes }> {
    const token = await this.ready();
    if (options.wrapped) {
      await token.ensureWrappingKey(this.wrappingKeyLabel);
      const w = await token.generateWrapped(algorithm, this.wrappingKeyLabel);
      return { publicKey: w.publicKey, material: w.wrapped, attributes: { backend: this.name, 'pkcs11.kind': 'wrapped', 'pkcs11.wrapping_key': this.wrappingKeyLabel } };
    }
    const g = await token.generateKeyPair(algorithm, { label });
    return { publicKey: g.publicKey, material: g.id, attributes: { backend: this.name, 'pkcs11.kind': 'token', 'pkcs11.id': bytesToHex(g.id) } };
  }

  /** The private keys on the token (for adoption). */
  async listObjects() {
    return (await this.ready()).list();
  }

  /** A key already on the token, found by CKA_LABEL or CKA_ID, as the vault will record it. */
  async adopt(ref: { objectLabel?: string; objectId?: string }): Promise<{ algorithm: Algorithm; publicKey: Uint8Array; material: Uint8Array; attributes: KeyAttributes }> {
    const token = await this.ready();
    const found = ref.objectId !== undefined ? await token.findById(hexToBytes(ref.objectId, 'object id')) : await token.findByLabel(ref.objectLabel ?? '');
    const what = ref.objectId !== undefined ? `id ${ref.objectId}` : `label "${ref.objectLabel}"`;
    if (!found) throw new CustosError('key_not_found', `No private key on token ${this.tokenName} has the ${what}.`);
    if (!found.algorithm || !found.publicKey) throw new CustosError('unsupported_algorithm', `The key with ${what} on token ${this.tokenName} is of a kind Custos cannot use (or has no public key object).`);
    if (found.extractable || !found.sensitive) {
      throw new CustosError('bad_request', `The key with ${what} is extractable or not sensitive: its material could leave the token, so Custos will not vouch for it. Adopt only sensitive, non-extractable keys.`);
    }
    return { algorithm: found.algorithm, publicKey: found.publicKey, material: Uint8Array.from(found.id), attributes: { backend: this.name, 'pkcs11.kind': 'token', 'pkcs11.id': bytesToHex(found.id), 'pkcs11.adopted': true } };
  }

  async sign(key: KeyRecord, openSecret: () => Uint8Array, payload: SignPayload, options: SignOptions): Promise<{ signature: Uint8Array; encoding: string; algorithm: Algorithm }> {
    const token = await this.ready();
    const material = openSecret();
    try {
      const out =
        key.attributes['pkcs11.kind'] === 'wrapped'
          ? await token.signWrapped(material, key.algorithm, String(key.attributes['pkcs11.wrapping_key'] ?? this.wrappingKeyLabel), payload, options)
          : await token.sign(material, key.algorithm, payload, options);
      return { ...out, algorithm: key.algorithm };
    } finally {
      wipe(material);
    }
  }

  async destroy(key: KeyRecord): Promise<void> {
    // A wrapped key is gone with its database record; a token key is deleted from the token.
    if (key.attributes['pkcs11.kind'] !== 'token' || typeof key.attributes['pkcs11.id'] !== 'string') return;
    const token = await this.ready();
    await token.destroy(hexToBytes(key.attributes['pkcs11.id'], 'object id')).catch((e: unknown) => {
      if (!(e instanceof CustosError && e.code === 'key_not_found')) throw e;
    });
  }

  health(): { ok: boolean; detail?: string } {
    if (!this.current) {
      void this.tryOpen();
      return { ok: false, detail: this.openFailure?.message ?? 'the token is being opened' };
    }
    const s = this.current.status();
    return s.state === 'ready' ? { ok: true } : { ok: false, detail: s.reason ?? 'unavailable' };
  }

  forget(): void {}

  async close(): Promise<void> {
    this.closed = true;
    await this.opening?.catch(() => undefined);
    await this.current?.close();
    this.current = null;
  }
}
