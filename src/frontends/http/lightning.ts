/**
 * The HTTP routes of a Lightning node's key (vault/lightning.ts). Versions are decimal
 * strings (LDK's update ids reach u64::MAX); states, records and envelopes are base64; hashes
 * and points hex.
 *
 *   GET  /v1/lightning/:key                     the node's public keys, object count, backup target   (state)
 *   PUT  /v1/lightning/:key/objects/:object     store a version of an object                           (state)
 *   GET  /v1/lightning/:key/objects/:object     its latest version, record and state                   (state)
 *   GET  /v1/lightning/:key/objects             a page of objects: id, version, record hash            (state)
 *   POST /v1/lightning/:key/reconcile           in sync, node behind, vault behind, or fork            (state)
 *   POST /v1/lightning/:key/restore             records checked by `custos lightning restore`          (state)
 *   GET  /v1/lightning/:key/hook-key            the public key at a hook path                          (state)
 *   POST /v1/lightning/:key/ecdh                k = SHA-256(p·R)                                       (ecdh)
 *   POST /v1/lightning/:key/decrypt             ECIES (custos-ecies-v1) decryption                     (decrypt)
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { base64ToBytes, bytesToBase64, bytesToHex, hexToBytes, wipe } from '../../core/bytes.js';
import type { Principal } from '../../core/types.js';
import { MAX_STATE_BYTES, parseVersion } from '../../crypto/lightning-record.js';
import type { Vault } from '../../vault/vault.js';

const errors = { 400: { $ref: 'Error#' }, 401: { $ref: 'Error#' }, 403: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' }, 413: { $ref: 'Error#' }, 503: { $ref: 'Error#' } };
const secured = [{ bearer: [] }];
const tags = ['lightning'];
const keyParams = { type: 'object', required: ['key'], properties: { key: { type: 'string', minLength: 1, maxLength: 128 } } } as const;
const objectParams = { type: 'object', required: ['key', 'object'], properties: { key: { type: 'string', minLength: 1, maxLength: 128 }, object: { type: 'string', pattern: '^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$' } } } as const;
const version = { type: 'string', pattern: '^[0-9]{1,20}$', description: 'decimal, 0 to 2^64-1' } as const;
const hash = { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'SHA-256 of the record, hex' } as const;
const path = { type: 'string', maxLength: 256, description: "a BIP32 path under m/9735'/2' (default m/9735'/2'/0')" } as const;
const objectVersion = { type: 'object', properties: { object: { type: 'string' }, version, hash, record: { type: 'string', description: 'the signed, encrypted record, base64' } } } as const;
/** base64 of the largest state, and room for the JSON around it. */
const STATE_B64 = Math.ceil(MAX_STATE_BYTES / 3) * 4;

