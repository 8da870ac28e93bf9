/**
 * End-to-end signing throughput over the HTTP API, set against what the hardware allows.
 *
 *   node --import tsx bench/http-sign.ts [--seconds N] [--server-cpu-prof DIR]
 *
 * Baselines are measured in the same run so the ratios compare like with like on whatever
 * machine this runs on: raw single-core signing (node:crypto Ed25519, @noble secp256k1) and
 * the latency of one small fsync, the floor under every durable audit write.
 *
 * The server is the real `custos serve` in a child process: a load generator sharing the
 * server's event loop would steal the very CPU being measured. Only 127.0.0.1 is contacted.
 * One JSON document goes to stdout; progress goes to stderr. Timing results never make the
 * exit code non-zero; only a failure to set the benchmark up does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { constants as osConstants, cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { CustosClient, type KeyInfo } from '../src/client/client.js';
import { initVault } from '../src/vault/open.js';
import { daemonNodeFlags } from './lib/daemon-flags.js';

type BenchAlgorithm = 'ed25519' | 'secp256k1';

interface HttpResult {
  algorithm: BenchAlgorithm;
  clients: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  ratio_to_raw: number;
  /** Against the trivial Fastify endpoint at the same concurrency: the HTTP stack's ceiling. */
  ratio_to_trivial_http: number;
}

const ALGORITHMS: readonly BenchAlgorithm[] = ['ed25519', 'secp256k1'];
const CLIENT_COUNTS = [1, 16] as const;
const HOST = '127.0.0.1';
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Distinct messages, so no layer can get away with answering a repeated request from a cache. */
const MESSAGES: readonly Buffer[] = Array.from({ length: 256 }, () => randomBytes(32));
const REQUEST_TIMEOUT_MS = 10_000;

const log = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const round = (x: number, digits: number): number => Number(x.toFixed(digits));

