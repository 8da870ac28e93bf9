/**
 * The daemon's seal state. A passphrase vault is unsealed before the daemon listens; a vault
 * sealed by operator shares (or an HSM vault whose token is unavailable at start) listens
 * sealed: only health, seal status and unseal answer, and once T operators have given
 * their shares the vault opens and every front end starts. Progress is memory only.
 */
import { CustosError } from '../core/errors.js';
import { wipe } from '../core/bytes.js';
import { ShareCollector, type SharesRecord } from '../keystore/shares.js';
import type { SealGate, SealStatus } from '../frontends/http/server.js';
import type { OpenVault } from '../vault/open.js';
import type { Vault } from '../vault/vault.js';

export class ShareGate implements SealGate {
  private opened: OpenVault | null = null;
  private collector: ShareCollector;
  private recordJson: string;
  /** Shares are taken one at a time, so two arriving together cannot both complete the set. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly seal: 'shares' | 'hsm',
    private record: SharesRecord,
    private readonly vaultId: string,
    /** Opens the vault with the rebuilt root and starts the front ends; the root is wiped after. */
    private readonly onRoot: (root: Uint8Array) => Promise<OpenVault>,
    private readonly reason?: string,
    /** Reads the current shares record: a re-key while sealed retires the old shares at once. */
    private readonly readRecord?: () => Promise<SharesRecord>,
  ) {
    this.collector = this.newCollector();
    this.recordJson = JSON.stringify(record);
  }

  private newCollector(): ShareCollector {
    return new ShareCollector(this.record, this.vaultId, this.seal === 'shares' ? 'shares' : 'recovery');
  }

  vault(): Vault | null {
    return this.opened?.vault ?? null;
  }

  get openVault(): OpenVault | null {
    return this.opened;
  }

  status(): SealStatus {
    if (this.opened) return { sealed: false, seal: this.seal };
    return { sealed: true, seal: this.seal, threshold: this.record.threshold, progress: this.collector.progress.progress, ...(this.reason ? { reason: this.reason } : {}) };
  }

  /**
   * Adds one share. With `reset`, the share is checked first, against a fresh collection:
   * only a valid share forgets the shares given so far (and counts as the first of the new
   * attempt), so an invalid one, from a bystander or a typo, changes nothing.
   */
  submitShare(line: string, opts: { reset?: boolean } = {}): Promise<SealStatus> {
    const run = this.queue.then(async () => {
      if (this.opened) return this.status();
      if (this.readRecord) {
        const now = await this.readRecord();
        if (JSON.stringify(now) !== this.recordJson) {
          // Re-keyed meanwhile: progress made with the old shares is void.
          this.collector.reset();
          this.record = now;
          this.recordJson = JSON.stringify(now);
          this.collector = this.newCollector();
        }
      }
      let root: Uint8Array | null;
      if (opts.reset) {
        const fresh = this.newCollector();
        root = await fresh.add(line); // throws on an invalid share, before anything is forgotten
        this.collector.reset();
        this.collector = fresh;
      } else {
        root = await this.collector.add(line);
      }
      if (root) {
        try {
          this.opened = await this.onRoot(root);
        } catch (e) {
          throw e instanceof CustosError ? e : new CustosError('internal', 'The shares rebuilt the root key, but the vault failed to open; see the server log.', { cause: e });
        } finally {
          wipe(root);
        }
      }
      return this.status();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Marks the vault open when it was unsealed another way (HSM auto-unseal). */
  openedBy(v: OpenVault): void {
    this.opened = v;
  }

  forget(): void {
    this.collector.reset();
  }
}
