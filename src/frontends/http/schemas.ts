/**
 * JSON schemas of the HTTP API. Fastify validates requests and serialises responses from
 * these, and @fastify/swagger turns them into /v1/openapi.json: one source for all three.
 * Every object is closed (`additionalProperties: false`): an unknown field is a 400.
 */
import { ALGORITHMS } from '../../core/types.js';
import { KEY_PURPOSES } from '../../core/purpose.js';
import { OPERATIONS, ROLES } from '../../vault/vault.js';
import { IMPORT_FORMATS } from '../../keystore/import.js';

const b64 = (description: string, maxLength = 349_528) => ({ type: 'string', pattern: '^[A-Za-z0-9+/_-]*={0,2}$', maxLength, description }) as const;

export const errorSchema = {
  $id: 'Error',
  type: 'object',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string', description: 'Stable machine code, e.g. key_not_found or policy_denied:velocity.' },
    message: { type: 'string', description: 'A sentence for a human.' },
    request_id: { type: 'string' },
  },
} as const;

export const keySchema = {
  $id: 'Key',
  type: 'object',
  required: ['id', 'label', 'algorithm', 'state', 'exportable', 'origin', 'created_at', 'updated_at', 'public_key'],
  properties: {
    id: { type: 'string', description: 'Stable id, `key_` + 26 base32 characters.' },
    label: { type: 'string' },
    algorithm: { type: 'string', enum: [...ALGORITHMS] },
    state: { type: 'string', enum: ['active', 'disabled', 'destroyed'] },
    exportable: { type: 'boolean' },
    purpose: { type: 'string', enum: [...KEY_PURPOSES, 'legacy'], description: 'What the key signs (fixed at creation); legacy: made before purposes, every use but consensus.' },
    origin: { type: 'string', enum: ['generated', 'imported'] },
    created_at: { type: 'string', format: 'date-time' },
    updated_at: { type: 'string', format: 'date-time' },
    attributes: { type: 'object', additionalProperties: true, description: 'Fixed at creation: front-end metadata (ssh.comment, ...) and expires_at.' },
    corrupt: { type: 'boolean', description: 'Present (true) in listings when the stored record fails authentication: restore from a backup.' },
    public_key: {
      type: 'object',
      required: ['raw', 'spki_pem'],
      properties: {
        raw: { type: 'string', description: 'Base64 of the raw public key: 32-byte Ed25519 point, 33-byte compressed secp256k1, 32-byte x-only BIP340, 65-byte uncompressed P-256, SPKI DER for RSA.' },
        raw_hex: { type: 'string' },
        spki_pem: { type: 'string' },
        openssh: { type: ['string', 'null'], description: 'authorized_keys line, for algorithms SSH has (Ed25519, P-256, RSA).' },
      },
    },
  },
} as const;

const keyParams = {
  type: 'object',
  required: ['key'],
  properties: { key: { type: 'string', minLength: 1, maxLength: 128, description: 'Key id or label.' } },
} as const;

const labelProp = { type: 'string', minLength: 1, maxLength: 64 } as const;
const exportableProp = { type: 'boolean', default: false, description: 'Fixed at creation: whether the key may ever be exported (wrapped).' } as const;

