import { stringifyInSteps } from './json-steps.js';
import { isTerminal, type BlobWriter, type JobRecord, type JobUpdate, type ResultStats, type ShardItems, type Store, type StoreBatch, type StoredShardResult, type TrainCheckpoint, type TrainJobRecord } from './store.js';

interface MemoryJob {
  record: JobRecord;
  shards: ShardItems[];
  results: ({ scores: Float32Array; agreed: boolean; disputed: number[]; replies: number } | undefined)[];
}

/** The store behind `--state :memory:`: same contract as SQLite, gone on exit. */
export class MemoryStore implements Store {
  readonly durable = false;
  private readonly jobs = new Map<string, MemoryJob>();
  private readonly blobs = new Map<string, Uint8Array<ArrayBuffer>>();
  /** When each blob was stored (ms since the epoch), as a file's modification time. */
  private readonly blobTimes = new Map<string, number>();
  private closed = false;

  /** As JSON text, as in SQLite. */
  private readonly meta = new Map<string, string>();
  /** Insertion order is submission order. */
  private readonly trainJobs = new Map<string, TrainJobRecord>();
  private readonly checkpoints = new Map<string, TrainCheckpoint>();

  reclaimed(): Promise<void> {
    return Promise.resolve();
  }

  async createJobInSteps(job: JobRecord, shards: Iterable<ShardItems>, meta: unknown, pause: () => Promise<void>): Promise<void> {
    // Shards are built (and checked) in steps; the job appears whole, as in SQLite.
    const all: ShardItems[] = [];
    for (const shard of shards) if (all.push(shard) % 256 === 0) await pause();
    this.insert(job, all, meta === undefined ? undefined : await stringifyInSteps(meta, pause));
  }

  createJob(job: JobRecord, shards: readonly ShardItems[], meta?: unknown): void {
    this.insert(job, shards, meta === undefined ? undefined : JSON.stringify(meta));
  }

  private insert(job: JobRecord, shards: readonly ShardItems[], metaJson: string | undefined): void {
    this.open();
    if (this.jobs.has(job.id)) throw new Error(`job ${job.id} already exists`);
    if (metaJson !== undefined) this.meta.set(job.id, metaJson);
    this.jobs.set(job.id, { record: { ...job }, shards: [...shards], results: new Array<undefined>(shards.length).fill(undefined) });
  }

  jobMetaJson(jobId: string): string | undefined {
    this.open();
    return this.meta.get(jobId);
  }

  listJobs(): JobRecord[] {
    this.open();
    return [...this.jobs.values()].map((j) => ({ ...j.record }));
  }

  shardItems(jobId: string, index: number): ShardItems | undefined {
    this.open();
    return this.jobs.get(jobId)?.shards[index];
  }

  resultStats(jobId: string): ResultStats {
    this.open();
    const out: ResultStats = { disagreements: 0, disputed: 0, replies: 0 };
    for (const r of this.jobs.get(jobId)?.results ?? []) {
      if (r === undefined) continue;
      if (!r.agreed) out.disagreements++;
      out.disputed += r.disputed.length;
      out.replies += r.replies;
    }
    return out;
  }

  doneShards(jobId: string): number[] {
    this.open();
    const job = this.jobs.get(jobId);
    const out: number[] = [];
    job?.results.forEach((r, i) => {
      if (r !== undefined) out.push(i);
    });
    return out;
  }

  readResults(jobId: string, from: number, to: number): StoredShardResult[] {
    this.open();
    const job = this.jobs.get(jobId);
    if (job === undefined) return [];
    const out: StoredShardResult[] = [];
    for (let i = Math.max(0, from); i < Math.min(to, job.results.length); i++) {
      const r = job.results[i];
      const items = job.shards[i];
      if (r !== undefined && items !== undefined) out.push({ index: i, ids: items.ids, ...r });
    }
    return out;
  }

  apply(batch: StoreBatch): void {
    this.open();
    // Validate everything first so a bad batch changes nothing (the SQLite transaction's semantics).
    for (const r of batch.results) {
      const job = this.jobs.get(r.jobId);
      if (job === undefined || r.index < 0 || r.index >= job.shards.length) throw new Error(`no shard ${r.jobId}:${r.index}`);
    }
    for (const u of batch.jobs) if (!this.jobs.has(u.id)) throw new Error(`no job ${u.id}`);
    for (const r of batch.results) {
      const job = this.jobs.get(r.jobId);
      if (job !== undefined) job.results[r.index] = { scores: r.scores, agreed: r.agreed, disputed: r.disputed, replies: r.replies };
    }
    for (const u of batch.jobs) {
      const job = this.jobs.get(u.id);
      if (job === undefined) continue;
      job.record.state = u.state;
      if (u.finishedAt !== undefined) job.record.finishedAt = u.finishedAt;
      if (u.error !== undefined) job.record.error = u.error;
    }
  }

