/** Operator shares: `operator unseal` (to a running vault) and `operator rekey` (on the data directory). */
import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { CustosError } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import { out, printSealStatus, publicClient, withPublicApi, printShares, readInput, sharesOption } from '../common.js';

export function registerOperator(program: Command): void {
  const operator = program.command('operator').description('Operator shares: unseal a running vault, re-key the shares');

  withPublicApi(operator.command('unseal').description('Give one operator share to a sealed vault (needs no API token: the share is the credential)'))
    .option('--share-file <file>', 'read the share from a file (else a prompt, without echo)')
    .option('--reset', 'forget the shares given so far (needs one valid share too)')
    .option('--json', 'print JSON')
    .action(async (o: { addr: string; ca?: string; serverSha256?: string; shareFile?: string; reset?: boolean; json?: boolean }) => {
      const { prompt } = await import('../../daemon/passphrase.js');
      const client = publicClient(o);
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
      const { rekeyShares } = await import('../../vault/operator.js');
      const { assertVaultLayout } = await import('../../daemon/permissions.js');
      const next = sharesOption(o)!;
      if (o.shareDir && existsSync(o.shareDir)) throw new CustosError('bad_request', `${o.shareDir} exists; give a new directory for the share files.`);
      assertVaultLayout(resolve(o.dataDir));
      const lines = o.shareFile.map((f) => Buffer.from(readInput(f)).toString('utf8').trim());
      const { shareLines } = await rekeyShares(resolve(o.dataDir), lines, next);
      out('The shares were replaced; the old ones no longer unseal this vault.');
      printShares(shareLines, next.threshold, o.shareDir);
    });

}
