// The store contract, run against both implementations; SQLite also across a reopen.
import test, { type ThrowsAnyExpectation, type ThrowsExpectation } from 'ava';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeMessage, type BlobMessage } from '../../shared/protocol/index.js';
import { BLOB_CHUNK_BYTES, BlobHashMismatchError, BlobStore, BlobTooLargeError } from '../../server/blobs.js';
import { MemoryStore } from '../../server/store-memory.js';
import { SqliteStore } from '../../server/store-sqlite.js';
import type { JobRecord, ShardItems, Store, TrainJobRecord } from '../../server/store.js';
import { tempDir } from './helpers.js';

const job = (id: string, form: 'features' | 'text' = 'features'): JobRecord => ({
  id, state: 'queued', createdAt: 1_700_000_000_000,
  spec: { kind: 'score', model: 'a'.repeat(64), items: 5, shardSize: 2, redundancy: 1, batchSize: 8, form, dim: form === 'features' ? 3 : 0 },
});

const featureShards: ShardItems[] = [
  { ids: ['a', 'b'], features: Float32Array.of(1, 2, 3, 4, 5, 6) },
  { ids: ['c', 'd'], features: Float32Array.of(7, 8, 9, 10, 11, 12) },
  { ids: ['é'], features: Float32Array.of(0.5, -0.5, 1e-30) },
];
const trainJob = (id: string, over: Partial<TrainJobRecord> = {}): TrainJobRecord => ({
  id, state: 'queued', createdAt: 1_700_000_000_000, model: 'a'.repeat(64),
  config: { task: 'classify', rounds: 3, lr: 0.05, data: { source: 'central', partition: { clients: 4 } }, tags: ['x', null] },
  data: 'b'.repeat(64), ...over,
});

/** Bytes that are not valid UTF-8 and include every byte value. */
const stateBytes = Uint8Array.from({ length: 1031 }, (_, i) => (i * 131 + 7) % 256);

const textShards: ShardItems[] = [{ ids: ['t1', 't2'], prompts: ['p1', 'p"2\n'], responses: ['r1', ''] }];

/**
 * What a store throws when an id is taken: the memory store's own Error, SQLite's UNIQUE constraint. Spelled out so
 * that a TypeError from a bug does not pass for the refusal. `any: true` only because better-sqlite3's SqliteError is
 * not a native error to ava (it is built without the Error constructor); class, name or code, and message still pin it.
 */
type DuplicateIdError = (table: 'jobs' | 'train_jobs', id: string) => ThrowsAnyExpectation;

/** A write naming a job or shard that does not exist: both stores throw their own plain Error. */
const missing = (what: string): ThrowsExpectation<Error> => ({ instanceOf: Error, name: 'Error', message: `no ${what}` });

