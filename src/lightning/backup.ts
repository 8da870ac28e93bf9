/**
 * Where Lightning state records go when they leave the machine, and how a backup is read
 * back. Every record is written to the target before the vault commits it (vault/lightning.ts),
 * so a version the node was told is stored is in the backup too.
 *
 * Layout, the same for every target: one record per file, at
 *   <node>/<object id>/<version, 20 decimal digits>-<record hash, first 16 hex digits>.rec
 * where <node> is the hex public key that signs the node's records (derived from the node's
 * seed, so a restore given only the seed finds its own records). Nothing is ever overwritten
 * or deleted: a record whose commit then failed (another writer won, the process died) stays
 * beside the one that was committed, and the check of a backup tells them apart by the chain. Records
 * are encrypted and signed (crypto/lightning-record.ts): a target needs no trust, only room.
 *
 * Targets: a directory (each file written whole, fsynced, then renamed into place), any HTTP
 * endpoint taking PUT (the same paths under its URL), or a PostgreSQL table.
 */
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readdir, rename } from 'node:fs/promises';
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

/** A record's file name: its version and the start of its hash (two records of one version never collide). */
export const recordName = (version: bigint, record: Uint8Array): string => `${versionName(version)}-${bytesToHex(recordHash(record)).slice(0, 16)}.rec`;

/** One stored record as a source lists it: the version and hash prefix it is filed under, and its bytes. */
export interface FiledRecord {
  filedAs: bigint;
  hashPrefix: string;
  bytes: Uint8Array;
}

/** A backup read back: each object of a node, and its records in version order, read one at a time. */
export interface BackupSource {
  readonly name: string;
  objects(node: string): AsyncIterable<{ objectId: string; records: AsyncIterable<FiledRecord> }>;
  /** One record by where it is filed (checked again by whoever reads it), or null. */
  record(node: string, objectId: string, version: bigint, hashPrefix: string): Promise<Uint8Array | null>;
  close(): Promise<void>;
}

