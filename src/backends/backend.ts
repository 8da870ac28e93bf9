/** Where private-key operations run. Software today; PKCS#11 and threshold backends later. */
import type { Algorithm, KeyRecord, SignOptions, SignPayload } from '../core/types.js';

export interface Backend {
  readonly name: string;
  /**
   * Signs with the key. `openSecret` yields the plaintext secret on demand (the backend
   * decides whether and how long to keep a prepared copy); the backend wipes what it opened.
   */
  sign(
    key: KeyRecord,
    openSecret: () => Uint8Array,
    payload: SignPayload,
    options: SignOptions,
  ): Promise<{ signature: Uint8Array; encoding: string; algorithm: Algorithm }>;
  /** Drops any prepared copy of the key (on disable, destroy, seal, shutdown). */
  forget(keyId: string): void;
  close(): void;
}
