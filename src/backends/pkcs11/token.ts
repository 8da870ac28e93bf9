/**
 * One PKCS#11 token, logged in as its user: generates and signs with non-extractable keys,
 * lists keys for adoption, and keeps "wrapped" keys (private keys encrypted by a token AES key,
 * stored by the vault, unwrapped into the token only for the length of one signature).
 *
 * Availability: any sign of a lost token or session (see errors.ts) marks the token
 * unavailable; requests then fail closed with `hsm_unavailable` until a recovery (on the next
 * request after the back-off, or by a background timer) finds the token again, reopens
 * sessions and logs in. A refused PIN is never retried automatically (tokens lock after a
 * few wrong PINs): requests fail with `hsm_login_failed` until the token is reopened.
 *
 * Hangs: pkcs11js runs C_Sign, C_GenerateKeyPair, C_WrapKey and C_UnwrapKey on libuv's thread
 * pool (its *Async variants), so the event loop keeps running while the module works, and a
 * timeout turns a call that does not come back into `hsm_unavailable`. The stuck thread cannot
 * be cancelled: it stays inside the module, its session is abandoned, and recovery (which must
 * call into the module) waits until it returns. Every other call (C_SignInit, C_FindObjects,
 * C_GetAttributeValue, C_Login, ...) is synchronous in pkcs11js; a module that hangs in one of
 * those blocks the whole process, and only a supervisor that restarts it (or running the
 * module in a separate process) can help. Four hung calls also exhaust libuv's default pool,
 * stalling fs and crypto work: set UV_THREADPOOL_SIZE if the module is known to stall.
 *
 * The PIN: pkcs11js's C_Login takes a JavaScript string, so at each login the PIN exists for
 * a moment as a V8 string (and in a native buffer pkcs11js frees without zeroing), which no
 * code can wipe. Custos keeps its own copy as bytes only, and wipes it on close.
 *
 * One Pkcs11Token per token per process: PKCS#11 login state belongs to the application, so
 * a second instance logging out or closing its sessions would log this one out too.
 */
import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { Attribute, Mechanism } from 'pkcs11js';
import { CustosError } from '../../core/errors.js';
import { bytesToHex, wipe } from '../../core/bytes.js';
import type { Algorithm, SignOptions, SignPayload } from '../../core/types.js';
import { Pkcs11Module } from './module.js';
import { ckrOf, ckrName, isTokenLoss, loginError, operationError } from './errors.js';
import { algorithmOf, canonicalPublicKey, keyPairSpec, requireTokenAlgorithm, type TokenAlgorithm } from './keys.js';
import { finishSignature, planSignature } from './sign.js';
import { decodeWrapped, encodeWrapped, WRAP_MECH_AES_KWP } from './wrapped.js';

type Handle = Buffer;

export interface Pkcs11TokenOptions {
  /** Path of the PKCS#11 module (shared library). */
  module: string;
  /** Which token: by label, or by serial number (one of them is required). */
  tokenLabel?: string;
  serial?: string;
  /** The user PIN; copied, so the caller may wipe its own buffer after open. */
  pin: Uint8Array;
  /** Sessions in the pool: how many operations may be inside the token at once (default 8). */
  sessions?: number;
  /** Limit for a signature, wrap or unwrap inside the module (default 10 s). */
  callTimeoutMs?: number;
  /** Limit for key generation (default 120 s: RSA-4096 can take seconds). */
  generateTimeoutMs?: number;
}

export type TokenState = 'ready' | 'unavailable';

export interface TokenStatus {
  state: TokenState;
  /** Why the token is unavailable, as an operator sentence. */
  reason?: string;
  /** The error code requests get meanwhile: `hsm_unavailable` or `hsm_login_failed:<tag>`. */
  code?: string;
}

/** A private key on the token, as listed for adoption. */
export interface TokenKey {
  /** CKA_ID */
  id: Uint8Array;
  label: string;
  /** null when the key is of a kind Custos cannot use. */
  algorithm: TokenAlgorithm | null;
  /** Canonical raw public key; null when unknown algorithm or no public key object. */
  publicKey: Uint8Array | null;
  extractable: boolean;
  sensitive: boolean;
}

export interface GeneratedKey {
  id: Uint8Array;
  publicKey: Uint8Array;
}

export interface WrappedKey {
  /** The blob to store (see wrapped.ts); useless without this token's wrapping key. */
  wrapped: Uint8Array;
  publicKey: Uint8Array;
}

interface CachedKey {
  handle: Handle;
  algorithm: TokenAlgorithm | null;
}

const RETRY_MIN_MS = 250;

/**
 * A call succeeded but the token no longer answers: SoftHSM2 reports no objects at all, rather
 * than an error, once its token directory has gone; "not found" must not be the answer then.
 */
class TokenLost extends Error {}
const RETRY_MAX_MS = 30_000;

export class Pkcs11Token {
  private readonly opts: Required<Pick<Pkcs11TokenOptions, 'sessions' | 'callTimeoutMs' | 'generateTimeoutMs'>> &
    Pick<Pkcs11TokenOptions, 'module' | 'tokenLabel' | 'serial'>;
  private readonly name: string;
  private module: Pkcs11Module | null;
  private pin: Uint8Array;