const errors = { 400: { $ref: 'Error#' }, 401: { $ref: 'Error#' }, 403: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' }, 410: { $ref: 'Error#' }, 413: { $ref: 'Error#' }, 503: { $ref: 'Error#' } };
const secured = [{ bearer: [] }];

const purposeProp = {
  type: 'string',
  enum: KEY_PURPOSES.filter((p) => p !== 'verify'),
  description: 'What the key signs, fixed at creation: general (raw payloads, the default), ssh (only through an ssh-agent socket), consensus (only CometBFT votes and proposals, behind the watermark), bitcoin (PSBTs and BIP32 children).',
} as const;

const backendProp = { type: 'string', pattern: '^(software|pkcs11:[A-Za-z0-9._-]{1,64})$', description: 'software (default) or pkcs11:<name> from the [[pkcs11]] configuration' } as const;
const wrappedProp = { type: 'boolean', default: false, description: 'PKCS#11 only: keep the key as a blob wrapped by the token\'s AES key in the database, not as a token object' } as const;

export const createKeySchema = {
  summary: 'Generate a key inside the vault',
  tags: ['keys'],
  security: secured,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['label', 'algorithm'],
    properties: {
      label: labelProp,
      algorithm: { type: 'string', enum: [...ALGORITHMS] },
      exportable: exportableProp,
      backend: backendProp,
      wrapped: wrappedProp,
      tags: { type: 'array', maxItems: 16, items: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' }, description: 'policy tags (documents apply to keys by tag); fixed at creation' },
      purpose: purposeProp,
    },
  },
  response: { 201: { $ref: 'Key#' }, ...errors },
} as const;

export const setPurposeSchema = {
  summary: 'Give a key made before key purposes (purpose legacy) its one purpose; once, and audited',
  tags: ['keys'],
  security: secured,
  params: keyParams,
  body: { type: 'object', additionalProperties: false, required: ['purpose'], properties: { purpose: purposeProp } },
  response: { 200: { $ref: 'Key#' }, ...errors },
} as const;

export const adoptKeySchema = {
  summary: 'Adopt a key that already exists on a PKCS#11 token (sensitive, non-extractable), by its CKA_LABEL or CKA_ID',
  tags: ['keys'],
  security: secured,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['label', 'backend'],
    properties: {
      label: labelProp,
      backend: backendProp,
      object_label: { type: 'string', minLength: 1, maxLength: 128 },
      object_id: { type: 'string', pattern: '^[0-9a-fA-F]{2,128}$' },
      purpose: purposeProp,
    },
  },
  response: { 201: { $ref: 'Key#' }, ...errors },
} as const;

export const batchCreateSchema = {
  summary: 'Generate many keys at once (labels prefix-<n>); for HSM-wrapped keys at scale',
  tags: ['keys'],
  security: secured,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['label_prefix', 'algorithm', 'count'],
    properties: {
      label_prefix: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,48}$' },
      start: { type: 'integer', minimum: 0, default: 0 },
      count: { type: 'integer', minimum: 1, maximum: 1000 },
      algorithm: { type: 'string', enum: [...ALGORITHMS] },
      backend: backendProp,
      wrapped: wrappedProp,
      purpose: purposeProp,
    },
  },
  response: { 201: { type: 'object', properties: { created: { type: 'integer' }, first: { type: 'string' }, last: { type: 'string' } } }, ...errors },
} as const;

export const importKeySchema = {
  summary: 'Import an existing private key',
  tags: ['keys'],
  security: secured,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['label', 'format', 'material'],
    properties: {
      label: labelProp,
      algorithm: { type: 'string', enum: [...ALGORITHMS], description: 'Required for raw and hex; checked against the material otherwise.' },
      format: { type: 'string', enum: [...IMPORT_FORMATS], description: 'raw: base64 of the 32-byte secret; hex: the secret in hex; pkcs8: PEM text; openssh: the OpenSSH private key file text (unencrypted); cometbft: the priv_validator_key.json text.' },
      material: { type: 'string', minLength: 1, maxLength: 65_536 },
      exportable: exportableProp,
      purpose: { ...purposeProp, description: `${purposeProp.description} Default: consensus for the cometbft format, general otherwise.` },
    },
  },
  response: { 201: { $ref: 'Key#' }, ...errors },
} as const;

