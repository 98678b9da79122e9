// Executes leases: holds up to `credit` of them, runs up to `maxRunning` at once (the rest wait, their model
// prefetched, so the pool never idles between batches), and answers each with `result` or `failure` on the session
// it came from. Draining hands waiting leases back with `release` and lets running ones finish. Score leases go to
// the Scorer; train leases (fine-tuning shards) to the Trainer, on central data shipped with the lease or on one of
// the worker's own datasets. A bundle whose input is `embedding:DIM` gets its rows from the worker's embedding server
// first (docs/scorers.md, "Embedding heads"); such leases count as bundle leases (they hold the pool's threads).
import {
  MAX_CREDIT,
  ProtocolError,
  Tensor,
  scorerWidth,
  type LeaseMessage,
  type ScoreItem,
  type ScoreTask,
  type TrainTask,
  type ResultPayload,
  type WorkerMessage,
} from '../shared/protocol/index.js';
import { ModelError, embeddingText, packedEmbeddingInput, unpackBundle, type EmbeddingInputSpec, type Manifest } from '../shared/model/index.js';
import { deriveSeed } from '../shared/random.js';
import { BlobError } from './blob-cache.js';
import { embedForModel } from './embed.js';
import { DatasetError, toTrainData, type Dataset } from './training/datasets.js';
import { embedTrainData } from './training/embed-data.js';
import type { LocalTrainResult, LocalTrainData } from './training/local-train.js';
import type { TrainShard } from './training/pool.js';
import type { ServerScorer as FullServerScorer } from './scorers/index.js';

/** One item as the scorer takes it: precomputed features, or the text the model's featurizer reads. */
export type ScorerItem = { features: Float32Array } | { prompt: string; response: string };

/** What the lease runner needs from a scoring pool (client/scoring/pool.ts provides the real one). */
export interface Scorer {
  /** One score per item, in item order. `bundle` is the packed model whose sha-256 is `hash`; do not modify it. */
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

/** Sets `key` as the most recent entry of an insertion-ordered LRU map of at most `limit` entries. */
function remember<V>(map: Map<string, V>, key: string, value: V, limit: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > limit) map.delete(map.keys().next().value as string);
}

/** The minibatch seed of a fine-tuning shard: a pure function of (model version, client), so any worker repeats it. */
export function trainSeed(modelVersion: number, client: number): number {
  return deriveSeed(modelVersion, 'train', client);
}

/**
 * Central rows/labels (the lease's tensors) → classification data. Labels must be class ids: int32 [n], or float32
 * [n] holding integers. Other label forms are not trainable yet (not retryable).
 */
export function centralTrainData(rows: Tensor, labels: Tensor): LocalTrainData {
  if (!(rows.data instanceof Float32Array)) throw new DatasetError(`central data: rows must be float32, got ${rows.dtype}`);
  if (labels.ndim !== 1) throw new DatasetError(`central data: labels ${labels.describe()} are not supported yet; send class ids [n]`);
  let ids: Int32Array;
  if (labels.data instanceof Int32Array) ids = labels.data;
  else {
    const values = labels.data;
    ids = new Int32Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (!Number.isInteger(v)) throw new DatasetError(`central data: label ${i} is ${v}, not a class id`);
      ids[i] = v;
    }
  }
  return { kind: 'classify', x: rows.data, labels: ids };
}

/** Central preference pairs (featurized by the submitter) as training data. */
export function centralPairsData(chosen: Tensor, rejected: Tensor): LocalTrainData {
  if (!(chosen.data instanceof Float32Array) || !(rejected.data instanceof Float32Array)) throw new DatasetError('central pairs: chosen and rejected must be float32');
  return { kind: 'pairs', chosen: chosen.data, rejected: rejected.data };
}

