// The live dashboard (issue 15): a real coordinator pushes snapshots over its dashboard socket to pages holding a
// client token; in a real headless Chromium (Debian's, driven by playwright-core) the page shows a connected worker,
// a running job's progress and a training job's curve, updated without a reload. The screenshot is kept as
// test-artifacts/dashboard.png.
import test from 'ava';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { io } from 'socket.io-client';
import { CoordinatorApi } from '../../cli/api.js';
import { parseTrainConfig } from '../../shared/config/train.js';
import { classifyColumns, initModel } from '../../bench/train-jobs.js';
import { root, runFedpool } from '../helpers/processes.js';
import { readBundleDir } from '../../client/scoring/bundle-fs.js';
import { bundleHash, packBundle } from '../../shared/model/bundle.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, startCoordinatorProcess, tempDir, until } from './helpers.js';
import type { DashboardSnapshot } from '../../server/dashboard-feed.js';

const CHROMIUM = '/usr/bin/chromium';
/** Flags for a sandboxed CI machine with a closed network (no background connections, no GPU). */
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** The first snapshot a socket.io client gets from the dashboard feed with `token`, or its connection error. */
function firstSnapshot(url: string, token: string | undefined): Promise<DashboardSnapshot | Error> {
  return new Promise((resolve) => {
    const socket = io(url, { path: '/dashboard.io', transports: ['websocket'], reconnection: false, forceNew: true, ...(token === undefined ? {} : { query: { token } }) });
    socket.once('snapshot', (s: DashboardSnapshot) => {
      socket.close();
      resolve(s);
    });
    socket.once('connect_error', (e: Error) => {
      socket.close();
      resolve(e);
    });
  });
}

test('the dashboard is pushed over a socket that needs a client token, and Chromium shows a worker, a running job and a training curve', async (t) => {
  t.timeout(180_000);
  if (!existsSync(CHROMIUM)) t.fail(`${CHROMIUM} is missing: install Debian's chromium (.ci/run does)`);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const c = await startCoordinatorProcess(['--state', ':memory:', '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN], {}, t);

  // The feed: refused without a token or with a worker's, before any frame; a client token gets snapshots.
  t.true((await firstSnapshot(c.url, undefined)) instanceof Error, 'no token');
  t.true((await firstSnapshot(c.url, WORKER_TOKEN)) instanceof Error, "a worker's token");

  // A worker that scores (holding its leases until told) and trains (a constant update at once).
  // Train leases are answered at once, score leases held: the training job ends, the score job keeps running.
  const w = await FakeWorker.connect(c.url, {
    name: 'browser-worker', trainUpdate: 1e-3,
    onLease: (worker, lease) => {
      if (lease.task.kind === 'train') worker.answerTrain(lease);
    },
  });
  t.teardown(() => w.close());
  w.pull(2);
  const api = new CoordinatorApi(c.url, CLIENT_TOKEN);
  const model = await initModel(dir, 'features:8', '4');
  await api.ensureBlob(model.hash, model.bytes);
  const config = parseTrainConfig(
    { model: 'model', task: 'classify', data: { source: 'central', path: 'in-memory', partition: { clients: 4, kind: 'iid', seed: 1 } }, mode: 'sync', rounds: 5, clientsPerRound: 2, local: { steps: 1, batchSize: 8, lr: 0.05, momentum: 0 } },
    dir,
    (base, p) => path.resolve(base, p),
  );
  const train = await api.createJob({ kind: 'train', model: model.hash, config, data: classifyColumns(32, 8, 3) });
  await until(async () => (await api.job(train.id)).state === 'done', 'the training job');
  const items = Array.from({ length: 40 }, (_, i) => ({ id: `i${i}`, features: [i, 1, 2, 3, 4, 5, 6, 7] }));
  // A reward model for the score job (the worker answers one score per item).
  const rewardDir = path.join(dir, 'reward');
  t.is((await runFedpool(['model', 'init', '--out', rewardDir, '--input', 'features:8', '--output', 'reward', '--hidden', '4'])).status, 0);
  const reward = packBundle(await readBundleDir(rewardDir));
  const rewardHash = await bundleHash(reward);
  await api.ensureBlob(rewardHash, reward);
  const score = await api.createJob({ kind: 'score', model: rewardHash, items, shardSize: 10 });
  await until(() => w.held.size >= 2, 'score leases');
  w.answer([...w.held.values()][0]!);
  await until(async () => (await api.job(score.id)).progress.done === 10, 'a quarter of the score job');

  const snapshot = await firstSnapshot(c.url, CLIENT_TOKEN);
  if (snapshot instanceof Error) return t.fail(snapshot.message);
  t.deepEqual(snapshot.workers.map((x) => x.name), ['browser-worker']);
  t.like(snapshot, { workerCount: 1, jobCount: 2 });
  t.like(snapshot.jobs.find((j) => j.id === score.id), { kind: 'score', state: 'running', progress: { done: 10, total: 40 } });
  t.is(snapshot.training[train.id]?.length, 5);

  let browser: Browser | undefined;
  t.teardown(() => browser?.close());
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${c.url}/?token=${CLIENT_TOKEN}`);
  await page.waitForSelector('#workers tr', { timeout: 30_000 });
  t.regex(await page.textContent('#workers') ?? '', /browser-worker/);
  const row = page.locator('#jobs tr', { hasText: score.id });
  t.regex(await row.textContent() ?? '', /running.*10 \/ 40 items/);
  t.is(await row.locator('progress').getAttribute('value'), '10');
  const curve = page.locator(`#charts figure[data-job="${train.id}"] polyline.loss`);
  t.true((await curve.getAttribute('points'))!.split(' ').length === 5, 'one point per server step');
  t.regex(await page.textContent(`#charts figure[data-job="${train.id}"] figcaption`) ?? '', /step 5 · loss 0\.5000/);
  t.is(page.url(), `${c.url}/`, 'the token left the address bar');

  // Pushed, not reloaded: the next shard shows up on the same page.
  w.answer([...w.held.values()][0]!);
  await row.getByText('20 / 40 items').waitFor({ timeout: 30_000 });
  const artifacts = path.join(root, 'test-artifacts');
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, 'dashboard.png'), fullPage: true });
  t.deepEqual(errors, [], 'no script errors on the page');
});
