// Training jobs on the coordinator (docs/architecture.md, "Training"): each job runs a TrainingDriver (the pure state
// machines in shared/training/, the same the simulator runs) and keeps its shards in the coordinator's one lease
// table: the driver's DispatchOrders become shards (pinned to their worker for worker-held data), results, losses
// and failures come back as lease-table events, and the steps they complete are recorded, evaluated off the event
// loop and checkpointed. Round deadlines are the one timer kept here.
//
// Persistence: the job record and its data are stored at submission; a checkpoint (driver snapshot, client bindings,
// metrics) every `checkpointEvery` steps, at the end and at shutdown. A restarted coordinator resumes from it.
// One job's life from submission to its end is one piece (its steps, evaluations, checkpoints and shards move
// together), so it stays in one file; a job's state, placement, checkpoints and stored records are modules of their own.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { ConfigError, parseTrainConfig, type TrainConfig } from '../../shared/config/train.js';
import { packedEmbeddingInput } from '../../shared/model/embedding-input.js';
import { ProtocolError, Tensor, markDecodedFinite, type LeaseMessage, type ResultMessage, type WeightsMessage } from '../../shared/protocol/index.js';
import { createDriver, trainAdversary } from '../../shared/training/create-driver.js';
import { HeldWeights, weightsKey } from '../../shared/training/held-weights.js';
import type { ClientArrival, StepResult } from '../../shared/training/types.js';
import type { BlobStore } from '../blobs.js';
import type { JobService, OutgoingLease, ServiceHost, ShardHooks } from '../job-service.js';
import type { WorkerRegistry } from '../worker-registry.js';
import type { Grant, JobStateEvent, LeaseView, ShardDoneEvent, ShardLostEvent } from '../scheduler.js';
import { TRAIN_KEY } from '../score-jobs.js';
import { isTerminal, type Store, type TrainJobRecord } from '../store.js';
import { packCheckpoint } from './checkpoint.js';
import type { EvalResult } from './evaluator.js';
import type { CentralData, TrainJobRequest } from './job-request.js';
import { packCentralData } from './persist.js';
import { bundleOf, loadTrainingJob } from './stored-jobs.js';
import { CentralPlacement, WorkerPlacement, eligible } from './placement.js';
import { TrainingJob, type TrainJobStatus, type TrainMetricLine } from './training-job.js';
import type { ShardOutput } from '../job-service.js';

export type { TrainJobStatus, TrainMetricLine } from './training-job.js';

export interface TrainingHost extends ServiceHost {
  workers: WorkerRegistry;
  store: Store;
  blobs: BlobStore;
  log: Logger;
  now: () => number;
}

export class TrainSubmitError extends Error {}

/** Most leases of one sync order on central data (a client's shard re-leased after lost workers within its round). */
const MAX_ATTEMPTS = 3;

export class TrainingService implements JobService<TrainJobStatus> {
  private readonly jobs = new Map<string, TrainingJob>();
  /** Per connected worker, the model versions whose weights its connection carried (held-weights.ts). */
  private readonly heldWeights = new Map<string, HeldWeights<true>>();
  private closed = false;

  constructor(private readonly host: TrainingHost) {}

  private get now(): number {
    return this.host.now();
  }

  // ---- jobs ----------------------------------------------------------------------------------

