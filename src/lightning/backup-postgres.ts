/**
 * A PostgreSQL table as a Lightning backup target (and source): one row per record, keyed by
 * node, object and version, in a database of its own (not the vault's store: a backup lives
 * elsewhere). The layout mirrors the directory target's paths.
 */
import pg from 'pg';
import { CustosError } from '../core/errors.js';
import { parsePostgresUrl } from '../store/postgres-url.js';
import type { BackupSource, BackupTarget, FiledRecord } from './backup.js';
import { versionName } from './backup.js';
import { bytesToHex } from '../core/bytes.js';
import { MAX_STATE_BYTES, recordHash } from '../crypto/lightning-record.js';

const hashPrefix = (record: Uint8Array): string => bytesToHex(recordHash(record)).slice(0, 16);

const SCHEMA = `CREATE TABLE IF NOT EXISTS custos_lightning_backup (
  node TEXT COLLATE "C" NOT NULL,
  object_id TEXT COLLATE "C" NOT NULL,
  version TEXT COLLATE "C" NOT NULL,
  hash TEXT COLLATE "C" NOT NULL,
  record BYTEA NOT NULL,
  PRIMARY KEY (node, object_id, version, hash)
)`;

/** Rows read per statement when reading a backup back. */
const PAGE = 1000;
/** Records per statement (each up to a few megabytes). */
const RECORD_PAGE = 50;
const MAX_RECORD_BYTES = MAX_STATE_BYTES + 1024;

export class PostgresBackup implements BackupTarget, BackupSource {
  readonly name: string;
  private ready: Promise<void> | null = null;

  private constructor(private readonly pool: pg.Pool, name: string) {
    this.name = name;
    // An idle connection dropped by the server is not a crash.
    pool.on('error', () => undefined);
  }

  static open(url: string): PostgresBackup {
    const loc = parsePostgresUrl(url);
    const t = loc.targets[0]!;
    const pool = new pg.Pool({ host: t.host, port: t.port, user: loc.user, password: loc.password, database: loc.database, max: 4, connectionTimeoutMillis: 10_000 });
    return new PostgresBackup(pool, `postgres://${t.host}:${t.port}/${loc.database ?? ''}`);
  }

  private schema(): Promise<void> {
    this.ready ??= this.pool.query(SCHEMA).then(
      () => undefined,
      (e: unknown) => {
        this.ready = null;
        throw e;
      },
    );
    return this.ready;
  }

  async write(node: string, objectId: string, version: bigint, record: Uint8Array): Promise<void> {
    try {
      await this.schema();
      await this.pool.query('INSERT INTO custos_lightning_backup (node, object_id, version, hash, record) VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING', [node, objectId, versionName(version), hashPrefix(record), Buffer.from(record)]);
    } catch (e) {
      throw new CustosError('storage_unavailable', `The Lightning backup target ${this.name} could not be written (${(e as Error).message.slice(0, 200)}); nothing was stored. Fix the target and retry the update.`, { tag: 'backup_unavailable', cause: e });
    }
  }

  async record(node: string, objectId: string, version: bigint, hash: string): Promise<Uint8Array | null> {
    const r = await this.pool.query<{ record: Buffer }>('SELECT record FROM custos_lightning_backup WHERE node = $1 AND object_id = $2 AND version = $3 AND hash = $4', [node, objectId, versionName(version), hash]);
    return r.rows[0] ? new Uint8Array(r.rows[0].record) : null;
  }

  async *objects(node: string): AsyncIterable<{ objectId: string; records: AsyncIterable<FiledRecord> }> {
    await this.schema();
    let any = false;
    for (let after = ''; ; ) {
      const ids = await this.pool.query<{ object_id: string }>('SELECT DISTINCT object_id FROM custos_lightning_backup WHERE node = $1 AND object_id > $2 ORDER BY object_id LIMIT $3', [node, after, PAGE]);
      for (const { object_id: objectId } of ids.rows) {
        any = true;
        yield { objectId, records: this.records(node, objectId) };
      }
      if (ids.rows.length < PAGE) break;
      after = ids.rows[ids.rows.length - 1]!.object_id;
    }
    if (!any) throw new CustosError('not_found', `The backup ${this.name} holds no records of this node: wrong seed, or wrong backup.`);
  }

  /** One object's records in version order, a page at a time. */
  private async *records(node: string, objectId: string): AsyncIterable<FiledRecord> {
    for (let after: [string, string] = ['', '']; ; ) {
      const r = await this.pool.query<{ version: string; hash: string; record: Buffer | null }>(
        // A row larger than any record is not read (its bytes stay in the database).
        'SELECT version, hash, CASE WHEN octet_length(record) > $6 THEN NULL ELSE record END AS record FROM custos_lightning_backup WHERE node = $1 AND object_id = $2 AND (version, hash) > ($3, $4) ORDER BY version, hash LIMIT $5',
        [node, objectId, after[0], after[1], RECORD_PAGE, MAX_RECORD_BYTES],
      );
      for (const row of r.rows) {
        if (row.record === null) throw new CustosError('bad_request', `The backup is refused at object ${objectId}, version ${BigInt(row.version)}: a row larger than any record.`, { tag: 'backup_tampered' });
        if (!/^\d{20}$/.test(row.version) || !/^[0-9a-f]{16}$/.test(row.hash)) throw new CustosError('bad_request', `The backup is refused at object ${objectId}: a row filed as version "${row.version.slice(0, 24)}" (edited outside Custos).`, { tag: 'backup_tampered' });
        yield { filedAs: BigInt(row.version), hashPrefix: row.hash, bytes: new Uint8Array(row.record) };
      }
      if (r.rows.length < RECORD_PAGE) return;
      const last = r.rows[r.rows.length - 1]!;
      after = [last.version, last.hash];
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
