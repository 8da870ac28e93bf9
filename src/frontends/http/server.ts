/**
 * The HTTP front end: JSON over /v1, bearer tokens, an OpenAPI document generated from the
 * route schemas, /healthz and Prometheus /metrics. It decodes requests into vault calls and
 * encodes the answers; every decision is the vault's.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { purposeOf } from '../../core/purpose.js';
import swagger from '@fastify/swagger';
import { randomUUID } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';
import { CustosError, isCustosError } from '../../core/errors.js';
import { base64ToBytes, bytesToBase64, bytesToHex, hexToBytes, utf8 } from '../../core/bytes.js';
import type { Algorithm, AuditEntry, HashName, KeyRecord, Principal, RsaPadding, SignatureEncoding, SignOptions, SignPayload } from '../../core/types.js';
import type { ImportFormat } from '../../keystore/import.js';
import type { PublicFormat } from '../../crypto/public-keys.js';
import type { PolicyVersion } from '../../policy/policy-set.js';
import type { PolicyFormat } from '../../policy/document.js';
import type { PayloadType } from '../../policy/model.js';
import type { BitcoinNetwork } from '../../wallet/psbt.js';
import { authorize, forbidden, hasKeyScope, OPERATIONS, permits, publicKeyFormats, refInScope, type PrincipalRequest, type Vault } from '../../vault/vault.js';
import type { Kem } from '../../crypto/ecies.js';
import type { ApprovalRequest } from '../../vault/approvals.js';
import { credentialsOf, ROUTE_OPERATIONS } from './auth.js';
import type { Metrics } from './metrics.js';
import * as S from './schemas.js';
import { accountRoutes } from './accounts.js';
import { clusterRoutes } from './cluster.js';
import { lightningRoutes } from './lightning.js';
import { lightningChannelRoutes } from './lightning-channels.js';
import { torRoutes } from './tor.js';
import { lazySerializers, warmAndReport } from './lazy-serializers.js';
import { uiRoutes } from './ui.js';
import type { ClusterApi } from '../../core/cluster.js';

/** Keys per unit (one transaction) of a batch creation. */
const BATCH_CHUNK = 100;

/** The seal state the daemon exposes while the vault waits for operator shares. */
export interface SealStatus {
  sealed: boolean;
  seal: 'passphrase' | 'shares' | 'hsm';
  /** Shares needed and given so far, while sealed by shares (or waiting for recovery shares). */
  threshold?: number;
  progress?: number;
  /** Why an HSM-sealed vault is waiting for recovery shares. */
  reason?: string;
}

/** One call of the unseal route: what the gate logs and audits besides the share itself. */
export interface UnsealAttempt {
  /** A valid share first forgets the shares given so far; an invalid one changes nothing. */
  reset?: boolean;
  /** The caller's address (the route needs no token, so this is all that is known of it). */
  remote?: string;
  requestId?: string;
}

export interface SealGate {
  /** The vault once unsealed, else null. */
  vault(): Vault | null;
  status(): SealStatus;
  /**
   * Adds an operator share; unseals (and starts every front end) when the threshold is reached.
   * Refused attempts are limited: it may reject with `rate_limited` without checking the share.
   */
  submitShare(line: string, attempt?: UnsealAttempt): Promise<SealStatus>;
  /** While attempts are rate limited, the seconds until they are checked again; else 0. */
  retryAfterSeconds(): number;
}

/** Health of the parts a request depends on beyond the vault itself (HSM tokens). */
export type HealthCheck = () => Array<{ component: string; ok: boolean; detail?: string }>;

export interface HttpOptions {
  /** The vault, or a gate that yields it once operators have unsealed it. */
  vault?: Vault;
  gate?: SealGate;
  health?: HealthCheck;
  metrics: Metrics;
  /** A pino logger; silent when absent. */
  logger?: FastifyBaseLogger;
  /** Maximum request body, bytes. */
  bodyLimit?: number;
  /** The daemon's CometBFT connectors, for GET /v1/privval. */
  privvalStatus?: () => Promise<
    Array<{
      name: string;
      chainId: string;
      address: string;
      dialect: string;
      key: string;
      state: string;
      connectedSince?: string;
      lastSigned?: { height: string; round: number; step: number };
      watermark: { height: string; round: number; step: number } | null;
      refusals: number;
      signatures: number;
      hint?: string;
    }>
  >;
  /** The daemon's ssh-agent sockets, for GET /v1/ssh-agents. */
  agentStatus?: () => Array<{ name: string; socket: string; keys: string[]; torKeys: string[]; maxConnections: number; listening: boolean; connections: number; locked: boolean }>;
  /** Serve HTTPS with these options (daemon/tls.ts); plain HTTP, loopback only, without. */
  https?: SecureContextOptions;
  /** This node as a cosigner ([cluster]), for the /v1/cluster routes; null or absent: not one. */
  cluster?: () => ClusterApi | null;
  /** The daemon's reload (SIGHUP), for POST /v1/reload. */
  reload?: () => Promise<{ applied: boolean; privval: unknown; sshAgent: unknown; restartNeeded: string[] }>;
  version?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** A route that needs no API token. */
    public?: boolean;
    /** A route any authenticated principal may call (it answers about the caller only). */
    anyPrincipal?: boolean;
  }
}

