/**
 * Response serializers built at a route's first answer (src/frontends/http/lazy-serializers.ts):
 * nothing is compiled at start, each route and status is compiled once, and what is built is
 * fast-json-stringify's own function, which writes only the fields the schema names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import { lazySerializers } from '../../../src/frontends/http/lazy-serializers.js';

const route = (httpStatus: string, schema: unknown) => ({ method: 'GET', url: '/v1/x', httpStatus, schema });

test('a serializer is compiled at its first use, once, and not at start', () => {
  const eager = SerializerSelector();
  let compiled = 0;
  const lazy = lazySerializers((external, options) => {
    const compile = eager(external, options);
    return (r) => {
      compiled++;
      return compile(r);
    };
  });
  const compiler = lazy({}, {});
  const ok = compiler(route('200', { type: 'object', properties: { a: { type: 'string' } } }));
  const notFound = compiler(route('404', { type: 'object', properties: { code: { type: 'string' } } }));
  assert.equal(compiled, 0, 'compiled at start');
  assert.equal(ok({ a: 'x' }), '{"a":"x"}');
  assert.equal(ok({ a: 'y' }), '{"a":"y"}');
  assert.equal(compiled, 1);
  assert.equal(notFound({ code: 'not_found' }), '{"code":"not_found"}');
  assert.equal(compiled, 2);
});

test('what is written is what the schema names: a field it does not name never leaves', () => {
  const serialize = lazySerializers()({}, {})(route('200', { type: 'object', properties: { id: { type: 'string' }, public_key: { type: 'string' } } }));
  assert.equal(serialize({ id: 'k1', public_key: 'AAAA', secret: 'must not leave' }), '{"id":"k1","public_key":"AAAA"}');
});
