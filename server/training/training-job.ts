// Training jobs on the coordinator (issue 4): a TrainingJob owns a SyncDriver or AsyncDriver (the pure state
// machines) and its data; the TrainingService turns the drivers' DispatchOrders into `train` leases for workers whose
// hello listed 'train', within their credit, and feeds results, failures, expiries and disconnects back to the
// drivers. Round deadlines and lease expiries are timers here. The Pool's pump calls pump().
//
// Data: central (the coordinator ships each virtual client's partition with its lease) or worker-held (client i is
// the i-th worker that announced the dataset; its leases go to that worker only and the data never leaves it).
// Persistence: the job record and its data are stored at submission; a checkpoint (driver snapshot, client bindings,
// metrics) every `checkpointEvery` steps, at the end and at shutdown. A restarted coordinator resumes from it.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { ConfigError, parseTrainConfig, trainPipelineSpec, type TrainConfig } from '../../shared/config/train.js';
import { partitionDirichlet, partitionIid } from '../../shared/data/partition.js';
import { packedEmbeddingInput } from '../../shared/model/embedding-input.js';
import { Tensor, scorerOutputOf, type LeaseMessage, type Message, type TrainTask } from '../../shared/protocol/index.js';
import type { BlobStore } from '../blobs.js';
import type { Registry, WorkerInfo } from '../registry.js';
import type { Scheduler } from '../scheduler.js';
import { isTerminal, type JobState, type JobStatusBase, type Store, type TrainJobRecord } from '../store.js';
import { Adversary } from '../../shared/training/adversary.js';
import { AsyncDriver, type AsyncDriverSnapshot } from '../../shared/training/async-driver.js';
import type { CentralData, TrainJobRequest } from './job-request.js';
import { inlineVectors, outlineVectors, packCentralData, packState, unpackCentralData, unpackState } from './persist.js';
import { SyncDriver, type SyncDriverSnapshot } from '../../shared/training/sync-driver.js';
import type { ClientArrival, DispatchOrder, ParticipationSetting, StepMetrics } from '../../shared/training/types.js';
import type { EvalResult, TrainModel } from './evaluator.js';

/** One metrics.jsonl line. `time` is seconds since the job started; accuracy/eval_loss null when not evaluated. */
export interface TrainMetricLine {
  step: number;
  time: number;
  loss: number | null;
  accuracy: number | null;
  eval_loss: number | null;
  participants: number;
  staleness_mean: number | null;
}

/** GET /api/jobs/:id for a training job. */
export interface TrainJobStatus extends JobStatusBase {
  kind: 'train';
  mode: 'sync' | 'async';
  clients: number;
}

/** Where leases go (the socket layer). */
export interface TrainingSink {
  sendLease(workerId: string, message: LeaseMessage): void;
  dropJob(workerId: string, jobId: string): void;
}

export interface TrainingHost {
  registry: Registry;
  store: Store;
  scheduler: Scheduler;
  blobs: BlobStore;
  sink: () => TrainingSink | undefined;
  log: Logger;
  leaseMs: number;
  newLeaseId: () => string;
  now?: () => number;
}

export class TrainSubmitError extends Error {}

/** A lease map that reports each worker whose lease count changed. */
class LoadTrackingLeases extends Map<string, TrainLease> {
  /** Leases per worker, kept with the map: the pump asks for every worker's count, often. */
  private readonly perWorker = new Map<string, number>();

  constructor(private readonly changed: (workerId: string) => void) {
    super();
  }

  held(workerId: string): number {
    return this.perWorker.get(workerId) ?? 0;
  }

  private count(workerId: string, by: number): void {
    const n = (this.perWorker.get(workerId) ?? 0) + by;
    if (n > 0) this.perWorker.set(workerId, n);
    else this.perWorker.delete(workerId);
  }

  override set(key: string, value: TrainLease): this {
    const before = super.get(key);
    super.set(key, value);
    // perWorker is undefined while Map's constructor runs (it calls set for no entries, but keep it safe).
    if (this.perWorker === undefined) return this;
    if (before !== undefined) this.count(before.workerId, -1);
    this.count(value.workerId, 1);
    if (before !== undefined && before.workerId !== value.workerId) this.changed(before.workerId);
    this.changed(value.workerId);
    return this;
  }

  override delete(key: string): boolean {
    const lease = super.get(key);
    const removed = super.delete(key);
    if (lease !== undefined) {
      this.count(lease.workerId, -1);
      this.changed(lease.workerId);
    }
    return removed;
  }

  /** Only at shutdown: no load updates then. */
  override clear(): void {
    super.clear();
    this.perWorker.clear();
  }
}

interface TrainLease {
  jobId: string;
  workerId: string;
  order: DispatchOrder;
  /** 1 for the first lease of this order; a lost central shard is re-leased within its round (sync). */
  attempt: number;
  timer: NodeJS.Timeout;
}

/** Most leases of one sync order (a central client's shard re-leased after lost workers). */
const MAX_ATTEMPTS = 3;

type DriverSnapshot = SyncDriverSnapshot<Float32Array, Float64Array> | AsyncDriverSnapshot<Float32Array, Float64Array>;

/**
 * What a checkpoint's packed state holds besides the vectors (weights, then each stored momentum, then the float32
 * vectors of the rest of the snapshot) and the float64 vectors (the server optimizer's moments). In `snapshot` each
 * of those vectors stands as {"$f32": i} / {"$f64": i} (outlineVectors). Checkpoints written before the snapshot had
 * vectors besides weights and momenta have no such references and no `server` state: they resume as before.
 */
