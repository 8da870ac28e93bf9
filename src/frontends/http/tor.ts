/**
 * The HTTP routes of Tor keys (vault/tor.ts).
 *
 *   POST /v1/tor/relay-masters          a new relay master identity key                      (create)
 *   POST /v1/tor/relay-masters/import   a relay's ed25519_master_id_secret_key file          (create)
 *   POST /v1/tor/:key/relay-cert        a signing certificate for a medium-term key          (sign)
 *   POST /v1/tor/onion-services         a new onion-service identity key K_hs_id             (create)
 *   POST /v1/tor/onion-services/import  an onion service's hs_ed25519_secret_key file        (create)
 *   GET  /v1/tor/:key/onion             its address, a period's blinded key and subcredential (read)
 *   POST /v1/tor/:key/blind-sign        a signature by a period's blinded key                (sign)
 *   POST /v1/tor/rsa-identities[/import] an RSA-1024 identity key (new, or tor's secret_id_key) (create)
 *   POST /v1/tor/:key/rsa-sign          PKCS#1 v1.5 over a 20/32-byte digest, no DigestInfo   (sign)
 *   POST /v1/tor/x25519-keys[/import]   an X25519 key (new, or its 32-byte secret)            (create)
 *   POST /v1/tor/:key/x25519            X25519(k, peer)                                       (ecdh)
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { base64ToBytes, bytesToBase64, bytesToHex, hexToBytes, wipe } from '../../core/bytes.js';
import type { Principal } from '../../core/types.js';
import type { Vault } from '../../vault/vault.js';
import { keyView } from './server.js';
import { periodAt } from '../../crypto/tor-blind.js';

const errors = { 400: { $ref: 'Error#' }, 401: { $ref: 'Error#' }, 403: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' }, 503: { $ref: 'Error#' } };
const secured = [{ bearer: [] }];
const tags = ['tor'];
const label = { type: 'string', minLength: 1, maxLength: 128 } as const;
const maxLifetime = { type: 'integer', minimum: 1, maximum: 87600, description: 'the longest certificate this key issues, in hours (default 720: 30 days)' } as const;

export function torRoutes(app: FastifyInstance, vault: () => Vault, ctx: (req: FastifyRequest) => { principal: Principal; requestId: string }): void {
  app.post<{ Body: { label: string; max_lifetime_hours?: number } }>(
    '/v1/tor/relay-masters',
    { schema: { summary: "A new relay master identity key (Ed25519, purpose tor): it signs only relay signing certificates", tags, security: secured, body: { type: 'object', additionalProperties: false, required: ['label'], properties: { label, max_lifetime_hours: maxLifetime } }, response: { 201: { $ref: 'Key#' }, ...errors } } },
    async (req, reply) => {
      const k = await vault().tor.createRelayMaster(ctx(req), { label: req.body.label, ...(req.body.max_lifetime_hours !== undefined ? { maxLifetimeHours: req.body.max_lifetime_hours } : {}) });
      return reply.code(201).send(keyView(k));
    },
  );

  app.post<{ Body: { label: string; secret_key_file: string; max_lifetime_hours?: number } }>(
    '/v1/tor/relay-masters/import',
    { schema: { summary: "A relay's existing master identity key: its ed25519_master_id_secret_key file (tor's tagged format, unencrypted), base64", tags, security: secured, body: { type: 'object', additionalProperties: false, required: ['label', 'secret_key_file'], properties: { label, secret_key_file: { type: 'string', maxLength: 256 }, max_lifetime_hours: maxLifetime } }, response: { 201: { $ref: 'Key#' }, ...errors } } },
    async (req, reply) => {
      const file = base64ToBytes(req.body.secret_key_file, 'secret_key_file');
      try {
        const k = await vault().tor.importRelayMaster(ctx(req), { label: req.body.label, file, ...(req.body.max_lifetime_hours !== undefined ? { maxLifetimeHours: req.body.max_lifetime_hours } : {}) });
        return reply.code(201).send(keyView(k));
      } finally {
        wipe(file);
      }
    },
  );

  app.post<{ Params: { key: string }; Body: { signing_public_key: string; lifetime_hours: number } }>(
    '/v1/tor/:key/relay-cert',
    {
      schema: {
        summary: "A type-4 signing certificate (torspec cert-spec) for the relay's medium-term key, signed by the master key in the vault",
        tags,
        security: secured,
        params: { type: 'object', required: ['key'], properties: { key: label } },
        body: { type: 'object', additionalProperties: false, required: ['signing_public_key', 'lifetime_hours'], properties: { signing_public_key: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'Ed25519, hex' }, lifetime_hours: { type: 'integer', minimum: 1, maximum: 87600 } } },
        response: { 200: { type: 'object', properties: { cert: { type: 'string', description: 'the certificate, base64 (ed25519_signing_cert after its header)' }, master_public_key: { type: 'string' }, expires_at: { type: 'string' } } }, ...errors },
      },
    },
    async (req) => {
      const r = await vault().tor.relayCert(ctx(req), req.params.key, { signingPublicKey: hexToBytes(req.body.signing_public_key, 'signing_public_key'), lifetimeHours: req.body.lifetime_hours });
      return { cert: bytesToBase64(r.cert), master_public_key: bytesToHex(r.masterPublicKey), expires_at: new Date(r.expiresHours * 3_600_000).toISOString() };
    },
  );

  app.post<{ Body: { label: string } }>(
    '/v1/tor/onion-services',
    { schema: { summary: "A new onion-service identity key K_hs_id (Ed25519, purpose tor): it signs only as its blinded keys", tags, security: secured, body: { type: 'object', additionalProperties: false, required: ['label'], properties: { label } }, response: { 201: { $ref: 'Key#' }, ...errors } } },
    async (req, reply) => reply.code(201).send(keyView(await vault().tor.createOnionService(ctx(req), { label: req.body.label }))),
  );

  app.post<{ Body: { label: string; secret_key_file: string } }>(
    '/v1/tor/onion-services/import',
    { schema: { summary: "An onion service's existing identity key: its hs_ed25519_secret_key file (tor's tagged format), base64", tags, security: secured, body: { type: 'object', additionalProperties: false, required: ['label', 'secret_key_file'], properties: { label, secret_key_file: { type: 'string', maxLength: 256 } } }, response: { 201: { $ref: 'Key#' }, ...errors } } },
    async (req, reply) => {
      const file = base64ToBytes(req.body.secret_key_file, 'secret_key_file');
      try {
        return reply.code(201).send(keyView(await vault().tor.importOnionService(ctx(req), { label: req.body.label, file })));
      } finally {
        wipe(file);
      }
    },
  );

  const periodNum = { type: 'string', pattern: '^[0-9]{1,15}$', description: 'a time period number (default: the current one)' } as const;
  const periodLength = { type: 'string', pattern: '^[0-9]{1,6}$', description: 'the time period length in minutes (default 1440)' } as const;
  app.get<{ Params: { key: string }; Querystring: { period?: string; length?: string } }>(
    '/v1/tor/:key/onion',
    { schema: { summary: "An onion service's address, and the blinded public key and subcredential of a time period", tags, security: secured, params: { type: 'object', required: ['key'], properties: { key: label } }, querystring: { type: 'object', additionalProperties: false, properties: { period: periodNum, length: periodLength } }, response: { 200: { type: 'object', properties: { address: { type: 'string' }, period_num: { type: 'integer' }, period_length: { type: 'integer' }, blinded_public_key: { type: 'string' }, subcredential: { type: 'string' } } }, ...errors } } },
    async (req) => {
      const length = req.query.length ? Number(req.query.length) : 1440;
      const r = await vault().tor.onionInfo(ctx(req), req.params.key, req.query.period ? { num: Number(req.query.period), length } : req.query.length ? periodAt(new Date(), length) : undefined);
      return { address: r.address, period_num: r.period.num, period_length: r.period.length, blinded_public_key: bytesToHex(r.blindedPublicKey), subcredential: bytesToHex(r.subcredential) };
    },
  );

  app.post<{ Params: { key: string }; Body: { period_num: number; period_length?: number; message: string } }>(
    '/v1/tor/:key/blind-sign',
    { bodyLimit: 128 * 1024, schema: { summary: "A signature by the blinded key of a time period (K_hs_id never leaves the vault); policy documents see the period (tor_periods)", tags, security: secured, params: { type: 'object', required: ['key'], properties: { key: label } }, body: { type: 'object', additionalProperties: false, required: ['period_num', 'message'], properties: { period_num: { type: 'integer', minimum: 0, maximum: 2 ** 40 }, period_length: { type: 'integer', minimum: 1, maximum: 527040 }, message: { type: 'string', maxLength: 90_000, description: 'base64' } } }, response: { 200: { type: 'object', properties: { signature: { type: 'string' }, blinded_public_key: { type: 'string' } } }, ...errors } } },
    async (req) => {
      const r = await vault().tor.blindSign(ctx(req), req.params.key, { period: { num: req.body.period_num, length: req.body.period_length ?? 1440 }, message: base64ToBytes(req.body.message, 'message') });
      return { signature: bytesToHex(r.signature), blinded_public_key: bytesToHex(r.blindedPublicKey) };
    },
  );

  app.post<{ Body: { label: string } }>('/v1/tor/rsa-identities', { schema: { summary: 'A new RSA-1024 identity key for Tor (purpose tor; it signs only raw digests for tor)', tags, security: secured, body: { type: 'object', additionalProperties: false, required: ['label'], properties: { label } }, response: { 201: { $ref: 'Key#' }, ...errors } } }, async (req, reply) =>
    reply.code(201).send(keyView(await vault().tor.createRsaIdentity(ctx(req), { label: req.body.label }))),
  );

  app.post<{ Body: { label: string; pem: string } }>(
    '/v1/tor/rsa-identities/import',
    { schema: { summary: "A relay's or directory authority's RSA-1024 identity key: tor's secret_id_key (PEM)", tags, security: secured, body: { type: 'object', additionalProperties: false, required: ['label', 'pem'], properties: { label, pem: { type: 'string', maxLength: 4096 } } }, response: { 201: { $ref: 'Key#' }, ...errors } } },
    async (req, reply) => {
      const pem = new TextEncoder().encode(req.body.pem);
      try {
        return reply.code(201).send(keyView(await vault().tor.importRsaIdentity(ctx(req), { label: req.body.label, pem })));
      } finally {
        wipe(pem);
      }
    },
  );

  app.post<{ Params: { key: string }; Body: { digest: string } }>(
    '/v1/tor/:key/rsa-sign',
    { schema: { summary: "tor's crypto_pk_private_sign: RSA PKCS#1 v1.5 over a SHA-1 or SHA-256 digest itself, without DigestInfo", tags, security: secured, params: { type: 'object', required: ['key'], properties: { key: label } }, body: { type: 'object', additionalProperties: false, required: ['digest'], properties: { digest: { type: 'string', pattern: '^([0-9a-f]{40}|[0-9a-f]{64})$' } } }, response: { 200: { type: 'object', properties: { signature: { type: 'string' } } }, ...errors } } },
    async (req) => ({ signature: bytesToHex(await vault().tor.rsaSign(ctx(req), req.params.key, hexToBytes(req.body.digest, 'digest'))) }),
  );

  app.post<{ Body: { label: string } }>('/v1/tor/x25519-keys', { schema: { summary: "A new X25519 key for Tor (ntor, descriptor decryption): it agrees on keys, signs nothing", tags, security: secured, body: { type: 'object', additionalProperties: false, required: ['label'], properties: { label } }, response: { 201: { $ref: 'Key#' }, ...errors } } }, async (req, reply) =>
    reply.code(201).send(keyView(await vault().tor.createX25519(ctx(req), { label: req.body.label }))),
  );

  app.post<{ Body: { label: string; secret: string } }>(
    '/v1/tor/x25519-keys/import',
    { schema: { summary: 'An existing X25519 secret (32 bytes, hex)', tags, security: secured, body: { type: 'object', additionalProperties: false, required: ['label', 'secret'], properties: { label, secret: { type: 'string', pattern: '^[0-9a-f]{64}$' } } }, response: { 201: { $ref: 'Key#' }, ...errors } } },
    async (req, reply) => {
      const secret = hexToBytes(req.body.secret, 'secret');
      try {
        return reply.code(201).send(keyView(await vault().tor.importX25519(ctx(req), { label: req.body.label, secret })));
      } finally {
        wipe(secret);
      }
    },
  );

  app.post<{ Params: { key: string }; Body: { peer_public_key: string } }>(
    '/v1/tor/:key/x25519',
    { schema: { summary: 'X25519(k, peer) with a vault key (RFC 7748); a small-order peer key is refused', tags, security: secured, params: { type: 'object', required: ['key'], properties: { key: label } }, body: { type: 'object', additionalProperties: false, required: ['peer_public_key'], properties: { peer_public_key: { type: 'string', pattern: '^[0-9a-f]{64}$' } } }, response: { 200: { type: 'object', properties: { shared: { type: 'string' } } }, ...errors } } },
    async (req) => {
      const shared = await vault().tor.x25519(ctx(req), req.params.key, hexToBytes(req.body.peer_public_key, 'peer_public_key'));
      try {
        return { shared: bytesToHex(shared) };
      } finally {
        wipe(shared);
      }
    },
  );
}
