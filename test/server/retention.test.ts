// Retention (issue 13): a finished job can be deleted (DELETE /api/jobs/:id on an ended job) or expires
// (`fedpool coordinator --retain-jobs DAYS`); either way its record, items, results and checkpoint leave the state store,
// which shrinks, and the coordinator's memory (services, lease table); blobs only deleted jobs named follow once
// unused. Registry-level tests run on an injected clock; HTTP ones on an in-process coordinator; one spawns the CLI.
import test from 'ava';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { buildProgram } from '../../cli/main.js';
import { startCoordinator } from '../../server/coordinator.js';
import { JobRegistry } from '../../server/job-registry.js';
import { parseJobRequest } from '../../server/jobs.js';
import { SqliteStore } from '../../server/store-sqlite.js';
import { parseTrainConfig } from '../../shared/config/train.js';
import { packedBundle } from '../helpers/bundles.js';
import { centralRows } from '../helpers/in-process-coordinator.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, api, featureItems, startCoordinatorProcess, submitJob, tempDir, until, uploadBlob, waitForJob } from './helpers.js';

const quiet = pino({ level: 'silent' });
const OTHER = 'c2-another-tenant';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

function trainConfig() {
  return parseTrainConfig({
    model: 'model', task: 'classify', mode: 'sync', rounds: 2, clientsPerRound: 2, roundDeadlineMs: 30_000,
    data: { source: 'central', path: 'train.jsonl', partition: { clients: 4, kind: 'iid', seed: 3 } },
    local: { steps: 1, batchSize: 8, lr: 0.1 },
  }, '/', (_base, p) => p);
}

test('retention on a clock: ended jobs older than the window go from the store and from memory; running ones, and blobs a job names or used lately, stay', async (t) => {
  const { dir, cleanup } = tempDir();
  const store = new SqliteStore(join(dir, 'state.db'));
  let clock = Date.now();
  const open = (): JobRegistry =>
    new JobRegistry({ store, leaseMs: MINUTE, logger: quiet, maxFrameBytes: 64 << 20, now: () => clock, retainJobsMs: HOUR, blobGraceMs: MINUTE });
  let jobs = open();
  t.teardown(() => {
    jobs.close();
    store.close();
    cleanup();
  });
  t.deepEqual(jobs.restore(), { resumed: 0, total: 0 });
  const m1 = jobs.blobs.put(bytes('model one'));
  const m2 = jobs.blobs.put(await packedBundle({ kind: 'features', dim: 4 }, 'classes', 1, 3));
  const submit = async (model: string): Promise<string> => {
    const p = parseJobRequest({ kind: 'score', model, items: featureItems(10), shardSize: 5 });
    if (!p.ok) throw new Error(p.error);
    return (await jobs.score.submit(p.request, p.form, p.dim, p.columns)).id;
  };
  const a = await submit(m1);
  const b = await submit(m1);
  const c = await submit(m2); // stays queued: no worker
  const tj = jobs.training.submit({ model: m2, config: trainConfig(), data: centralRows(20, 4, 3) }).id;
  const data = store.listTrainJobs()[0]?.data ?? '';
  t.true(jobs.blobs.has(data), 'the training data is a blob');

  const t0 = clock;
  t.true(jobs.cancelJob(a));
  clock = t0 + 30 * MINUTE;
  t.true(jobs.cancelJob(b));
  t.true(jobs.cancelJob(tj));
  const never = jobs.blobs.put(bytes('uploaded at t0 + 30 min; its job never came'));
  t.is(jobs.prune(), 0, 'nothing ended an hour ago yet');

  clock = t0 + 61 * MINUTE;
  t.is(jobs.prune(), 1);
  t.is(jobs.jobStatus(a), undefined, 'a is gone');
  t.is(jobs.scheduler.progress(a), undefined, 'the lease table forgot it');
  t.deepEqual(store.listJobs().map((j) => j.id), [b, c]);
  t.true(jobs.blobs.has(m1), 'b still names m1');

  clock = t0 + 92 * MINUTE;
  const recent = jobs.blobs.put(bytes('uploaded moments ago for a job not submitted yet'));
  t.is(jobs.prune(), 2, 'b and the training job');
  t.deepEqual(jobs.allJobs().map((j) => j.id), [c]);
  t.is(jobs.training.status(tj), undefined);
  t.is(jobs.training.metrics(tj, 0), undefined);
  t.deepEqual(store.listTrainJobs(), []);
  t.is(store.trainCheckpoint(tj), undefined);
  t.like(jobs.jobCounts(), { queued: 1, running: 0, done: 0, failed: 0, cancelled: 0 });
  t.false(jobs.blobs.has(m1), 'only deleted jobs named m1, unused for longer than the grace: removed');
  t.false(jobs.blobs.has(data), "the training job's data blob too");
  t.false(jobs.blobs.has(never), 'an upload no job names, older than the window: swept');
  t.true(jobs.blobs.has(m2), 'c (queued) names m2');
  t.true(jobs.blobs.has(recent), 'an upload of moments ago stays');

  // DELETE's path: a job deleted right away; a blob a submitter confirmed (HEAD) a moment ago waits out its grace.
  t.false(jobs.deleteJob(c), 'a queued job is not deleted (DELETE cancels it first)');
  t.true(jobs.cancelJob(c));
  t.true(await jobs.blobs.verify(m2), 'HEAD m2: used now');
  t.true(jobs.deleteJob(c));
  t.false(jobs.deleteJob(c), 'gone');
  t.deepEqual(jobs.allJobs(), []);
  t.true(jobs.blobs.has(m2), 'used less than the grace ago: kept for now');
  clock += 2 * MINUTE;
  jobs.prune();
  t.false(jobs.blobs.has(m2), 'and removed once the grace is over');

  // At start: a job that ended while the coordinator was down and is older than the window goes at once.
  const d = await submit(recent);
  t.true(jobs.cancelJob(d));
  jobs.close();
  clock += 2 * HOUR;
  jobs = open();
  t.deepEqual(jobs.restore(), { resumed: 0, total: 1 }, 'the job is read back, then pruned');
  t.deepEqual(jobs.allJobs(), []);
  t.deepEqual(store.listJobs(), []);
});