  /** `owner`: the submitter's owner id (auth.ts), or null when the submitter role is open. */
  submit(request: TrainJobRequest, owner: string | null = null): TrainJobStatus {
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
    const id = `t${this.now.toString(36)}${randomBytes(4).toString('hex')}`;
    const job = new TrainingJob(id, config, request.model, data, request.eval, this.now, owner);
    // Durable before it is acknowledged: the data as blobs, then the record.
    const record: TrainJobRecord = { id, state: 'queued', createdAt: job.createdAt, model: request.model, config, ...(owner === null ? {} : { owner }) };
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
      const { job, unreadable } = loadTrainingJob(record, config, this.host.store, this.host.blobs);
      this.jobs.set(record.id, job);
      if (isTerminal(record.state)) {
        job.state = record.state;
        job.finishedAt = record.finishedAt;
        job.error = record.error;
        job.release();
        continue;
      }
      const bundle = this.host.blobs.read(record.model);
      if (unreadable !== undefined || bundle === undefined) {
        this.finish(job, 'failed', unreadable ?? 'its model or data blob is missing from the state store');
        continue;
      }
      resumed++;
      this.host.log.info({ job: record.id, step: job.checkpointedStep < 0 ? 0 : job.checkpointedStep }, 'training job resumes');
      this.start(job, bundle);
    }
    return { resumed, total: records.length };
  }

  /** Registers the job in the lease table, then loads its model. */
  private start(job: TrainingJob, bundle: Uint8Array): void {
    this.host.register(job.id, this);
    this.host.table.addJob({ id: job.id, items: 0, shardSize: 1, redundancy: 1, open: true, needs: TRAIN_KEY, speculative: false, hooks: this.hooksFor(job) });
    void this.load(job, bundle).catch((e: unknown) => this.finish(job, 'failed', e instanceof Error ? e.message : String(e)));
  }

  /**
   * A training shard's result must be an update. A lost shard of central data is leased again within its open sync
   * round (another worker can train that client), at most MAX_ATTEMPTS times and not after an expiry; otherwise the
   * client misses its turn (shardLost).
   */
  private hooksFor(job: TrainingJob): ShardHooks {
    return {
      fits: (o) => o.kind === 'update',
      retry: (index, reason, attempt) => {
        const order = job.shards.get(index);
        const dr = job.driver;
        return (
          order !== undefined && dr?.mode === 'sync' && job.placement?.movable === true && dr.roundOpen && dr.version === order.version &&
          attempt < MAX_ATTEMPTS && reason !== 'expired'
        );
      },
      failure: (index, worker, reason) => `client ${job.shards.get(index)?.client ?? '?'} on worker ${worker}: ${reason}`,
      label: (index) => `client ${job.shards.get(index)?.client ?? '?'}`,
      // A bad model or dataset fails the job: the other clients' workers would fail the same way, or train nothing.
      voteOnFailure: false,
    };
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
    const dataset = job.datasetName;
    if (dataset === undefined) {
      job.placement = new CentralPlacement(this.host.workers, job.data as CentralData, CentralPlacement.partition(config, job.data as CentralData));
    } else {
      const placement = new WorkerPlacement(this.host.workers, dataset, job.embedding, (worker, client) => {
        this.host.log.info({ job: job.id, worker, client }, 'worker dataset joins the training job as a client');
      });
      for (const [name, client] of job.bindings) placement.bindings.set(name, client);
      job.placement = placement;
    }
    this.host.pump();
  }

  /** Builds the driver once the model is loaded and (worker-held data) the client count is known. */
  private tryStart(job: TrainingJob): void {
    const placement = job.placement;
    if (job.driver !== undefined || job.state !== 'queued' || job.model === undefined || placement === undefined) return;
    if (placement instanceof WorkerPlacement && job.numClients === 0) {
      // No data.clients: the clients are the workers holding the dataset when training starts.
      const holders = placement.holders();
      if (holders === 0) return;
      job.numClients = holders;
    }
    const resume = job.resumeFrom;
    job.resumeFrom = undefined;
    job.adversary = trainAdversary(job.config);
    job.driver = createDriver(job.config, job.numClients, job.model.initialWeights, resume?.snapshot, job.adversary);
    job.finalWeights = undefined;
    job.metrics = job.metrics.filter((m) => m.step <= (job.driver?.version ?? 0));
    job.state = 'running';
    job.startedAt = this.now - (resume?.elapsed ?? 0) * 1000;
    this.host.store.updateTrainJob({ id: job.id, state: 'running' });
    if (placement instanceof WorkerPlacement) placement.bind(job.numClients);
    job.wake();
  }

  /**
   * Asks the driver for the shards due now (the next sync round, or async top-ups) among reachable clients and puts
   * them in the lease table; waits while no client can train, and while a step is being evaluated (record).
   */
  private advance(job: TrainingJob): void {
    const dr = job.driver;
    const placement = job.placement;
    if (dr === undefined || placement === undefined || job.state !== 'running' || this.closed || job.evaluating !== undefined) return;
    if (dr.done) {
      this.finish(job, 'done');
      return;
    }
    // Reachability walks every worker: only when the driver has room for more shards.
    if (!dr.wantsMore) return;
    const { any, reachable } = placement.reachability();
    if (!any) return;
    const now = this.now;
    const { orders, step } = dr.next(now, reachable);
    if (dr.mode === 'sync' && dr.roundOpen && job.config.mode === 'sync') {
      job.roundTimer = setTimeout(() => this.roundDeadline(job), job.config.roundDeadlineMs);
    }
    const keys = placement.keysOf(orders.map((o) => o.client));
    const leased = orders.filter((_, i) => keys[i] !== null);
    const indices = this.host.table.addShards(job.id, keys.filter((k): k is string | undefined => k !== null));
    leased.forEach((order, i) => job.shards.set(indices[i] as number, order));
    // A client whose worker left since reachability was taken misses its turn.
    for (const order of orders.filter((_, i) => keys[i] === null)) this.missed(job, order.client, order.version);
    if (step !== null) {
      // A round nobody was sampled for closed at once: record it, and open the next one on a later turn.
      this.stepped(job, step);
      setImmediate(() => {
        this.advance(job);
        this.host.pump();
      });
    }
  }

  private roundDeadline(job: TrainingJob): void {
    job.roundTimer = undefined;
    const dr = job.driver;
    if (dr === undefined || job.state !== 'running' || this.closed) return;
    const step = dr.expire(this.now);
    if (step !== null) this.stepped(job, step);
    this.host.pump();
  }

  /** A step the driver took: a sync round's leftover shards leave the lease table, then the step is recorded. */
  private stepped(job: TrainingJob, step: StepResult): void {
    const dr = job.driver;
    if (dr?.mode === 'sync') {
      if (job.roundTimer !== undefined) clearTimeout(job.roundTimer);
      job.roundTimer = undefined;
      for (const [index, order] of job.shards) {
        if (order.version >= dr.version) continue;
        job.shards.delete(index);
        this.host.table.dropShard(job.id, index);
      }
    }
    if (step.skipped !== undefined) this.host.log.warn({ job: job.id, step: step.metrics.step, why: step.skipped }, 'round left the model unchanged');
    this.record(job, step);
  }

  private evaluate(job: TrainingJob, weights: Float32Array): Promise<EvalResult> | null {
    const d = job.evalData;
    const model = job.model;
    if (d === undefined || model === undefined) return null;
    return d.kind === 'pairs' ? model.evaluatePairs(weights, d.chosen, d.rejected) : model.evaluate(weights, d.rows, d.labels);
  }

  /**
   * A step's metrics line, with its evaluation when one is due. The evaluation runs off the event loop (evaluator.ts)
   * and the job waits for it: the line (then the step's checkpoint) is written when it ends, no round opens and no
   * shard is added meanwhile (advance), and async results that arrive are held and applied in order afterwards
   * (shardDone, resume). So lines stay in step order, a checkpoint never holds a driver ahead of its metrics, and a
   * round's evaluation is of that round's weights. If the job ends (cancel, a failure) or the coordinator shuts down
   * during an evaluation, its result is dropped and the step's line is written without it (settle); a failed
   * evaluation is logged and its line written without it too.
   */
  private record(job: TrainingJob, step: StepResult): void {
    const m = step.metrics;
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
    const evaluation = ev !== undefined && (m.step % ev.every === 0 || m.step === job.total) ? this.evaluate(job, step.weights) : null;
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
    while (job.evaluating === undefined && job.state === 'running' && !this.closed) {
      const next = job.held.shift();
      if (next === undefined) break;
      this.arrive(job, next.arrival, next.now);
    }
    this.host.pump();
  }

  /** An update into the driver: a refusal counts the client's shard as missed, a step is recorded. */
  private arrive(job: TrainingJob, arrival: ClientArrival, now: number): void {
    const dr = job.driver;
    if (dr === undefined) return;
    const r = dr.take(arrival, now);
    if (r.status === 'refused') {
      this.host.log.debug({ job: job.id, client: arrival.client, reason: r.reason }, 'training result ignored');
      const step = dr.miss(arrival.client, arrival.baseVersion, now);
      if (step !== null) this.stepped(job, step);
    } else if (r.status === 'taken' && r.step !== null) {
      this.stepped(job, r.step);
    }
  }

  /** The client's shard will not arrive: absent from its round (sync) or free again (async). */
  private missed(job: TrainingJob, client: number, version: number): void {
    const step = job.driver?.miss(client, version, this.now) ?? null;
    if (step !== null) this.stepped(job, step);
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
    if (dr === undefined || job.checkpointedStep === dr.version) return;
    const bindings = job.placement instanceof WorkerPlacement ? [...job.placement.bindings] : [];
    try {
      this.host.store.saveTrainCheckpoint(job.id, {
        step: dr.version,
        state: packCheckpoint(dr.viewSnapshot(), { numClients: job.numClients, bindings, elapsed: (this.now - job.startedAt) / 1000 }),
        metrics: job.metrics.map((l) => `${JSON.stringify(l)}\n`).join(''),
      });
      job.checkpointedStep = dr.version;
    } catch (e) {
      this.host.log.error({ job: job.id, err: e instanceof Error ? e.message : String(e) }, 'cannot write a training checkpoint');
    }
  }

  /** Ends a job: its final checkpoint and state, its shards out of the lease table (their workers told), its training state dropped. */
  private finish(job: TrainingJob, state: 'done' | 'failed' | 'cancelled', error?: string): void {
    if (isTerminal(job.state)) return;
    this.settle(job);
    job.state = state;
    job.finishedAt = this.now;
    if (error !== undefined) job.error = error;
    if (job.roundTimer !== undefined) clearTimeout(job.roundTimer);
    job.roundTimer = undefined;
    this.checkpoint(job);
    try {
      this.host.store.updateTrainJob({ id: job.id, state, finishedAt: job.finishedAt, ...(error === undefined ? {} : { error }) });
    } catch (e) {
      this.host.log.error({ job: job.id, err: e instanceof Error ? e.message : String(e) }, 'cannot record the training job state');
    }
    // The lease table's own end of the job (its jobState event finds the job already ended).
    if (state === 'done') this.host.table.finishJob(job.id);
    else if (state === 'cancelled') this.host.table.cancel(job.id);
    else this.host.table.failJob(job.id, error ?? 'failed');
    job.release();
    this.host.log.info({ job: job.id, state, error }, 'training job ended');
    job.wake();
    this.host.pump();
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  /** The train.json a job was submitted with (as parsed), for `fedpool train --resume`. */
  configOf(id: string): TrainConfig | undefined {
    return this.jobs.get(id)?.config;
  }

  failJobsUsing(hash: string, error: string): void {
    for (const job of this.jobs.values()) if (job.modelHash === hash && !isTerminal(job.state)) this.finish(job, 'failed', error);
  }

  ownerOf(id: string): string | null | undefined {
    return this.jobs.get(id)?.owner;
  }

  forget(id: string): void {
    const job = this.jobs.get(id);
    if (job === undefined || !isTerminal(job.state)) return;
    this.jobs.delete(id);
    job.wake();
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

  /** Why no connected worker can train the job now, or undefined when one can. */
  private waitingFor(job: TrainingJob): string | undefined {
    const data = job.config.data;
    const dataset = data.source === 'worker' ? data.name : undefined;
    if (this.host.workers.list().some((w) => eligible(w, dataset, job.embedding))) return undefined;
    const needs = [dataset === undefined ? 'runs train tasks' : `holds dataset ${dataset} (fedpool worker --data ${dataset}=PATH)`];
    if (job.embedding !== undefined) needs.push(`serves embeddings of ${job.embedding}`);
    return `no connected worker ${needs.join(' and ')}`;
  }

  private statusOf(job: TrainingJob): TrainJobStatus {
    const s: TrainJobStatus = {
      id: job.id, kind: 'train', state: job.state, progress: { done: job.done, total: job.total },
      createdAt: new Date(job.createdAt).toISOString(), model: job.modelHash, mode: job.config.mode, clients: job.numClients,
    };
    if (job.finishedAt !== undefined) s.finishedAt = new Date(job.finishedAt).toISOString();
    if (job.error !== undefined) s.error = job.error;
    const waiting = isTerminal(job.state) ? undefined : this.waitingFor(job);
    if (waiting !== undefined) s.waiting = waiting;
    return s;
  }

  /** metrics.jsonl lines from `from` on (a negative `from`: the last −from lines), and whether the job has ended. */
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
  modelBundle(id: string): Promise<Uint8Array | undefined> {
    const job = this.jobs.get(id);
    return job === undefined ? Promise.resolve(undefined) : bundleOf(job, this.host.blobs);
  }

  // ---- the lease table's side ----------------------------------------------------------------

  lease(grant: Grant): OutgoingLease {
    const job = this.jobs.get(grant.jobId);
    const order = job?.shards.get(grant.shardIndex);
    if (job === undefined || order === undefined || job.placement === undefined) throw new Error(`training shard ${grant.shardId} is gone`);
    // The weights go to each worker once per model version (shared/training/held-weights.ts): a round of 30
    // participants on 4 workers sends 4 copies of a 4 MB model, not 30.
    const key = weightsKey(job.id, job.modelHash, order.version);
    let held = this.heldWeights.get(grant.workerId);
    if (held === undefined) this.heldWeights.set(grant.workerId, (held = new HeldWeights<true>()));
    let weights: WeightsMessage | undefined;
    if (!held.has(key)) {
      held.add(key, true);
      // One message object per job and version: the socket layer encodes it once for every worker.
      weights = job.weightsMessages.get(key);
      if (weights === undefined) {
        weights = { type: 'weights', jobId: job.id, modelHash: job.modelHash, modelVersion: order.version, weights: Tensor.float32(order.weights) };
        job.weightsMessages.add(key, weights);
      }
    }
    const message: LeaseMessage = {
      type: 'lease', leaseId: grant.leaseId, shardId: grant.shardId, jobId: job.id, deadline: grant.deadline, attempt: grant.attempt,
      task: {
        kind: 'train', modelHash: job.modelHash, modelVersion: order.version, client: order.client,
        ...(order.momentum === undefined ? {} : { momentum: Tensor.float32(order.momentum) }),
        local: job.config.local,
        data: job.placement.leaseData(order.client),
        ...(job.adversary?.flipsLabels(order.client) === true ? { flipLabels: true } : {}),
      },
    };
    return weights === undefined ? { message } : { message, weights };
  }

  /** The worker's connection is gone: so is the record of the weights it held (a reconnection starts a new one). */
  workerGone(workerId: string): void {
    this.heldWeights.delete(workerId);
  }

  check(lease: LeaseView, m: ResultMessage): void {
    if (lease.shardId !== m.shardId) {
      throw new ProtocolError('invalid-field', `invalid field "shardId": lease ${m.leaseId} is for shard ${lease.shardId}`, { path: 'shardId' });
    }
    if (m.payload.kind !== 'update') throw new ProtocolError('invalid-field', 'invalid field "payload.kind": a train lease needs "update"', { path: 'payload.kind' });
    // Shape and norm are checked here, at the boundary, so a bad update is the sending worker's failure (re-leased to
    // another worker, counted in its record) rather than a silent absence in the round. Finiteness: the protocol's.
    const job = this.jobs.get(lease.jobId);
    const dim = job?.driver?.weights.length;
    if (job === undefined || dim === undefined) return;
    const update = m.payload.update.data as Float32Array;
    if (update.length !== dim) throw new ProtocolError('shape-mismatch', `invalid field "payload.update": ${update.length} values, the model has ${dim}`, { path: 'payload.update' });
    const momentum = m.payload.momentum?.data;
    if (momentum !== undefined && momentum.length !== dim) {
      throw new ProtocolError('shape-mismatch', `invalid field "payload.momentum": ${momentum.length} values, the model has ${dim}`, { path: 'payload.momentum' });
    }
    const bound = job.config.maxUpdateNorm;
    if (bound !== undefined) {
      let sq = 0;
      for (let j = 0; j < dim; j++) sq += (update[j] as number) ** 2;
      const norm = Math.sqrt(sq);
      if (norm > bound) throw new ProtocolError('invalid-field', `invalid field "payload.update": L2 norm ${norm.toPrecision(4)} exceeds the job's maxUpdateNorm ${bound}`, { path: 'payload.update' });
    }
    // The decoder scanned it for NaN and ±∞ already: the driver need not scan it again.
    markDecodedFinite(update);
  }

  counted(workerId: string): void {
    this.host.workers.recordTrainResult(workerId);
  }

  shardDone(e: ShardDoneEvent<ShardOutput>): void {
    const job = this.jobs.get(e.jobId);
    const order = job?.shards.get(e.index);
    if (job === undefined || order === undefined) return;
    job.shards.delete(e.index);
    const p = e.result;
    if (job.state !== 'running' || p.kind !== 'update') return;
    const arrival: ClientArrival = {
      client: order.client,
      baseVersion: p.baseVersion,
      update: p.update.data as Float32Array,
      ...(p.momentum === undefined ? {} : { momentum: p.momentum.data as Float32Array }),
      samples: p.samples,
      loss: p.loss,
    };
    const now = this.now;
    // A step is being evaluated: the result waits (record), as it waited in the socket while evaluation blocked the loop.
    if (job.evaluating !== undefined) job.held.push({ arrival, now });
    else this.arrive(job, arrival, now);
  }

  shardLost(e: ShardLostEvent): void {
    const job = this.jobs.get(e.jobId);
    const order = job?.shards.get(e.index);
    if (job === undefined || order === undefined) return;
    job.shards.delete(e.index);
    if (job.state === 'running') this.missed(job, order.client, order.version);
  }

  /** The lease table ended a job itself (a failure no retry can fix, a lease that cannot be sent). */
  jobState(e: JobStateEvent): void {
    const job = this.jobs.get(e.jobId);
    if (job === undefined || !isTerminal(e.state) || isTerminal(job.state)) return;
    this.finish(job, e.state === 'done' ? 'done' : e.state === 'cancelled' ? 'cancelled' : 'failed', e.error);
  }

  /** Starts jobs that can start, binds new dataset holders, and adds the shards that are due. */
  pump(): void {
    if (this.closed) return;
    for (const job of this.jobs.values()) {
      if (job.state === 'queued') this.tryStart(job);
      if (job.state !== 'running') continue;
      if (job.placement instanceof WorkerPlacement) job.placement.bind(job.numClients);
      this.advance(job);
    }
  }

  /** Checkpoints running jobs (a restart resumes them) and stops the round timers. */
  close(): void {
    if (this.closed) return;
    for (const job of this.jobs.values()) {
      if (job.state !== 'running') continue;
      this.settle(job);
      this.checkpoint(job);
    }
    this.closed = true;
    for (const job of this.jobs.values()) {
      if (job.roundTimer !== undefined) clearTimeout(job.roundTimer);
      if (job.modelUsers === 0) job.disposeModel();
      job.wake();
    }
  }
}