interface CheckpointHeader {
  snapshot: Record<string, unknown>;
  momentumClients: number[];
  numClients: number;
  /** Worker-held data: [worker name, client] pairs. */
  bindings: Array<[string, number]>;
  /** Seconds of training before this checkpoint (metrics' `time` continues from it after a restart). */
  elapsed: number;
}

type Driver = { kind: 'sync'; d: SyncDriver } | { kind: 'async'; d: AsyncDriver };

class TrainingJob {
  state: JobState = 'queued';
  finishedAt: number | undefined;
  error: string | undefined;
  driver: Driver | undefined;
  model: TrainModel | undefined;
  metrics: TrainMetricLine[] = [];
  /** Orders waiting for a worker with free credit (with the lease attempt they will be). */
  queue: Array<{ order: DispatchOrder; attempt: number }> = [];
  /** Sync: clients of the open round whose answer (update, failure, expiry) is still due. */
  outstanding = new Set<number>();
  roundTimer: NodeJS.Timeout | undefined;
  /** `now()` at which training time 0 lies (earlier than the start after a restart). */
  startedAt = 0;
  waiters = new Set<() => void>();
  /** Virtual clients; for worker data fixed when training starts (data.clients, or the workers holding it then). */
  numClients: number;
  /** Worker-held data: worker name → client. */
  readonly bindings = new Map<string, number>();
  /** A head over embeddings (set when the model loads): the embedding model its workers' servers must serve. */
  embedding: string | undefined;
  adversary: Adversary | null = null;
  /** A checkpoint to resume from (set by restore, consumed when the driver is built). */
  resumeFrom: { snapshot: DriverSnapshot; elapsed: number } | undefined;
  /** Weights of an ended job (served by modelBundle): its driver's last weights, or the checkpoint's after a restart. */
  finalWeights: Float32Array | undefined;
  /** The driver's version when the job ended and dropped its driver. */
  finalVersion: number | undefined;
  checkpointedStep = -1;
  /** modelBundle calls using `model` now; an ended job disposes it when the last one returns. */
  modelUsers = 0;
  /** The step whose evaluation runs now (off the event loop): its metrics line, pushed when it ends. The job waits meanwhile. */
  evaluating: { line: TrainMetricLine } | undefined;
  /** Async: results that arrived while a step was evaluated, applied in arrival order once it ends. */
  held: Array<{ arrival: ClientArrival; now: number }> = [];

  constructor(
    readonly id: string,
    readonly config: TrainConfig,
    readonly modelHash: string,
    /** Training data, partitions and eval data: dropped when the job ends (release). */
    public data: CentralData | undefined,
    public evalData: CentralData | undefined,
    /** Row indices of each central client (null for worker-held data). */
    public parts: number[][] | null,
    readonly createdAt: number,
  ) {
    this.numClients = parts?.length ?? (config.data.source === 'worker' ? (config.data.clients ?? 0) : 0);
  }

  get total(): number {
    return this.config.mode === 'sync' ? this.config.rounds : this.config.steps;
  }

  get done(): number {
    return this.driver?.d.version ?? this.finalVersion ?? this.metrics.at(-1)?.step ?? 0;
  }

  /** The dataset name workers must hold, for worker-held data. */
  get datasetName(): string | undefined {
    return this.config.data.source === 'worker' ? this.config.data.name : undefined;
  }

  /** The lease's data for a client: its central rows or pairs, or the worker's own dataset. */
  leaseData(client: number): TrainTask['data'] {
    const d = this.data;
    if (d === undefined || this.parts === null) return { source: 'worker', name: this.datasetName ?? '' };
    const idx = this.parts[client] ?? [];
    const dim = d.dim;
    const gather = (src: Float32Array): Float32Array => {
      const out = new Float32Array(idx.length * dim);
      idx.forEach((r, i) => out.set(src.subarray(r * dim, (r + 1) * dim), i * dim));
      return out;
    };
    if (d.kind === 'pairs') {
      return { source: 'central-pairs', chosen: Tensor.float32(gather(d.chosen), [idx.length, dim]), rejected: Tensor.float32(gather(d.rejected), [idx.length, dim]) };
    }
    const labels = Int32Array.from(idx, (r) => d.labels[r]!);
    return { source: 'central', rows: Tensor.float32(gather(d.rows), [idx.length, dim]), labels: Tensor.int32(labels) };
  }

  wake(): void {
    const w = this.waiters;
    this.waiters = new Set();
    for (const resolve of w) resolve();
  }

  /**
   * Drops what only training needs once the job has ended (after its final checkpoint): the driver (keeping its
   * weights and version), the data, partitions, eval data, client bindings, the adversary, and the model (disposed
   * now, or by the last modelBundle call still using it). What an ended job serves stays: state, metrics, weights.
   */
  release(): void {
    const dr = this.driver;
    if (dr !== undefined) {
      this.finalWeights = dr.d.weights;
      this.finalVersion = dr.d.version;
      this.driver = undefined;
    }
    this.data = undefined;
    this.evalData = undefined;
    this.parts = null;
    this.adversary = null;
    this.resumeFrom = undefined;
    this.bindings.clear();
    this.queue = [];
    this.outstanding = new Set();
    if (this.modelUsers === 0) this.disposeModel();
  }

  disposeModel(): void {
    this.model?.dispose();
    this.model = undefined;
  }
}

/**
 * Whether a worker can train a job: runs train tasks, not draining, holds the job's dataset if it names one, and for
 * a head over embeddings fronts an embedding server of that model (it embeds its own rows; docs/scorers.md).
 */