export const importPublicKeySchema = {
  summary: 'Import a bare public key as a key that verifies and never signs (purpose verify)',
  tags: ['keys'],
  security: secured,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['label', 'format', 'material'],
    properties: {
      label: labelProp,
      format: { type: 'string', enum: ['spki-pem', 'spki-der', 'raw'], description: 'spki-pem: "-----BEGIN PUBLIC KEY-----" text; spki-der: base64 of the DER SubjectPublicKeyInfo; raw: base64 of the 32-byte Ed25519 point, a SEC1 point (33 or 65 bytes) for secp256k1 and p256, or 32-byte x-only for secp256k1-bip340.' },
      material: { type: 'string', minLength: 1, maxLength: 22_000 },
      algorithm: { type: 'string', enum: ['ed25519', 'secp256k1', 'secp256k1-bip340', 'p256', 'rsa-2048', 'rsa-3072', 'rsa-4096'], description: 'Required for raw; checked against SPKI (secp256k1-bip340 takes a secp256k1 SPKI).' },
      tags: { type: 'array', maxItems: 16, items: { type: 'string', pattern: '^[A-Za-z0-9._:@-]{1,64}$' } },
    },
  },
  response: { 201: { $ref: 'Key#' }, ...errors },
} as const;

export const listKeysSchema = {
  summary: 'List keys a page at a time in label order (1,000 unless limit says otherwise); `next` is the cursor of the next page (null at the end), passed back as `after`',
  tags: ['keys'],
  security: secured,
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: {
      limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$|^10000$', description: 'keys per page (1–10000, default 1000)' },
      after: { type: 'string', maxLength: 128, description: 'the label the previous page ended with (its `next`)' },
    },
  },
  response: { 200: { type: 'object', required: ['keys', 'next'], properties: { keys: { type: 'array', items: { $ref: 'Key#' } }, next: { type: 'string', nullable: true } } }, ...errors },
} as const;

export const keySchemaRoute = (summary: string) =>
  ({ summary, tags: ['keys'], security: secured, params: keyParams, response: { 200: { $ref: 'Key#' }, ...errors } }) as const;

const signOptions = {
  encoding: { type: 'string', enum: ['raw', 'der'], description: 'ECDSA only: raw r‖s or ASN.1 DER (default).' },
  hash: { type: 'string', enum: ['sha256', 'sha384', 'sha512'], description: 'ECDSA (sha256) and RSA: hash applied to the message, or the digest’s hash.' },
  padding: { type: 'string', enum: ['pkcs1', 'pss'], description: 'RSA only: PKCS#1 v1.5 (default) or PSS with salt length = hash length.' },
} as const;

export const signSchema = {
  summary: 'Sign a message or a digest',
  tags: ['signing'],
  security: secured,
  params: keyParams,
  body: {
    type: 'object',
    additionalProperties: false,
    properties: {
      message: b64('Base64 of the message to sign.'),
      digest: b64('Base64 of a pre-computed digest (ECDSA keys only).', 100),
      aux_rand: b64('BIP340 only: base64 of 32 bytes of auxiliary randomness (random when absent).', 100),
      path: { type: 'string', maxLength: 1024, description: 'HD master keys: the derivation path of the child key that signs' },
      ...signOptions,
    },
  },
  response: {
    200: {
      type: 'object',
      required: ['key_id', 'algorithm', 'signature', 'encoding', 'request_id'],
      properties: {
        key_id: { type: 'string' },
        algorithm: { type: 'string' },
        signature: { type: 'string', description: 'Base64.' },
        encoding: { type: 'string', description: 'raw | der (ECDSA), bip340, pkcs1 | pss (RSA); Ed25519 is raw.' },
        request_id: { type: 'string' },
      },
    },
    ...errors,
  },
} as const;

export const verifySchema = {
  summary: 'Verify a signature with a vault key',
  tags: ['signing'],
  security: secured,
  params: keyParams,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['signature'],
    properties: { message: b64('Base64 of the message.'), digest: b64('Base64 of the digest.', 100), signature: b64('Base64 of the signature.', 2000), ...signOptions },
  },
  response: { 200: { type: 'object', required: ['valid', 'key_id'], properties: { valid: { type: 'boolean' }, key_id: { type: 'string' } } }, ...errors },
} as const;

