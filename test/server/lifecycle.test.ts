// The coordinator process's life: restart on the same SQLite state, SIGTERM/SIGINT, start-up errors, token sources.
import test from 'ava';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runFedpool as runCli } from '../helpers/processes.js';
import {
  CLIENT_TOKEN,
  FakeWorker,
  WORKER_TOKEN,
  api,
  featureItems,
  expectedScore,
  jobStatus,
  results,
  startCoordinatorProcess,
  submitJob,
  tempDir,
  until,
  uploadBlob,
  waitForJob,
} from './helpers.js';

const tokens = ['--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN];

test('restart on the same state file: unfinished jobs resume with their done results kept', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = join(dir, 'fedpool.db');
  const first = await startCoordinatorProcess(['--state', state, ...tokens]);
  t.teardown(() => first.stop('SIGKILL'));
  const model = await uploadBlob(first.url, Uint8Array.of(9, 9, 9));
  const finishedItems = featureItems(20, 3, 'f');
  const items = featureItems(100, 3);
  const w1 = await FakeWorker.connect(first.url, { name: 'before' });
  t.teardown(() => w1.close());
  w1.pull(1);
  const finished = await submitJob(first.url, { model, items: finishedItems, shardSize: 10 });
  await waitForJob(first.url, finished);
  w1.auto = false;
  const id = await submitJob(first.url, { model, items, shardSize: 10 });
  w1.pull(4);
  await until(() => w1.held.size === 4, 'four leases');
  for (const l of [...w1.held.values()]) w1.answer(l);
  await until(async () => (await jobStatus(first.url, id)).progress.done === 40, '4 shards done');
  t.is(await first.stop('SIGTERM'), 0);

  const second = await startCoordinatorProcess(['--state', state, ...tokens]);
  t.teardown(() => second.stop('SIGKILL'));
  t.like(await jobStatus(second.url, finished), { state: 'done', progress: { done: 20, total: 20 } });
  t.is((await results(second.url, finished)).length, 20);
  t.like(await jobStatus(second.url, id), { state: 'running', progress: { done: 40, total: 100 } });
  t.deepEqual((await results(second.url, id)).map((r) => r.id), items.slice(0, 40).map((i) => i.id), 'the done prefix is served at once');
  t.is((await api(second.url, `/api/blobs/${model}`, { method: 'HEAD' })).status, 200, 'the model blob survived');
  const follow = results(second.url, id, true);
  const w2 = await FakeWorker.connect(second.url, { name: 'after' });
  t.teardown(() => w2.close());
  w2.pull(3);
  await waitForJob(second.url, id);
  t.is(w2.leases.length, 6, 'only the shards without results were leased');
  for (const r of [await follow, await results(second.url, id)]) {
    t.deepEqual(r.map((x) => x.id), items.map((i) => i.id));
    t.true(r.every((x, i) => Math.abs(x.score - expectedScore(items[i] as { features: number[] })) <= 1e-6));
  }
  t.is(await second.stop('SIGINT'), 0);
});

test('SIGTERM with connected workers and an open result stream: everything closes and the exit code is 0', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const c = await startCoordinatorProcess(['--state', join(dir, 's.db'), ...tokens]);
  t.teardown(() => c.stop('SIGKILL'));
  const model = await uploadBlob(c.url, Uint8Array.of(1));
  const id = await submitJob(c.url, { model, items: featureItems(50), shardSize: 10 });
  const w = await FakeWorker.connect(c.url, { auto: false });
  t.teardown(() => w.close());
  w.pull(2);
  await until(() => w.held.size === 2, 'leases held');
  const stream = results(c.url, id, true);
  t.is(await c.stop('SIGTERM'), 0);
  t.deepEqual(await stream, [], 'the follower’s stream ended');
  await until(() => w.disconnected, 'worker disconnected');
  t.regex(c.stdout(), /^fedpool coordinator listening on http:\/\/127\.0\.0\.1:\d+\n$/);
});

test('start-up errors are one line: port in use, unopenable state file', async (t) => {
  const c = await startCoordinatorProcess(['--state', ':memory:', ...tokens]);
  t.teardown(() => c.stop());
  const busy = await runCli(['coordinator', '--state', ':memory:', '--port', String(c.port)]);
  t.is(busy.status, 1);
  t.is(busy.stderr, `fedpool coordinator: cannot listen on 127.0.0.1:${c.port}: address already in use\n`);
  t.is(busy.stdout, '');
  const bad = await runCli(['coordinator', '--port', '0', '--state', '/nonexistent-dir/deeper/state.db']);
  t.is(bad.status, 1);
  t.regex(bad.stderr, /^fedpool coordinator: cannot open state file \/nonexistent-dir\/deeper\/state\.db: .+\n$/);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const empty = join(dir, 'empty.db');
  writeFileSync(empty, '');
  const zero = await runCli(['coordinator', '--port', '0', '--state', empty]);
  t.is(zero.status, 1);
  t.is(zero.stderr, `fedpool coordinator: cannot open state file ${empty}: the file is empty (0 bytes), so it is not a fedpool state file (a truncated one?); move it away to start a new state\n`);
  t.is(statSync(empty).size, 0, 'and it is left as it was');
});

test('tokens from the environment (single strings) and open mode with a warning', async (t) => {
  const env = await startCoordinatorProcess(['--state', ':memory:'], { FEDPOOL_WORKER_TOKEN: 'ew', FEDPOOL_CLIENT_TOKEN: 'ec' });
  t.teardown(() => env.stop());
  t.is((await api(env.url, '/api/jobs', { token: 'ec' })).status, 200);
  t.is((await api(env.url, '/api/jobs', { token: CLIENT_TOKEN })).status, 401);
  const w = await FakeWorker.connect(env.url, { token: 'ew' });
  w.close();
  // Refused in the websocket upgrade (a bare transport error); the reason is the worker-auth answer.
  await t.throwsAsync(FakeWorker.connect(env.url, { token: 'ec' }), { message: /websocket error/ });
  const why = await fetch(`${env.url}/api/worker-auth`, { headers: { authorization: 'Bearer ec' } });
  t.deepEqual([why.status, ((await why.json()) as { error: string }).error], [401, 'unauthorized: unknown worker token']);

  const open = await startCoordinatorProcess(['--state', ':memory:'], { FEDPOOL_LOG: 'warn' });
  t.teardown(() => open.stop());
  t.is((await api(open.url, '/api/jobs', { token: null })).status, 200);
  const anon = await FakeWorker.connect(open.url, { token: '' });
  anon.close();
  t.regex(open.stderr(), /no worker token configured/);
  t.regex(open.stderr(), /no client token configured/);
  const admin = await startCoordinatorProcess(['--state', ':memory:'], { FEDPOOL_ADMIN_TOKEN: 'ea' });
  t.teardown(() => admin.stop());
  t.is((await api(admin.url, '/api/jobs', { token: 'ea' })).status, 200, 'FEDPOOL_ADMIN_TOKEN admits an admin');
  t.is((await api(admin.url, '/api/jobs', { token: null })).status, 401, 'an admin token alone closes the submitter role');
});

test('--metrics-public serves /metrics without a token', async (t) => {
  const c = await startCoordinatorProcess(['--state', ':memory:', '--metrics-public', ...tokens]);
  t.teardown(() => c.stop());
  const res = await api(c.url, '/metrics', { token: null });
  t.is(res.status, 200);
  t.regex(await res.text(), /^# HELP fedpool_/m);
  t.is((await api(c.url, '/api/jobs', { token: null })).status, 401);
});
