// Score jobs (docs/architecture.md, "The path of a score shard"): a submitted job's items are split into shards in
// the state store, the shards go into the lease table, each completed shard's scores are journaled to the store in
// batches, and HTTP readers wait for the in-order prefix to grow.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { readTextItems } from '../shared/data/text-blob.js';
import { packedManifest } from '../shared/model/bundle.js';
import { scoreWidth, type Manifest } from '../shared/model/manifest.js';
import { ProtocolError, Tensor, assertTensor, scorerOutputOf, scorerWidth, type Capabilities, type LeaseMessage, type ResultMessage, type ScoreItem } from '../shared/protocol/index.js';
import type { BlobStore } from './blobs.js';
import type { JobService, OutgoingLease, ServiceHost, ShardHooks, ShardOutput } from './job-service.js';
import { shardBytes, shardsOf, type JobColumns, type JobRequest } from './jobs.js';
import { ItemBlobError, checkFeaturesBlob, checkTextBlob } from './item-blobs.js';
import type { WorkerRegistry } from './worker-registry.js';
import { tally } from './quorum.js';
import { type Grant, type JobProgress, type JobStateEvent, type LeaseView, type ShardDoneEvent, type ShardLostEvent } from './scheduler.js';
import { isTerminal, type ShardItems, type JobRecord, type JobSpec, type JobState, type JobStatusBase, type ResultStats, type ShardResult, type Store, type JobUpdate, type StoredShardResult } from './store.js';

/**
 * The key a worker must offer to take a job's shards: the scorer's output and model for scorer jobs,
 * `embedding:MODEL` for a bundle whose head reads that embedding model's vectors, '' for other bundles.
 */
export function jobKey(spec: Pick<JobSpec, 'scorer' | 'embedding'>): string {
  if (spec.scorer !== undefined) return `${spec.scorer.output}:${spec.scorer.model}`;
  return spec.embedding === undefined ? '' : `embedding:${spec.embedding}`;
}

/** The key of training shards on central data (any worker that trains). */
export const TRAIN_KEY = 'train';

/** The job keys a worker serves: bundle jobs if it scores at all, its inference server's model, and training if it trains. */
export function workerOffers(capabilities: Capabilities): string[] {
  const offers: string[] = [];
  if (capabilities.tasks.includes('score')) {
    offers.push('');
    const scorer = capabilities.scorer;
    if (scorer !== undefined) offers.push(`${scorerOutputOf(scorer.api)}:${scorer.model}`);
  }
  if (capabilities.tasks.includes('train')) offers.push(TRAIN_KEY);
  return offers;
}

/**
 * Why an unfinished job cannot make progress with the workers connected now (GET /api/jobs/:id `waiting`), or
 * undefined when it can: `offers` is how many connected workers can take its shards.
 */
function waitingFor(spec: JobSpec, offers: number): string | undefined {
  if (offers === 0) {
    if (spec.scorer !== undefined) return `no connected worker serves ${spec.scorer.output === 'logprobs' ? 'log-probs of' : 'scorer'} ${spec.scorer.model}`;
    if (spec.embedding !== undefined) return `no connected worker serves embeddings of ${spec.embedding}`;
    return 'no connected worker scores model bundles';
  }
  if (spec.redundancy > offers) return `--redundancy ${spec.redundancy} needs ${spec.redundancy} workers that can take it; ${offers} connected`;
  return undefined;
}

/** A packed bundle's manifest, or undefined when the bytes are not a readable bundle. */
function readableManifest(bundle: Uint8Array): Manifest | undefined {
  try {
    return packedManifest(bundle);
  } catch {
    return undefined;
  }
}

/** Values per item in a job's results. */
export function jobWidth(spec: Pick<JobSpec, 'scorer' | 'classes'>): number {
  return spec.scorer !== undefined ? scorerWidth(spec.scorer.output) : (spec.classes ?? 1);
}

