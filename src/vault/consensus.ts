/**
 * Consensus signing with double-sign protection (CometBFT FilePV semantics), per key and
 * chain, through the one decide-sign-commit step: the watermark read fresh at every attempt
 * and moved by compare-and-set in the signature's own commit; and the import of another
 * signer's state.
 */
import { CustosError, isCustosError } from '../core/errors.js';
import { assertPurpose } from '../core/purpose.js';
import { equalBytes } from '../core/bytes.js';
import type { AuditDraft, Principal } from '../core/types.js';
import { checkImportedState } from '../crypto/cometbft/imported-state.js';
import { comparePosition, type Watermark, type WatermarkPosition } from '../store/store.js';
import { sha256hex, type Ctx, type VaultCore } from './core.js';
import { decideSignCommit } from './step.js';

export interface ConsensusSignRequest {
  requestId: string;
  principal: Principal;
  key: string;
  chainId: string;
  /** Step: 1 proposal, 2 prevote, 3 precommit (FilePV numbering). */
  position: WatermarkPosition;
  /** Canonical sign bytes, built by the front end from the decoded request. */
  signBytes: Uint8Array;
  /** The front end's knowledge of its message format: do two sign bytes differ only in their timestamp? */
  onlyTimestampDiffers(stored: Uint8Array, requested: Uint8Array): boolean;
  context: Record<string, string>;
}

export interface ConsensusSignResult {
  keyId: string;
  signature: Uint8Array;
  /** The sign bytes the signature is over: the stored ones when a previous signature is reused. */
  signBytes: Uint8Array;
  reused: boolean;
}

export class Consensus {
  constructor(private readonly core: VaultCore) {}

  /**
   * Signs a consensus message: below the watermark → refused; at the watermark with identical
   * sign bytes → the stored signature; differing only in the timestamp (as
   * `onlyTimestampDiffers` says) → the stored signature and the stored sign bytes, whose
   * timestamp the caller must use; anything else at the watermark → refused. A new position
   * is signed in memory, then the watermark, the signature and the audit entries are made
   * durable in one transaction before anything is returned. Two processes on one database
   * cannot both advance from the same state: the loser's signature is dropped unreleased and
   * it decides again. Policy documents apply (principals, time windows, rate limits); a
   * validator cannot wait for people, so a rule asking for approval refuses.
   */
  async signConsensus(req: ConsensusSignRequest): Promise<ConsensusSignResult> {
    const core = this.core;
    const ctx: Ctx = { principal: req.principal, requestId: req.requestId };
    const key = await core.usableKey(ctx, 'sign', req.key);
    const pos = req.position;
    const where = `height ${pos.height} round ${pos.round} step ${pos.step} on ${req.chainId}`;
    const details: AuditDraft['details'] = {
      ...req.context,
      message_sha256: sha256hex(req.signBytes),
      algorithm: key.algorithm,
      chain_id: req.chainId,
      height: pos.height.toString(),
      round: pos.round,
      step: pos.step,
    };
    await core.refuseOnError(ctx, 'sign', key, details, () => {
      if (!['ed25519', 'ed25519-expanded', 'secp256k1'].includes(key.algorithm) || key.attributes.hd !== undefined) {
        throw new CustosError('unsupported_algorithm', `${key.algorithm} is not a consensus key type (ed25519 or secp256k1).`);
      }
      assertPurpose(key, 'consensus');
    });
    // What is signed: the request's bytes, or bytes stored for this very position that differ
    // from them only in the timestamp and were never signed (decided before a crash, or a
    // threshold key's cosigner share given to another coordinator): the same vote again.
    let toSign = req.signBytes;
    const refuse = (why: string) => core.refuse(ctx, 'sign', key, new CustosError('policy_denied', `Refusing to sign ${where}: ${why}.`, { tag: 'double_sign' }), details);
    return decideSignCommit<ConsensusSignResult>(core, {
      ctx,
      key,
      operation: 'sign',
      subject: { payloadType: 'consensus', facts: { ...req.context, chain_id: req.chainId, height: pos.height.toString(), round: String(pos.round), step: String(pos.step) } },
      details,
      noApprovals: true,
      prepare: async () => {
        const wm = await core.deps.store.getWatermark(key.id, req.chainId);
        const cmp = wm ? comparePosition(pos, wm) : 1;
        if (wm && cmp < 0) return refuse(`the key already signed height ${wm.height} round ${wm.round} step ${wm.step} (regression)`);
        if (wm && cmp === 0) {
          const identical = equalBytes(wm.signBytes, req.signBytes);
          if (wm.signature && (identical || req.onlyTimestampDiffers(wm.signBytes, req.signBytes))) {
            await core.deps.committer.audit(core.draft(ctx, 'sign', key, 'ok', null, { ...details, reused: true, signature_sha256: sha256hex(wm.signature) }));
            return { done: { signature: wm.signature, signBytes: wm.signBytes, reused: true, keyId: key.id } };
          }
          if (!identical && !(wm.signature === null && req.onlyTimestampDiffers(wm.signBytes, req.signBytes))) return refuse('conflicting data (a different message was already signed there)');
          // Bytes decided before a crash (or shared to another coordinator), never signed here: signing them now is safe.
          toSign = wm.signBytes;
        } else toSign = req.signBytes;
        return { mutations: (r) => [{ kind: 'advanceWatermark', keyId: key.id, chainId: req.chainId, expected: wm, next: { ...pos, signBytes: r.signBytes, signature: r.signature } }] };
      },
      produce: async () => {
        const out = await core.deps.backend.sign(key, () => core.deps.keyring.openSecret(key), { kind: 'message', bytes: toSign }, key.algorithm === 'secp256k1' ? { encoding: 'raw' } : {}, { principal: ctx.principal.id, requestId: ctx.requestId, kind: 'consensus' });
        // A threshold key's cosigners may hold bytes for this position differing only in the timestamp.
        const signed = out.signed ?? toSign;
        if (!equalBytes(signed, toSign) && !req.onlyTimestampDiffers(toSign, signed)) throw new CustosError('internal', 'The backend signed other sign bytes than a timestamp apart.');
        return { signature: out.signature, signBytes: signed, reused: false, keyId: key.id };
      },
      outcome: (r) => ({ signature_sha256: sha256hex(r.signature) }),
    });
  }

