/** Operator shares end to end: the real `custos` executable, init → sealed serve → unseal. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomUUID } from 'node:crypto';
import { custos, serve } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';

test('a vault sealed by 2-of-3 operator shares starts sealed and opens with any two, across restarts and a re-key', async () => {
  const { dir, cleanup } = tempDir();
  const dataDir = join(dir, 'vault');
  const shareDir = join(dir, 'shares');
  let s: Awaited<ReturnType<typeof serve>> | undefined;
  try {
    const init = custos(['init', '--data-dir', dataDir, '--shares', '3', '--threshold', '2', '--share-dir', shareDir], { CUSTOS_PASSPHRASE: undefined });
    assert.equal(init.status, 0, init.stderr);
    const token = /Admin API token[^\n]*\n\s+(\S+)/.exec(init.stdout)![1]!;
    const files = readdirSync(shareDir).sort();
    assert.deepEqual(files, ['share-1-of-3.txt', 'share-2-of-3.txt', 'share-3-of-3.txt']);
    assert.equal(statSync(shareDir).mode & 0o777, 0o700);
    for (const f of files) assert.equal(statSync(join(shareDir, f)).mode & 0o777, 0o600);
    assert.ok(!init.stdout.includes(readFileSync(join(shareDir, files[0]!), 'utf8').trim()), 'shares written to files are not printed');
    const share = (i: number) => join(shareDir, files[i]!);

    s = await serve(['--data-dir', dataDir], { CUSTOS_PASSPHRASE: undefined });
    const api = { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    let st = custos(['status', '--json'], api);
    assert.equal(st.status, 5, 'status exits 5 while sealed');
    assert.deepEqual(JSON.parse(st.stdout), { sealed: true, seal: 'shares', threshold: 2, progress: 0 });
    const health = await fetch(`${s.url}/healthz`);
    assert.equal(health.status, 503);
    assert.equal(((await health.json()) as { status: string }).status, 'sealed');
    const list = custos(['keys', 'list'], api);
    assert.equal(list.status, 5);
    assert.match(list.stderr, /sealed/);

    let u = custos(['operator', 'unseal', '--share-file', share(2)], api);
    assert.equal(u.status, 0, u.stderr);
    assert.match(u.stdout, /1 of 2 shares given/);
    // A damaged share: refused with a sentence, progress kept.
    const bad = join(dir, 'bad.txt');
    const line = readFileSync(share(0), 'utf8').trim();
    const at = line.length - 20; // inside the base64 share
    writeFileSync(bad, line.slice(0, at) + (line[at] === 'A' ? 'B' : 'A') + line.slice(at + 1));
    u = custos(['operator', 'unseal', '--share-file', bad], api);
    assert.equal(u.status, 64);
    assert.match(u.stderr, /damaged/);
    assert.equal(JSON.parse(custos(['status', '--json'], api).stdout).progress, 1);
    u = custos(['operator', 'unseal', '--share-file', share(0)], api);
    assert.equal(u.status, 0, u.stderr);
    assert.match(u.stdout, /^unsealed/);
    assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
    const created = custos(['keys', 'create', '--label', 'k1', '--algorithm', 'ed25519'], api);
    assert.equal(created.status, 0, created.stderr);
    assert.equal(await s.stop(), 0);

    // A restart forgets: sealed again, progress zero; one share is not enough.
    s = await serve(['--data-dir', dataDir], { CUSTOS_PASSPHRASE: undefined });
    const api2 = { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    custos(['operator', 'unseal', '--share-file', share(1)], api2);
    assert.equal(await s.stop(), 0);
    s = await serve(['--data-dir', dataDir], { CUSTOS_PASSPHRASE: undefined });
    const api3 = { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    assert.equal(JSON.parse(custos(['status', '--json'], api3).stdout).progress, 0);

    // Re-key while serving sealed: new 2-of-2 shares; the old ones stop working.
    const newDir = join(dir, 'new-shares');
    const rk = custos(['operator', 'rekey', '--data-dir', dataDir, '--share-file', share(0), share(1), '--shares', '2', '--threshold', '2', '--share-dir', newDir]);
    assert.equal(rk.status, 0, rk.stderr);
    assert.equal(await s.stop(), 0);
    s = await serve(['--data-dir', dataDir], { CUSTOS_PASSPHRASE: undefined });
    const api4 = { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    u = custos(['operator', 'unseal', '--share-file', share(2)], api4);
    assert.equal(u.status, 64);
    assert.match(u.stderr, /not one of this vault's current shares/);
    for (const f of readdirSync(newDir)) assert.equal(custos(['operator', 'unseal', '--share-file', join(newDir, f)], api4).status, 0);
    const signed = custos(['sign', '--key', 'k1', '--in', '-'], api4, 'hello');
    assert.equal(signed.status, 0, signed.stderr);
  } finally {
    await s?.stop();
    cleanup();
  }
});

/** POST /v1/sys/unseal as any process on the host could: no token, any body. */
async function unseal(url: string, body: unknown): Promise<{ status: number; body: { code?: string; progress?: number; sealed?: boolean }; headers: Headers }> {
  const res = await fetch(`${url}/v1/sys/unseal`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as { code?: string; progress?: number }, headers: res.headers };
}