export const exportSchema = {
  summary: 'Export an exportable key, wrapped to a recipient public key (custos-ecies-v1)',
  tags: ['keys'],
  security: secured,
  params: keyParams,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['kem', 'recipient_public_key'],
    properties: {
      kem: { type: 'string', enum: ['x25519', 'secp256k1'] },
      recipient_public_key: b64('Base64 of the recipient public key: 32-byte X25519, or 33/65-byte SEC1 secp256k1.', 200),
    },
  },
  response: {
    200: {
      type: 'object',
      required: ['key_id', 'format', 'envelope'],
      properties: { key_id: { type: 'string' }, format: { type: 'string', enum: ['custos-ecies-v1'] }, envelope: { type: 'string', description: 'Base64 of the envelope (format in the README).' } },
    },
    ...errors,
  },
} as const;

export const auditSchema = {
  summary: 'Recent audit entries',
  tags: ['audit'],
  security: secured,
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: {
      limit: { type: 'string', pattern: '^[0-9]{1,4}$' },
      before: { type: 'string', pattern: '^[0-9]{1,15}$', description: 'Entries before this sequence number (the `next` of the previous page)' },
      key: { type: 'string', maxLength: 128, description: 'A key id or label' },
      principal: { type: 'string', maxLength: 256 },
      operation: { type: 'string', maxLength: 64 },
      outcome: { type: 'string', maxLength: 32 },
    },
  },
  response: {
    200: {
      type: 'object',
      properties: {
        entries: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              seq: { type: 'integer' },
              ts: { type: 'string' },
              request_id: { type: 'string' },
              principal: { type: 'string' },
              operation: { type: 'string' },
              key_id: { type: ['string', 'null'] },
              key_label: { type: ['string', 'null'] },
              outcome: { type: 'string' },
              reason: { type: ['string', 'null'] },
              details: { type: 'object', additionalProperties: true },
              hash: { type: 'string' },
              authenticated: { type: 'boolean', description: 'false: no MAC (written while sealed, or outside Custos)' },
            },
          },
        },
        next: { type: ['integer', 'null'], description: 'Pass as `before` for the page of older entries; null: this was the oldest' },
      },
    },
    ...errors,
  },
} as const;

export const whoamiSchema = {
  summary: 'The caller: its principal, role, the operations it may use and the keys (label globs, tags) it is confined to',
  tags: ['tokens'],
  security: secured,
  response: {
    200: {
      type: 'object',
      properties: {
        principal: { type: 'string' },
        role: { type: ['string', 'null'] },
        operations: { type: 'array', items: { type: 'string' } },
        keys: { type: 'array', items: { type: 'string' }, description: 'label globs; empty: any key' },
        tags: { type: 'array', items: { type: 'string' }, description: 'tags a key must carry; empty: none needed' },
      },
    },
    ...errors,
  },
} as const;

export const auditStatusSchema = {
  summary: 'The whole audit chain checked (links, signed checkpoints, MACs), and the newest signed checkpoint',
  tags: ['audit'],
  security: secured,
  response: {
    200: {
      type: 'object',
      properties: {
        ok: { type: 'boolean' },
        entries: { type: 'integer' },
        checkpoints: { type: 'integer' },
        head_seq: { type: 'integer' },
        head_hash: { type: 'string' },
        first_bad: { type: ['object', 'null'], properties: { seq: { type: 'integer' }, problem: { type: 'string' } } },
        checked_at: { type: 'string' },
        latest_checkpoint: { type: ['object', 'null'], properties: { seq: { type: 'integer' }, ts: { type: 'string' }, hash: { type: 'string' } } },
      },
    },
    ...errors,
  },
} as const;

export const agentStatusSchema = {
  summary: 'The ssh-agent sockets: where each listens, its key patterns, clients and lock',
  tags: ['ssh-agent'],
  security: secured,
  response: {
    200: {
      type: 'object',
      properties: {
        agents: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              socket: { type: 'string' },
              keys: { type: 'array', items: { type: 'string' } },
              tor_keys: { type: 'array', items: { type: 'string' } },
              max_connections: { type: 'integer' },
              listening: { type: 'boolean' },
              connections: { type: 'integer' },
              locked: { type: 'boolean' },
            },
          },
        },
      },
    },
    ...errors,
  },
} as const;