/** The public view of a job (GET /api/jobs/:id). */
export interface ScoreJobStatus extends JobStatusBase {
  kind: 'score';
  /** Jobs scored by inference servers: the model they must serve and what they compute. */
  scorer?: { model: string; output: 'reward' | 'logprobs' };
  /** A bundle over embeddings: the embedding model its workers' inference servers must serve. */
  embedding?: string;
  /** A classifier of C ≥ 3 classes: each item's result is its C class probabilities. */
  classes?: number;
  /** Set while the connected workers cannot take it (none of the kind it needs, fewer than its redundancy): why it waits. */
  waiting?: string;
  shardSize: number;
  /** R, or 'adaptive' (spot checks). */
  redundancy: number | 'adaptive';
  /** Redundant results agree within this relative tolerance. */
  agreeTol: number;
  batchSize: number;
  shards: { done: number; total: number };
  /** Shards whose redundant results disagreed (redundancy > 1). */
  disagreements: number;
  /** Results that counted, over the shards done (R per shard without disagreement). */
  replicas: number;
  /** Items no quorum settled (docs/security.md, "Redundancy that verifies"). */
  disputed: number;
}

/** `--agree-tol` when a job does not say. */
export const DEFAULT_AGREE_TOL = 1e-4;

export class SubmitError extends Error {}

interface JobEntry {
  record: JobRecord;
  /** Progress of a job the lease table does not hold (restored in a terminal state). */
  frozen?: JobProgress;
  /** Redundancy figures of the shards done before this process took the job over (restored from the store). */
  before?: ResultStats;
}

function progressFromDone(spec: JobSpec, state: JobState, done: readonly number[], stats: ResultStats): JobProgress {
  const totalShards = Math.ceil(spec.items / spec.shardSize);
  const size = (i: number): number => Math.min(spec.shardSize, spec.items - i * spec.shardSize);
  let doneItems = 0;
  for (const i of done) doneItems += size(i);
  let prefix = 0;
  let prefixItems = 0;
  while (prefix < done.length && done[prefix] === prefix) prefixItems += size(prefix++);
  return { state, doneItems, totalItems: spec.items, doneShards: done.length, totalShards, prefixShards: prefix, prefixItems, leases: 0, ...stats };
}

const scoresOf = (o: ShardOutput): Float32Array | undefined => (o.kind === 'scores' ? o.scores.data : undefined);

export interface ScoreJobsHost extends ServiceHost {
  store: Store;
  workers: WorkerRegistry;
  blobs: BlobStore;
  log: Logger;
  now: () => number;
  maxFrameBytes: number;
  leaseMs: number;
}

export class ScoreJobs implements JobService<ScoreJobStatus> {
  /** Called when a job ends in this process (for metrics). */
  onJobEnd: ((record: JobRecord) => void) | undefined;

  private readonly jobs = new Map<string, JobEntry>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private pendingResults: ShardResult[] = [];
  private pendingJobs: JobUpdate[] = [];
  private flushScheduled = false;
  private closed = false;

  constructor(private readonly host: ScoreJobsHost) {}

  private addToTable(record: JobRecord, done?: readonly number[]): void {
    const { spec } = record;
    const width = jobWidth(spec);
    const tolerance = spec.agreeTol ?? DEFAULT_AGREE_TOL;
    const hooks: ShardHooks = {
      fits: (o, count) => scoresOf(o)?.length === count * width,
      // Replies are tallied item by item (quorum.ts); fits() admits only scores, so every reply has them.
      tally: (replies, quorum) => {
        const t = tally(replies.map((r) => scoresOf(r) ?? new Float32Array(0)), width, quorum, tolerance);
        return { ...t, value: { kind: 'scores', scores: Tensor.float32(t.value) } };
      },
    };
    this.host.register(record.id, this);
    this.host.table.addJob({
      id: record.id, items: spec.items, shardSize: spec.shardSize, redundancy: spec.redundancy, needs: jobKey(spec), width, hooks, tolerance,
      ...(spec.adaptive === true ? { adaptive: true } : {}),
      ...(done === undefined ? {} : { done }),
    });
  }

  /** Loads jobs from the store; unfinished ones go back to the queue with their done shards kept. */
  restore(): { resumed: number; total: number } {
    let resumed = 0;
    const records = this.host.store.listJobs();
    for (const record of records) {
      const entry: JobEntry = { record };
      this.jobs.set(record.id, entry);
      const done = this.host.store.doneShards(record.id);
      if (isTerminal(record.state)) {
        entry.frozen = progressFromDone(record.spec, record.state, done, this.host.store.resultStats(record.id));
        continue;
      }
      entry.before = this.host.store.resultStats(record.id);
      resumed++;
      record.state = done.length > 0 ? 'running' : 'queued';
      this.addToTable(record, done);
    }
    this.flush();
    return { resumed, total: records.length };
  }

  // ---- jobs ----------------------------------------------------------------------------------

