/**
 * Envelope encryption of key material. Each key's secret is sealed with XChaCha20-Poly1305
 * under a key-encryption key derived from the root key; the associated data binds the vault,
 * the key's id, version and algorithm, so a record copied onto another key's row, or edited,
 * does not decrypt (`key_record_corrupt`) instead of signing with the wrong key.
 */
import { CustosError } from '../core/errors.js';
import { utf8, wipe } from '../core/bytes.js';
import type { KeyRecord } from '../core/types.js';
import { open, seal } from '../crypto/aead.js';
import { deriveSubkey } from '../crypto/kdf.js';

export class Keyring {
  private readonly kek: Uint8Array;

  constructor(root: Uint8Array, private readonly vaultId: string) {
    this.kek = deriveSubkey(root, utf8(vaultId), 'custos/v1/key-encryption');
  }

  private ad(k: Pick<KeyRecord, 'id' | 'version' | 'algorithm'>): Uint8Array {
    return utf8(`custos-key-v1\n${this.vaultId}\n${k.id}\n${k.version}\n${k.algorithm}`);
  }

  sealSecret(k: Pick<KeyRecord, 'id' | 'version' | 'algorithm'>, secret: Uint8Array): Uint8Array {
    return seal(this.kek, secret, this.ad(k));
  }

  /** The plaintext secret; the caller wipes it when done. */
  openSecret(k: KeyRecord): Uint8Array {
    if (!k.sealed) throw new CustosError('key_destroyed', `The key ${k.label} was destroyed; its material no longer exists.`);
    const secret = open(this.kek, k.sealed, this.ad(k));
    if (!secret) {
      throw new CustosError(
        'key_record_corrupt',
        `The stored material of key ${k.label} (${k.id}) does not decrypt: the record was altered or moved from another key. Restore the database from a backup; the key cannot be used.`,
      );
    }
    return secret;
  }

  destroy(): void {
    wipe(this.kek);
  }
}
