/**
 * What every command group of the CLI shares: output, reading inputs, the API client and its
 * flags, and the printing of keys, shares and seal status. Only light modules are imported
 * here, so that a command that talks to the API starts without loading the vault.
 */
import { Option, type Command } from 'commander';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CustosError } from '../core/errors.js';
import { wipe } from '../core/bytes.js';
import { ALGORITHMS } from '../core/types.js';
import { CustosClient, type KeyInfo, type SealStatusView } from '../client/client.js';
import type { Pkcs11Config } from '../daemon/config.js';


export const out = (s: string): void => {
  process.stdout.write(s.endsWith('\n') ? s : s + '\n');
};

export function readInput(file: string): Uint8Array {
  try {
    // The file's own buffer (not a copy): a caller that wipes what it read wipes the only copy.
    const b = readFileSync(file === '-' ? 0 : file);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    throw new CustosError('bad_request', `Cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}.`);
  }
}

export function clientFrom(opts: { addr?: string; token?: string; tokenFile?: string; ca?: string; clientCert?: string; clientKey?: string; serverSha256?: string }): CustosClient {
  const addr = opts.addr ?? process.env.CUSTOS_ADDR ?? 'http://127.0.0.1:8200';
  let token = opts.token ?? process.env.CUSTOS_TOKEN;
  if (!opts.tokenFile && !token && process.env.CUSTOS_TOKEN_FILE) opts = { ...opts, tokenFile: process.env.CUSTOS_TOKEN_FILE };
  if (opts.tokenFile) token = Buffer.from(readInput(opts.tokenFile)).toString('utf8').trim();
  const ca = opts.ca ?? process.env.CUSTOS_CACERT;
  const cert = opts.clientCert ?? process.env.CUSTOS_CLIENT_CERT;
  const key = opts.clientKey ?? process.env.CUSTOS_CLIENT_KEY;
  if ((cert === undefined) !== (key === undefined)) throw new CustosError('bad_request', 'Mutual TLS needs both --client-cert and --client-key (or CUSTOS_CLIENT_CERT and CUSTOS_CLIENT_KEY).');
  if (!token && !cert) throw new CustosError('unauthorized', 'No API token: give --token-file FILE, or set CUSTOS_TOKEN_FILE or CUSTOS_TOKEN (the admin token is printed by `custos init`, or written to its --admin-token-file); or a client certificate with --client-cert/--client-key.');
  return new CustosClient({
    addr,
    ...(token ? { token } : {}),
    ...(ca ? { ca: readInput(ca) } : {}),
    ...(cert && key ? { cert: readInput(cert), key: readInput(key) } : {}),
    ...((opts.serverSha256 ?? process.env.CUSTOS_SERVER_SHA256) ? { serverFingerprint: (opts.serverSha256 ?? process.env.CUSTOS_SERVER_SHA256)! } : {}),
  });
}

/** For the routes that need no credential (seal status, unseal): the address and what to trust. */
export function publicClient(o: { addr: string; ca?: string; serverSha256?: string }): CustosClient {
  const ca = o.ca ?? process.env.CUSTOS_CACERT;
  const pin = o.serverSha256 ?? process.env.CUSTOS_SERVER_SHA256;
  return new CustosClient({ addr: o.addr, ...(ca ? { ca: readInput(ca) } : {}), ...(pin ? { serverFingerprint: pin } : {}) });
}

/** --addr and --ca for commands that reach the API without a credential. */
export const withPublicApi = (c: Command) =>
  c
    .addOption(new Option('--addr <url>', 'vault API address').env('CUSTOS_ADDR').default('http://127.0.0.1:8200'))
    .option('--ca <file>', 'trust this CA (PEM) for an https:// vault (else $CUSTOS_CACERT)')
    .option('--server-sha256 <hex>', "also pin the server certificate's SHA-256 (else $CUSTOS_SERVER_SHA256)");

export const withApi = (c: Command) =>
  c
    .addOption(new Option('--addr <url>', 'vault API address').env('CUSTOS_ADDR').default('http://127.0.0.1:8200'))
    .addOption(new Option('--token <token>', 'API token (prefer CUSTOS_TOKEN or --token-file: flags show in `ps`)').env('CUSTOS_TOKEN'))
    .option('--token-file <file>', 'read the API token from a file (else $CUSTOS_TOKEN, else the file named by $CUSTOS_TOKEN_FILE)')
    .option('--ca <file>', 'trust this CA (PEM) for an https:// vault, as `custos tls init` printed it (else $CUSTOS_CACERT)')
    .option('--client-cert <file>', 'mutual TLS: this client certificate (PEM; else $CUSTOS_CLIENT_CERT)')
    .option('--client-key <file>', 'mutual TLS: its private key (PEM; else $CUSTOS_CLIENT_KEY)')
    .option('--server-sha256 <hex>', "also pin the server certificate's SHA-256 (else $CUSTOS_SERVER_SHA256)")
    .option('--json', 'print JSON');

export function hsmConfigToml(c: Pkcs11Config, keyLabel: string): string {
  const q = (v: string) => JSON.stringify(v);
  return [
    '',
    '# The HSM that seals this vault (custos init --hsm-module). Its keys are "pkcs11:hsm".',
    '[[pkcs11]]',
    `name = ${q(c.name)}`,
    `module = ${q(c.module)}`,
    `token_label = ${q(c.tokenLabel!)}`,
    c.pinFile ? `pin_file = ${q(c.pinFile)}` : `pin_env = ${q(c.pinEnv!)}`,
    '',
    '[seal.pkcs11]',
    `token = ${q(c.name)}`,
    `key_label = ${q(keyLabel)}`,
    '',
  ].join('\n');
}

