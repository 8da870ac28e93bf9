/**
 * Long fuzzing of every parser that takes untrusted bytes: key import (raw, hex, PKCS#8,
 * OpenSSH), ECIES envelopes, exported-key payloads, base64/hex decoding and TOML config.
 * Each must return a value or throw its typed error (CustosError / SshFormatError), never
 * anything else and never hang. The test suite runs the same properties for a few hundred
 * cases each; this runs them for as long as you like:
 *
 *   node --import tsx scripts/fuzz-parsers.ts --seconds 3600
 */
import fc from 'fast-check';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { x25519 } from '@noble/curves/ed25519.js';
import { CustosError } from '../src/core/errors.js';
import { base64ToBytes, hexToBytes } from '../src/core/bytes.js';
import { ALGORITHMS } from '../src/core/types.js';
import { IMPORT_FORMATS, importSecret } from '../src/keystore/import.js';
import { parseOpenSshPrivateKey, SshFormatError } from '../src/crypto/openssh.js';
import { decodeExportedKey, eciesDecrypt } from '../src/crypto/ecies.js';
import { loadConfig } from '../src/daemon/config.js';

const typed = (e: unknown) => e instanceof CustosError || e instanceof SshFormatError;
const never = (f: () => unknown) => {
  try {
    f();
    return true;
  } catch (e) {
    return typed(e);
  }
};

const bytes = fc.oneof(
  fc.uint8Array({ maxLength: 4096 }),
  fc.string({ maxLength: 2048 }).map((s) => new TextEncoder().encode(s)),
  fc.uint8Array({ maxLength: 3000 }).map((b) => new TextEncoder().encode(`-----BEGIN OPENSSH PRIVATE KEY-----\n${Buffer.from(b).toString('base64')}\n-----END OPENSSH PRIVATE KEY-----\n`)),
  fc.uint8Array({ maxLength: 3000 }).map((b) => new TextEncoder().encode(`-----BEGIN PRIVATE KEY-----\n${Buffer.from(b).toString('base64')}\n-----END PRIVATE KEY-----\n`)),
);

const recipient = x25519.utils.randomSecretKey();
const dir = mkdtempSync(join(tmpdir(), 'custos-fuzz-'));
const configPath = join(dir, 'c.toml');

const properties = {
  import: fc.property(fc.constantFrom(...IMPORT_FORMATS), fc.option(fc.constantFrom(...ALGORITHMS), { nil: undefined }), bytes, (f, a, m) => never(() => importSecret(f, m, a))),
  openssh: fc.property(bytes, (m) => never(() => parseOpenSshPrivateKey(m))),
  ecies: fc.property(fc.uint8Array({ maxLength: 512 }), (m) => never(() => eciesDecrypt(recipient, m))),
  exported: fc.property(fc.uint8Array({ maxLength: 512 }), (m) => never(() => decodeExportedKey(m))),
  base64: fc.property(fc.string({ maxLength: 200 }), (s) => never(() => base64ToBytes(s))),
  hex: fc.property(fc.string({ maxLength: 200 }), (s) => never(() => hexToBytes(s))),
  config: fc.property(fc.string({ maxLength: 400 }), (s) => {
    writeFileSync(configPath, s);
    return never(() => loadConfig(configPath));
  }),
};

const i = process.argv.indexOf('--seconds');
const seconds = i > 0 ? Number(process.argv[i + 1]) : 60;
const deadline = Date.now() + seconds * 1000;
const counts: Record<string, number> = Object.fromEntries(Object.keys(properties).map((k) => [k, 0]));
let failed = false;
try {
  while (Date.now() < deadline && !failed) {
    for (const [name, prop] of Object.entries(properties)) {
      // Every property here is synchronous; the union of their types confuses fc.check's overloads.
      const r = fc.check(prop as fc.IProperty<unknown[]>, { numRuns: 500 });
      counts[name]! += r.numRuns;
      if (r.failed) {
        failed = true;
        process.stderr.write(`${name}: counterexample ${JSON.stringify(r.counterexample)}\n${String(r.errorInstance ?? '')}\n`);
      }
    }
    process.stderr.write(`\r${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join('  ')}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.stderr.write('\n');
process.stdout.write(JSON.stringify({ seconds, cases: counts, ok: !failed }) + '\n');
process.exitCode = failed ? 1 : 0;
