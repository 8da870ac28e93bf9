/**
 * Adding an entry to `custos.toml` without disturbing the rest of it: the new table is
 * appended as text (comments and layout stay), the result is validated as the daemon would
 * read it before it replaces the file, and the replacement is atomic (a 0600 temporary file
 * in the same directory, fsynced, renamed, the directory fsynced). A file that would not load
 * is never written. The file keeps its owner and mode (the daemon must still read it when
 * setup runs as root), a symlink is followed rather than replaced, and two writers take turns
 * through an O_EXCL lock file beside it.
 */
import { chownSync, closeSync, existsSync, fchmodSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { loadConfig, type ServeConfig } from '../daemon/config.js';
import type { PrivvalVersion } from '../core/privval-version.js';
import { parsePrivvalAddress } from '../frontends/privval/address.js';

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
  return editLocked(path, 'custos privval setup', (target) => {
    if (!checkPrivvalEntry(target, e)) return null;
    const before = existsSync(target) ? readFileSync(target, 'utf8') : '';
    return (before === '' || before.endsWith('\n') ? before : before + '\n') + privvalToml(e);
  });
}

/** Appends `[cluster]` (this node as a cosigner); refuses a file that has one. */
export function addClusterSection(path: string, c: { name: string; clientCert: string; clientKey: string; ca?: string }): ServeConfig {
  return editLocked(path, 'custos cluster init', (target) => {
    const before = existsSync(target) ? readFileSync(target, 'utf8') : '';
    if (loadConfig(target).cluster) throw new CustosError('config_invalid', `${path} already has a [cluster] section.`);
    const lines = ['', '# This node as one cosigner among others (custos cluster).', '[cluster]', `name = ${q(c.name)}`, `client_cert = ${q(c.clientCert)}`, `client_key = ${q(c.clientKey)}`, ...(c.ca ? [`ca = ${q(c.ca)}`] : []), ''];
    return (before === '' || before.endsWith('\n') ? before : before + '\n') + lines.join('\n');
  });
}

/** Appends a `[[cluster.peer]]`; the result must load (a name or certificate used twice does not). */
export function addClusterPeer(path: string, p: { name: string; url: string; certificateSha256: string }): ServeConfig {
  return editLocked(path, 'custos cluster add-peer', (target) => {
    const before = existsSync(target) ? readFileSync(target, 'utf8') : '';
    if (!loadConfig(target).cluster) throw new CustosError('config_invalid', `${path} has no [cluster] section: run custos cluster init first.`);
    const lines = ['', '[[cluster.peer]]', `name = ${q(p.name)}`, `url = ${q(p.url)}`, `certificate_sha256 = ${q(p.certificateSha256)}`, ''];
    return (before === '' || before.endsWith('\n') ? before : before + '\n') + lines.join('\n');
  });
}

/**
 * Sets keys of the `[api]` table (`host`, `port`, `tls_cert`, ...): a line already there, or its
 * commented-out example, is replaced in place, a new one goes after the table's last setting
 * (the table is added at the end when the file has none); everything else stays as it was.
 */
