/**
 * The `custos` command. Vault administration (`init`, `serve`, `audit`) works on a data
 * directory; key commands talk to a running vault over its HTTP API, like `vault` does
 * (address and token from flags or CUSTOS_ADDR / CUSTOS_TOKEN). One module per command group
 * in commands/; each loads the vault, the server or a token's module only when run.
 */
import { Command, CommanderError } from 'commander';
import { isCustosError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { EXIT, exitCodeFor } from './exit.js';
import { registerVault } from './commands/vault.js';
import { registerOperator } from './commands/operator.js';
import { registerKeys } from './commands/keys.js';
import { registerSign } from './commands/sign.js';
import { registerPolicy } from './commands/policy.js';
import { registerWallet } from './commands/wallet.js';
import { registerLightning } from './commands/lightning.js';
import { registerTor } from './commands/tor.js';
import { registerTokens } from './commands/tokens.js';
import { registerPrivval } from './commands/privval.js';
import { registerAgent } from './commands/agent.js';
import { registerAudit } from './commands/audit.js';
import { registerTls } from './commands/tls.js';
import { registerCluster } from './commands/cluster.js';

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
  registerVault(program);
  registerOperator(program);
  registerKeys(program);
  registerSign(program);
  registerPolicy(program);
  registerWallet(program);
  registerLightning(program);
  registerTor(program);
  registerTokens(program);
  registerPrivval(program);
  registerAgent(program);
  registerAudit(program);
  registerTls(program);
  registerCluster(program);
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
