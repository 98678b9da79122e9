// The store contract, run against both implementations; SQLite also across a reopen.
import test, { type ThrowsAnyExpectation, type ThrowsExpectation } from 'ava';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
    store.apply({ results: [{ jobId: 'J', index: 2, scores: Float32Array.of(0.25), agreed: true }, { jobId: 'J', index: 0, scores: Float32Array.of(1, 2), agreed: false }], jobs: [] });
    t.deepEqual(store.doneShards('J'), [0, 2]);
    t.deepEqual(store.readResults('J', 0, 3), [
      { index: 0, ids: ['a', 'b'], scores: Float32Array.of(1, 2), agreed: false },
      { index: 2, ids: ['é'], scores: Float32Array.of(0.25), agreed: true },
    ]);
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
      () => store.apply({ results: [{ jobId: 'J', index: 1, scores: Float32Array.of(1, 1), agreed: true }], jobs: [{ id: 'missing', state: 'done' }] }),
      missing('job missing'),
    );
    t.deepEqual(store.doneShards('J'), [], 'the valid half of a failed batch was not written');
    t.throws(() => store.apply({ results: [{ jobId: 'J', index: 9, scores: Float32Array.of(1), agreed: true }], jobs: [] }), missing('shard J:9'));
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

    // From an unaligned view into a bigger buffer (as a Buffer might be).
    const big = new Uint8Array(stateBytes.length + 5);
    big.set(stateBytes, 3);
    const view = big.subarray(3, 3 + stateBytes.length);
    store.saveTrainCheckpoint('T', { step: 1, state: view, metrics: '{"step":1}\n' });
    big.fill(0);
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
    const chunks = [...blobs.chunks(hash)];
    t.deepEqual(chunks.map((c) => [c.offset, c.data.length, c.final]), [[0, BLOB_CHUNK_BYTES, false], [BLOB_CHUNK_BYTES, BLOB_CHUNK_BYTES, false], [2 * BLOB_CHUNK_BYTES, 123, true]]);
    t.true(chunks.every((c) => c.total === bytes.length && c.hash === hash));
    const joined = new Uint8Array(bytes.length);
    for (const c of chunks) joined.set(c.data, c.offset);
    t.true(Buffer.from(joined).equals(Buffer.from(bytes)));
    const empty = blobs.put(new Uint8Array(0));
    t.deepEqual([...blobs.chunks(empty)].map((c) => [c.offset, c.total, c.data.length, c.final]), [[0, 0, 0, true]]);
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
  a.apply({ results: [{ jobId: 'J', index: 1, scores: Float32Array.of(3, 4), agreed: true }], jobs: [{ id: 'J', state: 'running' }] });
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

test('sqlite: a state file from before tenancy (schema 1) gains owner columns; its jobs stay ownerless; owners round-trip', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = join(dir, 'state.db');
  const a = new SqliteStore(file);
  a.createJob(job('OLD'), featureShards);
  a.createTrainJob(trainJob('TOLD'));
  a.close();
  const db = new Database(file);
  db.exec('ALTER TABLE jobs DROP COLUMN owner; ALTER TABLE train_jobs DROP COLUMN owner;');
  db.pragma('user_version = 1');
  db.close();
  const b = new SqliteStore(file);
  t.teardown(() => b.close());
  t.is(b.listJobs()[0]?.owner, undefined);
  t.is(b.listTrainJobs()[0]?.owner, undefined);
  b.createJob({ ...job('NEW'), owner: 'o1' }, featureShards);
  b.createTrainJob(trainJob('TNEW', { owner: 'o2' }));
  t.deepEqual(b.listJobs().map((j) => [j.id, j.owner]), [['OLD', undefined], ['NEW', 'o1']]);
  t.deepEqual(b.listTrainJobs().map((j) => [j.id, j.owner]), [['TOLD', undefined], ['TNEW', 'o2']]);
  const check = new Database(file, { readonly: true });
  t.teardown(() => check.close());
  t.is(check.pragma('user_version', { simple: true }), 2);
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