export function setApiSettings(path: string, settings: Record<string, string | number>): ServeConfig {
  return editLocked(path, 'custos tls init --configure', (target) => {
    const lines = (existsSync(target) ? readFileSync(target, 'utf8') : '').split('\n');
    const value = (v: string | number) => (typeof v === 'number' ? String(v) : q(v));
    let start = lines.findIndex((l) => /^\s*\[api\]\s*(#.*)?$/.test(l));
    if (start < 0) {
      if (lines.length > 0 && lines[lines.length - 1] !== '') lines.push('');
      lines.push('[api]');
      start = lines.length - 1;
    }
    let end = lines.findIndex((l, i) => i > start && /^\s*\[/.test(l));
    if (end < 0) end = lines.length;
    for (const [k, v] of Object.entries(settings)) {
      const line = `${k} = ${value(v)}`;
      const inTable = (re: RegExp) => lines.findIndex((l, i) => i > start && i < end && re.test(l));
      // The key's line, else its commented-out example (`# tls_cert = ...`), else after the table's last setting.
      let at = inTable(new RegExp(`^\\s*${k}\\s*=`));
      if (at < 0) at = inTable(new RegExp(`^\\s*#\\s*${k}\\s*=`));
      if (at >= 0) lines[at] = line;
      else {
        let after = start;
        for (let i = start + 1; i < end; i++) if (/^\s*[A-Za-z_]/.test(lines[i]!)) after = i;
        lines.splice(after + 1, 0, line);
        end++;
      }
    }
    return lines.join('\n');
  });
}

/** Runs one edit of the file under its lock; `edit` returns the new text, or null for no change. */
function editLocked(path: string, who: string, edit: (target: string) => string | null): ServeConfig {
  const target = existsSync(path) ? realpathSync(path) : path;
  const lock = `${target}.lock`;
  let fd: number;
  try {
    fd = openSync(lock, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new CustosError('config_invalid', `${lock} exists: another ${who} is editing ${path} (or one was killed; then remove the lock file).`);
    throw err;
  }
  closeSync(fd);
  try {
    const text = edit(target);
    if (text === null) return loadConfig(target);
    return replaceFile(target, text, path);
  } finally {
    rmSync(lock, { force: true });
  }
}

/** host:port (or the socket path) of a node address, without a node id: two spellings of one node compare equal. */
function nodeOf(address: string): string {
  try {
    const ep = parsePrivvalAddress(address);
    if (ep.kind === 'unix') return `unix:${ep.path}`;
    const host = ep.host.toLowerCase() === 'localhost' || ep.host === '::1' ? '127.0.0.1' : ep.host.toLowerCase();
    return `tcp:${host}:${ep.port}`;
  } catch {
    return address;
  }
}

/** Whether the entry could be added (the file loads; its name and node are free); throws why not. */
/**
 * Whether the entry can be added: false when this very entry is already there (a rerun after
 * the file was written); throws why not when another entry has its name or its node.
 */
export function checkPrivvalEntry(path: string, e: Pick<NewPrivvalEntry, 'name' | 'address' | 'chainId' | 'key'>): boolean {
  const current = loadConfig(path);
  const clash = current.privval.find((p) => p.name === e.name);
  if (clash && clash.chainId === e.chainId && clash.key === e.key && nodeOf(clash.address) === nodeOf(e.address)) return false;
  if (clash) throw new CustosError('config_invalid', `${path} already has a [[privval]] named "${e.name}" (chain ${clash.chainId}); pick another --name, or remove that entry first.`);
  const sameNode = current.privval.find((p) => nodeOf(p.address) === nodeOf(e.address));
  if (sameNode) throw new CustosError('config_invalid', `${path}: [[privval]] "${sameNode.name}" already signs for the node at ${e.address}; two signers for one node is how double signs happen.`);
  return true;
}

function replaceFile(path: string, text: string, shown: string): ServeConfig {
  const tmp = join(dirname(path), `.${randomBytes(6).toString('hex')}.custos.toml.tmp`);
  const old = existsSync(path) ? statSync(path) : undefined;
  let renamed = false;
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, text);
      if (old) {
        // The same owner, and the same mode without group/other write (it holds no secret).
        if (process.getuid?.() === 0) chownSync(tmp, old.uid, old.gid);
        else if (process.getgid?.() !== old.gid) {
          // A file shared through its group (the daemon's): keep the group, or do not write.
          try {
            chownSync(tmp, -1, old.gid);
          } catch {
            throw new CustosError('config_invalid', `${shown} belongs to group ${old.gid}, which this user cannot give the new file: run this as the file's owner in that group, or as root.`);
          }
        }
        fchmodSync(fd, old.mode & 0o755);
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    let cfg: ServeConfig;
    try {
      cfg = loadConfig(tmp, true);
    } catch (err) {
      throw new CustosError('config_invalid', `The change would make ${shown} invalid, so it was not written: ${(err as Error).message.replace(tmp, shown)}`);
    }
    renameSync(tmp, path);
    renamed = true;
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    return cfg;
  } finally {
    if (!renamed) rmSync(tmp, { force: true });
  }
}
