/**
 * Turns, per name, inside this process. Requests that spend the same policy budget take
 * turns from their decision to their commit: each decides on what the one before committed,
 * so none loses its compare-and-set to a neighbour and none makes a signature only to drop
 * it. (They could never have shared a commit anyway: every spend changes the budget the next
 * one compares against.) Other processes on the same database are still kept honest by the
 * compare-and-set at commit.
 */
export class Lanes {
  private readonly tails = new Map<string, Promise<void>>();

  /** Waits for the turn on every name (taken in sorted order, so two holders never deadlock); returns its release. */
  async acquire(names: readonly string[]): Promise<() => void> {
    const releases: (() => void)[] = [];
    try {
      for (const name of [...new Set(names)].sort()) releases.push(await this.one(name));
    } catch (e) {
      for (const r of releases.reverse()) r();
      throw e;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const r of releases.reverse()) r();
    };
  }

  /** Names someone holds or waits for (for tests and metrics). */
  get busy(): number {
    return this.tails.size;
  }

  private async one(name: string): Promise<() => void> {
    const before = this.tails.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = before.then(() => mine);
    this.tails.set(name, tail);
    await before;
    return () => {
      release();
      if (this.tails.get(name) === tail) this.tails.delete(name);
    };
  }
}

/** A turn held across the steps of one attempt; released when the attempt ends, however it ends. */
export class Turn {
  private release: (() => void) | undefined;

  constructor(private readonly lanes: Lanes) {}

  /** Gives up any turn held, then waits for the turn on `names` (none: holds nothing). */
  async take(names: readonly string[]): Promise<void> {
    this.end();
    if (names.length > 0) this.release = await this.lanes.acquire(names);
  }

  end(): void {
    const r = this.release;
    this.release = undefined;
    r?.();
  }
}