  private slot: Handle | null = null;
  /** Module generation the current sessions belong to. */
  private generation = -1;
  private idle: Handle[] = [];
  private busy = new Set<Handle>();
  private waiters: Array<{ resolve: (s: Handle) => void; reject: (e: unknown) => void }> = [];

  private state: TokenState | 'closed' = 'unavailable';
  private failure: CustosError | null = null;
  /** A refused PIN: recovery waits for the operator, never retries the PIN. */
  private pinRefused = false;
  private backoffMs = RETRY_MIN_MS;
  private nextAttemptAt = 0;
  private retryTimer: NodeJS.Timeout | null = null;

  private keys = new Map<string, CachedKey>();
  private wrappingKeys = new Map<string, { handle: Handle; id: Uint8Array }>();
  private ensuring = new Map<string, Promise<Uint8Array>>();

  private constructor(opts: Pkcs11TokenOptions, module: Pkcs11Module) {
    this.opts = {
      module: opts.module,
      tokenLabel: opts.tokenLabel,
      serial: opts.serial,
      sessions: opts.sessions ?? 8,
      callTimeoutMs: opts.callTimeoutMs ?? 10_000,
      generateTimeoutMs: opts.generateTimeoutMs ?? 120_000,
    };
    this.name = opts.tokenLabel !== undefined ? `"${opts.tokenLabel}"` : `with serial ${opts.serial}`;
    this.module = module;
    this.pin = Uint8Array.from(opts.pin);
  }

  /**
   * Loads the module, finds the token, opens the session pool and logs in. Throws
   * `hsm_unavailable` (module, token) or `hsm_login_failed` (PIN) and leaves nothing open.
   */
  static async open(opts: Pkcs11TokenOptions): Promise<Pkcs11Token> {
    if ((opts.tokenLabel === undefined) === (opts.serial === undefined)) {
      throw new CustosError('config_invalid', 'Name the PKCS#11 token by exactly one of its label or its serial number.');
    }
    if (opts.sessions !== undefined && (!Number.isInteger(opts.sessions) || opts.sessions < 1)) {
      throw new CustosError('config_invalid', 'The PKCS#11 session pool needs at least one session.');
    }
    pinString(opts.pin); // Fails early on a PIN pkcs11js cannot pass (not UTF-8).
    const token = new Pkcs11Token(opts, Pkcs11Module.acquire(opts.module));
    try {
      token.connect();
    } catch (e) {
      await token.close();
      throw e;
    }
    return token;
  }

  status(): TokenStatus {
    if (this.state === 'ready') return { state: 'ready' };
    const reason = this.state === 'closed' ? 'The token has been closed.' : this.failure?.message ?? 'The token is not connected.';
    return { state: 'unavailable', reason, code: this.failure?.fullCode ?? 'hsm_unavailable' };
  }

  // ---- keys on the token ------------------------------------------------------------------

  /** Generates a non-extractable key pair on the token (CKA_TOKEN). */
  async generateKeyPair(alg: Algorithm, opts: { label: string; id?: Uint8Array }): Promise<GeneratedKey> {
    const talg = requireTokenAlgorithm(alg);
    const id = opts.id ? Uint8Array.from(opts.id) : new Uint8Array(randomBytes(16));
    return this.withSession(`generating a ${alg} key`, async (s) => {
      const pair = await this.generatePair(s, talg, { token: true, extractable: false, label: opts.label, id });
      const publicKey = this.readPublicKey(s, talg, pair.publicKey, pair.privateKey);
      this.keys.set(bytesToHex(id), { handle: pair.privateKey, algorithm: talg });
      return { id, publicKey };
    });
  }

  /** Signs with the token key whose CKA_ID is `id`; the same bytes and encoding as the software path. */
  async sign(id: Uint8Array, alg: Algorithm, payload: SignPayload, options: SignOptions): Promise<{ signature: Uint8Array; encoding: string }> {
    const talg = requireTokenAlgorithm(alg);
    const plan = planSignature(talg, payload, options);
    return this.withSession(`signing with key ${bytesToHex(id)}`, async (s) => {
      let raw: Buffer;
      try {
        raw = await this.signOnce(s, this.privateKey(s, id, talg), plan.mechanism, plan.data, plan.outLength);
      } catch (e) {
        // A cached handle may be stale after the token was recovered; look the key up once more.
        const rv = ckrOf(e);
        if (rv !== pkcs11js.CKR_OBJECT_HANDLE_INVALID && rv !== pkcs11js.CKR_KEY_HANDLE_INVALID) throw e;
        this.keys.delete(bytesToHex(id));
        raw = await this.signOnce(s, this.privateKey(s, id, talg), plan.mechanism, plan.data, plan.outLength);
      }
      return finishSignature(talg, raw, options);
    });
  }

