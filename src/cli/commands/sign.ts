/** `sign` and `verify` with a vault key, over the HTTP API. */
import { Command, Option } from 'commander';
import { writeFileSync } from 'node:fs';
import { CustosError } from '../../core/errors.js';
import { base64ToBytes } from '../../core/bytes.js';
import { EXIT } from '../exit.js';
import { clientFrom, out, readInput, withApi } from '../common.js';

export function registerSign(program: Command): void {

  const signOpts = (c: Command) =>
    withApi(c)
      .requiredOption('--key <key>', 'key id or label')
      .requiredOption('--in <file>', 'message (or digest with --digest) to sign; - for stdin')
      .option('--digest', 'the input is a pre-computed digest (ECDSA keys)')
      .addOption(new Option('--encoding <enc>', 'ECDSA signature encoding').choices(['der', 'raw']))
      .addOption(new Option('--hash <hash>', 'hash for ECDSA/RSA').choices(['sha256', 'sha384', 'sha512']))
      .addOption(new Option('--padding <padding>', 'RSA padding').choices(['pkcs1', 'pss']));

  signOpts(program.command('sign').description('Sign a file with a vault key; prints the signature in base64 (or writes --out)'))
    .option('--out <file>', 'write the binary signature here instead of printing base64')
    .action(async (o) => {
      const data = readInput(o.in);
      const r = await clientFrom(o).sign(o.key, { ...(o.digest ? { digest: data } : { message: data }), encoding: o.encoding, hash: o.hash, padding: o.padding });
      if (o.out) writeFileSync(o.out, r.signature);
      if (o.json) out(JSON.stringify({ key_id: r.keyId, algorithm: r.algorithm, encoding: r.encoding, signature: Buffer.from(r.signature).toString('base64'), request_id: r.requestId }));
      else if (!o.out) out(Buffer.from(r.signature).toString('base64'));
    });

  signOpts(program.command('verify').description('Verify a signature with a vault key; exit 0 if valid, 1 if not'))
    .option('--signature <base64>', 'the signature in base64')
    .option('--signature-file <file>', 'the binary signature')
    .action(async (o) => {
      if (!o.signature === !o.signatureFile) throw new CustosError('bad_request', 'Give exactly one of --signature BASE64 or --signature-file FILE.');
      const signature = o.signatureFile ? readInput(o.signatureFile) : base64ToBytes(o.signature, 'signature');
      const data = readInput(o.in);
      const valid = await clientFrom(o).verify(o.key, { ...(o.digest ? { digest: data } : { message: data }), signature, encoding: o.encoding, hash: o.hash, padding: o.padding });
      out(o.json ? JSON.stringify({ valid }) : valid ? 'valid' : 'INVALID');
      if (!valid) process.exitCode = EXIT.checkFailed;
    });

}
