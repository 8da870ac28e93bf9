/**
 * The `custos` command. Vault administration (`init`, `serve`, `audit`) works on a data
 * directory; key commands talk to a running vault over its HTTP API, like `vault` does
 * (address and token from flags or CUSTOS_ADDR / CUSTOS_TOKEN).
 */
import { Command, Option, CommanderError } from 'commander';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CustosError, isCustosError } from '../core/errors.js';
import { base64ToBytes, bytesToHex, hexToBytes, wipe } from '../core/bytes.js';
import { ALGORITHMS, type Algorithm } from '../core/types.js';
import { printable } from '../core/text.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { decodeExportedKey, eciesDecrypt } from '../crypto/ecies.js';
import { CustosClient, type KeyInfo, type SealStatusView } from '../client/client.js';
import { initVault, openStoreOnly, readAnchorText, rekeyShares, verifyAudit, CONFIG_FILE } from '../vault/open.js';
import { openOffline, sealKindOf } from '../daemon/offline.js';
import { parseSealRecord } from '../keystore/seal.js';
import { AGENT_DEFAULTS, loadConfig, parsePort, type Pkcs11Config } from '../daemon/config.js';
import { tokenBackends, tokenRootWrapper } from '../daemon/hsm.js';
import type { Pkcs11Backend } from '../backends/pkcs11/backend.js';
import { prompt, readPassphrase } from '../daemon/passphrase.js';
import { assertPrivateFile, assertVaultLayout } from '../daemon/permissions.js';
import { closeOnSignals, startDevServer, startServer, VERSION } from '../daemon/serve.js';
import { EXIT, exitCodeFor } from './exit.js';
import { formatTable } from './table.js';

const out = (s: string): void => {
  process.stdout.write(s.endsWith('\n') ? s : s + '\n');
};

function readInput(file: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(file === '-' ? 0 : file));
  } catch (e) {
    throw new CustosError('bad_request', `Cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}.`);
  }
}

function clientFrom(opts: { addr?: string; token?: string; tokenFile?: string }): CustosClient {
  const addr = opts.addr ?? process.env.CUSTOS_ADDR ?? 'http://127.0.0.1:8200';
  let token = opts.token ?? process.env.CUSTOS_TOKEN;
  if (opts.tokenFile) token = Buffer.from(readInput(opts.tokenFile)).toString('utf8').trim();
  if (!token) throw new CustosError('unauthorized', 'No API token: give --token-file FILE or set CUSTOS_TOKEN (the admin token is printed by `custos init`).');
  return new CustosClient({ addr, token });
}

const withApi = (c: Command) =>
  c
    .addOption(new Option('--addr <url>', 'vault API address').env('CUSTOS_ADDR').default('http://127.0.0.1:8200'))
    .addOption(new Option('--token <token>', 'API token (prefer CUSTOS_TOKEN or --token-file: flags show in `ps`)').env('CUSTOS_TOKEN'))
    .option('--token-file <file>', 'read the API token from a file')
    .option('--json', 'print JSON');