test('DELETE: a running job is cancelled, an ended one deleted with its results and blob; other tenants get 404; the file shrinks', async (t) => {
  const { dir, cleanup } = tempDir();
  const state = join(dir, 'state.db');
  const c = await startCoordinator({ port: 0, state, logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN, OTHER], blobGraceMs: 0 });
  const workers: FakeWorker[] = [];
  t.teardown(async () => {
    for (const w of workers) w.close();
    await c.close();
    cleanup();
  });
  const del = (id: string, token = CLIENT_TOKEN, query = ''): Promise<Response> => api(c.url, `/api/jobs/${id}${query}`, { method: 'DELETE', token });
  const model = await uploadBlob(c.url, bytes('retention: the model of the first job'));
  const id = await submitJob(c.url, { model, items: featureItems(40), shardSize: 10 });
  const w = await FakeWorker.connect(c.url, { name: 'holder' });
  workers.push(w);
  w.auto = false;
  w.pull(1);
  await until(() => w.held.size === 1, 'a lease held');

  t.is((await del(id, OTHER)).status, 404, 'another tenant cannot cancel it');
  const cancelled = await del(id);
  t.is(cancelled.status, 200);
  t.like(await cancelled.json(), { id, state: 'cancelled' }, 'a running job is cancelled, with the same answer as before');
  const onlyCancel = await del(id, CLIENT_TOKEN, '?only=cancel');
  t.is(onlyCancel.status, 200);
  t.like(await onlyCancel.json(), { id, state: 'cancelled' }, '?only=cancel never deletes');
  t.is((await del(id, OTHER)).status, 404, 'another tenant cannot delete it');
  t.is((await api(c.url, `/api/jobs/${id}`)).status, 200);

  const deleted = await del(id);
  t.is(deleted.status, 200);
  t.deepEqual(await deleted.json(), { id, deleted: true });
  for (const route of ['', '/meta', '/results', '/metrics', '/model']) {
    const res = await api(c.url, `/api/jobs/${id}${route}`);
    t.is(res.status, 404, route);
    t.deepEqual(await res.json(), { error: `no job ${id}` }, route);
  }
  t.is((await del(id)).status, 404, 'deleting again: no such job');
  t.deepEqual(await (await api(c.url, '/api/jobs')).json(), []);
  t.is((await api(c.url, `/api/blobs/${model}`, { method: 'HEAD' })).status, 404, 'no job names the model any more: removed');

  // A done job: deleted; the blob it shares with a queued job stays.
  w.auto = true;
  w.pull(4);
  const shared = await uploadBlob(c.url, bytes('retention: a model two jobs use'));
  const done = await submitJob(c.url, { model: shared, items: featureItems(20), shardSize: 10 });
  t.like(await waitForJob(c.url, done), { state: 'done' });
  w.close();
  await until(() => c.jobs.workers.size === 0, 'the worker gone');
  const queued = await submitJob(c.url, { model: shared, items: featureItems(5), shardSize: 5 });
  t.is((await del(done, CLIENT_TOKEN, '?only=cancel')).status, 409, '?only=cancel on a done job: 409, as before');
  t.deepEqual(await (await del(done)).json(), { id: done, deleted: true });
  t.is((await api(c.url, `/api/jobs/${done}/results`)).status, 404);
  t.is((await api(c.url, `/api/blobs/${shared}`, { method: 'HEAD' })).status, 200, 'the queued job still names it');
  t.deepEqual(((await (await api(c.url, '/api/jobs')).json()) as Array<{ id: string }>).map((j) => j.id), [queued]);

  // A large job: the state file (database + WAL) before and after its deletion.
  const n = 20_000;
  const dim = 64;
  const features = new Float32Array(n * dim).map((_, i) => Math.sin(i));
  const body = { kind: 'score', model: shared, shardSize: 500, columns: { ids: Array.from({ length: n }, (_, i) => `item-${i}`), features: { dim, base64: Buffer.from(features.buffer).toString('base64') } } };
  const res = await api(c.url, '/api/jobs', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  t.is(res.status, 201);
  const big = ((await res.json()) as { id: string }).id;
  const fileBytes = (): number => [state, `${state}-wal`].reduce((sum, f) => sum + (existsSync(f) ? statSync(f).size : 0), 0);
  t.like(await (await del(big)).json(), { state: 'cancelled' });
  const before = fileBytes();
  t.deepEqual(await (await del(big)).json(), { id: big, deleted: true });
  await c.jobs.reclaimed(); // its rows and pages go back in steps after the answer
  const after = fileBytes();
  t.log(`state file (database + WAL) with a cancelled job of ${n} items × ${dim} features: ${before} bytes; after DELETE: ${after} bytes`);
  t.true(before > n * dim * 4);
  t.true(after * 4 < before, 'the file shrank');

  const metrics = await (await api(c.url, '/metrics')).text();
  t.regex(metrics, /^fedpool_jobs\{state="queued"\} 1$/m, 'job counts: the queued job');
  t.regex(metrics, /^fedpool_jobs\{state="cancelled"\} 0$/m, 'deleted jobs are not counted');
  t.regex(metrics, /^fedpool_jobs\{state="done"\} 0$/m);
});