function eligible(w: WorkerInfo, dataset: string | undefined, embedding?: string): boolean {
  if (w.draining || !w.capabilities.tasks.includes('train')) return false;
  if (embedding !== undefined) {
    const scorer = w.capabilities.scorer;
    if (scorer === undefined || scorerOutputOf(scorer.api) !== 'embedding' || scorer.model !== embedding) return false;
  }
  return dataset === undefined || (w.capabilities.datasets ?? []).includes(dataset);
}

function partition(config: TrainConfig, data: CentralData | undefined): number[][] | null {
  if (config.data.source !== 'central' || data === undefined) return null;
  const part = config.data.partition;
  if (part.kind === 'iid' || data.kind === 'pairs') return partitionIid(data.n, part.clients, part.seed);
  let numClasses = 0;
  for (const l of data.labels) numClasses = Math.max(numClasses, l + 1);
  return partitionDirichlet(data.labels, numClasses, part.clients, part.alpha ?? 0.3, part.seed);
}

export class TrainingService {
  private readonly jobs = new Map<string, TrainingJob>();
  /** Every change tells the score scheduler how many train leases the worker holds, so the two together never exceed its credit. */
  private readonly leases = new LoadTrackingLeases((workerId) => this.host.scheduler.setExternalLoad(workerId, this.held(workerId)));
  private readonly now: () => number;
  private closed = false;
  private pumping = false;
  private pumpAgain = false;

  constructor(private readonly host: TrainingHost) {
    this.now = host.now ?? Date.now;
  }

  // ---- jobs ----------------------------------------------------------------------------------

  submit(request: TrainJobRequest): TrainJobStatus {
    if (this.closed) throw new TrainSubmitError('the coordinator is shutting down');
    const bundle = this.host.blobs.read(request.model);
    if (bundle === undefined) throw new TrainSubmitError(`model: unknown blob ${request.model}; upload it first (PUT /api/blobs/${request.model})`);
    const { config, data } = request;
    // A head over embeddings: only workers can embed text (through their servers), so the data must stay with them.
    const embedding = packedEmbeddingInput(bundle)?.model;
    if (embedding !== undefined && config.data.source === 'central') {
      throw new TrainSubmitError(`data: this model reads embeddings of ${embedding}, which only workers compute: train it on workers' own data (data.source 'worker')`);
    }
    if (embedding !== undefined && request.eval !== undefined) {
      throw new TrainSubmitError(`eval: this model reads embeddings of ${embedding}, which only workers compute: central eval data cannot be embedded`);
    }
    const id = `t${this.now().toString(36)}${randomBytes(4).toString('hex')}`;
    const job = new TrainingJob(id, config, request.model, data, request.eval, partition(config, data), this.now());
    // Durable before it is acknowledged: the data as blobs, then the record.
    const record: TrainJobRecord = { id, state: 'queued', createdAt: job.createdAt, model: request.model, config };
    if (data !== undefined) record.data = this.host.blobs.put(packCentralData(data));
    if (request.eval !== undefined) record.eval = this.host.blobs.put(packCentralData(request.eval));
    this.host.store.createTrainJob(record);
    this.jobs.set(id, job);
    this.host.log.info({ job: id, mode: config.mode, task: config.task, source: config.data.source, clients: job.numClients || undefined }, 'training job submitted');
    this.start(job, bundle);
    return this.statusOf(job);
  }

