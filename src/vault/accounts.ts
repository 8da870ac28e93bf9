/**
 * Accounts: end users of an application, each with a password the vault never learns (OPAQUE,
 * accounts/opaque.ts) and with password guessing limited (accounts/guard.ts).
 *
 * An operator creates an account (a user name and a type) and gets a one-time registration
 * code; the user's client registers its password with it. Logins start and finish in two
 * requests; every start counts as a failure for its user name and source address until its
 * finish proves the password, so a client that gives up (it found the password wrong) has
 * failed too, and each start is finished at most once. Unknown user names run the same
 * protocol, the same reads and the same counters, so neither an answer nor a lock says whether
 * a name exists. A password change (inside a session) ends every session of the account in the
 * same transaction.
 *
 * Its rows are account-rows.ts; the counting of login attempts is login-attempts.ts.
 */
import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { CustosError, isCustosError } from '../core/errors.js';
import { utf8, wipe } from '../core/bytes.js';
import { open as aeadOpen, seal as aeadSeal } from '../crypto/aead.js';
import { deriveSubkey } from '../crypto/kdf.js';
import { OpaqueServer, sealSetup, type LoginStart, LOGIN_WINDOW_MS } from '../accounts/opaque.js';
import { GRANT_PREFIX, grantExpired, type Grant } from '../accounts/grants.js';
import { addressKey, current, DEFAULT_GUARD, parseGuard, type GuardPolicy, type GuardState } from '../accounts/guard.js';
import { hasKeyScope, permits } from '../accounts/principals.js';
import { sha256hex, type Ctx, type VaultCore } from './core.js';
import { accountRow, ACCOUNT_TYPES, CAS_ATTEMPTS, checkAccountName, DECOY_ID, guardRow, nameRow, SETUP_ROW, type Account, type AccountRow, type AccountType } from './account-rows.js';
import { badLogin, countAttempt } from './login-attempts.js';

export { ACCOUNT_TYPES, checkAccountName } from './account-rows.js';
export type { Account, AccountType } from './account-rows.js';

const REGISTRATION_TTL_MS = 24 * 3600_000;
/** How often stale guards, sessions and grants are swept. */
const SWEEP_MS = 5 * 60_000;

const NO_KEY = { id: null, label: null };