export function keyView(k: KeyRecord & { corrupt?: true }) {
  const f = publicKeyFormats(k);
  return {
    ...(k.corrupt ? { corrupt: true } : {}),
    id: k.id,
    label: k.label,
    algorithm: k.algorithm,
    state: k.state,
    exportable: k.exportable,
    purpose: purposeOf(k),
    origin: k.origin,
    created_at: k.createdAt,
    updated_at: k.updatedAt,
    attributes: k.attributes,
    public_key: { raw: bytesToBase64(f.raw), raw_hex: bytesToHex(f.raw), spki_pem: f.spkiPem, openssh: f.openssh },
  };
}

function approvalView(a: ApprovalRequest) {
  return {
    id: a.id,
    created_at: a.createdAt,
    expires_at: a.expiresAt,
    requester: a.requester,
    key_id: a.keyId,
    key_label: a.keyLabel,
    operation: a.operation,
    summary: a.summary,
    required: a.required,
    approved_by: a.approvedBy,
    approvers: a.approvers,
  };
}

function auditView(e: AuditEntry) {
  return {
    seq: e.seq,
    ts: e.ts,
    request_id: e.requestId,
    principal: e.principal,
    operation: e.operation,
    key_id: e.keyId,
    key_label: e.keyLabel,
    outcome: e.outcome,
    reason: e.reason,
    details: e.details,
    hash: bytesToHex(e.hash),
    // false: written by a sealed daemon (no key, so no MAC); anyone able to write the
    // database could have appended such an entry.
    authenticated: e.mac != null,
  };
}

interface SignBody {
  path?: string;
  message?: string;
  digest?: string;
  aux_rand?: string;
  encoding?: SignatureEncoding;
  hash?: HashName;
  padding?: RsaPadding;
  signature?: string;
}

function payloadOf(body: SignBody): SignPayload {
  if ((body.message === undefined) === (body.digest === undefined)) {
    throw new CustosError('bad_request', 'Send exactly one of "message" or "digest" (base64).');
  }
  return body.message !== undefined ? { kind: 'message', bytes: base64ToBytes(body.message, 'message') } : { kind: 'digest', bytes: base64ToBytes(body.digest!, 'digest') };
}

function optionsOf(body: SignBody): SignOptions {
  const o: SignOptions = {};
  if (body.encoding !== undefined) o.encoding = body.encoding;
  if (body.hash !== undefined) o.hash = body.hash;
  if (body.padding !== undefined) o.padding = body.padding;
  if (body.aux_rand !== undefined) o.auxRand = base64ToBytes(body.aux_rand, 'aux_rand');
  return o;
}

export const REQUEST_TIMEOUT_MS = 30_000;
export const HEADERS_TIMEOUT_MS = 10_000;
export const MAX_HEADER_BYTES = 16 * 1024;

