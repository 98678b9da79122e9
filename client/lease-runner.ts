// Executes leases: holds up to `credit` of them, runs up to `maxRunning` at once (the rest wait, their model
// prefetched, so the pool never idles between batches), and answers each with `result` or `failure` on the session
// it came from. Draining hands waiting leases back with `release` and lets running ones finish; job-control cancels,
// pauses and resumes a job's leases. What a shard computes lives beside it: score leases in score-shard.ts (the
// pool's threads, the inference server, or both for an embedding head), train leases in train-shard.ts. Scorer
// tasks run on the server and count against `maxServerRunning`; every other lease holds one of the pool's threads.
import { MAX_CREDIT, ProtocolError, Tensor, type LeaseMessage, type ResultPayload, type ScoreTask, type TrainTask, type WeightsMessage } from '../shared/protocol/index.js';
import { BlobError } from './blob-cache.js';
import { errorText, isPermanentError, sendFailure } from './lease-failure.js';
import type { DatasetSource, LeaseChannel, RunnerLog, Scorer, ServerScorer, Trainer } from './lease-ports.js';
import { ScoreShards, taskSize } from './score-shard.js';
import { TrainShards } from './train-shard.js';

export type { DatasetSource, LeaseChannel, RunnerLog, Scorer, ScorerItem, ServerScorer, Trainer } from './lease-ports.js';

export interface LeaseRunnerOptions {
  scorer: Scorer;
  /** The inference server scorer tasks go to; without one they fail (retryable: another worker may serve them). */
  server?: ServerScorer | undefined;
  /** Scorer-task leases run at once (they wait on the server, not on this machine's threads). Default 2. */
  maxServerRunning?: number;
  /** Runs train leases; without one, train leases fail (retryable: another worker may train). */
  trainer?: Trainer | undefined;
  /** Datasets train leases may name (`data: {source: 'worker', name}`). */
  datasets?: DatasetSource | undefined;
  /** Leases held at once (the `pull` credit). */
  credit: number;
  /** Bundle and train leases run at once (the pool's threads). */
  maxRunning: number;
  /** Extra milliseconds before each result is sent (experiments with slow or heterogeneous workers). */
  delayMs?: number;
  log?: RunnerLog;
}

type State = 'queued' | 'running';

interface Held {
  lease: LeaseMessage;
  task: ScoreTask | TrainTask;
  channel: LeaseChannel;
  state: State;
  /** Its job was cancelled: finish quietly, send nothing. */
  cancelled: boolean;
  /** Runs on the inference server (a scorer task), not on the worker's threads. */
  server: boolean;
  /** A train task's weights, taken from the held ones when the lease arrived (later weights may evict them there). */
  weights?: Float32Array;
}

