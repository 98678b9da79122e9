import type { BackendChoice, BackendRequest } from '../backends.js';
import { createTensorThreads, rebuildFailure } from '../thread-pool.js';
import type { ProbeResult, TaskFailure } from '../thread-state.js';
import type { LocalTrainOptions, LocalTrainResult, LocalTrainData } from './local-train.js';
import type { TrainTaskInput, TrainTaskMessage } from './train-task.js';

/**
 * The worker's fine-tuning thread pool (the scoring pool's twin, client/scoring/pool.ts): local training is
 * seconds of synchronous tensor work, which must not run on the event loop (socket.io heartbeats, blob transfers),
 * and `threads` shards train in parallel. Each bundle is shared with the threads through one SharedArrayBuffer;
 * a shard's data, weights and momentum are copied once into fresh buffers that are transferred (the caller's
 * arrays stay usable), and the update and momentum are transferred back.
 */

export interface TrainingPoolOptions {
  threads: number;
  /** Backend each thread selects on its first task (normally the concrete one `selectBackend` chose). */
  backend: BackendRequest;
  /** How long a thread beyond the first may sit idle before it exits (and drops its models); default 5 min. */
  idleTimeoutMs?: number;
}

export interface TrainShard {
  /** sha-256 of `bundle`. */
  hash: string;
  /** The packed model bundle. */
  bundle: Uint8Array;
  /** Weights to train from (flat, shared/model/weights.ts order); default the bundle's own. */
  weights?: Float32Array;
  /** The client's momentum from its previous round. */
  momentum?: Float32Array;
  data: LocalTrainData;
  opts: Omit<LocalTrainOptions, 'initialMomentum'>;
}

export interface TrainingPool {
  /**
   * Trains one shard in a pool thread: the same trainLocally as in-process, so the same result on the same
   * backend. A bad bundle, data or option rejects with a ModelError/BundleError/RangeError (not retryable).
   */
  train(shard: TrainShard): Promise<LocalTrainResult>;
  /** Runs a no-op task: the backend a thread got. */
  probe(): Promise<BackendChoice>;
  readonly threads: number;
  /** Waits for running tasks, then stops the threads. */
  close(): Promise<void>;
}

/** A fresh copy of `data` whose buffers can be transferred. */
function copyData(data: LocalTrainData): { data: LocalTrainData; buffers: ArrayBuffer[] } {
  if (data.kind === 'classify') {
    const x = data.x.slice();
    const labels = data.labels.slice();
    return { data: { kind: 'classify', x, labels }, buffers: [x.buffer, labels.buffer] };
  }
  const chosen = data.chosen.slice();
  const rejected = data.rejected.slice();
  return { data: { kind: 'pairs', chosen, rejected }, buffers: [chosen.buffer, rejected.buffer] };
}

export function createTrainingPool(options: TrainingPoolOptions): TrainingPool {
  const pool = createTensorThreads(import.meta.url, 'train-task', options.threads, options.idleTimeoutMs);
  const { piscina, threads, sharedBundle } = pool;

  return {
    threads,
    async train(shard) {
      const { data, buffers } = copyData(shard.data);
      const task: TrainTaskInput = { kind: 'train', hash: shard.hash, bundle: sharedBundle(shard.hash, shard.bundle), backend: options.backend, data, opts: { ...shard.opts } };
      if (shard.weights !== undefined) {
        task.weights = shard.weights.slice();
        buffers.push(task.weights.buffer as ArrayBuffer);
      }
      if (shard.momentum !== undefined) {
        task.momentum = shard.momentum.slice();
        buffers.push(task.momentum.buffer as ArrayBuffer);
      }
      const out = (await piscina.run(task satisfies TrainTaskMessage, { transferList: buffers })) as LocalTrainResult | TaskFailure;
      if ('failure' in out) {
        if (out.failure.name === 'BundleError') pool.forget(shard.hash);
        throw rebuildFailure(out.failure);
      }
      return out;
    },
    async probe() {
      const out = (await piscina.run({ kind: 'probe', backend: options.backend } satisfies TrainTaskMessage)) as ProbeResult;
      return out.choice;
    },
    close: () => pool.close(),
  };
}