function contract(name: string, open: () => { store: Store; reopen?: () => Store; cleanup: () => void }, duplicateId: DuplicateIdError) {
  test(`${name}: jobs, shard items and results round-trip`, (t) => {
    const { store, cleanup } = open();
    t.teardown(cleanup);
    store.createJob(job('J'), featureShards);
    store.createJob(job('T', 'text'), textShards);
    t.throws(() => store.createJob(job('J'), featureShards), duplicateId('jobs', 'J'));
    t.deepEqual(store.listJobs().map((j) => j.id), ['J', 'T']);
    t.deepEqual(store.listJobs()[0], job('J'));
    t.deepEqual(store.shardItems('J', 2), featureShards[2]);
    t.deepEqual(store.shardItems('T', 0), textShards[0]);
    t.is(store.shardItems('J', 3), undefined);
    t.is(store.shardItems('nope', 0), undefined);
    t.deepEqual(store.doneShards('J'), []);
    store.apply({
      results: [
        { jobId: 'J', index: 2, scores: Float32Array.of(0.25), agreed: true, disputed: [], replies: 1 },
        { jobId: 'J', index: 0, scores: Float32Array.of(1, 2), agreed: false, disputed: [1], replies: 5 },
      ],
      jobs: [],
    });
    t.deepEqual(store.doneShards('J'), [0, 2]);
    t.deepEqual(store.readResults('J', 0, 3), [
      { index: 0, ids: ['a', 'b'], scores: Float32Array.of(1, 2), agreed: false, disputed: [1], replies: 5 },
      { index: 2, ids: ['é'], scores: Float32Array.of(0.25), agreed: true, disputed: [], replies: 1 },
    ]);
    t.deepEqual(store.resultStats('J'), { disagreements: 1, disputed: 1, replies: 6 });
    t.deepEqual(store.readResults('J', 1, 2), []);
    store.apply({ results: [], jobs: [{ id: 'J', state: 'failed', finishedAt: 5, error: 'boom' }] });
    t.like(store.listJobs()[0], { state: 'failed', finishedAt: 5, error: 'boom' });
    store.apply({ results: [], jobs: [{ id: 'J', state: 'failed' }] });
    t.like(store.listJobs()[0], { finishedAt: 5, error: 'boom' }, 'an update without them keeps finishedAt and error');
  });

  test(`${name}: a batch is atomic`, (t) => {
    const { store, cleanup } = open();
    t.teardown(cleanup);
    store.createJob(job('J'), featureShards);
    t.throws(
      () => store.apply({ results: [{ jobId: 'J', index: 1, scores: Float32Array.of(1, 1), agreed: true, disputed: [], replies: 1 }], jobs: [{ id: 'missing', state: 'done' }] }),
      missing('job missing'),
    );
    t.deepEqual(store.doneShards('J'), [], 'the valid half of a failed batch was not written');
    t.throws(() => store.apply({ results: [{ jobId: 'J', index: 9, scores: Float32Array.of(1), agreed: true, disputed: [], replies: 1 }], jobs: [] }), missing('shard J:9'));
  });

  test(`${name}: training jobs round-trip in submission order`, (t) => {
    const { store, cleanup } = open();
    t.teardown(cleanup);
    t.deepEqual(store.listTrainJobs(), []);
    const b = trainJob('B', { eval: 'c'.repeat(64) });
    const a = trainJob('A', { data: undefined, state: 'running' });
    store.createTrainJob(b);
    store.createTrainJob(a);
    store.createTrainJob(trainJob('C', { state: 'done', finishedAt: 9, error: 'was slow' }));
    t.throws(() => store.createTrainJob(trainJob('B')), duplicateId('train_jobs', 'B'));
    t.deepEqual(store.listTrainJobs().map((j) => j.id), ['B', 'A', 'C'], 'submission order, not id order');
    const [gotB, gotA, gotC] = store.listTrainJobs();
    t.deepEqual(gotB, b);
    t.deepEqual(gotA, { id: 'A', state: 'running', createdAt: 1_700_000_000_000, model: 'a'.repeat(64), config: a.config });
    t.false(gotA !== undefined && 'data' in gotA, 'absent data is absent, not undefined');
    t.deepEqual(gotC, trainJob('C', { state: 'done', finishedAt: 9, error: 'was slow' }));
    t.deepEqual(store.listJobs(), [], 'training jobs are not scoring jobs');

    // Callers can't reach the stored records.
    (b.config as { rounds: number }).rounds = 99;
    if (gotB !== undefined) {
      gotB.state = 'failed';
      (gotB.config as { tags: unknown[] }).tags.push('mutated');
    }
    t.deepEqual(store.listTrainJobs()[0], trainJob('B', { eval: 'c'.repeat(64) }));
  });

  test(`${name}: training job updates set state, error and finishedAt`, (t) => {
    const { store, cleanup } = open();
    t.teardown(cleanup);
    store.createTrainJob(trainJob('T'));
    store.createTrainJob(trainJob('U'));
    store.updateTrainJob({ id: 'T', state: 'running' });
    t.like(store.listTrainJobs()[0], { id: 'T', state: 'running' });
    t.false('finishedAt' in (store.listTrainJobs()[0] ?? {}));
    store.updateTrainJob({ id: 'T', state: 'failed', finishedAt: 5, error: 'boom' });
    t.like(store.listTrainJobs()[0], { state: 'failed', finishedAt: 5, error: 'boom' });
    store.updateTrainJob({ id: 'T', state: 'failed' });
    t.like(store.listTrainJobs()[0], { finishedAt: 5, error: 'boom' }, 'an update without them keeps finishedAt and error');
    t.like(store.listTrainJobs()[1], { id: 'U', state: 'queued' }, 'other jobs untouched');
    t.throws(() => store.updateTrainJob({ id: 'missing', state: 'done' }), { message: 'no job missing' });
    t.throws(() => store.apply({ results: [], jobs: [{ id: 'T', state: 'done' }] }), { message: 'no job T' }, 'apply only sees scoring jobs');
  });

  test(`${name}: a training checkpoint is replaced by the latest, bytes exact`, (t) => {
    const { store, cleanup } = open();
    t.teardown(cleanup);
    store.createTrainJob(trainJob('T'));
    store.createTrainJob(trainJob('U'));
    t.is(store.trainCheckpoint('T'), undefined);
    t.is(store.trainCheckpoint('nope'), undefined);
    t.throws(() => store.saveTrainCheckpoint('nope', { step: 1, state: stateBytes, metrics: '' }), { message: 'no job nope' });

    // From an unaligned view into a bigger buffer (as a Buffer might be). The bytes are handed over: the caller does
    // not change them afterwards, so the store may keep them as they are (Store.saveTrainCheckpoint).
    const big = new Uint8Array(stateBytes.length + 5);
    big.set(stateBytes, 3);
    const view = big.subarray(3, 3 + stateBytes.length);
    store.saveTrainCheckpoint('T', { step: 1, state: view, metrics: '{"step":1}\n' });
    const first = store.trainCheckpoint('T');
    t.deepEqual(first, { step: 1, state: stateBytes, metrics: '{"step":1}\n' });
    t.is(Object.getPrototypeOf(first?.state), Uint8Array.prototype, 'a plain Uint8Array');
    first?.state.fill(0);
    t.deepEqual(store.trainCheckpoint('T')?.state, stateBytes, 'the returned bytes are a copy');

    store.saveTrainCheckpoint('T', { step: 2, state: Uint8Array.of(9, 8, 7), metrics: '{"step":1}\n{"step":2}\n' });
    store.saveTrainCheckpoint('U', { step: 0, state: new Uint8Array(0), metrics: '' });
    t.deepEqual(store.trainCheckpoint('T'), { step: 2, state: Uint8Array.of(9, 8, 7), metrics: '{"step":1}\n{"step":2}\n' }, 'latest wins');
    t.deepEqual(store.trainCheckpoint('U'), { step: 0, state: new Uint8Array(0), metrics: '' });
  });

  test(`${name}: blobs are content-addressed, served in ranges and chunks`, async (t) => {
    const { store, cleanup } = open();
    t.teardown(cleanup);
    const blobs = new BlobStore(store);
    const bytes = new Uint8Array(2 * BLOB_CHUNK_BYTES + 123).map((_, i) => (i * 31) % 251);
    const hash = createHash('sha256').update(bytes).digest('hex');
    t.false(blobs.has(hash));
    async function* body(parts: Uint8Array[]) {
      for (const p of parts) yield p;
    }
    await t.throwsAsync(blobs.receive(body([bytes]), 'b'.repeat(64), 1e9), { instanceOf: BlobHashMismatchError });
    await t.throwsAsync(blobs.receive(body([bytes]), hash, 1000), { instanceOf: BlobTooLargeError });
    t.false(blobs.has(hash), 'nothing stored after a refused upload');
    t.deepEqual(await blobs.receive(body([bytes.subarray(0, 1000), bytes.subarray(1000)]), hash, 1e9), { hash, size: bytes.length });
    t.true(blobs.has(hash));
    t.is(blobs.size(hash), bytes.length);
    t.deepEqual(store.readBlob(hash, 10, 5), bytes.subarray(10, 15));
    const frames = [...blobs.frames(hash)];
    const chunks = frames.map((f) => decodeMessage(f.frame) as BlobMessage);
    t.deepEqual(frames.map((f) => f.bytes), [BLOB_CHUNK_BYTES, BLOB_CHUNK_BYTES, 123]);
    t.true([...blobs.frames(hash)].every((f, i) => f.frame === frames[i]?.frame), 'a second transfer sends the same frames, encoded once');
    t.deepEqual(chunks.map((c) => [c.offset, c.data.length, c.final]), [[0, BLOB_CHUNK_BYTES, false], [BLOB_CHUNK_BYTES, BLOB_CHUNK_BYTES, false], [2 * BLOB_CHUNK_BYTES, 123, true]]);
    t.true(chunks.every((c) => c.total === bytes.length && c.hash === hash));
    const joined = new Uint8Array(bytes.length);
    for (const c of chunks) joined.set(c.data, c.offset);
    t.true(Buffer.from(joined).equals(Buffer.from(bytes)));
    const empty = blobs.put(new Uint8Array(0));
    t.deepEqual([...blobs.frames(empty)].map((f) => decodeMessage(f.frame) as BlobMessage).map((c) => [c.offset, c.total, c.data.length, c.final]), [[0, 0, 0, true]]);
    t.is(blobs.size('not-a-hash'), undefined);
    t.false(blobs.has('../../etc/passwd'));
  });
}