const silent: RunnerLog = { debug: () => {}, info: () => {}, warn: () => {} };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class LeaseRunner {
  private readonly held = new Map<string, Held>(); // by leaseId, in arrival order
  private readonly paused = new Set<string>();
  private running = 0;
  /** Of `running`, how many are scorer tasks. */
  private runningServer = 0;
  private draining = false;
  private idleWaiters: (() => void)[] = [];
  private readonly log: RunnerLog;
  private items = 0;
  private computeMs = 0;
  private readonly scoring: ScoreShards;
  private readonly training: TrainShards;

  constructor(private readonly options: LeaseRunnerOptions) {
    this.log = options.log ?? silent;
    this.scoring = new ScoreShards(options);
    this.training = new TrainShards(options);
  }

  /** Leases held for live connections (what heartbeats report). */
  get inFlight(): number {
    let n = 0;
    for (const h of this.held.values()) if (h.channel.live && !h.cancelled) n++;
    return n;
  }

  /** Leases being scored right now, including ones whose connection is gone (they still occupy the pool). */
  get active(): number {
    return this.running;
  }

  /** Measured throughput (items per second of compute), once anything was scored. */
  get itemsPerSecond(): number | undefined {
    return this.computeMs > 0 ? (this.items * 1000) / this.computeMs : undefined;
  }

  /** A model version's weights (before the leases that train from them): held whatever becomes of those leases. */
  weights(m: WeightsMessage): void {
    this.training.received(m);
  }

  accept(lease: LeaseMessage, channel: LeaseChannel): void {
    if (this.held.has(lease.leaseId)) {
      this.log.warn(`lease ${lease.leaseId} received twice; ignoring the copy`);
      return;
    }
    if (this.draining) {
      this.release(channel, [lease.leaseId], 'draining');
      return;
    }
    if (this.inFlight >= this.options.credit) {
      // The coordinator overshot our credit: hand the extra back rather than let it wait past its deadline.
      this.log.warn(`lease ${lease.leaseId} exceeds credit ${this.options.credit}; releasing it`);
      this.release(channel, [lease.leaseId], 'over credit');
      return;
    }
    const task = lease.task;
    if (task.kind === 'train' && this.options.trainer === undefined) {
      sendFailure(channel, lease, `this worker does not run ${task.kind} tasks`, true, this.log);
      return;
    }
    const wanted = task.kind === 'score' ? task.scorer : undefined;
    if (wanted !== undefined) {
      const server = this.options.server;
      if (server === undefined || server.model !== wanted.model || server.output !== wanted.output) {
        const have = server === undefined ? 'no inference server' : `${server.api} serving ${server.model}`;
        sendFailure(channel, lease, `this worker has ${have}, the task needs ${wanted.output} of ${wanted.model}`, true, this.log);
        return;
      }
    }
    let weights: Float32Array | undefined;
    if (task.kind === 'train') {
      try {
        weights = this.training.weightsFor(task, lease.jobId);
      } catch (e) {
        sendFailure(channel, lease, errorText(e), !isPermanentError(e), this.log);
        return;
      }
    }
    this.held.set(lease.leaseId, { lease, task, channel, state: 'queued', cancelled: false, server: wanted !== undefined, ...(weights === undefined ? {} : { weights }) });
    // Prefetch the model while the lease waits; the run awaits the same (shared) load.
    if (task.modelHash !== undefined) channel.bundle(task.modelHash).catch(() => {});
    this.pump();
  }

  /** Drops the job's waiting leases and silences its running ones (no result is sent for a cancelled job). */
  cancelJob(jobId: string): void {
    let dropped = 0;
    for (const [id, h] of this.held) {
      if (h.lease.jobId !== jobId) continue;
      if (h.state === 'queued') {
        this.held.delete(id);
        dropped++;
      } else {
        h.cancelled = true;
      }
    }
    this.paused.delete(jobId);
    if (dropped > 0) this.log.info(`job ${jobId} cancelled: dropped ${dropped} waiting lease(s)`);
    this.pump();
  }

  /** Waiting leases of a paused job stay waiting until it resumes. */
  pauseJob(jobId: string): void {
    this.paused.add(jobId);
  }

  resumeJob(jobId: string): void {
    this.paused.delete(jobId);
    this.pump();
  }

  /** The connection is gone: its waiting leases are dropped; running ones finish but send nothing. Returns how many. */
  abandon(channel: LeaseChannel): number {
    let n = 0;
    for (const [id, h] of this.held) {
      if (h.channel !== channel || h.cancelled) continue;
      if (h.state === 'queued') this.held.delete(id);
      n++;
    }
    return n;
  }

  /** Stops taking work: releases every waiting lease, accepts nothing more; resolves when nothing is running. */
  async drain(): Promise<void> {
    this.draining = true;
    const byChannel = new Map<LeaseChannel, string[]>();
    for (const [id, h] of this.held) {
      if (h.state !== 'queued') continue;
      this.held.delete(id);
      byChannel.set(h.channel, [...(byChannel.get(h.channel) ?? []), id]);
    }
    for (const [channel, ids] of byChannel) this.release(channel, ids, 'draining');
    await this.idle();
  }

  /** Resolves when no lease is running. */
  idle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private release(channel: LeaseChannel, leaseIds: string[], why: string): void {
    for (let i = 0; i < leaseIds.length; i += MAX_CREDIT) {
      const chunk = leaseIds.slice(i, i + MAX_CREDIT);
      if (channel.send({ type: 'release', leaseIds: chunk })) this.log.debug(`released ${chunk.length} lease(s) (${why})`);
    }
  }

  private pump(): void {
    if (this.draining) return;
    const maxServer = this.options.maxServerRunning ?? 2;
    for (const h of this.held.values()) {
      const local = this.running - this.runningServer;
      if (local >= this.options.maxRunning && this.runningServer >= maxServer) return;
      if (h.state !== 'queued' || this.paused.has(h.lease.jobId)) continue;
      if (h.server ? this.runningServer >= maxServer : local >= this.options.maxRunning) continue;
      void this.run(h);
    }
  }

  private async run(h: Held): Promise<void> {
    h.state = 'running';
    this.running++;
    if (h.server) this.runningServer++;
    const { lease, task, channel } = h;
    try {
      let payload: ResultPayload;
      let started: number;
      if (task.kind === 'score') {
        const size = taskSize(task);
        const shard = await this.scoring.score(task, channel);
        started = shard.started;
        this.items += size;
        this.computeMs += performance.now() - started;
        if (shard.scores.length !== shard.expected) {
          this.held.delete(lease.leaseId);
          if (!h.cancelled && channel.live) sendFailure(channel, lease, `scorer returned ${shard.scores.length} values for ${size} items`, true, this.log);
          return;
        }
        payload = { kind: 'scores', scores: Tensor.float32(shard.scores) };
      } else {
        const bundle = await channel.bundle(task.modelHash);
        if (h.weights === undefined) throw new Error(`train lease ${lease.leaseId} was accepted without weights`);
        started = performance.now();
        payload = await this.training.train(task, h.weights, bundle, lease.jobId);
      }
      if (this.options.delayMs !== undefined && this.options.delayMs > 0) await sleep(this.options.delayMs);
      const elapsed = performance.now() - started;
      this.held.delete(lease.leaseId);
      if (h.cancelled || !channel.live) return;
      try {
        channel.send({ type: 'result', leaseId: lease.leaseId, shardId: lease.shardId, payload, elapsedMs: Math.round(elapsed) });
      } catch (e) {
        // sendMessage validates before sending: non-finite scores or an oversize frame become a failure.
        sendFailure(channel, lease, e instanceof ProtocolError ? e.message : errorText(e), true, this.log);
      }
    } catch (e) {
      this.held.delete(lease.leaseId);
      if (h.cancelled || !channel.live) return;
      const retryable = e instanceof BlobError || !isPermanentError(e);
      this.log.warn(`lease ${lease.leaseId} (job ${lease.jobId}) failed${retryable ? '' : ' permanently'}: ${errorText(e)}`);
      sendFailure(channel, lease, errorText(e), retryable, this.log);
    } finally {
      this.running--;
      if (h.server) this.runningServer--;
      if (this.running === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
      this.pump();
    }
  }
}
