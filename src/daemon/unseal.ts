/**
 * The daemon's seal state. A passphrase vault is unsealed before the daemon listens; a vault
 * sealed by operator shares (or an HSM vault whose token is unavailable at start) listens
 * sealed: only health, seal status and unseal answer, and once T operators have given
 * their shares the vault opens and every front end starts. Progress is memory only.
 *
 * The unseal route needs no token (the share is the credential), so anyone who reaches the
 * API may call it. Every attempt is therefore accounted for: a refused one is logged at warn,
 * counted in `custos_unseal_failures_total{reason}` and appended to the audit log (the hash
 * chain needs no signing key; the next signed checkpoint, written when the vault opens,
 * vouches for these entries too). Failures slow the attempts that follow, and a burst of them
 * closes the route for a while; see `UnsealLimits`.
 */
import { randomUUID } from 'node:crypto';
import { CustosError, isCustosError } from '../core/errors.js';
import { wipe } from '../core/bytes.js';
import type { AuditDraft } from '../core/types.js';
import { ShareCollector, decodeShare, type SharesRecord } from '../keystore/shares.js';
import { parseSealRecord } from '../keystore/seal.js';
import type { SealGate, SealStatus, UnsealAttempt } from '../frontends/http/server.js';
import { openStoreOnly, type OpenVault } from '../vault/open.js';
import { GroupCommitter } from '../vault/commit.js';
import type { Store } from '../store/store.js';
import type { Vault } from '../vault/vault.js';
import { DEFAULT_UNSEAL_LIMITS, type UnsealLimits } from './unseal-limits.js';

export { DEFAULT_UNSEAL_LIMITS, type UnsealLimits } from './unseal-limits.js';

/** The pino methods the gate logs with. */
export interface GateLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * The database while the vault is sealed: the current seal record, and audit entries
 * appended through a committer without a signing key. Opened on the first attempt and kept
 * open until the vault opens or the daemon stops.
 */
export class SealedStore {
  private opened: { store: Store; committer: GroupCommitter } | null = null;

  constructor(private readonly dataDir: string) {}

  private async open(): Promise<{ store: Store; committer: GroupCommitter }> {
    if (!this.opened) {
      const { store } = await openStoreOnly(this.dataDir, false);
      this.opened = { store, committer: new GroupCommitter(store, null) };
    }
    return this.opened;
  }

  /** The shares record as stored now: a re-key while sealed retires the old shares at once. */
  async readRecord(): Promise<SharesRecord> {
    const { store } = await this.open();
    const r = parseSealRecord(await store.getMeta('seal'));
    if (r.kind === 'passphrase') throw new CustosError('database_corrupt', 'The seal record changed kind while the vault was sealed.');
    return r.kind === 'shares' ? r.shares : r.recovery;
  }

  async audit(draft: AuditDraft): Promise<void> {
    await (await this.open()).committer.audit(draft);
  }

  async close(): Promise<void> {
    const o = this.opened;
    this.opened = null;
    if (!o) return;
    await o.committer.close();
    await o.store.close();
  }
}

export interface ShareGateOptions {
  seal: 'shares' | 'hsm';
  record: SharesRecord;
  vaultId: string;
  /** Opens the vault with the rebuilt root and starts the front ends; the root is wiped after. */
  onRoot: (root: Uint8Array) => Promise<OpenVault>;
  /** Why an HSM-sealed vault waits for recovery shares. */
  reason?: string;
  /** The seal record and the audit log while sealed; absent in tests of the gate alone. */
  sealedStore?: SealedStore;
  logger?: GateLogger;
  /** Counts refused attempts by reason code (Prometheus). */
  onRefused?: (reason: string) => void;
  limits?: UnsealLimits;
  /** The clock, for tests. */
  now?: () => number;
}

const shuttingDown = () => new CustosError('vault_sealed', 'The vault is shutting down; this share was not checked. Give it again once the vault is serving.');

/** What a refused share looked like, for the log and the audit entry; never its bytes. */
function problemOf(line: string, vaultId: string): 'malformed' | 'other_vault' | 'not_current' {
  try {
    const d = decodeShare(line);
    wipe(d.bytes);
    return d.vaultId === vaultId ? 'not_current' : 'other_vault';
  } catch {
    return 'malformed';
  }
}


