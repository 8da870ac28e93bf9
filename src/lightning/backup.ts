/**
 * Where Lightning state records go when they leave the machine, and how a backup is read
 * back. Every record is written to the target before the vault commits it (vault/lightning.ts),
 * so a version the node was told is stored is in the backup too.
 *
 * Layout, the same for every target: one record per file, at
 *   <node>/<object id>/<version, 20 decimal digits>.rec
 * where <node> is the hex x-only public key that signs the node's records (derived from the
 * node's seed, so a restore given only the seed finds its own records). Records are
 * encrypted and signed (crypto/lightning-record.ts): a target needs no trust, only room.
 *
 * Targets: a directory (each file written whole, fsynced, then renamed into place), any HTTP
 * endpoint taking PUT (the same paths under its URL), or a PostgreSQL table.
 */
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes, type KeyObject } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { CustosError } from '../core/errors.js';
import { bytesToHex } from '../core/bytes.js';
import { decodeRecord, MAX_STATE_BYTES, OBJECT_ID_RE, recordHash, sameHash, verifyRecord, type LightningRecord } from '../crypto/lightning-record.js';

export interface BackupTarget {
  /** For messages and metrics: `dir:/path`, `https://host/...`, `postgres://host/db`. */
  readonly name: string;
  /** Writes one record durably, or throws `storage_unavailable` with a sentence. */
  write(node: string, objectId: string, version: bigint, record: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** A backup read back: each object of a node, and its records in version order, read one at a time. */
export interface BackupSource {
  readonly name: string;
  objects(node: string): AsyncIterable<{ objectId: string; records: AsyncIterable<{ filedAs: bigint; bytes: Uint8Array }> }>;
  close(): Promise<void>;
}

export const versionName = (v: bigint): string => v.toString().padStart(20, '0');
/** No record is longer: the largest state, its envelope, the header and the signature. */
const MAX_RECORD = MAX_STATE_BYTES + 1024;
const VERSION_FILE_RE = /^(\d{20})\.rec$/;
const NODE_RE = /^[0-9a-f]{64}$/;

function unavailable(target: string, e: unknown): CustosError {
  return new CustosError('storage_unavailable', `The Lightning backup target ${target} could not be written (${(e as Error).message.slice(0, 200)}); nothing was stored. Fix the target and retry the update.`, { tag: 'backup_unavailable', cause: e });
}

/** Fsyncs a directory so a rename in it is durable. */
async function syncDir(path: string): Promise<void> {
  const h = await open(path, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

export class DirectoryTarget implements BackupTarget, BackupSource {
  readonly name: string;
  private readonly made = new Set<string>();

  constructor(private readonly root: string) {
    this.name = `dir:${root}`;
  }

  async write(node: string, objectId: string, version: bigint, record: Uint8Array): Promise<void> {
    if (!NODE_RE.test(node) || !OBJECT_ID_RE.test(objectId)) throw new CustosError('internal', 'A backup path from an unchecked name.');
    const dir = join(this.root, node, objectId);
    try {
      if (!this.made.has(dir)) {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        this.made.add(dir);
      }
      const final = join(dir, `${versionName(version)}.rec`);
      const tmp = join(dir, `.${versionName(version)}.${randomBytes(6).toString('hex')}.tmp`);
      const h = await open(tmp, 'wx', 0o600);
      try {
        await h.writeFile(record);
        await h.sync();
      } finally {
        await h.close();
      }
      await rename(tmp, final);
      await syncDir(dir);
    } catch (e) {
      this.made.delete(dir);
      throw unavailable(this.name, e);
    }
  }

  async *objects(node: string): AsyncIterable<{ objectId: string; records: AsyncIterable<{ filedAs: bigint; bytes: Uint8Array }> }> {
    const base = join(this.root, node);
    let ids: string[];
    try {
      ids = (await readdir(base)).filter((n) => OBJECT_ID_RE.test(n)).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CustosError('not_found', `The backup ${this.root} holds no records of this node (no ${node} folder): wrong seed, or wrong backup.`);
      throw e;
    }
    for (const objectId of ids) {
      const dir = join(base, objectId);
      const files = (await readdir(dir)).filter((f) => VERSION_FILE_RE.test(f)).sort();
      yield {
        objectId,
        records: (async function* () {
          for (const f of files) {
            const path = join(dir, f);
            // A file larger than any record is not read into memory.
            const size = (await stat(path)).size;
            yield { filedAs: BigInt(VERSION_FILE_RE.exec(f)![1]!), bytes: size > MAX_RECORD ? new Uint8Array(MAX_RECORD + 1) : new Uint8Array(await readFile(path)) };
          }
        })(),
      };
    }
  }

  async close(): Promise<void> {}
}

/** Any endpoint that stores what is PUT to it (an object store, a WebDAV folder, a small service). */
export class HttpTarget implements BackupTarget {
  readonly name: string;

  constructor(
    private readonly base: string,
    private readonly headers: Record<string, string> = {},
    private readonly timeoutMs = 10_000,
  ) {
    const u = new URL(base);
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname))) {
      throw new CustosError('config_invalid', `A Lightning backup URL is https:// (or http:// on loopback): ${u.protocol}//${u.host}.`);
    }
    this.name = `${u.protocol}//${u.host}${u.pathname}`;
    this.base = base.replace(/\/+$/, '');
  }

  async write(node: string, objectId: string, version: bigint, record: Uint8Array): Promise<void> {
    if (!NODE_RE.test(node) || !OBJECT_ID_RE.test(objectId)) throw new CustosError('internal', 'A backup path from an unchecked name.');
    let status = 0;
    try {
      status = await put(new URL(`${this.base}/${node}/${encodeURIComponent(objectId)}/${versionName(version)}.rec`), record, this.headers, this.timeoutMs);
    } catch (e) {
      throw unavailable(this.name, e);
    }
    if (status < 200 || status > 299) throw unavailable(this.name, new Error(`HTTP ${status}`));
  }

  async close(): Promise<void> {}
}

/** One PUT; resolves with the status once the answer is read. */
function put(url: URL, body: Uint8Array, headers: Record<string, string>, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https : http).request(url, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length), ...headers }, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Parses `[lightning] backup = "..."`: a directory, an https:// URL, or a postgres:// URL. */
export async function openBackupTarget(spec: string, opts: { headers?: Record<string, string> } = {}): Promise<BackupTarget> {
  if (/^https?:\/\//.test(spec)) return new HttpTarget(spec, opts.headers ?? {});
  if (/^postgres(ql)?:\/\//.test(spec)) {
    const { PostgresBackup } = await import('./backup-postgres.js');
    return PostgresBackup.open(spec);
  }
  return new DirectoryTarget(spec.replace(/^dir:/, ''));
}

export async function openBackupSource(spec: string): Promise<BackupSource> {
  if (/^https?:\/\//.test(spec)) throw new CustosError('bad_request', 'An HTTP backup endpoint is written to, not listed: copy its files into a directory (same layout) and restore from that.');
  if (/^postgres(ql)?:\/\//.test(spec)) {
    const { PostgresBackup } = await import('./backup-postgres.js');
    return PostgresBackup.open(spec);
  }
  return new DirectoryTarget(spec.replace(/^dir:/, ''));
}

/** Removes a directory target's leftovers of interrupted writes (never a record). */
export async function cleanTemporary(dir: string): Promise<void> {
  for (const f of await readdir(dir).catch(() => [] as string[])) if (f.endsWith('.tmp')) await rm(join(dir, f), { force: true });
}

// ---------------------------------------------------------------------------------------------
// Checking a backup

/**
 * One object's records from a backup, checked one at a time in version order (a long history
 * is never in memory at once), and its latest: every record signed by this node's record key,
 * filed under the version it holds, versions strictly increasing, each chained to the one
 * before. Anything else is refused with a sentence naming the object and the version. (A
 * backup may start after an object's first record: one written by a vault restored from an
 * older backup does. A record missing from the end cannot be seen here: reconciling with the
 * node finds it.)
 */
export class HistoryCheck {
  private prev: { record: LightningRecord; bytes: Uint8Array } | null = null;
  count = 0;

  constructor(
    private readonly verifier: KeyObject,
    readonly objectId: string,
  ) {}

  add(filedAs: bigint, bytes: Uint8Array): void {
    const where = `object ${this.objectId}, version ${filedAs}`;
    const refuse = (tag: string, m: string) => new CustosError('bad_request', `The backup is refused at ${where}: ${m}`, { tag });
    if (this.prev && filedAs <= this.prev.record.version) throw refuse('backup_reordered', 'filed out of order.');
    if (bytes.length > MAX_RECORD) throw refuse('backup_tampered', `${bytes.length} bytes, more than any record.`);
    let r: LightningRecord;
    try {
      r = decodeRecord(bytes);
    } catch (e) {
      throw refuse('backup_tampered', `it is not a record (${(e as Error).message}).`);
    }
    if (r.objectId !== this.objectId) throw refuse('backup_tampered', `the record there is object ${r.objectId}'s (moved between objects).`);
    if (!verifyRecord(this.verifier, r)) throw refuse('backup_tampered', "its signature does not verify (altered, or not written by this seed's vault).");
    if (r.version !== filedAs) {
      const older = this.prev && r.version <= this.prev.record.version;
      throw refuse(older ? 'backup_rolled_back' : 'backup_reordered', `the record filed there is version ${r.version}${older ? `, not newer than version ${this.prev!.record.version} before it (rolled back)` : ' (records moved or reordered)'}.`);
    }
    if (this.prev && !sameHash(r.prevHash, recordHash(this.prev.bytes))) {
      throw refuse('backup_chain', `it does not follow version ${this.prev.record.version} (its previous-record hash is ${bytesToHex(r.prevHash).slice(0, 16)}…): a record between them is missing or was replaced.`);
    }
    this.prev = { record: r, bytes };
    this.count++;
  }

  result(): { latest: LightningRecord; bytes: Uint8Array; count: number } {
    if (!this.prev) throw new CustosError('bad_request', `The backup holds no record of object ${this.objectId}.`, { tag: 'backup_empty' });
    return { latest: this.prev.record, bytes: this.prev.bytes, count: this.count };
  }
}

/** The whole history of one object at once (tests, small backups): sorted by filed version, then checked. */
export function checkHistory(verifier: KeyObject, objectId: string, records: Array<{ filedAs: bigint; bytes: Uint8Array }>): { latest: LightningRecord; bytes: Uint8Array; count: number } {
  const h = new HistoryCheck(verifier, objectId);
  for (const r of [...records].sort((a, b) => (a.filedAs < b.filedAs ? -1 : a.filedAs > b.filedAs ? 1 : 0))) h.add(r.filedAs, r.bytes);
  return h.result();
}