const approvalProps = {
  id: { type: 'string' },
  created_at: { type: 'string' },
  expires_at: { type: 'string', description: 'The request is refused if not approved by then.' },
  requester: { type: 'string', description: 'The principal waiting, e.g. ssh-agent:default.' },
  key_id: { type: 'string' },
  key_label: { type: 'string' },
  operation: { type: 'string' },
  summary: { type: 'object', additionalProperties: { type: 'string' }, description: 'What to decide on: ssh_user, sshsig_namespace, protocol ...' },
  required: { type: 'integer' },
  approved_by: { type: 'array', items: { type: 'string' } },
  approvers: { type: 'array', items: { type: 'string' }, description: 'who may approve (empty: any principal but the requester)' },
} as const;

export const approvalsSchema = {
  summary: 'Requests waiting for approval',
  tags: ['approvals'],
  security: secured,
  response: { 200: { type: 'object', properties: { approvals: { type: 'array', items: { type: 'object', properties: approvalProps } } } }, ...errors },
} as const;

export const decideSchema = (verb: 'approve' | 'deny') =>
  ({
    summary: verb === 'approve' ? 'Approve a waiting request (one approver, once)' : 'Deny a waiting request',
    tags: ['approvals'],
    security: secured,
    params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } },
    response: { 200: { type: 'object', properties: { ...approvalProps, settled: { type: 'string', enum: ['approved', 'denied', 'pending'] } } }, ...errors },
  }) as const;

export const restoreAgentSchema = {
  summary: 'Offer again the vault keys that ssh-add -d/-D hid from an ssh-agent socket',
  tags: ['ssh-agent'],
  security: secured,
  params: { type: 'object', required: ['name'], properties: { name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$' } } },
  response: { 200: { type: 'object', properties: { agent: { type: 'string' }, restored: { type: 'integer' } } }, ...errors },
} as const;

const watermarkParams = {
  type: 'object',
  required: ['key', 'chain'],
  properties: { key: { type: 'string', minLength: 1, maxLength: 128 }, chain: { type: 'string', minLength: 1, maxLength: 50 } },
} as const;

const watermarkResponse = {
  type: 'object',
  properties: {
    height: { type: 'string', description: 'int64, decimal' },
    round: { type: 'integer' },
    step: { type: 'integer', description: '1 proposal, 2 prevote, 3 precommit' },
    sign_bytes: { type: 'string', description: 'hex' },
    signature: { type: ['string', 'null'], description: 'base64' },
  },
} as const;

export const getWatermarkSchema = {
  summary: 'The consensus watermark (last signed height/round/step) of a key on a chain',
  tags: ['consensus'],
  security: secured,
  params: watermarkParams,
  response: { 200: watermarkResponse, ...errors },
} as const;

export const putWatermarkSchema = {
  summary: 'Seed a watermark from another signer (FilePV priv_validator_state.json); never moves it backwards',
  tags: ['consensus'],
  security: secured,
  params: watermarkParams,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['height', 'round', 'step'],
    properties: {
      height: { type: 'string', pattern: '^[0-9]{1,19}$' },
      round: { type: 'integer', minimum: 0, maximum: 2147483647 },
      step: { type: 'integer', minimum: 0, maximum: 3 },
      sign_bytes: { type: 'string', pattern: '^([0-9a-fA-F]{2}){0,65536}$' },
      signature: b64('Base64 of the signature over sign_bytes.', 200),
    },
  },
  response: { 200: watermarkResponse, ...errors },
} as const;

export const privvalStatusSchema = {
  summary: 'CometBFT connectors: connection state and last signed height/round/step',
  tags: ['consensus'],
  security: secured,
  response: {
    200: {
      type: 'object',
      properties: {
        validators: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              chain_id: { type: 'string' },
              address: { type: 'string' },
              dialect: { type: 'string', description: 'the node version the entry speaks: v0.34, v0.37, v0.38 or v1' },
              key: { type: 'string', description: 'the consensus key, as the entry names it' },
              state: { type: 'string', enum: ['connecting', 'connected', 'stopped'] },
              connected_since: { type: ['string', 'null'] },
              last_signed: { type: ['object', 'null'], description: 'the last position signed: this connection\'s, else the stored watermark', properties: { height: { type: 'string' }, round: { type: 'integer' }, step: { type: 'integer' } } },
              watermark: { type: ['object', 'null'], description: 'the double-sign watermark as stored for this key and chain (null: nothing signed yet, or the vault is sealed)', properties: { height: { type: 'string' }, round: { type: 'integer' }, step: { type: 'integer' } } },
              signatures: { type: 'integer', description: 'signatures on this connector since the daemon started' },
              refusals: { type: 'integer' },
              hint: { type: ['string', 'null'], description: 'what the last dropped connection most likely means, when it can be told' },
            },
          },
        },
      },
    },
    ...errors,
  },
} as const;

