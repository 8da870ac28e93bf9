/**
 * Group commit. Every state change and every audit entry reaches the store through here:
 * units queued while a transaction is being written are committed together in the next one,
 * so concurrent requests share one fsync instead of queueing behind one fsync each. A caller
 * is answered only once its unit is durable, or with an error when it is not (fail closed).
 */
import { CustosError } from '../core/errors.js';
import type { AuditDraft } from '../core/types.js';
import { chainHash, type AuditSigner } from '../audit/chain.js';
import type { Store, WriteUnit } from '../store/store.js';

interface Pending {
  unit: WriteUnit;
  resolve: () => void;
  reject: (e: Error) => void;
}

export interface CommitStats {
  transactions: number;
  units: number;
}

export class GroupCommitter {
  private queue: Pending[] = [];
  private flushing: Promise<void> | null = null;
  private sinceCheckpoint = 0;
  private closed = false;
  readonly stats: CommitStats = { transactions: 0, units: 0 };

  constructor(
    private readonly store: Store,
    private readonly signer: AuditSigner | null,
    private readonly checkpointEvery = 1000,
    private readonly onBatch?: (units: number, seconds: number) => void,
  ) {}

  /** Resolves once the unit is durable; rejects with its own conflict or `audit_unavailable`. */
  commit(unit: WriteUnit): Promise<void> {
    if (this.closed) return Promise.reject(new CustosError('vault_sealed', 'The vault is shutting down; retry against a running vault.'));
    return new Promise((resolve, reject) => {
      this.queue.push({ unit, resolve, reject });
      if (!this.flushing) this.flushing = this.loop();
    });
  }

  /** Just an audit entry, no state change. */
  audit(...drafts: AuditDraft[]): Promise<void> {
    return this.commit({ mutations: [], audit: drafts });
  }

  private async loop(): Promise<void> {
    // Yield once so that requests arriving in the same tick join the batch.
    await new Promise<void>((r) => setImmediate(r));
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      const started = process.hrtime.bigint();
      try {
        const results = await this.store.commit(
          batch.map((p) => p.unit),
          chainHash,
          new Date().toISOString(),
        );
        this.stats.transactions++;
        this.stats.units += batch.length;
        this.onBatch?.(batch.length, Number(process.hrtime.bigint() - started) / 1e9);
        batch.forEach((p, i) => {
          const err = results[i];
          if (err) p.reject(err);
          else p.resolve();
        });
        this.sinceCheckpoint += batch.reduce((n, p) => n + p.unit.audit.length, 0);
        if (this.signer && this.sinceCheckpoint >= this.checkpointEvery) await this.checkpoint();
      } catch (e) {
        const err =
          e instanceof CustosError && e.code !== 'storage_unavailable' && e.code !== 'database_corrupt'
            ? e
            : new CustosError('audit_unavailable', `The audit log could not be written, so nothing was done (fail closed): ${(e as Error).message}`, { cause: e });
        for (const p of batch) p.reject(err);
      }
    }
    this.flushing = null;
  }

  /** Writes a signed checkpoint of the current head (also done on shutdown). */
  async checkpoint(): Promise<void> {
    if (!this.signer) return;
    // Only what this vault wrote is signed: an entry appended with SQL is refused here.
    const head = await this.store.verifiedHead();
    if (head.seq === 0) return;
    await this.store.putCheckpoint(this.signer.checkpoint(head, new Date().toISOString()));
    this.sinceCheckpoint = 0;
  }

  /** Waits for queued units, writes a final checkpoint and refuses new work. */
  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
    this.closed = true;
    try {
      await this.checkpoint();
    } catch {
      // A checkpoint is an optimisation for verification; the chain itself is already durable.
    }
  }
}
