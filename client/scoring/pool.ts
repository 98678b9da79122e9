import type { ModelItem } from '../../shared/model/featurizer.js';
import type { BackendChoice, BackendRequest } from '../backends.js';
import { createTensorThreads, rebuildFailure } from '../thread-pool.js';
import type { ProbeResult, TaskFailure, TaskInput } from './score-task.js';

/**
 * The worker's tensor thread pool. Featurizing and `predict` are synchronous CPU work (tens of milliseconds per
 * shard on wasm); on the event loop they would stall socket.io heartbeats, blob transfers and lease bookkeeping, and
 * only one shard could run at a time. In piscina threads the event loop only does I/O, and `threads` shards run in
 * parallel. Nothing large is cloned between threads: a shard's features are packed (one memcpy) into a matrix whose
 * buffer is transferred, scores are transferred back, and each model bundle is shared with all threads through one
 * SharedArrayBuffer.
 */

export interface ScoringPoolOptions {
  threads: number;
  /** Backend each thread selects on its first task (normally the concrete one `selectBackend` chose). */
  backend: BackendRequest;
  /** How long a thread beyond the first may sit idle before it exits (and drops its models); default 5 min. */
  idleTimeoutMs?: number;
}

export interface ScoringPool {
  /**
   * One score per item, in item order. `bundle` is the packed model whose sha-256 is `hash`; it is copied once per
   * hash into shared memory and never modified. A features shard is packed into one matrix whose buffer is
   * transferred (the caller's arrays stay usable); text items are cloned. A bad bundle or item rejects with a
   * ModelError/BundleError (`retryable: false`).
   */
  score(hash: string, bundle: Uint8Array, items: ModelItem[], batchSize: number): Promise<Float32Array>;
  /** Runs a no-op task: the backend a thread got (and fails fast when the requested backend does not load). */
  probe(): Promise<BackendChoice>;
  readonly threads: number;
  /** Waits for running tasks, then stops the threads. */
  close(): Promise<void>;
}

/**
 * A features shard as one row-major matrix, when every item has features of one length (else undefined: the items
 * go as they are and the thread reports what is wrong with them). Why copy here rather than transfer each item's
 * buffer: transferring is a per-buffer cost on both threads, and for a shard of 8,192 items of 256 floats it took
 * 25–40 ms against 3–6 ms for this one memcpy plus a single transfer (measured on the 2-core dev machine).
 */
function packFeatures(items: readonly ModelItem[]): { x: Float32Array; rows: number; cols: number } | undefined {
  const cols = items[0]?.features?.length ?? 0;
  if (cols === 0) return undefined;
  for (const item of items) {
    if (item.features === undefined || item.features.length !== cols || item.prompt !== undefined || item.response !== undefined) return undefined;
  }
  const x = new Float32Array(items.length * cols);
  items.forEach((item, i) => x.set(item.features as Float32Array | readonly number[], i * cols));
  return { x, rows: items.length, cols };
}

export function createScoringPool(options: ScoringPoolOptions): ScoringPool {
  const pool = createTensorThreads(import.meta.url, 'score-task', options.threads, options.idleTimeoutMs);
  const { piscina, threads, sharedBundle } = pool;

  return {
    threads,
    async score(hash, bundle, items, batchSize) {
      if (items.length === 0) return new Float32Array(0);
      const common = { kind: 'score', hash, bundle: sharedBundle(hash, bundle), backend: options.backend, batchSize } as const;
      const matrix = packFeatures(items);
      const out = (await (matrix
        ? piscina.run({ ...common, matrix } satisfies TaskInput, { transferList: [matrix.x.buffer as ArrayBuffer] })
        : piscina.run({ ...common, items } satisfies TaskInput))) as Float32Array | TaskFailure;
      if (!(out instanceof Float32Array)) {
        if (out.failure.name === 'BundleError') pool.forget(hash);
        throw rebuildFailure(out.failure);
      }
      // One value per item, or C class probabilities per item for a classifier of C ≥ 3 classes (scoreWidth).
      if (out.length % items.length !== 0) throw new Error(`scoring thread returned ${out.length} scores for ${items.length} items`);
      return out;
    },
    async probe() {
      const out = (await piscina.run({ kind: 'probe', backend: options.backend } satisfies TaskInput)) as ProbeResult;
      return out.choice;
    },
    close: () => pool.close(),
  };
}
