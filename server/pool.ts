import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { packedEmbeddingInput } from '../shared/model/embedding-input.js';
import { ProtocolError, Tensor, assertTensor, scorerOutputOf, scorerWidth, type Capabilities, type FailureMessage, type LeaseMessage, type ResultMessage, type ScoreItem } from '../shared/protocol/index.js';
import { BlobStore } from './blobs.js';
import { largestShardBytes, splitShards, type JobColumns, type JobRequest } from './jobs.js';
import { Registry } from './registry.js';
import { Scheduler, type Grant, type JobProgress, type JobStateEvent, type ResultOutcome, type ShardDoneEvent } from './scheduler.js';
import { TrainingService, type TrainJobStatus } from './training/training-job.js';
import { isTerminal, JOB_STATES, type JobRecord, type JobSpec, type JobState, type JobStatusBase, type ShardResult, type Store, type JobUpdate, type StoredShardResult } from './store.js';

/** Where the pool sends what the scheduler decides; implemented by the socket layer. */
export interface LeaseSink {
  /** Sends a lease; throws if it cannot (e.g. the frame would be too large). */
  sendLease(workerId: string, message: LeaseMessage): void;
  /** Tells a worker to drop its leases of a job that ended (job-control cancel). */
  dropJob(workerId: string, jobId: string): void;
}

export interface PoolOptions {
  store: Store;
  leaseMs: number;
  logger: Logger;
  maxFrameBytes: number;
  now?: () => number;
  speculative?: boolean;
  maxLosses?: number;
}

/**
 * The key a worker must offer to take a job's shards: the scorer's output and model for scorer jobs,
 * `embedding:MODEL` for a bundle whose head reads that embedding model's vectors, '' for other bundles.
 */
export function jobKey(spec: Pick<JobSpec, 'scorer' | 'embedding'>): string {
  if (spec.scorer !== undefined) return `${spec.scorer.output}:${spec.scorer.model}`;
  return spec.embedding === undefined ? '' : `embedding:${spec.embedding}`;
}

/** Why a job no connected worker can take waits (GET /api/jobs/:id `waiting`), or undefined for plain bundle jobs. */
function waitingFor(spec: JobSpec): string | undefined {
  if (spec.scorer !== undefined) return `no connected worker serves ${spec.scorer.output === 'logprobs' ? 'log-probs of' : 'scorer'} ${spec.scorer.model}`;
  if (spec.embedding !== undefined) return `no connected worker serves embeddings of ${spec.embedding}`;
  return undefined;
}

/** The job keys a worker serves: bundle jobs if it scores at all, and its inference server's model. */
export function workerOffers(capabilities: Capabilities): string[] {
  if (!capabilities.tasks.includes('score')) return [];
  const offers = [''];
  const scorer = capabilities.scorer;
  if (scorer !== undefined) offers.push(`${scorerOutputOf(scorer.api)}:${scorer.model}`);
  return offers;
}

/** Values per item in a job's results. */
function jobWidth(spec: JobSpec): number {
  return spec.scorer === undefined ? 1 : scorerWidth(spec.scorer.output);
}

/** The public view of a job (GET /api/jobs/:id). */
export interface ScoreJobStatus extends JobStatusBase {
  kind: 'score';
  /** Jobs scored by inference servers: the model they must serve and what they compute. */
  scorer?: { model: string; output: 'reward' | 'logprobs' };
  /** A bundle over embeddings: the embedding model its workers' inference servers must serve. */
  embedding?: string;
  /** Set while the job needs a kind of worker that is not connected: why it waits. */
  waiting?: string;
  shardSize: number;
  redundancy: number;
  batchSize: number;
  shards: { done: number; total: number };
  /** Shards whose redundant results disagreed (redundancy > 1). */
  disagreements: number;
}

export class SubmitError extends Error {}

interface JobEntry {
  record: JobRecord;
  /** Progress of a job the scheduler does not hold (restored in a terminal state). */
  frozen?: JobProgress;
}

function progressFromDone(spec: JobSpec, state: JobState, done: readonly number[]): JobProgress {
  const totalShards = Math.ceil(spec.items / spec.shardSize);
  const size = (i: number): number => Math.min(spec.shardSize, spec.items - i * spec.shardSize);
  let doneItems = 0;
  for (const i of done) doneItems += size(i);
  let prefix = 0;
  let prefixItems = 0;
  while (prefix < done.length && done[prefix] === prefix) prefixItems += size(prefix++);
  return { state, doneItems, totalItems: spec.items, doneShards: done.length, totalShards, prefixShards: prefix, prefixItems, leases: 0, disagreements: 0 };
}

