/** Where private-key operations run: software (in this process) or a PKCS#11 token. */
import { CustosError } from '../core/errors.js';
import type { Algorithm, KeyAttributes, KeyRecord, SignOptions, SignPayload } from '../core/types.js';
import { ThresholdBackend } from './threshold.js';
import type { SignContext } from '../core/cluster.js';

export type { SignContext } from '../core/cluster.js';

export interface SignOutput {
  signature: Uint8Array;
  encoding: string;
  algorithm: Algorithm;
  /**
   * Consensus only: the sign bytes actually signed, when a threshold key's cosigners already
   * hold ones for this height/round/step that differ only in their timestamp.
   */
  signed?: Uint8Array;
}

export interface Backend {
  readonly name: string;
  /**
   * Signs with the key. `openSecret` yields what the vault sealed for the key (the plaintext
   * secret for software keys; a token reference or a token-wrapped blob for PKCS#11 keys) on
   * demand; the backend wipes what it opened.
   */
  sign(
    key: KeyRecord,
    openSecret: () => Uint8Array,
    payload: SignPayload,
    options: SignOptions,
    /** Who asked and what the bytes are, for a backend whose cosigners record and check it (threshold keys). */
    request?: SignContext,
  ): Promise<SignOutput>;
  /**
   * Creates a key inside the backend (backends that hold keys themselves). Returns the public
   * key, what the vault seals as the key's material, and attributes bound to the record.
   */
  generate?(algorithm: Algorithm, label: string, options: { wrapped: boolean }): Promise<{ publicKey: Uint8Array; material: Uint8Array; attributes: KeyAttributes }>;
  /** Deletes what the backend itself holds for a key, after its destroy committed. */
  destroy?(key: KeyRecord): Promise<void>;
  /** Whether requests can be served now, with an operator sentence when not. */
  health?(): { ok: boolean; detail?: string };
  /** Drops any prepared copy of the key (on disable, destroy, seal, shutdown). */
  forget(keyId: string): void;
  close(): void | Promise<void>;
}

/** The attribute naming a key's backend; absent means the software backend. */
export const BACKEND_ATTRIBUTE = 'backend';

/**
 * Routes each key to the backend named in its (envelope-bound) `backend` attribute, so one
 * vault serves software and HSM keys through the same request path.
 */
export class Backends implements Backend {
  readonly name = 'router';
  private readonly byName = new Map<string, Backend>();

  constructor(private readonly software: Backend, others: Backend[] = []) {
    this.byName.set(software.name, software);
    for (const b of others) this.byName.set(b.name, b);
    // A threshold key read where no cluster is configured says so, rather than "no such backend".
    if (!this.byName.has('threshold')) this.byName.set('threshold', new ThresholdBackend());
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  get(name: string): Backend | undefined {
    return this.byName.get(name);
  }

  of(key: Pick<KeyRecord, 'attributes'>): Backend {
    const name = key.attributes[BACKEND_ATTRIBUTE];
    if (name === undefined) return this.software;
    const b = typeof name === 'string' ? this.byName.get(name) : undefined;
    if (!b) throw new BackendMissing(String(name));
    return b;
  }

  sign(key: KeyRecord, openSecret: () => Uint8Array, payload: SignPayload, options: SignOptions, request?: SignContext) {
    return this.of(key).sign(key, openSecret, payload, options, request);
  }

  async destroy(key: KeyRecord): Promise<void> {
    await this.of(key).destroy?.(key);
  }

  forget(keyId: string): void {
    for (const b of this.byName.values()) b.forget(keyId);
  }

  async close(): Promise<void> {
    for (const b of this.byName.values()) await b.close();
  }
}

class BackendMissing extends CustosError {
  constructor(name: string) {
    super('hsm_unavailable', `The key lives in backend "${name}", which this daemon has not configured; add its [[pkcs11]] table to the configuration and restart.`);
  }
}
