/**
 * Signing over the ssh-agent protocol: the Custos agent against OpenSSH's own `ssh-agent`,
 * holding the same Ed25519 key and driven by the same client.
 *
 *   node --import tsx bench/ssh-agent.ts [--seconds N] [--server-cpu-prof DIR]
 *   node --import tsx bench/ssh-agent.ts --serve DIR      (internal: the Custos side)
 *
 * OpenSSH's agent is the reference because it is what `SSH_AUTH_SOCK` points at today: the
 * comparison says what routing SSH signatures through the vault costs a user. Both agents
 * run in their own processes (the Custos one is this script in `--serve` mode), so the load
 * generator never shares an event loop with the agent it measures. Only the two Unix
 * sockets are contacted. One JSON document goes to stdout, progress to stderr; timing
 * results never make the exit status non-zero, only a failure to set the benchmark up does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createPublicKey, randomBytes, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SshAgent } from '../src/frontends/ssh-agent/agent.js';
import { decodeResponse, encodeRequest, frame, FrameReader, parsePublicKeyBlob, parseSshSignature } from '../src/frontends/ssh-agent/codec.js';
import { makeVault } from '../test/helpers/tmpvault.js';
import { daemonNodeFlags } from './lib/daemon-flags.js';

type AgentName = 'custos' | 'openssh';

interface CaseResult {
  agent: AgentName;
  connections: number;
  rps: number;
  p50_ms: number | null;
  p99_ms: number | null;
  errors: number;
}

const SCRIPT = fileURLToPath(import.meta.url);
const REPO = resolve(dirname(SCRIPT), '..');
const LABEL = 'bench-ed';
const KEY_FILE = 'id_ed25519';
const CUSTOS_SOCK = 'custos.sock';
const OPENSSH_SOCK = 'openssh.sock';
const AGENTS: readonly AgentName[] = ['custos', 'openssh'];
const CONNECTION_COUNTS = [1, 8] as const;
/** Issue 11: at least 3× OpenSSH's rate at 8 connections and 1× at 1, each with a lower p99. */
const RPS_RATIO_TARGET_8 = 3;
const RPS_RATIO_TARGET_1 = 1;
const REQUEST_TIMEOUT_MS = 10_000;
const STARTUP_TIMEOUT_MS = 60_000;

const log = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const round = (x: number, digits: number): number => Number(x.toFixed(digits));
const exited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null;
/** Set on SIGINT/SIGTERM: loops stop, and the errors that stopping the agents causes are not reported. */
let interrupted = false;

