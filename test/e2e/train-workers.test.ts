// Training jobs against the pool's messy reality, with real processes: workers that train on their own datasets
// under simulated participation, workers of very different speeds, a worker killed mid-round, and a coordinator
// restarted mid-job (the job resumes from its checkpoint and `fedpool train` follows it to the end).
import test from 'ava';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { gaussianClasses } from '../../cli/demo-data.js';
import { CLIENT_TOKEN, WORKER_TOKEN, api, startCoordinatorProcess, tempDir, until } from '../server/helpers.js';
import { modelInit, readMetrics, startTrainingPool, summaryOf } from './processes.js';
import { runFedpool as fedpool } from '../helpers/processes.js';

const modelArgs = ['--input', 'features:8', '--output', 'classes:3', '--hidden', '16', '--seed', '4'];

interface JobInfo {
  id: string;
  kind: string;
  state: string;
  progress: { done: number; total: number };
  clients?: number;
}

async function trainJobs(url: string): Promise<JobInfo[]> {
  const res = await api(url, '/api/jobs');
  return ((await res.json()) as JobInfo[]).filter((j) => j.kind === 'train');
}

const base = {
  model: 'model',
  task: 'classify',
  eval: { path: 'val.jsonl', every: 1 },
  local: { steps: 5, batchSize: 16, lr: 0.1, momentum: 0.5 },
};

test('worker-held datasets: each worker trains on its own --data file under Bernoulli participation', async (t) => {
  t.timeout(300_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await modelInit(dir, modelArgs);
  gaussianClasses(path.join(dir, 'val.jsonl'), 300, 20);
  const names = ['a', 'b', 'c'];
  names.forEach((n, i) => gaussianClasses(path.join(dir, `local-${n}.jsonl`), 200, 21 + i));

  const { coordinator } = await startTrainingPool(t, dir, {
    workers: [
      ...names.map((n) => ({ name: n, extra: ['--data', `local=${path.join(dir, `local-${n}.jsonl`)}`] })),
      // A worker without the dataset: it must get no leases of this job.
      'none',
    ],
    leaseMs: 30_000,
  });

  writeFileSync(path.join(dir, 'train.json'), JSON.stringify({
    ...base,
    data: { source: 'worker', name: 'local' },
    mode: 'sync', rounds: 8, clientsPerRound: 3, roundDeadlineMs: 30000,
    participation: { kind: 'bernoulli', p: 0.6, seed: 5 },
  }));
  const r = await fedpool(['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--config', path.join(dir, 'train.json'), '--out', path.join(dir, 'out')]);
  t.is(r.status, 0, r.stderr);
  const m = readMetrics(path.join(dir, 'out', 'metrics.jsonl'));
  t.is(m.length, 8);
  // Participation thins the rounds (seeded: the same rounds every run) but never adds clients beyond the 3 workers.
  t.true(m.every((l) => l.participants <= 3));
  t.true(m.some((l) => l.participants < 3), `participants ${m.map((l) => l.participants).join(' ')}`);
  t.true(m.at(-1)!.accuracy! >= 0.8, `final accuracy ${m.at(-1)!.accuracy}`);
  const [job] = await trainJobs(coordinator.url);
  t.is(job?.clients, 3);
  const done = Object.fromEntries(((await (await api(coordinator.url, '/api/workers')).json()) as Array<{ name: string; trainShardsDone: number }>).map((w) => [w.name, w.trainShardsDone]));
  t.is(done['w-none'], 0);
  for (const n of names) t.true(done[`w-${n}`]! > 0, JSON.stringify(done));
  t.is(Object.values(done).reduce((a, b) => a + b, 0), m.reduce((s, l) => s + l.participants, 0));

  // An occupied --out/model is refused before anything is submitted.
  const again = await fedpool(['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--config', path.join(dir, 'train.json'), '--out', path.join(dir, 'out')]);
  t.is(again.status, 1);
  t.regex(again.stderr, /^\S+model: not empty .*choose another --out\n$/);
  t.is((await trainJobs(coordinator.url)).length, 1);

  // A failure no retry can fix (the workers' labels do not fit a 2-class model) fails the job with the reason,
  // instead of leasing the same shards again and again.
  const two = path.join(dir, 'two-classes');
  await modelInit(two, ['--input', 'features:8', '--output', 'classes:2', '--hidden', '4']);
  writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ ...base, eval: undefined, model: 'two-classes/model', data: { source: 'worker', name: 'local' }, mode: 'async', steps: 5, concurrency: 3, buffer: 2 }));
  const bad = await fedpool(['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--config', path.join(dir, 'bad.json'), '--out', path.join(dir, 'out-bad')]);
  t.is(bad.status, 1);
  t.regex(bad.stderr, /job \S+ ended failed: client \d on worker w-[abc] \(w\d+\): .*label/);
});

