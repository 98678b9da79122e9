// What the lease runner needs from the rest of the worker, as narrow interfaces: the scoring pool, the inference
// server, the training pool, the worker's datasets, the connection a lease came on, and a log. Tests pass fakes.
import type { WorkerMessage } from '../shared/protocol/index.js';
import type { Dataset } from './training/datasets.js';
import type { LocalTrainResult } from './training/local-train.js';
import type { TrainShard } from './training/pool.js';
import type { ServerScorer as FullServerScorer } from './scorers/index.js';

/** One item as the scorer takes it: precomputed features, or the text the model's featurizer reads. */
export type ScorerItem = { features: Float32Array } | { prompt: string; response: string };

/** What the lease runner needs from a scoring pool (client/scoring/pool.ts provides the real one). */
export interface Scorer {
  /**
   * One score per item in item order (C class probabilities per item, row-major, for a classifier of C ≥ 3 classes).
   * `bundle` is the packed model whose sha-256 is `hash`; do not modify it.
   */
  score(hash: string, bundle: Uint8Array, items: ScorerItem[], batchSize: number): Promise<Float32Array>;
  close(): Promise<void>;
}

/** What the lease runner needs of the worker's inference server (client/scorers): scorer tasks and embeddings go to it. */
export type ServerScorer = Pick<FullServerScorer, 'api' | 'output' | 'model' | 'score' | 'embed'>;

/** What the lease runner needs from a training pool (client/training/pool.ts provides the real one). */
export interface Trainer {
  train(shard: TrainShard): Promise<LocalTrainResult>;
}

/** The worker's own datasets by name (client/training/datasets.ts `Datasets`). */
export interface DatasetSource {
  /** The names the worker announces in its hello. */
  readonly names: readonly string[];
  /** Rejects with a non-retryable error for an unknown name or a bad file. */
  get(name: string): Promise<Dataset>;
}

/** The connection a lease arrived on. Everything about a lease goes back on that connection or nowhere. */
export interface LeaseChannel {
  readonly live: boolean;
  /** False once the connection is gone (the coordinator re-queues that connection's leases itself). */
  send(message: WorkerMessage): boolean;
  /** The verified model bundle, from cache or fetched over this connection. */
  bundle(hash: string): Promise<Uint8Array>;
}

export interface RunnerLog {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}