/** The label-flipping attack (docs/algorithms.md §2.2): class y → C − 1 − y; pairs train with chosen and rejected swapped. */
export function flipLabels(data: LocalTrainData, manifest: Manifest): LocalTrainData {
  if (data.kind === 'pairs') return { kind: 'pairs', chosen: data.rejected, rejected: data.chosen };
  const classes = manifest.output.kind === 'classes' ? manifest.output.classes : 0;
  return { kind: 'classify', x: data.x, labels: data.labels.map((y) => classes - 1 - y) };
}

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
  private readonly manifests = new Map<string, Manifest>();
  /** Per bundle hash: the embedding input its head reads, or null (any other bundle). */
  private readonly embeddingInputs = new Map<string, EmbeddingInputSpec | null>();
  private readonly trainData = new Map<string, Promise<LocalTrainData>>();
  private readonly momenta = new Map<string, Float32Array>();
  private readonly weights = new Map<string, Float32Array>();

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
    if (task.kind === 'train' && this.options.trainer === undefined) {
      this.sendFailure(channel, lease, `this worker does not run ${task.kind} tasks`, true);
      return;
    }
    const wanted = task.kind === 'score' ? task.scorer : undefined;
    if (wanted !== undefined) {
      const server = this.options.server;
      if (server === undefined || server.model !== wanted.model || server.output !== wanted.output) {
        const have = server === undefined ? 'no inference server' : `${server.api} serving ${server.model}`;
        this.sendFailure(channel, lease, `this worker has ${have}, the task needs ${wanted.output} of ${wanted.model}`, true);
        return;
      }
    }
    this.held.set(lease.leaseId, { lease, task, channel, state: 'queued', cancelled: false, server: wanted !== undefined });
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
        let scores: Float32Array;
        let expected = size;
        if (task.scorer !== undefined) {
          started = performance.now();
          scores = await this.serverScores(task.items ?? [], task.scorer.output);
          expected = size * scorerWidth(task.scorer.output);
        } else {
          const hash = task.modelHash ?? '';
          const bundle = await channel.bundle(hash);
          const embedding = this.embeddingInput(hash, bundle);
          started = performance.now();
          const items = embedding === undefined ? taskScorerItems(task) : await this.embeddedItems(task, embedding);
          scores = await this.options.scorer.score(hash, bundle, items, task.batchSize);
        }
        this.items += size;
        this.computeMs += performance.now() - started;
        if (scores.length !== expected) {
          this.held.delete(lease.leaseId);
          if (!h.cancelled && channel.live) this.sendFailure(channel, lease, `scorer returned ${scores.length} values for ${size} items`, true);
          return;
        }
        payload = { kind: 'scores', scores: Tensor.float32(scores) };
      } else {
        const bundle = await channel.bundle(task.modelHash);
        started = performance.now();
        payload = await this.train(task, bundle, lease.jobId);
      }
      if (this.options.delayMs !== undefined && this.options.delayMs > 0) await sleep(this.options.delayMs);
      const elapsed = performance.now() - started;
      this.held.delete(lease.leaseId);
      if (h.cancelled || !channel.live) return;
      try {
        channel.send({ type: 'result', leaseId: lease.leaseId, shardId: lease.shardId, payload, elapsedMs: Math.round(elapsed) });
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
      if (h.server) this.runningServer--;
      if (this.running === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
      this.pump();
    }
  }

  /** A scorer task's text items through the inference server (checked to match the task when the lease came). */
  private async serverScores(items: readonly ScoreItem[], output: 'reward' | 'logprobs'): Promise<Float32Array> {
    const server = this.options.server;
    if (server === undefined || server.output !== output) throw new Error(`this worker has no inference server for ${output}`);
    return server.score(items.map((item) => ({ prompt: item.prompt ?? '', response: item.response ?? '' })));
  }

  /** The embedding input of a bundle's head, or undefined (read once per hash from its manifest alone). */
  private embeddingInput(hash: string, bundle: Uint8Array): EmbeddingInputSpec | undefined {
    let input = this.embeddingInputs.get(hash);
    if (input === undefined) {
      input = packedEmbeddingInput(bundle) ?? null;
      remember(this.embeddingInputs, hash, input, 8);
    }
    return input ?? undefined;
  }

  /** A score task's text items as the embedding rows the head reads: embeddingText(prompt, response) through the server. */
  private async embeddedItems(task: ScoreTask, input: EmbeddingInputSpec): Promise<ScorerItem[]> {
    const items = task.items ?? [];
    const bad = task.matrix !== undefined ? 0 : items.findIndex((item) => item.features !== undefined);
    if (bad >= 0) throw new ModelError(`item ${bad}: this model reads embeddings of ${input.model}, computed here from prompt and response; the item has features`);
    const rows = await embedForModel(this.options.server, input, items.map((item) => embeddingText(item.prompt ?? '', item.response ?? '')));
    return items.map((_, i) => ({ features: rows.subarray(i * input.dim, (i + 1) * input.dim) }));
  }

  /** The bundle's manifest, parsed once per model hash. */
  private manifest(hash: string, bundle: Uint8Array): Manifest {
    let m = this.manifests.get(hash);
    if (m === undefined) {
      m = unpackBundle(bundle).manifest;
      remember(this.manifests, hash, m, 8);
    }
    return m;
  }

  /** A worker dataset as training data for one model: featurized (or embedded) once per (dataset, model). */
  private workerData(name: string, hash: string, manifest: Manifest): Promise<LocalTrainData> {
    const key = `${name}\0${hash}`;
    let data = this.trainData.get(key);
    if (data === undefined) {
      const datasets = this.options.datasets;
      if (datasets === undefined) return Promise.reject(new DatasetError(`no dataset ${name} on this worker`));
      const input = manifest.input;
      data = (async () => {
        const dataset = await datasets.get(name);
        if (input.kind !== 'embedding') return toTrainData(dataset, manifest);
        // The rows are embedded through this worker's own server: the text never leaves it.
        return embedTrainData(dataset, { ...manifest, input }, (texts) => embedForModel(this.options.server, input, texts));
      })();
      remember(this.trainData, key, data, 8);
      const loading = data;
      loading.catch(() => {
        if (this.trainData.get(key) === loading) this.trainData.delete(key);
      });
    }
    return data;
  }

  /**
   * One fine-tuning shard. Momentum (MoNNA): central data (virtual clients) → the lease's momentum in, the new
   * momentum out (the coordinator keeps it between rounds, so the client can move between workers). A worker's own
   * dataset → the momentum stays here, keyed by (job, dataset, model hash): two jobs on the same dataset and model
   * never share one; a lease that carries momentum overrides it, and then the new momentum is sent back too.
   */
  private async train(task: TrainTask, bundle: Uint8Array, jobId: string): Promise<Extract<ResultPayload, { kind: 'update' }>> {
    const trainer = this.options.trainer;
    if (trainer === undefined) throw new Error('this worker does not run train tasks');
    const manifest = this.manifest(task.modelHash, bundle);
    const source = task.data;
    let data: LocalTrainData;
    if (source.source === 'central') data = centralTrainData(source.rows, source.labels);
    else if (source.source === 'central-pairs') data = centralPairsData(source.chosen, source.rejected);
    else data = await this.workerData(source.name, task.modelHash, manifest);
    if (task.flipLabels === true) data = flipLabels(data, manifest);
    const momentumKey = source.source === 'worker' ? `${jobId}\0${source.name}\0${task.modelHash}` : undefined;
    // Coordinator-held clients (rows or pairs) carry their momentum with the shard; a worker's own dataset keeps it here.
    const sendMomentum = source.source !== 'worker' || task.momentum !== undefined;
    const initialMomentum = task.momentum?.data instanceof Float32Array ? task.momentum.data : momentumKey === undefined ? undefined : this.momenta.get(momentumKey);
    const weights = this.weightsFor(task);
    const shard: TrainShard = {
      hash: task.modelHash,
      bundle,
      data,
      opts: {
        steps: task.local.steps,
        batchSize: task.local.batchSize,
        lr: task.local.lr,
        momentum: task.local.momentum,
        seed: trainSeed(task.modelVersion, task.client),
        // A worker dataset's momentum is kept here even when it is not sent.
        sendMomentum: sendMomentum || momentumKey !== undefined,
      },
      ...(weights === undefined ? {} : { weights }),
      ...(initialMomentum === undefined ? {} : { momentum: initialMomentum }),
    };
    let result: LocalTrainResult;
    try {
      result = await trainer.train(shard);
    } catch (e) {
      // The pool rejects bad options, weights or data with RangeErrors (ModelError is one): no retry can fix them.
      if (e instanceof RangeError) Object.assign(e, { retryable: false });
      throw e;
    }
    if (momentumKey !== undefined && result.momentum !== undefined) remember(this.momenta, momentumKey, result.momentum, 64);
    return {
      kind: 'update',
      update: Tensor.float32(result.update),
      ...(sendMomentum && result.momentum !== undefined ? { momentum: Tensor.float32(result.momentum) } : {}),
      samples: result.samples,
      loss: result.loss,
      baseVersion: task.modelVersion,
    };
  }

  /**
   * The weights a lease trains from: its own, else the last ones received for that model@version (the coordinator
   * may omit weights the worker already holds), else the bundle's (undefined).
   */
  private weightsFor(task: TrainTask): Float32Array | undefined {
    const key = `${task.modelHash}@${task.modelVersion}`;
    const sent = task.weights?.data;
    if (sent instanceof Float32Array) {
      remember(this.weights, key, sent, 2);
      return sent;
    }
    return this.weights.get(key);
  }

  private sendFailure(channel: LeaseChannel, lease: LeaseMessage, reason: string, retryable: boolean): void {
    try {
      channel.send({ type: 'failure', leaseId: lease.leaseId, shardId: lease.shardId, reason: reason.slice(0, 4096), retryable });
    } catch (e) {
      this.log.warn(`cannot report failure of lease ${lease.leaseId}: ${errorText(e)}`);
    }
  }
}
