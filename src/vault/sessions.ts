/**
 * Account sessions: what a login yields. A session has an id (`sid`), the OPAQUE session key
 * (sealed under a subkey of the root), an idle and an absolute deadline, and the last
 * subsession number (`ssid`) it accepted. Each call in a session is a subsession: its body is
 * sealed under the session's client-to-server key for exactly that sid, ssid and route
 * (core/session-envelope.ts), its ssid must be above the last one accepted, and the answer is
 * sealed back for the same ssid. The row is compare-and-set on every call (the new ssid and idle
 * deadline), so two nodes never accept one ssid twice; logout deletes it, so it is unusable at
 * once everywhere; a password change or an operator's end-all moves the account's epoch, and
 * every session opened before it is refused at its next call.
 *
 * Rows are protected meta rows `session.<sid>` (row MACs, journal, audit-bound digest).
 */
import { randomBytes } from 'node:crypto';
import { CustosError, isCustosError } from '../core/errors.js';
import { utf8, wipe } from '../core/bytes.js';
import { openBody, sealBody, sessionKeys } from '../core/session-envelope.js';
import { open as aeadOpen, seal as aeadSeal } from '../crypto/aead.js';
import { deriveSubkey } from '../crypto/kdf.js';
import type { Account, AccountType } from './accounts.js';
import type { SessionAccount } from './account-keys.js';
import type { Ctx, VaultCore } from './core.js';

export interface SessionLimits {
  idleSeconds: number;
  absoluteSeconds: number;
}
export const DEFAULT_SESSION_LIMITS: SessionLimits = { idleSeconds: 900, absoluteSeconds: 12 * 3600 };

interface SessionRow {
  sid: string;
  account: string;
  name: string;
  type: AccountType;
  /** The account's epoch at login: a password change or an end-all moves it (accounts.ts). */
  epoch: string;
  key: string;
  created: number;
  idle_until: number;
  expires: number;
  last_ssid: number;
}

const PREFIX = 'session.';
const SID_RE = /^ses_[0-9a-f]{32}$/;
const ended = () => new CustosError('unauthorized', 'The session is unknown, ended or expired; log in again.', { tag: 'session' });

/** One call inside a session: its plaintext body, and how to seal the answer. The caller wipes `body`. */
export interface Subsession {
  sid: string;
  ssid: number;
  account: SessionAccount;
  /** The session's and the account's rows as this call found them: its commits need them unchanged. */
  guards: Array<{ name: string; value: string }>;
  body: Uint8Array;
  reply(plaintext: Uint8Array): string;
  /** Wipes the answer key when no answer is sent (an error). */
  dispose(): void;
}

export class Sessions {
  private readonly sealKey: Uint8Array;

  constructor(
    private readonly core: VaultCore,
    accountsKey: Uint8Array,
    private readonly vaultId: string,
    private readonly limits: SessionLimits = DEFAULT_SESSION_LIMITS,
    /** The epoch an account's sessions must carry now (null: the account is gone). */
    private readonly epochOf: (accountId: string) => Promise<{ epoch: string; row: { name: string; value: string } } | null> = async () => null,
  ) {
    this.sealKey = deriveSubkey(accountsKey, utf8(vaultId), 'custos/v1/session-key');
  }

  private ad(sid: string, account: string): Uint8Array {
    return utf8(`custos-session-key-v1\n${this.vaultId}\n${sid}\n${account}`);
  }

