// Executes leases: holds up to `credit` of them, runs up to `maxRunning` at once (the rest wait, their model
// prefetched, so the pool never idles between batches), and answers each with `result` or `failure` on the session
// it came from. Draining hands waiting leases back with `release` and lets running ones finish.
import {
  MAX_CREDIT,
  ProtocolError,
  Tensor,
  type LeaseMessage,
  type ScoreItem,
  type ScoreTask,
  type WorkerMessage,
} from '../shared/protocol/index.js';
import { BlobError } from './blob-cache.js';

/** One item as the scorer takes it: precomputed features, or the text the model's featurizer reads. */
export type ScorerItem = { features: Float32Array } | { prompt: string; response: string };

/** What the lease runner needs from a scoring pool (client/scoring/pool.ts provides the real one). */
export interface Scorer {
  /** One score per item, in item order. `bundle` is the packed model whose sha-256 is `hash`; do not modify it. */
  score(hash: string, bundle: Uint8Array, items: ScorerItem[], batchSize: number): Promise<Float32Array>;
  close(): Promise<void>;
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

export interface LeaseRunnerOptions {
  scorer: Scorer;
  /** Leases held at once (the `pull` credit). */
  credit: number;
  /** Leases scored at once (the pool's threads). */
  maxRunning: number;
  log?: RunnerLog;
}

type State = 'queued' | 'running';

interface Held {
  lease: LeaseMessage;
  task: ScoreTask;
  channel: LeaseChannel;
  state: State;
  /** Its job was cancelled: finish quietly, send nothing. */
  cancelled: boolean;
}

const silent: RunnerLog = { debug: () => {}, info: () => {}, warn: () => {} };

/**
 * Whether retrying elsewhere cannot help: an invalid model bundle, or items the model cannot take. Errors thrown in
 * pool threads arrive through structured clone, which keeps the message but not the class or own properties, so
 * the message prefixes used by shared/model ("model bundle: …") count as well as a `retryable: false` property.
 */
export function isPermanentError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  if (Reflect.get(error, 'retryable') === false) return true;
  const name: unknown = Reflect.get(error, 'name');
  if (name === 'BundleError' || name === 'ModelError') return true;
  const message: unknown = Reflect.get(error, 'message');
  return typeof message === 'string' && /^(model bundle|invalid (model|bundle))\b/i.test(message);
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').slice(0, 1000);
}

/** Protocol items → scorer items. Features tensors already own their buffers (the codec copies once). */
export function toScorerItems(items: readonly ScoreItem[]): ScorerItem[] {
  return items.map((item) =>
    item.features !== undefined ? { features: item.features.data } : { prompt: item.prompt ?? '', response: item.response ?? '' },
  );
}

/** A score task's items for the scorer, from either form; rows of a matrix are views, not copies. */
export function taskScorerItems(task: ScoreTask): ScorerItem[] {
  if (task.matrix !== undefined) {
    const { ids, features } = task.matrix;
    const dim = features.shape[1] ?? 0;
    const data = features.data as Float32Array;
    return ids.map((_, i) => ({ features: data.subarray(i * dim, (i + 1) * dim) }));
  }
  return toScorerItems(task.items ?? []);
}

/** Number of items in a score task. */
export function taskSize(task: ScoreTask): number {
  return task.matrix?.ids.length ?? task.items?.length ?? 0;
}

export class LeaseRunner {
  private readonly held = new Map<string, Held>(); // by leaseId, in arrival order
  private readonly paused = new Set<string>();
  private running = 0;
  private draining = false;
  private idleWaiters: (() => void)[] = [];
  private readonly log: RunnerLog;
  private items = 0;
  private computeMs = 0;

  constructor(private readonly options: LeaseRunnerOptions) {
    this.log = options.log ?? silent;
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
    if (task.kind !== 'score') {
      this.sendFailure(channel, lease, `this worker does not run ${task.kind} tasks`, true);
      return;
    }
    this.held.set(lease.leaseId, { lease, task, channel, state: 'queued', cancelled: false });
    // Prefetch the model while the lease waits; the run awaits the same (shared) load.
    channel.bundle(task.modelHash).catch(() => {});
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
    for (const h of this.held.values()) {
      if (this.running >= this.options.maxRunning) return;
      if (h.state !== 'queued' || this.paused.has(h.lease.jobId)) continue;
      void this.run(h);
    }
  }

  private async run(h: Held): Promise<void> {
    h.state = 'running';
    this.running++;
    const { lease, task, channel } = h;
    try {
      const bundle = await channel.bundle(task.modelHash);
      const started = performance.now();
      const size = taskSize(task);
      const scores = await this.options.scorer.score(task.modelHash, bundle, taskScorerItems(task), task.batchSize);
      const elapsed = performance.now() - started;
      this.items += size;
      this.computeMs += elapsed;
      this.held.delete(lease.leaseId);
      if (h.cancelled || !channel.live) return;
      if (scores.length !== size) {
        this.sendFailure(channel, lease, `scorer returned ${scores.length} scores for ${size} items`, true);
        return;
      }
      try {
        channel.send({
          type: 'result',
          leaseId: lease.leaseId,
          shardId: lease.shardId,
          payload: { kind: 'scores', scores: Tensor.float32(scores) },
          elapsedMs: Math.round(elapsed),
        });
      } catch (e) {
        // sendMessage validates before sending: non-finite scores or an oversize frame become a failure.
        this.sendFailure(channel, lease, e instanceof ProtocolError ? e.message : errorText(e), true);
      }
    } catch (e) {
      this.held.delete(lease.leaseId);
      if (h.cancelled || !channel.live) return;
      const retryable = e instanceof BlobError || !isPermanentError(e);
      this.log.warn(`lease ${lease.leaseId} (job ${lease.jobId}) failed${retryable ? '' : ' permanently'}: ${errorText(e)}`);
      this.sendFailure(channel, lease, errorText(e), retryable);
    } finally {
      this.running--;
      if (this.running === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
      this.pump();
    }
  }

  private sendFailure(channel: LeaseChannel, lease: LeaseMessage, reason: string, retryable: boolean): void {
    try {
      channel.send({ type: 'failure', leaseId: lease.leaseId, shardId: lease.shardId, reason: reason.slice(0, 4096), retryable });
    } catch (e) {
      this.log.warn(`cannot report failure of lease ${lease.leaseId}: ${errorText(e)}`);
    }
  }
}
