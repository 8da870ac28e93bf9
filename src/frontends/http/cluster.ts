/**
 * The HTTP routes between cosigners (cluster/), and the admin routes that drive them:
 *
 *   POST /v1/cluster/<step>       a peer's call: ping, commit, share, dkg/round1, dkg/round2,
 *                                 dkg/deliver, dkg/finish, dealt. No token: the caller is the
 *                                 peer whose configured certificate SHA-256 is that of the
 *                                 verified client certificate of the connection, or no one.
 *   GET  /v1/cluster              admin: this node, its peers, and whether they answer
 *   POST /v1/cluster/expect       admin: this node agrees to a key set a peer will propose
 *   POST /v1/cluster/keys         admin: distributed key generation across the members
 *   POST /v1/cluster/keys/split   admin: a dealer's one-time split of an existing key
 *   POST /v1/cluster/keys/:key/refresh  admin: new shares for the same key; or a member replaced
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CustosError } from '../../core/errors.js';
import { base64ToBytes } from '../../core/bytes.js';
import { PEER_STEPS, type ClusterApi, type PeerStep } from '../../core/cluster.js';
import type { Principal } from '../../core/types.js';
import { sourceOf, type Vault } from '../../vault/vault.js';
import { peerOf } from './auth.js';

const errors = { 400: { $ref: 'Error#' }, 401: { $ref: 'Error#' }, 403: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' }, 502: { $ref: 'Error#' }, 503: { $ref: 'Error#' } };
const label = { type: 'string', minLength: 1, maxLength: 128 } as const;
const names = { type: 'array', maxItems: 16, items: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,31}$' } } as const;
const algorithm = { type: 'string', enum: ['ed25519', 'secp256k1-bip340'] } as const;
const threshold = { type: 'integer', minimum: 2, maximum: 16 } as const;
const purpose = { type: 'string', enum: ['general', 'consensus'] } as const;
const answer = { type: 'object', additionalProperties: true } as const;

export function clusterRoutes(app: FastifyInstance, cluster: () => ClusterApi | null, vault: () => Vault, ctx: (req: FastifyRequest) => { principal: Principal; requestId: string }): void {
  const node = (): ClusterApi => cluster() ?? fail(new CustosError('not_found', 'This node is not a cosigner: its configuration has no [cluster] section.'));

  // Refusals on the peer routes are audited at most once a minute per caller and cause (with a
  // count), so that nobody can fill the log by knocking.
  // Keyed by the caller's source as failed logins are (an IPv4 address, an IPv6 /64: a new
  // certificate per request does not make a new caller), and at most 60 entries a minute in all.
  const recent = new Map<string, { at: number; count: number }>();
  let minute = { at: 0, written: 0, suppressed: 0 };
  async function recordRefusal(req: FastifyRequest, why: string): Promise<void> {
    const net = sourceOf(req.ip);
    const now = Date.now();
    if (now - minute.at >= 60_000) minute = { at: now, written: 0, suppressed: minute.suppressed };
    const r = recent.get(net);
    if ((r && now - r.at < 60_000) || minute.written >= 60) {
      if (r) r.count++;
      minute.suppressed++;
      return;
    }
    for (const [k, v] of recent) if (now - v.at >= 60_000) recent.delete(k);
    recent.set(net, { at: now, count: 1 });
    minute.written++;
    const suppressed = minute.suppressed;
    minute.suppressed = 0;
    try {
      await vault().recordEvent({ principal: { id: `peer?:${net}`, kind: 'system' }, requestId: req.id }, 'cluster', null, 'denied', 'unauthorized:peer', { route: (req.routeOptions.url ?? '').slice(0, 64), why: why.slice(0, 160), refusals_not_recorded_since: suppressed });
    } catch {
      // Sealed, or the log unavailable: the caller is refused all the same.
    }
  }

  /**
   * The peer behind this connection's verified client certificate, decided before the body is
   * read; anyone else is refused (401), sealed vault or not.
   */
  async function peer(req: FastifyRequest): Promise<string> {
    const c = node();
    const cert = peerOf(req.raw.socket);
    const from = cert?.authorized ? c.peerOf(cert.fingerprint) : undefined;
    if (from !== undefined) return from;
    const why = !cert ? 'no client certificate' : !cert.authorized ? `certificate not verified (${cert.error ?? 'unknown CA'})` : `certificate ${cert.fingerprint} is no configured peer's`;
    await recordRefusal(req, why);
    throw new CustosError('unauthorized', `A cluster route answers only this node's peers over mutual TLS: ${why}.`, { tag: 'peer' });
  }

  const peers = new WeakMap<FastifyRequest, string>();
  for (const step of PEER_STEPS) {
    app.post<{ Body: Record<string, unknown> }>(
      `/v1/cluster/${step}`,
      {
        config: { public: true },
        onRequest: async (req) => {
          peers.set(req, await peer(req));
        },
        schema: { summary: `Cosigner step ${step} (peers only, by client certificate)`, tags: ['cluster'], body: { type: 'object', maxProperties: 16 }, response: { 200: answer, ...errors } },
      },
      async (req) => node().answer(peers.get(req)!, req.id, step as PeerStep, req.body),
    );
  }

  app.get('/v1/cluster', { schema: { summary: 'This node, its peers and whether each answers (admin)', tags: ['cluster'], security: [{ bearer: [] }], response: { 200: answer, ...errors } } }, async () => node().status());

  app.post<{ Body: { label: string; algorithm: string; threshold: number; members?: string[]; purpose?: string } }>(
    '/v1/cluster/keys',
    {
      schema: {
        summary: 'Distributed key generation: every member ends with a share, none with the key (admin)',
        tags: ['cluster'],
        security: [{ bearer: [] }],
        body: { type: 'object', additionalProperties: false, required: ['label', 'algorithm', 'threshold'], properties: { label, algorithm, threshold, members: names, purpose } },
        response: { 201: answer, ...errors },
      },
    },
    async (req, reply) => {
      const made = await node().keygen(ctx(req), req.body);
      await vault().recordEvent(ctx(req), 'threshold_keygen', null, 'ok', null, { label: req.body.label, members: String((made.members as string[]).join(',')), threshold: req.body.threshold, public_key: String(made.public_key) });
      reply.code(201);
      return made;
    },
  );

  app.post<{ Body: { label: string; kind: 'keygen' | 'split' | 'reshare'; purpose?: string; threshold: number; members: string[]; coordinator: string; algorithm?: string; minutes?: number } }>(
    '/v1/cluster/expect',
    {
      schema: {
        summary: "This node's operator agrees to a key set a peer will propose: generate it (keygen), receive a dealt share (split) or a refresh that changes the members (reshare) (admin)",
        tags: ['cluster'],
        security: [{ bearer: [] }],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['label', 'kind', 'threshold', 'members', 'coordinator'],
          properties: { label, kind: { type: 'string', enum: ['keygen', 'split', 'reshare'] }, purpose, threshold, members: { ...names, minItems: 2 }, coordinator: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,31}$' }, algorithm, minutes: { type: 'integer', minimum: 1, maximum: 1440 } },
        },
        response: { 201: answer, ...errors },
      },
    },
    async (req, reply) => {
      const made = node().expect(req.body);
      await vault().recordEvent(ctx(req), 'threshold_expect', null, 'ok', null, { label: req.body.label, kind: req.body.kind, purpose: req.body.purpose ?? 'general', threshold: req.body.threshold, members: req.body.members.join(','), coordinator: req.body.coordinator });
      reply.code(201);
      return made;
    },
  );

  app.post<{ Params: { key: string }; Body: { replace?: string; resume?: boolean; abort?: boolean } }>(
    '/v1/cluster/keys/:key/refresh',
    {
      schema: {
        summary: 'Proactive refresh: new shares for the same public key, old ones useless; with replace "old=new", a lost member replaced (admin)',
        tags: ['cluster'],
        security: [{ bearer: [] }],
        body: { type: 'object', additionalProperties: false, properties: { replace: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,31}=[a-z0-9][a-z0-9_-]{0,31}$' }, resume: { type: 'boolean' }, abort: { type: 'boolean' } } },
        response: { 200: answer, ...errors },
      },
    },
    async (req) => {
      const [old, added] = req.body.replace?.split('=') ?? [];
      if ([req.body.replace !== undefined, req.body.resume === true, req.body.abort === true].filter(Boolean).length > 1) throw new CustosError('bad_request', 'Give at most one of replace, resume and abort.');
      const made = await node().refresh(ctx(req), { label: req.params.key, ...(old && added ? { replace: { old, new: added } } : {}), ...(req.body.resume ? { resume: true } : {}), ...(req.body.abort ? { abort: true } : {}) });
      await vault().recordEvent(ctx(req), req.body.abort ? 'threshold_refresh_abort' : req.body.resume ? 'threshold_refresh_resume' : 'threshold_refresh', null, 'ok', null, { label: req.params.key, ...(Array.isArray(made.members) ? { members: String((made.members as string[]).join(',')) } : {}), ...(req.body.replace ? { replaced: req.body.replace } : {}) });
      return made;
    },
  );

  app.post<{ Body: { label: string; format: 'raw' | 'hex' | 'pkcs8' | 'openssh' | 'cometbft'; material: string; algorithm?: string; threshold: number; members?: string[]; purpose?: string } }>(
    '/v1/cluster/keys/split',
    {
      schema: {
        summary: "A dealer's one-time split of an existing key into one share per member; the whole key is not stored (admin)",
        tags: ['cluster'],
        security: [{ bearer: [] }],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['label', 'format', 'material', 'threshold'],
          properties: { label, format: { type: 'string', enum: ['raw', 'hex', 'pkcs8', 'openssh', 'cometbft'] }, material: { type: 'string', minLength: 1, maxLength: 65536 }, algorithm, threshold, members: names, purpose },
        },
        response: { 201: answer, ...errors },
      },
    },
    async (req, reply) => {
      const { material, ...rest } = req.body;
      const made = await node().split(ctx(req), { ...rest, material: base64ToBytes(material, 'material') });
      reply.code(201);
      return made;
    },
  );
}

function fail(e: CustosError): never {
  throw e;
}