const changes = {
  type: ['object', 'null'],
  properties: { started: { type: 'array', items: { type: 'string' } }, restarted: { type: 'array', items: { type: 'string' } }, stopped: { type: 'array', items: { type: 'string' } }, unchanged: { type: 'array', items: { type: 'string' } } },
} as const;

export const reloadSchema = {
  summary: 'Re-read custos.toml (as SIGHUP does): start, restart or stop the [[privval]] and [[ssh_agent]] entries that changed; a bad file changes nothing (admin only)',
  tags: ['system'],
  security: secured,
  response: {
    200: {
      type: 'object',
      properties: {
        applied: { type: 'boolean', description: 'false while the vault is sealed: the entries start at unseal' },
        privval: changes,
        ssh_agent: changes,
        restart_needed: { type: 'array', items: { type: 'string' }, description: 'sections that changed but are read only at start' },
      },
    },
    ...errors,
  },
} as const;

const sealStatusBody = {
  type: 'object',
  properties: {
    sealed: { type: 'boolean' },
    seal: { type: 'string', enum: ['passphrase', 'shares', 'hsm'] },
    threshold: { type: 'integer' },
    progress: { type: 'integer' },
    reason: { type: 'string' },
  },
} as const;

export const sealStatusSchema = {
  summary: 'Seal state: sealed or not, how, and how many operator shares are in',
  tags: ['system'],
  response: { 200: sealStatusBody },
} as const;

export const unsealSchema = {
  summary: 'Give one operator share (no token: the share is the credential); the vault unseals when the threshold is reached',
  tags: ['system'],
  body: {
    type: 'object',
    additionalProperties: false,
    properties: {
      share: { type: 'string', minLength: 1, maxLength: 200 },
      reset: { type: 'boolean', description: 'forget the shares given so far' },
    },
  },
  response: { 200: sealStatusBody, 400: { $ref: 'Error#' }, 429: { $ref: 'Error#' } },
} as const;

const amount = { type: 'string', pattern: '^[0-9]{1,16}$', description: 'satoshis, decimal' } as const;

export const uploadPolicySchema = {
  summary: 'Upload a policy document (TOML or JSON); each upload of an id is its next version, audited',
  tags: ['policy'],
  security: secured,
  body: { type: 'object', additionalProperties: false, required: ['source'], properties: { source: { type: 'string', minLength: 1, maxLength: 1_048_576 }, format: { type: 'string', enum: ['toml', 'json'] } } },
  response: { 201: { type: 'object', additionalProperties: true }, ...errors },
} as const;

export const listPoliciesSchema = { summary: 'Policy documents in force', tags: ['policy'], security: secured, response: { 200: { type: 'object', additionalProperties: true }, ...errors } } as const;

export const policyHistorySchema = {
  summary: 'Every version of a policy document',
  tags: ['policy'],
  security: secured,
  params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
  response: { 200: { type: 'object', additionalProperties: true }, ...errors },
} as const;