contract('memory', () => ({ store: new MemoryStore(), cleanup: () => {} }), (table, id) => ({
  any: true,
  instanceOf: Error,
  name: 'Error',
  message: `${table === 'jobs' ? 'job' : 'train job'} ${id} already exists`,
}));

contract(
  'sqlite',
  () => {
    const { dir, cleanup } = tempDir();
    const store = new SqliteStore(join(dir, 'state.db'));
    return { store, cleanup: () => { store.close(); cleanup(); } };
  },
  (table) => ({ any: true, instanceOf: Database.SqliteError, code: 'SQLITE_CONSTRAINT_UNIQUE', message: `UNIQUE constraint failed: ${table}.id` }),
);

test('sqlite: state survives a reopen; WAL mode; blobs are files beside the database', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = join(dir, 'state.db');
  const a = new SqliteStore(file);
  a.createJob(job('J'), featureShards);
  a.apply({ results: [{ jobId: 'J', index: 1, scores: Float32Array.of(3, 4), agreed: true, disputed: [], replies: 1 }], jobs: [{ id: 'J', state: 'running' }] });
  const hash = new BlobStore(a).put(Uint8Array.of(1, 2, 3));
  a.close();
  const b = new SqliteStore(file);
  t.teardown(() => b.close());
  t.like(b.listJobs()[0], { id: 'J', state: 'running' });
  t.deepEqual(b.doneShards('J'), [1]);
  t.deepEqual(b.readResults('J', 0, 10)[0]?.scores, Float32Array.of(3, 4));
  t.deepEqual(b.readBlob(hash, 0, 10), Uint8Array.of(1, 2, 3));
  t.deepEqual(readdirSync(`${file}.blobs`), [hash]);
  const db = new Database(file, { readonly: true });
  t.is(db.pragma('journal_mode', { simple: true }), 'wal');
  db.close();
});

