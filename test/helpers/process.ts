/** Runs the real `custos` executable: one-shot commands and a `serve` process on a free port. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'custos.js');

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function custos(args: string[], env: Record<string, string | undefined> = {}, input?: string): RunResult {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', input, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Runs a command without blocking the event loop: what it talks to (an ssh-agent, a vault)
 * may be answering from this very process. `input` goes to its stdin.
 */
export function runAsync(cmd: string, args: string[], env: Record<string, string | undefined> = {}, input?: string | Uint8Array): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d) => (stdout += d));
    p.stderr!.on('data', (d) => (stderr += d));
    p.on('close', (status) => resolve({ status, stdout, stderr }));
    // A command that exits without reading its input (ssh-add refusing a key) closes the pipe
    // first: that EPIPE is its business, not an error of the test.
    p.stdin!.on('error', () => {});
    p.stdin!.end(input ?? '');
  });
}

/** The `custos` executable, run without blocking (for a command that waits, like a sign awaiting approval). */
export const custosAsync = (args: string[], env: Record<string, string | undefined> = {}): Promise<RunResult> => runAsync(process.execPath, [BIN, ...args], env);

export interface ServeProcess {
  url: string;
  proc: ChildProcess;
  /** stdout and stderr interleaved as they arrived. */
  output(): string;
  /** stderr alone. */
  stderr(): string;
  /** Sends a signal and waits for the exit; resolves to the exit code (null if killed). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `custos serve` and resolves once it logs that it listens (or rejects with its output).
 * `asExecutable`: run bin/custos.js itself, as an operator's shell does (through its first
 * lines), instead of `node bin/custos.js`.
 */
export function serve(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 30_000, asExecutable = false): Promise<ServeProcess> {
  // CUSTOS_SERVE_NODE_ARGS: node flags for the server processes (a benchmark's --cpu-prof).
  const nodeArgs = process.env.CUSTOS_SERVE_NODE_ARGS ? process.env.CUSTOS_SERVE_NODE_ARGS.split(' ') : [];
  const [cmd, cmdArgs] = asExecutable ? [BIN, []] : [process.execPath, [...nodeArgs, BIN]];
  const proc = spawn(cmd, [...cmdArgs, 'serve', '--port', '0', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`custos serve did not start in time:\n${out}`));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /"url":"(https?:\/\/[^"]+)"[^\n]*"msg":"listening"/.exec(out) ?? /API:\s+(http:\/\/\S+)/.exec(out) ?? /custos: listening on (https?:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1]!,
          proc,
          output: () => out,
          stderr: () => err,
          stop: async (signal = 'SIGTERM') => {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
            return exited;
          },
        });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      onData(d);
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`custos serve exited with ${code}:\n${out}`), { exitCode: code, output: out }));
    });
  });
}
