// Training jobs on the coordinator (issue 4): a TrainingJob owns a SyncDriver or AsyncDriver (the pure state
// machines) and the central rows; the TrainingService turns the drivers' DispatchOrders into `train` leases for
// workers whose hello listed 'train', within their credit, and feeds results, failures, expiries and disconnects
// back to the drivers. Round deadlines and lease expiries are timers here. The Pool's pump calls pump().
//
// Not persisted: a training job lives in this process only (rows, driver state, metrics); a restart loses it.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { trainPipelineSpec, type TrainConfig } from '../../shared/config/train.js';
import { partitionDirichlet, partitionIid } from '../../shared/data/partition.js';
import { Tensor, type LeaseMessage, type Message } from '../../shared/protocol/index.js';
import type { BlobStore } from '../blobs.js';
import type { Registry } from '../registry.js';
import type { Scheduler } from '../scheduler.js';
import { isTerminal, type JobState, type JobStatusBase } from '../store.js';
import { AsyncDriver } from './async-driver.js';
import type { CentralRows, TrainJobRequest } from './job-request.js';
import { SyncDriver } from './sync-driver.js';
import type { ClientArrival, DispatchOrder, ParticipationSetting, StepMetrics } from './types.js';
import type { TrainModel } from './evaluator.js';

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
  constructor(private readonly changed: (workerId: string) => void) {
    super();
  }

  override set(key: string, value: TrainLease): this {
    super.set(key, value);
    this.changed?.(value.workerId); // undefined while Map's constructor runs
    return this;
  }

  override delete(key: string): boolean {
    const lease = super.get(key);
    const removed = super.delete(key);
    if (lease !== undefined) this.changed(lease.workerId);
    return removed;
  }
}

interface TrainLease {
  jobId: string;
  workerId: string;
  client: number;
  version: number;
  timer: NodeJS.Timeout;
}

type Driver = { kind: 'sync'; d: SyncDriver } | { kind: 'async'; d: AsyncDriver };

class TrainingJob {
  state: JobState = 'queued';
  finishedAt: number | undefined;
  error: string | undefined;
  driver: Driver | undefined;
  model: TrainModel | undefined;
  readonly metrics: TrainMetricLine[] = [];
  /** Orders waiting for a worker with free credit. */
  queue: DispatchOrder[] = [];
  /** Sync: clients of the open round whose answer (update, failure, expiry) is still due. */
  outstanding = new Set<number>();
  roundTimer: NodeJS.Timeout | undefined;
  startedAt = 0;
  waiters = new Set<() => void>();

  constructor(
    readonly id: string,
    readonly config: TrainConfig,
    readonly modelHash: string,
    readonly data: CentralRows,
    readonly evalRows: CentralRows | undefined,
    readonly parts: number[][],
    readonly createdAt: number,
  ) {}

  get total(): number {
    return this.config.mode === 'sync' ? this.config.rounds : this.config.steps;
  }

  get done(): number {
    return this.driver?.d.version ?? 0;
  }

  /** The rows and labels of a virtual client. */
  clientData(client: number): { rows: Float32Array; labels: Int32Array } {
    const idx = this.parts[client] ?? [];
    const dim = this.data.dim;
    const rows = new Float32Array(idx.length * dim);
    const labels = new Int32Array(idx.length);
    idx.forEach((r, i) => {
      rows.set(this.data.rows.subarray(r * dim, (r + 1) * dim), i * dim);
      labels[i] = this.data.labels[r]!;
    });
    return { rows, labels };
  }

  wake(): void {
    const w = this.waiters;
    this.waiters = new Set();
    for (const resolve of w) resolve();
  }
}