  /** Loads training jobs from the store: finished ones for their status, metrics and model; unfinished ones resume from their last checkpoint. */
  restore(): { resumed: number; total: number } {
    const records = this.host.store.listTrainJobs();
    let resumed = 0;
    for (const record of records) {
      let config: TrainConfig;
      try {
        config = parseTrainConfig(record.config, '', (_base, p) => p);
      } catch (e) {
        this.host.log.error({ job: record.id, err: e instanceof ConfigError ? e.message : String(e) }, 'stored training job has an invalid config; skipped');
        continue;
      }
      let data: CentralData | undefined;
      let evalData: CentralData | undefined;
      let unreadable: string | undefined;
      try {
        data = this.readData(record.data);
        evalData = this.readData(record.eval);
      } catch (e) {
        unreadable = `its data cannot be read from the state store: ${e instanceof Error ? e.message : String(e)}`;
      }
      const job = new TrainingJob(record.id, config, record.model, data, evalData, partition(config, data), record.createdAt);
      let cp: ReturnType<Store['trainCheckpoint']>;
      let resumeFrom: TrainingJob['resumeFrom'];
      try {
        cp = this.host.store.trainCheckpoint(record.id);
      } catch (e) {
        unreadable ??= `its checkpoint cannot be read: ${e instanceof Error ? e.message : String(e)}`;
      }
      // One damaged record must not keep the coordinator from starting: that job fails, the others go on.
      if (cp !== undefined && unreadable === undefined) {
        try {
          const { header, vectors, doubles } = unpackState(cp.state) as { header: CheckpointHeader; vectors: Float32Array[]; doubles?: Float64Array[] };
          job.metrics = cp.metrics.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as TrainMetricLine);
          job.numClients = header.numClients;
          for (const [name, client] of header.bindings) job.bindings.set(name, client);
          const [weights, ...momenta] = vectors;
          const rest = inlineVectors(header.snapshot, vectors, doubles ?? []) as Record<string, unknown>;
          const snapshot = { ...rest, weights: weights ?? new Float32Array(0), momenta: header.momentumClients.map((c, i) => [c, momenta[i] ?? new Float32Array(0)]) } as DriverSnapshot;
          resumeFrom = { snapshot, elapsed: header.elapsed };
          job.finalWeights = weights;
          job.checkpointedStep = cp.step;
        } catch (e) {
          unreadable = `its checkpoint cannot be read: ${e instanceof Error ? e.message : String(e)}`;
          job.metrics = [];
        }
      }
      this.jobs.set(record.id, job);
      if (isTerminal(record.state)) {
        job.state = record.state;
        job.finishedAt = record.finishedAt;
        job.error = record.error;
        job.release();
        continue;
      }
      const bundle = this.host.blobs.read(record.model);
      if (unreadable !== undefined || bundle === undefined || (config.data.source === 'central' && data === undefined)) {
        this.finish(job, 'failed', unreadable ?? 'its model or data blob is missing from the state store');
        continue;
      }
      job.resumeFrom = resumeFrom;
      resumed++;
      this.host.log.info({ job: record.id, step: cp?.step ?? 0 }, 'training job resumes');
      this.start(job, bundle);
    }
    return { resumed, total: records.length };
  }

  private readData(hash: string | undefined): CentralData | undefined {
    if (hash === undefined) return undefined;
    const bytes = this.host.blobs.read(hash);
    return bytes === undefined ? undefined : unpackCentralData(bytes);
  }

  private start(job: TrainingJob, bundle: Uint8Array): void {
    void this.load(job, bundle).catch((e: unknown) => this.finish(job, 'failed', e instanceof Error ? e.message : String(e)));
  }

  /** Loads the model on the coordinator (evaluation, serving), checks it against the task and data, then starts. */
  private async load(job: TrainingJob, bundle: Uint8Array): Promise<void> {
    const { TrainModel } = await import('./evaluator.js');
    const model = await TrainModel.load(bundle);
    if (job.state !== 'queued' || this.closed) {
      model.dispose();
      return;
    }
    const { config } = job;
    const out = model.manifest.output.kind;
    if (config.task === 'classify' && out !== 'classes') throw new Error('the classify task needs a classifier model (output kind classes)');
    if (config.task === 'reward-pairs' && out !== 'reward') throw new Error('the reward-pairs task needs a reward model (output kind reward)');
    const input = model.manifest.input;
    if (input.kind === 'embedding') job.embedding = input.model;
    const dim = input.dim;
    for (const [what, d] of [['data', job.data], ['eval', job.evalData]] as const) {
      if (d === undefined) continue;
      if (d.dim !== dim) throw new Error(`${what}.dim: ${d.dim}, the model takes ${dim} features`);
      if (d.kind !== 'classify') continue;
      for (let i = 0; i < d.labels.length; i++) {
        if (d.labels[i]! >= model.classes) throw new Error(`${what}: label ${d.labels[i]} of row ${i} is not below the model's ${model.classes} classes`);
      }
    }
    job.model = model;
    this.tryStart(job);
    this.pump();
  }

  /** Builds the driver once the model is loaded and (worker-held data) the client count is known. */
  private tryStart(job: TrainingJob): void {
    if (job.driver !== undefined || job.state !== 'queued' || job.model === undefined) return;
    const { config } = job;
    const dataset = job.datasetName;
    if (dataset !== undefined && job.numClients === 0) {
      // No data.clients: the clients are the workers holding the dataset when training starts.
      const holders = this.host.registry.list().filter((w) => eligible(w, dataset, job.embedding)).length;
      if (holders === 0) return;
      job.numClients = holders;
    }
    const numClients = job.numClients;
    const pipeline = trainPipelineSpec(config);
    const participation = (config.participation ?? null) as ParticipationSetting | null;
    const seed = config.data.source === 'central' ? config.data.partition.seed : config.data.seed;
    job.adversary = config.adversary === undefined ? null : new Adversary({ ...config.adversary, seed });
    const initial = job.model.initialWeights;
    const resume = job.resumeFrom;
    job.resumeFrom = undefined;
    if (config.mode === 'sync') {
      const c = { numClients, clientsPerRound: Math.min(config.clientsPerRound, numClients), rounds: config.rounds, participation, seed, pipeline, adversary: job.adversary };
      job.driver = { kind: 'sync', d: resume?.snapshot.kind === 'sync' ? SyncDriver.restore(c, resume.snapshot) : new SyncDriver(c, initial) };
    } else {
      const c = {
        numClients, concurrency: Math.min(config.concurrency, numClients), buffer: config.buffer, staleness: config.staleness, maxStaleness: config.maxStaleness,
        steps: config.steps, seed, participation, pipeline, adversary: job.adversary,
      };
      job.driver = { kind: 'async', d: resume?.snapshot.kind === 'async' ? AsyncDriver.restore(c, resume.snapshot) : new AsyncDriver(c, initial) };
    }
    job.finalWeights = undefined;
    job.metrics = job.metrics.filter((m) => m.step <= (job.driver?.d.version ?? 0));
    job.state = 'running';
    job.startedAt = this.now() - (resume?.elapsed ?? 0) * 1000;
    this.host.store.updateTrainJob({ id: job.id, state: 'running' });
    this.bindWorkers(job);
    job.wake();
    this.advance(job);
  }

  /**
   * Worker-held data: gives each newly seen holder of the dataset the lowest free client id, while any is free. New
   * holders are taken in name order, not connection order, so the workers present when the job starts are clients
   * 0, 1, … by `--name` whatever order they connected in.
   */
  private bindWorkers(job: TrainingJob): void {
    const dataset = job.datasetName;
    if (dataset === undefined || job.bindings.size >= job.numClients) return;
    const fresh = this.host.registry.list().filter((w) => eligible(w, dataset, job.embedding) && !job.bindings.has(w.name));
    if (fresh.length === 0) return;
    fresh.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const used = new Set(job.bindings.values());
    let client = 0;
    for (const w of fresh) {
      if (job.bindings.size >= job.numClients) return;
      if (job.bindings.has(w.name)) continue; // two connections under one name: the first binds
      while (used.has(client)) client++;
      used.add(client);
      job.bindings.set(w.name, client);
      this.host.log.info({ job: job.id, worker: w.name, client }, 'worker dataset joins the training job as a client');
    }
  }

  /** The connected workers that train the clients of a worker-data job: client → worker id (one pass over the workers). */
  private clientWorkers(job: TrainingJob): Map<number, string> {
    const dataset = job.datasetName;
    const out = new Map<number, string>();
    for (const w of this.host.registry.list()) {
      const client = job.bindings.get(w.name);
      if (client !== undefined && !out.has(client) && eligible(w, dataset, job.embedding)) out.set(client, w.id);
    }
    return out;
  }

  /** Which clients can be trained now: central data needs any train worker; worker data needs the client's own. */
  private reachability(job: TrainingJob): { any: boolean; reachable: (client: number) => boolean } {
    if (job.datasetName === undefined) {
      const any = this.host.registry.list().some((w) => eligible(w, undefined));
      return { any, reachable: () => any };
    }
    const connected = new Set<number>();
    for (const w of this.host.registry.list()) {
      const c = job.bindings.get(w.name);
      if (c !== undefined && eligible(w, job.datasetName, job.embedding)) connected.add(c);
    }
    return { any: connected.size > 0, reachable: (c) => connected.has(c) };
  }

  /**
   * Opens the next round (sync) or tops up the shards in flight (async); waits while no client can train, and while
   * a step is being evaluated (record).
   */
  private advance(job: TrainingJob): void {
    const dr = job.driver;
    if (dr === undefined || job.state !== 'running' || this.closed || job.evaluating !== undefined) return;
    if (dr.d.done) {
      this.finish(job, 'done');
      return;
    }
    if (dr.kind === 'sync' && dr.d.roundOpen) return;
    // Reachability walks every worker: only when the async driver has room for more shards.
    if (dr.kind === 'async' && !dr.d.wantsMore) return;
    const { any, reachable } = this.reachability(job);
    if (!any) return;
    if (dr.kind === 'sync') {
      const orders = dr.d.startRound(this.now(), reachable);
      job.queue = orders.map((order) => ({ order, attempt: 1 }));
      job.outstanding = new Set(orders.map((o) => o.client));
      if (orders.length === 0) {
        setImmediate(() => this.closeRound(job));
        return;
      }
      job.roundTimer = setTimeout(() => this.closeRound(job), job.config.mode === 'sync' ? job.config.roundDeadlineMs : 0);
    } else {
      job.queue.push(...dr.d.fill(this.now(), reachable).map((order) => ({ order, attempt: 1 })));
    }
  }

  private closeRound(job: TrainingJob): void {
    const dr = job.driver;
    if (dr?.kind !== 'sync' || !dr.d.roundOpen || job.state !== 'running' || this.closed) return;
    if (job.roundTimer !== undefined) clearTimeout(job.roundTimer);
    job.roundTimer = undefined;
    job.queue = [];
    job.outstanding.clear();
    const r = dr.d.closeRound(this.now());
    if (r.skipped !== undefined) this.host.log.warn({ job: job.id, step: r.metrics.step, why: r.skipped }, 'round left the model unchanged');
    this.record(job, r.metrics, r.weights);
    this.advance(job);
    this.pump();
  }

  private evaluate(job: TrainingJob, weights: Float32Array): Promise<EvalResult> | null {
    const d = job.evalData;
    const model = job.model;
    if (d === undefined || model === undefined) return null;
    return d.kind === 'pairs' ? model.evaluatePairs(weights, d.chosen, d.rejected) : model.evaluate(weights, d.rows, d.labels);
  }

  /**
   * A step's metrics line, with its evaluation when one is due. The evaluation runs off the event loop (evaluator.ts)
   * and the job waits for it, as it did when evaluation blocked the loop: the line (then the step's checkpoint) is
   * written when it ends, no round opens and no shard is dispatched meanwhile (advance), and async results that
   * arrive are held and applied in order afterwards (result, resume). So lines stay in step order, a checkpoint never
   * holds a driver ahead of its metrics, and a round's evaluation is of that round's weights. If the job ends
   * (cancel, a failure) or the coordinator shuts down during an evaluation, its result is dropped and the step's line
   * is written without it (settle); a failed evaluation is logged and its line written without it too.
   */
  private record(job: TrainingJob, m: StepMetrics, weights: Float32Array): void {
    const ev = job.config.eval;
    const line: TrainMetricLine = {
      step: m.step,
      time: (m.time - job.startedAt) / 1000,
      loss: m.loss,
      accuracy: null,
      eval_loss: null,
      participants: m.participants,
      staleness_mean: m.staleness_mean,
    };
    const evaluation = ev !== undefined && (m.step % ev.every === 0 || m.step === job.total) ? this.evaluate(job, weights) : null;
    if (evaluation === null) {
      this.recorded(job, line);
      return;
    }
    const pending = { line };
    job.evaluating = pending;
    const done = (r: EvalResult | undefined, err?: unknown): void => {
      if (job.evaluating !== pending) return; // settled: the job ended or the service closed meanwhile
      job.evaluating = undefined;
      if (err !== undefined) this.host.log.error({ job: job.id, step: m.step, err: err instanceof Error ? err.message : String(err) }, 'cannot evaluate the model');
      line.accuracy = r?.accuracy ?? null;
      line.eval_loss = r?.loss ?? null;
      try {
        this.recorded(job, line);
        this.resume(job);
      } catch (e) {
        this.finish(job, 'failed', e instanceof Error ? e.message : String(e));
      }
    };
    evaluation.then((r) => done(r), (e: unknown) => done(undefined, e ?? 'evaluation failed'));
  }

  private recorded(job: TrainingJob, line: TrainMetricLine): void {
    job.metrics.push(line);
    this.host.log.info({ job: job.id, step: line.step, loss: line.loss, accuracy: line.accuracy ?? undefined }, 'training step');
    if (line.step % job.config.checkpointEvery === 0) this.checkpoint(job);
    job.wake();
  }

  /** After a step's evaluation: the async results held meanwhile (until one steps into another evaluation), then on. */
  private resume(job: TrainingJob): void {
    const dr = job.driver;
    while (dr?.kind === 'async' && job.evaluating === undefined && job.state === 'running' && !this.closed) {
      const next = job.held.shift();
      if (next === undefined) break;
      const why = this.applyArrival(job, dr.d, next.arrival, next.now);
      if (why !== null) this.host.log.debug({ job: job.id, client: next.arrival.client, reason: why }, 'training result ignored');
    }
    this.advance(job);
    this.pump();
  }

  /** An async arrival into the driver: a refusal abandons the client, a step is recorded. Returns the refusal. */
  private applyArrival(job: TrainingJob, d: AsyncDriver, arrival: ClientArrival, now: number): string | null {
    const r = d.accept(arrival, now);
    if (r.status === 'refused') d.abandon(arrival.client);
    else if (r.status === 'stepped') this.record(job, r.metrics, r.weights);
    return r.status === 'refused' ? r.reason : null;
  }

  /** The job ends or the service closes during a step's evaluation: its line is written without it; held results are dropped. */
  private settle(job: TrainingJob): void {
    job.held = [];
    const pending = job.evaluating;
    if (pending === undefined) return;
    job.evaluating = undefined;
    job.metrics.push(pending.line);
  }

  /** Persists the job's training state and metrics (the latest checkpoint replaces the previous one). */
  private checkpoint(job: TrainingJob): void {
    const dr = job.driver;
    if (dr === undefined || job.checkpointedStep === dr.d.version) return;
    const { weights, momenta, ...rest } = dr.d.binarySnapshot();
    const vectors = [weights, ...momenta.map(([, v]) => v)];
    const doubles: Float64Array[] = [];
    const header: CheckpointHeader = {
      snapshot: outlineVectors(rest, vectors, doubles) as Record<string, unknown>,
      momentumClients: momenta.map(([c]) => c),
      numClients: job.numClients,
      bindings: [...job.bindings],
      elapsed: (this.now() - job.startedAt) / 1000,
    };
    try {
      this.host.store.saveTrainCheckpoint(job.id, {
        step: dr.d.version,
        state: packState({ header, vectors, doubles }),
        metrics: job.metrics.map((l) => `${JSON.stringify(l)}\n`).join(''),
      });
      job.checkpointedStep = dr.d.version;
    } catch (e) {
      this.host.log.error({ job: job.id, err: e instanceof Error ? e.message : String(e) }, 'cannot write a training checkpoint');
    }
  }

  private finish(job: TrainingJob, state: 'done' | 'failed' | 'cancelled', error?: string): void {
    if (isTerminal(job.state)) return;
    this.settle(job);
    job.state = state;
    job.finishedAt = this.now();
    if (error !== undefined) job.error = error;
    if (job.roundTimer !== undefined) clearTimeout(job.roundTimer);
    job.roundTimer = undefined;
    job.queue = [];
    this.checkpoint(job);
    try {
      this.host.store.updateTrainJob({ id: job.id, state, finishedAt: job.finishedAt, ...(error === undefined ? {} : { error }) });
    } catch (e) {
      this.host.log.error({ job: job.id, err: e instanceof Error ? e.message : String(e) }, 'cannot record the training job state');
    }
    const workers = new Set<string>();
    for (const [leaseId, l] of this.leases) {
      if (l.jobId !== job.id) continue;
      clearTimeout(l.timer);
      this.leases.delete(leaseId);
      workers.add(l.workerId);
    }
    for (const w of workers) {
      try {
        this.host.sink()?.dropJob(w, job.id);
      } catch (e) {
        this.host.log.warn({ worker: w, err: String(e) }, 'cannot send job-control');
      }
    }
    job.release();
    this.host.log.info({ job: job.id, state, error }, 'training job ended');
    job.wake();
    this.pump();
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  cancel(id: string): boolean {
    const job = this.jobs.get(id);
    if (job === undefined || isTerminal(job.state)) return false;
    this.finish(job, 'cancelled');
    return true;
  }

  status(id: string): TrainJobStatus | undefined {
    const job = this.jobs.get(id);
    return job === undefined ? undefined : this.statusOf(job);
  }

  list(): TrainJobStatus[] {
    return [...this.jobs.values()].map((j) => this.statusOf(j));
  }

  private statusOf(job: TrainingJob): TrainJobStatus {
    const s: TrainJobStatus = {
      id: job.id, kind: 'train', state: job.state, progress: { done: job.done, total: job.total },
      createdAt: new Date(job.createdAt).toISOString(), model: job.modelHash, mode: job.config.mode, clients: job.numClients,
    };
    if (job.finishedAt !== undefined) s.finishedAt = new Date(job.finishedAt).toISOString();
    if (job.error !== undefined) s.error = job.error;
    return s;
  }

  /** metrics.jsonl lines from `from` on, and whether the job has ended. */
  metrics(id: string, from: number): { lines: TrainMetricLine[]; ended: boolean } | undefined {
    const job = this.jobs.get(id);
    if (job === undefined) return undefined;
    return { lines: job.metrics.slice(from), ended: isTerminal(job.state) };
  }

  /** Resolves at the job's next step or state change (or when the service closes). */
  waitForChange(id: string): Promise<void> {
    const job = this.jobs.get(id);
    if (job === undefined || this.closed || isTerminal(job.state)) return Promise.resolve();
    return new Promise((resolve) => job.waiters.add(resolve));
  }

  /** The packed model bundle with the job's current weights (the initial bundle before training starts). */
  async modelBundle(id: string): Promise<Uint8Array | undefined> {
    const job = this.jobs.get(id);
    if (job === undefined) return undefined;
    const weights = job.driver?.d.weights ?? job.finalWeights;
    if (weights === undefined) return this.host.blobs.read(job.modelHash);
    const model = job.model;
    if (model === undefined) {
      // An ended job (its model was disposed) or one still loading: load the model for this call only, so ended
      // jobs hold no model between requests.
      const bundle = this.host.blobs.read(job.modelHash);
      if (bundle === undefined) return undefined;
      const { TrainModel } = await import('./evaluator.js');
      const temporary = await TrainModel.load(bundle);
      try {
        return await temporary.bundleWith(weights);
      } finally {
        temporary.dispose();
      }
    }
    job.modelUsers++;
    try {
      return await model.bundleWith(weights);
    } finally {
      job.modelUsers--;
      // The job ended while this call used the model: the last user disposes it.
      if (job.modelUsers === 0 && isTerminal(job.state) && job.model === model) job.disposeModel();
    }
  }

  // ---- leases --------------------------------------------------------------------------------

  /** Training leases a worker holds. */
  held(workerId: string): number {
    return this.leases.held(workerId);
  }

  /**
   * Starts jobs that can start, binds new dataset holders, opens rounds that waited for workers, and sends queued
   * orders within the workers' free credit (score and train leases together). Re-entrant calls are folded into one.
   */
  pump(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.pumpOnce();
      } while (this.pumpAgain && !this.closed);
    } finally {
      this.pumping = false;
    }
  }

  private pumpOnce(): void {
    const sink = this.host.sink();
    if (sink === undefined) return;
    for (const job of this.jobs.values()) {
      if (job.state === 'queued') this.tryStart(job);
      if (job.state !== 'running') continue;
      this.bindWorkers(job);
      this.advance(job);
    }
    // Everything below costs a pass over the workers: only when some order is waiting for credit.
    let waiting = false;
    for (const job of this.jobs.values()) if (job.state === 'running' && job.queue.length > 0) waiting = true;
    if (!waiting) return;
    const free = new Map<string, number>();
    for (const w of this.host.registry.list()) {
      if (!eligible(w, undefined)) continue;
      const load = this.host.scheduler.workerLoad(w.id);
      if (load === undefined) continue;
      const n = load.credit - load.inFlight - this.held(w.id);
      if (n > 0) free.set(w.id, n);
    }
    const take = (w: string): void => {
      const n = free.get(w) ?? 0;
      if (n <= 1) free.delete(w);
      else free.set(w, n - 1);
    };
    for (const job of [...this.jobs.values()]) {
      if (job.state !== 'running') continue;
      if (job.datasetName === undefined) {
        while (job.queue.length > 0 && free.size > 0 && job.state === 'running') {
          // The worker with the most free credit, so shards spread over the pool.
          let best: string | undefined;
          let most = 0;
          for (const [w, n] of free) {
            if (n > most) {
              best = w;
              most = n;
            }
          }
          if (best === undefined) break;
          take(best);
          const q = job.queue.shift() as { order: DispatchOrder; attempt: number };
          this.send(job, q.order, q.attempt, best, sink);
        }
        continue;
      }
      // Worker-held data: each order goes to its client's own worker; one that is gone misses its turn.
      if (job.queue.length === 0) continue;
      const workerOf = this.clientWorkers(job);
      const later: TrainingJob['queue'] = [];
      const missed: DispatchOrder[] = [];
      for (const q of job.queue) {
        const w = workerOf.get(q.order.client);
        if (w === undefined) missed.push(q.order);
        else if ((free.get(w) ?? 0) > 0) {
          take(w);
          this.send(job, q.order, q.attempt, w, sink);
        } else later.push(q);
      }
      if (job.state === 'running') job.queue = later; // a failed send may have ended (and released) the job
      for (const order of missed) this.miss(job, order);
    }
  }

  private send(job: TrainingJob, order: DispatchOrder, attempt: number, workerId: string, sink: TrainingSink): void {
    if (job.state !== 'running') return;
    const leaseId = this.host.newLeaseId();
    const deadline = this.now() + this.host.leaseMs;
    const message: LeaseMessage = {
      type: 'lease', leaseId, shardId: `${job.id}.v${order.version}.c${order.client}`, jobId: job.id, deadline, attempt,
      task: {
        kind: 'train', modelHash: job.modelHash, modelVersion: order.version, client: order.client,
        weights: Tensor.float32(order.weights),
        ...(order.momentum === undefined ? {} : { momentum: Tensor.float32(order.momentum) }),
        local: job.config.local,
        data: job.leaseData(order.client),
        ...(job.adversary?.flipsLabels(order.client) === true ? { flipLabels: true } : {}),
      },
    };
    const timer = setTimeout(() => this.lost(leaseId, 'lease expired'), this.host.leaseMs + 1);
    timer.unref();
    this.leases.set(leaseId, { jobId: job.id, workerId, order, attempt, timer });
    try {
      sink.sendLease(workerId, message);
    } catch (e) {
      clearTimeout(timer);
      this.leases.delete(leaseId);
      this.finish(job, 'failed', `cannot send a train lease: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  owns(leaseId: string): boolean {
    return this.leases.has(leaseId);
  }

  /** A `result` for a training lease. Returns why it was ignored, or null. */
  result(workerId: string, m: Extract<Message, { type: 'result' }>): string | null {
    const lease = this.leases.get(m.leaseId);
    if (lease === undefined || lease.workerId !== workerId) return 'not a current training lease of this worker';
    clearTimeout(lease.timer);
    this.leases.delete(m.leaseId);
    const job = this.jobs.get(lease.jobId);
    const dr = job?.driver;
    if (job === undefined || dr === undefined || job.state !== 'running') return 'job not running';
    if (m.payload.kind !== 'update') {
      this.miss(job, lease.order);
      return 'a train lease needs an update payload';
    }
    const p = m.payload;
    const arrival: ClientArrival = {
      client: lease.order.client,
      baseVersion: p.baseVersion,
      update: p.update.data as Float32Array,
      ...(p.momentum === undefined ? {} : { momentum: p.momentum.data as Float32Array }),
      samples: p.samples,
      loss: p.loss,
    };
    const now = this.now();
    if (dr.kind === 'sync') {
      const why = dr.d.refusal(arrival);
      if (why !== null) {
        this.miss(job, lease.order);
        return why;
      }
      dr.d.accept(arrival, now);
      job.outstanding.delete(lease.order.client);
      if (job.outstanding.size === 0) this.closeRound(job);
      else this.pump();
      return null;
    }
    if (job.evaluating !== undefined) {
      // A step is being evaluated: the result waits (record), as it waited in the socket while evaluation blocked the loop.
      job.held.push({ arrival, now });
      this.pump();
      return null;
    }
    const why = this.applyArrival(job, dr.d, arrival, now);
    this.advance(job);
    this.pump();
    return why;
  }

  /**
   * A `failure` for a training lease: the client misses the round (sync) or is abandoned (async). A failure no retry
   * can fix (a bad model, a bad dataset) fails the job: retrying would loop (async) or "train" nothing (sync).
   */
  fail(workerId: string, leaseId: string, reason: string, retryable = true): boolean {
    const lease = this.leases.get(leaseId);
    if (lease === undefined || lease.workerId !== workerId) return false;
    this.host.log.warn({ job: lease.jobId, client: lease.order.client, reason, retryable }, 'train lease failed');
    this.drop(leaseId);
    const job = this.jobs.get(lease.jobId);
    if (job?.state !== 'running') return true;
    if (!retryable) this.finish(job, 'failed', `client ${lease.order.client} on worker ${this.host.registry.get(workerId)?.name ?? workerId}: ${reason}`);
    else this.miss(job, lease.order);
    return true;
  }

  /** Released leases (a draining worker): lost like an expiry. Returns the ids that are not training leases. */
  release(workerId: string, leaseIds: readonly string[]): string[] {
    const rest: string[] = [];
    for (const id of leaseIds) {
      const l = this.leases.get(id);
      if (l !== undefined && l.workerId === workerId) this.lost(id, 'released');
      else rest.push(id);
    }
    return rest;
  }

  removeWorker(workerId: string): void {
    for (const [id, l] of [...this.leases]) if (l.workerId === workerId) this.lost(id, 'worker disconnected');
    this.pump();
  }

  private drop(leaseId: string): TrainLease | undefined {
    const lease = this.leases.get(leaseId);
    if (lease === undefined) return undefined;
    clearTimeout(lease.timer);
    this.leases.delete(leaseId);
    return lease;
  }

  /**
   * A lease whose worker went away or ran out of time. A central client's shard of the open sync round is leased
   * again (another worker can train it); otherwise the client misses its turn.
   */
  private lost(leaseId: string, why: string): void {
    const lease = this.drop(leaseId);
    if (lease === undefined) return;
    const job = this.jobs.get(lease.jobId);
    if (job === undefined || job.state !== 'running') return;
    const dr = job.driver;
    if (dr?.kind === 'sync' && job.datasetName === undefined && dr.d.version === lease.order.version && dr.d.roundOpen && lease.attempt < MAX_ATTEMPTS && why !== 'lease expired') {
      job.queue.push({ order: lease.order, attempt: lease.attempt + 1 });
      this.pump();
      return;
    }
    this.miss(job, lease.order);
  }

  /** The client's shard will not arrive: it counts as absent from the round (sync) or frees its slot (async). */
  private miss(job: TrainingJob, order: DispatchOrder): void {
    const dr = job.driver;
    if (dr === undefined) return;
    if (dr.kind === 'sync') {
      if (dr.d.version !== order.version || !job.outstanding.delete(order.client)) return;
      if (job.outstanding.size === 0) this.closeRound(job);
      return;
    }
    dr.d.abandon(order.client);
    this.advance(job);
    this.pump();
  }

  /** Checkpoints running jobs (a restart resumes them) and stops all timers. */
  close(): void {
    if (this.closed) return;
    for (const job of this.jobs.values()) {
      if (job.state !== 'running') continue;
      this.settle(job);
      this.checkpoint(job);
    }
    this.closed = true;
    for (const l of this.leases.values()) clearTimeout(l.timer);
    this.leases.clear();
    for (const job of this.jobs.values()) {
      if (job.roundTimer !== undefined) clearTimeout(job.roundTimer);
      if (job.modelUsers === 0) job.disposeModel();
      job.wake();
    }
  }
}
