/**
 * Sealing: how the vault's root key is protected at rest. Every seal turns a stored record
 * into the 32-byte root key and back. Three kinds: a passphrase (scrypt, here), operator
 * shares (Shamir, keystore/shares.ts) and an AES key inside a PKCS#11 token with recovery
 * shares as the fallback (keystore/hsm-seal.ts).
 */
import { randomBytes } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { base64ToBytes, bytesToBase64, bytesToHex, hexToBytes, utf8, wipe } from '../core/bytes.js';
import { open, seal } from '../crypto/aead.js';
import { DEFAULT_SCRYPT, scryptKey, type ScryptParams } from '../crypto/kdf.js';
import { checkSharesRecord, type SharesRecord } from './shares.js';

/** What is stored in the database's meta table under `seal`, as JSON. */
export interface PassphraseSealRecord {
  kind: 'passphrase';
  kdf: 'scrypt';
  params: ScryptParams;
  salt: string;
  /** XChaCha20-Poly1305 of the root key under the scrypt output. */
  sealedRoot: string;
}

/** The root sealed under a key split into operator shares. */
export interface SharesSealRecord {
  kind: 'shares';
  shares: SharesRecord;
}

/** The root encrypted by an AES key that never leaves a PKCS#11 token; recovery shares as the fallback. */
export interface HsmSealRecord {
  kind: 'hsm';
  /** Which token and key: matched against the [seal.pkcs11] configuration at start. */
  tokenLabel: string;
  keyLabel: string;
  /** AES-256-GCM inside the token: iv (12) ‖ ciphertext ‖ tag, base64. */
  wrappedRoot: string;
  recovery: SharesRecord;
}

export type SealRecord = PassphraseSealRecord | SharesSealRecord | HsmSealRecord;

export interface Seal {
  readonly kind: SealRecord['kind'];
  /** Produces the record for a new root key. */
  seal(root: Uint8Array, vaultId: string): Promise<SealRecord>;
  /** Recovers the root key; throws `wrong_passphrase` (or the seal's own error) when it cannot. */
  unseal(record: SealRecord, vaultId: string): Promise<Uint8Array>;
}

const rootAd = (vaultId: string) => utf8(`custos-root-v1\n${vaultId}`);

export class PassphraseSeal implements Seal {
  readonly kind = 'passphrase' as const;

  /** `passphrase` is copied; the caller wipes its own buffer. */
  constructor(private readonly passphrase: Uint8Array, private readonly params: ScryptParams = DEFAULT_SCRYPT) {
    if (passphrase.length === 0) throw new CustosError('bad_request', 'The passphrase is empty.');
    this.passphrase = Uint8Array.from(passphrase);
  }

  async seal(root: Uint8Array, vaultId: string): Promise<SealRecord> {
    const salt = new Uint8Array(randomBytes(16));
    const kek = await scryptKey(this.passphrase, salt, this.params);
    try {
      return { kind: 'passphrase', kdf: 'scrypt', params: this.params, salt: bytesToHex(salt), sealedRoot: bytesToBase64(seal(kek, root, rootAd(vaultId))) };
    } finally {
      wipe(kek);
    }
  }

  async unseal(record: SealRecord, vaultId: string): Promise<Uint8Array> {
    if (record.kind !== 'passphrase') throw new CustosError('vault_sealed', `This vault is sealed by ${record.kind === 'shares' ? 'operator shares' : 'an HSM'}, not a passphrase.`);
    const { N, r, p } = record.params;
    if (!(Number.isInteger(Math.log2(N)) && N >= 2 ** 10 && N <= 2 ** 22 && r >= 1 && r <= 32 && p >= 1 && p <= 16)) {
      throw new CustosError('database_corrupt', 'The stored seal has scrypt parameters out of range; the database was altered. Restore it from a backup.');
    }
    const kek = await scryptKey(this.passphrase, hexToBytes(record.salt, 'seal salt'), record.params);
    try {
      const root = open(kek, base64ToBytes(record.sealedRoot, 'sealed root key'), rootAd(vaultId));
      if (!root) throw new CustosError('wrong_passphrase', 'The passphrase is wrong: the vault stays sealed and nothing was changed. Try again with the passphrase given to `custos init`.');
      return root;
    } finally {
      wipe(kek);
    }
  }

  destroy(): void {
    wipe(this.passphrase);
  }
}

export function parseSealRecord(json: string | null): SealRecord {
  if (json === null) throw new CustosError('vault_not_found', 'This database holds no sealed root key: it is not an initialised vault. Run `custos init` first.');
  try {
    const r = JSON.parse(json) as SealRecord;
    if (r.kind === 'passphrase') {
      if (r.kdf !== 'scrypt' || typeof r.salt !== 'string' || typeof r.sealedRoot !== 'string' || typeof r.params !== 'object') throw new Error('shape');
    } else if (r.kind === 'shares') {
      if (!checkSharesRecord(r.shares)) throw new Error('shape');
    } else if (r.kind === 'hsm') {
      if (typeof r.tokenLabel !== 'string' || typeof r.keyLabel !== 'string' || typeof r.wrappedRoot !== 'string' || !checkSharesRecord(r.recovery)) throw new Error('shape');
    } else throw new Error('kind');
    return r;
  } catch {
    throw new CustosError('database_corrupt', 'The stored seal record is unreadable; the database was altered. Restore it from a backup.');
  }
}
