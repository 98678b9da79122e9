import Database from 'better-sqlite3';
import * as z from 'zod';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { stringifyInSteps } from './json-steps.js';
import {
  JOB_STATES,
  type BlobWriter,
  type JobRecord,
  type JobSpec,
  type JobState,
  type JobUpdate,
  type ResultStats,
  type ShardItems,
  type Store,
  type StoreBatch,
  type StoredShardResult,
  type TrainCheckpoint,
  type TrainJobRecord,
} from './store.js';

/**
 * 2: jobs and train_jobs have an `owner` (tenancy); a version-1 file gains the columns, its jobs stay ownerless.
 * 3: shards have `disputed` (a JSON list of item offsets, or NULL) and `replies`; older rows read as undisputed.
 */
const SCHEMA_VERSION = 4;

/** Blob files kept open for reading (openBlob). */
const OPEN_BLOB_FILES = 16;

/** A job's meta is stored in parts of at most this many characters, each written in a step of its own. */
const META_PART_CHARS = 1 << 20;

function metaParts(json: string): string[] {
  const parts: string[] = [];
  for (let at = 0; at < json.length; ) {
    let end = Math.min(json.length, at + META_PART_CHARS);
    // Never between the two halves of a surrogate pair (each part is stored as UTF-8).
    const last = json.charCodeAt(end - 1);
    if (end < json.length && last >= 0xd800 && last <= 0xdbff) end--;
    parts.push(json.slice(at, end));
    at = end;
  }
  return parts;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  finished_at INTEGER,
  error TEXT,
  owner TEXT
);
CREATE TABLE IF NOT EXISTS shards (
  job_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  ids TEXT NOT NULL,
  texts TEXT,
  features BLOB,
  scores BLOB,
  agreed INTEGER,
  disputed TEXT,
  replies INTEGER,
  PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_meta (
  job_id TEXT PRIMARY KEY,
  json TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_meta_parts (
  job_id TEXT NOT NULL,
  part INTEGER NOT NULL,
  json TEXT NOT NULL,
  PRIMARY KEY (job_id, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending_jobs (
  job_id TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deleted_jobs (
  job_id TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS train_jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  finished_at INTEGER,
  error TEXT,
  model TEXT NOT NULL,
  config TEXT NOT NULL,
  data TEXT,
  eval TEXT,
  owner TEXT
);
CREATE TABLE IF NOT EXISTS train_checkpoints (
  job_id TEXT PRIMARY KEY,
  step INTEGER NOT NULL,
  state BLOB NOT NULL,
  metrics TEXT NOT NULL
) WITHOUT ROWID;
`;

interface JobRow {
  id: string;
  spec: string;
  state: string;
  created_at: number;
  finished_at: number | null;
  error: string | null;
  owner: string | null;
}

interface TrainJobRow {
  id: string;
  state: string;
  created_at: number;
  finished_at: number | null;
  error: string | null;
  model: string;
  config: string;
  data: string | null;
  eval: string | null;
  owner: string | null;
}

interface CheckpointRow {
  step: number;
  state: Buffer;
  metrics: string;
}

interface ItemsRow {
  ids: string;
  texts: string | null;
  features: Buffer | null;
}

interface ResultRow {
  idx: number;
  ids: string;
  scores: Buffer;
  agreed: number;
  disputed: string | null;
  replies: number | null;
}

function parseOffsets(text: string | null): number[] {
  if (text === null) return [];
  const v: unknown = JSON.parse(text);
  if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x) && (x as number) >= 0)) throw new Error('corrupt state file: bad disputed list');
  return v as number[];
}

/** Deleted jobs' shard rows removed per step, and free pages given back per step. */
const RECLAIM_SHARDS = 256;
const RECLAIM_PAGES = 1024;

/** A job written in steps writes at most this many shards, or about this many bytes, per step (one transaction). */
const STEP_SHARDS = 256;
const STEP_BYTES = 4 * 1024 * 1024;

/** About what a shard's row costs to write. */
function approximateBytes(s: ShardItems): number {
  let bytes = (s.features?.byteLength ?? 0) + 16 * s.ids.length;
  for (const p of s.prompts ?? []) bytes += p.length;
  for (const r of s.responses ?? []) bytes += r.length;
  return bytes;
}

/** A Float32Array that owns aligned memory (SQLite hands back Buffers at arbitrary offsets). */
function floats(buf: Buffer): Float32Array {
  const own = new Uint8Array(buf.byteLength);
  own.set(buf);
  return new Float32Array(own.buffer, 0, buf.byteLength >>> 2);
}

/** A plain Uint8Array copy of our own (not a Buffer, which may be a view into a shared pool). */
function ownBytes(buf: Buffer): Uint8Array {
  const own = new Uint8Array(buf.byteLength);
  own.set(buf);
  return own;
}

function bytesOf(f: Float32Array): Buffer {
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength);
}

function isStrings(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

function parseStrings(text: string): string[] {
  const v: unknown = JSON.parse(text);
  if (!isStrings(v)) throw new Error('corrupt state file: bad id list');
  return v;
}

function parseTexts(text: string): [string[], string[]] {
  const v: unknown = JSON.parse(text);
  if (!Array.isArray(v) || v.length !== 2 || !isStrings(v[0]) || !isStrings(v[1])) throw new Error('corrupt state file: bad text items');
  return [v[0], v[1]];
}

/** Checked on load: the file may come from another fedpool version or be edited by hand. */
const jobSpecSchema = z.object({
  kind: z.literal('score'),
  model: z.string().optional(),
  scorer: z.object({ model: z.string(), output: z.enum(['reward', 'logprobs']) }).optional(),
  embedding: z.string().optional(),
  classes: z.number().int().min(3).optional(),
  items: z.number().int().positive(),
  shardSize: z.number().int().positive(),
  redundancy: z.number().int().positive(),
  adaptive: z.boolean().optional(),
  agreeTol: z.number().nonnegative().optional(),
  batchSize: z.number().int().positive(),
  form: z.enum(['features', 'text']),
  dim: z.number().int().nonnegative(),
  featuresBlob: z.string().optional(),
  textBlob: z.string().optional(),
});

function parseSpec(text: string, id: string): JobSpec {
  const r = jobSpecSchema.safeParse(JSON.parse(text));
  if (!r.success) throw new Error(`corrupt state file: job ${id} has an invalid spec`);
  return r.data;
}

function jobState(text: string): JobState {
  const s = JOB_STATES.find((x) => x === text);
  if (s === undefined) throw new Error(`corrupt state file: unknown job state ${JSON.stringify(text)}`);
  return s;
}

/** The states of an ended job, as an SQL list. */
const ENDED = "('done', 'failed', 'cancelled')";

function prepare(db: Database.Database) {
  return {
    readMeta: db.prepare<[string], { json: string }>('SELECT json FROM job_meta WHERE job_id = ?'),
    insertMetaPart: db.prepare<[string, number, string]>('INSERT INTO job_meta_parts (job_id, part, json) VALUES (?, ?, ?)'),
    readMetaParts: db.prepare<[string], { json: string }>('SELECT json FROM job_meta_parts WHERE job_id = ? ORDER BY part'),
    deleteMetaParts: db.prepare<[string]>('DELETE FROM job_meta_parts WHERE job_id = ?'),
    insertJob: db.prepare<[string, string, string, number, number | null, string | null, string | null]>(
      'INSERT INTO jobs (id, spec, state, created_at, finished_at, error, owner) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    insertShard: db.prepare<[string, number, string, string | null, Buffer | null]>(
      'INSERT INTO shards (job_id, idx, ids, texts, features) VALUES (?, ?, ?, ?, ?)',
    ),
    listJobs: db.prepare<[], JobRow>('SELECT id, spec, state, created_at, finished_at, error, owner FROM jobs ORDER BY seq'),
    items: db.prepare<[string, number], ItemsRow>('SELECT ids, texts, features FROM shards WHERE job_id = ? AND idx = ?'),
    done: db.prepare<[string], { idx: number }>('SELECT idx FROM shards WHERE job_id = ? AND scores IS NOT NULL ORDER BY idx'),
    results: db.prepare<[string, number, number], ResultRow>(
      'SELECT idx, ids, scores, agreed, disputed, replies FROM shards WHERE job_id = ? AND idx >= ? AND idx < ? AND scores IS NOT NULL ORDER BY idx',
    ),
    putResult: db.prepare<[Buffer, number, string | null, number, string, number]>('UPDATE shards SET scores = ?, agreed = ?, disputed = ?, replies = ? WHERE job_id = ? AND idx = ?'),
    resultStats: db.prepare<[string], { disagreements: number | null; disputed: number | null; replies: number | null }>(
      'SELECT SUM(agreed = 0) AS disagreements, SUM(COALESCE(json_array_length(disputed), 0)) AS disputed, SUM(COALESCE(replies, 0)) AS replies FROM shards WHERE job_id = ? AND scores IS NOT NULL',
    ),
    updateJob: db.prepare<[string, number | null, string | null, string]>(
      'UPDATE jobs SET state = ?, finished_at = COALESCE(?, finished_at), error = COALESCE(?, error) WHERE id = ?',
    ),
    insertTrainJob: db.prepare<[string, string, number, number | null, string | null, string, string, string | null, string | null, string | null]>(
      'INSERT INTO train_jobs (id, state, created_at, finished_at, error, model, config, data, eval, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    updateTrainJob: db.prepare<[string, number | null, string | null, string]>(
      'UPDATE train_jobs SET state = ?, finished_at = COALESCE(?, finished_at), error = COALESCE(?, error) WHERE id = ?',
    ),
    listTrainJobs: db.prepare<[], TrainJobRow>(
      'SELECT id, state, created_at, finished_at, error, model, config, data, eval, owner FROM train_jobs ORDER BY seq',
    ),
    hasTrainJob: db.prepare<[string], { one: number }>('SELECT 1 AS one FROM train_jobs WHERE id = ?'),
    putCheckpoint: db.prepare<[string, number, Buffer, string]>(
      'INSERT OR REPLACE INTO train_checkpoints (job_id, step, state, metrics) VALUES (?, ?, ?, ?)',
    ),
    readCheckpoint: db.prepare<[string], CheckpointRow>('SELECT step, state, metrics FROM train_checkpoints WHERE job_id = ?'),
    // Deleting an ended job (retention): only a job whose end the store recorded, then what hangs off it.
    jobBlobs: db.prepare<[string], { model: string | null; features: string | null; text: string | null }>(
      `SELECT json_extract(spec, '$.model') AS model, json_extract(spec, '$.featuresBlob') AS features, json_extract(spec, '$.textBlob') AS text
       FROM jobs WHERE id = ? AND state IN ${ENDED}`,
    ),
    deleteJob: db.prepare<[string]>(`DELETE FROM jobs WHERE id = ? AND state IN ${ENDED}`),
    deleteShards: db.prepare<[string]>('DELETE FROM shards WHERE job_id = ?'),
    insertPending: db.prepare<[string]>('INSERT INTO pending_jobs (job_id) VALUES (?)'),
    deletePending: db.prepare<[string]>('DELETE FROM pending_jobs WHERE job_id = ?'),
    listPending: db.prepare<[], { job_id: string }>('SELECT job_id FROM pending_jobs'),
    insertDeleted: db.prepare<[string]>('INSERT OR IGNORE INTO deleted_jobs (job_id) VALUES (?)'),
    firstDeleted: db.prepare<[], { job_id: string }>('SELECT job_id FROM deleted_jobs LIMIT 1'),
    deleteDeleted: db.prepare<[string]>('DELETE FROM deleted_jobs WHERE job_id = ?'),
    deleteShardsStep: db.prepare<[string, string]>(`DELETE FROM shards WHERE job_id = ? AND idx IN (SELECT idx FROM shards WHERE job_id = ? LIMIT ${RECLAIM_SHARDS})`),
    deleteMeta: db.prepare<[string]>('DELETE FROM job_meta WHERE job_id = ?'),
    trainJobBlobs: db.prepare<[string], { model: string; data: string | null; eval: string | null }>(
      `SELECT model, data, eval FROM train_jobs WHERE id = ? AND state IN ${ENDED}`,
    ),
    deleteTrainJob: db.prepare<[string]>(`DELETE FROM train_jobs WHERE id = ? AND state IN ${ENDED}`),
    deleteCheckpoint: db.prepare<[string]>('DELETE FROM train_checkpoints WHERE job_id = ?'),
    blobsInUse: db.prepare<[], { hash: string }>(
      `SELECT json_extract(spec, '$.model') AS hash FROM jobs WHERE hash IS NOT NULL
       UNION SELECT json_extract(spec, '$.featuresBlob') AS hash FROM jobs WHERE hash IS NOT NULL
       UNION SELECT json_extract(spec, '$.textBlob') AS hash FROM jobs WHERE hash IS NOT NULL
       UNION SELECT model FROM train_jobs UNION SELECT data FROM train_jobs WHERE data IS NOT NULL
       UNION SELECT eval FROM train_jobs WHERE eval IS NOT NULL`,
    ),
  };
}

/**
 * The durable store: one SQLite file in WAL mode (jobs, shard items, results) plus a directory
 * `<file>.blobs/` of content-addressed blob files (models can be hundreds of MB; files let the
 * coordinator serve 1 MiB ranges without loading whole blobs).
 */
export class SqliteStore implements Store {
  readonly durable = true;
  private readonly db: Database.Database;
  private readonly blobDir: string;
  /** Blob files open for reading, least recently read first (openBlob). */
  private readonly blobFiles = new Map<string, { fd: number; size: number; stamp: string }>();
  private readonly stmt: ReturnType<typeof prepare>;
  private readonly applyTx: (batch: StoreBatch) => void;
  private readonly createTx: (job: JobRecord, shards: readonly ShardItems[], meta: unknown) => void;
  private readonly shardsTx: (jobId: string, shards: readonly ShardItems[], from: number) => void;
  private readonly finishTx: (job: JobRecord) => void;
  private readonly dropTx: (jobId: string) => void;
  private readonly createTrainTx: (job: TrainJobRecord) => void;
  private readonly updateTrainTx: (update: JobUpdate) => void;
  private readonly checkpointTx: (jobId: string, checkpoint: TrainCheckpoint) => void;
  private readonly deleteTx: (ids: readonly string[]) => { deleted: string[]; blobs: string[] };
  /** The reclaiming of deleted jobs' rows and pages under way, if any. */
  private reclaiming: Promise<void> | undefined;
  readonly notices: Array<{ level: 'info' | 'warn'; message: string }> = [];

  constructor(file: string) {
    // SQLite takes an empty file for a new database: a state file truncated to nothing would silently start over.
    if (existsSync(file) && statSync(file).size === 0) {
      throw new Error('the file is empty (0 bytes), so it is not a fedpool state file (a truncated one?); move it away to start a new state');
    }
    this.db = new Database(file);
    this.blobDir = `${file}.blobs`;
    // Deleted jobs give their pages back (deleteJobs runs `PRAGMA incremental_vacuum`). A new file takes the mode only
    // before its first table and before WAL mode writes its header, so this comes first; for a file that has tables it
    // does nothing until the VACUUM below.
    this.db.pragma('auto_vacuum = INCREMENTAL');
    this.db.pragma('journal_mode = WAL');
    // NORMAL is durable against process crashes in WAL mode (only an OS crash can lose the last commits).
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    const version = Number(this.db.pragma('user_version', { simple: true }));
    if (version > SCHEMA_VERSION) throw new Error(`state file ${file} has schema version ${version}; this fedpool reads ${SCHEMA_VERSION}`);
    this.db.exec(SCHEMA);
    // Files written before tenancy (schema 1) gain the owner columns; their jobs stay ownerless (visible to every submitter).
    for (const table of ['jobs', 'train_jobs']) {
      const columns = this.db.prepare<[], { name: string }>(`PRAGMA table_info(${table})`).all();
      if (!columns.some((c) => c.name === 'owner')) this.db.exec(`ALTER TABLE ${table} ADD COLUMN owner TEXT`);
    }
    // Files before redundancy votes (schema ≤ 2) gain the verdict columns; their results read as undisputed.
    const shardColumns = new Set(this.db.prepare<[], { name: string }>('PRAGMA table_info(shards)').all().map((c) => c.name));
    if (!shardColumns.has('disputed')) this.db.exec('ALTER TABLE shards ADD COLUMN disputed TEXT');
    if (!shardColumns.has('replies')) this.db.exec('ALTER TABLE shards ADD COLUMN replies INTEGER');
    this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    this.migrateAutoVacuum();

    this.stmt = prepare(this.db);

    const insertRow = (job: JobRecord): void => {
      this.stmt.insertJob.run(job.id, JSON.stringify(job.spec), job.state, job.createdAt, job.finishedAt ?? null, job.error ?? null, job.owner ?? null);
    };
    const insertShards = (jobId: string, shards: readonly ShardItems[], from: number): void => {
      shards.forEach((s, i) => {
        const texts = s.prompts !== undefined && s.responses !== undefined ? JSON.stringify([s.prompts, s.responses]) : null;
        this.stmt.insertShard.run(jobId, from + i, JSON.stringify(s.ids), texts, s.features === undefined ? null : bytesOf(s.features));
      });
    };
    this.createTx = this.db.transaction((job: JobRecord, shards: readonly ShardItems[], meta: unknown) => {
      insertRow(job);
      if (meta !== undefined) metaParts(JSON.stringify(meta)).forEach((part, k) => this.stmt.insertMetaPart.run(job.id, k, part));
      insertShards(job.id, shards, 0);
    });
    this.shardsTx = this.db.transaction(insertShards);
    this.finishTx = this.db.transaction((job: JobRecord) => {
      insertRow(job);
      this.stmt.deletePending.run(job.id);
    });
    this.dropTx = this.db.transaction((jobId: string) => {
      this.stmt.deleteShards.run(jobId);
      this.stmt.deleteMetaParts.run(jobId);
      this.stmt.deletePending.run(jobId);
    });
    // Jobs whose write in steps a crash cut short: their shard rows go (the job itself was never visible). Deleted jobs
    // whose rows a close or crash left behind: the same, then their pages.
    for (const { job_id } of this.stmt.listPending.all()) this.dropTx(job_id);
    for (let row = this.stmt.firstDeleted.get(); row !== undefined; row = this.stmt.firstDeleted.get()) {
      this.stmt.deleteShards.run(row.job_id);
      this.stmt.deleteDeleted.run(row.job_id);
      this.db.pragma('incremental_vacuum');
    }

    this.applyTx = this.db.transaction((batch: StoreBatch) => {
      for (const r of batch.results) {
        const info = this.stmt.putResult.run(bytesOf(r.scores), r.agreed ? 1 : 0, r.disputed.length === 0 ? null : JSON.stringify(r.disputed), r.replies, r.jobId, r.index);
        if (info.changes !== 1) throw new Error(`no shard ${r.jobId}:${r.index}`);
      }
      for (const u of batch.jobs) {
        const info = this.stmt.updateJob.run(u.state, u.finishedAt ?? null, u.error ?? null, u.id);
        if (info.changes !== 1) throw new Error(`no job ${u.id}`);
      }
    });

    this.createTrainTx = this.db.transaction((job: TrainJobRecord) => {
      const config = JSON.stringify(job.config);
      if (config === undefined) throw new Error(`train job ${job.id}: config is not JSON`);
      this.stmt.insertTrainJob.run(
        job.id, job.state, job.createdAt, job.finishedAt ?? null, job.error ?? null, job.model, config, job.data ?? null, job.eval ?? null, job.owner ?? null,
      );
    });

    this.updateTrainTx = this.db.transaction((u: JobUpdate) => {
      const info = this.stmt.updateTrainJob.run(u.state, u.finishedAt ?? null, u.error ?? null, u.id);
      if (info.changes !== 1) throw new Error(`no job ${u.id}`);
    });

    this.checkpointTx = this.db.transaction((jobId: string, c: TrainCheckpoint) => {
      if (this.stmt.hasTrainJob.get(jobId) === undefined) throw new Error(`no job ${jobId}`);
      this.stmt.putCheckpoint.run(jobId, c.step, Buffer.from(c.state.buffer, c.state.byteOffset, c.state.byteLength), c.metrics);
    });

    this.deleteTx = this.db.transaction((ids: readonly string[]) => {
      const deleted: string[] = [];
      const blobs = new Set<string>();
      for (const id of ids) {
        let found = false;
        const job = this.stmt.jobBlobs.get(id);
        if (job !== undefined) {
          // Its shard rows (most of a large job) go in steps, after this transaction (reclaim).
          this.stmt.insertDeleted.run(id);
          this.stmt.deleteMeta.run(id);
          this.stmt.deleteMetaParts.run(id);
          this.stmt.deleteJob.run(id);
          for (const hash of [job.model, job.features, job.text]) if (hash !== null) blobs.add(hash);
          found = true;
        }
        const train = this.stmt.trainJobBlobs.get(id);
        if (train !== undefined) {
          this.stmt.deleteCheckpoint.run(id);
          this.stmt.deleteTrainJob.run(id);
          for (const hash of [train.model, train.data, train.eval]) if (hash !== null) blobs.add(hash);
          found = true;
        }
        if (found) deleted.push(id);
      }
      return { deleted, blobs: [...blobs] };
    });
  }

  /**
   * A file written before retention (auto_vacuum NONE) is converted once, by a VACUUM: it rewrites the whole file
   * (about a second per 200 MB where we measured) and needs free disk about the file's size meanwhile (the copy goes
   * through the WAL), and the coordinator starts listening only after it. If it fails (a full disk), the file works as
   * before: deleted jobs' pages are reused by new jobs but the file does not shrink, and the next start tries again.
   */
  private migrateAutoVacuum(): void {
    if (Number(this.db.pragma('auto_vacuum', { simple: true })) === 2) return;
    const started = performance.now();
    try {
      this.db.exec('VACUUM');
      this.db.pragma('wal_checkpoint(TRUNCATE)');
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      this.notices.push({ level: 'info', message: `state file converted to incremental auto-vacuum (a one-off VACUUM, ${seconds} s), so deleting jobs shrinks it` });
    } catch (e) {
      this.notices.push({
        level: 'warn',
        message: `cannot convert the state file to incremental auto-vacuum (${e instanceof Error ? e.message : String(e)}): deleted jobs' space is reused by new jobs but the file does not shrink; the next start tries again`,
      });
    }
  }

  deleteJobs(ids: readonly string[]): { deleted: string[]; blobs: string[] } {
    if (ids.length === 0) return { deleted: [], blobs: [] };
    const out = this.deleteTx(ids);
    if (out.deleted.length > 0) this.reclaim();
    return out;
  }

  reclaimed(): Promise<void> {
    return this.reclaiming ?? Promise.resolve();
  }

  /**
   * Gives back what deleted jobs held, in steps that yield to the event loop: their shard rows RECLAIM_SHARDS at a
   * time, then the free pages (moved off the end of the file, which is truncated at the WAL checkpoint that also
   * empties the WAL). What a close or crash interrupts is finished at the next open.
   */
  private reclaim(): void {
    if (this.reclaiming !== undefined) return;
    const pause = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    this.reclaiming = (async () => {
      try {
        for (let row = this.stmt.firstDeleted.get(); row !== undefined && this.db.open; row = this.db.open ? this.stmt.firstDeleted.get() : undefined) {
          if (this.stmt.deleteShardsStep.run(row.job_id, row.job_id).changes === 0) this.stmt.deleteDeleted.run(row.job_id);
          await pause();
        }
        while (this.db.open && Number(this.db.pragma('freelist_count', { simple: true })) > 0) {
          this.db.pragma(`incremental_vacuum(${RECLAIM_PAGES})`);
          await pause();
        }
        if (this.db.open) this.db.pragma('wal_checkpoint(TRUNCATE)');
      } catch (e) {
        // A store closed mid-step; the rest is done at the next open.
        if (this.db.open) throw e;
      } finally {
        this.reclaiming = undefined;
      }
      // Jobs deleted while the pages were being given back.
      if (this.db.open && this.stmt.firstDeleted.get() !== undefined) this.reclaim();
    })();
  }

  blobsInUse(): Set<string> {
    return new Set(this.stmt.blobsInUse.all().map((r) => r.hash));
  }

  listBlobs(): Array<{ hash: string; storedAt: number }> {
    let names: string[];
    try {
      names = readdirSync(this.blobDir);
    } catch {
      return []; // no blob was ever stored
    }
    const out: Array<{ hash: string; storedAt: number }> = [];
    for (const name of names) {
      // Only finished blobs (a `.tmp` file is an upload being written).
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      try {
        out.push({ hash: name, storedAt: statSync(join(this.blobDir, name)).mtimeMs });
      } catch {
        // removed meanwhile
      }
    }
    return out;
  }

  createJob(job: JobRecord, shards: readonly ShardItems[], meta?: unknown): void {
    this.createTx(job, shards, meta);
  }

  async createJobInSteps(job: JobRecord, shards: Iterable<ShardItems>, meta: unknown, pause: () => Promise<void>): Promise<void> {
    this.stmt.insertPending.run(job.id);
    try {
      let batch: ShardItems[] = [];
      let bytes = 0;
      let next = 0;
      for (const shard of shards) {
        batch.push(shard);
        bytes += approximateBytes(shard);
        if (batch.length < STEP_SHARDS && bytes < STEP_BYTES) continue;
        this.shardsTx(job.id, batch, next);
        next += batch.length;
        batch = [];
        bytes = 0;
        await pause();
      }
      this.shardsTx(job.id, batch, next);
      // A meta of a line per item is a million small objects: stringified in steps, and written in parts (one
      // statement of 60 MB held the event loop for 0.3 s).
      if (meta !== undefined) {
        const parts = metaParts(await stringifyInSteps(meta, pause));
        for (let k = 0; k < parts.length; k++) {
          this.stmt.insertMetaPart.run(job.id, k, parts[k] as string);
          await pause();
        }
      }
      this.finishTx(job);
    } catch (e) {
      try {
        this.dropTx(job.id);
      } catch {
        // The store is closing or broken: the next open removes the rows (pending_jobs).
      }
      throw e;
    }
  }

  jobMetaJson(jobId: string): string | undefined {
    const whole = this.stmt.readMeta.get(jobId)?.json; // written before schema 4
    if (whole !== undefined) return whole;
    const parts = this.stmt.readMetaParts.all(jobId);
    return parts.length === 0 ? undefined : parts.map((p) => p.json).join('');
  }

  listJobs(): JobRecord[] {
    return this.stmt.listJobs.all().map((row) => {
      const record: JobRecord = { id: row.id, spec: parseSpec(row.spec, row.id), state: jobState(row.state), createdAt: row.created_at };
      if (row.finished_at !== null) record.finishedAt = row.finished_at;
      if (row.error !== null) record.error = row.error;
      if (row.owner !== null) record.owner = row.owner;
      return record;
    });
  }

  shardItems(jobId: string, index: number): ShardItems | undefined {
    const row = this.stmt.items.get(jobId, index);
    if (row === undefined) return undefined;
    const items: ShardItems = { ids: parseStrings(row.ids) };
    if (row.features !== null) items.features = floats(row.features);
    if (row.texts !== null) {
      const [prompts, responses] = parseTexts(row.texts);
      items.prompts = prompts;
      items.responses = responses;
    }
    return items;
  }

  doneShards(jobId: string): number[] {
    return this.stmt.done.all(jobId).map((r) => r.idx);
  }

  resultStats(jobId: string): ResultStats {
    const r = this.stmt.resultStats.get(jobId);
    return { disagreements: r?.disagreements ?? 0, disputed: r?.disputed ?? 0, replies: r?.replies ?? 0 };
  }

  readResults(jobId: string, from: number, to: number): StoredShardResult[] {
    return this.stmt.results.all(jobId, from, to).map((r) => ({
      index: r.idx, ids: parseStrings(r.ids), scores: floats(r.scores), agreed: r.agreed === 1, disputed: parseOffsets(r.disputed), replies: r.replies ?? 0,
    }));
  }

  apply(batch: StoreBatch): void {
    if (batch.results.length === 0 && batch.jobs.length === 0) return;
    this.applyTx(batch);
  }

  createTrainJob(job: TrainJobRecord): void {
    this.createTrainTx(job);
  }

  updateTrainJob(update: JobUpdate): void {
    this.updateTrainTx(update);
  }

  listTrainJobs(): TrainJobRecord[] {
    return this.stmt.listTrainJobs.all().map((row) => {
      let config: unknown;
      try {
        config = JSON.parse(row.config);
      } catch {
        throw new Error(`corrupt state file: train job ${row.id} has an invalid config`);
      }
      const record: TrainJobRecord = { id: row.id, state: jobState(row.state), createdAt: row.created_at, model: row.model, config };
      if (row.finished_at !== null) record.finishedAt = row.finished_at;
      if (row.error !== null) record.error = row.error;
      if (row.data !== null) record.data = row.data;
      if (row.eval !== null) record.eval = row.eval;
      if (row.owner !== null) record.owner = row.owner;
      return record;
    });
  }

  saveTrainCheckpoint(jobId: string, checkpoint: TrainCheckpoint): void {
    this.checkpointTx(jobId, checkpoint);
  }

  trainCheckpoint(jobId: string): TrainCheckpoint | undefined {
    const row = this.stmt.readCheckpoint.get(jobId);
    if (row === undefined) return undefined;
    return { step: row.step, state: ownBytes(row.state), metrics: row.metrics };
  }

  private blobPath(hash: string): string {
    // The hash is validated as 64 hex chars by every caller; re-check so no path can escape the directory.
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error('invalid blob hash');
    return join(this.blobDir, hash);
  }

  hasBlob(hash: string): boolean {
    return existsSync(this.blobPath(hash));
  }

  blobSize(hash: string): number | undefined {
    try {
      return statSync(this.blobPath(hash)).size;
    } catch {
      return undefined;
    }
  }

  blobStamp(hash: string): string | undefined {
    let stamp: string | undefined;
    try {
      const s = statSync(this.blobPath(hash), { bigint: true });
      stamp = `${s.size}:${s.mtimeNs}:${s.ino}`;
    } catch {
      stamp = undefined;
    }
    // A file that changed since it was opened for reading is read afresh (and BlobStore hashes it again).
    if (this.blobFiles.get(hash)?.stamp !== stamp) this.closeBlob(hash);
    return stamp;
  }

  deleteBlob(hash: string): void {
    this.closeBlob(hash);
    rmSync(this.blobPath(hash), { force: true });
  }

  putBlob(hash: string, chunks: readonly Uint8Array[]): void {
    const path = this.blobPath(hash);
    if (existsSync(path)) return;
    mkdirSync(this.blobDir, { recursive: true });
    // Write aside, then rename: a crash never leaves a truncated file under a valid hash.
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      for (const c of chunks) {
        let at = 0;
        while (at < c.byteLength) at += writeSync(fd, c, at, c.byteLength - at);
      }
    } catch (e) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw e;
    }
    closeSync(fd);
    renameSync(tmp, path);
  }

  createBlobWriter(): BlobWriter {
    mkdirSync(this.blobDir, { recursive: true });
    // Written aside as it arrives, in writes of about 1 MiB off the event loop, then renamed: a crash never leaves a
    // truncated file under a valid hash (and `.tmp` files are never listed as blobs).
    const tmp = join(this.blobDir, `upload.${process.pid}.${randomBytes(8).toString('hex')}.tmp`);
    let file: Promise<FileHandle> | undefined;
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pending.length === 0) return;
      const chunks = pending;
      pending = [];
      pendingBytes = 0;
      file ??= open(tmp, 'w');
      await (await file).writev(chunks);
    };
    const close = async (): Promise<void> => {
      if (file !== undefined) await (await file).close();
    };
    return {
      write: async (chunk) => {
        pending.push(chunk);
        pendingBytes += chunk.byteLength;
        if (pendingBytes >= 1 << 20) await flush();
      },
      commit: async (hash) => {
        await flush();
        file ??= open(tmp, 'w'); // an empty blob
        await close();
        const path = this.blobPath(hash);
        if (existsSync(path)) await rm(tmp, { force: true });
        else await rename(tmp, path);
      },
      abort: async () => {
        pending = [];
        try {
          await close();
        } catch {
          // already closed, or never opened: the file goes either way
        }
        await rm(tmp, { force: true });
      },
    };
  }

  readBlob(hash: string, offset: number, length: number): Uint8Array<ArrayBuffer> {
    const { fd, size } = this.openBlob(hash);
    const n = Math.max(0, Math.min(length, size - offset));
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const got = readSync(fd, out, at, n - at, offset + at);
      if (got === 0) break;
      at += got;
    }
    return at === n ? out : out.subarray(0, at);
  }

  /**
   * An open descriptor of the blob and its size, kept for the next read (the few blobs in use at a time: a job's
   * features blob is read once per lease, and opening, measuring and closing the file each time cost ~16 µs a lease).
   */
  private openBlob(hash: string): { fd: number; size: number; stamp: string } {
    const cached = this.blobFiles.get(hash);
    if (cached !== undefined) {
      this.blobFiles.delete(hash);
      this.blobFiles.set(hash, cached);
      return cached;
    }
    const fd = openSync(this.blobPath(hash), 'r');
    const s = fstatSync(fd, { bigint: true });
    const file = { fd, size: Number(s.size), stamp: `${s.size}:${s.mtimeNs}:${s.ino}` };
    this.blobFiles.set(hash, file);
    for (const [oldest, f] of this.blobFiles) {
      if (this.blobFiles.size <= OPEN_BLOB_FILES) break;
      this.blobFiles.delete(oldest);
      closeSync(f.fd);
    }
    return file;
  }

  private closeBlob(hash: string): void {
    const file = this.blobFiles.get(hash);
    if (file === undefined) return;
    this.blobFiles.delete(hash);
    closeSync(file.fd);
  }

  close(): void {
    for (const hash of [...this.blobFiles.keys()]) this.closeBlob(hash);
    if (this.db.open) this.db.close();
  }
}
