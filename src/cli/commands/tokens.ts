/** API tokens, over the HTTP API. */
import { Command, Option } from 'commander';
import { clientFrom, out, withApi } from '../common.js';

export function registerTokens(program: Command): void {
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

}