/** Nearest-rank percentile; `sorted` ascending; null when there is nothing to rank. */
function percentile(sorted: Float64Array, p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** CPU seconds a process has used so far, from /proc (Linux); null where that is not available. */
function processCpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// Server mode: the Custos agent in its own process
// ---------------------------------------------------------------------------

/**
 * The parent points TMPDIR into its own temp directory, so the vault that makeVault creates
 * lands there: it is on the same filesystem as everything else, and it is removed with the
 * parent's directory even if this process has to be SIGKILLed.
 */
async function serve(dir: string): Promise<void> {
  const v = await makeVault();
  let agent: SshAgent;
  try {
    const material = new Uint8Array(readFileSync(join(dir, KEY_FILE)));
    await v.vault.importKey(v.ctx(), { label: LABEL, format: 'openssh', material, exportable: false, purpose: 'ssh' });
    agent = new SshAgent(v.vault, { name: 'bench', socketPath: join(dir, CUSTOS_SOCK), keys: [LABEL], allowSha1: false, maxConnections: 64 });
    await agent.listen();
  } catch (e) {
    await v.dispose();
    throw e;
  }
  let stopping: Promise<void> | null = null;
  const shutdown = (): Promise<void> =>
    (stopping ??= (async () => {
      try {
        await agent.close();
      } finally {
        await v.dispose();
      }
      // Exiting (rather than draining) is also what makes --cpu-prof write its profile.
      process.exit(0);
    })());
  process.once('SIGTERM', () => void shutdown());
  // Ctrl-C reaches the whole process group; shut down as cleanly as on SIGTERM.
  process.once('SIGINT', () => void shutdown());
  // The parent holds our stdin: if it dies without signalling us, we do not outlive it.
  process.stdin.on('end', () => void shutdown());
  process.stdin.resume();
  process.stdout.write('ready\n');
}

// ---------------------------------------------------------------------------
// The two agent processes, seen from the parent
// ---------------------------------------------------------------------------

interface Spawned {
  name: string;
  child: ChildProcess;
  stderr(): string;
}

/** Keeps the tail of stderr for error messages; draining it also keeps the child from blocking. */
function track(name: string, child: ChildProcess): Spawned {
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  // A failed spawn (the tool is not installed) is reported by waitForStdout, not thrown here.
  child.on('error', (e) => {
    stderr += `\n${e.message}`;
  });
  return { name, child, stderr: () => stderr };
}

/** Resolves once `marker` shows up on the child's stdout; rejects if it exits or takes too long. */
function waitForStdout(p: Spawned, marker: string): Promise<void> {
  return new Promise((resolveWait, reject) => {
    let out = '';
    const timer = setTimeout(() => done(new Error(`${p.name} did not print "${marker}" within ${STARTUP_TIMEOUT_MS / 1000} s:\n${p.stderr()}`)), STARTUP_TIMEOUT_MS);
    const onData = (d: string): void => {
      out += d;
      if (out.includes(marker)) done(null);
    };
    const onExit = (): void => done(new Error(`${p.name} exited (${p.child.exitCode ?? p.child.signalCode}) before it was ready:\n${p.stderr()}`));
    const onError = (e: Error): void => done(new Error(`${p.name} could not be started: ${e.message}`));
    function done(err: Error | null): void {
      clearTimeout(timer);
      p.child.stdout?.off('data', onData);
      p.child.off('exit', onExit);
      p.child.off('error', onError);
      if (err) reject(err);
      else resolveWait();
    }
    p.child.stdout?.setEncoding('utf8').on('data', onData);
    p.child.once('exit', onExit);
    p.child.once('error', onError);
    if (exited(p.child)) onExit();
  });
}

/** SIGTERM first (the Custos child closes its vault, ssh-agent removes its socket); SIGKILL if it hangs. */
async function stop(p: Spawned | undefined): Promise<void> {
  // No pid: it never started, and no 'exit' would ever come.
  if (!p || p.child.pid === undefined || exited(p.child)) return;
  const gone = new Promise<void>((r) => p.child.once('exit', () => r()));
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(timer);
}

function runTool(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolveRun, reject) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.on('data', (d: Buffer) => (output += d.toString()));
    p.stderr.on('data', (d: Buffer) => (output += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolveRun({ code, output }));
  });
}

// ---------------------------------------------------------------------------
// The client: one agent connection, one request in flight
// ---------------------------------------------------------------------------

class AgentConnection {
  private readonly reader = new FrameReader();
  private pending: { resolve(body: Uint8Array): void; reject(e: Error): void; timer: NodeJS.Timeout } | null = null;
  private broken: Error | null = null;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('the agent closed the connection')));
  }

  static open(path: string): Promise<AgentConnection> {
    return new Promise((resolveOpen, reject) => {
      const s = connect(path);
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        resolveOpen(new AgentConnection(s));
      });
    });
  }

  get usable(): boolean {
    return this.broken === null;
  }

  /** Sends one framed request and resolves with the reply body. */
  request(framed: Uint8Array): Promise<Uint8Array> {
    if (this.broken) return Promise.reject(this.broken);
    return new Promise((resolveReq, reject) => {
      // A hung agent must end the case with errors, not hang the benchmark.
      const timer = setTimeout(() => this.fail(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS);
      this.pending = { resolve: resolveReq, reject, timer };
      this.socket.write(framed);
    });
  }

  close(): void {
    this.fail(new Error('closed by the client'));
  }

  private onData(chunk: Buffer): void {
    let bodies: Uint8Array[];
    try {
      bodies = this.reader.push(chunk);
    } catch (e) {
      return this.fail(e as Error);
    }
    for (const body of bodies) {
      const p = this.pending;
      // With one request in flight, a second reply means the stream is out of step.
      if (!p) return this.fail(new Error('reply without a request'));
      this.pending = null;
      clearTimeout(p.timer);
      p.resolve(body);
    }
  }

  private fail(e: Error): void {
    this.broken ??= e;
    const p = this.pending;
    this.pending = null;
    if (p) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.socket.destroy();
  }
}