/** A 2-of-3 shares vault, its share lines, and a sealed `custos serve` on it (with `toml` as its custos.toml). */
async function sealedVault(dir: string, toml?: string): Promise<{ dataDir: string; shares: string[]; s: Awaited<ReturnType<typeof serve>> }> {
  const dataDir = join(dir, 'vault');
  const shareDir = join(dir, 'shares');
  const init = custos(['init', '--data-dir', dataDir, '--shares', '3', '--threshold', '2', '--share-dir', shareDir], { CUSTOS_PASSPHRASE: undefined });
  assert.equal(init.status, 0, init.stderr);
  const shares = readdirSync(shareDir).sort().map((f) => readFileSync(join(shareDir, f), 'utf8').trim());
  if (toml !== undefined) writeFileSync(join(dataDir, 'custos.toml'), toml);
  const s = await serve(['--data-dir', dataDir], { CUSTOS_PASSPHRASE: undefined });
  return { dataDir, shares, s };
}

test('a reset with an invalid share keeps the progress; a reset with a valid share starts again with that share', async () => {
  const { dir, cleanup } = tempDir();
  let s: Awaited<ReturnType<typeof serve>> | undefined;
  try {
    const v = await sealedVault(dir);
    s = v.s;
    const [a, b] = v.shares as [string, string];
    assert.equal((await unseal(s.url, { share: a })).body.progress, 1);
    const damaged = a.slice(0, -1) + (a.endsWith('0') ? '1' : '0');
    for (const share of ['garbage', damaged]) {
      const r = await unseal(s.url, { reset: true, share });
      assert.equal(r.status, 400);
      assert.equal(r.body.code, 'invalid_share');
      const st = (await (await fetch(`${s.url}/v1/sys/seal-status`)).json()) as { progress: number };
      assert.equal(st.progress, 1, `a reset with ${share === 'garbage' ? 'garbage' : 'a damaged share'} wiped the progress`);
    }
    const missing = await unseal(s.url, { reset: true });
    assert.equal(missing.status, 400);
    assert.equal((await (await fetch(`${s.url}/v1/sys/seal-status`)).json() as { progress: number }).progress, 1);
    // A valid reset: progress starts again at 1 with share b (so b alone does not unseal)...
    const reset = await unseal(s.url, { reset: true, share: b });
    assert.equal(reset.status, 200);
    assert.deepEqual(reset.body, { sealed: true, seal: 'shares', threshold: 2, progress: 1 });
    // ...and a given before the reset counts again, as the second share of the new attempt.
    const done = await unseal(s.url, { share: a });
    assert.equal(done.body.sealed, false);
  } finally {
    await s?.stop();
    cleanup();
  }
});

/** A share line with its check digits recomputed, as the format in keystore/shares.ts defines them. */
function reseal(body: string): string {
  return `${body}.${createHash('sha256').update(body, 'utf8').digest('hex').slice(0, 8)}`;
}

