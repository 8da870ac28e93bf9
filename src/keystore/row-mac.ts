/**
 * The row MACs of an unsealed vault (store/rows.ts says which rows and which bytes):
 * HMAC-SHA256 under K_rows = HKDF(root, vault id, "custos/v1/row-mac"), over the vault id,
 * the table, the length-prefixed primary key and the row's canonical bytes. Binding the
 * primary key means a valid row copied under another key's id, or another chain's watermark,
 * does not verify. Comparison is constant-time (node:crypto timingSafeEqual). The elements of
 * the keyed multiset digest (store/rows.ts) are HMAC-SHA512 under a second derived key.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { utf8, wipe } from '../core/bytes.js';
import { deriveSubkey } from '../crypto/kdf.js';
import type { ProtectedTable, RowAuthenticator } from '../store/rows.js';

export class RowMac implements RowAuthenticator {
  private readonly key: Uint8Array;
  private readonly setKey: Uint8Array;
  private readonly prefix: Uint8Array;

  constructor(
    root: Uint8Array,
    vaultId: string,
    /** Told of every row that fails (metrics, log); must not throw. */
    private readonly onAlarm: (table: ProtectedTable, pk: string, problem: string) => void = () => undefined,
  ) {
    this.key = deriveSubkey(root, utf8(vaultId), 'custos/v1/row-mac');
    // The digest's elements are never stored: a different key, so that no stored MAC is one.
    this.setKey = deriveSubkey(root, utf8(vaultId), 'custos/v1/row-set');
    this.prefix = utf8(`custos-row-v1\n${vaultId}\n`);
  }

  mac(table: ProtectedTable, pk: string, bytes: Uint8Array): Uint8Array {
    const p = Buffer.from(pk, 'utf8');
    return new Uint8Array(
      createHmac('sha256', this.key).update(this.prefix).update(`${table}\n${p.length}:`).update(p).update(bytes).digest(),
    );
  }

  element(table: ProtectedTable, pk: string, bytes: Uint8Array): Uint8Array {
    const p = Buffer.from(pk, 'utf8');
    return new Uint8Array(createHmac('sha512', this.setKey).update(this.prefix).update(`${table}\n${p.length}:`).update(p).update(bytes).digest());
  }

  check(table: ProtectedTable, pk: string, bytes: Uint8Array, mac: Uint8Array | null): boolean {
    if (mac === null || mac.length !== 32) return false;
    return timingSafeEqual(this.mac(table, pk, bytes), mac);
  }

  alarm(table: ProtectedTable, pk: string, problem: string): void {
    try {
      this.onAlarm(table, pk, problem);
    } catch {
      // An alert sink that fails must not turn a refusal into a crash.
    }
  }

  destroy(): void {
    wipe(this.key, this.setKey);
  }
}