/** The same refusal for an unknown name, a wrong code and a used one. */
const badCode = () => new CustosError('unauthorized', 'The user name or registration code is wrong, or the code was used or expired.');

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

  /** The OPAQUE server and the decoy row, made (once per vault, in any process) on first use. */
  private async opaque(ctx: Ctx): Promise<OpaqueServer> {
    if (this.server) return this.server;
    const store = this.core.deps.store;
    let sealed = await store.getMeta(SETUP_ROW);
    if (sealed === null) {
      const fresh = Buffer.from(await sealSetup(this.accountsKey, this.vaultId)).toString('base64');
      const decoy: AccountRow = { id: DECOY_ID, name: DECOY_ID, type: 'service', created_at: new Date(0).toISOString(), seed: '', record: null, password_version: 0, registration: null };
      decoy.seed = Buffer.from(aeadSeal(this.seedKey, new Uint8Array(32), this.seedAd(decoy))).toString('base64');
      try {
        await this.core.commitAs(ctx, {
          mutations: [
            { kind: 'compareAndSetMeta', name: SETUP_ROW, expected: null, value: fresh },
            { kind: 'compareAndSetMeta', name: accountRow(DECOY_ID), expected: null, value: JSON.stringify(decoy) },
          ],
          audit: [this.core.draft(ctx, 'accounts_setup', NO_KEY, 'ok', null)],
        });
        sealed = fresh;
      } catch (e) {
        // Another process made it first: use theirs.
        if (!(isCustosError(e) && e.tag === 'meta_moved')) throw e;
        sealed = await store.getMeta(SETUP_ROW);
        if (sealed === null) throw new CustosError('database_corrupt', 'The accounts\' OPAQUE setup is missing while its decoy row exists: the database was edited outside Custos. Restore it from a backup.');
      }
    }
    this.server ??= await OpaqueServer.open(new Uint8Array(Buffer.from(sealed!, 'base64')), this.accountsKey, this.vaultId);
    this.startSweeper();
    return this.server;
  }

  private seedAd(a: Pick<AccountRow, 'id' | 'name' | 'type'>): Uint8Array {
    return utf8(`custos-account-seed-v1\n${this.vaultId}\n${a.id}\n${a.name}\n${a.type}`);
  }

  /**
   * The account of a name, or null. An unknown name reads, checks and opens the decoy row in
   * its place: the same work either way, so the time taken says nothing.
   */
  private async row(name: string): Promise<{ row: AccountRow; raw: string } | null> {
    const store = this.core.deps.store;
    const id = await store.getMeta(nameRow(name));
    const raw = await store.getMeta(accountRow(id ?? DECOY_ID));
    if (raw === null) {
      if (id === null) return null;
      throw new CustosError('database_corrupt', `The account named ${name} has an index row but no account row; restore the database from a backup.`);
    }
    const row = JSON.parse(raw) as AccountRow;
    const seed = aeadOpen(this.seedKey, new Uint8Array(Buffer.from(row.seed, 'base64')), this.seedAd(row));
    if (!seed) throw new CustosError('database_corrupt', `The account row ${row.id}'s sealed seed does not open: it was altered or moved. Restore the database from a backup.`);
    wipe(seed);
    if (id === null) return null;
    if (row.name !== name || row.id !== id) throw new CustosError('database_corrupt', `The account row ${id} does not match its name index; restore the database from a backup.`);
    return { row, raw };
  }

  static view(r: AccountRow): Account {
    return { id: r.id, name: r.name, type: r.type, createdAt: r.created_at, registered: r.record !== null, passwordVersion: r.password_version, epoch: `${r.password_version}:${r.session_epoch ?? 0}` };
  }

  /** Makes an account and its one-time registration code (shown once; 24 hours). */
  async create(ctx: Ctx, req: { name: string; type: AccountType }): Promise<{ account: Account; registrationCode: string }> {
    const name = checkAccountName(req.name);
    if (!ACCOUNT_TYPES.includes(req.type)) throw new CustosError('bad_request', `An account type is one of ${ACCOUNT_TYPES.join(', ')}.`);
    if (ctx.principal.kind === 'account' || !permits(ctx.principal, 'manage') || hasKeyScope(ctx.principal)) return this.core.refuse(ctx, 'account_create', NO_KEY, new CustosError('forbidden', 'Creating accounts needs the manage operation, unconfined to some keys.', { tag: 'scope' }));
    const server = await this.opaque(ctx);
    const id = `acc_${randomBytes(12).toString('hex')}`;
    const code = `custos_reg_${randomBytes(32).toString('base64url')}`;
    const row: AccountRow = { id, name, type: req.type, created_at: new Date().toISOString(), seed: '', record: null, password_version: 0, registration: { hash: sha256hex(code), expires: Date.now() + REGISTRATION_TTL_MS } };
    const seed = server.userSeed(name);
    row.seed = Buffer.from(aeadSeal(this.seedKey, seed, this.seedAd(row))).toString('base64');
    wipe(seed);
    try {
      await this.core.commitAs(ctx, {
        mutations: [
          { kind: 'compareAndSetMeta', name: nameRow(name), expected: null, value: id },
          { kind: 'compareAndSetMeta', name: accountRow(id), expected: null, value: JSON.stringify(row) },
        ],
        audit: [this.core.draft(ctx, 'account_create', NO_KEY, 'ok', null, { account: id, user: name, type: req.type })],
      });
    } catch (e) {
      if (isCustosError(e) && e.tag === 'meta_moved') return this.core.refuse(ctx, 'account_create', NO_KEY, new CustosError('label_taken', `An account named ${name} already exists.`), { user: name });
      throw e;
    }
    return { account: Accounts.view(row), registrationCode: code };
  }

  /**
   * The account a registration code opens. A wrong code counts against the source address
   * like a failed login (the code is 256 bits: the name is not locked by guesses at it); audited.
   */
  private async withCode(ctx: Ctx, name: string, address: string, code: unknown): Promise<{ row: AccountRow; raw: string }> {
    checkAccountName(name);
    const found = await this.row(name);
    const given = typeof code === 'string' && code.length <= 128 ? Buffer.from(sha256hex(code), 'hex') : Buffer.alloc(32);
    const want = found?.row.registration ? Buffer.from(found.row.registration.hash, 'hex') : Buffer.alloc(32, 0xff);
    const ok = found !== null && timingSafeEqual(given, want) && found.row.registration!.expires >= Date.now();
    await countAttempt(this.core, this.guard, ctx, name, address, ok ? 'code_ok' : 'code_bad', 'account_register');
    if (!ok) throw badCode();
    return found!;
  }

  /** Registration, first message: the user's blinded password element in, the server's answer out. */
  async registerStart(ctx: Ctx, name: string, address: string, code: unknown, request: unknown): Promise<string> {
    await this.withCode(ctx, name, address, code);
    return (await this.opaque(ctx)).registrationResponse((await this.opaque(ctx)).credentialId(name), request);
  }

  /** Registration, second message: the client's record is stored and the code is spent. */
  async registerFinish(ctx: Ctx, name: string, address: string, code: unknown, record: unknown): Promise<Account> {
    const { row, raw } = await this.withCode(ctx, name, address, code);
    const server = await this.opaque(ctx);
    const next: AccountRow = { ...row, record: server.checkRecord(server.credentialId(name), record), registration: null, password_version: row.password_version + 1 };
    try {
      await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: accountRow(row.id), expected: raw, value: JSON.stringify(next) }], audit: [this.core.draft(ctx, 'account_register', NO_KEY, 'ok', null, { account: row.id, user: row.name })] });
    } catch (e) {
      if (isCustosError(e) && e.tag === 'meta_moved') throw badCode();
      throw e;
    }
    return Accounts.view(next);
  }

  /** A password change, first message, inside the account's own session. */
  async changePasswordStart(ctx: Ctx, accountId: string, request: unknown): Promise<string> {
    const { row } = await this.ownRow(ctx, accountId);
    const server = await this.opaque(ctx);
    return server.registrationResponse(server.credentialId(row.name), request);
  }

  /**
   * A password change, the new record. Every session of the account ends with it: sessions are
   * bound to the account's epoch (its password version), which this moves, in one transaction.
   */
  async changePasswordFinish(ctx: Ctx, accountId: string, record: unknown): Promise<Account> {
    const { row, raw } = await this.ownRow(ctx, accountId);
    const server = await this.opaque(ctx);
    const next: AccountRow = { ...row, record: server.checkRecord(server.credentialId(row.name), record), password_version: row.password_version + 1 };
    try {
      await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: accountRow(row.id), expected: raw, value: JSON.stringify(next) }], audit: [this.core.draft(ctx, 'account_password', NO_KEY, 'ok', null, { account: row.id, user: row.name })] });
    } catch (e) {
      if (isCustosError(e) && e.tag === 'meta_moved') throw new CustosError('storage_unavailable', 'The account changed meanwhile (another password change?); nothing was changed. Retry.', { tag: 'meta_moved' });
      throw e;
    }
    return Accounts.view(next);
  }

  /** An operator ends every session of an account at once (its epoch moves). */
  async endSessions(ctx: Ctx, name: string): Promise<void> {
    if (ctx.principal.kind === 'account' || !permits(ctx.principal, 'manage') || hasKeyScope(ctx.principal)) return this.core.refuse(ctx, 'session_end_all', NO_KEY, new CustosError('forbidden', 'Ending an account\'s sessions needs the manage operation, unconfined to some keys.', { tag: 'scope' }));
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const found = await this.row(checkAccountName(name));
      if (!found) throw new CustosError('key_not_found', `No account named ${name}.`);
      const next: AccountRow = { ...found.row, session_epoch: (found.row.session_epoch ?? 0) + 1 };
      try {
        await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: accountRow(found.row.id), expected: found.raw, value: JSON.stringify(next) }], audit: [this.core.draft(ctx, 'session_end_all', NO_KEY, 'ok', null, { account: found.row.id, user: name })] });
        return;
      } catch (e) {
        if (!(isCustosError(e) && e.tag === 'meta_moved')) throw e;
      }
    }
    throw new CustosError('storage_unavailable', 'The account kept changing; retry.', { tag: 'meta_moved' });
  }

  /** The epoch sessions of an account must carry, and its row as read (null: the account is gone). */
  async epochOf(accountId: string): Promise<{ epoch: string; row: { name: string; value: string } } | null> {
    const raw = await this.core.deps.store.getMeta(accountRow(accountId));
    return raw === null ? null : { epoch: Accounts.view(JSON.parse(raw) as AccountRow).epoch, row: { name: accountRow(accountId), value: raw } };
  }

  private async ownRow(ctx: Ctx, accountId: string): Promise<{ row: AccountRow; raw: string }> {
    if (ctx.principal.kind !== 'account' || ctx.principal.account !== accountId) throw new CustosError('forbidden', 'Only the account itself changes its password.', { tag: 'scope' });
    const raw = await this.core.deps.store.getMeta(accountRow(accountId));
    if (raw === null) throw new CustosError('unauthorized', 'The account no longer exists.', { tag: 'session' });
    return { row: JSON.parse(raw) as AccountRow, raw };
  }

  /**
   * Login, first message (KE1 in, KE2 and the sealed server state out). Refused while the name
   * is locked or the name or address must wait; otherwise counted as a failure until finished.
   */
  async loginStart(ctx: Ctx, name: string, address: string, request: unknown): Promise<{ response: string; state: string }> {
    checkAccountName(name);
    const server = await this.opaque(ctx);
    const found = await this.row(name);
    const now = Date.now();
    const start: LoginStart = server.startLogin({ credentialId: server.credentialId(name), address: addressKey(address), passwordVersion: found?.row.password_version ?? 0 }, found?.row.record ?? null, request, now);
    await countAttempt(this.core, this.guard, ctx, name, address, 'start', 'login_start', { startId: start.startId, deadline: now + LOGIN_WINDOW_MS });
    return { response: start.response, state: start.state };
  }

  /** Login, second message: the session key (the caller wipes it) and the account, or `unauthorized`. */
  async loginFinish(ctx: Ctx, name: string, address: string, state: unknown, finish: unknown): Promise<{ account: Account; sessionKey: Uint8Array }> {
    checkAccountName(name);
    const server = await this.opaque(ctx);
    const found = await this.row(name);
    const startId = OpaqueServer.startIdOf(state);
    let key: Uint8Array | null;
    try {
      key = server.finishLogin({ credentialId: server.credentialId(name), address: addressKey(address), passwordVersion: found?.row.password_version ?? 0 }, state, finish);
    } catch (e) {
      // A state that does not open (another user, address or password version, altered) or has
      // expired: the same answer as a wrong password, so a password change is not observable.
      await this.core.deps.committer.audit(this.core.draft(ctx, 'login', NO_KEY, 'denied', isCustosError(e) ? e.fullCode : 'bad_request', { user: name, address: addressKey(address) }));
      if (isCustosError(e) && e.tag === 'login_expired') throw e;
      throw badLogin();
    }
    const ok = key !== null && found !== null && found.row.record !== null;
    try {
      await countAttempt(this.core, this.guard, ctx, name, address, ok ? 'success' : 'fail', 'login', { startId: startId!, deadline: 0 }, found?.row.id);
    } catch (e) {
      if (key) wipe(key);
      throw e;
    }
    if (!ok) {
      if (key) wipe(key);
      throw badLogin();
    }
    return { account: Accounts.view(found!.row), sessionKey: key! };
  }

  /** An operator ends a user name's lock (and its waits). */
  async unlock(ctx: Ctx, name: string): Promise<void> {
    checkAccountName(name);
    if (ctx.principal.kind === 'account' || !permits(ctx.principal, 'manage') || hasKeyScope(ctx.principal)) return this.core.refuse(ctx, 'login_unlock', NO_KEY, new CustosError('forbidden', 'Unlocking needs the manage operation, unconfined to some keys.', { tag: 'scope' }));
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const raw = await this.core.deps.store.getMeta(guardRow('name', name));
      try {
        await this.core.commitAs(ctx, { mutations: raw === null ? [] : [{ kind: 'compareAndSetMeta', name: guardRow('name', name), expected: raw, value: null }], audit: [this.core.draft(ctx, 'login_unlock', NO_KEY, 'ok', null, { user: name })] });
        return;
      } catch (e) {
        if (isCustosError(e) && e.tag === 'meta_moved') continue;
        throw e;
      }
    }
    throw new CustosError('storage_unavailable', 'The user name\'s counters kept changing; retry.', { tag: 'meta_moved' });
  }

  /**
   * Housekeeping: deletes login-guard rows that no longer hold anything (no failure within its
   * window, no lock, no start still pending), sessions past their idle or absolute limit, and
   * grants past their expiry, 500 a transaction, audited as one entry each. Started on first
   * use of accounts, every `SWEEP_MS`; returns how many rows went.
   */
  async sweep(now = Date.now()): Promise<number> {
    const store = this.core.deps.store;
    const dead: Array<{ name: string; value: string }> = [];
    for (const r of await store.listMeta('login_guard.')) {
      let g: GuardState;
      try {
        g = parseGuard(r.value);
      } catch {
        continue; // a corrupt row is left for the integrity checks to report
      }
      const kind = r.name.startsWith('login_guard.name.') ? 'name' : 'address';
      if (current(g, this.guard, now, kind).fails.length === 0 && g.pending.every((p) => Number(p.split(':')[1]) < now)) dead.push(r);
    }
    for (const r of await store.listMeta('session.')) {
      const row = JSON.parse(r.value) as { expires?: number; idle_until?: number };
      if (!(now < (row.expires ?? 0) && now < (row.idle_until ?? 0))) dead.push(r);
    }
    for (const r of await store.listMeta(GRANT_PREFIX)) {
      if (grantExpired(JSON.parse(r.value) as Grant, now)) dead.push(r);
    }
    let n = 0;
    const ctx = { principal: { id: 'system:accounts-sweep', kind: 'system' as const }, requestId: randomUUID() };
    for (let i = 0; i < dead.length; i += 500) {
      const part = dead.slice(i, i + 500);
      try {
        await this.core.commitAs(ctx, { mutations: part.map((r) => ({ kind: 'compareAndSetMeta' as const, name: r.name, expected: r.value, value: null })), audit: [this.core.draft(ctx, 'accounts_sweep', NO_KEY, 'ok', null, { rows: part.length })] });
        n += part.length;
      } catch (e) {
        // A row moved meanwhile (a login, a call): the next sweep looks again.
        if (!(isCustosError(e) && e.tag === 'meta_moved')) throw e;
      }
    }
    return n;
  }

  private sweeper: NodeJS.Timeout | null = null;

  private startSweeper(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => void this.sweep().catch(() => undefined), SWEEP_MS);
    this.sweeper.unref();
  }

  async get(name: string): Promise<Account | null> {
    const found = await this.row(checkAccountName(name));
    return found ? Accounts.view(found.row) : null;
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.server?.destroy();
    wipe(this.seedKey);
    wipe(this.accountsKey);
  }
}
