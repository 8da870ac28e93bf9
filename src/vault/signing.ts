/**
 * Signing raw messages and digests (with a key, or an HD key's child by path), verifying, and
 * exporting a key wrapped to a recipient: each request checked against the key (state,
 * purpose, input), then through the one decide-sign-commit step (vault/step.ts).
 */
import { CustosError } from '../core/errors.js';
import { assertPurpose, type KeyUse } from '../core/purpose.js';
import { wipe } from '../core/bytes.js';
import type { AuditDraft, KeyRecord, SignOptions, SignPayload, SignRequest, SignResult } from '../core/types.js';
import { checkSignInput, verifySignature } from '../crypto/algorithms.js';
import { eciesEncrypt, encodeExportedKey, type Kem } from '../crypto/ecies.js';
import { parsePath } from '../wallet/paths.js';
import { sha256hex, type Ctx, type PolicySubject, type VaultCore } from './core.js';
import { decideSignCommit } from './step.js';
import type { Wallet } from './wallet.js';

export class Signing {
  constructor(
    private readonly core: VaultCore,
    private readonly wallet: Wallet,
  ) {}

  async sign(req: SignRequest): Promise<SignResult> {
    const core = this.core;
    const ctx: Ctx = { principal: req.principal, requestId: req.requestId };
    const key = await core.usableKey(ctx, 'sign', req.key);
    // Front-end context first, so it can never overwrite the vault's own facts.
    const details: AuditDraft['details'] = { ...req.context, [`${req.payload.kind}_sha256`]: sha256hex(req.payload.bytes), algorithm: key.algorithm };
    const use: KeyUse = req.use ?? (req.path !== undefined ? 'derived' : req.context.protocol === 'ssh-agent' ? 'ssh' : 'raw');
    await core.refuseOnError(ctx, 'sign', key, details, () => {
      checkSignInput(key.algorithm, req.payload, req.options);
      if (key.attributes.hd !== undefined) {
        if (req.path === undefined) throw new CustosError('bad_request', `${key.label} is an HD master key: give the derivation path of the child key that signs.`);
        details.path = req.path;
        this.wallet.checkPathAllowed(key, parsePath(req.path));
      } else if (req.path !== undefined) {
        throw new CustosError('bad_request', `${key.label} is not an HD master key; a derivation path does not apply.`);
      }
      // Before any policy or signature: a consensus key never signs here what its watermark
      // did not see, an SSH key signs only for its agent (core/purpose.ts).
      assertPurpose(key, use);
    });
    const ssh = req.context.protocol === 'ssh-agent';
    const subject: PolicySubject = {
      payloadType: ssh ? 'ssh' : req.payload.kind === 'digest' ? 'digest' : 'raw',
      facts: { ...req.context, ...(req.path ? { path: req.path } : {}) },
      ...(req.path !== undefined ? { paths: [parsePath(req.path)] } : {}),
      ...(req.payload.kind === 'message' ? { payload: req.payload.bytes } : {}),
      ...(ssh ? { ssh: { host: req.context.host, user: req.context.user, namespace: req.context.namespace } } : {}),
    };
    const out = await decideSignCommit(core, {
      ctx,
      key,
      operation: 'sign',
      subject,
      details,
      produce: () =>
        req.path !== undefined ? this.wallet.signDerived(key, req.path, req.payload, req.options) : core.deps.backend.sign(key, () => core.deps.keyring.openSecret(key), req.payload, req.options, { principal: ctx.principal.id, requestId: ctx.requestId, kind: use === 'consensus' ? 'vote_extension' : 'raw' }),
      outcome: (o) => ({ signature_sha256: sha256hex(o.signature), encoding: o.encoding }),
    });
    return { keyId: key.id, algorithm: key.algorithm, signature: out.signature, encoding: out.encoding };
  }

  /**
   * Verification needs only the public key: it is not audited (refusals are) and works on
   * disabled keys too.
   */
  async verify(ctx: Ctx, ref: string, payload: SignPayload, signature: Uint8Array, options: SignOptions): Promise<{ key: KeyRecord; valid: boolean }> {
    const key = await this.core.scopedKey(ctx, 'verify', 'verify', ref);
    checkSignInput(key.algorithm, payload, { ...options, auxRand: undefined });
    return { key, valid: verifySignature(key.algorithm, key.publicKey, payload, signature, options) };
  }

  /** Exports an `exportable` key wrapped to a recipient public key; never in plaintext. */
  async exportKey(ctx: Ctx, ref: string, recipient: { kem: Kem; publicKey: Uint8Array }): Promise<{ key: KeyRecord; envelope: Uint8Array }> {
    const core = this.core;
    const key = await core.usableKey(ctx, 'export', ref);
    const details = { kem: recipient.kem, recipient_sha256: sha256hex(recipient.publicKey) };
    if (!key.exportable) {
      return core.refuse(ctx, 'export', key, new CustosError('key_not_exportable', `The key ${key.label} was not created exportable; it can never leave the vault.`), details);
    }
    const envelope = await decideSignCommit(core, {
      ctx,
      key,
      operation: 'export',
      subject: { payloadType: null, facts: {} },
      details,
      // Wrapped in memory; the envelope leaves only once the export is durable in the log.
      produce: async () => {
        let secret: Uint8Array | undefined;
        let plaintext: Uint8Array | undefined;
        try {
          secret = core.deps.keyring.openSecret(key);
          plaintext = encodeExportedKey(key.algorithm, key.publicKey, secret);
          return eciesEncrypt(recipient.kem, recipient.publicKey, plaintext);
        } finally {
          wipe(secret, plaintext);
        }
      },
      outcome: (e) => ({ envelope_sha256: sha256hex(e) }),
    });
    return { key, envelope };
  }
}
