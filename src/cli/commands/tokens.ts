/** API principals (tokens and client certificates), over the HTTP API. */
import { Command, Option } from 'commander';
import { clientFrom, offlineCommand, offlineOptions, out, readInput, withApi } from '../common.js';
import { CustosError } from '../../core/errors.js';
import type { PrincipalParams, PrincipalView } from '../../client/client.js';
import { ROLES } from '../../accounts/principals.js';

const list = (v: string) => v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);

/** The scope, expiry and rate-limit flags `create` and `update` share. */
const withTerms = (c: Command) =>
  c
    .option('--operations <list>', 'what it may do, within its role: read,sign,verify,export,create,destroy,manage,policy,approve,audit, and for a Lightning node state,ecdh,decrypt (default: the role\'s; a signer gets read,sign,verify)', list)
    .option('--keys <globs>', 'only keys whose label matches one of these globs, comma-separated (payments-*,hot-?)', list)
    .option('--tags <tags>', 'only keys carrying one of these tags, comma-separated', list)
    .option('--expires <when>', 'refuse it after this ISO time or duration (30m, 12h, 90d)')
    .option('--rate-limit <rate>', 'at most this many requests per process: N/s, N/min or N/h');

function termsOf(o: { operations?: string[]; keys?: string[]; tags?: string[]; expires?: string; rateLimit?: string }): PrincipalParams {
  return {
    ...(o.operations ? { operations: o.operations as PrincipalParams['operations'] } : {}),
    ...(o.keys ? { keys: o.keys } : {}),
    ...(o.tags ? { tags: o.tags } : {}),
    ...(o.expires !== undefined ? { expires_at: o.expires === 'never' ? null : o.expires } : {}),
    ...(o.rateLimit !== undefined ? { rate_limit: o.rateLimit === 'none' ? null : o.rateLimit } : {}),
  };
}

async function fingerprintOf(file: string): Promise<string> {
  const { X509Certificate } = await import('node:crypto');
  try {
    return new X509Certificate(readInput(file)).fingerprint256;
  } catch {
    throw new CustosError('bad_request', `${file} is not a PEM certificate.`);
  }
}

function describe(t: PrincipalView): string {
  const scope = t.role === 'admin' ? 'everything' : [t.operations.join(','), t.keys.length ? `keys ${t.keys.join(',')}` : '', t.tags.length ? `tags ${t.tags.join(',')}` : ''].filter(Boolean).join('; ');
  const extra = [t.expires_at ? `expires ${t.expires_at}` : '', t.rate_limit ? `limit ${t.rate_limit}` : '', t.state !== 'active' ? t.state.toUpperCase() : ''].filter(Boolean).join(', ');
  return `${t.principal} (${t.role}): ${scope}${extra ? ` [${extra}]` : ''}`;
}

export function registerTokens(program: Command): void {
  const tokens = program.command('tokens').description('API principals: tokens or client certificates (mutual TLS), each with a role and a scope');
  withApi(
    withTerms(
      tokens
        .command('create')
        .description('Create a principal: a token (shown once), or a client certificate with --certificate')
        .requiredOption('--name <name>', 'who holds it; the audit log names it token:<name> (or cert:<name>)')
        .addOption(new Option('--role <role>', 'admin, operator (keys and policies, no signing), signer, approver, auditor (read-only)').choices([...ROLES]).default('signer'))
        .option('--certificate <file>', 'bind the principal to this client certificate (PEM) for mutual TLS, instead of making a token')
        .option('--certificate-sha256 <hex>', "the same, by the certificate's SHA-256 fingerprint")
        .option('--certificate-name <name>', 'bind any certificate from [api] client_ca carrying this name instead (DNS:host, URI:uri, email:addr, IP:addr or CN=name): renewals keep working'),
    ),
  ).action(async (o) => {
    const fp: string | undefined = o.certificate ? await fingerprintOf(o.certificate) : o.certificateSha256;
    const t = await clientFrom(o).createToken({ name: o.name, role: o.role, ...termsOf(o), ...(fp ? { certificate_sha256: fp } : {}), ...(o.certificateName ? { certificate_name: o.certificateName } : {}) });
    if (o.json) return out(JSON.stringify(t));
    out(t.token ? `${describe(t)}\ntoken, shown once:\n  ${t.token}` : t.certificate_name ? `${describe(t)}\nany client certificate from [api] client_ca named ${t.certificate_name} authenticates it by mutual TLS, with no token.` : `${describe(t)}\nthe client certificate ${t.certificate_sha256} authenticates it by mutual TLS, with no token.`);
  });
  withApi(tokens.command('list').description('Principals: names, roles, scopes, expiry and state (never the tokens)')).action(async (o) => {
    const { tokens: all } = await clientFrom(o).listTokens();
    out(o.json ? JSON.stringify(all, null, 2) : all.map(describe).join('\n'));
  });
  withApi(
    withTerms(tokens.command('update').description("Change a principal's scope, expiry (--expires never clears it) or rate limit (--rate-limit none); holds from the next request").argument('<name>')),
  ).action(async (name: string, o) => {
    const t = await clientFrom(o).updateToken(name, termsOf(o));
    out(o.json ? JSON.stringify(t) : describe(t));
  });
  withApi(tokens.command('revoke').description('Revoke a principal: its token or certificate fails from the next request, in every process').argument('<name>')).action(async (name: string, o) => {
    const t = await clientFrom(o).revokeToken(name);
    out(o.json ? JSON.stringify(t) : `revoked ${t.principal} at ${t.revoked_at}`);
  });
  withApi(
    tokens
      .command('rotate')
      .description('Give a principal a new token (shown once), or bind it to a new client certificate; the old one fails from the next request')
      .argument('<name>')
      .option('--certificate <file>', 'the new client certificate (PEM), for a certificate principal')
      .option('--certificate-sha256 <hex>', 'the same, by fingerprint'),
  ).action(async (name: string, o) => {
    const fp: string | undefined = o.certificate ? await fingerprintOf(o.certificate) : o.certificateSha256;
    const t = await clientFrom(o).rotateToken(name, fp);
    if (o.json) return out(JSON.stringify(t));
    out(t.token ? `${describe(t)}\nnew token, shown once (the old one no longer works):\n  ${t.token}` : `${describe(t)}\nnow the client certificate ${t.certificate_sha256}.`);
  });

  offlineOptions(
    tokens
      .command('recover-admin')
      .description('Break glass: make a new admin token in a stopped vault, unlocked by its passphrase, shares or HSM (when every admin token is lost or revoked)')
      .requiredOption('--name <name>', 'the new admin principal (token:<name>)')
      .requiredOption('--token-file <file>', 'write the new token to this new file (0600); it is never printed'),
  ).action(async (o) => {
    const { openSync, writeSync, closeSync, fsyncSync } = await import('node:fs');
    const { SYSTEM } = await import('../../vault/open.js');
    const { randomUUID } = await import('node:crypto');
    // The file first (O_EXCL, 0600): a token made but not kept would be a lost admin.
    const fd = openSync(o.tokenFile, 'wx', 0o600);
    let made: { token?: string } | undefined;
    try {
      await offlineCommand(o, {}, undefined, async (vault) => {
        made = await vault.createToken({ principal: SYSTEM, requestId: randomUUID() }, { name: o.name, role: 'admin' });
        writeSync(fd, `${made.token}\n`);
        fsyncSync(fd);
      });
    } finally {
      closeSync(fd);
      if (!made) (await import('node:fs')).rmSync(o.tokenFile, { force: true });
    }
    out(`admin token:${o.name} made (audited as the system's token_create); its token is in ${o.tokenFile}.`);
  });
}