export function lightningRoutes(app: FastifyInstance, vault: () => Vault, ctx: (req: FastifyRequest) => { principal: Principal; requestId: string }): void {
  app.get<{ Params: { key: string } }>('/v1/lightning/:key', { schema: { summary: "A Lightning node key: its record and backup public keys, how many objects it holds, where records are backed up", tags, security: secured, params: keyParams, response: { 200: { type: 'object', additionalProperties: true }, ...errors } } }, async (req) => {
    const d = await vault().lightning.describe(ctx(req), req.params.key);
    return { key: d.key.label, node: d.keys.node, record_public_key: bytesToHex(d.keys.recordPublic), backup_public_key: bytesToHex(d.keys.backupPublic), objects: d.objects, backup: d.backup };
  });

  app.put<{ Params: { key: string; object: string }; Body: { version: string; state: string } }>(
    '/v1/lightning/:key/objects/:object',
    {
      bodyLimit: STATE_B64 + 4096,
      schema: {
        summary: 'Store a version of an object (a channel monitor): newer than the stored one; encrypted, signed, backed up, then committed',
        tags,
        security: secured,
        params: objectParams,
        body: { type: 'object', additionalProperties: false, required: ['version', 'state'], properties: { version, state: { type: 'string', maxLength: STATE_B64, description: 'base64' } } },
        response: { 200: { ...objectVersion, properties: { ...objectVersion.properties, unchanged: { type: 'boolean' } } }, ...errors },
      },
    },
    async (req) => {
      const state = base64ToBytes(req.body.state, 'state');
      try {
        const r = await vault().lightning.put(ctx(req), req.params.key, req.params.object, parseVersion(req.body.version), state);
        return { object: r.objectId, version: r.version.toString(), hash: bytesToHex(r.hash), record: bytesToBase64(r.record), ...(r.unchanged ? { unchanged: true } : {}) };
      } finally {
        wipe(state);
      }
    },
  );

  app.get<{ Params: { key: string; object: string } }>('/v1/lightning/:key/objects/:object', { schema: { summary: "An object's latest version, its record and its state (decrypted for the node)", tags, security: secured, params: objectParams, response: { 200: { ...objectVersion, properties: { ...objectVersion.properties, state: { type: 'string' } } }, ...errors } } }, async (req) => {
    const r = await vault().lightning.get(ctx(req), req.params.key, req.params.object);
    try {
      return { object: r.objectId, version: r.version.toString(), hash: bytesToHex(r.hash), record: bytesToBase64(r.record), state: bytesToBase64(r.state) };
    } finally {
      wipe(r.state);
    }
  });

  app.get<{ Params: { key: string }; Querystring: { after?: string; limit?: string } }>(
    '/v1/lightning/:key/objects',
    {
      schema: {
        summary: 'A page of objects in id order: id, version, record hash',
        tags,
        security: secured,
        params: keyParams,
        querystring: { type: 'object', additionalProperties: false, properties: { after: { type: 'string', pattern: '^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$' }, limit: { type: 'string', pattern: '^[0-9]{1,4}$', description: '1 to 1000 (default 100)' } } },
        response: { 200: { type: 'object', properties: { objects: { type: 'array', items: { type: 'object', properties: { object: { type: 'string' }, version, hash } } }, next: { type: ['string', 'null'] } } }, ...errors },
      },
    },
    async (req) => {
      const limit = Math.max(1, Math.min(1000, Number(req.query.limit ?? '100')));
      const page = await vault().lightning.list(ctx(req), req.params.key, req.query.after ?? null, limit);
      return { objects: page.map((o) => ({ object: o.objectId, version: o.version.toString(), hash: bytesToHex(o.hash) })), next: page.length === limit ? page[page.length - 1]!.objectId : null };
    },
  );

  app.post<{ Params: { key: string }; Body: { object: string; version: string; hash: string; records?: string[] } }>(
    '/v1/lightning/:key/reconcile',
    {
      bodyLimit: 16 * 1024 * 1024,
      schema: {
        summary: 'The node says which version of an object it holds: in sync, node behind (the record and state to replay), vault behind (hand over the records), or fork (409, audited, counted)',
        tags,
        security: secured,
        params: keyParams,
        body: { type: 'object', additionalProperties: false, required: ['object', 'version', 'hash'], properties: { object: { type: 'string', pattern: '^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$' }, version, hash, records: { type: 'array', maxItems: 100, items: { type: 'string', maxLength: STATE_B64 + 512 } } } },
        response: { 200: { type: 'object', properties: { status: { type: 'string', enum: ['in_sync', 'node_behind', 'vault_behind'] }, version: { type: ['string', 'null'] }, hash: { type: ['string', 'null'] }, record: { type: 'string' }, state: { type: 'string' }, applied: { type: 'integer' } } }, ...errors },
      },
    },
    async (req) => {
      const b = req.body;
      const r = await vault().lightning.reconcile(ctx(req), req.params.key, { objectId: b.object, version: parseVersion(b.version), hash: hexToBytes(b.hash, 'hash'), ...(b.records ? { records: b.records.map((x) => base64ToBytes(x, 'record')) } : {}) });
      const state = r.state ? bytesToBase64(r.state) : undefined;
      wipe(r.state);
      return {
        status: r.status,
        version: r.version === null ? null : r.version.toString(),
        hash: r.hash ? bytesToHex(r.hash) : null,
        ...(r.record ? { record: bytesToBase64(r.record) } : {}),
        ...(state !== undefined ? { state } : {}),
        ...(r.applied !== undefined ? { applied: r.applied } : {}),
      };
    },
  );

  app.post<{ Params: { key: string }; Body: { records: string[] } }>(
    '/v1/lightning/:key/restore',
    {
      bodyLimit: 16 * 1024 * 1024,
      schema: {
        summary: "Each object's latest record from a checked backup (custos lightning restore): applied where newer than what is stored",
        tags,
        security: secured,
        params: keyParams,
        body: { type: 'object', additionalProperties: false, required: ['records'], properties: { records: { type: 'array', minItems: 1, maxItems: 1000, items: { type: 'string', maxLength: STATE_B64 + 512 } } } },
        response: { 200: { type: 'object', properties: { applied: { type: 'integer' }, kept: { type: 'integer' }, refused: { type: 'array', items: { type: 'object', properties: { object: { type: 'string' }, version: { type: 'string' }, code: { type: 'string' }, reason: { type: 'string' } } } } } }, ...errors },
      },
    },
    async (req) => vault().lightning.restore(ctx(req), req.params.key, req.body.records.map((x) => base64ToBytes(x, 'record'))),
  );

  app.get<{ Params: { key: string }; Querystring: { path?: string } }>('/v1/lightning/:key/hook-key', { schema: { summary: 'The public key at a hook path (what the node gives its peers)', tags, security: secured, params: keyParams, querystring: { type: 'object', additionalProperties: false, properties: { path } }, response: { 200: { type: 'object', properties: { path: { type: 'string' }, public_key: { type: 'string' } } }, ...errors } } }, async (req) => {
    const r = await vault().lightning.hookPublicKey(ctx(req), req.params.key, req.query.path);
    return { path: r.path, public_key: bytesToHex(r.publicKey) };
  });

  app.post<{ Params: { key: string }; Body: { point: string; path?: string } }>(
    '/v1/lightning/:key/ecdh',
    {
      schema: {
        summary: "The hsmd hook: the node gives R = r·G; the answer is k = SHA-256(compressed(p·R)) with the node's key p at the path",
        tags,
        security: secured,
        params: keyParams,
        body: { type: 'object', additionalProperties: false, required: ['point'], properties: { point: { type: 'string', pattern: '^([0-9a-f]{66}|[0-9a-f]{130})$', description: 'secp256k1 point, hex (33 or 65 bytes)' }, path } },
        response: { 200: { type: 'object', properties: { shared: { type: 'string', description: '32 bytes, hex' } } }, ...errors },
      },
    },
    async (req) => {
      const k = await vault().lightning.ecdh(ctx(req), req.params.key, { point: hexToBytes(req.body.point, 'point'), ...(req.body.path ? { path: req.body.path } : {}) });
      try {
        return { shared: bytesToHex(k) };
      } finally {
        wipe(k);
      }
    },
  );

  app.post<{ Params: { key: string }; Body: { envelope: string; path?: string } }>(
    '/v1/lightning/:key/decrypt',
    {
      bodyLimit: STATE_B64 + 4096,
      schema: {
        summary: "The hsmd hook: decrypts a custos-ecies-v1 envelope made to the node's key at the path",
        tags,
        security: secured,
        params: keyParams,
        body: { type: 'object', additionalProperties: false, required: ['envelope'], properties: { envelope: { type: 'string', maxLength: STATE_B64 + 512, description: 'base64' }, path } },
        response: { 200: { type: 'object', properties: { plaintext: { type: 'string', description: 'base64' } } }, ...errors },
      },
    },
    async (req) => {
      const p = await vault().lightning.decrypt(ctx(req), req.params.key, { envelope: base64ToBytes(req.body.envelope, 'envelope'), ...(req.body.path ? { path: req.body.path } : {}) });
      try {
        return { plaintext: bytesToBase64(p) };
      } finally {
        wipe(p);
      }
    },
  );
}
