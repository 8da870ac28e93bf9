/**
 * Response serializers built once the server listens (src/frontends/http/lazy-serializers.ts):
 * nothing is compiled before, each route and status is compiled once (at its first use if that
 * comes first), what is built is fast-json-stringify's own function, which writes only the
 * fields the schema names, and a schema that does not compile is named and fails closed. The
 * last test listens with the real API: every one of its response schemas compiles, as they
 * all had to when Fastify built them before listening.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import { lazySerializers, warmAndReport } from '../../../src/frontends/http/lazy-serializers.js';
import { Writable } from 'node:stream';
import pino from 'pino';
import { buildHttpServer } from '../../../src/frontends/http/server.js';
import { Metrics } from '../../../src/frontends/http/metrics.js';
import { makeVault } from '../../helpers/tmpvault.js';

const route = (httpStatus: string, schema: unknown) => ({ method: 'GET', url: '/v1/x', httpStatus, schema });

function counting() {
  const eager = SerializerSelector();
  const count = { compiled: 0 };
  const lazy = lazySerializers((external, options) => {
    const compile = eager(external, options);
    return (r) => {
      count.compiled++;
      return compile(r);
    };
  });
  return { lazy, count };
}

test('a serializer is compiled at its first use or by warm(), once, and not before', async () => {
  const { lazy, count } = counting();
  const compiler = lazy.factory({}, {});
  const ok = compiler(route('200', { type: 'object', properties: { a: { type: 'string' } } }));
  compiler(route('404', { type: 'object', properties: { code: { type: 'string' } } }));
  assert.equal(count.compiled, 0, 'compiled before warm() or a use');
  assert.equal(ok({ a: 'x' }), '{"a":"x"}');
  assert.equal(ok({ a: 'y' }), '{"a":"y"}');
  assert.equal(count.compiled, 1);
  assert.deepEqual(await lazy.warm(), { built: 2, failures: [] });
  assert.equal(count.compiled, 2, 'warm() builds the one not built yet, and not the other again');
  assert.deepEqual(await lazy.warm(), { built: 0, failures: [] });
  assert.equal(count.compiled, 2);
});

test('what is written is what the schema names: a field it does not name never leaves', () => {
  const serialize = lazySerializers().factory({}, {})(route('200', { type: 'object', properties: { id: { type: 'string' }, public_key: { type: 'string' } } }));
  assert.equal(serialize({ id: 'k1', public_key: 'AAAA', secret: 'must not leave' }), '{"id":"k1","public_key":"AAAA"}');
});

test('a schema that does not compile is named by warm() and every answer through it throws, once compiled', async () => {
  const { lazy, count } = counting();
  const broken = lazy.factory({}, {})(route('500', { type: 'object', properties: { a: { $ref: '#/definitions/missing' } } }));
  const { failures } = await lazy.warm();
  assert.equal(failures.length, 1);
  assert.deepEqual({ ...failures[0], error: undefined }, { method: 'GET', url: '/v1/x', status: '500', error: undefined });
  assert.throws(() => broken({ a: 'secret' }));
  assert.throws(() => broken({ a: 'secret' }));
  assert.equal(count.compiled, 1, 'a failed schema is not compiled again at every answer');
});

test('warm() calls while a run is in progress share it; stop() ends it; a first use still builds', async () => {
  const { lazy, count } = counting();
  const compiler = lazy.factory({}, {});
  const uses = ['200', '201', '400', '404'].map((st) => compiler(route(st, { type: 'object', properties: { a: { type: 'string' } } })));
  const [a, b] = await Promise.all([lazy.warm(), lazy.warm()]);
  assert.equal(a, b);
  assert.deepEqual(a, { built: 4, failures: [] });
  assert.equal(count.compiled, 4);

  const late = counting();
  const later = late.lazy.factory({}, {});
  const one = later(route('200', { type: 'object', properties: { a: { type: 'string' } } }));
  later(route('404', { type: 'object', properties: { a: { type: 'string' } } }));
  late.lazy.stop();
  assert.deepEqual(await late.lazy.warm(), { built: 0, failures: [] });
  assert.equal(late.count.compiled, 0);
  assert.equal(one({ a: 'x' }), '{"a":"x"}');
  assert.equal(uses[0]!({ a: 'y' }), '{"a":"y"}');
});

test('warmAndReport logs each schema that does not compile with its route, and never throws', async () => {
  const { lazy } = counting();
  lazy.factory({}, {})(route('500', { type: 'object', properties: { a: { $ref: '#/definitions/missing' } } }));
  const errors: Array<Record<string, unknown>> = [];
  const debug: Array<Record<string, unknown>> = [];
  await warmAndReport(lazy, { error: (o) => errors.push(o as Record<string, unknown>), debug: (o) => debug.push(o as Record<string, unknown>) });
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.route, 'GET /v1/x');
  assert.equal(errors[0]!.status, '500');
  assert.deepEqual(debug, [{ built: 0, failed: 1 }]);
  // A logger that throws is not an unhandled rejection.
  const throwing = counting();
  throwing.lazy.factory({}, {})(route('500', { type: 'object', properties: { a: { $ref: '#/definitions/missing' } } }));
  let last: Record<string, unknown> | undefined;
  await warmAndReport(throwing.lazy, {
    error: (o) => {
      last = o as Record<string, unknown>;
      if ('route' in (o as object)) throw new Error('log stream closed');
    },
    debug: () => {},
  });
  assert.match(String(last?.error), /log stream closed/);
});

test('a server that listens builds its response serializers by itself, and every response schema of the API compiles', async () => {
  const tv = await makeVault();
  let logged = '';
  const sink = new Writable({
    write(chunk, _enc, done) {
      logged += String(chunk);
      done();
    },
  });
  const app = await buildHttpServer({ vault: tv.vault, metrics: new Metrics(), logger: pino({ level: 'debug' }, sink) });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const deadline = Date.now() + 20_000;
    while (!logged.includes('response serializers built') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const line = logged.split('\n').find((l) => l.includes('response serializers built'));
    assert.ok(line, 'the server did not build its serializers after listening');
    const { built, failed } = JSON.parse(line) as { built: number; failed: number };
    assert.equal(failed, 0);
    assert.ok(built > 100, `only ${built} built`);
  } finally {
    await app.close();
    await tv.dispose();
  }
});
