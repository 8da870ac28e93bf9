/**
 * The HTTP routes of Tor keys (vault/tor.ts).
 *
 *   POST /v1/tor/relay-masters          a new relay master identity key                      (create)
 *   POST /v1/tor/relay-masters/import   a relay's ed25519_master_id_secret_key file          (create)
 *   POST /v1/tor/:key/relay-cert        a signing certificate for a medium-term key          (sign)
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { base64ToBytes, bytesToBase64, bytesToHex, hexToBytes, wipe } from '../../core/bytes.js';
import type { Principal } from '../../core/types.js';
import type { Vault } from '../../vault/vault.js';
import { keyView } from './server.js';

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
}
