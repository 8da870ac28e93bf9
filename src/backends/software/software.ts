/**
 * The software backend: keys are opened from their envelope inside this process and held
 * as prepared signers (a node:crypto KeyObject, or a private copy of the scalar for
 * @noble). A bounded cache keeps hot keys prepared, so a sign does not pay an AEAD
 * decryption and a key import each time. Evicted or forgotten signers are destroyed: a scalar
 * is zeroed; a KeyObject, which Node cannot zero, is dropped for the collector.
 */
import type { Algorithm, KeyRecord, SignOptions, SignPayload } from '../../core/types.js';
import { wipe } from '../../core/bytes.js';
import { prepareSigner, type Signer } from '../../crypto/algorithms.js';
import type { Backend } from '../backend.js';

export class SoftwareBackend implements Backend {
  readonly name = 'software';
  private readonly cache = new Map<string, { version: number; signer: Signer }>();

  constructor(private readonly maxPrepared = 10_000) {}

  private signerFor(key: KeyRecord, openSecret: () => Uint8Array): Signer {
    const hit = this.cache.get(key.id);
    if (hit && hit.version === key.version) {
      // Re-insert to keep the Map in least-recently-used order.
      this.cache.delete(key.id);
      this.cache.set(key.id, hit);
      return hit.signer;
    }
    const secret = openSecret();
    let signer: Signer;
    try {
      signer = prepareSigner(key.algorithm, secret);
    } finally {
      wipe(secret);
    }
    this.forget(key.id);
    this.cache.set(key.id, { version: key.version, signer });
    if (this.cache.size > this.maxPrepared) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.forget(oldest);
    }
    return signer;
  }

  async sign(key: KeyRecord, openSecret: () => Uint8Array, payload: SignPayload, options: SignOptions): Promise<{ signature: Uint8Array; encoding: string; algorithm: Algorithm }> {
    const signer = this.signerFor(key, openSecret);
    const { signature, encoding } = signer.sign(payload, options);
    return { signature, encoding, algorithm: key.algorithm };
  }

  forget(keyId: string): void {
    const hit = this.cache.get(keyId);
    if (hit) {
      hit.signer.destroy();
      this.cache.delete(keyId);
    }
  }

  close(): void {
    for (const id of [...this.cache.keys()]) this.forget(id);
  }
}