/** Nearest-rank percentile; `sorted` ascending. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

function sortedCopy(xs: number[]): Float64Array {
  return Float64Array.from(xs).sort();
}

/** Runs `op` for `seconds`, checking the clock only every `batch` calls to keep it off the profile. */
function opsPerSecond(seconds: number, op: (i: number) => void, batch = 64): number {
  for (let i = 0; i < 200; i++) op(i); // let the JIT settle before the clock starts
  const start = performance.now();
  const end = start + seconds * 1000;
  let n = 0;
  let now = start;
  while (now < end) {
    for (let i = 0; i < batch; i++) op(n + i);
    n += batch;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

function baselineEd25519(seconds: number): number {
  const { privateKey } = generateKeyPairSync('ed25519');
  return opsPerSecond(seconds, (i) => nodeSign(null, MESSAGES[i & 255]!, privateKey));
}

function baselineSecp256k1(seconds: number): number {
  const sk = secp256k1.utils.randomSecretKey();
  return opsPerSecond(seconds, (i) => secp256k1.sign(MESSAGES[i & 255]!, sk), 16);
}

/**
 * Appends 256 bytes and fsyncs, like one small WAL commit. The file sits in the same temp
 * directory tree as the benchmark vault, so both hit the same filesystem.
 */
function baselineFsync(dir: string, seconds: number): { p50: number; p99: number } {
  const path = join(dir, 'fsync.bin');
  const fd = openSync(path, 'w');
  const chunk = randomBytes(256);
  const samples: number[] = [];
  try {
    const end = performance.now() + seconds * 1000;
    // A floor of 50 samples keeps p99 meaningful on a very slow disk.
    while (performance.now() < end || samples.length < 50) {
      const t0 = performance.now();
      writeSync(fd, chunk);
      fsyncSync(fd);
      samples.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
  const sorted = sortedCopy(samples);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

/** CPU seconds a process has used so far, from /proc (Linux); null where that is not available. */
function processCpuSeconds(pid: number): number | null {
  try {
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

interface Server {
  child: ChildProcess;
  /** Known once `waitForListening` has returned. */
  url: URL;
  logPath: string;
  stderr(): string;
}

const exited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null;

/**
 * Starts `custos serve`. Its stdout (the pino log, one or two lines a request at level info)
 * goes to a file rather than a pipe: draining a pipe would cost the load generator CPU, and
 * an undrained one would stall the server.
 */
function spawnServer(dataDir: string, logPath: string, passphrase: string, cpuProfDir: string | undefined): Server {
  const logFd = openSync(logPath, 'w');
  let child: ChildProcess;
  try {
    // Started through node (for --cpu-prof), so with the flags the custos executable adds itself.
    const nodeArgs = [...daemonNodeFlags(), ...(cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', resolve(cpuProfDir)] : [])];
    child = spawn(
      process.execPath,
      [...nodeArgs, join(REPO, 'bin/custos.js'), 'serve', '--data-dir', dataDir, '--host', HOST, '--port', '0', '--log-level', 'info'],
      { cwd: REPO, env: { ...process.env, CUSTOS_PASSPHRASE: passphrase }, stdio: ['ignore', logFd, 'pipe'] },
    );
  } finally {
    closeSync(logFd); // the child holds its own copy
  }
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  return { child, url: new URL(`http://${HOST}`), logPath, stderr: () => stderr };
}

/** Waits for the server's "listening" log line and takes its address from it. */
async function waitForListening(server: Server): Promise<void> {
  const { child } = server;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (exited(child)) throw new Error(`custos serve exited (${child.exitCode ?? child.signalCode}) before listening:\n${server.stderr()}`);
    for (const line of readFileSync(server.logPath, 'utf8').split('\n')) {
      if (!line.includes('"listening"')) continue;
      let entry: { msg?: unknown; url?: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        continue; // a line still being written
      }
      if (entry.msg !== 'listening' || typeof entry.url !== 'string') continue;
      const url = new URL(entry.url);
      if (url.hostname !== HOST) throw new Error(`custos serve listens on ${url.hostname}, not ${HOST}; refusing to send it traffic.`);
      server.url = url;
      return;
    }
    await sleep(50);
  }
  throw new Error(`custos serve did not log "listening" within 30 s:\n${server.stderr()}`);
}

/** The trivial Fastify endpoint (bench/lib/trivial-http.mjs) in a child process. */
async function trivialServer(): Promise<Server> {
  const child = spawn(process.execPath, [join(REPO, 'bench/lib/trivial-http.mjs')], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  const port = await new Promise<string>((resolvePort, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /listening (\d+)/.exec(out);
      if (m) resolvePort(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the trivial endpoint exited (${code}) before listening`)));
  });
  return { child, url: new URL(`http://${HOST}:${port}`), logPath: '', stderr: () => '' };
}

/** SIGTERM lets the server flush and checkpoint (and write a CPU profile); SIGKILL if it hangs. */
async function stopServer(child: ChildProcess): Promise<void> {
  if (exited(child)) return;
  const done = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await done;
  clearTimeout(timer);
}

function post(agent: Agent, url: URL, path: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolvePost, reject) => {
    const req = request(
      { host: HOST, port: url.port, path, method: 'POST', agent, headers: { ...headers, 'content-length': String(body.length) }, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolvePost({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

interface CaseRun {
  ok: number;
  errors: number;
  firstError: string | null;
  latenciesMs: number[];
  elapsedMs: number;
}

/**
 * `clients` closed loops, each with its own single keep-alive connection, so concurrency is
 * exactly the client count. Throughput counts every completed request over the time until
 * the last one came back, so requests in flight at the deadline are neither lost nor free.
 */
async function runLoad(server: Server, token: string, label: string, clients: number, seconds: number): Promise<CaseRun> {
  const path = `/v1/keys/${encodeURIComponent(label)}/sign`;
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const bodies = MESSAGES.map((m) => Buffer.from(JSON.stringify({ message: m.toString('base64') })));
  const run: CaseRun = { ok: 0, errors: 0, firstError: null, latenciesMs: [], elapsedMs: 0 };
  const start = performance.now();
  const end = start + seconds * 1000;
  const agents: Agent[] = [];
  const loop = async (c: number): Promise<void> => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    for (let i = c; performance.now() < end && !exited(server.child); i += clients) {
      const t0 = performance.now();
      let failure: string | null = null;
      try {
        const res = await post(agent, server.url, path, headers, bodies[i & 255]!);
        if (res.status !== 200) failure = `HTTP ${res.status}: ${res.body.slice(0, 200)}`;
        else if (typeof (JSON.parse(res.body) as { signature?: unknown }).signature !== 'string') failure = 'answer without a signature';
      } catch (e) {
        failure = (e as Error).message;
      }
      if (failure === null) {
        run.ok++;
        run.latenciesMs.push(performance.now() - t0);
      } else {
        run.errors++;
        run.firstError ??= failure;
        await sleep(10); // a failing server must not turn this loop into a busy spin
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: clients }, (_, c) => loop(c)));
  } finally {
    for (const a of agents) a.destroy();
  }
  run.elapsedMs = performance.now() - start;
  if (exited(server.child)) throw new Error(`custos serve died during the run:\n${server.stderr()}`);
  return run;
}

/** Signs once and checks the signature against the key's public key, so the numbers are for real signing. */
async function checkSignature(server: Server, token: string, key: KeyInfo): Promise<void> {
  const agent = new Agent({ keepAlive: false });
  try {
    const message = MESSAGES[0]!;
    const res = await post(agent, server.url, `/v1/keys/${encodeURIComponent(key.label)}/sign`, { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, Buffer.from(JSON.stringify({ message: message.toString('base64') })));
    if (res.status !== 200) throw new Error(`sign answered HTTP ${res.status}: ${res.body}`);
    const { signature, encoding } = JSON.parse(res.body) as { signature: string; encoding: string };
    const sig = Buffer.from(signature, 'base64');
    const valid =
      key.algorithm === 'ed25519'
        ? nodeVerify(null, message, createPublicKey(key.public_key.spki_pem), sig)
        : secp256k1.verify(sig, message, Buffer.from(key.public_key.raw, 'base64'), { format: encoding === 'raw' ? 'compact' : 'der' });
    if (!valid) throw new Error(`the ${key.algorithm} signature from the server does not verify`);
  } finally {
    agent.destroy();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      'server-cpu-prof': { type: 'string' },
      algorithms: { type: 'string', default: ALGORITHMS.join(',') },
    },
  });
  const algorithms = values.algorithms!.split(',') as BenchAlgorithm[];
  if (!algorithms.every((a) => ALGORITHMS.includes(a))) throw new Error(`--algorithms is a comma-separated subset of ${ALGORITHMS.join(',')}`);
  const seconds = Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new Error('--seconds must be a positive number');
  // Baselines are stable within a couple of seconds; half a case each keeps the run near 35 s.
  const baselineSeconds = seconds / 2;
  // Long enough for the JIT, the prepared-signer cache and the connections to be warm.
  const warmupSeconds = Math.min(1, seconds / 5);

  const root = mkdtempSync(join(tmpdir(), 'custos-bench-'));
  let server: Server | undefined;
  const removeRoot = (): void => rmSync(root, { recursive: true, force: true });
  const onSignal = (sig: NodeJS.Signals): void => {
    log(`${sig}: stopping`);
    const finish = (): void => {
      removeRoot();
      process.exit(128 + (osConstants.signals[sig] ?? 1));
    };
    const child = server?.child;
    if (!child || exited(child)) return finish();
    // Wait for the server to be gone, or it could recreate files in the directory being removed.
    child.once('exit', finish);
    child.kill('SIGKILL');
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    log(`baselines, ${baselineSeconds} s each`);
    const rawEd = baselineEd25519(baselineSeconds);
    log(`ed25519 node:crypto sign: ${rawEd.toFixed(0)} ops/s`);
    const rawK1 = baselineSecp256k1(baselineSeconds);
    log(`secp256k1 @noble sign: ${rawK1.toFixed(0)} ops/s`);
    const fsync = baselineFsync(root, baselineSeconds);
    log(`fsync 256 B: p50 ${fsync.p50.toFixed(3)} ms, p99 ${fsync.p99.toFixed(3)} ms`);
    const raw: Record<BenchAlgorithm, number> = { ed25519: rawEd, secp256k1: rawK1 };

    const dataDir = join(root, 'vault');
    const passphrase = randomBytes(24).toString('base64url');
    // Cheap scrypt: the vault is thrown away, and unsealing cost is not what is measured.
    const { adminToken } = await initVault({ dataDir, passphrase: new TextEncoder().encode(passphrase), scrypt: { N: 2 ** 12, r: 8, p: 1 } });
    server = spawnServer(dataDir, join(root, 'server.log'), passphrase, values['server-cpu-prof']);
    await waitForListening(server);
    log(`custos serve (pid ${server.child.pid}) at ${server.url.origin}`);

    // The HTTP stack's own ceiling, in the same run: the same route and body size on a Fastify
    // server that does nothing else, through the same load generator.
    const trivial = await trivialServer();
    const ceiling: Record<number, number> = {};
    try {
      for (const clients of CLIENT_COUNTS) {
        await runLoad(trivial, 'none', 'trivial', clients, warmupSeconds);
        const run = await runLoad(trivial, 'none', 'trivial', clients, seconds);
        ceiling[clients] = (run.ok * 1000) / run.elapsedMs;
        log(`trivial Fastify endpoint x${clients}: ${ceiling[clients]!.toFixed(0)} req/s`);
      }
    } finally {
      await stopServer(trivial.child);
    }

    const client = new CustosClient({ addr: server.url.origin, token: adminToken });
    const http: HttpResult[] = [];
    for (const algorithm of algorithms) {
      const key = await client.createKey({ label: `bench-${algorithm}`, algorithm });
      await checkSignature(server, adminToken, key);
      for (const clients of CLIENT_COUNTS) {
        await runLoad(server, adminToken, key.label, clients, warmupSeconds);
        const cpuBefore = processCpuSeconds(server.child.pid!);
        const selfBefore = process.cpuUsage();
        const run = await runLoad(server, adminToken, key.label, clients, seconds);
        const cpuAfter = processCpuSeconds(server.child.pid!);
        const self = process.cpuUsage(selfBefore);
        const latencies = sortedCopy(run.latenciesMs);
        const rps = (run.ok * 1000) / run.elapsedMs;
        const result: HttpResult = {
          algorithm,
          clients,
          rps: round(rps, 1),
          p50_ms: round(percentile(latencies, 50), 3),
          p99_ms: round(percentile(latencies, 99), 3),
          errors: run.errors,
          ratio_to_raw: round(rps / raw[algorithm], 4),
          ratio_to_trivial_http: round(rps / ceiling[clients]!, 4),
        };
        http.push(result);
        // CPU use of both sides tells which one saturated: ~100% server means the server is the limit.
        const pct = (cpuSeconds: number) => `${((cpuSeconds * 100_000) / run.elapsedMs).toFixed(0)}%`;
        const serverCpu = cpuBefore !== null && cpuAfter !== null ? pct(cpuAfter - cpuBefore) : 'n/a';
        const loadCpu = pct((self.user + self.system) / 1e6);
        log(
          `${algorithm} x${clients}: ${result.rps} req/s, p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms, ` +
            `${run.errors} errors, ${result.ratio_to_raw} of raw; CPU server ${serverCpu}, load generator ${loadCpu}` +
            (run.firstError ? `; first error: ${run.firstError}` : ''),
        );
      }
    }

    const ed16 = http.find((r) => r.algorithm === 'ed25519' && r.clients === 16);
    const report = {
      machine: { cpus: cpus().length, node: process.version },
      baseline: {
        ed25519_node_crypto_ops_s: round(rawEd, 0),
        secp256k1_noble_ops_s: round(rawK1, 0),
        fsync_256b_p50_ms: round(fsync.p50, 3),
        fsync_256b_p99_ms: round(fsync.p99, 3),
        trivial_fastify_rps: Object.fromEntries(CLIENT_COUNTS.map((c) => [`clients_${c}`, round(ceiling[c]!, 0)])),
      },
      http,
      ...(ed16 ? { aim: { ed25519_16_clients_vs_trivial_http: ed16.ratio_to_trivial_http, ed25519_16_clients_vs_raw: ed16.ratio_to_raw, target: 0.5, met: ed16.ratio_to_trivial_http >= 0.5 } } : {}),
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    if (server) await stopServer(server.child);
    removeRoot();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().catch((e: unknown) => {
  log(`failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
