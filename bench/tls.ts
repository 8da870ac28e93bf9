/**
 * The cost of TLS on the HTTP API: Ed25519 signing over TLS with keep-alive against plain HTTP
 * on the same vault in the same run (aim: ≥ 0.7 of plain), and new TLS connections per second
 * (a full handshake and one small request each).
 *
 *   node --import tsx bench/tls.ts [--seconds N] [--clients N]
 *
 * The servers are the real `custos serve` (plain, then with `[api] tls_cert/tls_key` made by
 * `custos tls init`), in a child process, on 127.0.0.1. One JSON document goes to stdout;
 * progress to stderr. Timings never fail the run.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(REPO, 'bin', 'custos.js');
const PASS = 'bench tls passphrase';
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, clients: { type: 'string', default: '16' } } });
const seconds = Number(values.seconds);
const clients = Number(values.clients);

function custos(args: string[]): string {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...process.env, CUSTOS_PASSPHRASE: PASS }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`custos ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function serve(dataDir: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--data-dir', dataDir, '--port', '0', '--log-level', 'warn'], { env: { ...process.env, CUSTOS_PASSPHRASE: PASS }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((res, rej) => {
    child.stderr!.on('data', (d) => {
      err += d;
      const m = /custos: listening on (https?:\/\/\S+)/.exec(err);
      if (m) res({ url: m[1]!, child });
    });
    child.on('exit', (c) => rej(new Error(`custos serve exited ${c}: ${err}`)));
  });
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((r) => {
    child.once('exit', () => r());
    child.kill('SIGTERM');
  });
}

/** `clients` loops of `op` for `seconds`; returns ops/s and p50/p99 in ms. */
async function load(op: () => Promise<void>): Promise<{ rps: number; p50_ms: number; p99_ms: number; errors: number }> {
  const lat: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await op();
          lat.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  lat.sort((a, b) => a - b);
  const at = (p: number) => Number((lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)] ?? NaN).toFixed(3));
  return { rps: Math.round(lat.length / seconds), p50_ms: at(50), p99_ms: at(99), errors };
}

function call(url: string, path: string, token: string, body: unknown, agent: http.Agent | https.Agent | false, ca?: Buffer): Promise<void> {
  const u = new URL(path, url);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((res, rej) => {
    const req = mod.request(u, { method: payload ? 'POST' : 'GET', agent, ...(ca ? { ca } : {}), headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json' } : {}) } }, (r) => {
      r.resume();
      r.on('end', () => (r.statusCode === 200 ? res() : rej(new Error(`HTTP ${r.statusCode}`))));
    });
    req.on('error', rej);
    req.end(payload);
  });
}

const dir = mkdtempSync(join(tmpdir(), 'custos-bench-tls-'));
try {
  const dataDir = join(dir, 'v');
  const token = /custos_[A-Za-z0-9_-]{43}/.exec(custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12']))![0];
  custos(['tls', 'init', '--data-dir', dataDir]);
  const ca = readFileSync(join(dataDir, 'tls', 'ca.pem'));
  const message = randomBytes(32).toString('base64');

  log(`plain HTTP, ${clients} keep-alive clients, ${seconds} s`);
  writeFileSync(join(dataDir, 'custos.toml'), '[log]\nlevel = "warn"\n', { mode: 0o600 });
  let s = await serve(dataDir);
  await call(s.url, '/v1/keys', token, { label: 'bench', algorithm: 'ed25519' }, false).catch(() => {});
  const plainAgent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const plain = await load(() => call(s.url, '/v1/keys/bench/sign', token, { message }, plainAgent));
  plainAgent.destroy();
  await stop(s.child);

  log(`TLS, ${clients} keep-alive clients, ${seconds} s`);
  writeFileSync(join(dataDir, 'custos.toml'), '[log]\nlevel = "warn"\n[api]\ntls_cert = "tls/server-chain.pem"\ntls_key = "tls/server.key"\n', { mode: 0o600 });
  s = await serve(dataDir);
  const tlsAgent = new https.Agent({ keepAlive: true, maxSockets: clients, ca });
  const tls = await load(() => call(s.url, '/v1/keys/bench/sign', token, { message }, tlsAgent, ca));
  tlsAgent.destroy();
  log(`TLS, a new connection per request (GET /healthz), ${clients} clients, ${seconds} s`);
  const handshakes = await load(() => call(s.url, '/healthz', token, undefined, false, ca));
  await stop(s.child);

  process.stdout.write(
    JSON.stringify(
      {
        benchmark: 'tls',
        seconds,
        clients,
        ed25519_sign_plain: plain,
        ed25519_sign_tls_keepalive: tls,
        ratio_tls_to_plain: Number((tls.rps / plain.rps).toFixed(3)),
        target_ratio: 0.7,
        new_tls_connections_per_second: handshakes.rps,
        new_tls_connection_p50_ms: handshakes.p50_ms,
      },
      null,
      2,
    ) + '\n',
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