  /**
   * Seeds a key's consensus watermark from another signer's state (CometBFT FilePV's
   * priv_validator_state.json, say), so that moving a validator to Custos keeps its double-
   * sign protection. A watermark never moves backwards: an older state is refused.
   */
  async importWatermark(ctx: Ctx, ref: string, chainId: string, state: { height: bigint; round: number; step: number; signBytes?: Uint8Array; signature?: Uint8Array }): Promise<Watermark> {
    const core = this.core;
    const key = await core.scopedKey(ctx, 'import_state', 'manage', ref);
    // A watermark guards a consensus key; on any other key it would guard nothing.
    await core.refuseOnError(ctx, 'import_state', key, { chain_id: chainId }, () => assertPurpose(key, 'consensus'));
    if (state.height < 0n || state.round < 0 || state.step < 0 || state.step > 3) throw new CustosError('bad_request', 'A watermark has height ≥ 0, round ≥ 0 and step 0–3.');
    const details: AuditDraft['details'] = { chain_id: chainId, height: state.height.toString(), round: state.round, step: state.step };
    if (state.signBytes?.length) details.sign_bytes_sha256 = sha256hex(state.signBytes);
    // A stored signature is handed back to the node as the one for this position, so it must be
    // the key's, over sign bytes of exactly this chain and height/round/step (finding 14).
    await core.refuseOnError(ctx, 'import_state', key, details, () => checkImportedState(key, chainId, state));
    const current = await core.deps.store.getWatermark(key.id, chainId);
    if (current && comparePosition(state, current) < 0) {
      return core.refuse(ctx, 'import_state', key, new CustosError('policy_denied', `The state (height ${state.height} round ${state.round} step ${state.step}) is behind the vault's watermark (height ${current.height} round ${current.round} step ${current.step}); a watermark never moves backwards.`, { tag: 'double_sign' }), details);
    }
    const next: Watermark = { height: state.height, round: state.round, step: state.step, signBytes: state.signBytes ?? new Uint8Array(0), signature: state.signature ?? null };
    try {
      await core.commitAs(ctx, {
        mutations: [{ kind: 'advanceWatermark', keyId: key.id, chainId, expected: current, next }],
        audit: [core.draft(ctx, 'import_state', key, 'ok', null, details)],
      });
    } catch (e) {
      if (isCustosError(e) && e.code === 'policy_denied') return core.refuse(ctx, 'import_state', key, e, details);
      throw e;
    }
    return next;
  }

  async getWatermark(ctx: Ctx, ref: string, chainId: string): Promise<Watermark | null> {
    const key = await this.core.scopedKey(ctx, 'watermark', 'read', ref);
    return this.core.deps.store.getWatermark(key.id, chainId);
  }
}