test('sqlite: training jobs and checkpoints survive a reopen', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = join(dir, 'state.db');
  const a = new SqliteStore(file);
  a.createTrainJob(trainJob('T1'));
  a.createTrainJob(trainJob('T2', { data: undefined, eval: 'c'.repeat(64) }));
  a.updateTrainJob({ id: 'T1', state: 'failed', finishedAt: 7, error: 'oops' });
  a.saveTrainCheckpoint('T2', { step: 1, state: Uint8Array.of(1), metrics: 'a\n' });
  a.saveTrainCheckpoint('T2', { step: 40, state: stateBytes, metrics: 'a\nb\n' });
  a.close();
  const b = new SqliteStore(file);
  t.teardown(() => b.close());
  t.deepEqual(b.listTrainJobs(), [
    trainJob('T1', { state: 'failed', finishedAt: 7, error: 'oops' }),
    { id: 'T2', state: 'queued', createdAt: 1_700_000_000_000, model: 'a'.repeat(64), config: trainJob('T2').config, eval: 'c'.repeat(64) },
  ]);
  t.deepEqual(b.trainCheckpoint('T2'), { step: 40, state: stateBytes, metrics: 'a\nb\n' });
  t.is(b.trainCheckpoint('T1'), undefined);
});

test('sqlite: a state file from before training jobs gains their tables on open', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = join(dir, 'state.db');
  const a = new SqliteStore(file);
  a.createJob(job('J'), featureShards);
  a.close();
  const db = new Database(file);
  db.exec('DROP TABLE train_checkpoints; DROP TABLE train_jobs;');
  db.close();
  const b = new SqliteStore(file);
  t.teardown(() => b.close());
  t.deepEqual(b.listJobs().map((j) => j.id), ['J']);
  t.deepEqual(b.listTrainJobs(), []);
  b.createTrainJob(trainJob('T'));
  b.saveTrainCheckpoint('T', { step: 3, state: stateBytes, metrics: '' });
  t.deepEqual(b.trainCheckpoint('T')?.state, stateBytes);
});

