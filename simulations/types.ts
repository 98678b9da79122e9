// The simulator's vocabulary: tasks (what clients optimise), results (metrics rows and summaries as the contract
// writes them to metrics.csv and summary.json). Platform-free: the engine, presets and report all speak it.

/** Uniform [0, 1) source (shared/random.ts mulberry32). */
export type Rng = () => number;

/** One local training job's result, written into a caller-provided buffer. */
export interface LocalResult {
  /** Examples behind the update (for 'samples' weighting). */
  samples: number;
  /** Mean training loss over the local steps (NaN when the task does not compute one). */
  loss: number;
}

export interface LocalOptions {
  /** Local SGD steps. */
  steps: number;
  lr: number;
  /** Minibatch size (ignored by tasks with exact or closed-form gradients). */
  batchSize: number;
  /** Worker-side Polyak momentum β (m ← βm + (1−β)g); 0 = plain SGD. */
  momentum: number;
  /** Train on flipped labels y → C − 1 − y (the label-flip attack); tasks without labels ignore it. */
  flipLabels?: boolean;
}

/**
 * What a population of clients optimises. Per-client state is data indices and a few numbers, never a model copy:
 * the engine owns every vector. Implementations must be deterministic given the rng they are handed.
 */
export interface LearningTask {
  readonly name: string;
  /** Number of clients the task was built for. */
  readonly numClients: number;
  /** Parameter count d. */
  readonly dim: number;
  /** The starting model (a fresh array). */
  initial(): Float32Array;
  /**
   * Client `client` trains from `x` for `opts.steps` steps: writes Δ = y − x into `out` (length d), reading and
   * updating `momentum` in place when given (length d, the client's Polyak momentum). Never mutates `x`.
   */
  localUpdate(client: number, x: Float32Array, opts: LocalOptions, rng: Rng, out: Float32Array, momentum?: Float32Array): LocalResult;
  /** The model's loss on the task's evaluation objective, and accuracy where it applies (null otherwise). */
  evaluate(x: Float32Array): { loss: number; accuracy: number | null };
}

/** One metrics.csv row (contract: header `experiment,algorithm,seed,step,time,loss,accuracy`). */
export interface MetricRow {
  experiment: string;
  algorithm: string;
  seed: number;
  step: number;
  /** Virtual time (sync rounds: the round's slowest client; async: event time). */
  time: number;
  loss: number | null;
  accuracy: number | null;
}

/** One summary.json entry (contract). */
export interface SummaryRow {
  experiment: string;
  algorithm: string;
  seeds: number;
  final_loss_mean: number | null;
  final_accuracy_mean: number | null;
  time_to_target_mean: number | null;
}

/** What one (experiment, algorithm, seed) run returns. */
export interface RunResult {
  experiment: string;
  algorithm: string;
  seed: number;
  rows: MetricRow[];
  /** The run's headline loss (e.g. of the iterate average over the last half) — what summary.json averages. */
  finalLoss: number | null;
  finalAccuracy: number | null;
  /** Virtual time at which the loss first reached the experiment's target; null if it never did or none is set. */
  timeToTarget: number | null;
  /** Client updates computed. */
  updates: number;
}
