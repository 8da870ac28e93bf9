/** The audit log on a data directory: verify, anchor, accept-database, tail. */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { CustosError } from '../../core/errors.js';
import { bytesToHex, hexToBytes } from '../../core/bytes.js';
import { EXIT } from '../exit.js';
import { offlineCommand, out, offlineOptions, type OfflineOptions } from '../common.js';

export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('Inspect the tamper-evident audit log (reads the data directory; no passphrase needed)');
  audit
    .command('verify')
    .description('Check every link and signed checkpoint of the audit chain; names the first bad entry')
    .requiredOption('--data-dir <dir>', 'vault directory')
    .option('--audit-key <hex>', 'the audit public key printed by `custos init` (else the copy in the database is trusted)')
    .option('--anchor <file...>', 'off-host copies of the audit anchor (`custos audit anchor`): the log must reach each one')
    .option('--json', 'print JSON')
    .action(async (o: { dataDir: string; auditKey?: string; anchor?: string[]; json?: boolean }) => {
      const { verifyAudit } = await import('../../vault/verify.js');
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
      const { readAnchorText } = await import('../../vault/verify.js');
      process.stdout.write(await readAnchorText(resolve(o.dataDir)));
    });
  offlineOptions(
    audit
      .command('accept-database')
      .description('Serve this database although its audit anchor is newer or missing (you restored an older backup on purpose): every other check still applies; audited; new anchors are written (the HSM token\'s too)')
  ).action(async (o: OfflineOptions) => {
    const r = await offlineCommand(o, { acceptRollback: true }, () =>
      process.stderr.write(
        'custos: WARNING: a database older than its anchor has forgotten what was signed after it. For a validator, first import the\n' +
          '  newest watermark you know of (`custos privval import-state`), or it may sign a vote that conflicts with one it already signed.\n',
      ),
    );
    out(`The database was accepted at audit entry ${r.headSeq}; the decision is in the audit log and new anchors were written.`);
  });
  audit
    .command('tail')
    .description('Show the most recent audit entries')
    .requiredOption('--data-dir <dir>', 'vault directory')
    .option('-n, --lines <n>', 'how many entries', '20')
    .option('--json', 'print JSON lines')
    .action(async (o: { dataDir: string; lines: string; json?: boolean }) => {
      const { openStoreOnly } = await import('../../vault/open.js');
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
}