export class TrainingService {
  private readonly jobs = new Map<string, TrainingJob>();
  /** Every change tells the score scheduler how many train leases the worker holds, so the two together never exceed its credit. */
  private readonly leases = new LoadTrackingLeases((workerId) => this.host.scheduler.setExternalLoad(workerId, this.held(workerId)));
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly host: TrainingHost) {
    this.now = host.now ?? Date.now;
  }

  // ---- jobs ----------------------------------------------------------------------------------

  submit(request: TrainJobRequest): TrainJobStatus {
    if (this.closed) throw new TrainSubmitError('the coordinator is shutting down');
    const bundle = this.host.blobs.read(request.model);
    if (bundle === undefined) throw new TrainSubmitError(`model: unknown blob ${request.model}; upload it first (PUT /api/blobs/${request.model})`);
    const { config, data } = request;
    if (config.data.source !== 'central') throw new TrainSubmitError("config.data.source: only 'central' data is supported");
    const part = config.data.partition;
    let numClasses = 0;
    for (const l of data.labels) numClasses = Math.max(numClasses, l + 1);
    const parts = part.kind === 'iid' ? partitionIid(data.n, part.clients, part.seed) : partitionDirichlet(data.labels, numClasses, part.clients, part.alpha ?? 0.3, part.seed);
    const id = `t${this.now().toString(36)}${randomBytes(4).toString('hex')}`;
    const job = new TrainingJob(id, config, request.model, data, request.eval, parts, this.now());
    this.jobs.set(id, job);
    this.host.log.info({ job: id, mode: config.mode, clients: part.clients, rows: data.n }, 'training job submitted');
    void this.start(job, bundle).catch((e: unknown) => this.finish(job, 'failed', e instanceof Error ? e.message : String(e)));
    return this.statusOf(job);
  }

  private async start(job: TrainingJob, bundle: Uint8Array): Promise<void> {
    const { TrainModel } = await import('./evaluator.js');
    const model = await TrainModel.load(bundle);
    if (job.state !== 'queued') {
      model.dispose();
      return;
    }
    const { config } = job;
    if (model.manifest.output.kind !== 'classes') throw new Error('the classify task needs a classifier model (output kind classes)');
    if (model.manifest.input.dim !== job.data.dim) throw new Error(`data.dim: ${job.data.dim}, the model takes ${model.manifest.input.dim} features`);
    const classes = model.classes;
    for (const rows of [job.data, job.evalRows]) {
      if (rows === undefined) continue;
      for (let i = 0; i < rows.labels.length; i++) {
        if (rows.labels[i]! >= classes) throw new Error(`label ${rows.labels[i]} of row ${i} is not below the model's ${classes} classes`);
      }
    }
    job.model = model;
    const pipeline = trainPipelineSpec(config);
    const participation = (config.participation ?? null) as ParticipationSetting | null;
    const numClients = job.parts.length;
    const seed = config.data.source === 'central' ? config.data.partition.seed : 1;
    if (config.mode === 'sync') {
      job.driver = {
        kind: 'sync',
        d: new SyncDriver({ numClients, clientsPerRound: config.clientsPerRound, rounds: config.rounds, participation, seed, pipeline }, model.initialWeights),
      };
    } else {
      job.driver = {
        kind: 'async',
        d: new AsyncDriver(
          { numClients, concurrency: config.concurrency, buffer: config.buffer, staleness: config.staleness, maxStaleness: config.maxStaleness, steps: config.steps, seed, participation, pipeline },
          model.initialWeights,
        ),
      };
    }
    job.state = 'running';
    job.startedAt = this.now();
    job.wake();
    this.advance(job);
    this.pump();
  }

  /** Opens the next round (sync) or tops up the shards in flight (async). */
  private advance(job: TrainingJob): void {
    const dr = job.driver;
    if (dr === undefined || job.state !== 'running') return;
    if (dr.d.done) {
      this.finish(job, 'done');
      return;
    }
    if (dr.kind === 'sync') {
      if (dr.d.roundOpen) return;
      const orders = dr.d.startRound(this.now());
      job.queue = orders;
      job.outstanding = new Set(orders.map((o) => o.client));
      if (orders.length === 0) {
        setImmediate(() => this.closeRound(job));
        return;
      }
      job.roundTimer = setTimeout(() => this.closeRound(job), job.config.mode === 'sync' ? job.config.roundDeadlineMs : 0);
    } else {
      job.queue.push(...dr.d.fill(this.now()));
    }
  }

  private closeRound(job: TrainingJob): void {
    const dr = job.driver;
    if (dr?.kind !== 'sync' || !dr.d.roundOpen || job.state !== 'running') return;
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

  private record(job: TrainingJob, m: StepMetrics, weights: Float32Array): void {
    let accuracy: number | null = null;
    let evalLoss: number | null = null;
    const ev = job.config.eval;
    if (ev !== undefined && job.evalRows !== undefined && job.model !== undefined && (m.step % ev.every === 0 || m.step === job.total)) {
      const r = job.model.evaluate(weights, job.evalRows.rows, job.evalRows.labels);
      accuracy = r.accuracy;
      evalLoss = r.loss;
    }
    job.metrics.push({
      step: m.step,
      time: (m.time - job.startedAt) / 1000,
      loss: m.loss,
      accuracy,
      eval_loss: evalLoss,
      participants: m.participants,
      staleness_mean: m.staleness_mean,
    });
    this.host.log.info({ job: job.id, step: m.step, loss: m.loss, accuracy }, 'training step');
    job.wake();
  }

  private finish(job: TrainingJob, state: 'done' | 'failed' | 'cancelled', error?: string): void {
    if (isTerminal(job.state)) return;
    job.state = state;
    job.finishedAt = this.now();
    if (error !== undefined) job.error = error;
    if (job.roundTimer !== undefined) clearTimeout(job.roundTimer);
    job.roundTimer = undefined;
    job.queue = [];
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
      createdAt: new Date(job.createdAt).toISOString(), model: job.modelHash, mode: job.config.mode, clients: job.parts.length,
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
    if (job.model === undefined || job.driver === undefined) return this.host.blobs.read(job.modelHash);
    return job.model.bundleWith(job.driver.d.weights);
  }

  // ---- leases --------------------------------------------------------------------------------

  /** Training leases a worker holds. */
  held(workerId: string): number {
    let n = 0;
    for (const l of this.leases.values()) if (l.workerId === workerId) n++;
    return n;
  }

  /** Sends queued orders to workers that run 'train' and have free credit (score leases and train leases together). */
  pump(): void {
    if (this.closed) return;
    const sink = this.host.sink();
    if (sink === undefined) return;
    const free = new Map<string, number>();
    for (const w of this.host.registry.list()) {
      if (w.draining || !w.capabilities.tasks.includes('train')) continue;
      const load = this.host.scheduler.workerLoad(w.id);
      if (load === undefined) continue;
      const n = load.credit - load.inFlight - this.held(w.id);
      if (n > 0) free.set(w.id, n);
    }
    for (const job of this.jobs.values()) {
      if (job.state !== 'running') continue;
      while (job.queue.length > 0 && free.size > 0) {
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
        if (most <= 1) free.delete(best);
        else free.set(best, most - 1);
        const order = job.queue.shift() as DispatchOrder;
        this.send(job, order, best, sink);
      }
    }
  }

  private send(job: TrainingJob, order: DispatchOrder, workerId: string, sink: TrainingSink): void {
    const leaseId = this.host.newLeaseId();
    const deadline = this.now() + this.host.leaseMs;
    const { rows, labels } = job.clientData(order.client);
    const dim = job.data.dim;
    const message: LeaseMessage = {
      type: 'lease', leaseId, shardId: `${job.id}.v${order.version}.c${order.client}`, jobId: job.id, deadline, attempt: 1,
      task: {
        kind: 'train', modelHash: job.modelHash, modelVersion: order.version, client: order.client,
        weights: Tensor.float32(order.weights),
        ...(order.momentum === undefined ? {} : { momentum: Tensor.float32(order.momentum) }),
        local: job.config.local,
        data: { source: 'central', rows: Tensor.float32(rows, [labels.length, dim]), labels: Tensor.int32(labels) },
      },
    };
    const timer = setTimeout(() => this.lost(leaseId, 'lease expired'), this.host.leaseMs + 1);
    timer.unref();
    this.leases.set(leaseId, { jobId: job.id, workerId, client: order.client, version: order.version, timer });
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
      this.miss(job, lease);
      return 'a train lease needs an update payload';
    }
    const p = m.payload;
    const arrival: ClientArrival = {
      client: lease.client,
      baseVersion: p.baseVersion,
      update: p.update.data as Float32Array,
      ...(p.momentum === undefined ? {} : { momentum: p.momentum.data as Float32Array }),
      samples: p.samples,
      loss: p.loss,
    };
    const now = this.now();
    if (dr.kind === 'sync') {
      const why = dr.d.refusal(arrival);
      if (why !== null) return why;
      dr.d.accept(arrival, now);
      job.outstanding.delete(lease.client);
      if (job.outstanding.size === 0) this.closeRound(job);
      else this.pump();
      return null;
    }
    const r = dr.d.accept(arrival, now);
    if (r.status === 'refused') {
      dr.d.abandon(lease.client);
    } else if (r.status === 'stepped') {
      this.record(job, r.metrics, r.weights);
    }
    this.advance(job);
    this.pump();
    return r.status === 'refused' ? r.reason : null;
  }

  /** A `failure` for a training lease: the client misses the round (sync) or is abandoned (async). */
  fail(workerId: string, leaseId: string, reason: string): boolean {
    const lease = this.leases.get(leaseId);
    if (lease === undefined || lease.workerId !== workerId) return false;
    this.host.log.warn({ job: lease.jobId, client: lease.client, reason }, 'train lease failed');
    this.lost(leaseId, reason);
    return true;
  }

  /** Released leases (a draining worker): lost like failures. Returns the ids that are not training leases. */
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
  }

  private lost(leaseId: string, _why: string): void {
    const lease = this.leases.get(leaseId);
    if (lease === undefined) return;
    clearTimeout(lease.timer);
    this.leases.delete(leaseId);
    const job = this.jobs.get(lease.jobId);
    if (job === undefined || job.state !== 'running') return;
    this.miss(job, lease);
  }

  private miss(job: TrainingJob, lease: TrainLease): void {
    const dr = job.driver;
    if (dr === undefined) return;
    if (dr.kind === 'sync') {
      if (dr.d.version !== lease.version) return;
      job.outstanding.delete(lease.client);
      if (job.outstanding.size === 0) this.closeRound(job);
      return;
    }
    dr.d.abandon(lease.client);
    this.advance(job);
    this.pump();
  }

  close(): void {
    this.closed = true;
    for (const l of this.leases.values()) clearTimeout(l.timer);
    this.leases.clear();
    for (const job of this.jobs.values()) {
      if (job.roundTimer !== undefined) clearTimeout(job.roundTimer);
      job.model?.dispose();
      job.wake();
    }
  }
}