export async function buildHttpServer(opts: HttpOptions): Promise<FastifyInstance> {
  const { metrics } = opts;
  const vault = (): Vault => {
    const v = opts.gate ? opts.gate.vault() : opts.vault;
    if (!v) throw new CustosError('vault_sealed', 'The vault is sealed: operators must unseal it first (`custos operator unseal`); `custos status` shows the progress.');
    return v;
  };
  const sealStatus = (): SealStatus => opts.gate?.status() ?? { sealed: false, seal: 'passphrase' };
  // Limits a reviewer checks (README "HTTP limits"): the whole request must arrive within
  // REQUEST_TIMEOUT_MS (headers within HEADERS_TIMEOUT_MS), headers are at most 16 KiB, a
  // keep-alive connection idles at most 72 s. No socket inactivity timeout: a signature may
  // wait for a person's approval with nothing on the wire.
  const limits = { maxHeaderSize: MAX_HEADER_BYTES };
  const serializers = lazySerializers();
  const app = Fastify({
    ...(opts.https ? { https: { ...opts.https, ...limits } } : { http: limits }),
    requestTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: 72_000,
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    bodyLimit: opts.bodyLimit ?? 512 * 1024,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(given) ? given : randomUUID();
    },
    // Strict validation: unknown fields are errors, not silently removed; no type coercion.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true } },
    // Response serializers are built once the server listens, not before (lazy-serializers.ts).
    schemaController: { compilersFactory: { buildSerializer: serializers.factory } },
    // Fastify's two info lines per request cost ~8% of a signing request; the onResponse hook
    // below logs each request once, at debug (set [log] level = "debug" for an access log).
    // Fastify 5 takes this through a LogController: the top-level disableRequestLogging
    // option is deprecated (FSTDEP023, https://fastify.dev/docs/latest/Reference/Warnings/).
    logController: new LogController({ disableRequestLogging: true }),
    // On shutdown: idle keep-alive sockets close at once, requests in flight finish, and new
    // requests on open connections get 503.
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Longer than the schema's 128-character key reference, so the schema gives the error.
    // A router option: at the top level it is deprecated (FSTDEP022).
    routerOptions: { maxParamLength: 256 },
    // URLs the router cannot decode still get the API's error format and a request id.
    frameworkErrors: (error, req, reply) => {
      reply.header('x-request-id', req.id);
      void (reply as unknown as { code(n: number): { send(b: unknown): void } }).code(400).send({ code: 'bad_request', message: `The request URL is malformed (${error.code}).`, request_id: req.id });
    },
  });
  // Only JSON bodies: anything else is a 415 with a sentence, not a schema error.
  app.removeContentTypeParser('text/plain');

  app.server.headersTimeout = HEADERS_TIMEOUT_MS;
  app.addSchema(S.errorSchema);
  app.addSchema(S.keySchema);
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Custos vault API', version: opts.version ?? '0.1.0', description: 'Keys stay in the vault; every operation is authorised, audited, then performed.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });

  // Once listening: the response serializers, one per turn of the event loop (requests are
  // served in between). A schema that does not compile is named here, at start.
  app.addHook('onListen', async () => {
    void warmAndReport(serializers, app.log);
  });
  app.addHook('onClose', async () => serializers.stop());
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    reply.header('cache-control', 'no-store');
    if (opts.https) reply.header('strict-transport-security', 'max-age=31536000');
    // Decide on the matched route, never on the raw URL: the router decodes percent-escapes,
    // so `/%761/keys` matches `/v1/keys`. Every route needs a token unless it is marked public.
    const config = req.routeOptions.config as { public?: boolean; anyPrincipal?: boolean } | undefined;
    if (req.routeOptions.url !== undefined && !config?.public) {
      const credentials = credentialsOf(req.headers.authorization, req.raw.socket, req.ip, req.id);
      // Only a client certificate rides along by itself: a bearer token a foreign page cannot
      // set. (Public routes answer anyone: a link to /ui/ from elsewhere still opens.)
      if (credentials.certificate) refuseCrossSite(req.headers);
      const v = vault();
      req.principal = await v.authenticate(credentials);
      // Each route names its operation (auth.ts); one that names none is for admins only.
      const route = `${req.method === 'HEAD' ? 'GET' : req.method} ${req.routeOptions.url}`;
      const op = ROUTE_OPERATIONS[route];
      const p = req.principal;
      try {
        if (config?.anyPrincipal) {
          // Authenticated is enough: the route tells a principal about itself only.
        } else if (op === undefined) {
          if (p.kind !== 'admin') throw forbidden(p, `${route}: it is for admins`);
        } else authorize(p, op);
      } catch (e) {
        // A scope escape attempt is on the record like any refusal.
        if (isCustosError(e)) await v.recordEvent({ principal: p, requestId: req.id }, 'authorize', null, 'denied', e.fullCode, { route: route.slice(0, 96) });
        throw e;
      }
    }
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, method: req.method, status: String(reply.statusCode) });
    metrics.latency.observe({ route }, reply.elapsedTime / 1000);
    req.log.debug({ method: req.method, route, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100, principal: req.principal?.id }, 'request');
  });

  app.setErrorHandler((err, req, reply) => {
    let status: number;
    let code: string;
    let message: string;
    const e = err as Error & { code?: string; statusCode?: number; validation?: unknown; validationContext?: string };
    if (isCustosError(err)) {
      status = err.httpStatus;
      if (err.code === 'rate_limited' && (err.tag === 'authentication' || err.tag === 'principal')) {
        reply.header('retry-after', String(err.tag === 'authentication' ? Math.max(1, opts.gate?.vault()?.authRetryAfter(req.ip) ?? opts.vault?.authRetryAfter(req.ip) ?? 1) : 1));
      }
      code = err.fullCode;
      message = err.message;
      // Every refusal names its cause where an operator looks first (the vault has audited
      // it already when it concerned a key); a corrupt or unavailable store is an error.
      const fields = { route: req.routeOptions.url ?? 'unmatched', method: req.method, principal: req.principal?.id, code, status };
      if (status >= 500) req.log.error(fields, message);
      else req.log.info(fields, message);
    } else if (e.validation) {
      status = 400;
      code = 'bad_request';
      message = `The request ${e.validationContext ?? ''} is invalid: ${e.message}`.replace(/\s+/g, ' ');
    } else if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      status = 413;
      code = 'payload_too_large';
      message = 'The request body is larger than this API accepts.';
    } else if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      status = 415;
      code = 'unsupported_media_type';
      message = 'Send the body as application/json.';
    } else if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
      status = e.statusCode;
      code = 'bad_request';
      message = e instanceof SyntaxError || e.code?.includes('JSON') ? 'The request body is not valid JSON.' : e.message;
    } else {
      req.log.error({ err: { type: e.name, code: e.code } }, 'internal error');
      status = 500;
      code = isCustosError(err) ? err.fullCode : 'internal';
      message = 'An internal error occurred; the operation was not completed. The server log has the request id.';
    }
    reply.code(status).send({ code, message, request_id: req.id });
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ code: 'not_found', message: `No route ${req.method} ${req.url.split('?')[0]}.`, request_id: req.id });
  });

  const ctx = (req: { principal?: Principal; id: string }) => {
    if (!req.principal) throw new CustosError('unauthorized', 'This route needs an API token.');
    return { principal: req.principal, requestId: req.id };
  };
  const open = { config: { public: true } };

  // 200 only when requests can be served: unsealed and every backend (HSM token) usable.
  app.get('/healthz', { ...open, schema: { summary: 'Health: 200 when the vault is unsealed and its backends usable, else 503', tags: ['system'] } }, async (_req, reply) => {
    const seal = sealStatus();
    let components: ReturnType<HealthCheck> = [];
    try {
      components = opts.health?.() ?? [];
    } catch {
      components = [{ component: 'backends', ok: false, detail: 'health check failed' }];
    }
    const ok = !seal.sealed && components.every((c) => c.ok);
    reply.code(ok ? 200 : 503);
    return { status: seal.sealed ? 'sealed' : ok ? 'ok' : 'degraded', sealed: seal.sealed, components };
  });
  app.get('/v1/sys/seal-status', { ...open, schema: S.sealStatusSchema }, async () => sealStatus());
  app.post<{ Body: { share?: string; reset?: boolean } }>('/v1/sys/unseal', { ...open, schema: S.unsealSchema }, async (req, reply) => {
    const gate = opts.gate;
    if (!gate || !gate.status().sealed) return sealStatus();
    if (req.body.share === undefined) {
      throw new CustosError('bad_request', req.body.reset ? 'To forget the shares given so far, send one valid share with "reset": true.' : 'Send {"share": "custos-share-v1...."}.');
    }
    // Forgetting progress needs a valid share, so a bystander cannot wipe the operators' work:
    // the gate checks the share before it forgets anything.
    try {
      return await gate.submitShare(req.body.share, { reset: req.body.reset === true, remote: req.ip, requestId: req.id });
    } catch (e) {
      // RFC 9110 §10.2.3: how long to wait, in seconds.
      if (isCustosError(e) && e.code === 'rate_limited') reply.header('retry-after', String(gate.retryAfterSeconds() || 1));
      throw e;
    }
  });
  app.get('/metrics', { ...open, schema: { summary: 'Prometheus metrics', tags: ['system'] } }, async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  app.get('/v1/openapi.json', { ...open, schema: { hide: true } }, async () => app.swagger());

  // Who the caller is and what it may do: a console shows only what the API would allow.
  app.get('/v1/whoami', { config: { anyPrincipal: true }, schema: S.whoamiSchema }, async (req) => {
    const p = ctx(req).principal;
    return {
      principal: p.id,
      role: p.role ?? (p.kind === 'admin' ? 'admin' : null),
      operations: OPERATIONS.filter((op) => permits(p, op)),
      keys: p.scope?.keys ?? [],
      tags: p.scope?.tags ?? [],
    };
  });

  app.get<{ Querystring: { limit?: string; after?: string } }>('/v1/keys', { schema: S.listKeysSchema }, async (req) => {
    // Always a page: a vault of millions of keys is never one answer (nor one read).
    const page = await vault().listKeysPage(ctx(req).principal, req.query.after ?? null, Number(req.query.limit ?? 1000));
    return { keys: page.keys.map(keyView), next: page.next };
  });

  app.post<{ Body: { label: string; algorithm: Algorithm; exportable: boolean; backend?: string; wrapped?: boolean; tags?: string[]; purpose?: string } }>('/v1/keys', { schema: S.createKeySchema }, async (req, reply) => {
    const { tags, ...rest } = req.body;
    const key = await vault().createKey(ctx(req), { ...rest, ...(tags?.length ? { attributes: { tags: tags.join(',') } } : {}) });
    reply.code(201);
    return keyView(key);
  });

  app.post<{ Body: { label: string; backend: string; object_label?: string; object_id?: string; purpose?: string } }>('/v1/keys/adopt', { schema: S.adoptKeySchema }, async (req, reply) => {
    const b = req.body;
    if ((b.object_label === undefined) === (b.object_id === undefined)) throw new CustosError('bad_request', 'Give exactly one of object_label and object_id.');
    const key = await vault().adoptKey(ctx(req), { label: b.label, backend: b.backend, objectLabel: b.object_label, objectId: b.object_id, ...(b.purpose ? { purpose: b.purpose } : {}) });
    reply.code(201);
    return keyView(key);
  });

  app.get<{ Params: { backend: string } }>('/v1/backends/:backend/objects', { schema: S.tokenObjectsSchema }, async (req) => ({
    objects: (await vault().tokenObjects(req.params.backend)).map((o) => ({ id: o.id, label: o.label, algorithm: o.algorithm, extractable: o.extractable, sensitive: o.sensitive, vault_key: o.vaultKey })),
  }));

  // Many keys per request: the CLI drives this in requests of 500 to generate and store
  // millions of keys with a progress bar. Each chunk of 100 is one unit (one transaction, an
  // audit entry per key, all or none); a few chunks are in flight, so one is generated while
  // another is written. The first failure stops the rest; the error names the labels not made.
  app.post<{ Body: { label_prefix: string; start: number; count: number; algorithm: Algorithm; backend?: string; wrapped?: boolean; purpose?: string } }>('/v1/keys/batch', { schema: S.batchCreateSchema }, async (req, reply) => {
    const b = req.body;
    const v = vault();
    const c = ctx(req);
    const chunks: Array<{ from: number; n: number }> = [];
    for (let i = 0; i < b.count; i += BATCH_CHUNK) chunks.push({ from: b.start + i, n: Math.min(BATCH_CHUNK, b.count - i) });
    const pending = [...chunks];
    const made = new Set<number>();
    let failure: unknown;
    const workers = Array.from({ length: Math.min(4, chunks.length) }, async () => {
      for (let ch = pending.shift(); ch !== undefined && failure === undefined; ch = pending.shift()) {
        const labels = Array.from({ length: ch.n }, (_, j) => `${b.label_prefix}-${ch!.from + j}`);
        try {
          await v.createKeys({ ...c, requestId: `${c.requestId}-${labels[0]}` }, { labels, algorithm: b.algorithm, backend: b.backend, wrapped: b.wrapped, ...(b.purpose ? { purpose: b.purpose } : {}) });
          made.add(ch.from);
        } catch (e) {
          failure ??= e;
        }
      }
    });
    await Promise.all(workers);
    const created = chunks.filter((ch) => made.has(ch.from)).reduce((n, ch) => n + ch.n, 0);
    if (failure !== undefined) {
      const e = isCustosError(failure) ? failure : new CustosError('internal', 'Creating a key failed.');
      // The chunks not made, as ranges of labels (chunks in flight may have finished after the failure).
      const missing: string[] = [];
      for (const ch of chunks) {
        if (made.has(ch.from)) continue;
        const last = missing.length > 0 ? /-(\d+)$/.exec(missing[missing.length - 1]!) : null;
        if (last && Number(last[1]) === ch.from - 1) missing[missing.length - 1] = missing[missing.length - 1]!.replace(/-\d+$/, `-${ch.from + ch.n - 1}`);
        else missing.push(`${b.label_prefix}-${ch.from} … ${b.label_prefix}-${ch.from + ch.n - 1}`);
      }
      throw new CustosError(e.code, `${e.message} (${created} of ${b.count} keys were created; not created: ${missing.join(', ')}.)`, e.tag ? { tag: e.tag } : undefined);
    }
    reply.code(201);
    return { created, first: `${b.label_prefix}-${b.start}`, last: `${b.label_prefix}-${b.start + b.count - 1}` };
  });

  app.post<{ Body: { label: string; algorithm?: Algorithm; format: ImportFormat; material: string; exportable: boolean; purpose?: string } }>(
    '/v1/keys/import',
    { schema: S.importKeySchema },
    async (req, reply) => {
      const b = req.body;
      const material = b.format === 'raw' ? base64ToBytes(b.material, 'material') : utf8(b.material);
      const key = await vault().importKey(ctx(req), { label: b.label, algorithm: b.algorithm, format: b.format, material, exportable: b.exportable, ...(b.purpose ? { purpose: b.purpose } : {}) });
      reply.code(201);
      return keyView(key);
    },
  );

  app.post<{ Body: { label: string; format: PublicFormat; material: string; algorithm?: Algorithm; tags?: string[] } }>('/v1/keys/public', { schema: S.importPublicKeySchema }, async (req, reply) => {
    const b = req.body;
    const material = b.format === 'spki-pem' ? utf8(b.material) : base64ToBytes(b.material, 'material');
    const key = await vault().importPublicKey(ctx(req), { label: b.label, format: b.format, material, ...(b.algorithm ? { algorithm: b.algorithm } : {}), ...(b.tags ? { tags: b.tags } : {}) });
    reply.code(201);
    return keyView(key);
  });

  app.get<{ Params: { key: string } }>('/v1/keys/:key', { schema: S.keySchemaRoute('Show a key and its public key formats') }, async (req) => keyView(await vault().readKey(ctx(req), req.params.key)));

  app.post<{ Params: { key: string } }>('/v1/keys/:key/disable', { schema: S.keySchemaRoute('Disable a key (it refuses to sign until enabled)') }, async (req) =>
    keyView(await vault().setEnabled(ctx(req), req.params.key, false)),
  );
  app.post<{ Params: { key: string }; Body: { purpose: string } }>('/v1/keys/:key/purpose', { schema: S.setPurposeSchema }, async (req) =>
    keyView(await vault().setPurpose(ctx(req), req.params.key, req.body.purpose)),
  );
  app.post<{ Params: { key: string } }>('/v1/keys/:key/enable', { schema: S.keySchemaRoute('Enable a disabled key') }, async (req) =>
    keyView(await vault().setEnabled(ctx(req), req.params.key, true)),
  );
  app.delete<{ Params: { key: string } }>('/v1/keys/:key', { schema: S.keySchemaRoute('Destroy a key: its sealed material is overwritten and deleted') }, async (req) =>
    keyView(await vault().destroyKey(ctx(req), req.params.key)),
  );

  app.post<{ Params: { key: string }; Body: SignBody }>('/v1/keys/:key/sign', { schema: S.signSchema }, async (req) => {
    const r = await vault().sign({ ...ctx(req), key: req.params.key, payload: payloadOf(req.body), options: optionsOf(req.body), context: { protocol: 'http' }, ...(req.body.path !== undefined ? { path: req.body.path } : {}) });
    return { key_id: r.keyId, algorithm: r.algorithm, signature: bytesToBase64(r.signature), encoding: r.encoding, request_id: req.id };
  });

  app.post<{ Params: { key: string }; Body: SignBody }>('/v1/keys/:key/verify', { schema: S.verifySchema }, async (req) => {
    const { key, valid } = await vault().verify(ctx(req), req.params.key, payloadOf(req.body), base64ToBytes(req.body.signature!, 'signature'), optionsOf(req.body));
    return { valid, key_id: key.id };
  });

  app.post<{ Params: { key: string }; Body: { kem: Kem; recipient_public_key: string } }>('/v1/keys/:key/export', { schema: S.exportSchema }, async (req) => {
    const { key, envelope } = await vault().exportKey(ctx(req), req.params.key, { kem: req.body.kem, publicKey: base64ToBytes(req.body.recipient_public_key, 'recipient_public_key') });
    return { key_id: key.id, format: 'custos-ecies-v1', envelope: bytesToBase64(envelope) };
  });

  type PrincipalBody = { name: string; role: PrincipalRequest['role']; operations?: string[]; keys?: string[]; tags?: string[]; expires_at?: string | null; rate_limit?: string | null; certificate_sha256?: string; certificate_name?: string };
  const principalRequest = (b: Partial<PrincipalBody>): Omit<PrincipalRequest, 'name' | 'role'> => ({
    ...(b.operations !== undefined ? { operations: b.operations } : {}),
    ...(b.keys !== undefined ? { keys: b.keys } : {}),
    ...(b.tags !== undefined ? { tags: b.tags } : {}),
    ...(b.expires_at !== undefined ? { expiresAt: b.expires_at } : {}),
    ...(b.rate_limit !== undefined ? { rateLimit: b.rate_limit } : {}),
    ...(b.certificate_sha256 !== undefined ? { certificateSha256: b.certificate_sha256 } : {}),
    ...(b.certificate_name !== undefined ? { certificateName: b.certificate_name } : {}),
  });
  app.post<{ Body: PrincipalBody }>('/v1/tokens', { schema: S.createTokenSchema }, async (req, reply) => {
    reply.code(201);
    return vault().createToken(ctx(req), { name: req.body.name, role: req.body.role, ...principalRequest(req.body) });
  });
  app.get('/v1/tokens', { schema: S.listTokensSchema }, async (req) => ({ tokens: await vault().listTokens(ctx(req)) }));
  app.patch<{ Params: { name: string }; Body: Omit<PrincipalBody, 'name' | 'role' | 'certificate_sha256' | 'certificate_name'> }>('/v1/tokens/:name', { schema: S.updateTokenSchema }, async (req) =>
    vault().updateToken(ctx(req), req.params.name, principalRequest(req.body)),
  );
  app.post<{ Params: { name: string } }>('/v1/tokens/:name/revoke', { schema: S.revokeTokenSchema }, async (req) => vault().revokeToken(ctx(req), req.params.name));
  app.post<{ Params: { name: string }; Body: { certificate_sha256?: string } }>('/v1/tokens/:name/rotate', { schema: S.rotateTokenSchema }, async (req) =>
    vault().rotateToken(ctx(req), req.params.name, req.body?.certificate_sha256),
  );

  const versionView = (v: PolicyVersion) => ({ id: v.id, version: v.version, format: v.format, sha256: v.sha256, uploaded_at: v.uploadedAt, retired: v.retired });
  app.post<{ Body: { source: string; format?: PolicyFormat } }>('/v1/policies', { schema: S.uploadPolicySchema }, async (req, reply) => {
    const v = await vault().uploadPolicy(ctx(req), req.body.source, req.body.format);
    reply.code(201);
    return { ...versionView(v), warnings: v.warnings };
  });
  app.get('/v1/policies', { schema: S.listPoliciesSchema }, async () => {
    const set = vault().policies;
    return { policies: set.ids().map((id) => set.history(id).at(-1)!).filter((v) => !v.retired).map(versionView) };
  });
  app.get<{ Params: { id: string } }>('/v1/policies/:id', { schema: S.policyHistorySchema }, async (req) => {
    const h = vault().policies.history(req.params.id);
    if (h.length === 0) throw new CustosError('not_found', `No policy ${req.params.id.slice(0, 64)}.`);
    return { id: req.params.id, versions: h.map((v) => ({ ...versionView(v), source: v.source })) };
  });
  app.delete<{ Params: { id: string } }>('/v1/policies/:id', { schema: S.policyHistorySchema }, async (req) => versionView(await vault().retirePolicy(ctx(req), req.params.id)));
  app.post<{ Body: { key: string; operation: 'sign' | 'export'; payload_type: PayloadType; message?: string; facts?: Record<string, string>; principal?: string; psbt?: { outputs: Array<{ address?: string | null; amount: string; is_change: boolean }>; fee: string; input_count: number; vsize?: number } } }>(
    '/v1/policies/test',
    { schema: S.testPolicySchema },
    async (req) => {
      const b = req.body;
      const c = ctx(req);
      const outputs = b.psbt?.outputs.map((o) => ({ address: o.address ?? null, amount: BigInt(o.amount), isChange: o.is_change }));
      const { evaluation, explanation } = await vault().testPolicy(
        c,
        b.key,
        b.operation,
        {
          payloadType: b.operation === 'export' ? null : b.payload_type,
          facts: b.facts ?? {},
          ...(b.message !== undefined ? { payload: base64ToBytes(b.message, 'message') } : {}),
          ...(b.psbt && outputs ? { psbt: { outputs, fee: BigInt(b.psbt.fee), sentExternally: outputs.filter((o) => !o.isChange).reduce((a, o) => a + o.amount, 0n), inputCount: b.psbt.input_count, ...(b.psbt.vsize ? { vsize: b.psbt.vsize } : {}) } } : {}),
        },
        b.principal,
      );
      return { decision: evaluation.decision, trace: evaluation.trace, explanation };
    },
  );

  app.post<{ Body: { label: string; curve: 'secp256k1' | 'ed25519'; mnemonic?: string; passphrase?: string; xprv?: string; allowed_paths?: string[]; tags?: string[]; purpose?: string } }>('/v1/keys/hd', { schema: S.createHdKeySchema }, async (req, reply) => {
    const b = req.body;
    const key = await vault().createHdKey(ctx(req), { label: b.label, curve: b.curve, mnemonic: b.mnemonic, passphrase: b.passphrase, xprv: b.xprv, allowedPaths: b.allowed_paths, tags: b.tags, ...(b.purpose ? { purpose: b.purpose } : {}) });
    reply.code(201);
    return keyView(key);
  });
  app.get<{ Params: { key: string }; Querystring: { path: string; network: 'mainnet' | 'testnet' } }>('/v1/keys/:key/hd/public', { schema: S.hdPublicSchema }, async (req) => {
    const r = await vault().hdPublicKey(ctx(req), req.params.key, req.query.path, req.query.network);
    return { path: req.query.path, public_key: bytesToBase64(r.publicKey), public_key_hex: bytesToHex(r.publicKey), xpub: r.xpub };
  });
  app.post<{ Params: { key: string }; Body: { psbt: string; network: BitcoinNetwork } }>('/v1/keys/:key/sign-psbt', { schema: S.signPsbtSchema }, async (req) => {
    const r = await vault().signPsbt(ctx(req), { key: req.params.key, psbt: base64ToBytes(req.body.psbt, 'psbt'), network: req.body.network });
    const a = r.analysis;
    return {
      key_id: r.key.id,
      psbt: bytesToBase64(r.psbt),
      signed_inputs: r.signedInputs,
      txid: a.txid,
      fee_sats: a.fee.toString(),
      sent_externally_sats: a.sentExternally.toString(),
      change_sats: a.changeTotal.toString(),
      outputs: a.outputs.map((o) => ({ address: o.address, amount_sats: o.amount.toString(), is_change: o.isChange })),
      request_id: req.id,
    };
  });

  app.get('/v1/approvals', { schema: S.approvalsSchema }, async (req) => ({ approvals: (await vault().pendingApprovals(ctx(req).principal)).map(approvalView) }));
  for (const verb of ['approve', 'deny'] as const) {
    app.post<{ Params: { id: string } }>(`/v1/approvals/:id/${verb}`, { schema: S.decideSchema(verb) }, async (req) => {
      const { request, settled } = await vault().decideApproval(ctx(req), req.params.id, verb === 'approve');
      return { ...approvalView(request), settled: settled ?? 'pending' };
    });
  }

  app.get('/v1/privval', { schema: S.privvalStatusSchema }, async (req) => ({
    // A scoped principal sees the validators whose key reference its globs allow.
    validators: ((await opts.privvalStatus?.()) ?? []).filter((p) => refInScope(ctx(req).principal, p.key)).map((p) => ({
      name: p.name,
      chain_id: p.chainId,
      address: p.address,
      dialect: p.dialect,
      key: p.key,
      state: p.state,
      connected_since: p.connectedSince ?? null,
      // This connection's last signature, else the stored watermark: both survive nothing
      // but the store, and the store survives restarts.
      last_signed: p.lastSigned ?? p.watermark ?? null,
      watermark: p.watermark,
      signatures: p.signatures,
      refusals: p.refusals,
      hint: p.hint ?? null,
    })),
  }));

  app.post('/v1/reload', { schema: S.reloadSchema }, async (req) => {
    if (!opts.reload) throw new CustosError('bad_request', 'This server has no configuration file to reload.');
    const r = await opts.reload();
    return { applied: r.applied, privval: r.privval, ssh_agent: r.sshAgent, restart_needed: r.restartNeeded };
  });

  const watermarkView = (w: { height: bigint; round: number; step: number; signBytes: Uint8Array; signature: Uint8Array | null }) => ({
    height: w.height.toString(),
    round: w.round,
    step: w.step,
    sign_bytes: bytesToHex(w.signBytes),
    signature: w.signature ? bytesToBase64(w.signature) : null,
  });
  app.get<{ Params: { key: string; chain: string } }>('/v1/keys/:key/watermarks/:chain', { schema: S.getWatermarkSchema }, async (req) => {
    const w = await vault().getWatermark(ctx(req), req.params.key, req.params.chain);
    if (!w) throw new CustosError('not_found', `The key has signed nothing on ${req.params.chain} yet.`);
    return watermarkView(w);
  });
  app.put<{ Params: { key: string; chain: string }; Body: { height: string; round: number; step: number; sign_bytes?: string; signature?: string } }>(
    '/v1/keys/:key/watermarks/:chain',
    { schema: S.putWatermarkSchema },
    async (req) => {
      const b = req.body;
      const w = await vault().importWatermark(ctx(req), req.params.key, req.params.chain, {
        height: BigInt(b.height),
        round: b.round,
        step: b.step,
        signBytes: b.sign_bytes !== undefined ? hexToBytes(b.sign_bytes, 'sign_bytes') : undefined,
        signature: b.signature !== undefined ? base64ToBytes(b.signature, 'signature') : undefined,
      });
      return watermarkView(w);
    },
  );

  app.post<{ Params: { name: string } }>('/v1/ssh-agents/:name/restore', { schema: S.restoreAgentSchema }, async (req) => ({
    agent: req.params.name,
    restored: await vault().restoreAgent(ctx(req), req.params.name),
  }));

  accountRoutes(app, vault, ctx);
  clusterRoutes(app, opts.cluster ?? (() => null), vault, ctx);
  lightningRoutes(app, vault, ctx);
  lightningChannelRoutes(app, vault, ctx);
  torRoutes(app, vault, ctx);
  uiRoutes(app);

  type AuditFilter = { limit?: string; before?: string; key?: string; principal?: string; operation?: string; outcome?: string };
  app.get<{ Querystring: AuditFilter }>('/v1/audit', { schema: S.auditSchema }, async (req) => {
    const q = req.query;
    const limit = Math.min(Math.max(Number(q.limit ?? 50), 1), 1000);
    const page = await vault().auditPage(
      {
        limit,
        ...(q.before !== undefined ? { before: Number(q.before) } : {}),
        ...(q.key ? { key: q.key } : {}),
        ...(q.principal ? { principal: q.principal } : {}),
        ...(q.operation ? { operation: q.operation } : {}),
        ...(q.outcome ? { outcome: q.outcome } : {}),
      },
      ctx(req).principal,
    );
    // In the log's order, the newest page by default; `next` asks for the page before it.
    return { entries: page.entries.reverse().map(auditView), next: page.next };
  });
  app.get('/v1/audit/status', { schema: S.auditStatusSchema }, async (req) => {
    const r = await vault().auditStatus(ctx(req));
    return {
      ok: r.ok,
      entries: r.entries,
      checkpoints: r.checkpoints,
      head_seq: r.headSeq,
      head_hash: r.headHash,
      first_bad: r.firstBad ?? null,
      checked_at: r.checkedAt,
      latest_checkpoint: r.latestCheckpoint,
    };
  });
  app.get('/v1/ssh-agents', { schema: S.agentStatusSchema }, async (req) => {
    // The sockets serve keys by pattern, any key: not for a principal confined to some.
    if (hasKeyScope(ctx(req).principal)) return { agents: [] };
    return {
      agents: (opts.agentStatus?.() ?? []).map((a) => ({ name: a.name, socket: a.socket, keys: a.keys, tor_keys: a.torKeys, max_connections: a.maxConnections, listening: a.listening, connections: a.connections, locked: a.locked })),
    };
  });

  return app;
}

