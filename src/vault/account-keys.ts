/**
 * Keys and secrets that belong to an account, used only inside the account's own sessions.
 *
 * - An account key is an ordinary key row labelled `<account id>.<name>` whose attributes name
 *   its account, account type and key type; attributes are bound into the envelope and the row
 *   MAC, so none can be moved to another account. Ownership is enforced where every key use is
 *   authorised (accounts/principals.ts `keyInScope`, `authorizeNewKey`): no admin, token or
 *   internal principal reads, signs with, exports or destroys an account's key, and a session
 *   has no other keys.
 * - A secret (a blob the application stores for the user) is a protected row
 *   `account_secret.<account id>.<name>`, sealed under a subkey of the root with its account,
 *   type and name bound in. Deleting it deletes the row and then rewrites the WAL away
 *   (SQLite's secure_delete zeroes the freed bytes in the file).
 *
 * An account may grant a named principal read, verify or sign (never export) over some of its
 * keys (accounts/grants.ts): its own act, in its session, revocable at any time.
 *
 * What each account type may do (the operations of its session principal):
 *   self-custodial: generate, import, sign, verify, export (into its own session), destroy, secrets
 *   delegated, service: generate, import, sign, verify, destroy, secrets (keys never leave)
 */
import { CustosError, isCustosError } from '../core/errors.js';
import { utf8, wipe } from '../core/bytes.js';
import type { Algorithm, KeyRecord, Principal } from '../core/types.js';
import { open as aeadOpen, seal as aeadSeal } from '../crypto/aead.js';
import { deriveSubkey } from '../crypto/kdf.js';
import { importSecret } from '../keystore/import.js';
import { randomBytes } from 'node:crypto';
import { checkGrant, GRANT_PREFIX, grantExpired, MAX_GRANTS, type Grant } from '../accounts/grants.js';
import type { AccountType } from './accounts.js';
import type { Ctx, VaultCore } from './core.js';
import { choosePurpose, type Keys } from './keys.js';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,34}$/;
const SECRET_PREFIX = 'account_secret.';
/** The most a stored secret may be. */
export const MAX_SECRET_BYTES = 64 * 1024;

export interface SessionAccount {
  id: string;
  name: string;
  type: AccountType;
}

/** The principal of an account's session: its own keys, and what its type allows. */
export function accountPrincipal(a: SessionAccount, guards?: Array<{ name: string; value: string }>): Principal {
  const operations = a.type === 'self-custodial' ? ['read', 'create', 'sign', 'verify', 'export', 'destroy'] : ['read', 'create', 'sign', 'verify', 'destroy'];
  return { id: `account:${a.name}`, kind: 'account', account: a.id, scope: { operations, keys: [], tags: [] }, ...(guards ? { guards } : {}) };
}

function checkName(name: unknown, what: string): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) throw new CustosError('bad_request', `A ${what} name is 1–35 characters from A–Z a–z 0–9 . _ : @ -, starting with a letter or digit.`);
  return name;
}

export class AccountKeys {
  private readonly secretKey: Uint8Array;

  constructor(
    private readonly core: VaultCore,
    private readonly keys: Keys,
    accountsKey: Uint8Array,
    private readonly vaultId: string,
  ) {
    this.secretKey = deriveSubkey(accountsKey, utf8(vaultId), 'custos/v1/account-secret');
  }

  /** The vault label of an account's key. */
  static label(a: SessionAccount, name: string): string {
    return `${a.id}.${checkName(name, 'key')}`;
  }

  private attributes(a: SessionAccount) {
    return { account: a.id, account_type: a.type, key_type: 'signing', purpose: 'general' };
  }

  async generate(ctx: Ctx, a: SessionAccount, name: string, algorithm: Algorithm): Promise<KeyRecord> {
    return this.keys.createKey(ctx, { label: AccountKeys.label(a, name), algorithm, exportable: a.type === 'self-custodial', attributes: this.attributes(a), purpose: 'general' });
  }

