/**
 * A throwaway PostgreSQL cluster for one test file: initdb into a temp folder, a postmaster on
 * a free 127.0.0.1 port with its socket in that folder, and a `custos` database that trusts
 * the `custos` user (no password: nothing but this machine can reach it).
 *
 * initdb and postgres refuse to run as root, so as root the cluster folder belongs to the
 * `postgres` user and every server command goes through `runuser -u postgres`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import pg from 'pg';

export interface PgCluster {
  /** postgresql://custos@127.0.0.1:PORT/custos */
  url: string;
  port: number;
  /** The cluster folder: data/ (PGDATA), log (the server's output) and the Unix socket. */
  dir: string;
  /** The PostgreSQL bin folder the cluster was made with. */
  bin: string;
  /** Makes another empty database (custos_<random hex> unless named) and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /**
   * Stops the server: 'immediate' is a crash (no shutdown checkpoint; the next start replays
   * the WAL), 'fast' a clean shutdown. Does nothing when it is not running. Connected pg
   * clients and pools emit 'error' when it goes: give them a listener or the process dies.
   */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again after a stop, on the same port and data. */
  start(): Promise<void>;
  /** Stops it (as a crash: nothing is kept) and removes the temp folder; safe to call twice. */
  dispose(): Promise<void>;
  /** A standby made with `startPostgres({ standbyOf })`: promotes it to a writable primary. */
  promote(): Promise<void>;
}

const INSTALL_HINT = 'PostgreSQL is not installed: apt-get install -y postgresql';

/** The bin folder of the highest PostgreSQL version installed, or null when there is none. */
export function postgresBin(): string | null {
  const root = '/usr/lib/postgresql';
  let versions: string[];
  try {
    versions = readdirSync(root);
  } catch {
    return null;
  }
  // Numeric order, so that 15 beats 9.6 (a string sort would not).
  const found = versions
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join(root, v, 'bin'))
    .find((bin) => ['initdb', 'pg_ctl', 'postgres'].every((tool) => existsSync(join(bin, tool))));
  return found ?? null;
}

/** Returns true when PostgreSQL is there; otherwise skips (locally) or throws (CI). */
export function requirePostgres(t: TestContext): boolean {
  if (postgresBin() !== null) return true;
  if (process.env.CI) throw new Error(`${INSTALL_HINT} (required in CI)`);
  t.skip(INSTALL_HINT);
  return false;
}

const asRoot = process.getuid?.() === 0;

/** The command line for a server tool: as root through runuser, since PostgreSQL refuses root. */
function command(bin: string, tool: string, args: string[]): [string, string[]] {
  const exe = join(bin, tool);
  return asRoot ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
}

interface Ran {
  status: number | null;
  output: string;
}

/**
 * Runs a server tool without blocking the event loop (a test may be serving requests from this
 * process meanwhile). The working directory is the temp folder: the postgres user may not be
 * allowed into the caller's, and initdb complains when it cannot go back there.
 */
function run(bin: string, tool: string, args: string[], cwd: string): Promise<Ran> {
  const [cmd, argv] = command(bin, tool, args);
  return new Promise((resolve, reject) => {
    // pg_ctl sends the server's own output to the log file, so these pipes close when pg_ctl exits.
    const p = spawn(cmd, argv, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    p.stdout!.on('data', (d) => (output += d));
    p.stderr!.on('data', (d) => (output += d));
    p.on('error', reject);
    p.on('close', (status) => resolve({ status, output }));
  });
}

/** A port nothing listens on right now; another process may still take it before postgres does. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Clusters started and not yet disposed, stopped when the process exits without disposing them. */
const live = new Set<{ bin: string; data: string; top: string }>();

/**
 * pg_ctl detaches the server from our process group, so nothing stops it when the test process
 * ends: a test that forgot dispose(), failed before it, or was interrupted would leave a
 * postgres running. On exit only synchronous work runs, hence spawnSync.
 */
function stopAllNow(): void {
  for (const c of live) {
    const [cmd, argv] = command(c.bin, 'pg_ctl', ['stop', '-D', c.data, '-m', 'immediate', '-w']);
    spawnSync(cmd, argv, { cwd: c.top, stdio: 'ignore' });
    rmSync(c.top, { recursive: true, force: true });
  }
  live.clear();
}

let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', stopAllNow);
  // A signal (Ctrl-C, the test runner's SIGTERM on a timeout) ends the process without 'exit':
  // stop the clusters, then let the signal do what it would have done without this listener.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      stopAllNow();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** The part of the server log written since `from` (the log is appended to by every start). */
function logSince(logFile: string, from: number): string {
  try {
    return readFileSync(logFile).subarray(from).toString('utf8').trim();
  } catch {
    return '';
  }
}

function logSize(logFile: string): number {
  try {
    return statSync(logFile).size;
  } catch {
    return 0;
  }
}

async function createDb(adminUrl: string, port: number, name: string): Promise<string> {
  // Plain identifiers only, so that the name needs no quoting in SQL nor escaping in the URL.
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`not a plain database name: ${name}`);
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  return `postgresql://custos@127.0.0.1:${port}/${name}`;
}

