// Removes blobs no job names any more (docs/security.md, "Retention"). Blobs are shared and content-addressed, so a
// blob goes only when no stored job names it and nothing used it (stored, uploaded, confirmed, read, sent) for a grace
// period: a submitter that confirmed a blob moments ago for a job it is about to submit still finds it, and a blob
// being hashed or sent is never removed mid-transfer.
import type { Logger } from 'pino';
import type { BlobStore } from './blobs.js';
import type { Store } from './store.js';

export class BlobCollector {
  /** Blobs that only deleted jobs named and that are not removed yet (used too recently, or being sent): checked again. */
  private readonly orphans = new Set<string>();
  private orphanTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly graceMs: number,
    private readonly now: () => number,
    private readonly log: Logger,
  ) {}

  /** Blobs that deleted jobs named: removed once no job names them and they were unused for the grace period. */
  orphaned(hashes: Iterable<string>): void {
    for (const hash of hashes) this.orphans.add(hash);
    try {
      this.collectBlobs();
    } catch (e) {
      this.log.error({ err: e instanceof Error ? e.message : String(e) }, 'cannot remove unused blobs');
    }
  }

  close(): void {
    this.closed = true;
    if (this.orphanTimer !== undefined) clearTimeout(this.orphanTimer);
  }

  /** When a blob was last stored or used, whichever is later. */
  private lastUse(hash: string, storedAt: number): number {
    return Math.max(storedAt, this.blobs.lastUsed(hash) ?? -Infinity);
  }

  /** Removes every stored blob no job names that was neither stored nor used after `cutoff` (retention). */
  sweep(cutoff: number): void {
    const inUse = this.store.blobsInUse();
    let removed = 0;
    for (const { hash, storedAt } of this.store.listBlobs()) {
      if (inUse.has(hash) || this.lastUse(hash, storedAt) > cutoff || !this.blobs.remove(hash)) continue;
      this.orphans.delete(hash);
      removed++;
    }
    if (removed > 0) this.log.info({ blobs: removed }, 'blobs no job names, unused for the retention time, removed');
  }

  /**
   * Removes the orphans (blobs only deleted jobs named) that no job names now and that nothing used for the grace period;
   * the others are checked again when their grace ends (one unref'd timer). An orphan a job names again is dropped
   * from the set: it becomes one again when that job is deleted.
   */
  private collectBlobs(): void {
    if (this.orphanTimer !== undefined) clearTimeout(this.orphanTimer);
    this.orphanTimer = undefined;
    if (this.orphans.size === 0 || this.closed) return;
    const inUse = this.store.blobsInUse();
    const stored = new Map(this.store.listBlobs().map((b) => [b.hash, b.storedAt]));
    const now = this.now();
    let next = Infinity;
    let removed = 0;
    for (const hash of [...this.orphans]) {
      const storedAt = stored.get(hash);
      if (storedAt === undefined || inUse.has(hash)) {
        this.orphans.delete(hash);
        continue;
      }
      const free = this.lastUse(hash, storedAt) + this.graceMs;
      if (free > now) next = Math.min(next, free);
      else if (this.blobs.remove(hash)) {
        this.orphans.delete(hash);
        removed++;
      } else next = Math.min(next, now + 1_000); // being hashed or sent: soon again
    }
    if (removed > 0) this.log.info({ blobs: removed }, 'blobs only deleted jobs named removed');
    if (next === Infinity) return;
    this.orphanTimer = setTimeout(() => {
      this.orphanTimer = undefined;
      try {
        this.collectBlobs();
      } catch (e) {
        this.log.error({ err: e instanceof Error ? e.message : String(e) }, 'cannot remove unused blobs');
      }
    }, Math.min(0x7fffffff, Math.max(0, next - now) + 1));
    this.orphanTimer.unref();
  }
}
