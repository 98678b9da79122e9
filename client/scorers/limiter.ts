/**
 * A counting semaphore: at most `limit` holders at a time, waiters served first come, first served. A scorer keeps
 * one for all its HTTP requests, so concurrent score() calls share the `--scorer-concurrency` budget.
 */
export class Limiter {
  private active = 0;
  private readonly waiting: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  private closedWith: unknown = undefined;

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${limit}`);
  }

  /** Resolves once a slot is free; call the returned function exactly once to free it. */
  async acquire(): Promise<() => void> {
    if (this.closedWith !== undefined) throw this.closedWith;
    if (this.active < this.limit) {
      this.active++;
    } else {
      await new Promise<void>((resolve, reject) => this.waiting.push({ resolve, reject }));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter, so `active` stays the same.
      if (next !== undefined) next.resolve();
      else this.active--;
    };
  }

  /** Rejects every waiter (and every later acquire) with `err`; holders keep their slots until they release. */
  close(err: unknown): void {
    this.closedWith = err;
    for (const waiter of this.waiting.splice(0)) waiter.reject(err);
  }

  get inFlight(): number {
    return this.active;
  }
}
