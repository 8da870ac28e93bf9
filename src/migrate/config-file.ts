/**
 * Adding an entry to `custos.toml` without disturbing the rest of it: the new table is
 * appended as text (comments and layout stay), the result is validated as the daemon would
 * read it before it replaces the file, and the replacement is atomic (a 0600 temporary file
 * in the same directory, fsynced, renamed, the directory fsynced). A file that would not load
 * is never written.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { loadConfig, type PrivvalVersion, type ServeConfig } from '../daemon/config.js';

export interface NewPrivvalEntry {
  name: string;
  chainId: string;
  address: string;
  key: string;
  identityKey?: string;
  dialect: PrivvalVersion;
  comment?: string;
}

const q = (v: string) => JSON.stringify(v);

export function privvalToml(e: NewPrivvalEntry): string {
  return [
    '',
    ...(e.comment ? e.comment.split('\n').map((l) => `# ${l}`) : []),
    '[[privval]]',
    `name = ${q(e.name)}`,
    `chain_id = ${q(e.chainId)}`,
    `address = ${q(e.address)}`,
    `key = ${q(e.key)}`,
    ...(e.identityKey ? [`identity_key = ${q(e.identityKey)}`] : []),
    `dialect = ${q(e.dialect)}`,
    '',
  ].join('\n');
}

/** Appends a [[privval]] entry; refuses a name or address already used. Returns the new config. */
export function addPrivvalEntry(path: string, e: NewPrivvalEntry): ServeConfig {
  checkPrivvalEntry(path, e);
  const before = existsSync(path) ? readFileSync(path, 'utf8') : '';
  const text = (before === '' || before.endsWith('\n') ? before : before + '\n') + privvalToml(e);
  return replaceFile(path, text);
}

/** Whether the entry could be added (the file loads; its name and node are free); throws why not. */
export function checkPrivvalEntry(path: string, e: Pick<NewPrivvalEntry, 'name' | 'address'>): void {
  const current = loadConfig(path);
  const clash = current.privval.find((p) => p.name === e.name);
  if (clash) throw new CustosError('config_invalid', `${path} already has a [[privval]] named "${e.name}" (chain ${clash.chainId}); pick another --name, or remove that entry first.`);
  const sameNode = current.privval.find((p) => p.address === e.address);
  if (sameNode) throw new CustosError('config_invalid', `${path}: [[privval]] "${sameNode.name}" already signs for the node at ${e.address}; two signers for one node is how double signs happen.`);
}

function replaceFile(path: string, text: string): ServeConfig {
  const tmp = join(dirname(path), `.${randomBytes(6).toString('hex')}.custos.toml.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  let cfg: ServeConfig;
  try {
    cfg = loadConfig(tmp, true);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new CustosError('config_invalid', `The new entry would make ${path} invalid, so it was not written: ${(err as Error).message.replace(tmp, path)}`);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return cfg;
}