  async import(ctx: Ctx, a: SessionAccount, name: string, algorithm: Algorithm, secret: Uint8Array): Promise<KeyRecord> {
    const imported = importSecret('raw', secret, algorithm);
    try {
      // A `general` key like any other: the algorithms only Tor keys may be (RSA-1024, X25519) are refused here too.
      await this.core.refuseOnError(ctx, 'import', { id: null, label: AccountKeys.label(a, name) }, {}, () => choosePurpose(imported.algorithm, 'general', 'general'));
      return await this.keys.storeNewKey(ctx, 'import', AccountKeys.label(a, name), imported.algorithm, { secret: imported.secret }, a.type === 'self-custodial', this.attributes(a));
    } finally {
      wipe(imported.secret);
    }
  }

  /** The account's keys (up to 1,000, by label). */
  async list(a: SessionAccount): Promise<KeyRecord[]> {
    const page = await this.core.deps.store.listKeysPage(null, 1000, `${a.id}.`);
    return page.filter((k) => !k.tampered && k.attributes.account === a.id && k.state !== 'destroyed');
  }

  /** The raw secret of an exportable account key, for its own session's sealed answer (the caller wipes it). */
  async export(ctx: Ctx, name: string, a: SessionAccount): Promise<{ key: KeyRecord; secret: Uint8Array }> {
    const key = await this.core.usableKey(ctx, 'export', AccountKeys.label(a, name));
    if (!key.exportable) return this.core.refuse(ctx, 'export', key, new CustosError('forbidden', `The key ${name} is not exportable: a ${a.type} account's keys never leave the vault.`, { tag: 'not_exportable' }));
    const secret = this.core.deps.keyring.openSecret(key);
    try {
      await this.core.commitAs(ctx, { mutations: [{ kind: 'assertKeyActive', id: key.id, version: key.version }], audit: [this.core.draft(ctx, 'export', key, 'ok', null, { to: 'account_session' })] });
    } catch (e) {
      wipe(secret);
      throw e;
    }
    return { key, secret };
  }

  private secretAd(a: SessionAccount, name: string): Uint8Array {
    return utf8(`custos-account-secret-v1\n${this.vaultId}\n${a.id}\n${a.type}\n${name}`);
  }