export const testPolicySchema = {
  summary: 'Explain, rule by rule, what the policies would decide for a request (nothing is spent or signed)',
  tags: ['policy'],
  security: secured,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['key'],
    properties: {
      key: { type: 'string', minLength: 1, maxLength: 128 },
      operation: { type: 'string', enum: ['sign', 'export'], default: 'sign' },
      payload_type: { type: 'string', enum: ['raw', 'digest', 'psbt', 'ssh', 'consensus'], default: 'raw' },
      message: { type: 'string', maxLength: 700_000 },
      facts: { type: 'object', additionalProperties: { type: 'string', maxLength: 1024 }, maxProperties: 64 },
      principal: { type: 'string', maxLength: 128, description: 'evaluate as this principal id (default: the caller)' },
      psbt: {
        type: 'object',
        additionalProperties: false,
        required: ['outputs', 'fee'],
        properties: {
          outputs: { type: 'array', maxItems: 500, items: { type: 'object', additionalProperties: false, required: ['amount'], properties: { address: { type: ['string', 'null'], maxLength: 128 }, amount, is_change: { type: 'boolean', default: false } } } },
          fee: amount,
          input_count: { type: 'integer', minimum: 1, maximum: 500, default: 1 },
          vsize: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        },
      },
    },
  },
  response: { 200: { type: 'object', additionalProperties: true }, ...errors },
} as const;

export const createHdKeySchema = {
  summary: 'Create an HD master key (BIP32 secp256k1 or SLIP-10 ed25519): generated, from a BIP39 mnemonic, or from an xprv',
  tags: ['keys'],
  security: secured,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['label', 'curve'],
    properties: {
      label: labelProp,
      curve: { type: 'string', enum: ['secp256k1', 'ed25519'] },
      mnemonic: { type: 'string', maxLength: 512 },
      passphrase: { type: 'string', maxLength: 512 },
      xprv: { type: 'string', maxLength: 200 },
      allowed_paths: { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 256 }, description: 'path prefixes this key may sign under (all when absent)' },
      tags: { type: 'array', maxItems: 16, items: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' }, description: 'policy tags (documents apply to keys by tag); fixed at creation' },
      purpose: { type: 'string', enum: ['bitcoin', 'general', 'lightning'], description: 'bitcoin (the default for secp256k1: PSBTs and children by path), general (the default for ed25519: raw payloads by path), or lightning (a BIP32 Lightning node seed: state records and the hsmd hook).' },
    },
  },
  response: { 201: { $ref: 'Key#' }, ...errors },
} as const;

export const hdPublicSchema = {
  summary: 'Public key (and xpub) of an HD key at a derivation path',
  tags: ['keys'],
  security: secured,
  params: keyParams,
  querystring: { type: 'object', additionalProperties: false, required: ['path'], properties: { path: { type: 'string', maxLength: 1024 }, network: { type: 'string', enum: ['mainnet', 'testnet'], default: 'mainnet' } } },
  response: { 200: { type: 'object', properties: { path: { type: 'string' }, public_key: { type: 'string' }, public_key_hex: { type: 'string' }, xpub: { type: ['string', 'null'] } } }, ...errors },
} as const;

export const signPsbtSchema = {
  summary: 'Sign the inputs of a PSBT (BIP174/370) that belong to this HD key, after policy on amounts, destinations and fee',
  tags: ['signing'],
  security: secured,
  params: keyParams,
  body: { type: 'object', additionalProperties: false, required: ['psbt', 'network'], properties: { psbt: { type: 'string', minLength: 1, maxLength: 1_400_000, description: 'base64' }, network: { type: 'string', enum: ['bitcoin', 'testnet', 'regtest'] } } },
  response: { 200: { type: 'object', additionalProperties: true }, ...errors },
} as const;