/**
 * The coordinator's job service: wires the scheduler to the store (through a batching journal),
 * turns grants into lease messages, and lets HTTP readers wait for progress.
 */
export class Pool {
  readonly scheduler: Scheduler;
  readonly registry: Registry;
  readonly blobs: BlobStore;
  /** Training jobs (issue 4): their own leases, dispatched within the same worker credit. */
  readonly training: TrainingService;
  sink: LeaseSink | undefined;
  /** Called when a job ends in this process (for metrics). */
  onJobEnd: ((record: JobRecord) => void) | undefined;

  private readonly store: Store;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly maxFrameBytes: number;
  private readonly leaseMs: number;
  private readonly jobs = new Map<string, JobEntry>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private pendingResults: ShardResult[] = [];
  private pendingJobs: JobUpdate[] = [];
  private flushScheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private closed = false;
  private readonly bootId = randomBytes(3).toString('hex');
  private leaseSeq = 0;

  constructor(options: PoolOptions) {
    this.store = options.store;
    this.log = options.logger;
    this.now = options.now ?? Date.now;
    this.maxFrameBytes = options.maxFrameBytes;
    this.leaseMs = options.leaseMs;
    this.registry = new Registry(this.now);
    this.blobs = new BlobStore(options.store);
    const schedulerOptions = {
      leaseMs: options.leaseMs,
      now: this.now,
      // Lease ids carry a per-boot prefix so a result for a lease from before a restart is never mistaken for a new one.
      newLeaseId: () => `${this.bootId}.${++this.leaseSeq}`,
      listener: { shardDone: (e: ShardDoneEvent) => this.onShardDone(e), jobState: (e: JobStateEvent) => this.onJobState(e) },
      ...(options.speculative === undefined ? {} : { speculative: options.speculative }),
      ...(options.maxLosses === undefined ? {} : { maxLosses: options.maxLosses }),
    };
    this.scheduler = new Scheduler(schedulerOptions);
    this.training = new TrainingService({
      registry: this.registry,
      store: options.store,
      scheduler: this.scheduler,
      blobs: this.blobs,
      sink: () => this.sink,
      log: this.log,
      leaseMs: options.leaseMs,
      newLeaseId: () => `${this.bootId}.${++this.leaseSeq}`,
      now: this.now,
    });
  }

  /** Loads jobs from the store; unfinished ones go back to the queue with their done shards kept. */
  restore(): { resumed: number; total: number } {
    let resumed = 0;
    const records = this.store.listJobs();
    for (const record of records) {
      const entry: JobEntry = { record };
      this.jobs.set(record.id, entry);
      const done = this.store.doneShards(record.id);
      if (isTerminal(record.state)) {
        entry.frozen = progressFromDone(record.spec, record.state, done);
        continue;
      }
      resumed++;
      record.state = done.length > 0 ? 'running' : 'queued';
      const { spec } = record;
      this.scheduler.addJob({ id: record.id, items: spec.items, shardSize: spec.shardSize, redundancy: spec.redundancy, needs: jobKey(spec), width: jobWidth(spec), done });
    }
    this.flush();
    const training = this.training.restore();
    this.pump();
    return { resumed: resumed + training.resumed, total: records.length + training.total };
  }

  // ---- jobs ----------------------------------------------------------------------------------