export const versionName = (v: bigint): string => v.toString().padStart(20, '0');
/** No record is longer: the largest state, its envelope, the header and the signature. */
const MAX_RECORD = MAX_STATE_BYTES + 1024;
const RECORD_FILE_RE = /^(\d{20})-([0-9a-f]{16})\.rec$/;
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

  constructor(private readonly root: string) {
    this.name = `dir:${root}`;
  }

  async write(node: string, objectId: string, version: bigint, record: Uint8Array): Promise<void> {
    if (!NODE_RE.test(node) || !OBJECT_ID_RE.test(objectId)) throw new CustosError('internal', 'A backup path from an unchecked name.');
    const dir = join(this.root, node, objectId);
    try {
      const final = join(dir, recordName(version, record));
      const tmp = join(dir, `.${versionName(version)}.${randomBytes(6).toString('hex')}.tmp`);
      // The object's folder is made when the first write finds none (no lookup of it otherwise).
      const h = await open(tmp, 'wx', 0o600).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
        await mkdir(dir, { recursive: true, mode: 0o700 });
        // The new folders' own entries made durable too (a crash must not take a folder back).
        await syncDir(join(this.root, node));
        await syncDir(this.root);
        return open(tmp, 'wx', 0o600);
      });
      try {
        await h.writeFile(record);
        await h.sync();
      } finally {
        await h.close();
      }
      await rename(tmp, final);
      await syncDir(dir);
    } catch (e) {
      throw unavailable(this.name, e);
    }
  }

  async record(node: string, objectId: string, version: bigint, hashPrefix: string): Promise<Uint8Array | null> {
    if (!NODE_RE.test(node) || !OBJECT_ID_RE.test(objectId) || !/^[0-9a-f]{16}$/.test(hashPrefix)) return null;
    const v = versionName(version);
    return readRecordFile(join(this.root, node, objectId, `${v}-${hashPrefix}.rec`), objectId, v).catch(() => null);
  }

  async *objects(node: string): AsyncIterable<{ objectId: string; records: AsyncIterable<FiledRecord> }> {
    const base = join(this.root, node);
    let ids: string[];
    try {
      // Folders only (a file or a link where an object folder should be is not followed).
      ids = (await readdir(base, { withFileTypes: true })).filter((d) => d.isDirectory() && OBJECT_ID_RE.test(d.name)).map((d) => d.name).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CustosError('not_found', `The backup ${this.root} holds no records of this node (no ${node} folder): wrong seed, or wrong backup.`);
      throw e;
    }
    for (const objectId of ids) {
      const dir = join(base, objectId);
      const files = (await readdir(dir)).filter((f) => RECORD_FILE_RE.test(f)).sort();
      yield {
        objectId,
        records: (async function* () {
          for (const f of files) {
            const m = RECORD_FILE_RE.exec(f)!;
            yield { filedAs: BigInt(m[1]!), hashPrefix: m[2]!, bytes: await readRecordFile(join(dir, f), objectId, m[1]!) };
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
      status = await request('PUT', new URL(`${this.base}/${node}/${encodeURIComponent(objectId)}/${recordName(version, record)}`), record, this.headers, this.timeoutMs);
    } catch (e) {
      throw unavailable(this.name, e);
    }
    if (status < 200 || status > 299) throw unavailable(this.name, new Error(`HTTP ${status}`));
  }

  async close(): Promise<void> {}
}

/** One request; resolves with the status once the answer is read. */
function request(method: 'PUT', url: URL, body: Uint8Array, headers: Record<string, string>, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https : http).request(url, { method, headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length), ...headers }, timeout: timeoutMs }, (res) => {
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

/**
 * A record file, read safely from a directory nobody vouches for: a regular file (not a link,
 * a pipe or a device), no longer than any record, read with a bound.
 */
async function readRecordFile(path: string, objectId: string, version: string): Promise<Uint8Array> {
  const refuse = (why: string) => new CustosError('bad_request', `The backup is refused at object ${objectId}, version ${BigInt(version)}: ${why}.`, { tag: 'backup_tampered' });
  let h;
  try {
    h = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (e) {
    throw refuse(`its file cannot be opened as a plain file (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    const st = await h.stat();
    if (!st.isFile()) throw refuse('its file is not a plain file');
    if (st.size > MAX_RECORD) throw refuse(`${st.size} bytes, more than any record`);
    const buf = new Uint8Array(st.size);
    const { bytesRead } = await h.read(buf, 0, st.size, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await h.close();
  }
}


// ---------------------------------------------------------------------------------------------
// Checking a backup

/**
 * One object's records from a backup, checked one at a time in version order (a long history
 * is never in memory at once), and its latest. Every record must be signed by this node's
 * record key, filed under the version and hash it holds, and follow a record before it (its
 * previous-record hash is one of theirs); anything else is refused with a sentence naming the
 * object and the version.
 *
 * The records that something follows must form one chain, the object's history: two
 * branches that both go on are two histories (two vaults on one seed, or one restored from an
 * older copy that kept writing) and the backup is refused. A record nothing follows, off that
 * chain, is a write whose commit failed (another writer won, the vault died between the
 * backup and the commit): left out and counted. The latest is the newest record following the
 * chain's last record: a state the node produced on top of the committed history (a monitor
 * ahead of the node is the safe direction; reconcile settles it). Two newest such records of
 * one version are refused: which one was committed cannot be told. (A backup may start after
 * an object's first record, as one written after a restore does; a record missing from the
 * end cannot be seen here: reconciling with the node finds it.)
 */
export class HistoryCheck {
  /** Recent records by hash (hex): what a next record may follow. Bytes kept only while nothing follows it. */
  private readonly nodes = new Map<string, { version: bigint; parent: string | null; children: string[]; followed: boolean; record: LightningRecord | null; bytes: Uint8Array | null }>();
  private root: string | null = null;
  /** What the first record follows: a record that follows it too is the first's sibling (another first record). */
  private rootPrev: string | null = null;
  private readonly roots: string[] = [];
  /** The newest record something follows: the end of the history's chain. */
  private end: string | null = null;
  private endVersion: bigint | null = null;
  private last: bigint | null = null;
  count = 0;

  constructor(
    private readonly verifier: KeyObject,
    readonly objectId: string,
  ) {}

  add(filedAs: bigint, bytes: Uint8Array, hashPrefix?: string): void {
    const where = `object ${this.objectId}, version ${filedAs}`;
    const refuse = (tag: string, m: string) => new CustosError('bad_request', `The backup is refused at ${where}: ${m}`, { tag });
    if (this.last !== null && filedAs < this.last) throw refuse('backup_reordered', 'filed out of order.');
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
      const newest = this.last;
      const older = newest !== null && r.version < newest;
      throw refuse(older ? 'backup_rolled_back' : 'backup_reordered', `the record filed there is version ${r.version}${older ? `, older than version ${newest} before it (rolled back)` : ' (records moved or reordered)'}.`);
    }
    const hash = bytesToHex(recordHash(bytes));
    if (hashPrefix !== undefined && !hash.startsWith(hashPrefix)) throw refuse('backup_tampered', 'the record there is not the one its name says (renamed or replaced).');
    if (this.nodes.has(hash)) return; // the same record twice (a copy): nothing new
    const prev = bytesToHex(r.prevHash);
    let parentHash: string | null = null;
    if (this.root !== null && prev === this.rootPrev && !this.nodes.has(prev)) {
      // Another record following what the backup's first record follows: its sibling (an
      // orphan beside the object's first write, or beside the first record a new target got).
      this.roots.push(hash);
    } else if (this.root !== null) {
      const parent = this.nodes.get(prev);
      if (parent === undefined || parent.version >= r.version) {
        throw refuse('backup_chain', `it follows no record before it (its previous-record hash is ${prev.slice(0, 16)}…): a record between them is missing or was replaced.`);
      }
      parentHash = prev;
      if (!parent.followed) {
        // The history is one chain: a record newly followed must extend it at its end (the
        // newest record followed so far), or the backup holds two histories. (Checked on the
        // hashes alone: however far back the two branches part.)
        if (this.end !== null ? parent.parent !== this.end : parent.parent !== null) {
          throw refuse('backup_fork', `two histories go on (versions ${parent.version} and ${this.endVersion} both have records after them, on different branches): two vaults wrote this object from one seed, or one restored from an older copy kept writing. Find out which one the node's channel is at.`);
        }
        parent.followed = true;
        parent.bytes = null;
        parent.record = null;
        this.end = prev;
        this.endVersion = parent.version;
      }
      parent.children.push(hash);
    } else {
      this.root = hash;
      this.rootPrev = prev;
      this.roots.push(hash);
    }
    this.nodes.set(hash, { version: r.version, parent: parentHash, children: [], followed: false, record: r, bytes });
    if (this.nodes.size > HISTORY_WINDOW) {
      const oldest = this.nodes.keys().next().value!;
      if (oldest !== this.end) this.nodes.delete(oldest);
    }
    this.last = filedAs;
    this.count++;
  }

  /**
   * `prefer`: an operator's choice (a record hash, or its first 16 hex digits) among records
   * the backup cannot tell apart (below); it must name one of them.
   */
  result(prefer?: string): { latest: LightningRecord; bytes: Uint8Array; count: number; sideBranches: number } {
    if (this.root === null) throw new CustosError('bad_request', `The backup holds no record of object ${this.objectId}.`, { tag: 'backup_empty' });
    // The candidates: what follows the chain's last record (or the first record, alone).
    const end = this.end === null ? null : this.nodes.get(this.end)!;
    const candidates = (end ? end.children : this.roots).map((h) => this.nodes.get(h)).filter((n): n is NonNullable<typeof n> => n !== undefined && n.bytes !== null);
    const leaves = [...this.nodes.values()].filter((n) => !n.followed).length;
    let top = candidates.reduce((a, b) => (b.version > a.version ? b : a));
    // Two records on top of the history, nothing after either: one was committed and one was
    // not (a write refused, lost or cut by a crash), and the backup cannot tell which. The
    // operator, who can ask the node which state it holds, names one (--prefer).
    if (candidates.length > 1) {
      const named = (c: (typeof candidates)[number]) => `version ${c.version} (record ${bytesToHex(recordHash(c.bytes!)).slice(0, 16)})`;
      const chosen = prefer === undefined ? [] : candidates.filter((c) => bytesToHex(recordHash(c.bytes!)).startsWith(prefer));
      if (chosen.length !== 1) {
        throw new CustosError(
          'bad_request',
          `The backup is refused at object ${this.objectId}, version ${top.version}: ${candidates.length} records, ${candidates.map(named).join(' and ')}, follow ${end ? "the history's last record" : 'nothing the backup holds'} and nothing follows them (a write whose commit was refused, lost or cut by a crash left one); which was committed cannot be told from the backup. Ask the node which state it holds (reconcile), then restore with --prefer ${this.objectId}=<record>.`,
          { tag: 'backup_ambiguous' },
        );
      }
      top = chosen[0]!;
    }
    return { latest: top.record!, bytes: top.bytes!, count: this.count, sideBranches: leaves - 1 };
  }
}

/** How far back a record's predecessor is looked for (side branches are a record or two long). */
const HISTORY_WINDOW = 1024;

/** The whole history of one object at once (tests, small backups): sorted by filed version, then checked. */
export function checkHistory(verifier: KeyObject, objectId: string, records: Array<{ filedAs: bigint; bytes: Uint8Array }>): ReturnType<HistoryCheck['result']> {
  const h = new HistoryCheck(verifier, objectId);
  for (const r of [...records].sort((a, b) => (a.filedAs < b.filedAs ? -1 : a.filedAs > b.filedAs ? 1 : 0))) h.add(r.filedAs, r.bytes);
  return h.result();
}
