import type { Capabilities } from '../shared/protocol/index.js';

export type WorkerState = 'idle' | 'busy' | 'draining';

export interface WorkerInfo {
  id: string;
  name: string;
  /**
   * Who it is for blame, records and redundancy votes (docs/security.md): its name, or with `--worker-identity token`
   * its worker token's digest (`token:…`), so that one party's many names or machines count once.
   */
  identity: string;
  capabilities: Capabilities;
  connectedAt: number;
  lastSeen: number;
  /** Set by a `release` (the worker is shutting down) until its next `pull`. */
  draining: boolean;
  /** Measured from results: items / compute second, smoothed. 0 until the first result. */
  itemsPerSecond: number;
  shardsDone: number;
  /** Fine-tuning shards whose update was accepted. */
  trainShardsDone: number;
  itemsDone: number;
}

/** Weight of the newest sample in the throughput average. */
const EWMA_ALPHA = 0.3;

/**
 * Connected workers and what they told us about themselves. Liveness is "last message seen":
 * any frame counts, heartbeats just guarantee one every heartbeatMs.
 */
export class WorkerRegistry {
  private readonly workers = new Map<string, WorkerInfo>();
  private counter = 0;

  constructor(private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.workers.size;
  }

  /** Registers a worker after its hello; the id is unique for this coordinator's lifetime. */
  add(name: string, capabilities: Capabilities, prefix: string, identity: string = name): WorkerInfo {
    const id = `${prefix}${++this.counter}`;
    const now = this.now();
    const info: WorkerInfo = { id, name, identity, capabilities, connectedAt: now, lastSeen: now, draining: false, itemsPerSecond: 0, shardsDone: 0, trainShardsDone: 0, itemsDone: 0 };
    this.workers.set(id, info);
    return info;
  }

  get(id: string): WorkerInfo | undefined {
    return this.workers.get(id);
  }

  remove(id: string): boolean {
    return this.workers.delete(id);
  }

  touch(id: string): void {
    const w = this.workers.get(id);
    if (w !== undefined) w.lastSeen = this.now();
  }

  setDraining(id: string, draining: boolean): void {
    const w = this.workers.get(id);
    if (w !== undefined) w.draining = draining;
  }

  /** An accepted result of `items` items computed in `elapsedMs` (worker-reported, else wall time). */
  recordResult(id: string, items: number, elapsedMs: number): void {
    const w = this.workers.get(id);
    if (w === undefined) return;
    w.shardsDone++;
    w.itemsDone += items;
    if (elapsedMs > 0) {
      const rate = (items * 1000) / elapsedMs;
      w.itemsPerSecond = w.itemsPerSecond === 0 ? rate : EWMA_ALPHA * rate + (1 - EWMA_ALPHA) * w.itemsPerSecond;
    }
  }

  /** An accepted fine-tuning update. */
  recordTrainResult(id: string): void {
    const w = this.workers.get(id);
    if (w !== undefined) w.trainShardsDone++;
  }

  /** Workers not heard from for longer than `silenceMs`. */
  silent(silenceMs: number): string[] {
    const cutoff = this.now() - silenceMs;
    const out: string[] = [];
    for (const w of this.workers.values()) if (w.lastSeen < cutoff) out.push(w.id);
    return out;
  }

  list(): WorkerInfo[] {
    return [...this.workers.values()];
  }
}