  submit(request: JobRequest, form: JobSpec['form'], dim: number, columns: JobColumns): JobRecord {
    if (this.closed) throw new SubmitError('the coordinator is shutting down');
    let embedding: string | undefined;
    if (request.model !== undefined) {
      const bundle = this.blobs.read(request.model);
      if (bundle === undefined) throw new SubmitError(`model: unknown blob ${request.model}; upload it first (PUT /api/blobs/${request.model})`);
      // A head over embeddings needs a worker whose server serves its embedding model, and the text to embed.
      embedding = packedEmbeddingInput(bundle)?.model;
      if (embedding !== undefined && form !== 'text') {
        throw new SubmitError(`items: this model reads embeddings of ${embedding}, which its workers compute from text: send prompt and response, not features`);
      }
    }
    const shards = splitShards(columns, request.shardSize, dim);
    const biggest = largestShardBytes(shards);
    if (biggest > this.maxFrameBytes) {
      throw new SubmitError(`shardSize: a shard would need about ${biggest} bytes, more than the ${this.maxFrameBytes}-byte frame limit; use a smaller shardSize`);
    }
    const id = `j${this.now().toString(36)}${randomBytes(4).toString('hex')}`;
    const spec: JobSpec = {
      kind: 'score', ...(request.model === undefined ? {} : { model: request.model }), ...(request.scorer === undefined ? {} : { scorer: request.scorer }),
      ...(embedding === undefined ? {} : { embedding }),
      items: columns.ids.length, shardSize: request.shardSize, redundancy: request.redundancy, batchSize: request.batchSize, form, dim,
    };
    const record: JobRecord = { id, spec, state: 'queued', createdAt: this.now() };
    this.store.createJob(record, shards, request.meta);
    this.jobs.set(id, { record });
    this.scheduler.addJob({ id, items: spec.items, shardSize: spec.shardSize, redundancy: spec.redundancy, needs: jobKey(spec), width: jobWidth(spec) });
    this.log.info({ job: id, items: spec.items, shards: shards.length, redundancy: spec.redundancy }, 'job submitted');
    this.pump();
    return record;
  }

