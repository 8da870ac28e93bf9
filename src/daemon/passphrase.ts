/**
 * Where the passphrase comes from, in order: --passphrase-file, $CUSTOS_PASSPHRASE, a
 * prompt on the terminal (no echo). It is kept as bytes and wiped by the caller.
 */
import { readFileSync } from 'node:fs';
import { CustosError } from '../core/errors.js';
import { utf8, wipe } from '../core/bytes.js';
import { assertPrivateFile } from './permissions.js';

function stripNewline(b: Uint8Array): Uint8Array {
  let end = b.length;
  while (end > 0 && (b[end - 1] === 0x0a || b[end - 1] === 0x0d)) end--;
  const out = Uint8Array.from(b.subarray(0, end));
  wipe(b);
  return out;
}

/** Reads a line from the terminal without echo (passphrases, operator shares). */
export async function prompt(question: string): Promise<Uint8Array> {
  const stdin = process.stdin;
  // Echo goes off before the prompt appears, so nothing typed early is ever shown.
  stdin.setRawMode(true);
  stdin.resume();
  process.stderr.write(question);
  const chunks: number[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        for (const c of d) {
          if (c === 0x0d || c === 0x0a) {
            stdin.off('data', onData);
            return resolve();
          }
          if (c === 0x03) {
            stdin.off('data', onData);
            return reject(new CustosError('bad_request', 'Interrupted.'));
          }
          if (c === 0x7f || c === 0x08) chunks.pop();
          else chunks.push(c);
        }
        d.fill(0);
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write('\n');
  }
  const out = Uint8Array.from(chunks);
  chunks.fill(0);
  return out;
}

export async function readPassphrase(opts: { file?: string; confirm?: boolean }): Promise<Uint8Array> {
  let pass: Uint8Array;
  if (opts.file) {
    // Like ssh with a private key: a passphrase others can read is refused, not used.
    assertPrivateFile(opts.file, 'The passphrase file');
    try {
      pass = stripNewline(new Uint8Array(readFileSync(opts.file)));
    } catch (e) {
      throw new CustosError('bad_request', `Cannot read the passphrase file ${opts.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}.`);
    }
  } else if (process.env.CUSTOS_PASSPHRASE !== undefined) {
    pass = utf8(process.env.CUSTOS_PASSPHRASE);
    // Not inherited by anything this process starts. (/proc/PID/environ keeps the original:
    // prefer --passphrase-file on shared machines.)
    delete process.env.CUSTOS_PASSPHRASE;
  } else if (process.stdin.isTTY) {
    pass = await prompt('Vault passphrase: ');
    if (opts.confirm) {
      const again = await prompt('Repeat passphrase: ');
      const same = again.length === pass.length && again.every((b, i) => b === pass[i]);
      wipe(again);
      if (!same) {
        wipe(pass);
        throw new CustosError('bad_request', 'The two passphrases differ; nothing was created.');
      }
    }
  } else {
    throw new CustosError('bad_request', 'No passphrase: give --passphrase-file FILE, set CUSTOS_PASSPHRASE, or run on a terminal to be prompted.');
  }
  if (pass.length === 0) throw new CustosError('bad_request', 'The passphrase is empty.');
  if (opts.confirm && pass.length < 8) {
    wipe(pass);
    throw new CustosError('bad_request', 'Choose a passphrase of at least 8 characters.');
  }
  return pass;
}
