/**
 * The backend of threshold keys: a signature is made by this node's cosigners and itself
 * (cluster/ drives the rounds). This adapter only hands the request to the coordinator the
 * daemon configured; without a [cluster] section a threshold key cannot sign here, and says so.
 */
import { CustosError } from '../core/errors.js';
import type { KeyRecord, SignOptions, SignPayload } from '../core/types.js';
import { THRESHOLD_BACKEND } from '../crypto/frost.js';
import type { SignContext, ThresholdCoordinator } from '../core/cluster.js';
import type { Backend, SignOutput } from './backend.js';

export class ThresholdBackend implements Backend {
  readonly name = THRESHOLD_BACKEND;

  constructor(private readonly coordinator: () => ThresholdCoordinator | null = () => null) {}

  async sign(key: KeyRecord, openSecret: () => Uint8Array, payload: SignPayload, options: SignOptions, request?: SignContext): Promise<SignOutput> {
    if (payload.kind !== 'message') throw new CustosError('digest_not_supported', 'A threshold key signs messages, not digests.');
    if (options.auxRand !== undefined) throw new CustosError('unsupported_option', 'A threshold signature takes its randomness from every cosigner; aux_rand does not apply.');
    const c = this.coordinator();
    if (!c) throw new CustosError('cosigners_unavailable', `${key.label} is a threshold key and this daemon has no [cluster] configuration: it signs only together with its cosigners.`);
    const r = await c.sign(key, openSecret, payload.bytes, request);
    return { signature: r.signature, encoding: 'raw', algorithm: key.algorithm, ...(r.signed ? { signed: r.signed } : {}) };
  }

  forget(): void {}

  close(): void {}
}
