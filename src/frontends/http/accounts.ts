/**
 * The HTTP routes of accounts (vault/accounts.ts, vault/sessions.ts):
 *
 *   POST /v1/accounts                     an operator makes an account and its registration code (manage)
 *   GET  /v1/accounts/:name               an account's state (manage)
 *   POST /v1/accounts/:name/unlock        an operator ends a login lock (manage)
 *   POST /v1/accounts/register/start      public: OPAQUE registration, with the one-time code
 *   POST /v1/accounts/register/finish     public
 *   POST /v1/login/start                  public: OPAQUE login (KE1 → KE2 and a sealed state)
 *   POST /v1/login/finish                 public: KE3 → a session id (the key never travels)
 *   POST /v1/session/whoami               in a session: the account
 *   POST /v1/session/logout               in a session: ends it
 *
 * A session call's body is `{ sid, ssid, body }`, `body` sealed for that sid, ssid and route
 * (core/session-envelope.ts); the answer is `{ ssid, body }` sealed back. Refusals are plain
 * errors, the same for every cause a client could probe.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CustosError } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import type { Principal } from '../../core/types.js';
import { ACCOUNT_TYPES, type Account } from '../../vault/accounts.js';
import type { Vault } from '../../vault/vault.js';

const errors = { 400: { $ref: 'Error#' }, 401: { $ref: 'Error#' }, 403: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' }, 429: { $ref: 'Error#' }, 503: { $ref: 'Error#' } };
const name = { type: 'string', minLength: 1, maxLength: 128 } as const;
const message = { type: 'string', minLength: 1, maxLength: 4096, pattern: '^[A-Za-z0-9_-]+$' } as const;
const body = (required: string[], properties: Record<string, unknown>) => ({ type: 'object', additionalProperties: false, required, properties });
const accountView = (a: Account) => ({ id: a.id, name: a.name, type: a.type, created_at: a.createdAt, registered: a.registered, password_version: a.passwordVersion });
const accountSchema = { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' }, type: { type: 'string' }, created_at: { type: 'string' }, registered: { type: 'boolean' }, password_version: { type: 'integer' } } };
const sessionBody = body(['sid', 'ssid', 'body'], { sid: { type: 'string', maxLength: 64 }, ssid: { type: 'integer', minimum: 1 }, body: { type: 'string', maxLength: 1_500_000 } });
const sealedAnswer = { type: 'object', properties: { ssid: { type: 'integer' }, body: { type: 'string' } } };

/** Registers the routes; `vault` yields the unsealed vault, `ctx` the principal of an authenticated request. */
export function accountRoutes(app: FastifyInstance, vault: () => Vault, ctx: (req: FastifyRequest) => { principal: Principal; requestId: string }): void {
  const open = { config: { public: true } };
  const accounts = () => vault().accounts ?? unavailable();
  const sessions = () => vault().sessions ?? unavailable();
  // Who asks when no one is authenticated: the address, on the record.
  const anon = (req: FastifyRequest) => ({ principal: { id: `login:${req.ip}`, kind: 'system' as const }, requestId: req.id });

  app.post<{ Body: { name: string; type: Account['type'] } }>(
    '/v1/accounts',
    { schema: { summary: 'Create an account and its one-time registration code (shown once, valid 24 hours)', tags: ['accounts'], security: [{ bearer: [] }], body: body(['name', 'type'], { name, type: { type: 'string', enum: [...ACCOUNT_TYPES] } }), response: { 201: { type: 'object', properties: { account: accountSchema, registration_code: { type: 'string' } } }, ...errors } } },
    async (req, reply) => {
      const made = await accounts().create(ctx(req), req.body);
      reply.code(201);
      return { account: accountView(made.account), registration_code: made.registrationCode };
    },
  );

  app.get<{ Params: { name: string } }>('/v1/accounts/:name', { schema: { summary: 'An account', tags: ['accounts'], security: [{ bearer: [] }], response: { 200: accountSchema, ...errors } } }, async (req) => {
    const a = await accounts().get(req.params.name);
    if (!a) throw new CustosError('key_not_found', `No account named ${req.params.name.slice(0, 128)}.`);
    return accountView(a);
  });

  app.post<{ Params: { name: string } }>('/v1/accounts/:name/unlock', { schema: { summary: 'End a user name\'s login lock and waits', tags: ['accounts'], security: [{ bearer: [] }], response: { 200: { type: 'object', properties: { unlocked: { type: 'string' } } }, ...errors } } }, async (req) => {
    await accounts().unlock(ctx(req), req.params.name);
    return { unlocked: req.params.name };
  });

  app.post<{ Body: { name: string; code: string; request: string } }>(
    '/v1/accounts/register/start',
    { ...open, schema: { summary: 'OPAQUE registration, first message (with the one-time registration code)', tags: ['accounts'], body: body(['name', 'code', 'request'], { name, code: { type: 'string', maxLength: 128 }, request: message }), response: { 200: { type: 'object', properties: { response: { type: 'string' } } }, ...errors } } },
    async (req) => ({ response: await accounts().registerStart(anon(req), req.body.name, req.body.code, req.body.request) }),
  );

  app.post<{ Body: { name: string; code: string; record: string } }>(
    '/v1/accounts/register/finish',
    { ...open, schema: { summary: 'OPAQUE registration, the client\'s record', tags: ['accounts'], body: body(['name', 'code', 'record'], { name, code: { type: 'string', maxLength: 128 }, record: message }), response: { 200: accountSchema, ...errors } } },
    async (req) => accountView(await accounts().registerFinish(anon(req), req.body.name, req.body.code, req.body.record)),
  );

  app.post<{ Body: { name: string; request: string } }>(
    '/v1/login/start',
    { ...open, schema: { summary: 'OPAQUE login, first message: KE2 and the server state to send back', tags: ['accounts'], body: body(['name', 'request'], { name, request: message }), response: { 200: { type: 'object', properties: { response: { type: 'string' }, state: { type: 'string' } } }, ...errors } } },
    async (req) => accounts().loginStart(anon(req), req.body.name, req.ip, req.body.request),
  );

  app.post<{ Body: { name: string; state: string; finish: string } }>(
    '/v1/login/finish',
    { ...open, schema: { summary: 'OPAQUE login, KE3: opens a session', tags: ['accounts'], body: body(['name', 'state', 'finish'], { name, state: { type: 'string', maxLength: 4096 }, finish: message }), response: { 200: { type: 'object', properties: { sid: { type: 'string' }, idle_seconds: { type: 'integer' }, expires_at: { type: 'string' } } }, ...errors } } },
    async (req) => {
      const c = anon(req);
      const done = await accounts().loginFinish(c, req.body.name, req.ip, req.body.state, req.body.finish);
      try {
        const s = await sessions().open({ ...c, principal: { id: `account:${done.account.name}`, kind: 'system' } }, done.account, done.sessionKey);
        return { sid: s.sid, idle_seconds: s.idleSeconds, expires_at: s.expiresAt };
      } finally {
        wipe(done.sessionKey);
      }
    },
  );

  /** A route inside a session: the body opened for it, the answer sealed back. */
  const inSession = (path: string, summary: string, handle: (account: { id: string; name: string }, input: unknown, req: FastifyRequest, sid: string) => Promise<unknown>) =>
    app.post<{ Body: { sid: string; ssid: number; body: string } }>(path, { ...open, schema: { summary, tags: ['sessions'], body: sessionBody, response: { 200: sealedAnswer, ...errors } } }, async (req) => {
      const sub = await sessions().enter(anon(req), req.body.sid, req.body.ssid, `POST ${path}`, req.body.body);
      let input: unknown;
      try {
        input = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(sub.body));
      } catch {
        sub.reply(new Uint8Array(0));
        throw new CustosError('bad_request', 'The session body is not JSON.');
      } finally {
        wipe(sub.body);
      }
      const out = await handle(sub.account, input, req, sub.sid);
      return { ssid: sub.ssid, body: sub.reply(new TextEncoder().encode(JSON.stringify(out))) };
    });

  inSession('/v1/session/whoami', 'The account of this session', async (account) => ({ account: account.id, name: account.name }));
  // Entered first (its number taken), then ended: a logout cannot be replayed, and the session
  // is gone on every node before the answer leaves.
  inSession('/v1/session/logout', 'End this session', async (account, _input, req, sid) => {
    await sessions().close(anon(req), sid);
    return { ended: sid, account: account.id };
  });
}

function unavailable(): never {
  throw new CustosError('vault_sealed', 'Accounts need the vault unsealed with its root.');
}
