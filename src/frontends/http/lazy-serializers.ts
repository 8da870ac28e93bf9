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
  /**
   * Builds every serializer not built yet, one per turn of the event loop: how many this run
   * built, and which did not compile. Calls while a run is in progress share it.
   */
  warm(): Promise<{ built: number; failures: SerializerFailure[] }>;
  /** Ends a run in progress after the serializer it is building (the server closes). */
  stop(): void;
}

export function lazySerializers(eager: Factory = SerializerSelector()): LazySerializers {
  const pending: Array<() => SerializerFailure | null> = [];
  let running: Promise<{ built: number; failures: SerializerFailure[] }> | null = null;
  let stopped = false;
  const factory: Factory = (externalSchemas, options) => {
    const compile = eager(externalSchemas, options);
    return (route: Route) => {
      let serialize: ((doc: unknown) => string) | undefined;
      let failed: { error: unknown } | undefined;
      const build = (): ((doc: unknown) => string) => {
        if (serialize) return serialize;
        if (failed) throw failed.error;
        try {
          return (serialize = compile(route));
        } catch (e) {
          // Built once: the same schema fails the same way at every answer.
          failed = { error: e };
          throw e;
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
  const run = async () => {
    const failures: SerializerFailure[] = [];
    let built = 0;
    try {
      while (!stopped) {
        await new Promise<void>((r) => setImmediate(r));
        const next = pending.shift();
        if (!next || stopped) break;
        const failure = next();
        if (failure) failures.push(failure);
        else built++;
      }
    } finally {
      running = null;
    }
    return { built, failures };
  };
  return {
    factory,
    warm: () => (running ??= run()),
    stop: () => {
      stopped = true;
    },
  };
}

/** What the server runs once it listens: every serializer built, and what did not compile logged. */
export async function warmAndReport(serializers: LazySerializers, log: { error(o: object, msg: string): void; debug(o: object, msg: string): void }): Promise<void> {
  try {
    const { built, failures } = await serializers.warm();
    for (const f of failures) log.error({ route: `${f.method} ${f.url}`, status: f.status, error: f.error }, 'a response schema does not compile: answers with this status fail with 500');
    log.debug({ built, failed: failures.length }, 'response serializers built');
  } catch (e) {
    log.error({ error: e instanceof Error ? e.message : String(e) }, 'building the response serializers failed; each is built at its first answer instead');
  }
}