  /** Opens a session for an account that just proved its password. */
  async open(ctx: Ctx, account: Account, sessionKey: Uint8Array, now = Date.now()): Promise<{ sid: string; idleSeconds: number; expiresAt: string }> {
    const sid = `ses_${randomBytes(16).toString('hex')}`;
    const row: SessionRow = {
      sid,
      account: account.id,
      name: account.name,
      type: account.type,
      epoch: account.epoch,
      key: Buffer.from(aeadSeal(this.sealKey, sessionKey, this.ad(sid, account.id))).toString('base64'),
      created: now,
      idle_until: now + this.limits.idleSeconds * 1000,
      expires: now + this.limits.absoluteSeconds * 1000,
      last_ssid: 0,
    };
    await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: PREFIX + sid, expected: null, value: JSON.stringify(row) }], audit: [this.core.draft(ctx, 'session_open', { id: null, label: null }, 'ok', null, { account: account.id, user: account.name, session: sid })] });
    return { sid, idleSeconds: this.limits.idleSeconds, expiresAt: new Date(row.expires).toISOString() };
  }

  private async read(sid: unknown): Promise<{ row: SessionRow; raw: string }> {
    if (typeof sid !== 'string' || !SID_RE.test(sid)) throw ended();
    const raw = await this.core.deps.store.getMeta(PREFIX + sid);
    if (raw === null) throw ended();
    const row = JSON.parse(raw) as SessionRow;
    if (row.sid !== sid) throw new CustosError('database_corrupt', `The session row ${sid} names another session; restore the database from a backup.`);
    return { row, raw };
  }

  /**
   * Enters subsession `ssid` of `sid` for `route` (for example `POST /v1/session/sign`): checks
   * the deadlines and the number, opens the body, and records the number and the new idle
   * deadline before anything is done. Every refusal is `unauthorized` (tag `session`).
   */
  async enter(ctx: Ctx, sid: unknown, ssid: unknown, route: string, sealed: unknown, now = Date.now()): Promise<Subsession> {
    const { row, raw } = await this.read(sid);
    const refuse = async (why: string): Promise<never> => {
      await this.core.deps.committer.audit(this.core.draft(ctx, 'session_call', { id: null, label: null }, 'denied', `unauthorized:${why}`, { account: row.account, session: row.sid, route }));
      throw why === 'expired' ? ended() : new CustosError('unauthorized', 'The message is not one this session sent next (replayed, reordered, altered, or from another session or route).', { tag: 'session' });
    };
    // Ended by a password change or an operator (the account's epoch moved), or expired: the
    // row goes now (a race just leaves it for the next refusal).
    const account = await this.epochOf(row.account);
    if (now >= row.expires || now >= row.idle_until || account?.epoch !== row.epoch) {
      await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: PREFIX + row.sid, expected: raw, value: null }], audit: [] }).catch(() => undefined);
      return refuse('expired');
    }
    if (typeof ssid !== 'number' || !Number.isSafeInteger(ssid) || ssid <= row.last_ssid) return refuse('ssid');
    const key = aeadOpen(this.sealKey, new Uint8Array(Buffer.from(row.key, 'base64')), this.ad(row.sid, row.account));
    if (!key) throw new CustosError('database_corrupt', `The session ${row.sid}'s sealed key does not open: its row was altered. Restore the database from a backup.`);
    const keys = sessionKeys(key, row.sid);
    wipe(key);
    const body = openBody(keys.c2s, row.sid, ssid, 'c2s', route, sealed);
    wipe(keys.c2s);
    if (!body) {
      wipe(keys.s2c);
      return refuse('ssid');
    }
    const next: SessionRow = { ...row, last_ssid: ssid, idle_until: Math.min(row.expires, now + this.limits.idleSeconds * 1000) };
    try {
      await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: PREFIX + row.sid, expected: raw, value: JSON.stringify(next) }], audit: [] });
    } catch (e) {
      wipe(body);
      wipe(keys.s2c);
      // Another call of the session (on any node) moved it first, or it was ended meanwhile.
      if (isCustosError(e) && e.tag === 'meta_moved') return refuse('ssid');
      throw e;
    }
    const s2c = keys.s2c;
    let used = false;
    return {
      sid: row.sid,
      ssid,
      account: { id: row.account, name: row.name, type: row.type },
      guards: [{ name: PREFIX + row.sid, value: JSON.stringify(next) }, account!.row],
      body,
      // One answer per call: the key is wiped after it, and a second answer is refused (it
      // would be sealed under a wiped, all-zero key).
      reply: (plaintext) => {
        if (used) throw new CustosError('internal', 'A session call was answered twice.');
        used = true;
        try {
          return sealBody(s2c, row.sid, ssid, 's2c', route, plaintext);
        } finally {
          wipe(s2c);
        }
      },
      dispose: () => {
        used = true;
        wipe(s2c);
      },
    };
  }

  /** Logout: the session is gone for every node at once. */
  async close(ctx: Ctx, sid: unknown): Promise<void> {
    // A call landing meanwhile moves the row: read it again (it cannot hold a logout off for long).
    for (let attempt = 0; attempt < 8; attempt++) {
      const { row, raw } = await this.read(sid);
      try {
        await this.core.commitAs(ctx, { mutations: [{ kind: 'compareAndSetMeta', name: PREFIX + row.sid, expected: raw, value: null }], audit: [this.core.draft(ctx, 'session_close', { id: null, label: null }, 'ok', null, { account: row.account, session: row.sid })] });
        return;
      } catch (e) {
        if (!(isCustosError(e) && e.tag === 'meta_moved')) throw e;
      }
    }
    throw new CustosError('storage_unavailable', 'The session kept changing while it was being ended; retry the logout.', { tag: 'meta_moved' });
  }

  destroy(): void {
    wipe(this.sealKey);
  }
}