  cancel(id: string): boolean {
    const ok = this.scheduler.cancel(id);
    if (ok) this.pump();
    return ok;
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  progress(id: string): JobProgress | undefined {
    const entry = this.jobs.get(id);
    if (entry === undefined) return undefined;
    return entry.frozen ?? this.scheduler.progress(id);
  }

  status(id: string): ScoreJobStatus | undefined {
    const entry = this.jobs.get(id);
    const p = this.progress(id);
    if (entry === undefined || p === undefined) return undefined;
    const { record } = entry;
    const s: ScoreJobStatus = {
      id: record.id, kind: record.spec.kind, state: record.state, progress: { done: p.doneItems, total: p.totalItems },
      createdAt: new Date(record.createdAt).toISOString(), shardSize: record.spec.shardSize,
      redundancy: record.spec.redundancy, batchSize: record.spec.batchSize, shards: { done: p.doneShards, total: p.totalShards },
      disagreements: p.disagreements,
    };
    if (record.spec.model !== undefined) s.model = record.spec.model;
    if (record.spec.scorer !== undefined) s.scorer = record.spec.scorer;
    if (record.spec.embedding !== undefined) s.embedding = record.spec.embedding;
    const waiting = waitingFor(record.spec);
    if (waiting !== undefined && !isTerminal(record.state) && !this.scheduler.servable(jobKey(record.spec))) s.waiting = waiting;
    if (record.finishedAt !== undefined) s.finishedAt = new Date(record.finishedAt).toISOString();
    if (record.error !== undefined) s.error = record.error;
    return s;
  }

  /** The submitter's meta JSON stored with the job. */
  meta(id: string): unknown {
    return this.store.jobMeta(id);
  }

  list(): ScoreJobStatus[] {
    const out: ScoreJobStatus[] = [];
    for (const id of this.jobs.keys()) {
      const s = this.status(id);
      if (s !== undefined) out.push(s);
    }
    return out;
  }

  jobCounts(): Record<JobState, number> {
    const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
    for (const { record } of this.jobs.values()) counts[record.state]++;
    return counts;
  }

  /** Completed shards in [from, to), read back from the store (pending writes are flushed first). */
  readResults(id: string, from: number, to: number): StoredShardResult[] {
    this.flush();
    return this.store.readResults(id, from, to);
  }

  /** Resolves at the job's next completed shard or state change (or when the pool closes). */
  waitForChange(id: string): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      let set = this.waiters.get(id);
      if (set === undefined) this.waiters.set(id, (set = new Set()));
      set.add(resolve);
    });
  }

  // ---- every kind of job, for sockets and HTTP (they never branch on the kind) ----------------

  /** Any job's public view: a score job's or a training job's. */
  jobStatus(id: string): ScoreJobStatus | TrainJobStatus | undefined {
    return this.training.status(id) ?? this.status(id);
  }

  /** Every job, score jobs first, each in submission order. */
  allJobs(): (ScoreJobStatus | TrainJobStatus)[] {
    return [...this.list(), ...this.training.list()];
  }

  /** Cancels a queued or running job of any kind; false if it is unknown or already over. */
  cancelJob(id: string): boolean {
    return this.training.has(id) ? this.training.cancel(id) : this.cancel(id);
  }

  // ---- worker events -------------------------------------------------------------------------

  /** A `pull`: the worker takes work again (a release had paused it) up to `credit` leases of every kind. */
  pull(workerId: string, credit: number): void {
    this.registry.setDraining(workerId, false);
    this.scheduler.setCredit(workerId, credit);
    this.pump();
  }

  /**
   * A `result` for a lease of any kind. A score result of the wrong shape for its lease throws the ProtocolError
   * to answer the worker with, after counting it as that lease's failure. Returns why it was ignored, or null.
   */
  result(workerId: string, m: ResultMessage): string | null {
    if (this.training.owns(m.leaseId)) {
      const ignored = this.training.result(workerId, m);
      if (ignored === null) this.registry.recordTrainResult(workerId);
      return ignored;
    }
    const lease = this.scheduler.lease(m.leaseId);
    if (lease !== undefined && lease.workerId === workerId) {
      if (lease.shardId !== m.shardId) {
        throw new ProtocolError('invalid-field', `invalid field "shardId": lease ${m.leaseId} is for shard ${lease.shardId}`, { path: 'shardId' });
      }
      try {
        if (m.payload.kind !== 'scores') throw new ProtocolError('invalid-field', 'invalid field "payload.kind": a score lease needs "scores"', { path: 'payload.kind' });
        assertTensor(m.payload.scores, 'float32', [lease.count * lease.width], 'payload.scores');
      } catch (e) {
        // A wrong-shaped result is that lease's failure: the shard goes back to the queue.
        this.fail(workerId, m.leaseId, true, e instanceof Error ? e.message : 'invalid result');
        throw e;
      }
    }
    const scores = m.payload.kind === 'scores' ? m.payload.scores.data : new Float32Array(0);
    const outcome = this.complete(workerId, m.leaseId, scores, m.elapsedMs);
    return outcome.kind === 'ignored' ? outcome.reason : null;
  }

  /** A `failure` for a lease of any kind; true when it counted (the lease was current). */
  failure(workerId: string, m: FailureMessage): boolean {
    if (this.training.fail(workerId, m.leaseId, m.reason, m.retryable)) return true;
    return this.fail(workerId, m.leaseId, m.retryable, m.reason).kind === 'accepted';
  }

  /** A `release` (the worker is draining): its leases of every kind go back; no new ones until its next pull. */
  releaseLeases(workerId: string, leaseIds: readonly string[]): number {
    const n = this.scheduler.release(workerId, this.training.release(workerId, leaseIds));
    this.registry.setDraining(workerId, true);
    this.pump();
    return n;
  }

  /** The worker is gone: every lease it held, of every kind, goes back at once. */
  removeWorker(workerId: string): void {
    this.registry.remove(workerId);
    this.scheduler.removeWorker(workerId);
    this.training.removeWorker(workerId);
    this.pump();
  }

  complete(workerId: string, leaseId: string, scores: Float32Array, elapsedMs: number | undefined): ResultOutcome {
    const view = this.scheduler.lease(leaseId);
    const outcome = this.scheduler.complete(workerId, leaseId, scores);
    if (outcome.kind === 'accepted') {
      const wall = view === undefined ? 0 : this.now() - (view.deadline - this.leaseMs);
      this.registry.recordResult(workerId, outcome.items, elapsedMs !== undefined && elapsedMs > 0 ? elapsedMs : wall);
    }
    this.pump();
    return outcome;
  }

  fail(workerId: string, leaseId: string, retryable: boolean, reason: string): ResultOutcome {
    const name = this.registry.get(workerId)?.name;
    const outcome = this.scheduler.fail(workerId, leaseId, retryable, reason, name === undefined ? workerId : `${name} (${workerId})`);
    this.pump();
    return outcome;
  }

  /** Sends leases to every worker with free credit; arms the expiry timer. */
  pump(): void {
    if (this.closed) return;
    const grants = this.scheduler.dispatch();
    for (const grant of grants) this.send(grant);
    this.training.pump();
    this.armTimer();
  }

  private send(grant: Grant): void {
    const record = this.jobs.get(grant.jobId)?.record;
    const sink = this.sink;
    if (record === undefined || sink === undefined) return;
    try {
      sink.sendLease(grant.workerId, {
        type: 'lease', leaseId: grant.leaseId, shardId: grant.shardId, jobId: grant.jobId, deadline: grant.deadline, attempt: grant.attempt,
        task: {
          kind: 'score',
          ...(record.spec.scorer === undefined ? { modelHash: record.spec.model } : { scorer: record.spec.scorer }),
          batchSize: record.spec.batchSize,
          ...this.shardPayload(record, grant.shardIndex),
        },
      });
    } catch (e) {
      // A shard that cannot be turned into a lease will not get better on retry.
      const message = e instanceof Error ? e.message : String(e);
      this.log.error({ job: grant.jobId, shard: grant.shardIndex, err: message }, 'cannot send lease');
      this.scheduler.failJob(grant.jobId, `shard ${grant.shardIndex} cannot be sent to workers: ${message}`);
    }
  }

  /** Feature shards travel as one matrix (the store already holds them row-major); text shards as items. */
  private shardPayload(record: JobRecord, index: number): { matrix: { ids: string[]; features: Tensor<'float32'> } } | { items: ScoreItem[] } {
    const shard = this.store.shardItems(record.id, index);
    if (shard === undefined) throw new Error(`shard ${index} of job ${record.id} is missing from the state store`);
    const { features, prompts, responses } = shard;
    if (features !== undefined) return { matrix: { ids: shard.ids, features: Tensor.float32(features, [shard.ids.length, record.spec.dim]) } };
    return { items: shard.ids.map((id, i) => ({ id, prompt: prompts?.[i] ?? '', response: responses?.[i] ?? '' })) };
  }

  /** One timer for the next lease deadline or the moment a slow shard becomes worth duplicating. */
  private armTimer(): void {
    const deadline = this.scheduler.nextDeadline();
    const speculation = this.scheduler.nextSpeculation();
    const next = Math.min(deadline ?? Infinity, speculation ?? Infinity);
    if (next === Infinity || next >= this.timerAt) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = next;
    // +1: fire strictly after the deadline (expire() compares deadline <= now).
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      const n = this.scheduler.expire();
      if (n > 0) this.log.info({ leases: n }, 'leases expired; shards re-queued');
      this.pump();
    }, Math.max(0, next - this.now() + 1));
  }

  // ---- scheduler events → journal, waiters, workers ------------------------------------------

  private onShardDone(e: ShardDoneEvent): void {
    this.pendingResults.push({ jobId: e.jobId, index: e.index, scores: e.scores, agreed: e.agreed });
    this.scheduleFlush();
    this.wake(e.jobId);
  }

  private onJobState(e: JobStateEvent): void {
    const entry = this.jobs.get(e.jobId);
    if (entry === undefined) return;
    const { record } = entry;
    record.state = e.state;
    const update: JobUpdate = { id: e.jobId, state: e.state };
    if (isTerminal(e.state)) {
      record.finishedAt = e.at;
      update.finishedAt = e.at;
      if (e.error !== undefined) {
        record.error = e.error;
        update.error = e.error;
      }
      this.log.info({ job: e.jobId, state: e.state, error: e.error }, 'job ended');
      this.onJobEnd?.(record);
      // Tell each worker once per job to drop leases it still holds.
      const workers = new Set(e.dropped.map((d) => d.workerId));
      for (const w of workers) {
        try {
          this.sink?.dropJob(w, e.jobId);
        } catch (err) {
          this.log.warn({ worker: w, err: String(err) }, 'cannot send job-control');
        }
      }
    }
    this.pendingJobs.push(update);
    this.scheduleFlush();
    this.wake(e.jobId);
  }

  private wake(id: string): void {
    const set = this.waiters.get(id);
    if (set === undefined) return;
    this.waiters.delete(id);
    for (const resolve of set) resolve();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    // Coalesce all results of this turn of the event loop into one transaction.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Writes pending results and job updates in one transaction. */
  flush(): void {
    if (this.pendingResults.length === 0 && this.pendingJobs.length === 0) return;
    const batch = { results: this.pendingResults, jobs: this.pendingJobs };
    this.pendingResults = [];
    this.pendingJobs = [];
    try {
      this.store.apply(batch);
    } catch (e) {
      // Keep the batch for the next attempt rather than lose results.
      this.pendingResults = batch.results.concat(this.pendingResults);
      this.pendingJobs = batch.jobs.concat(this.pendingJobs);
      this.log.error({ err: e instanceof Error ? e.message : String(e) }, 'cannot write to the state store');
    }
  }

  /** Stops dispatching, wakes all readers, writes everything pending. The store is closed by the owner. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.training.close();
    if (this.timer !== undefined) clearTimeout(this.timer);
    for (const id of [...this.waiters.keys()]) this.wake(id);
  }
}