  /** `owner`: the submitter's owner id (auth.ts), or null when the submitter role is open. */
  async submit(request: JobRequest, form: JobSpec['form'], dim: number, columns: JobColumns, owner: string | null = null): Promise<JobRecord> {
    if (this.closed) throw new SubmitError('the coordinator is shutting down');
    let embedding: string | undefined;
    let classes: number | undefined;
    if (request.model !== undefined) {
      const bundle = this.host.blobs.read(request.model);
      if (bundle === undefined) throw new SubmitError(`model: unknown blob ${request.model}; upload it first (PUT /api/blobs/${request.model})`);
      // A head over embeddings needs a worker whose server serves its embedding model, and the text to embed.
      const manifest = readableManifest(bundle);
      const input = manifest?.input;
      const width = manifest === undefined ? 1 : scoreWidth(manifest.output);
      if (width > 1) classes = width;
      embedding = input?.kind === 'embedding' ? input.model : undefined;
      if (embedding !== undefined && form !== 'text') {
        throw new SubmitError(`items: this model reads embeddings of ${embedding}, which its workers compute from text: send prompt and response, not features`);
      }
      // Items the model cannot read are refused now, not at the first worker (a bundle that cannot be read at all is
      // left to the workers, which report what is wrong with it).
      if (input?.kind === 'features' && form === 'features' && dim !== input.dim) {
        throw new SubmitError(`items: features have ${dim} values, the model takes ${input.dim}`);
      }
      if (input?.kind === 'features' && form === 'text') throw new SubmitError(`items: the model takes features:${input.dim}; send features, not prompt and response`);
      if (input?.kind === 'text' && form === 'features') throw new SubmitError(`items: the model reads text (text:${input.dim}); send prompt and response, not features`);
    }
    const { featuresBlob, textBlob } = columns;
    const n = columns.ids.length;
    let textEnds: Uint32Array | undefined;
    try {
      if (featuresBlob !== undefined) await checkFeaturesBlob(this.host.blobs, featuresBlob, n, dim);
      if (textBlob !== undefined) textEnds = await checkTextBlob(this.host.blobs, textBlob, n);
    } catch (e) {
      if (e instanceof ItemBlobError) throw new SubmitError(e.message);
      throw e;
    }
    const id = `j${this.host.now().toString(36)}${randomBytes(4).toString('hex')}`;
    const spec: JobSpec = {
      kind: 'score', ...(request.model === undefined ? {} : { model: request.model }), ...(request.scorer === undefined ? {} : { scorer: request.scorer }),
      ...(embedding === undefined ? {} : { embedding }),
      ...(classes === undefined ? {} : { classes }),
      items: columns.ids.length, shardSize: request.shardSize, redundancy: request.redundancy === 'adaptive' ? 1 : request.redundancy,
      ...(request.redundancy === 'adaptive' ? { adaptive: true } : {}), ...(request.agreeTol === undefined ? {} : { agreeTol: request.agreeTol }),
      batchSize: request.batchSize, form, dim, ...(featuresBlob === undefined ? {} : { featuresBlob }), ...(textBlob === undefined ? {} : { textBlob }),
    };
    const record: JobRecord = { id, spec, state: 'queued', createdAt: this.host.now(), ...(owner === null ? {} : { owner }) };
    const maxFrameBytes = this.host.maxFrameBytes;
    // Shards are built, checked against the frame limit and written a batch at a time, yielding to the event loop in
    // between (a 250 MB job is seconds of work); the job exists once its last shard is written (store.ts).
    const shards = (function* (): Generator<ShardItems> {
      let start = 0;
      for (const shard of shardsOf(columns, request.shardSize, dim)) {
        // Items in blobs are not in the shard: their bytes count from the blob's layout.
        const end = start + shard.ids.length;
        const text = textEnds === undefined ? 0 : (textEnds[2 * end - 1] as number) - (start === 0 ? 0 : (textEnds[2 * start - 1] as number));
        const bytes = shardBytes(shard) + (featuresBlob === undefined ? 0 : shard.ids.length * dim * 4) + text;
        start = end;
        if (bytes > maxFrameBytes) {
          throw new SubmitError(`shardSize: a shard would need about ${bytes} bytes, more than the ${maxFrameBytes}-byte frame limit; use a smaller shardSize`);
        }
        yield shard;
      }
    })();
    await this.host.store.createJobInSteps(record, shards, request.meta, () => new Promise<void>((resolve) => setImmediate(resolve)));
    // Written whole: the job exists now (a coordinator closing meanwhile resumes it at its next start).
    this.jobs.set(id, { record });
    this.addToTable(record);
    this.host.log.info({ job: id, items: spec.items, shards: Math.ceil(spec.items / spec.shardSize), redundancy: spec.redundancy }, 'job submitted');
    this.host.pump();
    return record;
  }