test('refused unseal attempts are logged, counted and audited without their bytes, slow the next attempt, and a burst gets 429 until the window has room', async () => {
  const { dir, cleanup } = tempDir();
  let s: Awaited<ReturnType<typeof serve>> | undefined;
  try {
    const v = await sealedVault(dir, '[unseal]\nmax_failures = 5\nwindow_seconds = 4\n');
    s = v.s;
    const [a, b] = v.shares as [string, string];
    const [prefix, vaultId, t, share64] = a.split('.') as [string, string, string, string];
    const foreign = reseal([prefix, randomUUID(), t, share64].join('.'));
    const altered = reseal([prefix, vaultId, t, (share64[0] === 'A' ? 'B' : 'A') + share64.slice(1)].join('.'));
    const damaged = a.slice(0, -1) + (a.endsWith('0') ? '1' : '0');
    assert.equal((await unseal(s.url, { share: a })).body.progress, 1);

    const attempts: Array<[unknown, string]> = [
      [{ share: 'garbage' }, 'malformed'],
      [{ share: damaged }, 'malformed'],
      [{ share: foreign }, 'other_vault'],
      [{ share: altered }, 'not_current'],
      [{ reset: true, share: 'garbage' }, 'malformed'],
    ];
    for (const [i, [body]] of attempts.entries()) {
      const started = performance.now();
      const r = await unseal(s.url, body);
      const took = performance.now() - started;
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.code, 'invalid_share');
      // After i refusals in a row the next one waits ~i × 100 ms (less the time the last answer took to leave).
      assert.ok(took >= i * 100 - 50, `attempt ${i + 1} after ${i} failures was answered in ${took.toFixed(0)} ms`);
    }
    // The window is full: even a valid share is answered 429 without being checked; progress kept.
    const limited = await unseal(s.url, { share: b });
    assert.equal(limited.status, 429);
    assert.equal(limited.body.code, 'rate_limited');
    const retryAfter = Number(limited.headers.get('retry-after'));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 4, `Retry-After: ${limited.headers.get('retry-after')}`);
    assert.equal(((await (await fetch(`${s.url}/v1/sys/seal-status`)).json()) as { progress: number }).progress, 1);

    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(metrics, /^custos_unseal_failures_total\{reason="invalid_share"\} 5$/m);
    assert.match(metrics, /^custos_unseal_failures_total\{reason="rate_limited"\} 1$/m);

    // Not a lock-out: once the oldest failure leaves the window, the valid share is checked and unseals.
    await new Promise((r) => setTimeout(r, retryAfter * 1000 + 100));
    const opened = await unseal(s.url, { share: b });
    assert.equal(opened.status, 200, JSON.stringify(opened.body));
    assert.equal(opened.body.sealed, false);

    const logs = s.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string; code?: string; problem?: string });
    const refusals = logs.filter((l) => l.msg === 'unseal attempt refused');
    assert.deepEqual(refusals.map((l) => [l.level, l.code, l.problem]), attempts.map(([, problem]) => [40, 'invalid_share', problem]));
    assert.equal(logs.filter((l) => l.level === 40 && l.code === 'rate_limited').length, 1);
    assert.equal(await s.stop(), 0);
    s = undefined;

    const tail = custos(['audit', 'tail', '--data-dir', v.dataDir, '-n', '50', '--json']);
    assert.equal(tail.status, 0, tail.stderr);
    const entries = tail.stdout.trim().split('\n').map((l) => JSON.parse(l) as { principal: string; operation: string; outcome: string; reason: string | null; details: Record<string, unknown> }).filter((e) => e.operation === 'unseal');
    assert.deepEqual(
      entries.map((e) => [e.principal, e.outcome, e.reason, e.details.problem ?? e.details.progress ?? null]),
      [
        ['unauthenticated', 'ok', null, 1],
        ...attempts.map(([, problem]) => ['unauthenticated', 'denied', 'invalid_share', problem]),
        ['unauthenticated', 'denied', 'rate_limited', null],
        ['unauthenticated', 'ok', null, 2],
      ],
    );
    // No share, valid or not, reached the log or the audit log, whole or as its base64 part.
    for (const line of [a, b, damaged, foreign, altered]) {
      const secret = line.split('.')[3]!;
      assert.ok(!tail.stdout.includes(secret) && !logs.some((l) => JSON.stringify(l).includes(secret)), 'share bytes were written out');
    }
    // Entries appended while sealed (no signing key) are part of a chain that verifies.
    const verify = custos(['audit', 'verify', '--data-dir', v.dataDir]);
    assert.equal(verify.status, 0, verify.stdout + verify.stderr);
  } finally {
    await s?.stop();
    cleanup();
  }
});