test('sqlite: a state file from before tenancy and votes (schema 1) gains owner and verdict columns; its jobs stay ownerless, its results undisputed', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = join(dir, 'state.db');
  const a = new SqliteStore(file);
  a.createJob(job('OLD'), featureShards);
  a.createTrainJob(trainJob('TOLD'));
  a.close();
  const db = new Database(file);
  db.exec('ALTER TABLE jobs DROP COLUMN owner; ALTER TABLE train_jobs DROP COLUMN owner; ALTER TABLE shards DROP COLUMN disputed; ALTER TABLE shards DROP COLUMN replies;');
  db.prepare("UPDATE shards SET scores = ?, agreed = 1 WHERE job_id = 'OLD' AND idx = 1").run(Buffer.from(Float32Array.of(3, 4).buffer));
  db.pragma('user_version = 1');
  // Meta was one row per job before schema 4.
  db.prepare("INSERT INTO job_meta (job_id, json) VALUES ('OLD', '{\"lines\":[1]}')").run();
  db.close();
  const b = new SqliteStore(file);
  t.teardown(() => b.close());
  t.deepEqual(b.readResults('OLD', 0, 3), [{ index: 1, ids: featureShards[1]?.ids ?? [], scores: Float32Array.of(3, 4), agreed: true, disputed: [], replies: 0 }]);
  t.is(b.listJobs()[0]?.owner, undefined);
  t.is(b.listTrainJobs()[0]?.owner, undefined);
  t.is(b.jobMetaJson('OLD'), '{"lines":[1]}');
  b.createJob({ ...job('NEW'), owner: 'o1' }, featureShards);
  b.createTrainJob(trainJob('TNEW', { owner: 'o2' }));
  t.deepEqual(b.listJobs().map((j) => [j.id, j.owner]), [['OLD', undefined], ['NEW', 'o1']]);
  t.deepEqual(b.listTrainJobs().map((j) => [j.id, j.owner]), [['TOLD', undefined], ['TNEW', 'o2']]);
  const check = new Database(file, { readonly: true });
  t.teardown(() => check.close());
  t.is(check.pragma('user_version', { simple: true }), 4);
});

test('memory store: owners round-trip', (t) => {
  const m = new MemoryStore();
  m.createJob({ ...job('J'), owner: 'o1' }, featureShards);
  m.createTrainJob(trainJob('T', { owner: 'o2' }));
  t.is(m.listJobs()[0]?.owner, 'o1');
  t.is(m.listTrainJobs()[0]?.owner, 'o2');
});

test('sqlite: a state file from a newer fedpool is refused', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = join(dir, 'state.db');
  const db = new Database(file);
  db.pragma('user_version = 99');
  db.close();
  t.throws(() => new SqliteStore(file), { message: /schema version 99/ });
  t.true(existsSync(file));
});

test('memory store is not durable and refuses use after close', (t) => {
  const s = new MemoryStore();
  t.false(s.durable);
  s.close();
  t.throws(() => s.listJobs(), { message: /closed/ });
  t.throws(() => s.listTrainJobs(), { message: /closed/ });
  t.throws(() => s.createTrainJob(trainJob('T')), { message: /closed/ });
});

