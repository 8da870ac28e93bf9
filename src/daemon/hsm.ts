/**
 * PKCS#11 tokens for the daemon: the `[[pkcs11]]` backends (PIN from a file or the
 * environment, never a flag), and the root wrapper of an HSM seal (`[seal.pkcs11]`).
 */
import { readFileSync } from 'node:fs';
import { CustosError } from '../core/errors.js';
import { wipe } from '../core/bytes.js';
import type { RootWrapper } from '../keystore/hsm-seal.js';
import type { AnchorPlace } from '../audit/anchor.js';
import { Pkcs11Token } from '../backends/pkcs11/token.js';
import { Pkcs11Backend } from '../backends/pkcs11/backend.js';
import type { Pkcs11Config } from './config.js';

/** Reads the PIN as bytes; a trailing newline in a PIN file is not part of the PIN. */
export function readPin(c: Pick<Pkcs11Config, 'name' | 'pinFile' | 'pinEnv'>): Uint8Array {
  if (c.pinFile) {
    let raw: Uint8Array;
    try {
      raw = new Uint8Array(readFileSync(c.pinFile));
    } catch (e) {
      throw new CustosError('config_invalid', `pkcs11 "${c.name}": cannot read the PIN file ${c.pinFile} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`);
    }
    let end = raw.length;
    while (end > 0 && (raw[end - 1] === 0x0a || raw[end - 1] === 0x0d)) end--;
    const pin = raw.slice(0, end);
    wipe(raw);
    if (pin.length === 0) throw new CustosError('config_invalid', `pkcs11 "${c.name}": the PIN file ${c.pinFile} is empty.`);
    return pin;
  }
  const v = c.pinEnv ? process.env[c.pinEnv] : undefined;
  if (!v) throw new CustosError('config_invalid', `pkcs11 "${c.name}": the environment variable ${c.pinEnv} holding the PIN is not set.`);
  return new Uint8Array(Buffer.from(v, 'utf8'));
}

export function openToken(c: Pkcs11Config): Promise<Pkcs11Token> {
  const pin = readPin(c);
  return Pkcs11Token.open({ module: c.module, tokenLabel: c.tokenLabel, serial: c.serial, pin, sessions: c.sessions }).finally(() => wipe(pin));
}

/** One backend per configured token; a token absent at start is retried, not fatal. */
export function tokenBackends(tokens: Pkcs11Config[]): Pkcs11Backend[] {
  return tokens.map((c) => new Pkcs11Backend(c.name, () => openToken(c), c.wrappingKey));
}

/** The root wrapper of an HSM seal, on a token opened by its backend. */
export function tokenRootWrapper(backend: Pkcs11Backend, tokenLabel: string, keyLabel: string): RootWrapper {
  return {
    tokenLabel,
    keyLabel,
    wrap: async (root, aad) => (await backend.ready()).sealEncrypt(keyLabel, root, aad),
    unwrap: async (wrapped, aad) => (await backend.ready()).sealDecrypt(keyLabel, wrapped, aad),
  };
}

/**
 * The audit anchor of an HSM-sealed vault, also kept inside its token: a private data object
 * (`custos-anchor-<vault id>`), readable and writable only after login. A copy of the data
 * directory (a backup put back, a disk image) does not carry it, so a database restored
 * together with its older anchor file is still refused. Not required (a vault upgraded from
 * before, or a token replaced, starts one), and written less often than the file: a token's
 * storage wears.
 */
export function tokenAnchorPlace(backend: Pkcs11Backend, vaultId: string, intervalMs: number): AnchorPlace {
  const label = `custos-anchor-${vaultId}`;
  return {
    where: `the data object "${label}" in the HSM token of ${backend.name}`,
    required: false,
    intervalMs,
    read: async () => {
      // Two objects only after a crash inside writeData: the one further along is the anchor.
      const texts = (await (await backend.ready()).readData(label)).map((v) => Buffer.from(v).toString('utf8'));
      const seqOf = (t: string) => {
        try {
          const n = (JSON.parse(t) as { seq?: unknown }).seq;
          return typeof n === 'number' ? n : -1;
        } catch {
          return -1;
        }
      };
      return texts.sort((a, b) => seqOf(b) - seqOf(a))[0] ?? null;
    },
    write: async (text) => (await backend.ready()).writeData(label, new Uint8Array(Buffer.from(text, 'utf8'))),
  };
}