/**
 * A browser presents its client certificate on any request to this origin, whoever's page
 * asked: a body-less POST (approve, disable, revoke) from another site would carry the
 * certificate's principal (a bearer token it could not set: no CORS). Browsers say where a
 * request comes from (Sec-Fetch-Site in current ones, Origin on every cross-origin POST); a
 * request from another site is refused, a read too (an <img> could start a costly one).
 * Non-browser clients send neither header; a person typing a URL gets Sec-Fetch-Site: none.
 */
export function refuseCrossSite(headers: Record<string, string | string[] | undefined>): void {
  const site = headers['sec-fetch-site'];
  const origin = headers.origin;
  // The browser's own word first; Origin against Host only for browsers that do not say
  // (a reverse proxy may rewrite Host, never Sec-Fetch-Site).
  // Only what the browser calls its own origin (or a person's typing) passes; anything else,
  // a duplicated header included, is refused.
  let foreign = site !== undefined && site !== 'same-origin' && site !== 'none';
  if (site === undefined && typeof origin === 'string') {
    try {
      foreign = new URL(origin).host !== headers.host;
    } catch {
      foreign = true; // `null` (a sandboxed page, a redirect) or garbage: not this origin
    }
  }
  if (foreign) throw new CustosError('forbidden', 'Refused: this request came from a page of another site (its Origin or Sec-Fetch-Site says so). Changes are accepted only from this vault\'s own console or from non-browser clients.', { tag: 'cross_site' });
}

/** Plain HTTP listens on loopback only: any other address needs TLS ([api] tls_cert and tls_key). */
export function assertLoopback(host: string): void {
  const ok = host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host);
  if (!ok) {
    throw new CustosError('config_invalid', `Refusing to serve the API on ${host} without TLS: plain HTTP may listen on loopback only (127.0.0.1, ::1 or localhost). Set [api] tls_cert and tls_key (custos tls init --data-dir DIR --host NAME makes a CA and a server certificate), or bind to 127.0.0.1.`);
  }
}
