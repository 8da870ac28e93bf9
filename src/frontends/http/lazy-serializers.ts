/**
 * Fastify's response serializers, built after the server listens instead of before. Fastify
 * builds one fast-json-stringify function per route and status while the server starts: for
 * this API about 0.1 s of `custos serve`'s start-up. Here each is built by `warm()`, one per
 * turn of the event loop once the server listens (requests are served in between), or at its
 * first use if that comes sooner. The function built is the same one, from the same compiler
 * and schema; only when it is built changes. A schema that does not compile is reported by
 * `warm()` with its route (the server logs it at start), and every answer it would have
 * written fails closed, as Fastify's own does: a 500, never the unserialized object. (Request
 * validation is still compiled before the server listens: an invalid body is refused by code
 * that exists before the first request.)
 */
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';

type Factory = ReturnType<typeof SerializerSelector>;
type Route = Parameters<ReturnType<Factory>>[0];

export interface SerializerFailure {
  method: string;
  url: string;
  status: string;
  error: string;
}

export interface LazySerializers {
  /** What Fastify's schema controller takes (`schemaController.compilersFactory.buildSerializer`). */
  factory: Factory;
  /** Builds every serializer not built yet, one per turn of the event loop: how many were built, and which did not compile. */
  warm(): Promise<{ built: number; failures: SerializerFailure[] }>;
}

export function lazySerializers(eager: Factory = SerializerSelector()): LazySerializers {
  const pending: Array<() => SerializerFailure | null> = [];
  const factory: Factory = (externalSchemas, options) => {
    const compile = eager(externalSchemas, options);
    return (route: Route) => {
      let serialize: ((doc: unknown) => string) | undefined;
      let failed: unknown;
      const build = (): ((doc: unknown) => string) => {
        if (serialize) return serialize;
        if (failed !== undefined) throw failed;
        try {
          return (serialize = compile(route));
        } catch (e) {
          // Built once: the same schema fails the same way at every answer.
          failed = e ?? new Error('the serializer did not compile');
          throw failed;
        }
      };
      pending.push(() => {
        try {
          build();
          return null;
        } catch (e) {
          return { method: route.method, url: route.url, status: route.httpStatus, error: e instanceof Error ? e.message : String(e) };
        }
      });
      return (doc) => build()(doc);
    };
  };
  return {
    factory,
    async warm() {
      const failures: SerializerFailure[] = [];
      let built = 0;
      while (pending.length > 0) {
        await new Promise<void>((r) => setImmediate(r));
        const failure = pending.shift()!();
        if (failure) failures.push(failure);
        else built++;
      }
      return { built, failures };
    },
  };
}
