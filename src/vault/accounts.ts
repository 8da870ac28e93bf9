/**
 * Accounts: end users of an application, each with a password the vault never learns (OPAQUE,
 * accounts/opaque.ts) and with password guessing limited (accounts/guard.ts).
 *
 * An operator creates an account (a user name and a type) and gets a one-time registration
 * code; the user's client registers its password with it. Logins start and finish in two
 * requests; every start counts as a failure for its user name and source address until the
 * finish proves the password, so a client that gives up (it found the password wrong) has
 * failed too. Unknown user names run the same protocol against a fake record and the same
 * counters, so neither an answer nor a lock says whether a name exists.
 *
 * Everything lives in protected rows (row MACs, write journal, audit-bound digest), as meta
 * rows: `account.<id>` (the account, its user_seed sealed under a subkey of the root),
 * `account_name.<sha256 of the name>` (its id) and `login_guard.<name|addr>.<sha256>` (the
 * counters, shared by every node on the database and kept across restarts).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { CustosError, isCustosError } from '../core/errors.js';
import { utf8, wipe } from '../core/bytes.js';
import type { StateMutation } from '../store/store.js';
import { open as aeadOpen, seal as aeadSeal } from '../crypto/aead.js';
import { deriveSubkey } from '../crypto/kdf.js';
import { OpaqueServer, sealSetup, newUserSeed, type LoginStart } from '../accounts/opaque.js';
import { DEFAULT_GUARD, formatGuard, mayAttempt, parseGuard, withFailure, withSuccess, type GuardPolicy } from '../accounts/guard.js';
import { permits } from '../accounts/principals.js';
import type { Ctx, VaultCore } from './core.js';

export const ACCOUNT_TYPES = ['self-custodial', 'delegated', 'service'] as const;
export type AccountType = (typeof ACCOUNT_TYPES)[number];

export interface Account {
  id: string;
  name: string;
  type: AccountType;
  createdAt: string;
  /** Whether a password is registered. */
  registered: boolean;
  passwordVersion: number;
}

interface AccountRow {
  id: string;
  name: string;
  type: AccountType;
  created_at: string;
  /** The user_seed, sealed (base64). */
  seed: string;
  record: string | null;
  password_version: number;
  /** The one-time registration code's SHA-256 (hex) and its deadline (ms), while one is open. */
  registration: { hash: string; expires: number } | null;
}

const SETUP_ROW = 'accounts.opaque_setup';
const NAME_RE = /^[\p{L}\p{N}._@+-]{1,128}$/u;
const REGISTRATION_TTL_MS = 24 * 3600_000;
const CAS_ATTEMPTS = 8;

const h = (s: string) => createHash('sha256').update(utf8(s)).digest('hex');
const accountRow = (id: string) => `account.${id}`;
const nameRow = (name: string) => `account_name.${h(name)}`;
const guardRow = (kind: 'name' | 'addr', v: string) => `login_guard.${kind}.${h(v)}`;

/** The same refusal for an unknown name, a wrong code and a used one. */
const badCode = () => new CustosError('unauthorized', 'The user name or registration code is wrong, or the code was used or expired.');
const badLogin = () => new CustosError('unauthorized', 'The user name or password is wrong.');

export function checkAccountName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name.normalize('NFC')) || name !== name.normalize('NFC')) {
    throw new CustosError('bad_request', 'A user name is 1–128 letters, digits and . _ @ + - (Unicode NFC).');
  }
  return name;
}

export class Accounts {
  private server: OpaqueServer | null = null;
  private readonly seedKey: Uint8Array;

  /** `accountsKey`: a subkey of the root for accounts (open.ts derives it; wiped at close). */
  constructor(
    private readonly core: VaultCore,
    private readonly accountsKey: Uint8Array,
    private readonly vaultId: string,
    private readonly guard: GuardPolicy = DEFAULT_GUARD,
  ) {
    this.seedKey = deriveSubkey(accountsKey, utf8(vaultId), 'custos/v1/account-seed');
  }

