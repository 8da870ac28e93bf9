/** Keys in a running vault, over the HTTP API: list, show, create, import, adopt, generate, set-purpose, disable/enable, destroy, export (and the recipient side of an export). */
import { Command, Option } from 'commander';
import { writeFileSync } from 'node:fs';
import { CustosError } from '../../core/errors.js';
import { bytesToHex, hexToBytes, wipe } from '../../core/bytes.js';
import { printable } from '../../core/text.js';
import { formatTable } from '../table.js';
import { algorithmOption, clientFrom, out, printKey, purposeOption, readInput, withApi } from '../common.js';

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('Manage keys in a running vault (over the HTTP API)');

  withApi(
    keys
      .command('list')
      .description('List keys (in creation order; with --page-size, page by page in label order, for vaults with many keys)')
      .option('--page-size <n>', 'read the keys this many at a time, printing as they come (label order)'),
  ).action(async (o) => {
    const c = clientFrom(o);
    const row = (k: Awaited<ReturnType<typeof c.listKeys>>[number]) => [k.id, k.label, k.algorithm, k.corrupt ? 'CORRUPT' : k.state, String(k.exportable)];
    if (o.pageSize !== undefined) {
      const n = Number(o.pageSize);
      if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new CustosError('bad_request', '--page-size is 1 to 10000.');
      // Streamed: one page in memory at a time (JSON lines with --json).
      for await (const k of c.keys(n)) out(o.json ? JSON.stringify(k) : row(k).join('  '));
      return;
    }
    const list = await c.listKeys();
    if (o.json) return out(JSON.stringify(list, null, 2));
    out(formatTable(['ID', 'LABEL', 'ALGORITHM', 'STATE', 'EXPORTABLE'], list.map(row)));
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

  withApi(
    keys
      .command('import-public')
      .description("Import a bare public key (a counterparty's, an approver's) as a key that verifies and never signs")
      .requiredOption('--label <label>', 'unique label')
      .requiredOption('--in <file>', 'PEM public key, DER SubjectPublicKeyInfo, or a raw point (- for stdin)')
      .addOption(new Option('--format <format>', 'default: spki-pem for PEM text, spki-der for DER, else raw').choices(['spki-pem', 'spki-der', 'raw', 'raw-hex']))
      .addOption(new Option('--algorithm <alg>', 'needed for raw: ed25519, secp256k1 (33 or 65 bytes), secp256k1-bip340 (32-byte x-only), p256 (33 or 65 bytes)').choices(['ed25519', 'secp256k1', 'secp256k1-bip340', 'p256', 'rsa-2048', 'rsa-3072', 'rsa-4096']))
      .option('--tags <tags>', 'comma-separated tags (for policies and principals\' scopes)'),
  ).action(async (o) => {
    let bytes = readInput(o.in);
    const text = Buffer.from(bytes).toString('utf8');
    let format: string = o.format ?? (text.includes('-----BEGIN') ? 'spki-pem' : /^[0-9a-fA-F]+\s*$/.test(text) ? 'raw-hex' : bytes[0] === 0x30 && bytes.length > 40 ? 'spki-der' : 'raw');
    if (format === 'raw-hex') {
      bytes = new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
      format = 'raw';
    }
    const material = format === 'spki-pem' ? text : Buffer.from(bytes).toString('base64');
    const tags = typeof o.tags === 'string' ? o.tags.split(',').map((t: string) => t.trim()).filter(Boolean) : undefined;
    printKey(await clientFrom(o).importPublicKey({ label: o.label, format: format as 'spki-pem' | 'spki-der' | 'raw', material, ...(o.algorithm ? { algorithm: o.algorithm } : {}), ...(tags ? { tags } : {}) }), !!o.json);
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
    .action(async (o: { kem: 'x25519' | 'secp256k1'; secretOut: string }) => {
      const { x25519 } = await import('@noble/curves/ed25519.js');
      const { secp256k1 } = await import('@noble/curves/secp256k1.js');
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
    .action(async (o: { in: string; secret: string; out: string }) => {
      const { decodeExportedKey, eciesDecrypt } = await import('../../crypto/ecies.js');
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
}