function hsmConfigToml(c: Pkcs11Config, keyLabel: string): string {
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

function sharesOption(o: { shares?: string; threshold?: string }): { shares: number; threshold: number } | undefined {
  if (o.shares === undefined && o.threshold === undefined) return undefined;
  const shares = Number(o.shares);
  const threshold = Number(o.threshold);
  if (!Number.isInteger(shares) || !Number.isInteger(threshold) || threshold < 2 || shares < threshold || shares > 32) {
    throw new CustosError('bad_request', 'Give --shares N and --threshold T with 2 ≤ T ≤ N ≤ 32.');
  }
  return { shares, threshold };
}

/** Prints share lines, or writes each to its own 0600 file in a new 0700 directory. */
function printShares(lines: string[], threshold: number, dir?: string): void {
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

function printSealStatus(s: SealStatusView, json?: boolean): void {
  if (json) return out(JSON.stringify(s));
  if (!s.sealed) return out(`unsealed (seal: ${s.seal})`);
  out(`sealed (seal: ${s.seal}): ${s.progress ?? 0} of ${s.threshold} shares given`);
  if (s.reason) out(s.reason);
}

function printKey(k: KeyInfo, json: boolean): void {
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

function algorithmOption(required: boolean): Option {
  const o = new Option('--algorithm <alg>', 'key algorithm').choices([...ALGORITHMS]);
  return required ? o.makeOptionMandatory() : o;
}

const purposeOption = (fallback: string) =>
  new Option('--purpose <purpose>', `what the key signs, fixed at creation: general (raw payloads over the API), ssh (only through an ssh-agent socket), consensus (only CometBFT votes, behind the watermark), bitcoin (PSBTs, BIP32 children); default ${fallback}`).choices(['general', 'ssh', 'consensus', 'bitcoin']);

/** Unlocks a stopped vault for `upgrade` or `audit accept-database`: shares, the passphrase, or the HSM of its config. */
async function offlineCommand(dataDir: string, o: { passphraseFile?: string; shareFile?: string[]; config?: string }, mode: { acceptRollback?: boolean; upgrade?: boolean }) {
  const shareLines = o.shareFile?.map((f) => Buffer.from(readInput(f)).toString('utf8').trim());
  const passphrase = !shareLines && (await sealKindOf(dataDir)) === 'passphrase' ? await readPassphrase({ file: o.passphraseFile }) : undefined;
  try {
    return await openOffline(dataDir, { ...(shareLines ? { shareLines } : {}), ...(passphrase ? { passphrase } : {}), ...(o.config ? { configPath: resolve(o.config) } : {}) }, mode);
  } finally {
    wipe(passphrase);
  }
}

export function buildCli(): Command {
  const program = new Command('custos')
    .description('Custos: a key vault and remote signer. Keys stay in the vault; every signature is authorised and audited.')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride()
    .addHelpText(
      'after',
      `
Quick start:
  custos serve --dev                          throwaway vault with demo keys
  custos init --data-dir DIR                  create a vault (prints the admin token once)
  custos serve --data-dir DIR                 unseal and serve http://127.0.0.1:8200
  custos init --data-dir DIR --shares 5 --threshold 3   seal by operator shares instead
  custos operator unseal                      give one share to a sealed vault
  custos audit verify --data-dir DIR --audit-key HEX   check the log, its anchor, its rows
  custos upgrade --data-dir DIR               add row MACs to a vault from before them (once)

Exit codes: 0 ok, 1 check failed (invalid signature, broken audit chain), 2 authentication
(wrong passphrase, bad token), 3 not found, 4 refused (disabled/destroyed/not exportable,
label taken, vault exists), 5 unavailable (server down, storage or audit failure), 64 usage.`,
    );

  program
    .command('init')
    .description('Create a new vault: a root key sealed under a passphrase, a database, an admin API token')
    .requiredOption('--data-dir <dir>', 'directory for the vault (created 0700)')
    .option('--passphrase-file <file>', 'read the passphrase from a file (else $CUSTOS_PASSPHRASE, else a prompt)')
    .addOption(new Option('--scrypt-log-n <n>', 'scrypt cost as log2(N); default 17 (128 MiB, ~0.3 s)').default('17'))
    .option('--shares <n>', 'seal by N operator shares instead of a passphrase (with --threshold)')
    .option('--threshold <t>', 'how many shares unseal the vault (2 ≤ T ≤ N)')
    .option('--share-dir <dir>', 'write each share to its own file in this new directory (0700, files 0600) instead of printing them')
    .option('--hsm-module <path>', 'seal by an AES key inside this PKCS#11 module\'s token (with --shares/--threshold as recovery shares)')
    .option('--hsm-token-label <label>', 'the token\'s label')
    .option('--hsm-pin-file <file>', 'file holding the token\'s user PIN')
    .option('--hsm-pin-env <var>', 'environment variable holding the token\'s user PIN')
    .option('--hsm-key-label <label>', 'label of the AES seal key on the token (created if absent)', 'custos-seal')
    .action(async (o: { dataDir: string; passphraseFile?: string; scryptLogN: string; shares?: string; threshold?: string; shareDir?: string; hsmModule?: string; hsmTokenLabel?: string; hsmPinFile?: string; hsmPinEnv?: string; hsmKeyLabel: string }) => {
      const logN = Number(o.scryptLogN);
      if (!Number.isInteger(logN) || logN < 10 || logN > 22) throw new CustosError('bad_request', '--scrypt-log-n must be an integer from 10 to 22.');
      const shares = sharesOption(o);
      if (shares && o.passphraseFile) throw new CustosError('bad_request', 'Choose one seal: --shares/--threshold or a passphrase.');
      if (!shares && o.shareDir) throw new CustosError('bad_request', '--share-dir needs --shares and --threshold.');
      if (o.shareDir && existsSync(o.shareDir)) throw new CustosError('bad_request', `${o.shareDir} exists; give a new directory for the share files.`);
      let hsm: { cfg: Pkcs11Config; backend: Pkcs11Backend } | undefined;
      if (o.hsmModule) {
        if (!shares) throw new CustosError('bad_request', 'An HSM seal needs recovery shares for the day the token is lost: add --shares N --threshold T.');
        if (!o.hsmTokenLabel || !o.hsmPinFile === !o.hsmPinEnv) throw new CustosError('bad_request', 'Give --hsm-token-label and exactly one of --hsm-pin-file and --hsm-pin-env.');
        const cfg: Pkcs11Config = { name: 'hsm', module: resolve(o.hsmModule), tokenLabel: o.hsmTokenLabel, sessions: 2, wrappingKey: 'custos-wrapping-key', ...(o.hsmPinFile ? { pinFile: resolve(o.hsmPinFile) } : { pinEnv: o.hsmPinEnv }) };
        hsm = { cfg, backend: tokenBackends([cfg])[0]! };
      }
      const passphrase = shares ? undefined : await readPassphrase({ file: o.passphraseFile, confirm: true });
      try {
        const dataDir = resolve(o.dataDir);
        const r = await initVault({
          dataDir,
          ...(passphrase ? { passphrase } : {}),
          ...(shares ? { shares } : {}),
          ...(hsm ? { hsm: tokenRootWrapper(hsm.backend, hsm.cfg.tokenLabel!, o.hsmKeyLabel) } : {}),
          scrypt: { N: 2 ** logN, r: 8, p: 1 },
        });
        if (hsm) appendFileSync(join(dataDir, CONFIG_FILE), hsmConfigToml(hsm.cfg, o.hsmKeyLabel));
        out(`Vault ${r.vaultId} created in ${dataDir}.`);
        if (hsm) out(`Sealed by the AES key "${o.hsmKeyLabel}" on token "${hsm.cfg.tokenLabel}": it unseals itself at start while the token and PIN are there ([[pkcs11]] and [seal.pkcs11] were added to ${CONFIG_FILE}). The shares below are RECOVERY shares, for a lost token.`);
        if (r.shareLines) printShares(r.shareLines, shares!.threshold, o.shareDir);
        out('');
        out('Admin API token (shown once; only its hash is stored, keep it safe):');
        out(`  ${r.adminToken}`);
        out('');
        out('Audit public key (record it outside the vault; `custos audit verify --audit-key` checks the log against it):');
        out(`  ${r.auditPublicKey}`);
        out('');
        out(`Start it with: custos serve --data-dir ${dataDir}`);
        if (shares && !hsm) out(`It starts sealed: ${shares.threshold} operators each run \`custos operator unseal\` with their share.`);
      } finally {
        wipe(passphrase);
        await hsm?.backend.close();
      }
    });

  program
    .command('serve')
    .description('Unseal the vault and serve the HTTP API on loopback (SIGINT/SIGTERM stop it cleanly)')
    .option('--data-dir <dir>', 'vault directory (see `custos init`)')
    .option('--dev', 'throwaway unsealed vault in a temp directory with a demo key; nothing persists')
    .option('--config <file>', 'TOML config (default: custos.toml in the data directory)')
    .option('--host <host>', 'address to bind (loopback only)')
    .option('--port <port>', 'port to listen on (0 picks a free one)')
    .option('--passphrase-file <file>', 'read the passphrase from a file (else $CUSTOS_PASSPHRASE, else a prompt)')
    .option('--agent-socket <path>', 'serve an ssh-agent on this socket (overrides the first [[ssh_agent]] socket, enabling it)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']))
    .action(async (o: { dataDir?: string; dev?: boolean; config?: string; host?: string; port?: string; passphraseFile?: string; agentSocket?: string; logLevel?: 'info' }) => {
      if (o.dev) {
        if (o.dataDir) throw new CustosError('bad_request', '--dev makes its own temporary vault; drop --data-dir.');
        const dev = await startDevServer({ port: o.port !== undefined ? parsePort(o.port, '--port') : undefined, logLevel: o.logLevel });
        closeOnSignals(dev.server);
        dev.server.announce();
        const bar = '='.repeat(78);
        process.stdout.write(
          [
            bar,
            'WARNING: DEV MODE. This vault is unsealed, lives in a temporary directory',
            'and is DELETED on exit. Nothing persists. Never put a real key in it.',
            bar,
            '',
            `  API:        ${dev.server.url}`,
            `  Token:      ${dev.token}`,
            `  Demo keys:  demo (ed25519, general: the API signs with it), demo-ssh (ed25519, ssh: the agent offers it)`,
            `  Data dir:   ${dev.dataDir}`,
            '',
            'Sign something:',
            `  curl -s -H 'Authorization: Bearer ${dev.token}' -H 'Content-Type: application/json' \\`,
            `    -d '{"message":"'$(printf 'hello' | base64)'"}' ${dev.server.url}/v1/keys/demo/sign`,
            '',
            'Or with the CLI:',
            `  export CUSTOS_ADDR=${dev.server.url} CUSTOS_TOKEN=${dev.token}`,
            '  custos keys list',
            '',
            'As an ssh-agent (demo-ssh is offered; ssh-add keys are stored in the vault):',
            `  export SSH_AUTH_SOCK=${dev.server.agentSocket}`,
            '  ssh-add -L',
            '',
            `OpenAPI: ${dev.server.url}/v1/openapi.json   Metrics: ${dev.server.url}/metrics`,
            '',
          ].join('\n') + '\n',
        );
        return;
      }
      if (!o.dataDir) throw new CustosError('bad_request', 'Give --data-dir DIR (a vault made by `custos init`), or --dev for a throwaway vault.');
      const dataDir = resolve(o.dataDir);
      // Before anything is read from them: loose vault files stop the start (daemon/permissions.ts).
      assertVaultLayout(dataDir, o.config);
      if (o.passphraseFile) assertPrivateFile(o.passphraseFile, 'The passphrase file');
      const config = loadConfig(o.config ?? join(dataDir, CONFIG_FILE), o.config !== undefined);
      if (o.host) config.api.host = o.host;
      if (o.port !== undefined) config.api.port = parsePort(o.port, '--port');
      if (o.logLevel) config.log.level = o.logLevel;
      if (o.agentSocket) {
        const first = config.sshAgents[0] ?? { ...AGENT_DEFAULTS };
        config.sshAgents[0] = { ...first, enabled: true, socket: resolve(o.agentSocket) };
      }
      // Fail on a missing vault before asking for a passphrase; vaults sealed by shares need none.
      const meta = await openStoreOnly(dataDir);
      let sealKind: string;
      try {
        sealKind = parseSealRecord(await meta.store.getMeta('seal')).kind;
      } finally {
        await meta.store.close();
      }
      const passphrase = sealKind === 'passphrase' ? await readPassphrase({ file: o.passphraseFile }) : undefined;
      let server;
      try {
        server = await startServer({ dataDir, passphrase, config });
      } finally {
        wipe(passphrase);
      }
      closeOnSignals(server);
      server.announce();
      process.stderr.write(`custos: listening on ${server.url}\n`);
      for (const sock of server.agentSockets) process.stderr.write(`custos: ssh-agent on ${sock} (export SSH_AUTH_SOCK=${sock})\n`);
    });

  const operator = program.command('operator').description('Operator shares: unseal a running vault, re-key the shares');

  operator
    .command('unseal')
    .description('Give one operator share to a sealed vault (needs no API token: the share is the credential)')
    .addOption(new Option('--addr <url>', 'vault API address').env('CUSTOS_ADDR').default('http://127.0.0.1:8200'))
    .option('--share-file <file>', 'read the share from a file (else a prompt, without echo)')
    .option('--reset', 'forget the shares given so far (needs one valid share too)')
    .option('--json', 'print JSON')
    .action(async (o: { addr: string; shareFile?: string; reset?: boolean; json?: boolean }) => {
      const client = new CustosClient({ addr: o.addr, token: '' });
      let status;
      const before = await client.sealStatus();
      if (!before.sealed) return printSealStatus(before, o.json);
      const bytes = o.shareFile ? readInput(o.shareFile) : await prompt('Operator share: ');
      // The share must travel as JSON text; it lives in a string only for this request.
      const share = Buffer.from(bytes).toString('utf8').trim();
      wipe(bytes);
      status = await client.unseal({ share, ...(o.reset ? { reset: true as const } : {}) });
      printSealStatus(status, o.json);
    });

  operator
    .command('rekey')
    .description('Replace the operator shares (or HSM recovery shares) with a new set; keys are unchanged, the old shares stop working')
    .requiredOption('--data-dir <dir>', 'vault directory')
    .requiredOption('--share-file <file...>', 'files holding current shares, one share each (at least the threshold)')
    .requiredOption('--shares <n>', 'number of new shares')
    .requiredOption('--threshold <t>', 'shares needed to unseal')
    .option('--share-dir <dir>', 'write the new shares to files in this new directory instead of printing them')
    .action(async (o: { dataDir: string; shareFile: string[]; shares: string; threshold: string; shareDir?: string }) => {
      const next = sharesOption(o)!;
      if (o.shareDir && existsSync(o.shareDir)) throw new CustosError('bad_request', `${o.shareDir} exists; give a new directory for the share files.`);
      assertVaultLayout(resolve(o.dataDir));
      const lines = o.shareFile.map((f) => Buffer.from(readInput(f)).toString('utf8').trim());
      const { shareLines } = await rekeyShares(resolve(o.dataDir), lines, next);
      out('The shares were replaced; the old ones no longer unseal this vault.');
      printShares(shareLines, next.threshold, o.shareDir);
    });

  program
    .command('status')
    .description('Seal state and health of a running vault (needs no API token)')
    .addOption(new Option('--addr <url>', 'vault API address').env('CUSTOS_ADDR').default('http://127.0.0.1:8200'))
    .option('--json', 'print JSON')
    .action(async (o: { addr: string; json?: boolean }) => {
      const status = await new CustosClient({ addr: o.addr, token: '' }).sealStatus();
      printSealStatus(status, o.json);
      if (status.sealed) process.exitCode = EXIT.unavailable;
    });

  program
    .command('upgrade')
    .description('Add row MACs and the audit anchor to a vault from before them (once, with every process stopped); serve refuses such a vault until then')
    .requiredOption('--data-dir <dir>', 'vault directory (the vault must be stopped)')
    .option('--passphrase-file <file>', 'file holding the passphrase (else $CUSTOS_PASSPHRASE, else a prompt)')
    .option('--share-file <file...>', 'for a vault sealed by shares (or an HSM without its token): files holding at least the threshold of shares')
    .option('--config <file>', 'configuration file (default: custos.toml in the data directory)')
    .action(async (o: { dataDir: string; passphraseFile?: string; shareFile?: string[]; config?: string }) => {
      const dataDir = resolve(o.dataDir);
      assertVaultLayout(dataDir, o.config);
      process.stderr.write(
        'custos: the rows of this database are MACed as they are now, on your word: run this only on a vault written by a Custos from\n' +
          '  before row MACs. If this vault has been served by this version before, its MACs were stripped: restore a backup instead.\n',
      );
      const r = await offlineCommand(dataDir, o, { upgrade: true });
      out(`The vault was upgraded at audit entry ${r.headSeq}: its rows carry MACs and its anchor is written; \`custos serve\` opens it again.`);
    });

  const keys = program.command('keys').description('Manage keys in a running vault (over the HTTP API)');

  withApi(keys.command('list').description('List keys')).action(async (o) => {
    const list = await clientFrom(o).listKeys();
    if (o.json) return out(JSON.stringify(list, null, 2));
    out(formatTable(['ID', 'LABEL', 'ALGORITHM', 'STATE', 'EXPORTABLE'], list.map((k) => [k.id, k.label, k.algorithm, k.corrupt ? 'CORRUPT' : k.state, String(k.exportable)])));
  });

  withApi(keys.command('show').description('Show a key and its public key (raw, PEM/SPKI, OpenSSH)').argument('<key>', 'key id or label')).action(async (ref: string, o) =>
    printKey(await clientFrom(o).getKey(ref), !!o.json),
  );

  withApi(
    keys
      .command('create')
      .description('Generate a key inside the vault')
      .requiredOption('--label <label>', 'unique label')
      .addOption(algorithmOption(true))
      .option('--exportable', 'allow wrapped export later (fixed at creation)', false)
      .option('--backend <backend>', 'software (default) or pkcs11:<name> from [[pkcs11]]: the key is made inside that token')
      .option('--wrapped', 'PKCS#11: keep the key wrapped by the token\'s AES key in the database, not as a token object')
      .option('--tag <tag...>', 'policy tags (documents apply to keys by tag); fixed at creation')
      .addOption(purposeOption('general')),
  ).action(async (o) =>
    printKey(await clientFrom(o).createKey({ label: o.label, algorithm: o.algorithm, exportable: !!o.exportable, ...(o.backend ? { backend: o.backend } : {}), ...(o.wrapped ? { wrapped: true } : {}), ...(o.tag ? { tags: o.tag } : {}), ...(o.purpose ? { purpose: o.purpose } : {}) }), !!o.json),
  );

  withApi(
    keys
      .command('set-purpose')
      .description('Give a key made before key purposes (purpose legacy) its one purpose: once, audited, and fixed from then on')
      .argument('<key>', 'key id or label')
      .argument('<purpose>', 'general, ssh, consensus or bitcoin'),
  ).action(async (ref: string, purpose: string, o) => printKey(await clientFrom(o).setPurpose(ref, purpose), !!o.json));

  withApi(
    keys
      .command('token-objects')
      .description('List the private keys on a PKCS#11 token, and which vault key each already is (to adopt the others)')
      .requiredOption('--backend <backend>', 'pkcs11:<name> from [[pkcs11]]'),
  ).action(async (o) => {
    const { objects } = await clientFrom(o).tokenObjects(o.backend);
    if (o.json) return out(JSON.stringify(objects, null, 2));
    if (objects.length === 0) return out('The token holds no private key.');
    const clean = (x: unknown) => printable(String(x), 64);
    for (const k of objects) out(`${k.id.padEnd(34)} ${clean(k.label).padEnd(24)} ${String(k.algorithm ?? 'unusable').padEnd(10)} ${k.extractable || !k.sensitive ? 'EXTRACTABLE ' : ''}${k.vault_key ? `= ${clean(k.vault_key)}` : '(not in the vault)'}`);
  });

  withApi(
    keys
      .command('adopt')
      .description('Put a key that already exists on a PKCS#11 token (sensitive, non-extractable) under the vault')
      .requiredOption('--label <label>', 'label in the vault')
      .requiredOption('--backend <backend>', 'pkcs11:<name> from [[pkcs11]]')
      .option('--object-label <label>', 'the key\'s CKA_LABEL on the token')
      .option('--object-id <hex>', 'the key\'s CKA_ID on the token, hex')
      .addOption(purposeOption('general')),
  ).action(async (o) => {
    if (!o.objectLabel === !o.objectId) throw new CustosError('bad_request', 'Give exactly one of --object-label and --object-id.');
    printKey(await clientFrom(o).adoptKey({ label: o.label, backend: o.backend, ...(o.objectLabel ? { object_label: o.objectLabel } : { object_id: o.objectId }), ...(o.purpose ? { purpose: o.purpose } : {}) }), !!o.json);
  });

  withApi(
    keys
      .command('generate')
      .description('Generate many keys (labels PREFIX-0, PREFIX-1, ...): HSM-wrapped keys at scale, with a progress bar')
      .requiredOption('--prefix <prefix>', 'label prefix')
      .requiredOption('--count <n>', 'how many keys')
      .option('--start <n>', 'first number', '0')
      .addOption(algorithmOption(true))
      .option('--backend <backend>', 'software (default) or pkcs11:<name>')
      .option('--wrapped', 'PKCS#11: wrapped keys in the database (what scales to millions)')
      .addOption(purposeOption('general')),
  ).action(async (o) => {
    const count = Number(o.count);
    const start = Number(o.start);
    if (!Number.isInteger(count) || count < 1 || count > 100_000_000 || !Number.isInteger(start) || start < 0) throw new CustosError('bad_request', '--count must be 1 to 100,000,000 and --start a whole number.');
    const client = clientFrom(o);
    const tty = process.stderr.isTTY;
    const began = Date.now();
    let done = 0;
    const bar = () => {
      const pct = Math.floor((100 * done) / count);
      const secs = (Date.now() - began) / 1000;
      const rate = secs > 0 ? done / secs : 0;
      const eta = rate > 0 ? Math.ceil((count - done) / rate) : 0;
      const filled = Math.floor(pct / 4);
      return `[${'#'.repeat(filled)}${'.'.repeat(25 - filled)}] ${done}/${count} ${pct}% ${rate.toFixed(0)} keys/s eta ${eta}s`;
    };
    while (done < count) {
      const n = Math.min(500, count - done);
      await client.createKeys({ label_prefix: o.prefix, start: start + done, count: n, algorithm: o.algorithm, ...(o.backend ? { backend: o.backend } : {}), ...(o.wrapped ? { wrapped: true } : {}), ...(o.purpose ? { purpose: o.purpose } : {}) });
      done += n;
      if (tty) process.stderr.write(`\r${bar()}`);
    }
    if (tty) process.stderr.write('\n');
    const seconds = (Date.now() - began) / 1000;
    if (o.json) out(JSON.stringify({ created: count, first: `${o.prefix}-${start}`, last: `${o.prefix}-${start + count - 1}`, seconds }));
    else out(`created ${count} keys ${o.prefix}-${start} … ${o.prefix}-${start + count - 1} in ${seconds.toFixed(1)} s`);
  });

  withApi(
    keys
      .command('import')
      .description('Import a private key from a file')
      .requiredOption('--label <label>', 'unique label')
      .addOption(new Option('--format <format>', 'raw: 32-byte binary secret; hex: hex text; pkcs8: PEM; openssh: OpenSSH private key file; cometbft: priv_validator_key.json').choices(['raw', 'hex', 'pkcs8', 'openssh', 'cometbft']).makeOptionMandatory())
      .requiredOption('--in <file>', 'file with the key material (- for stdin)')
      .addOption(algorithmOption(false))
      .option('--exportable', 'allow wrapped export later (fixed at creation)', false)
      .addOption(purposeOption('consensus for --format cometbft, else general')),
  ).action(async (o) => {
    const bytes = readInput(o.in);
    try {
      const material = o.format === 'raw' ? Buffer.from(bytes).toString('base64') : Buffer.from(bytes).toString('utf8');
      printKey(await clientFrom(o).importKey({ label: o.label, algorithm: o.algorithm, format: o.format, material, exportable: !!o.exportable, ...(o.purpose ? { purpose: o.purpose } : {}) }), !!o.json);
    } finally {
      wipe(bytes);
    }
  });

  for (const [name, desc] of [
    ['disable', 'Disable a key: it refuses to sign until enabled'],
    ['enable', 'Enable a disabled key'],
  ] as const) {
    withApi(keys.command(name).description(desc).argument('<key>', 'key id or label')).action(async (ref: string, o) => {
      const c = clientFrom(o);
      printKey(name === 'disable' ? await c.disableKey(ref) : await c.enableKey(ref), !!o.json);
    });
  }

  withApi(keys.command('destroy').description('Destroy a key for good: its sealed material is overwritten and deleted').argument('<key>', 'key id or label').option('--yes', 'do not ask for confirmation')).action(
    async (ref: string, o) => {
      if (!o.yes) throw new CustosError('bad_request', `Destroying ${ref} cannot be undone; repeat with --yes.`);
      printKey(await clientFrom(o).destroyKey(ref), !!o.json);
    },
  );

  withApi(
    keys
      .command('export')
      .description('Export an exportable key wrapped to a recipient public key (custos-ecies-v1)')
      .argument('<key>', 'key id or label')
      .addOption(new Option('--kem <kem>', 'recipient key type').choices(['x25519', 'secp256k1']).default('x25519'))
      .requiredOption('--recipient <hex>', 'recipient public key in hex (32-byte X25519, or SEC1 secp256k1)')
      .requiredOption('--out <file>', 'where to write the envelope (binary, mode 0600)'),
  ).action(async (ref: string, o) => {
    const envelope = await clientFrom(o).exportKey(ref, { kem: o.kem, publicKey: hexToBytes(o.recipient, 'recipient public key') });
    writeFileSync(o.out, envelope, { mode: 0o600, flag: 'wx' });
    out(`Wrote ${envelope.length}-byte custos-ecies-v1 envelope to ${o.out}.`);
  });

  keys
    .command('recipient')
    .description('Make a recipient key pair for `keys export` (the secret is written 0600; keep it offline)')
    .addOption(new Option('--kem <kem>', 'key type').choices(['x25519', 'secp256k1']).default('x25519'))
    .requiredOption('--secret-out <file>', 'where to write the 32-byte secret')
    .action((o: { kem: 'x25519' | 'secp256k1'; secretOut: string }) => {
      const secret = o.kem === 'x25519' ? x25519.utils.randomSecretKey() : secp256k1.utils.randomSecretKey();
      const pub = o.kem === 'x25519' ? x25519.getPublicKey(secret) : secp256k1.getPublicKey(secret, true);
      writeFileSync(o.secretOut, secret, { mode: 0o600, flag: 'wx' });
      wipe(secret);
      out(bytesToHex(pub));
    });

  keys
    .command('unwrap')
    .description('Open an exported envelope with the recipient secret; writes the key secret (0600)')
    .requiredOption('--in <file>', 'envelope file from `keys export`')
    .requiredOption('--secret <file>', 'recipient secret from `keys recipient`')
    .requiredOption('--out <file>', 'where to write the unwrapped secret (32-byte seed/scalar, or PKCS#8 DER for RSA)')
    .action((o: { in: string; secret: string; out: string }) => {
      const recipient = readInput(o.secret);
      let plain: Uint8Array | undefined;
      try {
        plain = eciesDecrypt(recipient, readInput(o.in));
        const k = decodeExportedKey(plain);
        writeFileSync(o.out, k.secret, { mode: 0o600, flag: 'wx' });
        out(JSON.stringify({ algorithm: k.algorithm, public_key: bytesToHex(k.publicKey), secret_file: o.out }));
      } finally {
        wipe(recipient, plain);
      }
    });

  const signOpts = (c: Command) =>
    withApi(c)
      .requiredOption('--key <key>', 'key id or label')
      .requiredOption('--in <file>', 'message (or digest with --digest) to sign; - for stdin')
      .option('--digest', 'the input is a pre-computed digest (ECDSA keys)')
      .addOption(new Option('--encoding <enc>', 'ECDSA signature encoding').choices(['der', 'raw']))
      .addOption(new Option('--hash <hash>', 'hash for ECDSA/RSA').choices(['sha256', 'sha384', 'sha512']))
      .addOption(new Option('--padding <padding>', 'RSA padding').choices(['pkcs1', 'pss']));

  signOpts(program.command('sign').description('Sign a file with a vault key; prints the signature in base64 (or writes --out)'))
    .option('--out <file>', 'write the binary signature here instead of printing base64')
    .action(async (o) => {
      const data = readInput(o.in);
      const r = await clientFrom(o).sign(o.key, { ...(o.digest ? { digest: data } : { message: data }), encoding: o.encoding, hash: o.hash, padding: o.padding });
      if (o.out) writeFileSync(o.out, r.signature);
      if (o.json) out(JSON.stringify({ key_id: r.keyId, algorithm: r.algorithm, encoding: r.encoding, signature: Buffer.from(r.signature).toString('base64'), request_id: r.requestId }));
      else if (!o.out) out(Buffer.from(r.signature).toString('base64'));
    });

  signOpts(program.command('verify').description('Verify a signature with a vault key; exit 0 if valid, 1 if not'))
    .option('--signature <base64>', 'the signature in base64')
    .option('--signature-file <file>', 'the binary signature')
    .action(async (o) => {
      if (!o.signature === !o.signatureFile) throw new CustosError('bad_request', 'Give exactly one of --signature BASE64 or --signature-file FILE.');
      const signature = o.signatureFile ? readInput(o.signatureFile) : base64ToBytes(o.signature, 'signature');
      const data = readInput(o.in);
      const valid = await clientFrom(o).verify(o.key, { ...(o.digest ? { digest: data } : { message: data }), signature, encoding: o.encoding, hash: o.hash, padding: o.padding });
      out(o.json ? JSON.stringify({ valid }) : valid ? 'valid' : 'INVALID');
      if (!valid) process.exitCode = EXIT.checkFailed;
    });

  withApi(program.command('approvals').description('List requests waiting for approval (ssh-add -c keys, policy rules)')).action(async (o) => {
    const list = await clientFrom(o).approvals();
    if (o.json) return out(JSON.stringify(list, null, 2));
    if (list.length === 0) return out('No request is waiting for approval.');
    for (const a of list) {
      // Values come from clients: nothing but printable ASCII reaches the approver's terminal.
      const clean = (x: unknown) => printable(String(x), 256);
      const what = Object.entries(a.summary).map(([k, v]) => `${clean(k)}=${clean(v)}`).join(' ');
      const by = a.approvers.length ? `, approvers ${a.approvers.map(clean).join(' ')}` : '';
      out(`${clean(a.id)}  ${clean(a.operation)} with ${clean(a.key_label)} for ${clean(a.requester)}  ${what}  (${a.approved_by.length}/${a.required}${by}, until ${clean(a.expires_at)})`);
    }
  });
  for (const verb of ['approve', 'deny'] as const) {
    withApi(program.command(verb).description(verb === 'approve' ? 'Approve a waiting request' : 'Deny a waiting request').argument('<id>', 'request id from `custos approvals`')).action(async (id: string, o) => {
      const r = await clientFrom(o).decide(id, verb === 'approve');
      out(o.json ? JSON.stringify(r) : `${r.id}: ${r.settled}`);
    });
  }

  const policy = program.command('policy').description('Policy documents: rules every signature must pass (amounts, destinations, velocity, approvals ...)');
  withApi(policy.command('upload').description('Upload a policy document (TOML or JSON): a new version of its id, validated and audited').argument('<file>', 'the document (- for stdin)')).action(async (file: string, o) => {
    const source = Buffer.from(readInput(file)).toString('utf8');
    const v = await clientFrom(o).uploadPolicy(source, file.endsWith('.json') ? 'json' : file.endsWith('.toml') ? 'toml' : undefined);
    if (!o.json) for (const w of v.warnings ?? []) process.stderr.write(`custos: warning: ${w}\n`);
    out(o.json ? JSON.stringify(v) : `policy ${v.id} version ${v.version} in force (sha256 ${v.sha256})`);
  });
  withApi(policy.command('list').description('Policy documents in force')).action(async (o) => {
    const { policies } = await clientFrom(o).listPolicies();
    if (o.json) return out(JSON.stringify(policies, null, 2));
    if (policies.length === 0) return out('No policy is in force: every request is allowed (subject to key state and approvals of confirm keys).');
    for (const p of policies) out(`${p.id}  v${p.version}  ${p.uploaded_at}  sha256 ${p.sha256.slice(0, 16)}`);
  });
  withApi(policy.command('show').description('Every version of a policy document, newest last').argument('<id>', 'policy id')).action(async (id: string, o) => {
    const h = await clientFrom(o).policyHistory(id);
    if (o.json) return out(JSON.stringify(h, null, 2));
    for (const v of h.versions) out(`--- ${h.id} v${v.version} ${v.uploaded_at}${v.retired ? ' (retired)' : ''}\n${v.source}`);
  });
  withApi(policy.command('retire').description('Take a policy out of force (its history is kept)').argument('<id>', 'policy id')).action(async (id: string, o) => {
    const v = await clientFrom(o).retirePolicy(id);
    out(o.json ? JSON.stringify(v) : `policy ${v.id} retired (version ${v.version})`);
  });
  withApi(
    policy
      .command('test')
      .description('Explain, rule by rule, what the policies would decide for a request; nothing is signed or spent')
      .requiredOption('--key <key>', 'key id or label')
      .requiredOption('--request <file>', 'JSON: { "operation"?, "payload_type"?, "message"? (base64), "facts"?, "principal"?, "psbt"?: { "outputs": [{ "address", "amount", "is_change" }], "fee" } }'),
  ).action(async (o) => {
    let request: Record<string, unknown>;
    try {
      request = JSON.parse(Buffer.from(readInput(o.request)).toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new CustosError('bad_request', `${o.request} is not JSON.`);
    }
    const r = await clientFrom(o).testPolicy({ ...request, key: o.key });
    out(o.json ? JSON.stringify(r, null, 2) : r.explanation);
    if (r.decision.kind === 'deny') process.exitCode = EXIT.refused;
  });

  withApi(
    keys
      .command('create-hd')
      .description('Create an HD master key (BIP32 secp256k1 / SLIP-10 ed25519): children are derived on demand, never stored')
      .requiredOption('--label <label>', 'unique label')
      .addOption(new Option('--curve <curve>', 'secp256k1 (BIP32) or ed25519 (SLIP-10)').choices(['secp256k1', 'ed25519']).default('secp256k1'))
      .option('--mnemonic-file <file>', 'a BIP39 mnemonic to import (English); else a new random seed')
      .option('--passphrase-env <var>', 'BIP39 passphrase from this environment variable')
      .option('--xprv-file <file>', 'a master xprv/tprv to import')
      .option('--allowed-path <prefix...>', "subtrees the key may sign under, e.g. m/84'/0'")
      .option('--tag <tag...>', 'policy tags; fixed at creation')
      .addOption(new Option('--purpose <purpose>', 'bitcoin (PSBTs and children by path; default for secp256k1) or general (raw payloads by path; default for ed25519)').choices(['bitcoin', 'general'])),
  ).action(async (o) => {
    const text = (f?: string) => (f ? Buffer.from(readInput(f)).toString('utf8').trim().replace(/\s+/g, ' ') : undefined);
    const k = await clientFrom(o).createHdKey({
      label: o.label,
      curve: o.curve,
      ...(o.mnemonicFile ? { mnemonic: text(o.mnemonicFile) } : {}),
      ...(o.passphraseEnv ? { passphrase: process.env[o.passphraseEnv] ?? '' } : {}),
      ...(o.xprvFile ? { xprv: text(o.xprvFile) } : {}),
      ...(o.purpose ? { purpose: o.purpose } : {}),
      ...(o.allowedPath ? { allowed_paths: o.allowedPath } : {}),
      ...(o.tag ? { tags: o.tag } : {}),
    });
    printKey(k, !!o.json);
  });
  withApi(
    keys
      .command('xpub')
      .description('Public key and xpub of an HD key at a path (hardened paths too)')
      .argument('<key>', 'key id or label')
      .requiredOption('--path <path>', "derivation path, e.g. m/84'/0'/0'")
      .addOption(new Option('--network <net>', 'xpub version').choices(['mainnet', 'testnet']).default('mainnet')),
  ).action(async (ref: string, o) => {
    const r = await clientFrom(o).hdPublic(ref, o.path, o.network);
    out(o.json ? JSON.stringify(r) : `${r.path}  ${r.public_key_hex}${r.xpub ? `\n${r.xpub}` : ''}`);
  });

  withApi(
    program
      .command('sign-psbt')
      .description('Sign the inputs of a PSBT that belong to an HD key, after policy; prints the signed PSBT in base64')
      .requiredOption('--key <key>', 'HD key id or label')
      .requiredOption('--in <file>', 'the PSBT, binary or base64 (- for stdin)')
      .addOption(new Option('--network <net>', 'bitcoin network').choices(['bitcoin', 'testnet', 'regtest']).default('bitcoin'))
      .option('--out <file>', 'write the signed PSBT (binary) here'),
  ).action(async (o) => {
    let bytes = readInput(o.in);
    const text = Buffer.from(bytes).toString('utf8').trim();
    if (/^[A-Za-z0-9+/=\s]+$/.test(text) && text.startsWith('cHNidP')) bytes = base64ToBytes(text.replace(/\s+/g, ''), 'PSBT');
    const r = await clientFrom(o).signPsbt(o.key, bytes, o.network);
    if (o.out) writeFileSync(o.out, Buffer.from(r.psbt, 'base64'));
    if (o.json) return out(JSON.stringify(r, null, 2));
    process.stderr.write(`custos: signed inputs ${r.signed_inputs.join(', ')} of ${r.txid}: sends ${r.sent_externally_sats} sats, fee ${r.fee_sats}, change ${r.change_sats}\n`);
    if (!o.out) out(r.psbt);
  });

  const tokens = program.command('tokens').description('API tokens: admins and approvers');
  withApi(
    tokens
      .command('create')
      .description('Create a token (shown once): admin, or approver (may only list and decide approvals)')
      .requiredOption('--name <name>', 'who holds it; approvals name approvers as token:<name>')
      .addOption(new Option('--role <role>', 'role').choices(['admin', 'approver']).default('approver')),
  ).action(async (o) => {
    const t = await clientFrom(o).createToken(o.name, o.role);
    out(o.json ? JSON.stringify(t) : `token for ${t.name} (${t.role}, principal token:${t.name}); shown once:\n  ${t.token}`);
  });
  withApi(tokens.command('list').description('Token names and roles')).action(async (o) => {
    const { tokens: list } = await clientFrom(o).listTokens();
    out(o.json ? JSON.stringify(list, null, 2) : list.map((t) => `${t.id}  ${t.name.padEnd(24)} ${t.role.padEnd(9)} ${t.created_at}`).join('\n'));
  });

  const privval = program.command('privval').description('CometBFT remote signing: consensus keys and their double-sign watermarks');
  withApi(
    privval
      .command('import-state')
      .description("Seed a key's double-sign watermark from CometBFT's priv_validator_state.json (never moves it backwards)")
      .requiredOption('--key <key>', 'consensus key id or label (import priv_validator_key.json with `keys import --format cometbft`)')
      .requiredOption('--chain-id <id>', 'chain id')
      .requiredOption('--in <file>', 'priv_validator_state.json'),
  ).action(async (o) => {
    let st: { height?: unknown; round?: unknown; step?: unknown; signature?: unknown; signbytes?: unknown };
    try {
      st = JSON.parse(Buffer.from(readInput(o.in)).toString('utf8'));
    } catch {
      throw new CustosError('bad_request', `${o.in} is not JSON.`);
    }
    if (typeof st.height !== 'string' || typeof st.round !== 'number' || typeof st.step !== 'number') {
      throw new CustosError('bad_request', `${o.in} is not a priv_validator_state.json (height as a string, round and step as numbers).`);
    }
    const body = {
      height: st.height,
      round: st.round,
      step: st.step,
      ...(typeof st.signbytes === 'string' && st.signbytes ? { sign_bytes: st.signbytes } : {}),
      ...(typeof st.signature === 'string' && st.signature ? { signature: st.signature } : {}),
    };
    const r = await clientFrom(o).importWatermark(o.key, o.chainId, body);
    out(o.json ? JSON.stringify(r) : `Watermark of ${o.key} on ${o.chainId}: height ${r.height} round ${r.round} step ${r.step}.`);
  });
  withApi(
    privval
      .command('status')
      .description("Each validator's connection state and last signed height/round/step; or, with --key and --chain-id, a key's watermark")
      .option('--key <key>', 'consensus key')
      .option('--chain-id <id>', 'chain id'),
  ).action(async (o) => {
    const c = clientFrom(o);
    if (o.key || o.chainId) {
      if (!o.key || !o.chainId) throw new CustosError('bad_request', 'Give both --key and --chain-id, or neither.');
      const w = await c.getWatermark(o.key, o.chainId);
      return out(o.json ? JSON.stringify(w) : `${o.key} on ${o.chainId}: last signed height ${w.height} round ${w.round} step ${w.step}${w.signature ? '' : ' (no signature stored)'}`);
    }
    const list = await c.privvalStatus();
    if (o.json) return out(JSON.stringify(list, null, 2));
    if (list.length === 0) return out('No [[privval]] validator is configured.');
    for (const p of list) {
      const last = p.last_signed ? `last signed ${p.last_signed.height}/${p.last_signed.round}/${p.last_signed.step}` : 'nothing signed yet';
      out(`${p.name.padEnd(16)} ${p.chain_id.padEnd(16)} ${p.state.padEnd(11)} ${p.address}  ${last}  (${p.signatures} signatures, ${p.refusals} refusals)`);
    }
  });

  const agentCmd = program.command('ssh-agent').description('Manage the ssh-agent sockets of a running vault');
  withApi(agentCmd.command('restore').description('Offer again the vault keys that ssh-add -d/-D hid from a socket').argument('<name>', 'socket name from [[ssh_agent]] (default: default)')).action(
    async (name: string, o) => {
      const r = await clientFrom(o).restoreAgent(name);
      out(o.json ? JSON.stringify(r) : `${r.restored} key(s) offered again on ssh-agent ${r.agent}.`);
    },
  );

  const audit = program.command('audit').description('Inspect the tamper-evident audit log (reads the data directory; no passphrase needed)');
  audit
    .command('verify')
    .description('Check every link and signed checkpoint of the audit chain; names the first bad entry')
    .requiredOption('--data-dir <dir>', 'vault directory')
    .option('--audit-key <hex>', 'the audit public key printed by `custos init` (else the copy in the database is trusted)')
    .option('--anchor <file...>', 'off-host copies of the audit anchor (`custos audit anchor`): the log must reach each one')
    .option('--json', 'print JSON')
    .action(async (o: { dataDir: string; auditKey?: string; anchor?: string[]; json?: boolean }) => {
      const tty = process.stderr.isTTY && !o.json;
      const auditKey = o.auditKey ? hexToBytes(o.auditKey, 'audit key') : undefined;
      if (auditKey && auditKey.length !== 32) throw new CustosError('bad_request', 'The audit key is 32 bytes (64 hex digits), as printed by `custos init`.');
      const report = await verifyAudit(resolve(o.dataDir), {
        auditKey,
        ...(o.anchor ? { anchors: o.anchor.map((f) => resolve(f)) } : {}),
        onProgress: (done, total) => {
          if (tty) process.stderr.write(`\rverifying ${done}/${total} entries (${total ? Math.floor((100 * done) / total) : 100}%)`);
        },
      });
      if (tty) process.stderr.write('\n');
      if (!auditKey) process.stderr.write('custos: checkpoints were checked with the audit key stored in the database; pass --audit-key (printed by `custos init`) to also catch a log re-signed with a substituted key.\n');
      if (o.json) out(JSON.stringify(report));
      else if (report.ok) {
        out(`audit chain OK: ${report.entries} entries, ${report.checkpoints} signed checkpoints, head ${report.headSeq} ${report.headHash}`);
        if (report.anchor) out(`anchor OK: entry ${report.anchor.seq} signed ${report.anchor.ts}${report.anchor.clean ? ' at a clean stop' : ''} (${report.anchor.source})${report.rowsChecked ? '; every protected row matches it' : ''}`);
        for (const n of report.notes) out(`note: ${n}`);
      } else out(`audit chain BROKEN at entry ${report.firstBad!.seq}: ${report.firstBad!.problem} (${report.entries} entries before it verified)`);
      if (!report.ok) process.exitCode = EXIT.checkFailed;
    });
  audit
    .command('anchor')
    .description('Print the signed audit anchor (the newest head, kept beside the database): ship it off the host, and `audit verify --anchor FILE` proves a later database is not older or cut')
    .requiredOption('--data-dir <dir>', 'vault directory')
    .action(async (o: { dataDir: string }) => {
      process.stdout.write(await readAnchorText(resolve(o.dataDir)));
    });
  audit
    .command('accept-database')
    .description('Serve this database although its audit anchor is newer or missing (you restored an older backup on purpose): every other check still applies; audited; new anchors are written (the HSM token\'s too)')
    .requiredOption('--data-dir <dir>', 'vault directory (the vault must be stopped)')
    .option('--passphrase-file <file>', 'file holding the passphrase (else $CUSTOS_PASSPHRASE, else a prompt)')
    .option('--share-file <file...>', 'for a vault sealed by shares (or an HSM without its token): files holding at least the threshold of shares')
    .option('--config <file>', 'configuration file (default: custos.toml in the data directory); an HSM-sealed vault unseals through its [seal.pkcs11] token')
    .action(async (o: { dataDir: string; passphraseFile?: string; shareFile?: string[]; config?: string }) => {
      const dataDir = resolve(o.dataDir);
      assertVaultLayout(dataDir, o.config);
      process.stderr.write(
        'custos: WARNING: a database older than its anchor has forgotten what was signed after it. For a validator, first import the\n' +
          '  newest watermark you know of (`custos privval import-state`), or it may sign a vote that conflicts with one it already signed.\n',
      );
      const r = await offlineCommand(dataDir, o, { acceptRollback: true });
      out(`The database was accepted at audit entry ${r.headSeq}; the decision is in the audit log and new anchors were written.`);
    });
  audit
    .command('tail')
    .description('Show the most recent audit entries')
    .requiredOption('--data-dir <dir>', 'vault directory')
    .option('-n, --lines <n>', 'how many entries', '20')
    .option('--json', 'print JSON lines')
    .action(async (o: { dataDir: string; lines: string; json?: boolean }) => {
      const n = Number(o.lines);
      if (!Number.isInteger(n) || n < 1 || n > 100000) throw new CustosError('bad_request', '--lines must be an integer from 1 to 100000.');
      const { store } = await openStoreOnly(resolve(o.dataDir));
      try {
        for (const e of await store.auditTail(n)) {
          // Entries without a MAC are those a sealed daemon wrote (it holds no key): anyone able to
          // write the database could have appended one, so they are shown as unauthenticated.
          const authenticated = e.mac != null;
          if (o.json) out(JSON.stringify({ seq: e.seq, ts: e.ts, request_id: e.requestId, principal: e.principal, operation: e.operation, key_id: e.keyId, key_label: e.keyLabel, outcome: e.outcome, reason: e.reason, details: e.details, hash: bytesToHex(e.hash), authenticated }));
          else out(`${String(e.seq).padStart(6)} ${e.ts} ${e.principal.padEnd(14)} ${e.operation.padEnd(8)} ${(e.keyLabel ?? '-').padEnd(20)} ${e.outcome}${e.reason ? ` (${e.reason})` : ''}${authenticated ? '' : ' [unauthenticated: written while sealed]'}`);
        }
      } finally {
        await store.close();
      }
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  // Whatever this process creates is the user's alone (0600 files, 0700 directories), as
  // OpenSSH's daemons and agents set their umask: share files and output files, and the
  // database when SQLite creates it. (SQLite gives custos.db-wal/-shm the database's own mode,
  // which the permission checks below require to be 0600.)
  process.umask(0o077);
  const program = buildCli();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : EXIT.usage;
      return;
    }
    if (isCustosError(e)) {
      process.stderr.write(`custos: ${e.message}\n`);
      process.exitCode = exitCodeFor(e.code);
      return;
    }
    const err = e as NodeJS.ErrnoException;
    process.stderr.write(`custos: ${err.code === 'EADDRINUSE' ? 'the port is already in use; pick another with --port.' : err.message}\n`);
    process.exitCode = err.code === 'EADDRINUSE' ? EXIT.unavailable : EXIT.unavailable;
  }
}

await main(process.argv);