  /** The OPAQUE server, made (once per vault, in any process) on first use. */
  private async opaque(ctx: Ctx): Promise<OpaqueServer> {
    if (this.server) return this.server;
    const store = this.core.deps.store;
    let sealed = await store.getMeta(SETUP_ROW);
    if (sealed === null) {
      const fresh = Buffer.from(await sealSetup(this.accountsKey, this.vaultId)).toString('base64');
      try {
        await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: SETUP_ROW, expected: null, value: fresh }], audit: [this.core.draft(ctx, 'accounts_setup', { id: null, label: null }, 'ok', null)] });
        sealed = fresh;
      } catch (e) {
        // Another process made it first: use theirs.
        if (!(isCustosError(e) && e.tag === 'meta_moved')) throw e;
        sealed = await store.getMeta(SETUP_ROW);
      }
    }
    this.server = await OpaqueServer.open(new Uint8Array(Buffer.from(sealed!, 'base64')), this.accountsKey, this.vaultId);
    return this.server;
  }

  private seedAd(a: Pick<AccountRow, 'id' | 'name' | 'type'>): Uint8Array {
    return utf8(`custos-account-seed-v1\n${this.vaultId}\n${a.id}\n${a.name}\n${a.type}`);
  }

  private openSeed(a: AccountRow): Uint8Array {
    const seed = aeadOpen(this.seedKey, new Uint8Array(Buffer.from(a.seed, 'base64')), this.seedAd(a));
    if (!seed) throw new CustosError('database_corrupt', `The account ${a.id}'s sealed seed does not open: its row was altered or moved. Restore the database from a backup.`);
    return seed;
  }

  private async row(name: string): Promise<{ row: AccountRow; raw: string } | null> {
    const id = await this.core.deps.store.getMeta(nameRow(name));
    // An unknown name reads a row too (one that never exists): the same work either way.
    const raw = await this.core.deps.store.getMeta(accountRow(id ?? `none.${h(name)}`));
    if (id === null) return null;
    if (raw === null) throw new CustosError('database_corrupt', `The account named ${name} has an index row but no account row; restore the database from a backup.`);
    const row = JSON.parse(raw) as AccountRow;
    if (row.name !== name || row.id !== id) throw new CustosError('database_corrupt', `The account row ${id} does not match its name index; restore the database from a backup.`);
    return { row, raw };
  }

  private credentialId(row: AccountRow): string {
    const seed = this.openSeed(row);
    try {
      return OpaqueServer.credentialId(seed);
    } finally {
      wipe(seed);
    }
  }

  static view(r: AccountRow): Account {
    return { id: r.id, name: r.name, type: r.type, createdAt: r.created_at, registered: r.record !== null, passwordVersion: r.password_version };
  }

  /** Makes an account and its one-time registration code (shown once; 24 hours). */
  async create(ctx: Ctx, req: { name: string; type: AccountType }): Promise<{ account: Account; registrationCode: string }> {
    const name = checkAccountName(req.name);
    if (!ACCOUNT_TYPES.includes(req.type)) throw new CustosError('bad_request', `An account type is one of ${ACCOUNT_TYPES.join(', ')}.`);
    if (!permits(ctx.principal, 'manage')) return this.core.refuse(ctx, 'account_create', { id: null, label: null }, new CustosError('forbidden', 'Creating accounts needs the manage operation.', { tag: 'scope' }));
    await this.opaque(ctx);
    const id = `acc_${randomBytes(16).toString('hex')}`;
    const code = `custos_reg_${randomBytes(32).toString('base64url')}`;
    const seed = newUserSeed();
    const row: AccountRow = { id, name, type: req.type, created_at: new Date().toISOString(), seed: '', record: null, password_version: 0, registration: { hash: h(code), expires: Date.now() + REGISTRATION_TTL_MS } };
    row.seed = Buffer.from(aeadSeal(this.seedKey, seed, this.seedAd(row))).toString('base64');
    wipe(seed);
    try {
      await this.core.commitAs(ctx, {
        mutations: [
          { kind: 'compareAndSetMeta', name: nameRow(name), expected: null, value: id },
          { kind: 'compareAndSetMeta', name: accountRow(id), expected: null, value: JSON.stringify(row) },
        ],
        audit: [this.core.draft(ctx, 'account_create', { id: null, label: null }, 'ok', null, { account: id, user: name, type: req.type })],
      });
    } catch (e) {
      if (isCustosError(e) && e.tag === 'meta_moved') return this.core.refuse(ctx, 'account_create', { id: null, label: null }, new CustosError('label_taken', `An account named ${name} already exists.`), { user: name });
      throw e;
    }
    return { account: Accounts.view(row), registrationCode: code };
  }

  private async withCode(name: string, code: unknown): Promise<{ row: AccountRow; raw: string }> {
    const found = await this.row(checkAccountName(name));
    const given = typeof code === 'string' ? Buffer.from(h(code), 'hex') : Buffer.alloc(32);
    const want = found?.row.registration ? Buffer.from(found.row.registration.hash, 'hex') : Buffer.alloc(32, 0xff);
    if (!found || !timingSafeEqual(given, want) || found.row.registration!.expires < Date.now()) throw badCode();
    return found;
  }

  /** Registration, first message: the user's blinded password element in, the server's answer out. */
  async registerStart(ctx: Ctx, name: string, code: unknown, request: unknown): Promise<string> {
    const { row } = await this.withCode(name, code);
    return (await this.opaque(ctx)).registrationResponse(this.credentialId(row), request);
  }

  /** Registration, second message: the client's record is stored and the code is spent. */
  async registerFinish(ctx: Ctx, name: string, code: unknown, record: unknown): Promise<Account> {
    const { row, raw } = await this.withCode(name, code);
    const next: AccountRow = { ...row, record: OpaqueServer.checkRecord(record), registration: null, password_version: row.password_version + 1 };
    try {
      await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: accountRow(row.id), expected: raw, value: JSON.stringify(next) }], audit: [this.core.draft(ctx, 'account_register', { id: null, label: null }, 'ok', null, { account: row.id, user: row.name })] });
    } catch (e) {
      if (isCustosError(e) && e.tag === 'meta_moved') throw badCode();
      throw e;
    }
    return Accounts.view(next);
  }

  /**
   * Login, first message (KE1 in, KE2 and the sealed server state out). Refused while the name
   * is locked or the name or address must wait; otherwise counted as a failure until finished.
   */
  async loginStart(ctx: Ctx, name: string, address: string, request: unknown): Promise<LoginStart> {
    checkAccountName(name);
    const server = await this.opaque(ctx);
    const found = await this.row(name);
    const credentialId = found ? this.credentialId(found.row) : server.fakeCredentialId(name);
    const start = server.startLogin(credentialId, found?.row.record ?? null, request);
    await this.countAttempt(ctx, name, address, 'start');
    return start;
  }

  /** Login, second message: the session key (the caller wipes it) and the account, or `unauthorized`. */
  async loginFinish(ctx: Ctx, name: string, address: string, state: unknown, finish: unknown): Promise<{ account: Account; sessionKey: Uint8Array }> {
    checkAccountName(name);
    const server = await this.opaque(ctx);
    const found = await this.row(name);
    const credentialId = found ? this.credentialId(found.row) : server.fakeCredentialId(name);
    const key = server.finishLogin(credentialId, state, finish);
    if (!key || !found || found.row.record === null) {
      if (key) wipe(key);
      await this.core.deps.committer.audit(this.core.draft(ctx, 'login', { id: null, label: null }, 'denied', 'unauthorized', { user: name, address }));
      throw badLogin();
    }
    try {
      await this.countAttempt(ctx, name, address, 'success', found.row.id);
    } catch (e) {
      wipe(key);
      throw e;
    }
    return { account: Accounts.view(found.row), sessionKey: key };
  }

  /**
   * Records an attempt in the name's and the address's guards, compare-and-set with its audit
   * entry: a start is refused while locked or too soon (audited), else counted as a failure; a
   * success clears the name and takes the address's count back.
   */
  private async countAttempt(ctx: Ctx, name: string, address: string, what: 'start' | 'success', accountId?: string): Promise<void> {
    const store = this.core.deps.store;
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const now = Date.now();
      const [nRaw, aRaw] = [await store.getMeta(guardRow('name', name)), await store.getMeta(guardRow('addr', address))];
      const [n, a] = [parseGuard(nRaw), parseGuard(aRaw)];
      // A finish is judged without the failure its own start recorded.
      const verdict = mayAttempt(n, a, this.guard, now, what === 'start' ? 0 : 1);
      if (!verdict.allowed) {
        const locked = verdict.reason === 'locked';
        await this.core.deps.committer.audit(this.core.draft(ctx, 'login', { id: null, label: null }, 'denied', locked ? 'rate_limited:login_locked' : 'rate_limited:slow_down', { user: name, address }));
        const when = verdict.retryAfterSeconds === null ? 'until an operator unlocks it' : `for ${verdict.retryAfterSeconds} s`;
        throw new CustosError('rate_limited', locked ? `Too many failed logins for this user name: it is locked ${when}.` : `Too many failed logins: wait ${verdict.retryAfterSeconds} s before the next attempt.`, { tag: locked ? 'login_locked' : 'slow_down' });
      }
      const n2 = what === 'start' ? withFailure(n, this.guard, now, 'name') : withSuccess(n, this.guard, now, 'name');
      const a2 = what === 'start' ? withFailure(a, this.guard, now, 'address') : withSuccess(a, this.guard, now, 'address');
      const mutations: StateMutation[] = [
        { kind: 'compareAndSetMeta', name: guardRow('name', name), expected: nRaw, value: formatGuard(n2) },
        { kind: 'compareAndSetMeta', name: guardRow('addr', address), expected: aRaw, value: formatGuard(a2) },
      ];
      const details = { user: name, address, ...(accountId ? { account: accountId } : {}) };
      // (A lock shows in the log as the refused attempts: `login` denied `rate_limited:login_locked`.)
      const audit = [this.core.draft(ctx, what === 'start' ? 'login_start' : 'login', { id: null, label: null }, 'ok', null, details)];
      try {
        await this.core.commitAs(ctx, { mutations, audit });
        return;
      } catch (e) {
        if (isCustosError(e) && e.tag === 'meta_moved') continue;
        throw e;
      }
    }
    throw new CustosError('storage_unavailable', 'Other logins for this user name or address kept changing its counters; retry.', { tag: 'meta_moved' });
  }

  /** An operator ends a user name's lock (and its waits). */
  async unlock(ctx: Ctx, name: string): Promise<void> {
    checkAccountName(name);
    if (!permits(ctx.principal, 'manage')) return this.core.refuse(ctx, 'login_unlock', { id: null, label: null }, new CustosError('forbidden', 'Unlocking needs the manage operation.', { tag: 'scope' }));
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const raw = await this.core.deps.store.getMeta(guardRow('name', name));
      try {
        await this.core.commitAs(ctx, { mutations: raw === null ? [] : [{ kind: 'compareAndSetMeta', name: guardRow('name', name), expected: raw, value: null }], audit: [this.core.draft(ctx, 'login_unlock', { id: null, label: null }, 'ok', null, { user: name })] });
        return;
      } catch (e) {
        if (isCustosError(e) && e.tag === 'meta_moved') continue;
        throw e;
      }
    }
    throw new CustosError('storage_unavailable', 'The user name\'s counters kept changing; retry.', { tag: 'meta_moved' });
  }

  async get(name: string): Promise<Account | null> {
    const found = await this.row(checkAccountName(name));
    return found ? Accounts.view(found.row) : null;
  }

  close(): void {
    this.server?.destroy();
    wipe(this.seedKey);
    wipe(this.accountsKey);
  }
}