test('blobs: a stored blob is trusted only while it hashes to its name; a damaged one is removed and a re-upload replaces it', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const store = new SqliteStore(join(dir, 'state.db'));
  t.teardown(() => store.close());
  let reads = 0;
  const counting = new Proxy(store, {
    get(target, key, receiver) {
      if (key === 'readBlob') return (h: string, o: number, n: number) => (reads++, target.readBlob(h, o, n));
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  const blobs = new BlobStore(counting);
  const bytes = Uint8Array.from({ length: 3 * BLOB_CHUNK_BYTES + 17 }, (_, i) => (i * 31) % 251);
  const hash = createHash('sha256').update(bytes).digest('hex');
  async function* body(): AsyncGenerator<Uint8Array> {
    yield bytes;
  }
  await blobs.receive(body(), hash, bytes.byteLength);
  t.true(await blobs.verify(hash));
  t.is(reads, 0, 'what this process wrote and hashed is not hashed again');

  // Damage the file in place, keeping its size (a flipped byte on disk).
  const file = join(dir, 'state.db.blobs', hash);
  const damaged = Uint8Array.from(bytes);
  damaged[BLOB_CHUNK_BYTES + 5] ^= 0xff;
  writeFileSync(file, damaged);
  t.false(await blobs.verify(hash), 'the damaged bytes fail their hash');
  t.is(reads, 4, 'hashed in 1 MiB steps');
  t.false(existsSync(file), 'and are removed');
  t.false(blobs.has(hash));

  await blobs.receive(body(), hash, bytes.byteLength);
  t.true(await blobs.verify(hash));
  t.deepEqual(blobs.read(hash), bytes, 'the re-upload stored the right bytes');

  // A damaged file that is still there when the right bytes arrive is replaced, not kept.
  writeFileSync(file, damaged);
  await blobs.receive(body(), hash, bytes.byteLength);
  t.deepEqual(blobs.read(hash), bytes);
  t.false(await blobs.verify('f'.repeat(64)), 'an absent blob does not verify');
  t.false(await blobs.verify('../etc'), 'nor a name that is not a hash');
});

// ---- deleting ended jobs (issue 13, retention) --------------------------------------------------

/** A new empty store of each kind, and how to dispose of it. */
const freshStores = [
  ['memory', () => ({ store: new MemoryStore() as Store, cleanup: () => {} })],
  ['sqlite', () => {
    const { dir, cleanup } = tempDir();
    const store = new SqliteStore(join(dir, 'state.db'));
    return { store: store as Store, cleanup: () => { store.close(); cleanup(); } };
  }],
] as const;

const ended = (id: string, over: Partial<JobRecord> = {}): JobRecord => ({ ...job(id), state: 'done', finishedAt: 1_700_000_001_000, ...over });
const result = (jobId: string, index: number, scores: Float32Array) => ({ jobId, index, scores, agreed: true, disputed: [], replies: 1 });

for (const [name, open] of freshStores) {
  test(`${name}: deleteJobs removes ended jobs with everything stored for them, and only those`, (t) => {
    const { store, cleanup } = open();
    t.teardown(cleanup);
    store.createJob(job('J'), featureShards, { lines: 5 });
    store.apply({ results: [result('J', 0, Float32Array.of(1, 2)), result('J', 2, Float32Array.of(3))], jobs: [{ id: 'J', state: 'done', finishedAt: 9 }] });
    store.createJob({ ...job('K'), spec: { ...job('K').spec, model: 'c'.repeat(64) } }, featureShards);
    store.apply({ results: [result('K', 1, Float32Array.of(5, 6))], jobs: [{ id: 'K', state: 'running' }] });
    store.createJob({ ...job('S'), spec: { ...job('S').spec, model: undefined, scorer: { model: 'm', output: 'reward' } } }, textShards);
    store.apply({ results: [], jobs: [{ id: 'S', state: 'cancelled', finishedAt: 9 }] });
    store.createTrainJob(trainJob('T', { eval: 'e'.repeat(64) }));
    store.saveTrainCheckpoint('T', { step: 3, state: stateBytes, metrics: '{"step":3}\n' });
    store.updateTrainJob({ id: 'T', state: 'failed', finishedAt: 9, error: 'x' });
    store.createTrainJob(trainJob('U', { model: 'd'.repeat(64), data: undefined }));
    store.saveTrainCheckpoint('U', { step: 1, state: stateBytes, metrics: '' });
    t.deepEqual([...store.blobsInUse()].sort(), ['a', 'b', 'c', 'd', 'e'].map((c) => c.repeat(64)));

    const out = store.deleteJobs(['J', 'K', 'S', 'T', 'U', 'nope']);
    t.deepEqual(out.deleted, ['J', 'S', 'T'], 'ended jobs only: K and U run, nope never was');
    t.deepEqual([...out.blobs].sort(), ['a', 'b', 'e'].map((c) => c.repeat(64)), 'the blobs their records named');
    t.deepEqual(store.listJobs().map((j) => j.id), ['K']);
    t.deepEqual(store.listTrainJobs().map((j) => j.id), ['U']);
    t.is(store.shardItems('J', 0), undefined);
    t.deepEqual(store.doneShards('J'), []);
    t.deepEqual(store.readResults('J', 0, 10), []);
    t.is(store.jobMetaJson('J'), undefined);
    t.is(store.trainCheckpoint('T'), undefined);
    t.deepEqual(store.doneShards('K'), [1], 'the running job keeps its results');
    t.is(store.trainCheckpoint('U')?.step, 1);
    t.deepEqual([...store.blobsInUse()].sort(), ['c', 'd'].map((c) => c.repeat(64)));
    t.deepEqual(store.deleteJobs(['J', 'T']), { deleted: [], blobs: [] }, 'deleting again does nothing');
    // A deleted id can be used again (ids are random; the store keeps nothing of the old one).
    store.createJob(job('J'), featureShards);
    t.deepEqual(store.doneShards('J'), []);
  });

  test(`${name}: listBlobs names every stored blob with when it was stored`, (t) => {
    const { store, cleanup } = open();
    t.teardown(cleanup);
    t.deepEqual(store.listBlobs(), []);
    const before = Date.now();
    const blobs = new BlobStore(store);
    const a = blobs.put(Uint8Array.of(1));
    const b = blobs.put(Uint8Array.of(2));
    const listed = store.listBlobs().sort((x, y) => x.hash.localeCompare(y.hash));
    t.deepEqual(listed.map((x) => x.hash), [a, b].sort());
    // File times can be coarser than Date.now(): a second of slack, and no upper bound (a loaded machine).
    t.true(listed.every((x) => x.storedAt >= before - 1000));
    store.deleteBlob(a);
    t.deepEqual(store.listBlobs().map((x) => x.hash), [b]);
  });
}

/** The file's pages in all, and the free ones, read through a second connection. */
function pages(file: string): { pages: number; free: number; bytes: number } {
  const db = new Database(file, { readonly: true });
  try {
    const n = Number(db.pragma('page_count', { simple: true }));
    return { pages: n, free: Number(db.pragma('freelist_count', { simple: true })), bytes: n * Number(db.pragma('page_size', { simple: true })) };
  } finally {
    db.close();
  }
}

test('sqlite: deleting a large ended job gives its pages back to the file system (incremental auto-vacuum), in steps after it is gone', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = join(dir, 'state.db');
  const store = new SqliteStore(file);
  t.teardown(() => store.close());
  const dim = 64;
  const n = 20_000;
  const size = 500;
  const shards: ShardItems[] = [];
  for (let s = 0; s < n / size; s++) {
    shards.push({ ids: Array.from({ length: size }, (_, i) => `item-${s * size + i}`), features: new Float32Array(size * dim).map((_, i) => Math.sin(s + i)) });
  }
  const spec = { ...job('BIG').spec, items: n, shardSize: size, dim };
  store.createJob({ ...job('BIG'), spec }, shards);
  store.apply({ results: shards.map((_, i) => result('BIG', i, new Float32Array(size).fill(i))), jobs: [{ id: 'BIG', state: 'done', finishedAt: 9 }] });
  store.createJob(job('SMALL'), featureShards);
  const full = pages(file);
  t.deepEqual(store.deleteJobs(['BIG']).deleted, ['BIG']);
  t.deepEqual(store.listJobs().map((j) => j.id), ['SMALL'], 'gone at once');
  await store.reclaimed(); // its rows and pages go back in steps
  const after = pages(file);
  t.log(`${n} items × ${dim} features: ${full.pages} pages (${full.bytes} bytes) before, ${after.pages} (${after.bytes} bytes) after`);
  t.true(full.bytes > n * dim * 4, 'the job filled the file');
  t.true(after.pages * 20 < full.pages, 'the file shrank to a small part');
  t.is(after.free, 0, 'no free page left behind');
  t.deepEqual(store.listJobs().map((j) => j.id), ['SMALL']);
  t.deepEqual(store.shardItems('SMALL', 2), featureShards[2], 'what remains is intact');
});

test('sqlite: a state file from before retention (no auto-vacuum) is converted once at open, and keeps its jobs', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = join(dir, 'state.db');
  const fresh = new SqliteStore(file);
  t.deepEqual(fresh.notices, [], 'a new file needs no conversion');
  fresh.createJob(job('OLD'), featureShards);
  fresh.close();
  const raw = new Database(file);
  t.is(raw.pragma('auto_vacuum', { simple: true }), 2, 'a new file is incremental from the start');
  raw.pragma('auto_vacuum = NONE');
  raw.exec('VACUUM');
  t.is(raw.pragma('auto_vacuum', { simple: true }), 0);
  raw.close();
  const b = new SqliteStore(file);
  t.teardown(() => b.close());
  t.is(b.notices.length, 1);
  t.like(b.notices[0], { level: 'info' });
  t.regex(b.notices[0]?.message ?? '', /converted to incremental auto-vacuum/);
  t.deepEqual(b.shardItems('OLD', 1), featureShards[1]);
  const check = new Database(file, { readonly: true });
  t.teardown(() => check.close());
  t.is(check.pragma('auto_vacuum', { simple: true }), 2);
});

