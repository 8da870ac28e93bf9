/**
 * Every benchmark in bench/, one after another, and one JSON summary of what matters in each:
 * the ratios against the baselines measured in the same runs, and the targets they aim at.
 *
 *   npm run bench:all                       (node --import tsx bench/all.ts [--quick])
 *
 * Each benchmark runs in a child process (as it would alone) and prints its own JSON; this
 * keeps the full documents under `runs` and lifts the headline figures into `summary`.
 * `--quick` shortens every run (for a smoke test of the harness, not for numbers; the test
 * suite runs it, test/bench/all.test.ts). A
 * benchmark whose component is missing (SoftHSM2, OpenSSH) is reported as skipped. Timings
 * never make the exit status non-zero.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { daemonNodeFlags } from './lib/daemon-flags.js';

const quick = process.argv.includes('--quick');
const here = fileURLToPath(new URL('.', import.meta.url));

interface Bench {
  name: string;
  script: string;
  args: string[];
  quickArgs: string[];
}

const BENCHES: Bench[] = [
  { name: 'http-sign', script: 'http-sign.ts', args: ['--seconds', '5'], quickArgs: ['--seconds', '1', '--algorithms', 'ed25519'] },
  { name: 'ssh-agent', script: 'ssh-agent.ts', args: ['--seconds', '5'], quickArgs: ['--seconds', '1'] },
  { name: 'privval', script: 'privval.ts', args: ['--votes', '1000'], quickArgs: ['--votes', '100'] },
  { name: 'pkcs11', script: 'pkcs11.ts', args: ['--keys', '1000', '--seconds', '2', '--store-keys', '2000'], quickArgs: ['--keys', '50', '--seconds', '0.5', '--store-keys', '0'] },
  { name: 'wallet', script: 'wallet.ts', args: ['--seconds', '2'], quickArgs: ['--seconds', '0.3'] },
  { name: 'policy', script: 'policy.ts', args: ['--iterations', '20000'], quickArgs: ['--iterations', '500'] },
  { name: 'tls', script: 'tls.ts', args: ['--seconds', '5'], quickArgs: ['--seconds', '1', '--clients', '4'] },
  { name: 'store', script: 'store.ts', args: ['--keys', '100000', '--signs', '2000'], quickArgs: ['--keys', '3000', '--signs', '200'] },
  { name: 'accounts', script: 'accounts.ts', args: ['--logins', '200', '--signs', '2000'], quickArgs: ['--logins', '10', '--signs', '100'] },
  { name: 'threshold', script: 'threshold.ts', args: ['--votes', '300'], quickArgs: ['--votes', '30'] },
  { name: 'lightning', script: 'lightning.ts', args: ['--objects', '100000', '--updates', '1000'], quickArgs: ['--objects', '1000', '--updates', '100'] },
  { name: 'lightning-signer', script: 'lightning-signer.ts', args: ['--rounds', '300'], quickArgs: ['--rounds', '30'] },
  { name: 'startup', script: 'startup.ts', args: ['--runs', '10'], quickArgs: ['--runs', '1'] },
];

function run(b: Bench): Promise<{ ok: boolean; json?: Record<string, unknown>; error?: string; seconds: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    // With the custos executable's node flags: several benchmarks hold the vault in their own
    // process (privval's one validator, the store, policies), standing in for the daemon.
    const child = spawn(process.execPath, [...daemonNodeFlags(), '--import', 'tsx', `${here}${b.script}`, ...(quick ? b.quickArgs : b.args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err = (err + d).slice(-2000);
      process.stderr.write(d);
    });
    child.on('exit', (code) => {
      const seconds = (Date.now() - started) / 1000;
      const start = out.indexOf('{');
      try {
        if (code !== 0 || start < 0) throw new Error(`exit ${code}`);
        resolve({ ok: true, json: JSON.parse(out.slice(start)) as Record<string, unknown>, seconds });
      } catch {
        resolve({ ok: false, error: err.trim().split('\n').slice(-3).join(' ') || `exit ${code}`, seconds });
      }
    });
  });
}

type J = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The headline of each benchmark: its ratios to the same-run baselines, and its target. */
const HEADLINES: Record<string, (j: J) => Record<string, unknown>> = {
  store: (j) => ({
    sqlite_create_keys_per_s: j.sqlite?.create_keys_per_s,
    postgres_create_keys_per_s: j.postgres?.create_keys_per_s,
    sqlite_sign_ratio_large_to_unprepared_1000: j.sqlite?.ratio_p50_large_to_unprepared_1000,
    postgres_sign_ratio_large_to_unprepared_1000: j.postgres?.ratio_p50_large_to_unprepared_1000,
    sqlite_sign_ratio_large_to_1000: j.sqlite?.ratio_p50_large_to_1000,
    postgres_sign_ratio_large_to_1000: j.postgres?.ratio_p50_large_to_1000,
    target: 'sign p50 at the full count within 1.2x of the p50 at 1,000 keys',
  }),
  accounts: (j) => ({
    logins_per_s_one_core: j.login_server?.logins_per_s_one_core,
    session_sign_vs_token_sign_p50: j.ratio_p50_session_to_token,
    login_start_unknown_vs_real_name_p50: j.ratio_p50_unknown_to_real,
  }),
  'http-sign': (j) => ({
    ed25519_16_clients_rps: j.http?.find((r: J) => r.algorithm === 'ed25519' && r.clients === 16)?.rps,
    ed25519_16_clients_vs_trivial_http: j.aim?.ed25519_16_clients_vs_trivial_http,
    ed25519_16_clients_vs_raw_sign: j.aim?.ed25519_16_clients_vs_raw,
    ed25519_1_client_p50_ms: j.http?.find((r: J) => r.algorithm === 'ed25519' && r.clients === 1)?.p50_ms,
    target: 'ed25519 at 16 clients ≥ 0.5 of a trivial Fastify endpoint',
    met: j.aim?.met,
  }),
  'ssh-agent': (j) => {
    const at = (agent: string, c: number) => j.results?.find((r: J) => r.agent === agent && r.connections === c);
    return {
      custos_8_rps: at('custos', 8)?.rps,
      openssh_8_rps: at('openssh', 8)?.rps,
      rps_ratio_8: at('custos', 8) && at('openssh', 8) ? Math.round((1000 * at('custos', 8).rps) / at('openssh', 8).rps) / 1000 : undefined,
      rps_ratio_1: at('custos', 1) && at('openssh', 1) ? Math.round((1000 * at('custos', 1).rps) / at('openssh', 1).rps) / 1000 : undefined,
      p99_ms_8: { custos: at('custos', 8)?.p99_ms, openssh: at('openssh', 8)?.p99_ms },
      p99_ms_1: { custos: at('custos', 1)?.p99_ms, openssh: at('openssh', 1)?.p99_ms },
      target: '≥ 3× OpenSSH ssh-agent at 8 connections, ≥ 1× at 1, each with a lower p99',
      met: j.goal?.met,
    };
  },
  startup: (j) => ({
    version_p50_ms: j.version?.p50_ms,
    serve_dev_ready_p50_ms: j.serve_dev_ready?.p50_ms,
    node_start_exit_p50_ms: j.baseline?.node_start_exit?.p50_ms,
    target: 'custos --version ≤ 0.3 s, serve --dev ready ≤ 1 s',
    met: j.aim?.met,
  }),
  privval: (j) => ({
    in_process_p50_ms: j.one_validator?.p50_ms,
    in_process_p50_vs_fsync_plus_sign: j.goal?.p50_vs_fsync_plus_sign,
    end_to_end_p50_ms: j.end_to_end?.p50_ms,
    end_to_end_p50_vs_ping_fsync_sign: j.goal?.end_to_end_p50_vs_ping_fsync_sign,
    ten_validators_votes_per_s: j.ten_validators?.votes_per_s,
    target: 'p50 ≤ 1.5× the floor, in process and end to end',
    met: j.goal?.met,
  }),
  pkcs11: (j) => ({
    custos_vs_raw_pkcs11js_8_callers: Object.fromEntries(Object.entries(j.sign ?? {}).map(([alg, v]) => [alg, (v as J).custos_ratio_8])),
    wrapped_custos_vs_token_8_callers: Object.fromEntries(Object.entries(j.wrapped_sign ?? {}).filter(([, v]) => typeof v === 'object').map(([alg, v]) => [alg, (v as J).custos_vs_token_8])),
  }),
  wallet: (j) => ({
    derive_and_sign_depth5_vs_raw_sign: Object.fromEntries(Object.entries(j.derive_and_sign_depth5 ?? {}).map(([k, v]) => [k, (v as J).ratio_to_raw_sign])),
    psbt_2in_vs_raw_sign: Object.fromEntries(Object.entries(j.psbt_2in_p2wpkh ?? {}).map(([k, v]) => [k, (v as J).ratio_to_raw_sign])),
  }),
  tls: (j) => ({
    ed25519_tls_keepalive_vs_plain: j.ratio_tls_to_plain,
    new_tls_connections_per_second: j.new_tls_connections_per_second,
    target: 'TLS with keep-alive ≥ 0.7 of plain HTTP',
    met: typeof j.ratio_tls_to_plain === 'number' ? j.ratio_tls_to_plain >= j.target_ratio : false,
  }),
  threshold: (j) => ({
    end_to_end_2of3_p50_ms: j.threshold_2of3_end_to_end?.p50_ms,
    end_to_end_2of3_p99_ms: j.threshold_2of3_end_to_end?.p99_ms,
    p50_vs_horcrux: j.ratios?.p50_vs_horcrux,
    p50_vs_floor: j.ratios?.p50_vs_floor_ping_fsync_library_session,
    target: 'below Horcrux published p50 19 ms / p99 30 ms',
    met: j.aim?.met,
  }),
  lightning: (j) => ({
    update_p50_ms_at_100: j.update_at_100?.p50_ms,
    update_p50_ms_at_objects: j.update_at_large?.p50_ms,
    p50_large_to_100: j.ratios?.p50_large_to_100,
    update_p50_to_store_commit_p50: j.ratios?.update_p50_to_store_commit_p50,
    target: 'an update at 100,000 channels within 1.2x of at 100',
    met: typeof j.ratios?.p50_large_to_100 === 'number' ? j.ratios.p50_large_to_100 <= 1.2 : false,
  }),
  'lightning-signer': (j) => ({
    round_p50_ms: j.calls?.round?.p50_ms,
    sign_counterparty_p50_ms: j.calls?.sign_counterparty?.p50_ms,
    round_p50_vs_fsync: j.calls?.round?.p50_vs_fsync,
  }),
  policy: (j) => ({ per_rules_vs_ed25519_sign_p50: Array.isArray(j.policy) ? Object.fromEntries(j.policy.map((p: J) => [`${p.rules}_rules_${p.stateful_rules}_stateful`, p.ratio_to_sign_p50])) : undefined }),
};

const runs: Record<string, unknown> = {};
const summary: Record<string, unknown> = {};
for (const b of BENCHES) {
  process.stderr.write(`[bench:all] ${b.name}\n`);
  const r = await run(b);
  runs[b.name] = r.ok ? r.json : { skipped: r.error };
  summary[b.name] = r.ok ? { ...HEADLINES[b.name]!(r.json as J), seconds: Math.round(r.seconds) } : { skipped: r.error };
}
process.stdout.write(JSON.stringify({ summary, runs }, null, 2) + '\n');