  /** Private keys on the token, with what Custos can tell about each. */
  async list(): Promise<TokenKey[]> {
    return this.withSession('listing keys', async (s) => {
      const handles = this.find(s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }]);
      return handles.map((h) => this.describe(s, h));
    });
  }

  async findById(id: Uint8Array): Promise<TokenKey | null> {
    return this.withSession('looking up a key', async (s) => {
      const [h] = this.find(s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }, { type: pkcs11js.CKA_ID, value: Buffer.from(id) }]);
      return h ? this.describe(s, h) : null;
    });
  }

  /** The private key with this CKA_LABEL; null if none; `bad_request` if several share it. */
  async findByLabel(label: string): Promise<TokenKey | null> {
    return this.withSession('looking up a key', async (s) => {
      const hs = this.find(s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }, { type: pkcs11js.CKA_LABEL, value: label }]);
      if (hs.length > 1) throw new CustosError('bad_request', `${hs.length} private keys on the token carry the label "${label}"; adopt one by its id.`);
      return hs[0] ? this.describe(s, hs[0]) : null;
    });
  }

  /** Destroys every object (private and public key) with this CKA_ID; `key_not_found` if none. */
  async destroy(id: Uint8Array): Promise<void> {
    await this.withSession('destroying a key', async (s) => {
      const hs = this.find(s, [{ type: pkcs11js.CKA_ID, value: Buffer.from(id) }]);
      if (hs.length === 0) throw new CustosError('key_not_found', `No object on the token has the id ${bytesToHex(id)}.`);
      this.keys.delete(bytesToHex(id));
      for (const h of hs) this.lib.C_DestroyObject(s, h);
    });
  }

  // ---- wrapped keys -----------------------------------------------------------------------

  /**
   * Finds or creates the AES-256 wrapping key with this label (on the token, sensitive,
   * never extractable, usable only to wrap and unwrap). Returns its CKA_ID.
   */
  async ensureWrappingKey(label: string): Promise<Uint8Array> {
    const pending = this.ensuring.get(label);
    if (pending) return pending;
    const p = this.withSession('preparing the wrapping key', async (s) => this.wrappingKey(s, label, true).id).finally(() => this.ensuring.delete(label));
    this.ensuring.set(label, p);
    return p;
  }

  /**
   * Generates a key pair as session objects, wraps the private key under the token's AES key
   * and destroys both objects: the key exists afterwards only as the returned blob. The
   * plaintext key never leaves the token (C_WrapKey, not C_Encrypt of exported bytes).
   */
  async generateWrapped(alg: Algorithm, wrappingKeyLabel: string): Promise<WrappedKey> {
    const talg = requireTokenAlgorithm(alg);
    return this.withSession(`generating a wrapped ${alg} key`, async (s) => {
      const wk = this.wrappingKey(s, wrappingKeyLabel, false);
      const pair = await this.generatePair(s, talg, { token: false, extractable: true });
      try {
        const publicKey = this.readPublicKey(s, talg, pair.publicKey, pair.privateKey);
        let out: Buffer;
        try {
          // RFC 5649 (CKM_AES_KEY_WRAP_PAD), see wrapMechanism() for why.
          out = await this.timed('wrapping a key', this.opts.callTimeoutMs, s, () =>
            this.lib.C_WrapKeyAsync(s, wrapMechanism(), wk.handle, pair.privateKey, Buffer.alloc(talg.startsWith('rsa') ? 4096 : 512)),
          );
        } catch (e) {
          if (ckrOf(e) === pkcs11js.CKR_KEY_NOT_WRAPPABLE) {
            throw new CustosError(
              'unsupported_algorithm',
              `This PKCS#11 module cannot wrap ${alg} keys (SoftHSM 2.6 wraps only RSA and EC keys, not EdDSA); keep ${alg} keys on the token instead.`,
            );
          }
          throw e;
        }
        return { wrapped: encodeWrapped({ mechanism: WRAP_MECH_AES_KWP, algorithm: talg, wrappingKeyId: wk.id, wrapped: out }), publicKey };
      } finally {
        this.destroyQuietly(s, pair.privateKey);
        this.destroyQuietly(s, pair.publicKey);
      }
    });
  }

  /**
   * Unwraps the key into a session object of the token (sensitive, not extractable, sign
   * only), signs, and destroys the object, all on one session.
   */
  async signWrapped(
    wrapped: Uint8Array,
    alg: Algorithm,
    wrappingKeyLabel: string,
    payload: SignPayload,
    options: SignOptions,
  ): Promise<{ signature: Uint8Array; encoding: string }> {
    const talg = requireTokenAlgorithm(alg);
    const blob = decodeWrapped(wrapped);
    if (blob.algorithm !== talg) throw new CustosError('key_record_corrupt', `The wrapped key holds a ${blob.algorithm} key, not ${alg}.`);
    const plan = planSignature(talg, payload, options);
    return this.withSession('signing with a wrapped key', async (s) => {
      const wk = this.wrappingKey(s, wrappingKeyLabel, false);
      if (!Buffer.from(wk.id).equals(Buffer.from(blob.wrappingKeyId))) {
        throw new CustosError(
          'key_record_corrupt',
          `The key was wrapped under another wrapping key than the token's "${wrappingKeyLabel}" (id ${bytesToHex(blob.wrappingKeyId)}, token has ${bytesToHex(wk.id)}); it cannot be unwrapped on this token.`,
        );
      }
      const template: Attribute[] = [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: keyPairSpec(talg).keyType },
        { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_SIGN, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: false },
        { type: pkcs11js.CKA_UNWRAP, value: false },
        { type: pkcs11js.CKA_DERIVE, value: false },
      ];
      let key: Handle;
      try {
        key = await this.timed('unwrapping a key', this.opts.callTimeoutMs, s, () =>
          this.lib.C_UnwrapKeyAsync(s, wrapMechanism(), wk.handle, Buffer.from(blob.wrapped), template),
        );
      } catch (e) {
        // SoftHSM answers CKR_GENERAL_ERROR for a failed integrity check; tell that apart from
        // a lost token by asking the token whether it is still there.
        const rv = ckrOf(e);
        if ((rv === pkcs11js.CKR_GENERAL_ERROR || rv === pkcs11js.CKR_WRAPPED_KEY_INVALID || rv === pkcs11js.CKR_WRAPPED_KEY_LEN_RANGE) && this.probe(s)) {
          throw new CustosError('key_record_corrupt', 'The wrapped key does not unwrap under the token\'s wrapping key: it was altered, or wrapped by another token.');
        }
        throw e;
      }
      try {
        const raw = await this.signOnce(s, key, plan.mechanism, plan.data, plan.outLength);
        return finishSignature(talg, raw, options);
      } finally {
        this.destroyQuietly(s, key);
      }
    });
  }

  // ---- the vault's root seal ------------------------------------------------------------------

  /**
   * AES-256-GCM inside the token under the AES key `label` (created on first use: on the
   * token, sensitive, never extractable, encrypt/decrypt only, so it is a different key from
   * the wrapping key). Returns iv (12) ‖ ciphertext ‖ tag (16). Used to seal the root key.
   */
  async sealEncrypt(label: string, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    return this.withSession('sealing the root key', async (s) => {
      const key = this.sealKey(s, label, true);
      const iv = randomBytes(12);
      this.lib.C_EncryptInit(s, gcm(iv, aad), key);
      const out = this.lib.C_Encrypt(s, Buffer.from(plaintext), Buffer.alloc(plaintext.length + 16));
      return new Uint8Array(Buffer.concat([iv, out]));
    });
  }

  /** Opens what `sealEncrypt` produced; `key_record_corrupt` when it does not authenticate. */
  async sealDecrypt(label: string, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    if (sealed.length < 12 + 16) throw new CustosError('database_corrupt', 'The HSM-sealed root key is too short; the seal record was altered.');
    return this.withSession('unsealing the root key', async (s) => {
      const key = this.sealKey(s, label, false);
      this.lib.C_DecryptInit(s, gcm(Buffer.from(sealed.subarray(0, 12)), aad), key);
      let out: Buffer;
      try {
        out = this.lib.C_Decrypt(s, Buffer.from(sealed.subarray(12)), Buffer.alloc(sealed.length));
      } catch (e) {
        const rv = ckrOf(e);
        if ((rv === pkcs11js.CKR_ENCRYPTED_DATA_INVALID || rv === pkcs11js.CKR_GENERAL_ERROR || rv === pkcs11js.CKR_ENCRYPTED_DATA_LEN_RANGE) && this.probe(s)) {
          throw new CustosError('database_corrupt', 'The HSM-sealed root key does not decrypt under the token\'s seal key: the seal record was altered, or the token holds another key under that label.');
        }
        throw e;
      }
      const root = new Uint8Array(out);
      out.fill(0);
      return root;
    });
  }

  private sealKey(s: Handle, label: string, create: boolean): Handle {
    const template: Attribute[] = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_LABEL, value: label },
    ];
    const hs = this.find(s, template);
    if (hs.length > 1) throw new CustosError('config_invalid', `The token holds ${hs.length} AES keys labelled "${label}"; the seal needs exactly one.`);
    if (hs[0]) {
      if (this.attr(s, hs[0], pkcs11js.CKA_DECRYPT)?.[0] !== 1) throw new CustosError('config_invalid', `The token's AES key "${label}" may not decrypt; it is not a Custos seal key.`);
      return hs[0];
    }
    if (!create) throw new CustosError('hsm_unavailable', `The token has no seal key labelled "${label}": this is not the token the vault was sealed with, or the key was deleted.`);
    return this.lib.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      ...template,
      { type: pkcs11js.CKA_ID, value: randomBytes(16) },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_SIGN, value: false },
      { type: pkcs11js.CKA_VERIFY, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ]);
  }

  // ---- data objects (the audit anchor of an HSM-sealed vault) ---------------------------------

  /**
   * The values of the private token data objects (CKO_DATA) labelled `label`: none, one, or
   * (after a crash in the middle of `writeData`) two. Private objects are readable only after
   * login, so only holders of the PIN see them.
   */
  async readData(label: string): Promise<Uint8Array[]> {
    return this.withSession('reading a data object', async (s) => this.find(s, dataTemplate(label)).map((h) => new Uint8Array(this.attr(s, h, pkcs11js.CKA_VALUE) ?? Buffer.alloc(0))));
  }

  /**
   * Replaces the private token data objects labelled `label` with one holding `value`: the
   * new object is created before the old ones are destroyed, so a crash in between leaves
   * both, never none. (SoftHSM 2.6 refuses to modify CKA_VALUE of a data object in place.)
   */
  async writeData(label: string, value: Uint8Array): Promise<void> {
    await this.withSession('writing a data object', async (s) => {
      const old = this.find(s, dataTemplate(label));
      const created = this.lib.C_CreateObject(s, [
        ...dataTemplate(label),
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_MODIFIABLE, value: true },
        { type: pkcs11js.CKA_APPLICATION, value: 'custos' },
        { type: pkcs11js.CKA_VALUE, value: Buffer.from(value) },
      ]);
      for (const h of old) if (!h.equals(created)) this.lib.C_DestroyObject(s, h);
    });
  }

  // ---- life cycle ---------------------------------------------------------------------------

  /** Logs out, closes the sessions, releases the module and wipes the PIN. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.rejectWaiters(new CustosError('hsm_unavailable', 'The PKCS#11 token was closed.'));
    const module = this.module;
    this.module = null;
    if (module) {
      // Operations still running finish first (bounded by their own timeouts).
      const deadline = Date.now() + this.opts.callTimeoutMs;
      while (this.busy.size > 0 && Date.now() < deadline && module.hungCalls === 0) await new Promise((r) => setTimeout(r, 5));
      if (module.hungCalls === 0) this.closeSessions(module);
      module.release();
    }
    this.keys.clear();
    this.wrappingKeys.clear();
    wipe(this.pin);
  }

  // ---- sessions, availability, recovery -----------------------------------------------------

  private get lib(): pkcs11js.PKCS11 {
    if (!this.module) throw new CustosError('hsm_unavailable', 'The PKCS#11 token was closed.');
    return this.module.lib;
  }

  /** Finds the slot, opens the pool and logs in; marks the token ready or throws. */
  private connect(): void {
    const lib = this.lib;
    const slot = this.findSlot();
    const sessions: Handle[] = [];
    try {
      for (let i = 0; i < this.opts.sessions; i++) sessions.push(lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION));
      try {
        lib.C_Login(sessions[0]!, pkcs11js.CKU_USER, pinString(this.pin));
      } catch (e) {
        if (ckrOf(e) !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw e;
      }
    } catch (e) {
      for (const s of sessions) {
        try {
          lib.C_CloseSession(s);
        } catch {
          // The session is gone with the token.
        }
      }
      const login = loginError(e, this.name);
      if (login) {
        this.pinRefused = true;
        this.failure = login;
        throw login;
      }
      throw this.unavailableError(`opening sessions failed (${ckrOf(e) === null ? 'module error' : ckrName(ckrOf(e)!)})`, e);
    }
    this.slot = slot;
    this.idle = sessions;
    this.busy.clear();
    this.generation = this.module!.generation;
    this.keys.clear();
    this.wrappingKeys.clear();
    this.state = 'ready';
    this.failure = null;
    this.backoffMs = RETRY_MIN_MS;
  }

  private findSlot(): Handle {
    const lib = this.lib;
    let slots: Handle[];
    try {
      slots = lib.C_GetSlotList(true);
    } catch (e) {
      throw this.unavailableError('the module could not list its slots', e);
    }
    for (const slot of slots) {
      let info: pkcs11js.TokenInfo;
      try {
        info = lib.C_GetTokenInfo(slot);
      } catch {
        continue;
      }
      if (this.opts.tokenLabel !== undefined && info.label.trimEnd() === this.opts.tokenLabel) return slot;
      if (this.opts.serial !== undefined && info.serialNumber.trim() === this.opts.serial) return slot;
    }
    throw this.unavailableError('no slot holds it');
  }

  private unavailableError(what: string, cause?: unknown): CustosError {
    return new CustosError(
      'hsm_unavailable',
      `The PKCS#11 token ${this.name} is unavailable: ${what}. Signing with its keys is refused until it is back; check that the token is present and its module works.`,
      cause === undefined ? undefined : { cause },
    );
  }

  /** Marks the token lost: pending and later requests fail closed until a recovery succeeds. */
  private markUnavailable(err: CustosError): void {
    if (this.state === 'closed') return;
    this.state = 'unavailable';
    if (!this.failure || !this.pinRefused) this.failure = err;
    // Sessions and handles of a lost token are void; busy ones are dropped when returned.
    this.idle = [];
    this.keys.clear();
    this.wrappingKeys.clear();
    this.rejectWaiters(err);
    this.nextAttemptAt = Date.now() + this.backoffMs;
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.pinRefused || this.state !== 'unavailable') return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.recover();
      this.scheduleRetry();
    }, Math.max(0, this.nextAttemptAt - Date.now()));
    this.retryTimer.unref();
  }

  /**
   * One recovery attempt: re-initialise the module if nobody else has since our sessions
   * opened (SoftHSM2 sees token changes only then), find the slot again, reopen, log in.
   */
  private recover(): void {
    if (this.state !== 'unavailable' || this.pinRefused || !this.module) return;
    const module = this.module;
    if (module.hungCalls > 0) {
      this.failure = this.unavailableError('a call into the PKCS#11 module has not returned; it is retried once the module answers (restart the vault if it never does)');
      this.nextAttemptAt = Date.now() + this.backoff();
      return;
    }
    this.closeSessions(module);
    try {
      // Rescan the tokens (C_Finalize + C_Initialize) unless another user of the module just
      // did; remember the generation we asked for, so that if the token is still missing the
      // next attempt rescans again instead of reusing a scan that cannot see it.
      if (module.generation === this.generation) module.reinitialize();
      else module.ensureInitialized();
      this.generation = module.generation;
      this.connect();
    } catch (e) {
      if (!this.pinRefused) this.failure = e instanceof CustosError ? e : this.unavailableError('recovery failed', e);
      this.nextAttemptAt = Date.now() + this.backoff();
    }
  }

  private backoff(): number {
    const b = this.backoffMs;
    this.backoffMs = Math.min(RETRY_MAX_MS, this.backoffMs * 2);
    return b;
  }

  private closeSessions(module: Pkcs11Module): void {
    if (this.slot === null || module.generation !== this.generation) return;
    try {
      if (this.state === 'closed') {
        const s = this.idle[0];
        if (s) module.lib.C_Logout(s);
      }
    } catch {
      // Logged out already, or the token is gone.
    }
    try {
      module.lib.C_CloseAllSessions(this.slot);
    } catch {
      // As above.
    }
    this.idle = [];
  }

  private rejectWaiters(err: unknown): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(err);
  }

  private ready(): void {
    if (this.state === 'closed') throw new CustosError('hsm_unavailable', 'The PKCS#11 token was closed.');
    if (this.state === 'unavailable' && !this.pinRefused && Date.now() >= this.nextAttemptAt) this.recover();
    if (this.state !== 'ready') throw this.failure ?? this.unavailableError('it is not connected');
  }

  private async acquire(): Promise<Handle> {
    this.ready();
    const s = this.idle.pop();
    if (s) {
      this.busy.add(s);
      return s;
    }
    return new Promise<Handle>((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private release(s: Handle, generation: number): void {
    if (!this.busy.delete(s)) return;
    if (this.state !== 'ready' || generation !== this.generation) return; // Void session of a lost token.
    const w = this.waiters.shift();
    if (w) {
      this.busy.add(s);
      w.resolve(s);
    } else this.idle.push(s);
  }

  /**
   * Runs one operation on a session of its own. Token loss marks the token unavailable and
   * fails the request with `hsm_unavailable`; other PKCS#11 errors fail only this request.
   */
  private async withSession<T>(what: string, op: (s: Handle) => Promise<T>): Promise<T> {
    const s = await this.acquire();
    const generation = this.generation;
    let poisoned = false;
    try {
      return await op(s);
    } catch (e) {
      if (e instanceof CustosError) {
        if (e.code === 'hsm_unavailable') poisoned = true;
        throw e;
      }
      const rv = ckrOf(e);
      const ambiguous = rv === pkcs11js.CKR_GENERAL_ERROR || rv === pkcs11js.CKR_FUNCTION_FAILED;
      const lost = e instanceof TokenLost || (isTokenLoss(e) && !(ambiguous && this.probe(s)));
      if (lost) {
        poisoned = true;
        if (this.state === 'ready' && generation === this.generation) {
          const how = rv === null ? 'the token stopped answering' : `it failed with ${ckrName(rv)}, a sign that the token or its session was lost`;
          this.markUnavailable(this.unavailableError(`${what}: ${how}`, e));
        }
        throw this.failure ?? this.unavailableError(`${what} failed`);
      }
      throw operationError(e, what);
    } finally {
      if (poisoned) this.busy.delete(s);
      else this.release(s, generation);
    }
  }

  /** Whether the token still answers on this session (after an ambiguous error). */
  private probe(s: Handle): boolean {
    try {
      this.lib.C_GetSessionInfo(s);
      if (this.slot) this.lib.C_GetTokenInfo(this.slot);
      return true;
    } catch {
      return false;
    }
  }

  /** Runs an async module call with a time limit; a late call poisons its session and the token. */
  private async timed<T>(what: string, ms: number, s: Handle, call: () => Promise<T>): Promise<T> {
    const module = this.module!;
    const p = module.track(call);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), ms);
    });
    try {
      return await Promise.race([p, late]);
    } catch (e) {
      if (e instanceof Error && e.message === 'timeout' && ckrOf(e) === null && !(e instanceof pkcs11js.NativeError)) {
        module.markHung(p);
        p.catch(() => {}); // Its eventual failure is no longer anyone's business.
        this.busy.delete(s);
        const err = this.unavailableError(`the module did not finish ${what} within ${ms} ms`);
        this.markUnavailable(err);
        throw err;
      }
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- object helpers -------------------------------------------------------------------------

  private async signOnce(s: Handle, key: Handle, mechanism: Mechanism, data: Buffer, outLength: number): Promise<Buffer> {
    this.lib.C_SignInit(s, mechanism, key);
    return this.timed('a signature', this.opts.callTimeoutMs, s, () => this.lib.C_SignAsync(s, data, Buffer.alloc(outLength)));
  }

  private async generatePair(
    s: Handle,
    alg: TokenAlgorithm,
    o: { token: boolean; extractable: boolean; label?: string; id?: Uint8Array },
  ): Promise<pkcs11js.KeyPair> {
    const spec = keyPairSpec(alg);
    const common: Attribute[] = [{ type: pkcs11js.CKA_TOKEN, value: o.token }];
    if (o.label !== undefined) common.push({ type: pkcs11js.CKA_LABEL, value: o.label });
    if (o.id !== undefined) common.push({ type: pkcs11js.CKA_ID, value: Buffer.from(o.id) });
    const pub: Attribute[] = [...common, ...spec.publicKind, { type: pkcs11js.CKA_VERIFY, value: true }, { type: pkcs11js.CKA_ENCRYPT, value: false }, { type: pkcs11js.CKA_WRAP, value: false }];
    const priv: Attribute[] = [
      ...common,
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: o.extractable },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    return this.timed(`generating a ${alg} key`, this.opts.generateTimeoutMs, s, () => this.lib.C_GenerateKeyPairAsync(s, spec.mechanism, pub, priv));
  }

  private readPublicKey(s: Handle, alg: TokenAlgorithm, pub: Handle, priv: Handle): Uint8Array {
    if (alg.startsWith('rsa')) {
      const [m, e] = this.lib.C_GetAttributeValue(s, priv, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
      return canonicalPublicKey(alg, { modulus: m!.value, exponent: e!.value });
    }
    const [p] = this.lib.C_GetAttributeValue(s, pub, [{ type: pkcs11js.CKA_EC_POINT }]);
    return canonicalPublicKey(alg, { ecPoint: p!.value });
  }

  private find(s: Handle, template: Attribute[]): Handle[] {
    const lib = this.lib;
    lib.C_FindObjectsInit(s, template);
    const out: Handle[] = [];
    try {
      for (;;) {
        const batch = lib.C_FindObjects(s, 64);
        out.push(...batch);
        if (batch.length < 64) break;
      }
    } finally {
      lib.C_FindObjectsFinal(s);
    }
    if (out.length === 0 && !this.probe(s)) throw new TokenLost('finding objects');
    return out;
  }

  private attr(s: Handle, h: Handle, type: number): Buffer | null {
    try {
      return this.lib.C_GetAttributeValue(s, h, [{ type }])[0]?.value ?? null;
    } catch (e) {
      const rv = ckrOf(e);
      if (rv === pkcs11js.CKR_ATTRIBUTE_TYPE_INVALID || rv === pkcs11js.CKR_ATTRIBUTE_SENSITIVE) return null;
      throw e;
    }
  }

  private keyAlgorithm(s: Handle, h: Handle): TokenAlgorithm | null {
    const kt = this.attr(s, h, pkcs11js.CKA_KEY_TYPE);
    if (!kt) return null;
    const keyType = kt.length >= 8 ? Number(kt.readBigUInt64LE(0)) : kt.readUInt32LE(0);
    const isRsa = keyType === pkcs11js.CKK_RSA;
    return algorithmOf(keyType, isRsa ? null : this.attr(s, h, pkcs11js.CKA_EC_PARAMS), isRsa ? this.attr(s, h, pkcs11js.CKA_MODULUS) : null);
  }

  private describe(s: Handle, h: Handle): TokenKey {
    const id = new Uint8Array(this.attr(s, h, pkcs11js.CKA_ID) ?? Buffer.alloc(0));
    const label = (this.attr(s, h, pkcs11js.CKA_LABEL) ?? Buffer.alloc(0)).toString('utf8');
    const bool = (t: number) => (this.attr(s, h, t)?.[0] ?? 0) !== 0;
    const algorithm = this.keyAlgorithm(s, h);
    let publicKey: Uint8Array | null = null;
    if (algorithm) {
      try {
        if (algorithm.startsWith('rsa')) {
          publicKey = canonicalPublicKey(algorithm, { modulus: this.attr(s, h, pkcs11js.CKA_MODULUS), exponent: this.attr(s, h, pkcs11js.CKA_PUBLIC_EXPONENT) });
        } else {
          const [pub] = this.find(s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY }, { type: pkcs11js.CKA_ID, value: Buffer.from(id) }]);
          if (pub) publicKey = canonicalPublicKey(algorithm, { ecPoint: this.attr(s, pub, pkcs11js.CKA_EC_POINT) });
        }
      } catch (e) {
        if (!(e instanceof CustosError)) throw e;
      }
    }
    return { id, label, algorithm, publicKey, extractable: bool(pkcs11js.CKA_EXTRACTABLE), sensitive: bool(pkcs11js.CKA_SENSITIVE) };
  }

  private privateKey(s: Handle, id: Uint8Array, alg: TokenAlgorithm): Handle {
    const hex = bytesToHex(id);
    let cached = this.keys.get(hex);
    if (!cached) {
      const hs = this.find(s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }, { type: pkcs11js.CKA_ID, value: Buffer.from(id) }]);
      if (hs.length === 0) throw new CustosError('key_not_found', `The token holds no private key with id ${hex}.`);
      if (hs.length > 1) throw new CustosError('key_record_corrupt', `The token holds ${hs.length} private keys with id ${hex}; remove the duplicates.`);
      cached = { handle: hs[0]!, algorithm: this.keyAlgorithm(s, hs[0]!) };
      this.keys.set(hex, cached);
    } else if (!Buffer.from(id).equals(this.attr(s, cached.handle, pkcs11js.CKA_ID) ?? Buffer.alloc(0))) {
      // Handles are only valid while the object exists, and a module may hand the same number
      // to a new object after a re-initialisation: never sign with whatever it now points to.
      this.keys.delete(hex);
      return this.privateKey(s, id, alg);
    }
    if (cached.algorithm !== alg) {
      throw new CustosError('key_record_corrupt', `The token key ${hex} is ${cached.algorithm ?? 'of a kind Custos does not use'}, not ${alg}.`);
    }
    return cached.handle;
  }

  private wrappingKey(s: Handle, label: string, create: boolean): { handle: Handle; id: Uint8Array } {
    const cached = this.wrappingKeys.get(label);
    if (cached) return cached;
    const template: Attribute[] = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_LABEL, value: label },
    ];
    const hs = this.find(s, template);
    if (hs.length > 1) throw new CustosError('key_record_corrupt', `The token holds ${hs.length} AES keys labelled "${label}"; wrapping needs exactly one.`);
    let handle = hs[0];
    let id: Uint8Array;
    if (handle) {
      id = new Uint8Array(this.attr(s, handle, pkcs11js.CKA_ID) ?? Buffer.alloc(0));
      if (this.attr(s, handle, pkcs11js.CKA_UNWRAP)?.[0] !== 1 || this.attr(s, handle, pkcs11js.CKA_WRAP)?.[0] !== 1) {
        throw new CustosError('key_record_corrupt', `The token's AES key "${label}" is not allowed to wrap and unwrap keys.`);
      }
    } else {
      if (!create) throw new CustosError('key_not_found', `The token has no wrapping key labelled "${label}"; keys wrapped under it cannot be used on this token.`);
      id = new Uint8Array(randomBytes(16));
      handle = this.lib.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        ...template.slice(1),
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_ID, value: Buffer.from(id) },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_WRAP, value: true },
        { type: pkcs11js.CKA_UNWRAP, value: true },
        { type: pkcs11js.CKA_ENCRYPT, value: false },
        { type: pkcs11js.CKA_DECRYPT, value: false },
        { type: pkcs11js.CKA_SIGN, value: false },
        { type: pkcs11js.CKA_VERIFY, value: false },
        { type: pkcs11js.CKA_DERIVE, value: false },
      ]);
    }
    const wk = { handle, id };
    this.wrappingKeys.set(label, wk);
    return wk;
  }

  private destroyQuietly(s: Handle, h: Handle): void {
    try {
      this.lib.C_DestroyObject(s, h);
    } catch {
      // A session object dies with its session anyway (PKCS#11 §4.4: CKA_TOKEN false).
    }
  }
}