test('async with heterogeneous worker speeds logs staleness; killing a worker mid-round stalls neither async nor sync training', async (t) => {
  t.timeout(300_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await modelInit(dir, modelArgs);
  gaussianClasses(path.join(dir, 'train.jsonl'), 900, 30);
  gaussianClasses(path.join(dir, 'val.jsonl'), 300, 31);
  const speeds = { fast: 0, medium: 150, slow: 600, doomed: 100 };
  const { coordinator, workers } = await startTrainingPool(t, dir, { workers: Object.entries(speeds).map(([n, ms]) => ({ name: n, extra: ['--delay-ms', String(ms)] })), leaseMs: 30_000 });

  const data = { source: 'central', path: 'train.jsonl', partition: { clients: 12, kind: 'dirichlet', alpha: 0.5, seed: 6 } };
  writeFileSync(path.join(dir, 'async.json'), JSON.stringify({ ...base, data, mode: 'async', steps: 16, concurrency: 6, buffer: 3 }));
  writeFileSync(path.join(dir, 'sync.json'), JSON.stringify({ ...base, data, mode: 'sync', rounds: 8, clientsPerRound: 6, roundDeadlineMs: 60000 }));
  const runs = Promise.all(['async', 'sync'].map((mode) => fedpool(['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--config', path.join(dir, `${mode}.json`), '--out', path.join(dir, mode)])));
  // Mid-job: kill -9 a worker while both jobs have leases out.
  await until(async () => {
    const jobs = await trainJobs(coordinator.url);
    return jobs.length === 2 && jobs.every((j) => j.progress.done >= 2);
  }, 'both jobs past step 2', 60_000);
  workers[3]!.proc.kill('SIGKILL');
  const [asyncRun, syncRun] = await runs;
  t.is(asyncRun.status, 0, asyncRun.stderr);
  t.is(syncRun.status, 0, syncRun.stderr);
  const am = readMetrics(path.join(dir, 'async', 'metrics.jsonl'));
  t.is(am.length, 16);
  t.true(am.every((l) => l.staleness_mean !== null && l.staleness_mean >= 0));
  // Slow workers' shards arrive after the model has moved on.
  t.true(am.some((l) => l.staleness_mean! > 0), `staleness ${am.map((l) => l.staleness_mean).join(' ')}`);
  t.true(am.at(-1)!.accuracy! >= 0.8, `async final accuracy ${am.at(-1)!.accuracy}`);
  const sm = readMetrics(path.join(dir, 'sync', 'metrics.jsonl'));
  t.is(sm.length, 8);
  t.true(sm.at(-1)!.accuracy! >= 0.8, `sync final accuracy ${sm.at(-1)!.accuracy}`);
  // The killed worker's shard was leased again within its round: no round lost a participant to it.
  t.true(sm.every((l) => l.participants === 6), `sync participants ${sm.map((l) => l.participants).join(' ')}`);
});

test('a coordinator restarted mid-job resumes the training job from its checkpoint; fedpool train follows it to the end', async (t) => {
  t.timeout(300_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await modelInit(dir, modelArgs);
  gaussianClasses(path.join(dir, 'train.jsonl'), 600, 40);
  gaussianClasses(path.join(dir, 'val.jsonl'), 300, 41);
  const state = path.join(dir, 'state.db');
  const args = ['--state', state, '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN, '--lease-ms', '30000'];
  const pool = await startTrainingPool(t, dir, { workers: ['a', 'b'].map((n) => ({ name: n, extra: ['--delay-ms', '200'] })), coordinatorArgs: args });
  const url = pool.coordinator.url;

  writeFileSync(path.join(dir, 'train.json'), JSON.stringify({
    ...base,
    data: { source: 'central', path: 'train.jsonl', partition: { clients: 8, kind: 'iid', seed: 7 } },
    mode: 'sync', rounds: 14, clientsPerRound: 4, roundDeadlineMs: 30000,
    checkpointEvery: 2,
  }));
  const run = fedpool(['train', '--url', url, '--token', CLIENT_TOKEN, '--config', path.join(dir, 'train.json'), '--out', path.join(dir, 'out')]);
  await until(async () => (await trainJobs(url))[0]?.progress.done! >= 5, 'step 5', 60_000);
  const doneAtStop = (await trainJobs(url))[0]!.progress.done;
  t.is(await pool.coordinator.stop('SIGTERM'), 0);
  pool.coordinator = await startCoordinatorProcess([...args, '--port', String(new URL(url).port)]);
  // Resumed from the shutdown checkpoint, not started over.
  const resumedAt = (await trainJobs(pool.coordinator.url))[0]!.progress.done;
  t.true(resumedAt >= doneAtStop && doneAtStop < 14, `stopped at ${doneAtStop}, resumed at ${resumedAt}`);
  const r = await run;
  t.is(r.status, 0, r.stderr);
  const m = readMetrics(path.join(dir, 'out', 'metrics.jsonl'));
  t.deepEqual(m.map((l) => l.step), Array.from({ length: 14 }, (_, i) => i + 1));
  t.true(m.at(-1)!.accuracy! >= 0.8, `final accuracy ${m.at(-1)!.accuracy}`);
  // Time continues across the restart instead of starting again from 0.
  for (let i = 1; i < m.length; i++) t.true(m[i]!.time >= m[i - 1]!.time, `time ${m[i - 1]!.time} → ${m[i]!.time}`);
  t.is(summaryOf<{ steps: number }>(r.stdout).steps, 14);
  const [job] = await trainJobs(pool.coordinator.url);
  t.is(job?.state, 'done');
});
