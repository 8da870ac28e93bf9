/**
 * Envelope encryption of key material. Each key's secret is sealed with XChaCha20-Poly1305
 * under a key-encryption key derived from the root key. The associated data binds the vault
 * and everything about the key that must not change behind the vault's back: id, version,
 * algorithm, public key, exportable flag, origin and attributes (expiry, front-end metadata). A record copied onto another key's row,
 * or edited in the database (say `exportable` flipped, or the public key swapped for an
 * attacker's address), does not decrypt (`key_record_corrupt`) instead of being believed.
 */
import { sha256hex } from '../crypto/digest.js';
import { CustosError } from '../core/errors.js';
import { canonicalJson } from '../core/canonical.js';
import { utf8, wipe } from '../core/bytes.js';
import type { KeyRecord } from '../core/types.js';
import { open, seal } from '../crypto/aead.js';
import { deriveSubkey } from '../crypto/kdf.js';

type BoundFields = Pick<KeyRecord, 'id' | 'version' | 'algorithm' | 'publicKey' | 'exportable' | 'origin' | 'attributes'>;

export class Keyring {
  private readonly kek: Uint8Array;

  constructor(root: Uint8Array, private readonly vaultId: string) {
    this.kek = deriveSubkey(root, utf8(vaultId), 'custos/v1/key-encryption');
  }

  private ad(k: BoundFields): Uint8Array {
    const pub = sha256hex(k.publicKey);
    const attrs = sha256hex(canonicalJson(k.attributes));
    return utf8(`custos-key-v1\n${this.vaultId}\n${k.id}\n${k.version}\n${k.algorithm}\n${pub}\n${k.exportable ? 1 : 0}\n${k.origin}\n${attrs}`);
  }

  sealSecret(k: BoundFields, secret: Uint8Array): Uint8Array {
    return seal(this.kek, secret, this.ad(k));
  }

  /** The plaintext secret; the caller wipes it when done. */
  openSecret(k: KeyRecord): Uint8Array {
    // A verify-only key's envelope holds no secret: nothing may ever be handed one as a key.
    if (k.attributes.purpose === 'verify') throw new CustosError('key_purpose', `The key ${k.label} is a public key imported to verify signatures; it has no private key.`);
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

  /** Authenticates a record's bound fields (public key, exportable, ...) without keeping the secret. */
  checkRecord(k: KeyRecord): void {
    if (!k.sealed) return;
    const secret = open(this.kek, k.sealed, this.ad(k));
    if (!secret) this.openSecret(k);
    else secret.fill(0);
  }

  destroy(): void {
    wipe(this.kek);
  }
}
