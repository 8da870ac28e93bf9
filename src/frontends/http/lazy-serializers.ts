/**
 * Fastify's response serializers, compiled at a route's first answer with that status instead
 * of all at start. Fastify builds one fast-json-stringify function per route and status when
 * the server starts: for this API about 0.1 s of `custos serve`'s start-up, mostly for routes a
 * given deployment never answers. The function built is the same one, from the same compiler
 * and schema; only when it is built changes. (Request validation is compiled at start, as
 * before: an invalid body is refused by code that exists before the first request.)
 */
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';

type Factory = ReturnType<typeof SerializerSelector>;

export function lazySerializers(eager: Factory = SerializerSelector()): Factory {
  return (externalSchemas, options) => {
    const compile = eager(externalSchemas, options);
    return (route) => {
      let serialize: ((doc: unknown) => string) | undefined;
      return (doc) => (serialize ??= compile(route))(doc);
    };
  };
}
