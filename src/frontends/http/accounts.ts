/**
 * The HTTP routes of accounts (vault/accounts.ts, vault/sessions.ts):
 *
 *   POST /v1/accounts                     an operator makes an account and its registration code (manage)
 *   GET  /v1/accounts/:name               an account's state (manage)
 *   POST /v1/accounts/:name/unlock        an operator ends a login lock (manage)
 *   POST /v1/accounts/:name/end-sessions  an operator ends every session of an account (manage)
 *   POST /v1/accounts/register/start      public: OPAQUE registration, with the one-time code
 *   POST /v1/accounts/register/finish     public
 *   POST /v1/login/start                  public: OPAQUE login (KE1 → KE2 and a sealed state)
 *   POST /v1/login/finish                 public: KE3 → a session id (the key never travels)
 *   POST /v1/session/whoami               in a session: the account
 *   POST /v1/session/keys/{generate,import,list,sign,export,destroy}   the account's keys
 *   POST /v1/session/secrets/{put,get,delete}                           the account's secrets
 *   POST /v1/session/grants/{create,list,revoke}                        rights the account delegates over its keys
 *   POST /v1/session/password/{start,finish}                            a password change (ends every session)
 *   POST /v1/session/logout               in a session: ends it
 *
 * A session call's body is `{ sid, ssid, body }`, `body` sealed for that sid, ssid and route
 * (core/session-envelope.ts); the answer is `{ ssid, body }` sealed back. Refusals are plain
 * errors, the same for every cause a client could probe.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CustosError } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import { ALGORITHMS, type Algorithm, type KeyRecord, type Principal } from '../../core/types.js';
import { frame, unframe } from '../../core/session-envelope.js';
import { AccountKeys, accountPrincipal, type SessionAccount } from '../../vault/account-keys.js';
import type { Grant } from '../../accounts/grants.js';
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

  app.post<{ Params: { name: string } }>('/v1/accounts/:name/end-sessions', { schema: { summary: 'End every session of an account at once', tags: ['accounts'], security: [{ bearer: [] }], response: { 200: { type: 'object', properties: { ended: { type: 'string' } } }, ...errors } } }, async (req) => {
    await accounts().endSessions(ctx(req), req.params.name);
    return { ended: req.params.name };
  });

  app.post<{ Body: { name: string; code: string; request: string } }>(
    '/v1/accounts/register/start',
    { ...open, schema: { summary: 'OPAQUE registration, first message (with the one-time registration code)', tags: ['accounts'], body: body(['name', 'code', 'request'], { name, code: { type: 'string', maxLength: 128 }, request: message }), response: { 200: { type: 'object', properties: { response: { type: 'string' } } }, ...errors } } },
    async (req) => ({ response: await accounts().registerStart(anon(req), req.body.name, req.ip, req.body.code, req.body.request) }),
  );

  app.post<{ Body: { name: string; code: string; record: string } }>(
    '/v1/accounts/register/finish',
    { ...open, schema: { summary: 'OPAQUE registration, the client\'s record', tags: ['accounts'], body: body(['name', 'code', 'record'], { name, code: { type: 'string', maxLength: 128 }, record: message }), response: { 200: accountSchema, ...errors } } },
    async (req) => accountView(await accounts().registerFinish(anon(req), req.body.name, req.ip, req.body.code, req.body.record)),
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

  /**
   * A route inside a session: the body opened for it (a JSON header, and raw bytes after a
   * newline for calls that carry a secret), run as the account's own principal, and the answer
   * sealed back the same way.
   */
  type Handler = (c: { ctx: { principal: Principal; requestId: string }; account: SessionAccount; header: Record<string, unknown>; payload: Uint8Array | null; req: FastifyRequest; sid: string }) => Promise<{ header: unknown; payload?: Uint8Array }>;
  const inSession = (path: string, summary: string, handle: Handler) =>
    app.post<{ Body: { sid: string; ssid: number; body: string } }>(path, { ...open, schema: { summary, tags: ['sessions'], body: sessionBody, response: { 200: sealedAnswer, ...errors } } }, async (req) => {
      const sub = await sessions().enter(anon(req), req.body.sid, req.body.ssid, `POST ${path}`, req.body.body);
      let out: { header: unknown; payload?: Uint8Array } | undefined;
      try {
        const framed = unframe(sub.body);
        if (!framed || typeof framed.header !== 'object' || framed.header === null || Array.isArray(framed.header)) throw new CustosError('bad_request', 'The session body is not a JSON object.');
        // Its commits need the session and the account unchanged: a logout or password change
        // meanwhile and nothing this call made is released.
        const ctx = { principal: accountPrincipal(sub.account, sub.guards), requestId: req.id };
        out = await handle({ ctx, account: sub.account, header: framed.header as Record<string, unknown>, payload: framed.payload, req, sid: sub.sid });
        const plain = frame(out.header, out.payload);
        try {
          return { ssid: sub.ssid, body: sub.reply(plain) };
        } finally {
          wipe(plain);
        }
      } finally {
        wipe(sub.body);
        if (out?.payload) wipe(out.payload);
        // Unanswered: the answer key is wiped all the same.
        if (!out) sub.dispose();
      }
    });

  const str = (h: Record<string, unknown>, k: string): string => {
    const v = h[k];
    if (typeof v !== 'string' || v.length === 0 || v.length > 256) throw new CustosError('bad_request', `The session call needs "${k}" (text).`);
    return v;
  };
  const algorithm = (h: Record<string, unknown>): Algorithm => {
    const a = str(h, 'algorithm');
    if (!(ALGORITHMS as readonly string[]).includes(a)) throw new CustosError('bad_request', `algorithm must be one of ${ALGORITHMS.join(', ')}.`);
    return a as Algorithm;
  };
  const bytes = (p: Uint8Array | null, what: string): Uint8Array => {
    if (!p || p.length === 0) throw new CustosError('bad_request', `The session call carries ${what} after its header.`);
    return p;
  };
  const own = () => vault().accountKeys ?? unavailable();
  const keyOut = (k: KeyRecord, a: SessionAccount) => ({ name: k.label.slice(a.id.length + 1), id: k.id, algorithm: k.algorithm, public_key: Buffer.from(k.publicKey).toString('base64'), exportable: k.exportable, created_at: k.createdAt });

  inSession('/v1/session/whoami', 'The account of this session', async ({ account }) => ({ header: { account: account.id, name: account.name, type: account.type } }));
  inSession('/v1/session/keys/generate', 'Generate a key of this account', async ({ ctx, account, header }) => ({ header: keyOut(await own().generate(ctx, account, str(header, 'name'), algorithm(header)), account) }));
  inSession('/v1/session/keys/import', 'Import a key of this account (the secret after the header)', async ({ ctx, account, header, payload }) => ({ header: keyOut(await own().import(ctx, account, str(header, 'name'), algorithm(header), bytes(payload, 'the secret')), account) }));
  inSession('/v1/session/keys/list', 'This account\'s keys', async ({ account }) => ({ header: { keys: (await own().list(account)).map((k) => keyOut(k, account)) } }));
  inSession('/v1/session/keys/sign', 'Sign the bytes after the header with a key of this account', async ({ ctx, account, header, payload }) => {
    const s = await vault().sign({ ...ctx, key: AccountKeys.label(account, str(header, 'name')), payload: { kind: 'message', bytes: bytes(payload, 'the message') }, options: {}, context: { protocol: 'account-session' } });
    return { header: { signature: Buffer.from(s.signature).toString('base64'), encoding: s.encoding } };
  });
  inSession('/v1/session/keys/export', 'Export a key of this account into this session (self-custodial accounts)', async ({ ctx, account, header }) => {
    const { key, secret } = await own().export(ctx, str(header, 'name'), account);
    return { header: { name: str(header, 'name'), algorithm: key.algorithm }, payload: secret };
  });
  inSession('/v1/session/keys/destroy', 'Destroy a key of this account', async ({ ctx, account, header }) => {
    await vault().destroyKey(ctx, AccountKeys.label(account, str(header, 'name')));
    return { header: { destroyed: str(header, 'name') } };
  });
  inSession('/v1/session/secrets/put', 'Store a secret of this account (the bytes after the header)', async ({ ctx, account, header, payload }) => {
    await own().putSecret(ctx, account, str(header, 'name'), bytes(payload, 'the secret'));
    return { header: { stored: str(header, 'name') } };
  });
  inSession('/v1/session/secrets/get', 'A secret of this account', async ({ ctx, account, header }) => ({ header: { name: str(header, 'name') }, payload: await own().getSecret(ctx, account, str(header, 'name')) }));
  inSession('/v1/session/secrets/delete', 'Delete a secret of this account, overwritten', async ({ ctx, account, header }) => {
    await own().deleteSecret(ctx, account, str(header, 'name'));
    return { header: { deleted: str(header, 'name') } };
  });
  // (Without the credential row a grant is bound to: that is the vault's, not the account's.)
  const grantOut = ({ credential_row: _row, ...g }: Grant) => g;
  inSession('/v1/session/grants/create', 'Grant a principal read, verify or sign over some of this account\'s keys', async ({ ctx, account, header }) => ({ header: grantOut(await own().grant(ctx, account, { principal: header.principal, operations: header.operations, keys: header.keys, expires_at: header.expires_at })) }));
  inSession('/v1/session/grants/list', 'This account\'s grants', async ({ account }) => ({ header: { grants: (await own().grants(account)).map(grantOut) } }));
  inSession('/v1/session/grants/revoke', 'Revoke a grant (in force at the grantee\'s next request)', async ({ ctx, account, header }) => {
    await own().revokeGrant(ctx, account, header.id);
    return { header: { revoked: header.id } };
  });
  inSession('/v1/session/password/start', 'Change the password, first message (OPAQUE registration request)', async ({ ctx, account, header }) => ({ header: { response: await accounts().changePasswordStart(ctx, account.id, str(header, 'request')) } }));
  inSession('/v1/session/password/finish', 'Change the password: the new record; every session of the account ends, this one too', async ({ ctx, account, header }) => {
    const a = await accounts().changePasswordFinish(ctx, account.id, header.record);
    return { header: { password_version: a.passwordVersion } };
  });
  // Entered first (its number taken), then ended: a logout cannot be replayed, and the session
  // is gone on every node before the answer leaves.
  inSession('/v1/session/logout', 'End this session', async ({ req, account, sid }) => {
    await sessions().close(anon(req), sid);
    return { header: { ended: sid, account: account.id } };
  });
}

function unavailable(): never {
  throw new CustosError('vault_sealed', 'Accounts need the vault unsealed with its root.');
}