  /** Stores (or replaces) a secret of the account. */
  async putSecret(ctx: Ctx, a: SessionAccount, name: string, value: Uint8Array): Promise<void> {
    checkName(name, 'secret');
    if (value.length > MAX_SECRET_BYTES) throw new CustosError('payload_too_large', `A secret is at most ${MAX_SECRET_BYTES} bytes.`);
    const row = SECRET_PREFIX + `${a.id}.${name}`;
    const sealed = Buffer.from(aeadSeal(this.secretKey, value, this.secretAd(a, name))).toString('base64');
    for (let attempt = 0; attempt < 8; attempt++) {
      const before = await this.core.deps.store.getMeta(row);
      try {
        await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: row, expected: before, value: sealed }], audit: [this.core.draft(ctx, 'secret_put', { id: null, label: null }, 'ok', null, { account: a.id, secret: name, bytes: value.length })] });
        return;
      } catch (e) {
        if (!(isCustosError(e) && e.tag === 'meta_moved')) throw e;
      }
    }
    throw new CustosError('storage_unavailable', 'The secret kept changing in another session; retry.', { tag: 'meta_moved' });
  }

  /** A secret of the account (the caller wipes it), or `key_not_found`. */
  async getSecret(ctx: Ctx, a: SessionAccount, name: string): Promise<Uint8Array> {
    checkName(name, 'secret');
    const raw = await this.core.deps.store.getMeta(SECRET_PREFIX + `${a.id}.${name}`);
    if (raw === null) throw new CustosError('key_not_found', `The account has no secret named ${name}.`);
    const value = aeadOpen(this.secretKey, new Uint8Array(Buffer.from(raw, 'base64')), this.secretAd(a, name));
    if (!value) throw new CustosError('key_record_corrupt', `The stored secret ${name} does not decrypt: its row was altered or moved. Restore the database from a backup.`);
    try {
      // Through commitAs: a session ended meanwhile releases nothing.
      await this.core.commitAs(ctx, { mutations: [], audit: [this.core.draft(ctx, 'secret_get', { id: null, label: null }, 'ok', null, { account: a.id, secret: name })] });
    } catch (e) {
      wipe(value);
      throw e;
    }
    return value;
  }

  /** Deletes a secret: its row, then the WAL that still held it (as a key's destroy does). */
  async deleteSecret(ctx: Ctx, a: SessionAccount, name: string): Promise<void> {
    checkName(name, 'secret');
    const row = SECRET_PREFIX + `${a.id}.${name}`;
    const before = await this.core.deps.store.getMeta(row);
    if (before === null) throw new CustosError('key_not_found', `The account has no secret named ${name}.`);
    try {
      await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: row, expected: before, value: null }], audit: [this.core.draft(ctx, 'secret_delete', { id: null, label: null }, 'ok', null, { account: a.id, secret: name })] });
    } catch (e) {
      if (isCustosError(e) && e.tag === 'meta_moved') throw new CustosError('storage_unavailable', 'The secret changed in another session meanwhile; nothing was deleted. Retry.', { tag: 'meta_moved' });
      throw e;
    }
    this.core.purgePending = !(await this.core.deps.store.purgeFreed().catch(() => false));
  }

  /** Grants a principal rights over some of the account's keys (accounts/grants.ts). */
  async grant(ctx: Ctx, a: SessionAccount, terms: { principal: unknown; operations: unknown; keys: unknown; expires_at?: unknown }): Promise<Grant> {
    const checked = checkGrant(terms);
    // Bound to the principal's credential row (kept across rotation): a principal made later
    // under the same name is not the one granted.
    const row = await this.core.deps.store.findTokenBy({ name: checked.principal.slice(checked.principal.indexOf(':') + 1) });
    if (!row || row.terms.revoked_at !== undefined || (checked.principal.startsWith('cert:') !== (row.terms.certificate_sha256 !== undefined || row.terms.certificate_name !== undefined))) throw new CustosError('bad_request', `No principal ${checked.principal} exists to grant to.`);
    const now = Date.now();
    const existing = await this.core.deps.store.listMeta(`${GRANT_PREFIX}${a.id}.`);
    const expired = existing.filter((r) => grantExpired(JSON.parse(r.value) as Grant, now));
    if (existing.length - expired.length >= MAX_GRANTS) throw new CustosError('bad_request', `An account holds at most ${MAX_GRANTS} grants; revoke one first.`);
    const g: Grant = { id: `grt_${randomBytes(8).toString('hex')}`, ...checked, credential_row: row.id, created_at: new Date(now).toISOString() };
    await this.core.commitAs(ctx, { mutations: [...expired.map((r) => ({ kind: 'compareAndSetMeta' as const, name: r.name, expected: r.value, value: null })), { kind: 'compareAndSetMeta', name: `${GRANT_PREFIX}${a.id}.${g.id}`, expected: null, value: JSON.stringify(g) }], audit: [this.core.draft(ctx, 'grant', { id: null, label: null }, 'ok', null, { account: a.id, grant: g.id, principal: g.principal, operations: g.operations.join(','), keys: g.keys.join(',') })] });
    return g;
  }

  async grants(a: SessionAccount): Promise<Grant[]> {
    return (await this.core.deps.store.listMeta(`${GRANT_PREFIX}${a.id}.`)).map((r) => JSON.parse(r.value) as Grant);
  }

  /** Revokes a grant: in force at the grantee's next request. */
  async revokeGrant(ctx: Ctx, a: SessionAccount, id: unknown): Promise<void> {
    if (typeof id !== 'string' || !/^grt_[0-9a-f]{16}$/.test(id)) throw new CustosError('bad_request', 'A grant id is grt_ and 16 hex digits.');
    const row = `${GRANT_PREFIX}${a.id}.${id}`;
    const before = await this.core.deps.store.getMeta(row);
    if (before === null) throw new CustosError('key_not_found', `The account has no grant ${id}.`);
    await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: row, expected: before, value: null }], audit: [this.core.draft(ctx, 'grant_revoke', { id: null, label: null }, 'ok', null, { account: a.id, grant: id })] });
  }

  destroy(): void {
    wipe(this.secretKey);
  }
}
