/**
 * `custos tls init`: a private CA and a server certificate for a first deployment, made with
 * OpenSSL's own command (P-256 keys, SHA-256 signatures), in DATA_DIR/tls (0700, keys 0600).
 * Prints the [api] lines to add and the CA file and fingerprint to give clients. The CA key
 * signs client certificates for mutual TLS later; keep it offline once those are made.
 */
import type { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { CustosError } from '../../core/errors.js';
import { out } from '../common.js';

function openssl(args: string[], what: string): void {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.error) throw new CustosError('not_found', 'openssl is not installed (apt-get install -y openssl): custos tls init uses it to make the certificates.');
  if (r.status !== 0) throw new CustosError('internal', `openssl could not ${what}: ${r.stderr.trim().split('\n').pop()}`);
}

export function registerTls(program: Command): void {
  const tls = program.command('tls').description('TLS for the HTTP API: certificates for a first deployment');
  tls
    .command('init')
    .description('Make a private CA and a server certificate (P-256) in DATA_DIR/tls; prints the [api] lines and the CA fingerprint for clients')
    .requiredOption('--data-dir <dir>', 'the vault directory')
    .option('--host <name...>', 'DNS names and IP addresses clients use to reach the vault (default: localhost 127.0.0.1 ::1)')
    .option('--days <n>', 'server certificate lifetime in days (the CA gets ten years)', '397')
    .option('--configure', 'also set [api] tls_cert and tls_key in DATA_DIR/custos.toml (the rest of the file stays as it is)')
    .option('--mutual', 'with --configure: also set [api] client_ca, so clients may authenticate by certificate (custos tls client)')
    .option('--listen <host:port>', 'with --configure: also set [api] host and port (0.0.0.0:8443 to serve every interface)')
    .option('--ca-from <dir>', "sign with an existing CA (its ca.pem and ca.key, e.g. another node's tls/) instead of making one: cosigners of a cluster share one CA")
    .action(async (o: { dataDir: string; host?: string[]; days: string; configure?: boolean; mutual?: boolean; listen?: string; caFrom?: string }) => {
      // Loaded when run, not with the command list; before anything is written, so a failed load leaves nothing behind.
      const { setApiSettings } = await import('../../migrate/config-file.js');
      const days = Number(o.days);
      if ((o.mutual || o.listen) && !o.configure) throw new CustosError('bad_request', '--mutual and --listen change custos.toml: give --configure too.');
      const listen = o.listen === undefined ? undefined : /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/.exec(o.listen);
      if (o.listen !== undefined && (!listen || Number(listen[2]) < 1 || Number(listen[2]) > 65535)) throw new CustosError('bad_request', `--listen ${o.listen} is not HOST:PORT (0.0.0.0:8443, [::]:8443).`);
      if (!Number.isInteger(days) || days < 1 || days > 3650) throw new CustosError('bad_request', '--days must be a whole number from 1 to 3650.');
      const hosts = o.host ?? ['localhost', '127.0.0.1', '::1'];
      for (const h of hosts) if (!isIP(h) && !/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/.test(h)) throw new CustosError('bad_request', `--host ${h} is neither a DNS name nor an IP address.`);
      const dataDir = resolve(o.dataDir);
      if (!existsSync(dataDir)) throw new CustosError('vault_not_found', `${dataDir} does not exist: run custos init first.`);
      const dir = join(dataDir, 'tls');
      if (existsSync(dir)) throw new CustosError('vault_exists', `${dir} exists: move it away to make new certificates (clients trust the old CA until you give them the new one).`);
      const caFrom = o.caFrom === undefined ? undefined : resolve(o.caFrom);
      if (caFrom && (!existsSync(join(caFrom, 'ca.pem')) || !existsSync(join(caFrom, 'ca.key')))) throw new CustosError('not_found', `--ca-from ${caFrom} must hold ca.pem and ca.key (a tls/ directory made by custos tls init).`);
      mkdirSync(dir, { mode: 0o700 });
      const f = (n: string) => join(dir, n);
      const caKey = caFrom ? join(caFrom, 'ca.key') : f('ca.key');
      try {
        const cn = hosts.find((h) => !isIP(h)) ?? hosts[0]!;
        // The CA's certificate is copied, never its key: this node cannot sign certificates.
        if (caFrom) writeFileSync(f('ca.pem'), readFileSync(join(caFrom, 'ca.pem')), { mode: 0o644 });
        else openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '3650', '-subj', `/CN=Custos CA ${new Date().toISOString().slice(0, 10)}`, '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], 'make the CA');
        openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', `/CN=${cn}`], 'make the server key');
        const san = hosts.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
        writeFileSync(f('server.ext'), `subjectAltName=${san}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`);
        openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', caKey, '-CAserial', f('ca.srl'), '-CAcreateserial', '-sha256', '-days', String(days), '-extfile', f('server.ext'), '-out', f('server.pem')], 'sign the server certificate');
        // The server presents its certificate and the CA's, so clients need only the CA.
        writeFileSync(f('server-chain.pem'), readFileSync(f('server.pem'), 'utf8') + readFileSync(f('ca.pem'), 'utf8'), { mode: 0o644 });
        for (const tmp of ['server.csr', 'server.ext', 'ca.srl']) rmSync(f(tmp), { force: true });
      } catch (e) {
        rmSync(dir, { recursive: true, force: true });
        throw e;
      }
      const ca = new X509Certificate(readFileSync(f('ca.pem')));
      out(`${caFrom ? `Server certificate signed by the CA of ${caFrom}` : 'CA and server certificate'} made in ${dir} (server certificate for ${hosts.join(', ')}, ${days} days).`);
      out('');
      if (o.configure) {
        const settings: Record<string, string | number> = {
          ...(listen ? { host: listen[1]!.replace(/^\[|\]$/g, ''), port: Number(listen[2]) } : {}),
          tls_cert: 'tls/server-chain.pem',
          tls_key: 'tls/server.key',
          ...(o.mutual ? { client_ca: 'tls/ca.pem' } : {}),
        };
        setApiSettings(join(dataDir, 'custos.toml'), settings);
        out(`Set in ${join(dataDir, 'custos.toml')} [api]: ${Object.entries(settings).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(', ')}. Restart custos serve to take it.`);
      } else {
        out('Add to custos.toml (or rerun with --configure), then restart (or, with TLS already on, kill -HUP to load a renewed pair):');
        out('  [api]');
        out('  host = "0.0.0.0"            # or the address clients reach');
        out('  tls_cert = "tls/server-chain.pem"');
        out('  tls_key = "tls/server.key"');
      }
      out('');
      out(`Give clients the CA file ${f('ca.pem')}; its SHA-256 fingerprint:`);
      out(`  ${ca.fingerprint256}`);
      out('(curl --cacert ca.pem …; the custos CLI: custos --ca ca.pem --addr https://HOST:PORT … or CUSTOS_CACERT=ca.pem; the SDK: { ca })');
      if (!caFrom) out(`The CA key ${f('ca.key')} signs client certificates for mutual TLS; keep it offline once they are made.`);
    });

  tls
    .command('client')
    .description('Make a client certificate for mutual TLS, signed by the CA of `tls init`; prints the command that binds it to a principal')
    .requiredOption('--data-dir <dir>', 'the vault directory (its tls/ca.key signs)')
    .requiredOption('--name <name>', 'the client (the certificate subject; bind it with custos tokens create --name NAME --certificate)')
    .requiredOption('--out <dir>', 'a new directory for NAME.key (0600) and NAME.pem, to hand to the client')
    .option('--days <n>', 'lifetime in days', '397')
    .action((o: { dataDir: string; name: string; out: string; days: string }) => {
      if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(o.name)) throw new CustosError('bad_request', '--name is 1–64 letters, digits, . _ @ -.');
      const days = Number(o.days);
      if (!Number.isInteger(days) || days < 1 || days > 3650) throw new CustosError('bad_request', '--days must be a whole number from 1 to 3650.');
      const ca = join(resolve(o.dataDir), 'tls');
      if (!existsSync(join(ca, 'ca.key'))) throw new CustosError('not_found', `${ca}/ca.key does not exist: run custos tls init first (or sign the client's certificate with your own CA).`);
      const dir = resolve(o.out);
      if (existsSync(dir)) throw new CustosError('bad_request', `${dir} exists; give a new directory.`);
      mkdirSync(dir, { mode: 0o700 });
      const f = (n: string) => join(dir, n);
      try {
        openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256', '-nodes', '-keyout', f(`${o.name}.key`), '-out', f('client.csr'), '-subj', `/CN=${o.name}`], 'make the client key');
        writeFileSync(f('client.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
        openssl(['x509', '-req', '-in', f('client.csr'), '-CA', join(ca, 'ca.pem'), '-CAkey', join(ca, 'ca.key'), '-CAserial', join(dir, 'ca.srl'), '-CAcreateserial', '-sha256', '-days', String(days), '-extfile', f('client.ext'), '-out', f(`${o.name}.pem`)], 'sign the client certificate');
        for (const tmp of ['client.csr', 'client.ext', 'ca.srl']) rmSync(f(tmp), { force: true });
      } catch (e) {
        rmSync(dir, { recursive: true, force: true });
        throw e;
      }
      const cert = new X509Certificate(readFileSync(f(`${o.name}.pem`)));
      out(`Client certificate for ${o.name} in ${dir} (${days} days): ${o.name}.pem and its key ${o.name}.key (0600). SHA-256:`);
      out(`  ${cert.fingerprint256}`);
      out('Bind it to a principal (it gets nothing until then):');
      out(`  custos tokens create --name ${o.name} --role signer --keys 'LABEL-GLOB' --certificate ${f(`${o.name}.pem`)}`);
      out(`and set [api] client_ca = "tls/ca.pem" (restart). The client: curl --cacert ca.pem --cert ${o.name}.pem --key ${o.name}.key https://HOST:8200/...`);
    });
}