/**
 * Makes and starts a new cluster with an empty `custos` database (about a second). With
 * `standbyOf`: a streaming-replication standby of that (running) cluster instead, made with
 * `pg_basebackup -R` (initdb's default pg_hba.conf trusts replication from 127.0.0.1).
 */
export async function startPostgres(opts: { standbyOf?: PgCluster } = {}): Promise<PgCluster> {
  const bin = postgresBin();
  if (bin === null) throw new Error(INSTALL_HINT);

  // The temp folder is the postgres user's way in (mkdtemp makes it 0700, ours); the cluster
  // folder inside stays private to whoever runs the server.
  const top = mkdtempSync(join(tmpdir(), 'custos-pg-'));
  const dir = join(top, 'cluster');
  const data = join(dir, 'data');
  const logFile = join(dir, 'log');
  chmodSync(top, 0o755);
  if (asRoot) {
    const r = spawnSync('install', ['-d', '-o', 'postgres', '-g', 'postgres', '-m', '700', dir], { encoding: 'utf8' });
    if (r.status !== 0) {
      rmSync(top, { recursive: true, force: true });
      throw new Error(`could not make the cluster folder for the postgres user: ${r.stderr || r.error?.message}`);
    }
  } else {
    mkdirSync(dir, { mode: 0o700 });
  }

  const primary = opts.standbyOf;
  const init = primary
    ? await run(bin, 'pg_basebackup', ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'custos', '-D', data, '-R', '-X', 'stream', '-c', 'fast'], top)
    : await run(bin, 'initdb', ['-D', data, '-A', 'trust', '-U', 'custos', '--encoding=UTF8', '--locale=C'], top);
  if (init.status !== 0) {
    rmSync(top, { recursive: true, force: true });
    throw new Error(`${primary ? 'pg_basebackup' : 'initdb'} failed (${init.status}):\n${init.output}`);
  }

  const entry = { bin, data, top };
  installExitHandlers();
  live.add(entry);

  let port = 0;
  /** Starts the server on `port`; returns the log of a failed start, or null once it runs. */
  const tryStart = async (): Promise<string | null> => {
    const from = logSize(logFile);
    // fsync and synchronous_commit are the defaults, spelled out because crash tests rely on them.
    const opts = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=on -c synchronous_commit=on -c max_connections=100`;
    const r = await run(bin, 'pg_ctl', ['start', '-D', data, '-w', '-l', logFile, '-o', opts], top);
    return r.status === 0 ? null : `${r.output.trim()}\n${logSince(logFile, from)}`;
  };

  let disposed = false;
  const cluster: PgCluster = {
    get url() {
      return `postgresql://custos@127.0.0.1:${port}/custos`;
    },
    get port() {
      return port;
    },
    dir,
    bin,
    createDatabase: (name = `custos_${randomBytes(6).toString('hex')}`) => createDb(`postgresql://custos@127.0.0.1:${port}/postgres`, port, name),
    async stop(mode = 'fast') {
      if (disposed) return;
      const r = await run(bin, 'pg_ctl', ['stop', '-D', data, '-m', mode, '-w'], top);
      if (r.status === 0) return;
      // Already stopped (by an earlier stop, or it died): pg_ctl status says 3, "not running".
      const status = await run(bin, 'pg_ctl', ['status', '-D', data], top);
      if (status.status === 3) return;
      throw new Error(`pg_ctl stop failed (${r.status}):\n${r.output}`);
    },
    async start() {
      if (disposed) throw new Error('this PostgreSQL cluster was disposed');
      const failure = await tryStart();
      if (failure !== null) throw new Error(`PostgreSQL did not start again on port ${port}:\n${failure}`);
    },
    async promote() {
      const r = await run(bin, 'pg_ctl', ['promote', '-D', data, '-w'], top);
      if (r.status !== 0) throw new Error(`pg_ctl promote failed (${r.status}):\n${r.output}`);
    },
    async dispose() {
      if (disposed) return;
      // A crash stop: nothing in a throwaway cluster is worth a shutdown checkpoint.
      await cluster.stop('immediate');
      disposed = true;
      live.delete(entry);
      rmSync(top, { recursive: true, force: true });
    },
  };

  try {
    // The port is free when we look and taken when postgres binds it if another process got
    // there in between: then try another one.
    let failure: string | null = null;
    for (let attempt = 0; attempt < 3; attempt++) {
      port = await freePort();
      failure = await tryStart();
      if (failure === null || !/address already in use/i.test(failure)) break;
    }
    if (failure !== null) throw new Error(`PostgreSQL did not start:\n${failure}`);
    // A standby has the primary's databases already (and is read-only).
    if (!primary) await createDb(`postgresql://custos@127.0.0.1:${port}/postgres`, port, 'custos');
  } catch (err) {
    await cluster.dispose().catch(() => {});
    throw err;
  }
  return cluster;
}