export class ShareGate implements SealGate {
  private opened: OpenVault | null = null;
  private collector: ShareCollector;
  private record: SharesRecord;
  private recordJson: string;
  /** Shares are taken one at a time, so two arriving together cannot both complete the set. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly limits: UnsealLimits;
  private readonly now: () => number;
  /** Failures since the last valid share, and when the last one was checked. */
  private consecutive = 0;
  private lastFailureAt = 0;
  /** When each failure within the window was checked, oldest first. */
  private recent: number[] = [];
  /** Set while attempts are answered 429, so the log and the audit get one entry per episode. */
  private limitedEpisode = false;
  private closing = false;
  /** Ends the current delay early at shutdown. */
  private wake: (() => void) | null = null;

  constructor(private readonly opts: ShareGateOptions) {
    this.record = opts.record;
    this.recordJson = JSON.stringify(opts.record);
    this.collector = this.newCollector();
    this.limits = opts.limits ?? DEFAULT_UNSEAL_LIMITS;
    this.now = opts.now ?? Date.now;
  }

  private newCollector(): ShareCollector {
    return new ShareCollector(this.record, this.opts.vaultId, this.opts.seal === 'shares' ? 'shares' : 'recovery');
  }

  vault(): Vault | null {
    return this.opened?.vault ?? null;
  }

  get openVault(): OpenVault | null {
    return this.opened;
  }

  status(): SealStatus {
    if (this.opened) return { sealed: false, seal: this.opts.seal };
    return { sealed: true, seal: this.opts.seal, threshold: this.record.threshold, progress: this.collector.progress.progress, ...(this.opts.reason ? { reason: this.opts.reason } : {}) };
  }

  /** Seconds until the failure window has room again (at least 1 while limited). */
  retryAfterSeconds(): number {
    this.expire();
    if (this.recent.length < this.limits.maxFailures) return 0;
    return Math.max(1, Math.ceil((this.recent[0]! + this.limits.windowSeconds * 1000 - this.now()) / 1000));
  }

  private expire(): void {
    const since = this.now() - this.limits.windowSeconds * 1000;
    while (this.recent.length > 0 && this.recent[0]! <= since) this.recent.shift();
  }

  /** The 429 for an attempt that arrives while the window is full, or null. Nothing is checked. */
  private limited(attempt: UnsealAttempt): CustosError | null {
    const wait = this.retryAfterSeconds();
    if (wait === 0) {
      this.limitedEpisode = false;
      return null;
    }
    this.opts.onRefused?.('rate_limited');
    const err = new CustosError(
      'rate_limited',
      `Too many refused unseal attempts (${this.recent.length} in the last ${this.limits.windowSeconds} s): this one was not checked. Retry in ${wait} s; the shares given so far still count.`,
    );
    if (!this.limitedEpisode) {
      this.limitedEpisode = true;
      this.opts.logger?.warn({ code: 'rate_limited', failures: this.recent.length, window_seconds: this.limits.windowSeconds, retry_after_seconds: wait, remote: attempt.remote }, 'unseal attempts refused without checking until the failure window has room');
      // Once per episode, not per attempt: a flood must not become a flood of fsyncs.
      void this.audit(attempt, 'denied', 'rate_limited', { failures: this.recent.length, window_seconds: this.limits.windowSeconds }).catch((e) =>
        this.opts.logger?.error({ code: (e as CustosError).code }, 'the unseal rate-limit audit entry could not be written'),
      );
    }
    return err;
  }

  private audit(attempt: UnsealAttempt, outcome: 'ok' | 'denied' | 'failed', reason: string | null, details: AuditDraft['details']): Promise<void> {
    if (!this.opts.sealedStore) return Promise.resolve();
    return this.opts.sealedStore.audit({
      requestId: attempt.requestId ?? randomUUID(),
      principal: 'unauthenticated',
      operation: 'unseal',
      keyId: null,
      keyLabel: null,
      outcome,
      reason,
      details: { ...details, ...(attempt.remote ? { remote: attempt.remote } : {}), ...(attempt.reset ? { reset: true } : {}) },
    });
  }