  cancel(id: string): boolean {
    if (!this.jobs.has(id)) return false;
    const ok = this.host.table.cancel(id);
    if (ok) this.host.pump();
    return ok;
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  failJobsUsing(hash: string, error: string): void {
    for (const { record } of this.jobs.values()) {
      const { model, featuresBlob, textBlob } = record.spec;
      if ((model === hash || featuresBlob === hash || textBlob === hash) && !isTerminal(record.state)) this.host.table.failJob(record.id, error);
    }
  }

  ownerOf(id: string): string | null | undefined {
    const record = this.jobs.get(id)?.record;
    return record === undefined ? undefined : (record.owner ?? null);
  }

  forget(id: string): void {
    const entry = this.jobs.get(id);
    if (entry === undefined || !isTerminal(entry.record.state)) return;
    this.jobs.delete(id);
    this.wake(id);
  }

  progress(id: string): JobProgress | undefined {
    const entry = this.jobs.get(id);
    if (entry === undefined) return undefined;
    return entry.frozen ?? this.host.table.progress(id);
  }

  status(id: string): ScoreJobStatus | undefined {
    const entry = this.jobs.get(id);
    const p = this.progress(id);
    if (entry === undefined || p === undefined) return undefined;
    const { record } = entry;
    const s: ScoreJobStatus = {
      id: record.id, kind: record.spec.kind, state: record.state, progress: { done: p.doneItems, total: p.totalItems },
      createdAt: new Date(record.createdAt).toISOString(), shardSize: record.spec.shardSize,
      redundancy: record.spec.adaptive === true ? 'adaptive' : record.spec.redundancy, agreeTol: record.spec.agreeTol ?? DEFAULT_AGREE_TOL,
      batchSize: record.spec.batchSize, shards: { done: p.doneShards, total: p.totalShards },
      disagreements: p.disagreements + (entry.before?.disagreements ?? 0),
      replicas: p.replies + (entry.before?.replies ?? 0),
      disputed: p.disputed + (entry.before?.disputed ?? 0),
    };
    if (record.spec.model !== undefined) s.model = record.spec.model;
    if (record.spec.scorer !== undefined) s.scorer = record.spec.scorer;
    if (record.spec.embedding !== undefined) s.embedding = record.spec.embedding;
    if (record.spec.classes !== undefined) s.classes = record.spec.classes;
    const waiting = isTerminal(record.state) ? undefined : waitingFor(record.spec, this.host.table.offerCount(jobKey(record.spec)));
    if (waiting !== undefined) s.waiting = waiting;
    if (record.finishedAt !== undefined) s.finishedAt = new Date(record.finishedAt).toISOString();
    if (record.error !== undefined) s.error = record.error;
    return s;
  }

  /** The job's spec (what its results hold per item), undefined for an unknown job. */
  specOf(id: string): JobSpec | undefined {
    return this.jobs.get(id)?.record.spec;
  }

  /** The submitter's meta stored with the job, as JSON text. */
  metaJson(id: string): string | undefined {
    return this.host.store.jobMetaJson(id);
  }

  list(): ScoreJobStatus[] {
    const out: ScoreJobStatus[] = [];
    for (const id of this.jobs.keys()) {
      const s = this.status(id);
      if (s !== undefined) out.push(s);
    }
    return out;
  }

  /** Completed shards in [from, to), read back from the store (pending writes are flushed first). */
  readResults(id: string, from: number, to: number): StoredShardResult[] {
    this.flush();
    return this.host.store.readResults(id, from, to);
  }

  /** Resolves at the job's next completed shard or state change (or when the service closes). */
  waitForChange(id: string): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      let set = this.waiters.get(id);
      if (set === undefined) this.waiters.set(id, (set = new Set()));
      set.add(resolve);
    });
  }

  // ---- leases --------------------------------------------------------------------------------

  lease(grant: Grant): OutgoingLease {
    const record = this.jobs.get(grant.jobId)?.record;
    if (record === undefined) throw new Error(`unknown job ${grant.jobId}`);
    const message: LeaseMessage = {
      type: 'lease', leaseId: grant.leaseId, shardId: grant.shardId, jobId: grant.jobId, deadline: grant.deadline, attempt: grant.attempt,
      task: {
        kind: 'score',
        ...(record.spec.scorer === undefined ? { modelHash: record.spec.model } : { scorer: record.spec.scorer }),
        batchSize: record.spec.batchSize,
        ...this.shardPayload(record, grant.shardIndex),
      },
    };
    return { message };
  }

  /**
   * Feature shards travel as one matrix (the store, or the job's features blob, holds them row-major); text shards as
   * items (from the store, or read from the job's text blob).
   */
  private shardPayload(record: JobRecord, index: number): { matrix: { ids: string[]; features: Tensor<'float32'> } } | { items: ScoreItem[] } {
    const shard = this.host.store.shardItems(record.id, index);
    if (shard === undefined) throw new Error(`shard ${index} of job ${record.id} is missing from the state store`);
    let { features, prompts, responses } = shard;
    const { featuresBlob, textBlob, dim, shardSize, items } = record.spec;
    if (textBlob !== undefined) {
      const from = index * shardSize;
      ({ prompts, responses } = readTextItems((offset, length) => this.host.blobs.readRange(textBlob, offset, length), items, from, from + shard.ids.length));
    }
    if (featuresBlob !== undefined) {
      // The shard's rows, straight from the blob file: one read, into an aligned array of its own.
      const bytes = this.host.blobs.readRange(featuresBlob, index * shardSize * dim * 4, shard.ids.length * dim * 4);
      if (bytes.byteLength !== shard.ids.length * dim * 4) throw new Error(`blob ${featuresBlob} of job ${record.id} is shorter than its items`);
      features = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
    }
    if (features !== undefined) return { matrix: { ids: shard.ids, features: Tensor.float32(features, [shard.ids.length, record.spec.dim]) } };
    return { items: shard.ids.map((id, i) => ({ id, prompt: prompts?.[i] ?? '', response: responses?.[i] ?? '' })) };
  }

  check(lease: LeaseView, m: ResultMessage): void {
    if (lease.shardId !== m.shardId) {
      throw new ProtocolError('invalid-field', `invalid field "shardId": lease ${m.leaseId} is for shard ${lease.shardId}`, { path: 'shardId' });
    }
    if (m.payload.kind !== 'scores') throw new ProtocolError('invalid-field', 'invalid field "payload.kind": a score lease needs "scores"', { path: 'payload.kind' });
    assertTensor(m.payload.scores, 'float32', [lease.count * lease.width], 'payload.scores');
  }

  counted(workerId: string, lease: LeaseView, elapsedMs: number | undefined): void {
    const wall = this.host.now() - (lease.deadline - this.host.leaseMs);
    this.host.workers.recordResult(workerId, lease.count, elapsedMs !== undefined && elapsedMs > 0 ? elapsedMs : wall);
  }

  // ---- lease-table events → journal, waiters -------------------------------------------------

  shardDone(e: ShardDoneEvent<ShardOutput>): void {
    const scores = scoresOf(e.result);
    if (scores === undefined) return; // fits() admits scores only
    this.pendingResults.push({ jobId: e.jobId, index: e.index, scores, agreed: e.agreed, disputed: e.disputed, replies: e.replies });
    this.scheduleFlush();
    this.wake(e.jobId);
  }

  shardLost(_e: ShardLostEvent): void {
    // Score shards are re-queued until their job fails (no retry hook): never given up alone.
  }

  jobState(e: JobStateEvent): void {
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
      this.host.log.info({ job: e.jobId, state: e.state, error: e.error }, 'job ended');
      this.onJobEnd?.(record);
    }
    this.pendingJobs.push(update);
    this.scheduleFlush();
    this.wake(e.jobId);
  }

  pump(): void {
    // Score jobs put all their shards in the table at submission.
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
      this.host.store.apply(batch);
    } catch (e) {
      // Keep the batch for the next attempt rather than lose results.
      this.pendingResults = batch.results.concat(this.pendingResults);
      this.pendingJobs = batch.jobs.concat(this.pendingJobs);
      this.host.log.error({ err: e instanceof Error ? e.message : String(e) }, 'cannot write to the state store');
    }
  }

  /** Writes everything pending and wakes all readers. The store is closed by its owner. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    for (const id of [...this.waiters.keys()]) this.wake(id);
  }
}