// ---- a job written in steps ------------------------------------------------------------------------

const manyShards = (n: number): ShardItems[] => Array.from({ length: n }, (_, i) => ({ ids: [`s${i}`], features: Float32Array.of(i, i + 1, i + 2) }));
const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

for (const [name, open] of freshStores) {
  test(`${name}: a job written in steps is the job written at once; one whose shards throw leaves nothing`, async (t) => {
    const { store, cleanup } = open();
    t.teardown(cleanup);
    const shards = manyShards(700);
    // Over a million characters of JSON (stored in parts), with pairs of surrogates wherever a part may end.
    const meta = { note: 1, lines: Array.from({ length: 60_000 }, (_, i) => ({ id: `line-${i}-😀`, group: `g${i % 7}` })) };
    let pauses = 0;
    await store.createJobInSteps({ ...job('S'), spec: { ...job('S').spec, items: 700, shardSize: 1 } }, shards, meta, async () => {
      pauses++;
      t.deepEqual(store.listJobs(), [], 'the job is not visible while it is being written');
      await immediate();
    });
    t.true(pauses >= 2, `${pauses} pauses`);
    t.deepEqual(store.listJobs().map((j) => j.id), ['S']);
    t.true(JSON.stringify(meta).length > 1 << 20);
    t.is(store.jobMetaJson('S'), JSON.stringify(meta));
    t.deepEqual(store.shardItems('S', 0), shards[0]);
    t.deepEqual(store.shardItems('S', 699), shards[699]);
    function* failing(): Generator<ShardItems> {
      yield* manyShards(300);
      throw new Error('shard 300 does not fit');
    }
    await t.throwsAsync(store.createJobInSteps(job('F'), failing(), undefined, immediate), { message: 'shard 300 does not fit' });
    t.deepEqual(store.listJobs().map((j) => j.id), ['S']);
    t.is(store.shardItems('F', 0), undefined, 'its shards are gone');
  });
}

