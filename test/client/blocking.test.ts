/**
 * The synchronous client (src/client/blocking.ts) against a real `custos serve`: answers and the
 * API's errors come back from a call that blocks the calling thread, and a closed client, a dead
 * worker, a vault where nothing listens and a vault that never finishes answering each end in a
 * clear error rather than a hang. Also run from the built `dist/` without tsx, and a client left
 * open does not keep the process alive.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { MessagePort } from 'node:worker_threads';
import { BlockingCustosClient } from '../../src/client/blocking.js';
import { CustosApiError, CustosClient, CustosError, type KeyInfo } from '../../src/client/index.js';
import { custos, ROOT, serve } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'blocking client test passphrase' };

/** What a synchronous call throws (it must throw). */
function thrown(f: () => unknown): CustosError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof CustosError, `a CustosError, not ${String(e)}`);
    return e;
  }
  assert.fail('the call did not throw');
}

/** A port where nothing listens (taken, then released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

test('a synchronous call to a real vault: answers, the API errors with their fields, the calling thread blocked; close, a dead worker', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const dataDir = join(dir, 'v');
  const init = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV);
  assert.equal(init.status, 0, init.stderr);
  const token = /custos_[A-Za-z0-9_-]{43}/.exec(init.stdout)![0];
  const s = await serve(['--data-dir', dataDir], PASSENV);
  t.after(() => s.stop());

  const c = new BlockingCustosClient({ addr: s.url, token });
  t.after(() => c.close());

  // The thread is blocked for the whole call: a timer due before the answer has not fired.
  let fired = false;
  const timer = setTimeout(() => (fired = true), 0);
  const started = Date.now();
  const health = c.call<{ status: string }>('GET', '/healthz');
  const took = Date.now() - started;
  assert.equal(typeof health.status, 'string');
  assert.equal(fired, false, `the timer fired during a ${took} ms call: the thread was not blocked`);
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(fired, true);
  clearTimeout(timer);

  // A body goes as JSON, and the answer is the parsed body.
  const made = c.call<KeyInfo>('POST', '/v1/keys', { label: 'blocking-1', algorithm: 'ed25519', exportable: false });
  assert.equal(made.label, 'blocking-1');
  assert.equal(c.call<KeyInfo>('GET', '/v1/keys/blocking-1').id, made.id);

  // The API's errors come back as CustosApiError with the fields the async SDK gives.
  const missing = thrown(() => c.call('GET', '/v1/keys/no-such-key'));
  assert.ok(missing instanceof CustosApiError);
  const asyncClient = new CustosClient({ addr: s.url, token });
  t.after(() => asyncClient.close());
  const expected = await asyncClient.getKey('no-such-key').then(
    () => assert.fail('the key exists'),
    (e: unknown) => e as CustosApiError,
  );
  assert.equal(missing.code, 'key_not_found');
  assert.equal(missing.status, 404);
  assert.equal(missing.code, expected.code);
  assert.equal(missing.message, expected.message);
  assert.equal(missing.status, expected.status);
  assert.match(missing.requestId ?? '', /\S/, 'the request id of the failed call');
  assert.notEqual(missing.requestId, expected.requestId);

  const stranger = new BlockingCustosClient({ addr: s.url, token: 'custos_' + 'A'.repeat(43) });
  t.after(() => stranger.close());
  const denied = thrown(() => stranger.call('GET', '/v1/keys'));
  assert.ok(denied instanceof CustosApiError);
  assert.equal(denied.code, 'unauthorized');
  assert.equal(denied.status, 401);
  assert.equal(typeof denied.requestId, 'string');

  assert.equal(thrown(() => c.call('POST', '/v1/keys', { label: 'blocking-1', algorithm: 'ed25519', exportable: false })).code, 'label_taken');

  // A refusal with a tag (policy_denied:<rule type>) keeps it.
  c.call('POST', '/v1/policies', { format: 'json', source: JSON.stringify({ id: 'cap', applies_to: { keys: ['blocking-1'] }, rules: [{ id: 'burst', type: 'rate_limit', limit: 1, window: '1h', per: 'key' }] }) });
  const message = Buffer.from('a synchronous signature').toString('base64');
  const signed = c.call<{ signature: string }>('POST', '/v1/keys/blocking-1/sign', { message });
  assert.ok(signed.signature.length > 0);
  const refused = thrown(() => c.call('POST', '/v1/keys/blocking-1/sign', { message }));
  assert.ok(refused instanceof CustosApiError);
  assert.equal(refused.fullCode, 'policy_denied:rate_limit');
  assert.equal(refused.tag, 'rate_limit');
  assert.equal(refused.status, 403);

  // A body that is not JSON fails here, before anything is sent.
  assert.throws(() => c.call('POST', '/v1/keys', { n: 1n }), TypeError);
  assert.equal(c.call<{ status: string }>('GET', '/healthz').status, health.status, 'the client still works');

  // Closed: every later call says so.
  c.close();
  c.close();
  for (let i = 0; i < 2; i++) {
    const e = thrown(() => c.call('GET', '/healthz'));
    assert.equal(e.fullCode, 'bad_request:closed');
    assert.match(e.message, /closed/);
  }

  // A worker that dies during a call (here: a message it cannot handle, sent by hand) ends that
  // call and every later one with the reason, at once.
  const doomed = new BlockingCustosClient({ addr: s.url, token });
  t.after(() => doomed.close());
  assert.equal(doomed.call<{ status: string }>('GET', '/healthz').status, health.status);
  (doomed as unknown as { port: MessagePort }).port.postMessage(null);
  const t0 = Date.now();
  const died = thrown(() => doomed.call('GET', '/healthz'));
  assert.equal(died.fullCode, 'internal:worker');
  assert.match(died.message, /worker thread is dead/);
  assert.ok(Date.now() - t0 < 5_000);
  assert.equal(thrown(() => doomed.call('GET', '/healthz')).fullCode, 'internal:worker');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(thrown(() => doomed.call('GET', '/healthz')).fullCode, 'internal:worker');
});

test('a vault address where nothing listens gives a clear error quickly; one that never finishes answering ends at the timeout', { timeout: 60_000 }, async (t) => {
  const addr = `http://127.0.0.1:${await freePort()}`;
  const c = new BlockingCustosClient({ addr });
  t.after(() => c.close());
  for (const [method, body] of [['GET', undefined], ['POST', { label: 'x', algorithm: 'ed25519' }]] as const) {
    const started = Date.now();
    const e = thrown(() => c.call(method, method === 'GET' ? '/healthz' : '/v1/keys', body));
    assert.equal(e.fullCode, 'storage_unavailable:unreachable');
    assert.match(e.message, /Cannot reach the vault/);
    assert.ok(!(e instanceof CustosApiError));
    assert.ok(Date.now() - started < 10_000, `${method} took ${Date.now() - started} ms`);
  }

  // A server (in another process: this thread is blocked) that sends a byte every 100 ms and
  // never ends: the transport's idle timeout never fires, the client's wait does.
  const trickle = spawn(process.execPath, ['-e', `
    require('node:http').createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      setInterval(() => res.write(' '), 100);
    }).listen(0, '127.0.0.1', function () { console.log(this.address().port); });
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => trickle.kill('SIGKILL'));
  const port = await new Promise<string>((resolve) => trickle.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
  const slow = new BlockingCustosClient({ addr: `http://127.0.0.1:${port}`, timeoutMs: 300 });
  t.after(() => slow.close());
  const started = Date.now();
  const cpu = process.cpuUsage();
  const e = thrown(() => slow.call('GET', '/healthz'));
  const took = Date.now() - started;
  const used = process.cpuUsage(cpu);
  assert.equal(e.fullCode, 'storage_unavailable:unreachable');
  assert.match(e.message, /No answer from the vault/);
  assert.ok(took >= 300 && took < 20_000, `the wait ended after ${took} ms`);
  // Asleep in Atomics.wait, not spinning: the process used a fraction of a CPU meanwhile.
  assert.ok((used.user + used.system) / 1000 < took / 4, `${(used.user + used.system) / 1000} ms of CPU in a ${took} ms wait`);
});

test('from the built dist/ without tsx: the worker loads, and a client left open does not keep the process alive', { timeout: 60_000 }, async () => {
  const addr = `http://127.0.0.1:${await freePort()}`;
  const script = `
    import { BlockingCustosClient } from ${JSON.stringify(join(ROOT, 'dist', 'client', 'blocking.js'))};
    const c = new BlockingCustosClient({ addr: ${JSON.stringify(addr)} });
    try { c.call('GET', '/healthz'); } catch (e) { console.log(e.fullCode); }
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.error, undefined, 'the process exited by itself');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'storage_unavailable:unreachable');
});