  deleteJobs(ids: readonly string[]): { deleted: string[]; blobs: string[] } {
    this.open();
    const deleted: string[] = [];
    const blobs = new Set<string>();
    for (const id of ids) {
      let found = false;
      const job = this.jobs.get(id);
      if (job !== undefined && isTerminal(job.record.state)) {
        this.jobs.delete(id);
        this.meta.delete(id);
        for (const hash of [job.record.spec.model, job.record.spec.featuresBlob, job.record.spec.textBlob]) if (hash !== undefined) blobs.add(hash);
        found = true;
      }
      const train = this.trainJobs.get(id);
      if (train !== undefined && isTerminal(train.state)) {
        this.trainJobs.delete(id);
        this.checkpoints.delete(id);
        for (const hash of [train.model, train.data, train.eval]) if (hash !== undefined) blobs.add(hash);
        found = true;
      }
      if (found) deleted.push(id);
    }
    return { deleted, blobs: [...blobs] };
  }

  blobsInUse(): Set<string> {
    this.open();
    const used = new Set<string>();
    for (const { record } of this.jobs.values()) {
      for (const hash of [record.spec.model, record.spec.featuresBlob, record.spec.textBlob]) if (hash !== undefined) used.add(hash);
    }
    for (const t of this.trainJobs.values()) for (const hash of [t.model, t.data, t.eval]) if (hash !== undefined) used.add(hash);
    return used;
  }

  listBlobs(): Array<{ hash: string; storedAt: number }> {
    return [...this.blobs.keys()].map((hash) => ({ hash, storedAt: this.blobTimes.get(hash) ?? 0 }));
  }

  createTrainJob(job: TrainJobRecord): void {
    this.open();
    if (this.trainJobs.has(job.id)) throw new Error(`train job ${job.id} already exists`);
    // A JSON round trip, as SQLite stores it: callers can't mutate the stored config, and what comes back is plain JSON.
    const config = JSON.stringify(job.config);
    if (config === undefined) throw new Error(`train job ${job.id}: config is not JSON`);
    const record: TrainJobRecord = { id: job.id, state: job.state, createdAt: job.createdAt, model: job.model, config: JSON.parse(config) as unknown };
    if (job.finishedAt !== undefined) record.finishedAt = job.finishedAt;
    if (job.error !== undefined) record.error = job.error;
    if (job.data !== undefined) record.data = job.data;
    if (job.eval !== undefined) record.eval = job.eval;
    if (job.owner !== undefined) record.owner = job.owner;
    this.trainJobs.set(job.id, record);
  }

  updateTrainJob(update: JobUpdate): void {
    this.open();
    const job = this.trainJobs.get(update.id);
    if (job === undefined) throw new Error(`no job ${update.id}`);
    job.state = update.state;
    if (update.finishedAt !== undefined) job.finishedAt = update.finishedAt;
    if (update.error !== undefined) job.error = update.error;
  }

  listTrainJobs(): TrainJobRecord[] {
    this.open();
    return [...this.trainJobs.values()].map((j) => structuredClone(j));
  }

  saveTrainCheckpoint(jobId: string, checkpoint: TrainCheckpoint): void {
    this.open();
    if (!this.trainJobs.has(jobId)) throw new Error(`no job ${jobId}`);
    // Kept as handed over (see Store.saveTrainCheckpoint); reads still hand out copies.
    this.checkpoints.set(jobId, { step: checkpoint.step, state: checkpoint.state, metrics: checkpoint.metrics });
  }

  trainCheckpoint(jobId: string): TrainCheckpoint | undefined {
    this.open();
    const c = this.checkpoints.get(jobId);
    return c === undefined ? undefined : { step: c.step, state: new Uint8Array(c.state), metrics: c.metrics };
  }

  hasBlob(hash: string): boolean {
    return this.blobs.has(hash);
  }

  blobSize(hash: string): number | undefined {
    return this.blobs.get(hash)?.byteLength;
  }

  putBlob(hash: string, chunks: readonly Uint8Array[]): void {
    this.open();
    if (this.blobs.has(hash)) return;
    let total = 0;
    for (const c of chunks) total += c.byteLength;
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.byteLength;
    }
    this.blobs.set(hash, bytes);
    this.blobTimes.set(hash, Date.now());
  }

  createBlobWriter(): BlobWriter {
    const chunks: Uint8Array[] = [];
    return {
      write: (chunk) => {
        chunks.push(chunk);
        return Promise.resolve();
      },
      commit: (hash) => {
        this.putBlob(hash, chunks);
        return Promise.resolve();
      },
      abort: () => {
        chunks.length = 0;
        return Promise.resolve();
      },
    };
  }

  blobStamp(hash: string): string | undefined {
    const bytes = this.blobs.get(hash);
    return bytes === undefined ? undefined : `memory:${bytes.byteLength}`;
  }

  deleteBlob(hash: string): void {
    this.blobs.delete(hash);
    this.blobTimes.delete(hash);
  }

  readBlob(hash: string, offset: number, length: number): Uint8Array<ArrayBuffer> {
    const bytes = this.blobs.get(hash);
    if (bytes === undefined) throw new Error(`no blob ${hash}`);
    return bytes.subarray(offset, Math.min(bytes.byteLength, offset + length));
  }

  close(): void {
    this.closed = true;
  }

  private open(): void {
    if (this.closed) throw new Error('store is closed');
  }
}