test('--retain-jobs on a running coordinator: an ended job goes by itself; a queued one and its blob stay', async (t) => {
  const { dir, cleanup } = tempDir();
  // The blob grace (10 min) keeps a blob uploaded for a job not submitted yet, however slow this machine is.
  const c = await startCoordinator({ port: 0, state: join(dir, 'state.db'), logger: quiet, retainJobsMs: 200, blobGraceMs: 10 * MINUTE });
  t.teardown(async () => {
    await c.close();
    cleanup();
  });
  const shared = await uploadBlob(c.url, bytes('retention: shared'), null);
  const own = await uploadBlob(c.url, bytes('retention: only the ended job'), null);
  const ended = await submitJob(c.url, { model: own, items: featureItems(5), shardSize: 5 });
  const queued = await submitJob(c.url, { model: shared, items: featureItems(5), shardSize: 5 });
  t.is((await api(c.url, `/api/jobs/${ended}`, { method: 'DELETE', token: null })).status, 200);
  await until(async () => (await api(c.url, `/api/jobs/${ended}`, { token: null })).status === 404, 'the ended job expires', 60_000);
  t.deepEqual(((await (await api(c.url, '/api/jobs', { token: null })).json()) as Array<{ id: string }>).map((j) => j.id), [queued]);
  t.is((await api(c.url, `/api/blobs/${own}`, { method: 'HEAD', token: null })).status, 200, 'its blob waits out the grace');
  t.is((await api(c.url, `/api/jobs/${queued}`, { token: null })).status, 200, 'a queued job is never pruned');
  t.is((await api(c.url, `/api/blobs/${shared}`, { method: 'HEAD', token: null })).status, 200, 'nor the blob it names');
});

test('fedpool coordinator --retain-jobs DAYS: validated, documented, and it deletes ended jobs', async (t) => {
  const program = buildProgram();
  const coordinator = program.commands.find((cmd) => cmd.name() === 'coordinator');
  coordinator?.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  t.true(coordinator?.helpInformation().includes('--retain-jobs <days>'));
  t.regex(coordinator?.helpInformation().replace(/\s+/g, ' ') ?? '', /default: keep every job forever/);
  await t.throwsAsync(program.parseAsync(['node', 'fedpool', 'coordinator', '--retain-jobs', '0']), { message: /--retain-jobs.*'0' is invalid/ });

  // 0.000002 days = 173 ms.
  const c = await startCoordinatorProcess(['--state', ':memory:', '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN, '--retain-jobs', '0.000002'], {}, t);
  const model = await uploadBlob(c.url, bytes('retention: cli'));
  const id = await submitJob(c.url, { model, items: featureItems(3), shardSize: 3 });
  t.is((await api(c.url, `/api/jobs/${id}`, { method: 'DELETE' })).status, 200);
  await until(async () => (await api(c.url, `/api/jobs/${id}`)).status === 404, 'the cancelled job expires', 60_000);
  t.pass();
});
