/**
 * Keys made before purposes existed (`legacy`): giving one its purpose, once, and at open
 * making those that have signed consensus votes consensus keys. What each purpose allows is
 * key-rules.ts (and core/purpose.ts).
 */
import { CustosError, isCustosError } from '../core/errors.js';
import { purposeOf } from '../core/purpose.js';
import { wipe } from '../core/bytes.js';
import type { AuditDraft, KeyRecord } from '../core/types.js';
import type { Ctx, VaultCore } from './core.js';
import type { Keys } from './keys.js';
import { choosePurpose } from './key-rules.js';

/**
 * Gives a key made before purposes existed (`legacy`) its one purpose, once: the envelope is
 * sealed again with the new attribute bound into it, and the change is audited. A key that
 * already has a purpose keeps it: purposes are fixed at creation.
 */
export async function giveLegacyPurpose(core: VaultCore, ctx: Ctx, ref: string, purpose: string, details: AuditDraft['details']): Promise<KeyRecord> {
  const key = await core.scopedKey(ctx, 'set_purpose', 'manage', ref);
  const current = purposeOf(key);
  try {
    if (key.state === 'destroyed') throw new CustosError('key_destroyed', `The key ${key.label} was destroyed.`);
    if (current !== 'legacy') throw new CustosError('key_purpose', `The key ${key.label} is a ${current} key: a purpose is fixed at creation and never changes. Create a new key for the other use.`);
    choosePurpose(key.algorithm, purpose, 'general');
    if (purpose === 'bitcoin' && key.attributes.hd === 'slip10') throw new CustosError('bad_request', 'A SLIP-10 ed25519 HD key cannot be a bitcoin key.');
    if (key.attributes.hd !== undefined && purpose !== 'bitcoin' && purpose !== 'general') throw new CustosError('bad_request', 'An HD key is a bitcoin or a general key.');
  } catch (e) {
    if (isCustosError(e)) return core.refuse(ctx, 'set_purpose', key, e, { purpose: purpose.slice(0, 32) });
    throw e;
  }
  const attributes = { ...key.attributes, purpose };
  const next = { ...key, attributes, version: key.version + 1 };
  const secret = core.deps.keyring.openSecret(key);
  let sealed: Uint8Array;
  try {
    sealed = core.deps.keyring.sealSecret(next, secret);
  } finally {
    wipe(secret);
  }
  const now = new Date().toISOString();
  await core.commitAs(ctx, {
    mutations: [{ kind: 'rewrapKey', id: key.id, expectedVersion: key.version, version: next.version, attributes, sealed, updatedAt: now }],
    audit: [core.draft(ctx, 'set_purpose', key, 'ok', null, { ...details, from: 'legacy', purpose })],
  });
  core.deps.backend.forget(key.id);
  core.hdCache.forget(key.id);
  return { ...next, sealed, updatedAt: now };
}

/**
 * At open: a legacy key that has ever signed a consensus vote (it has a watermark) becomes a
 * consensus key, so that from now on it signs nothing its watermark does not see. Other
 * legacy keys keep every use they had, except consensus signing (see core/purpose.ts).
 */
export async function migrateLegacyPurposes(keys: Keys, core: VaultCore): Promise<number> {
  // Only the keys that have a watermark, looked up one by one: an open never reads every key.
  const marked = new Set((await core.deps.store.listWatermarks()).map((w) => w.keyId));
  let n = 0;
  for (const id of marked) {
    const k = await core.deps.store.findKey(id);
    if (!k || k.state === 'destroyed' || purposeOf(k) !== 'legacy') continue;
    try {
      await keys.setPurpose({ principal: { id: 'system', kind: 'system' }, requestId: `purpose-${k.id}` }, k.id, 'consensus', { migrated: true, reason: 'has a consensus watermark' });
      n++;
    } catch (e) {
      // Another process starting at the same moment migrated it first.
      if (isCustosError(e) && (e.tag === 'key_moved' || e.code === 'key_purpose')) continue;
      throw e;
    }
  }
  return n;
}
