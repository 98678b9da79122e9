/**
 * The coordinator's persistence boundary: jobs, their items and per-item results, and
 * content-addressed blobs. Everything the scheduler needs lives in memory; the store is the
 * write-through record that lets a restarted coordinator resume unfinished jobs.
 *
 * The interface is deliberately narrow and synchronous (better-sqlite3 is synchronous, and a
 * synchronous store keeps the scheduler free of interleavings). It is shaped to fit Redis later:
 *   - every write is one call (`createJob`, `apply`, `putBlob`) that maps to one MULTI/EXEC;
 *   - reads are keyed point/range lookups (job list, one shard's items, a range of results, a
 *     blob range), i.e. HGET/HGETALL/GETRANGE — there are no ad-hoc queries;
 *   - a Redis implementation would keep these signatures by serving reads from a small
 *     in-process cache and pipelining writes (write-behind), or the call sites (job submit,
 *     lease build, results stream, journal flush, blob serve) — all already async contexts —
 *     would `await` a Promise-returning variant. Nothing else touches the store.
 */

export const JOB_STATES = ['queued', 'running', 'done', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

export function isTerminal(state: JobState): boolean {
  return state === 'done' || state === 'failed' || state === 'cancelled';
}

/** What a job is; fixed at submission. */
export interface JobSpec {
  kind: 'score';
  /** sha-256 of the model bundle blob; absent when the job names a scorer instead. */
  model?: string;
  /** Scored by the workers' inference servers that serve this model (docs/scorers.md), instead of a bundle. */
  scorer?: { model: string; output: 'reward' | 'logprobs' };
  /**
   * A bundle whose input is `embedding:DIM`: the embedding model its head reads (read from the bundle's manifest at
   * submit), so only workers whose inference server serves it take the job (docs/scorers.md, "Embedding heads").
   */
  embedding?: string;
  /** A bundle classifying into C ≥ 3 classes (read from its manifest at submit): C probabilities per item. */
  classes?: number;
  items: number;
  shardSize: number;
  redundancy: number;
  /** `--redundancy adaptive`: each shard once, replicated when a spot check says so (docs/security.md). */
  adaptive?: boolean;
  /** Redundant results agree within this relative tolerance (`--agree-tol`; absent: 1e-4). */
  agreeTol?: number;
  batchSize: number;
  /** Item form, the same for every item of a job. */
  form: 'features' | 'text';
  /** Feature length for 'features' jobs, 0 for 'text'. */
  dim: number;
  /** A 'features' job whose values are in this uploaded blob (items × dim float32), not in its shard rows. */
  featuresBlob?: string;
  /** A 'text' job whose prompts and responses are in this uploaded text blob, not in its shard rows. */
  textBlob?: string;
}

/** A blob being written: nothing is visible under a hash until `commit`. */
export interface BlobWriter {
  write(chunk: Uint8Array): Promise<void>;
  /** Makes the bytes written the blob `hash` (verified by the caller to hash to it; a no-op when it is present). */
  commit(hash: string): Promise<void>;
  /** Drops what was written (also after a failed write). */
  abort(): Promise<void>;
}

export interface JobRecord {
  id: string;
  spec: JobSpec;
  state: JobState;
  /** ms since the epoch */
  createdAt: number;
  finishedAt?: number;
  error?: string;
  /** The submitter that created it (auth.ts Principal.owner); absent when the submitter role was open. */
  owner?: string;
}

/** The items of one shard, columnar. */
export interface ShardItems {
  ids: string[];
  /** 'features' jobs: ids.length × dim values, row-major. */
  features?: Float32Array;
  /** 'text' jobs. */
  prompts?: string[];
  responses?: string[];
}

export interface ShardResult {
  jobId: string;
  index: number;
  scores: Float32Array;
  /** With redundancy > 1: whether all results agreed within tolerance (always true for R = 1). */
  agreed: boolean;
  /** Offsets within the shard of items no quorum settled (docs/security.md, "Redundancy that verifies"). */
  disputed: number[];
  /** Results that counted for the shard. */
  replies: number;
}

/** A job's redundancy figures over its stored results. */
export interface ResultStats {
  /** Shards whose results did not all agree. */
  disagreements: number;
  /** Items no quorum settled. */
  disputed: number;
  /** Results that counted, over all stored shards. */
  replies: number;
}

export interface StoredShardResult {
  index: number;
  ids: string[];
  scores: Float32Array;
  agreed: boolean;
  disputed: number[];
  replies: number;
}

export interface JobUpdate {
  id: string;
  state: JobState;
  finishedAt?: number;
  error?: string;
}

/** One atomic write: results first, then job state changes that may depend on them. */
export interface StoreBatch {
  results: ShardResult[];
  jobs: JobUpdate[];
}

/** A training job (issue 4), fixed at submission; its evolving state lives in checkpoints. */
export interface TrainJobRecord {
  id: string;
  /** The submitter that created it (auth.ts Principal.owner); absent when the submitter role was open. */
  owner?: string;
  state: JobState;
  /** ms since the epoch */
  createdAt: number;
  finishedAt?: number;
  error?: string;
  /** sha-256 of the initial model bundle blob. */
  model: string;
  /** The resolved train.json (plain JSON). */
  config: unknown;
  /** sha-256 of the blob holding the packed central data (server/training/persist.ts), absent for worker data. */
  data?: string;
  /** sha-256 of the blob holding the packed evaluation data, if any. */
  eval?: string;
}

/** The latest checkpoint of a training job: what a restarted coordinator resumes from. */
export interface TrainCheckpoint {
  /** Server steps taken (the model version). */
  step: number;
  /** The packed training state (server/training/persist.ts: driver snapshot, client bindings, elapsed time). */
  state: Uint8Array;
  /** metrics.jsonl up to and including `step`. */
  metrics: string;
}

export interface Store {
  /** False for the in-memory store (`--state :memory:`). */
  readonly durable: boolean;
  /** Writes a job and all of its shards' items atomically. */
  /** `meta` is the submitter's opaque JSON (e.g. how to rebuild its output), kept apart so listing jobs never loads it. */
  createJob(job: JobRecord, shards: readonly ShardItems[], meta?: unknown): void;
  /**
   * The same in steps, so that a large job does not hold the event loop: the shards are taken from `shards` and
   * written a batch at a time, awaiting `pause()` between batches; the job row (with its meta) goes last, so a job
   * exists only whole. When `shards` throws or a write fails, the rows written are removed and the error rethrown
   * (rows a crash left behind are removed when the store is next opened).
   */
  createJobInSteps(job: JobRecord, shards: Iterable<ShardItems>, meta: unknown, pause: () => Promise<void>): Promise<void>;
  /**
   * Resolves when what deleted jobs held (their shard rows, the file's free pages) has been given back; deleteJobs
   * does that in steps after it returns, so that a large job's deletion does not hold the event loop.
   */
  reclaimed(): Promise<void>;
  /** The meta stored with a job, as JSON text (served as it is: a meta of a million lines is not parsed again), or undefined. */
  jobMetaJson(jobId: string): string | undefined;
  /** All jobs, in submission order. */
  listJobs(): JobRecord[];
  shardItems(jobId: string, index: number): ShardItems | undefined;
  /** Indices of the shards that have a result, ascending. */
  doneShards(jobId: string): number[];
  /** Redundancy figures over a job's stored results. */
  resultStats(jobId: string): ResultStats;
  /** Done shards with index in [from, to), ascending. */
  readResults(jobId: string, from: number, to: number): StoredShardResult[];
  apply(batch: StoreBatch): void;
  hasBlob(hash: string): boolean;
  blobSize(hash: string): number | undefined;
  /** Stores bytes already verified to hash to `hash` (a no-op if present). */
  putBlob(hash: string, chunks: readonly Uint8Array[]): void;
  /** A blob written as it arrives (an upload), without holding it in memory or the event loop for its whole write. */
  createBlobWriter(): BlobWriter;
  readBlob(hash: string, offset: number, length: number): Uint8Array<ArrayBuffer>;
  /**
   * What changes when a blob's bytes change behind the store's back (file size and modification time), so a blob
   * verified once need not be hashed again until it does; undefined when absent.
   */
  blobStamp(hash: string): string | undefined;
  /** Removes a blob (one whose bytes no longer hash to its name); a no-op if absent. */
  deleteBlob(hash: string): void;
  /**
   * Deletes ended jobs (score or training; done, failed or cancelled in the store) and everything stored for them: the
   * record, its meta, shard items and results, its training checkpoint and metrics; then gives the freed space back
   * (SQLite: incremental vacuum and a WAL checkpoint, so the file shrinks). Ids that are unknown or of a job that has not
   * ended are left alone. Returns the ids deleted and the blob hashes their records named (a blob may be shared: see
   * blobsInUse before removing one).
   */
  deleteJobs(ids: readonly string[]): { deleted: string[]; blobs: string[] };
  /** The blob hashes that stored jobs name: score jobs' models; training jobs' models, data and eval data. */
  blobsInUse(): Set<string>;
  /** Every stored blob and when it was stored (ms since the epoch: the blob file's modification time). */
  listBlobs(): Array<{ hash: string; storedAt: number }>;
  /** What the operator should hear after the store opened (a one-off migration, or one that could not run). */
  readonly notices?: ReadonlyArray<{ level: 'info' | 'warn'; message: string }>;
  /** Records a new training job (its data blobs are put first). */
  createTrainJob(job: TrainJobRecord): void;
  /** A training job's state change (error/finishedAt as in JobUpdate). */
  updateTrainJob(update: JobUpdate): void;
  /** All training jobs, in submission order. */
  listTrainJobs(): TrainJobRecord[];
  /**
   * Replaces the job's checkpoint (one per job: the latest), atomically. The store may keep `checkpoint.state` itself
   * rather than a copy (a checkpoint of a 1e6-parameter job with per-client momenta is ~100 MB): the caller hands
   * the bytes over and does not change them afterwards.
   */
  saveTrainCheckpoint(jobId: string, checkpoint: TrainCheckpoint): void;
  trainCheckpoint(jobId: string): TrainCheckpoint | undefined;
  close(): void;
}

/** What GET /api/jobs/:id says of every job, whatever its kind. */
export interface JobStatusBase {
  id: string;
  state: JobState;
  progress: { done: number; total: number };
  createdAt: string;
  finishedAt?: string;
  error?: string;
  /** sha-256 of the model bundle blob (absent for jobs scored by workers' inference servers). */
  model?: string;
}