  /**
   * Adds one share. With `reset`, the share is checked first, against a fresh collection:
   * only a valid share forgets the shares given so far (and counts as the first of the new
   * attempt), so an invalid one, from a bystander or a typo, changes nothing.
   */
  submitShare(line: string, attempt: UnsealAttempt = {}): Promise<SealStatus> {
    if (this.opened) return Promise.resolve(this.status());
    if (this.closing) return Promise.reject(shuttingDown());
    const early = this.limited(attempt);
    if (early) return Promise.reject(early);
    const run = this.queue.then(async () => {
      if (this.opened) return this.status();
      // Checked again in turn: attempts queued behind a burst of failures get 429 at once
      // instead of each waiting out its own delay.
      const limited = this.limited(attempt);
      if (limited) throw limited;
      const wait = this.lastFailureAt + Math.min(this.consecutive * this.limits.delayPerFailureMs, this.limits.maxDelayMs) - this.now();
      if (wait > 0 && !this.closing) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = null;
      }
      if (this.closing) throw shuttingDown();
      return this.take(line, attempt);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async take(line: string, attempt: UnsealAttempt): Promise<SealStatus> {
    if (this.opts.sealedStore) {
      const now = await this.opts.sealedStore.readRecord();
      if (JSON.stringify(now) !== this.recordJson) {
        // Re-keyed meanwhile: progress made with the old shares is void.
        this.collector.reset();
        this.record = now;
        this.recordJson = JSON.stringify(now);
        this.collector = this.newCollector();
      }
    }
    let root: Uint8Array | null;
    try {
      if (attempt.reset) {
        const fresh = this.newCollector();
        root = await fresh.add(line); // throws on an invalid share, before anything is forgotten
        this.collector.reset();
        this.collector = fresh;
      } else {
        root = await this.collector.add(line);
      }
    } catch (e) {
      if (isCustosError(e) && e.code === 'invalid_share') await this.refused(line, attempt, e);
      else await this.failed(attempt, e);
      throw e;
    }
    this.consecutive = 0;
    const threshold = this.record.threshold;
    const progress = root ? threshold : this.collector.progress.progress;
    // Best effort: an accepted share cannot be taken back, and an unseal attempt releases
    // nothing; opening the vault writes to the same log and fails closed if it cannot.
    await this.audit(attempt, 'ok', null, { progress, threshold }).catch((e) =>
      this.opts.logger?.error({ code: (e as CustosError).code }, 'the audit entry for an accepted unseal share could not be written'),
    );
    this.opts.logger?.info({ progress, threshold, remote: attempt.remote }, 'unseal share accepted');
    if (root) {
      try {
        this.opened = await this.opts.onRoot(root);
      } catch (e) {
        await this.failed(attempt, e);
        throw e instanceof CustosError ? e : new CustosError('internal', 'The shares rebuilt the root key, but the vault failed to open; see the server log.', { cause: e });
      } finally {
        wipe(root);
      }
      // The vault has its own connection and signed log from here on.
      await this.opts.sealedStore?.close();
    }
    return this.status();
  }

  /** A share that was checked and refused: slows the next attempt, logged, counted, audited. */
  private async refused(line: string, attempt: UnsealAttempt, e: CustosError): Promise<void> {
    const at = this.now();
    this.consecutive++;
    this.lastFailureAt = at;
    this.expire();
    this.recent.push(at);
    const problem = problemOf(line, this.opts.vaultId);
    this.opts.onRefused?.(e.code);
    this.opts.logger?.warn({ code: e.code, problem, reset: !!attempt.reset, remote: attempt.remote, consecutive_failures: this.consecutive }, 'unseal attempt refused');
    // As for every refusal in the vault: if even the refusal cannot be audited, that error wins.
    await this.audit(attempt, 'denied', e.code, { problem, consecutive_failures: this.consecutive });
  }

  /** Valid shares that could not open the vault (an altered seal record, a failing open). */
  private async failed(attempt: UnsealAttempt, e: unknown): Promise<void> {
    const code = isCustosError(e) ? e.code : 'internal';
    this.opts.logger?.error({ code, remote: attempt.remote }, 'the shares were accepted but the vault did not open');
    await this.audit(attempt, 'failed', code, {}).catch(() => undefined);
  }

  /** Marks the vault open when it was unsealed another way (HSM auto-unseal). */
  openedBy(v: OpenVault): void {
    this.opened = v;
  }

  /** Shutdown: attempts still waiting are refused, the shares given so far forgotten, the store closed. */
  async close(): Promise<void> {
    this.closing = true;
    this.wake?.();
    await this.queue;
    this.collector.reset();
    await this.opts.sealedStore?.close();
  }
}