const tokenView = {
  type: 'object',
  properties: {
    token: { type: 'string', description: 'the bearer token, shown once (create and rotate of a token principal)' },
    id: { type: 'string' },
    name: { type: 'string' },
    principal: { type: 'string', description: 'token:<name> or cert:<name>, as the audit log names it' },
    role: { type: 'string', enum: [...ROLES] },
    operations: { type: 'array', items: { type: 'string' } },
    keys: { type: 'array', items: { type: 'string' } },
    tags: { type: 'array', items: { type: 'string' } },
    expires_at: { type: 'string', nullable: true },
    rate_limit: { type: 'string', nullable: true },
    certificate_sha256: { type: 'string', nullable: true },
    certificate_name: { type: 'string', nullable: true },
    state: { type: 'string', enum: ['active', 'expired', 'revoked'] },
    revoked_at: { type: 'string', nullable: true },
    rotated_at: { type: 'string', nullable: true },
    created_at: { type: 'string' },
  },
} as const;

const termsProperties = {
  operations: { type: 'array', maxItems: 16, items: { type: 'string', enum: [...OPERATIONS] }, description: 'what the principal may do, within its role; default: the role\'s operations (a signer: read, sign, verify)' },
  keys: { type: 'array', maxItems: 32, items: { type: 'string', maxLength: 64 }, description: 'label globs (* and ?) of the keys it may use; empty: any' },
  tags: { type: 'array', maxItems: 32, items: { type: 'string', maxLength: 64 }, description: 'tags of the keys it may use (any one); empty: any' },
  expires_at: { type: 'string', maxLength: 40, nullable: true, description: 'ISO time or a duration (30m, 12h, 90d) after which the credential is refused; null clears it' },
  rate_limit: { type: 'string', maxLength: 16, nullable: true, description: 'N/s, N/min or N/h per process; null clears it' },
} as const;

export const createTokenSchema = {
  summary: 'Create a principal (admin only): a token, shown once, or a client certificate for mutual TLS',
  tags: ['system'],
  security: secured,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'role'],
    properties: {
      name: { type: 'string', maxLength: 64 },
      role: { type: 'string', enum: [...ROLES] },
      ...termsProperties,
      certificate_sha256: { type: 'string', maxLength: 95, description: 'bind the principal to this client certificate (mutual TLS) instead of making a token: its SHA-256 fingerprint' },
      certificate_name: { type: 'string', maxLength: 300, description: 'or to any certificate from [api] client_ca carrying this name: DNS:host, URI:uri, email:address, IP:address or CN=name (renewals keep working)' },
    },
  },
  response: { 201: tokenView, ...errors },
} as const;

const nameParams = { type: 'object', required: ['name'], properties: { name: { type: 'string', maxLength: 64 } } } as const;

export const updateTokenSchema = {
  summary: "Change a principal's scope, expiry or rate limit (admin only): from the next request, in every process",
  tags: ['system'],
  security: secured,
  params: nameParams,
  body: { type: 'object', additionalProperties: false, properties: termsProperties },
  response: { 200: tokenView, ...errors },
} as const;

export const revokeTokenSchema = {
  summary: 'Revoke a principal (admin only): its credential fails from the next request, in every process',
  tags: ['system'],
  security: secured,
  params: nameParams,
  response: { 200: tokenView, ...errors },
} as const;

export const rotateTokenSchema = {
  summary: "Replace a principal's token (shown once) or bound client certificate (admin only); the old one fails from the next request",
  tags: ['system'],
  security: secured,
  params: nameParams,
  body: { type: 'object', nullable: true, additionalProperties: false, properties: { certificate_sha256: { type: 'string', maxLength: 95 } } },
  response: { 200: tokenView, ...errors },
} as const;

export const listTokensSchema = {
  summary: 'Principals: names, roles, scopes and states (never the tokens)',
  tags: ['system'],
  security: secured,
  response: { 200: { type: 'object', properties: { tokens: { type: 'array', items: tokenView } } }, ...errors },
} as const;

export const tokenObjectsSchema = {
  summary: 'Private keys on a PKCS#11 token, and which vault key (if any) each is: what can be adopted',
  tags: ['keys'],
  security: secured,
  params: { type: 'object', required: ['backend'], properties: { backend: { type: 'string', pattern: '^pkcs11:[A-Za-z0-9._-]{1,64}$' } } },
  response: { 200: { type: 'object', additionalProperties: true }, ...errors },
} as const;
