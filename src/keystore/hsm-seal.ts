/**
 * Sealing by HSM: the root key is encrypted by an AES-256 key that never leaves a PKCS#11
 * token (AES-GCM through C_Encrypt/C_Decrypt), so a vault whose token and PIN are present
 * unseals itself at start. Recovery shares, made at init, open the same root if the token
 * is lost, as Vault's recovery keys do.
 */
import { utf8 } from '../core/bytes.js';

/** Associated data binding an HSM-encrypted root to its vault. */
export const hsmRootAd = (vaultId: string): Uint8Array => utf8(`custos-root-v1\n${vaultId}\nhsm`);

/** What the seal needs from a token: encrypt and decrypt 32 bytes under its AES key. */
export interface RootWrapper {
  readonly tokenLabel: string;
  readonly keyLabel: string;
  wrap(root: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** The root key; throws `hsm_unavailable` when the token cannot be used. */
  unwrap(wrapped: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
}