/** Ed25519 public key from an SSH key blob, as node:crypto wants it. */
function ed25519KeyObject(blob: Uint8Array): KeyObject {
  const k = parsePublicKeyBlob(blob);
  if (k.keyType !== 'ssh-ed25519') throw new Error('the benchmark key is not a plain ssh-ed25519 key');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(k.publicKey).toString('base64url') }, format: 'jwk' });
}

/** Signs once and verifies the result, so the numbers are known to be for real signatures. */
async function checkSignature(agent: AgentName, socketPath: string, keyBlob: Uint8Array, publicKey: KeyObject): Promise<void> {
  const conn = await AgentConnection.open(socketPath);
  try {
    const data = new Uint8Array(randomBytes(64));
    const res = decodeResponse(await conn.request(frame(encodeRequest({ type: 'sign_request', keyBlob, data, flags: 0 }))));
    if (res.type !== 'sign_response') throw new Error(`${agent} answered "${res.type}" to a sign request for the benchmark key`);
    // RFC 8709 §6: string "ssh-ed25519", string signature (64 bytes).
    const { algorithm, signature } = parseSshSignature(res.signature);
    if (algorithm !== 'ssh-ed25519' || signature.length !== 64) throw new Error(`${agent} returned a ${algorithm} signature of ${signature.length} bytes`);
    if (!nodeVerify(null, data, publicKey, signature)) throw new Error(`the signature from ${agent} does not verify`);
  } finally {
    conn.close();
  }
}

interface CaseRun {
  ok: number;
  errors: number;
  firstError: string | null;
  latenciesMs: number[];
  elapsedMs: number;
}

/**
 * `connections` closed loops, each on its own connection with one request in flight, so the
 * concurrency is exactly the connection count. Connections are opened before the clock
 * starts: an agent session is long-lived, and connect cost is not what is compared.
 * Throughput counts every answer over the time until the last one came back, so requests in
 * flight at the deadline are neither lost nor free.
 */
async function runLoad(socketPath: string, frames: readonly Uint8Array[], connections: number, seconds: number, alive: () => boolean): Promise<CaseRun> {
  const run: CaseRun = { ok: 0, errors: 0, firstError: null, latenciesMs: [], elapsedMs: 0 };
  const conns = await Promise.all(Array.from({ length: connections }, () => AgentConnection.open(socketPath)));
  const error = (what: string): void => {
    run.errors++;
    run.firstError ??= what;
  };
  const start = performance.now();
  const end = start + seconds * 1000;
  const loop = async (c: number): Promise<void> => {
    let conn = conns[c]!;
    for (let i = c; performance.now() < end && alive(); i += connections) {
      if (!conn.usable) {
        // A dropped connection is an error, then the loop carries on with a fresh one.
        await sleep(10);
        try {
          conn = conns[c] = await AgentConnection.open(socketPath);
        } catch (e) {
          error(`reconnect: ${(e as Error).message}`);
          continue;
        }
      }
      const t0 = performance.now();
      let body: Uint8Array;
      try {
        body = await conn.request(frames[i % frames.length]!);
      } catch (e) {
        error((e as Error).message);
        continue;
      }
      const t1 = performance.now();
      let type: string;
      try {
        type = decodeResponse(body).type;
      } catch (e) {
        type = `undecodable reply (${(e as Error).message})`;
      }
      if (type === 'sign_response') {
        run.ok++;
        run.latenciesMs.push(t1 - t0);
      } else {
        error(`answered ${type}`);
        await sleep(1); // a refusing agent must not turn this loop into a busy spin
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: connections }, (_, c) => loop(c)));
  } finally {
    for (const conn of conns) conn.close();
  }
  run.elapsedMs = performance.now() - start;
  return run;
}

