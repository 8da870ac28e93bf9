/** Vault lifecycle on a data directory: `init`, `serve` (and `--dev`), `reload`, `status`, `upgrade`. */
import { Command, Option } from 'commander';
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CustosError } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import type { Pkcs11Backend } from '../../backends/pkcs11/backend.js';
import type { Pkcs11Config } from '../../daemon/config.js';
import { EXIT } from '../exit.js';
import { clientFrom, publicClient, withPublicApi, hsmConfigToml, offlineCommand, out, printSealStatus, printShares, sharesOption, withApi, offlineOptions, type OfflineOptions } from '../common.js';
import type { ReloadChanges } from '../../client/client.js';

export function registerVault(program: Command): void {
  withApi(
    program
      .command('reload')
      .description('Make a running vault re-read custos.toml (as `kill -HUP` does): [[privval]] and [[ssh_agent]] entries that changed start, restart or stop; the others keep their connections; a bad file changes nothing'),
  ).action(async (o) => {
    const r = await clientFrom(o).reload();
    if (o.json) return out(JSON.stringify(r, null, 2));
    const line = (what: string, c: ReloadChanges | null) => {
      if (!c) return `${what}: starts when the vault is unsealed`;
      const parts = (['started', 'restarted', 'stopped', 'unchanged'] as const).filter((k) => c[k].length).map((k) => `${k} ${c[k].join(', ')}`);
      return `${what}: ${parts.length ? parts.join('; ') : 'none configured'}`;
    };
    out(['Configuration reloaded.', line('[[privval]]', r.privval), line('[[ssh_agent]]', r.ssh_agent)].join('\n'));
    if (r.restart_needed.length) out(`Changed but read only at start (restart to apply): ${r.restart_needed.map((k) => `[${k}]`).join(', ')}`);
  });
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
    .option('--admin-token-file <file>', 'write the admin API token to this new file (0600) instead of printing it; the CLI reads it with --token-file or $CUSTOS_TOKEN_FILE')
    .option('--store-url <url>', 'keep the vault in this (empty) PostgreSQL database instead of the SQLite file: postgresql://user@host:5432/db (several hosts: h1:5432,h2:5432); written to custos.toml as [store] url')
    .option('--join', 'with --store-url and --anchor: prepare this data directory as another node of the vault already in that database')
    .option('--anchor <file>', 'with --join: a copy of the custos.anchor of a node already serving the vault (this node then refuses any older database from its first start)')
    .action(async (o: { join?: boolean; anchor?: string; storeUrl?: string; adminTokenFile?: string; dataDir: string; passphraseFile?: string; scryptLogN: string; shares?: string; threshold?: string; shareDir?: string; hsmModule?: string; hsmTokenLabel?: string; hsmPinFile?: string; hsmPinEnv?: string; hsmKeyLabel: string }) => {
      const { CONFIG_FILE, initVault, joinVault } = await import('../../vault/open.js');
      if (o.join) {
        if (!o.storeUrl || !o.anchor) throw new CustosError('bad_request', '--join needs --store-url (the PostgreSQL database that holds the vault) and --anchor (a copy of the custos.anchor of a node serving it).');
        if (o.passphraseFile || o.shares || o.hsmModule || o.adminTokenFile) throw new CustosError('bad_request', '--join takes only --data-dir, --store-url and --anchor: the vault, its seal and its tokens already exist.');
        const dataDir = resolve(o.dataDir);
        const j = await joinVault(dataDir, o.storeUrl, resolve(o.anchor));
        out(`${dataDir} is ready to serve vault ${j.vaultId} as another node (anchored at audit entry ${j.anchorSeq}).`);
        out(`Audit public key (compare it with the one recorded when the vault was made): ${j.auditPublicKey}`);
        out(`Start it with: custos serve --data-dir ${dataDir} (it unseals like every node; an HSM seal needs the [[pkcs11]] and [seal.pkcs11] tables of the first node's ${CONFIG_FILE}).`);
        return;
      }
      const { tokenBackends, tokenRootWrapper } = await import('../../daemon/hsm.js');
      const { readPassphrase } = await import('../../daemon/passphrase.js');
      const logN = Number(o.scryptLogN);
      if (!Number.isInteger(logN) || logN < 10 || logN > 22) throw new CustosError('bad_request', '--scrypt-log-n must be an integer from 10 to 22.');
      const shares = sharesOption(o);
      if (shares && o.passphraseFile) throw new CustosError('bad_request', 'Choose one seal: --shares/--threshold or a passphrase.');
      if (!shares && o.shareDir) throw new CustosError('bad_request', '--share-dir needs --shares and --threshold.');
      if (o.adminTokenFile && existsSync(o.adminTokenFile)) throw new CustosError('bad_request', `${o.adminTokenFile} exists; give a new file for the admin token.`);
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
          ...(o.storeUrl ? { storeUrl: o.storeUrl } : {}),
        });
        if (hsm) appendFileSync(join(dataDir, CONFIG_FILE), hsmConfigToml(hsm.cfg, o.hsmKeyLabel));
        out(`Vault ${r.vaultId} created in ${dataDir}.`);
        if (hsm) out(`Sealed by the AES key "${o.hsmKeyLabel}" on token "${hsm.cfg.tokenLabel}": it unseals itself at start while the token and PIN are there ([[pkcs11]] and [seal.pkcs11] were added to ${CONFIG_FILE}). The shares below are RECOVERY shares, for a lost token.`);
        if (r.shareLines) printShares(r.shareLines, shares!.threshold, o.shareDir);
        out('');
        if (o.adminTokenFile) {
          writeFileSync(o.adminTokenFile, r.adminToken + '\n', { mode: 0o600, flag: 'wx' });
          out(`Admin API token written to ${resolve(o.adminTokenFile)} (0600; only its hash is stored in the vault, keep the file safe).`);
        } else {
          out('Admin API token (shown once; only its hash is stored, keep it safe):');
          out(`  ${r.adminToken}`);
        }
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
    .description('Unseal the vault and serve the HTTP API on loopback (SIGINT/SIGTERM stop it cleanly; SIGHUP or `custos reload` re-reads [[privval]] and [[ssh_agent]])')
    .option('--data-dir <dir>', 'vault directory (see `custos init`)')
    .option('--dev', 'throwaway unsealed vault in a temp directory with a demo key; nothing persists')
    .option('--config <file>', 'TOML config (default: custos.toml in the data directory)')
    .option('--host <host>', 'address to bind (loopback only)')
    .option('--port <port>', 'port to listen on (0 picks a free one)')
    .option('--passphrase-file <file>', 'read the passphrase from a file (else $CUSTOS_PASSPHRASE, else a prompt)')
    .option('--agent-socket <path>', 'serve an ssh-agent on this socket (overrides the first [[ssh_agent]] socket, enabling it)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']))
    .action(async (o: { dataDir?: string; dev?: boolean; config?: string; host?: string; port?: string; passphraseFile?: string; agentSocket?: string; logLevel?: 'info' }) => {
      const { CONFIG_FILE, openStoreOnly } = await import('../../vault/open.js');
      const { closeOnSignals, startDevServer, startServer } = await import('../../daemon/serve.js');
      const { AGENT_DEFAULTS, loadConfig, parsePort } = await import('../../daemon/config.js');
      const { parseSealRecord } = await import('../../keystore/seal.js');
      const { readPassphrase } = await import('../../daemon/passphrase.js');
      const { assertPrivateFile, assertVaultLayout } = await import('../../daemon/permissions.js');
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
      // The file and the flags over it; read again on SIGHUP and `custos reload`.
      const readConfig = () => {
        const c = loadConfig(o.config ?? join(dataDir, CONFIG_FILE), o.config !== undefined);
        if (o.host) c.api.host = o.host;
        if (o.port !== undefined) c.api.port = parsePort(o.port, '--port');
        if (o.logLevel) c.log.level = o.logLevel;
        if (o.agentSocket) {
          const first = c.sshAgents[0] ?? { ...AGENT_DEFAULTS };
          c.sshAgents[0] = { ...first, enabled: true, socket: resolve(o.agentSocket) };
        }
        return c;
      };
      const config = readConfig();
      const reloadConfig = () => {
        assertVaultLayout(dataDir, o.config);
        return readConfig();
      };
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
        server = await startServer({ dataDir, passphrase, config, reloadConfig });
      } finally {
        wipe(passphrase);
      }
      closeOnSignals(server);
      server.announce();
      process.stderr.write(`custos: listening on ${server.url}\n`);
      for (const sock of server.agentSockets) process.stderr.write(`custos: ssh-agent on ${sock} (export SSH_AUTH_SOCK=${sock})\n`);
    });


  withPublicApi(program.command('status').description('Seal state and health of a running vault (needs no API token)'))
    .option('--json', 'print JSON')
    .option('--wait <seconds>', 'wait up to this long for the vault to answer (for scripts that just started it)')
    .action(async (o: { addr: string; ca?: string; serverSha256?: string; json?: boolean; wait?: string }) => {
      const client = publicClient(o);
      const deadline = Date.now() + Math.max(0, Number(o.wait ?? 0)) * 1000;
      let status;
      for (;;) {
        try {
          status = await client.sealStatus();
          break;
        } catch (e) {
          if (Date.now() >= deadline) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      printSealStatus(status, o.json);
      if (status.sealed) process.exitCode = EXIT.unavailable;
    });

  offlineOptions(
    program
      .command('upgrade')
      .description('Add row MACs and the audit anchor to a vault from before them (once, with every process stopped); serve refuses such a vault until then')
  ).action(async (o: OfflineOptions) => {
    const r = await offlineCommand(o, { upgrade: true }, () =>
      process.stderr.write(
        'custos: the rows of this database are MACed as they are now, on your word: run this only on a vault written by a Custos from\n' +
          '  before row MACs. If this vault has been served by this version before, its MACs were stripped: restore a backup instead.\n',
      ),
    );
    out(`The vault was upgraded at audit entry ${r.headSeq}: its rows carry MACs and its anchor is written; \`custos serve\` opens it again.`);
  });

}