test('sqlite: shards of a job whose write in steps a crash cut short are removed at the next open', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = join(dir, 'state.db');
  new SqliteStore(file).close();
  // What a crash between two steps leaves: the pending mark and some shard rows, no job row.
  const db = new Database(file);
  db.prepare("INSERT INTO pending_jobs (job_id) VALUES ('C')").run();
  db.prepare("INSERT INTO shards (job_id, idx, ids) VALUES ('C', 0, '[\"x\"]')").run();
  db.prepare("INSERT INTO job_meta_parts (job_id, part, json) VALUES ('C', 0, '{')").run();
  db.close();
  const store = new SqliteStore(file);
  t.teardown(() => store.close());
  t.is(store.shardItems('C', 0), undefined);
  const check = new Database(file, { readonly: true });
  t.teardown(() => check.close());
  t.is((check.prepare('SELECT COUNT(*) AS n FROM pending_jobs').get() as { n: number }).n, 0);
  t.is((check.prepare('SELECT COUNT(*) AS n FROM job_meta_parts').get() as { n: number }).n, 0);
});

/** A SQLite store in a temporary folder (removed after the test) and its BlobStore. */
function sqliteBlobs(t: { teardown: (fn: () => void) => void }): { file: string; store: SqliteStore; blobs: BlobStore } {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = join(dir, 'state.db');
  const store = new SqliteStore(file);
  t.teardown(() => store.close());
  return { file, store, blobs: new BlobStore(store) };
}

test('sqlite: an upload is written to disk as it arrives; a refused or broken one leaves no file behind', async (t) => {
  const { file, store, blobs } = sqliteBlobs(t);
  const bytes = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 7) % 253);
  const hash = createHash('sha256').update(bytes).digest('hex');
  async function* body(parts: number, breakAt = -1) {
    const size = Math.ceil(bytes.length / parts);
    for (let k = 0; k < parts; k++) {
      if (k === breakAt) throw new Error('connection reset');
      yield bytes.subarray(k * size, (k + 1) * size);
    }
  }
  await t.throwsAsync(blobs.receive(body(50), 'c'.repeat(64), 1e9), { instanceOf: BlobHashMismatchError });
  await t.throwsAsync(blobs.receive(body(50), hash, 1024 * 1024), { instanceOf: BlobTooLargeError });
  await t.throwsAsync(blobs.receive(body(50, 30), hash, 1e9), { message: 'connection reset' });
  t.deepEqual(readdirSync(`${file}.blobs`), [], 'no file from a refused or broken upload');
  t.deepEqual(await blobs.receive(body(50), hash, 1e9), { hash, size: bytes.length });
  t.deepEqual(await blobs.receive(body(7), hash, 1e9), { hash, size: bytes.length }, 'a second upload of the same bytes');
  t.deepEqual(readdirSync(`${file}.blobs`), [hash]);
  t.true(Buffer.from(store.readBlob(hash, 0, bytes.length)).equals(Buffer.from(bytes)));
});

test('sqlite: a blob file replaced on disk after it was read is hashed again from the new file and removed when it does not match', async (t) => {
  const { file, store, blobs } = sqliteBlobs(t);
  const hash = blobs.put(Uint8Array.of(1, 2, 3, 4));
  t.deepEqual(blobs.readRange(hash, 0, 4), Uint8Array.of(1, 2, 3, 4)); // the file is now open for reading
  const path = join(`${file}.blobs`, hash);
  writeFileSync(`${path}.new`, Uint8Array.of(9, 9, 9, 9));
  renameSync(`${path}.new`, path); // a new file under the name
  t.false(await blobs.verify(hash));
  t.false(blobs.has(hash));
});
