/** Approvals and policy documents, over the HTTP API. */
import type { Command } from 'commander';
import { CustosError } from '../../core/errors.js';
import { printable } from '../../core/text.js';
import { EXIT } from '../exit.js';
import { clientFrom, out, readInput, withApi } from '../common.js';

export function registerPolicy(program: Command): void {
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
}