// ---------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      serve: { type: 'string' },
      'server-cpu-prof': { type: 'string' },
    },
  });
  if (values.serve !== undefined) return serve(resolve(values.serve));

  const seconds = Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new Error('--seconds must be a positive number');
  // Long enough for the JIT and the vault's prepared-signer cache to be warm.
  const warmupSeconds = Math.min(1, seconds / 5);

  // Short path: a Unix socket path must fit in 108 bytes.
  const root = mkdtempSync(join(tmpdir(), 'custos-bench-ssh-'));
  let custos: Spawned | undefined;
  let openssh: Spawned | undefined;
  let cleaning: Promise<void> | null = null;
  // Both agents must be gone before the directory goes, or they could recreate files in it.
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await Promise.all([stop(custos), stop(openssh)]);
      rmSync(root, { recursive: true, force: true });
    })());
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupted = true;
    log(`${sig}: stopping both agents`);
    void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const keyPath = join(root, KEY_FILE);
    const gen = await runTool('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'custos-bench', '-f', keyPath], process.env);
    if (gen.code !== 0) throw new Error(`ssh-keygen failed (${gen.code}): ${gen.output}`);
    // The .pub file's second field is the base64 public key blob, exactly what SIGN_REQUEST names.
    const pubField = readFileSync(`${keyPath}.pub`, 'utf8').trim().split(/\s+/)[1];
    if (!pubField) throw new Error(`${keyPath}.pub has no key field`);
    const keyBlob = new Uint8Array(Buffer.from(pubField, 'base64'));
    const publicKey = ed25519KeyObject(keyBlob);

    const opensshSock = join(root, OPENSSH_SOCK);
    openssh = track('ssh-agent', spawn('ssh-agent', ['-D', '-a', opensshSock], { stdio: ['ignore', 'pipe', 'pipe'] }));
    // ssh-agent prints its environment lines only after it is listening.
    await waitForStdout(openssh, 'SSH_AUTH_SOCK');
    const add = await runTool('ssh-add', ['-q', keyPath], { ...process.env, SSH_AUTH_SOCK: opensshSock, SSH_ASKPASS: '', DISPLAY: '' });
    if (add.code !== 0) throw new Error(`ssh-add failed (${add.code}): ${add.output}`);
    log(`ssh-agent (pid ${openssh.child.pid}) at ${opensshSock}`);

    const childTmp = join(root, 'tmp');
    mkdirSync(childTmp, { mode: 0o700 });
    const prof = values['server-cpu-prof'];
    // The agent's process runs with the node flags `custos ssh-agent` has (bin/custos.js).
    const nodeArgs = [...daemonNodeFlags(), ...(prof ? ['--cpu-prof', '--cpu-prof-dir', resolve(prof)] : [])];
    custos = track(
      'custos agent',
      spawn(process.execPath, [...nodeArgs, '--import', 'tsx', SCRIPT, '--serve', root], {
        cwd: REPO,
        env: { ...process.env, TMPDIR: childTmp },
        stdio: ['pipe', 'pipe', 'pipe'],
      }),
    );
    await waitForStdout(custos, 'ready');
    const custosSock = join(root, CUSTOS_SOCK);
    log(`custos agent (pid ${custos.child.pid}) at ${custosSock}`);

    const sockets: Record<AgentName, { path: string; proc: Spawned }> = {
      custos: { path: custosSock, proc: custos },
      openssh: { path: opensshSock, proc: openssh },
    };
    for (const agent of AGENTS) await checkSignature(agent, sockets[agent].path, keyBlob, publicKey);
    log('one signature from each agent verified');

    // Pre-encoded, so the load generator spends its CPU on the socket, not on encoding; 1024
    // distinct messages are far more than either agent could notice repeating.
    const frames = Array.from({ length: 1024 }, () => frame(encodeRequest({ type: 'sign_request', keyBlob, data: new Uint8Array(randomBytes(64)), flags: 0 })));

    const results: CaseResult[] = [];
    for (const agent of AGENTS) {
      const { path, proc } = sockets[agent];
      const alive = (): boolean => !interrupted && !exited(proc.child);
      for (const connections of CONNECTION_COUNTS) {
        await runLoad(path, frames, connections, warmupSeconds, alive);
        const cpuBefore = processCpuSeconds(proc.child.pid);
        const selfBefore = process.cpuUsage();
        const run = await runLoad(path, frames, connections, seconds, alive);
        const cpuAfter = processCpuSeconds(proc.child.pid);
        const self = process.cpuUsage(selfBefore);
        if (interrupted) return;
        if (exited(proc.child)) throw new Error(`${proc.name} died during the run:\n${proc.stderr()}`);
        const latencies = Float64Array.from(run.latenciesMs).sort();
        const p50 = percentile(latencies, 50);
        const p99 = percentile(latencies, 99);
        const result: CaseResult = {
          agent,
          connections,
          rps: round((run.ok * 1000) / run.elapsedMs, 1),
          p50_ms: p50 === null ? null : round(p50, 3),
          p99_ms: p99 === null ? null : round(p99, 3),
          errors: run.errors,
        };
        results.push(result);
        // CPU of both sides says which one saturated: an agent near 100% of a core is the limit;
        // a load generator near 100% means the numbers understate the agent.
        const pct = (cpuSeconds: number): string => `${((cpuSeconds * 100_000) / run.elapsedMs).toFixed(0)}%`;
        const agentCpu = cpuBefore !== null && cpuAfter !== null ? pct(cpuAfter - cpuBefore) : 'n/a';
        log(
          `${agent} x${connections}: ${result.rps} req/s, p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms, ${result.errors} errors; ` +
            `CPU agent ${agentCpu}, load generator ${pct((self.user + self.system) / 1e6)}` +
            (run.firstError ? `; first error: ${run.firstError}` : ''),
        );
      }
    }

    const ratios = (connections: number): { rps: number | null; p99: number | null } => {
      const c = results.find((r) => r.agent === 'custos' && r.connections === connections)!;
      const o = results.find((r) => r.agent === 'openssh' && r.connections === connections)!;
      return {
        rps: o.rps > 0 ? round(c.rps / o.rps, 4) : null,
        p99: c.p99_ms !== null && o.p99_ms !== null && o.p99_ms > 0 ? round(c.p99_ms / o.p99_ms, 2) : null,
      };
    };
    const [r8, r1] = [ratios(8), ratios(1)];
    const met = (r: { rps: number | null; p99: number | null }, target: number): boolean => r.rps !== null && r.rps >= target && r.p99 !== null && r.p99 < 1;
    const report = {
      machine: { cpus: cpus().length, node: process.version },
      results,
      ratio: { rps_8: r8.rps, p99_8: r8.p99, rps_1: r1.rps, p99_1: r1.p99 },
      goal: { rps_ratio_8_target: RPS_RATIO_TARGET_8, rps_ratio_1_target: RPS_RATIO_TARGET_1, lower_p99: true, met: met(r8, RPS_RATIO_TARGET_8) && met(r1, RPS_RATIO_TARGET_1) },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    if (!interrupted) {
      await cleanup();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
}

main().catch((e: unknown) => {
  if (interrupted) return;
  log(`failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