export function sharesOption(o: { shares?: string; threshold?: string }): { shares: number; threshold: number } | undefined {
  if (o.shares === undefined && o.threshold === undefined) return undefined;
  const shares = Number(o.shares);
  const threshold = Number(o.threshold);
  if (!Number.isInteger(shares) || !Number.isInteger(threshold) || threshold < 2 || shares < threshold || shares > 32) {
    throw new CustosError('bad_request', 'Give --shares N and --threshold T with 2 ≤ T ≤ N ≤ 32.');
  }
  return { shares, threshold };
}

/** Prints share lines, or writes each to its own 0600 file in a new 0700 directory. */
export function printShares(lines: string[], threshold: number, dir?: string): void {
  out('');
  if (dir) {
    mkdirSync(dir, { mode: 0o700 });
    lines.forEach((l, i) => writeFileSync(join(dir, `share-${i + 1}-of-${lines.length}.txt`), l + '\n', { mode: 0o600, flag: 'wx' }));
    out(`${lines.length} operator shares written to ${resolve(dir)} (one file each); any ${threshold} unseal the vault.`);
    out('Hand each file to its holder and delete it here: a share is shown and stored nowhere else.');
    return;
  }
  out(`Operator shares (any ${threshold} of ${lines.length} unseal the vault; each is shown once, give each to its holder):`);
  lines.forEach((l, i) => out(`  ${i + 1}: ${l}`));
}

export function printSealStatus(s: SealStatusView, json?: boolean): void {
  if (json) return out(JSON.stringify(s));
  if (!s.sealed) return out(`unsealed (seal: ${s.seal})`);
  out(`sealed (seal: ${s.seal}): ${s.progress ?? 0} of ${s.threshold} shares given`);
  if (s.reason) out(s.reason);
}

export function printKey(k: KeyInfo, json: boolean): void {
  if (json) return out(JSON.stringify(k, null, 2));
  out(
    [
      `id:          ${k.id}`,
      `label:       ${k.label}`,
      `algorithm:   ${k.algorithm}`,
      `state:       ${k.state}`,
      `exportable:  ${k.exportable}`,
      ...(k.purpose ? [`purpose:     ${k.purpose}`] : []),
      `origin:      ${k.origin}`,
      `created:     ${k.created_at}`,
      `public key:  ${k.public_key.raw_hex}`,
      ...(k.public_key.openssh ? [`openssh:     ${k.public_key.openssh}`] : []),
      k.public_key.spki_pem.trimEnd(),
    ].join('\n'),
  );
}

export function algorithmOption(required: boolean): Option {
  const o = new Option('--algorithm <alg>', 'key algorithm').choices([...ALGORITHMS]);
  return required ? o.makeOptionMandatory() : o;
}

export const purposeOption = (fallback: string) =>
  new Option('--purpose <purpose>', `what the key signs, fixed at creation: general (raw payloads over the API), ssh (only through an ssh-agent socket), consensus (only CometBFT votes, behind the watermark), bitcoin (PSBTs, BIP32 children); default ${fallback}`).choices(['general', 'ssh', 'consensus', 'bitcoin']);

/** The options of a command that opens a stopped vault itself (`upgrade`, `audit accept-database`). */
export const offlineOptions = (c: Command) =>
  c
    .requiredOption('--data-dir <dir>', 'vault directory (the vault must be stopped)')
    .option('--passphrase-file <file>', 'file holding the passphrase (else $CUSTOS_PASSPHRASE, else a prompt)')
    .option('--share-file <file...>', 'for a vault sealed by shares (or an HSM without its token): files holding at least the threshold of shares')
    .option('--config <file>', 'configuration file (default: custos.toml in the data directory); an HSM-sealed vault unseals through its [seal.pkcs11] token');

export interface OfflineOptions {
  dataDir: string;
  passphraseFile?: string;
  shareFile?: string[];
  config?: string;
}

/**
 * Unlocks a stopped vault for `upgrade` or `audit accept-database`: its layout checked first,
 * then shares, the passphrase, or the HSM of its config. `before` runs after the layout check
 * (a warning to print).
 */
export async function offlineCommand(o: OfflineOptions, mode: { acceptRollback?: boolean; upgrade?: boolean }, before?: () => void, act?: (vault: import('../vault/vault.js').Vault) => Promise<void>) {
  const { assertVaultLayout } = await import('../daemon/permissions.js');
  const dataDir = resolve(o.dataDir);
  assertVaultLayout(dataDir, o.config);
  before?.();
  const { openOffline, sealKindOf } = await import('../daemon/offline.js');
  const { readPassphrase } = await import('../daemon/passphrase.js');
  const shareLines = o.shareFile?.map((f) => Buffer.from(readInput(f)).toString('utf8').trim());
  const passphrase = !shareLines && (await sealKindOf(dataDir)) === 'passphrase' ? await readPassphrase({ file: o.passphraseFile }) : undefined;
  try {
    return await openOffline(dataDir, { ...(shareLines ? { shareLines } : {}), ...(passphrase ? { passphrase } : {}), ...(o.config ? { configPath: resolve(o.config) } : {}) }, mode, act);
  } finally {
    wipe(passphrase);
  }
}
