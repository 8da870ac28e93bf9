/** API tokens, over the HTTP API. */
import { Command, Option } from 'commander';
import { clientFrom, out, readInput, withApi } from '../common.js';
import { CustosError } from '../../core/errors.js';

export function registerTokens(program: Command): void {
  const tokens = program.command('tokens').description('API principals: tokens, or client certificates for mutual TLS; admins and approvers');
  withApi(
    tokens
      .command('create')
      .description('Create a token (shown once): admin, or approver (may only list and decide approvals)')
      .requiredOption('--name <name>', 'who holds it; approvals name approvers as token:<name>')
      .addOption(new Option('--role <role>', 'role').choices(['admin', 'approver']).default('approver'))
      .option('--certificate <file>', 'bind the principal to this client certificate (PEM) for mutual TLS, instead of making a token')
      .option('--certificate-sha256 <hex>', 'the same, by the certificate\'s SHA-256 fingerprint'),
  ).action(async (o) => {
    let fp: string | undefined = o.certificateSha256;
    if (o.certificate) {
      const { X509Certificate } = await import('node:crypto');
      try {
        fp = new X509Certificate(readInput(o.certificate)).fingerprint256;
      } catch {
        throw new CustosError('bad_request', `${o.certificate} is not a PEM certificate.`);
      }
    }
    const t = await clientFrom(o).createToken(o.name, o.role, fp);
    if (o.json) return out(JSON.stringify(t));
    out(t.token ? `token for ${t.name} (${t.role}, principal token:${t.name}); shown once:\n  ${t.token}` : `principal cert:${t.name} (${t.role}) is the client certificate ${t.certificate_sha256}: it authenticates by mutual TLS, with no token.`);
  });
  withApi(tokens.command('list').description('Token names and roles')).action(async (o) => {
    const { tokens: list } = await clientFrom(o).listTokens();
    out(o.json ? JSON.stringify(list, null, 2) : list.map((t) => `${t.id}  ${t.name.padEnd(24)} ${t.role.padEnd(9)} ${t.created_at}`).join('\n'));
  });

}