/**
 * The wrap mechanism: CKM_AES_KEY_WRAP_PAD (RFC 5649). SoftHSM 2.6 can unwrap only with
 * CKM_AES_KEY_WRAP and _PAD (CKM_AES_CBC_PAD is refused for wrapping, CKM_AES_CBC wraps but
 * cannot unwrap, GCM cannot wrap at all). RFC 3394 (KEY_WRAP) takes multiples of 8 bytes
 * only, and the PKCS#8 of an EC or RSA key often is not; RFC 5649 takes any length and is what
 * other HSMs implement for private keys. SoftHSM 2.6 zero-pads the PKCS#8 to a multiple of 8
 * before either mechanism (so the "true length" is lost), which is harmless: its PKCS#8
 * decoder (OpenSSL d2i) stops at the end of the DER and ignores the zeros. Both mechanisms
 * check integrity on unwrap (the RFC's IV check), so an altered blob is refused.
 */
function wrapMechanism(): Mechanism {
  return { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };
}

/** pkcs11js passes the PIN to C_Login as a UTF-8 string; other bytes would be mangled. */
function pinString(pin: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(pin);
  } catch {
    throw new CustosError('config_invalid', 'The PKCS#11 PIN is not valid UTF-8, which the PKCS#11 binding cannot pass to the token.');
  }
}

function gcm(iv: Buffer, aad: Uint8Array): Mechanism {
  const parameter: pkcs11js.AesGCM = { type: pkcs11js.CK_PARAMS_AES_GCM, iv, aad: Buffer.from(aad), ivBits: 96, tagBits: 128 };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

const dataTemplate = (label: string): Attribute[] => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
  { type: pkcs11js.CKA_LABEL, value: label },
];
