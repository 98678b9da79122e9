// Issue 12's acceptance test for exact checkpoints: a training job whose coordinator is killed (kill -9) and
// restarted resumes from its last checkpoint and ends with bit for bit the weights of an uninterrupted run of the
// same config, with server Adam, worker momentum (MoNNA-style updates) and NNM + centered clipping, sync and async.
//
// "No update is lost in between" holds by construction: every step writes a checkpoint (checkpointEvery 1), a sync
// round is re-run from its start with the same sample, and an async checkpoint carries the shards in flight (sent
// again, on the weights they were built on) and the partly filled buffer. One worker with one training thread runs
// shards in lease order, so the async arrival order is the dispatch order in both runs; a shard's result depends only
// on (weights, momentum, client data, version) — its minibatch seed is trainSeed(version, client).
import test, { type ExecutionContext } from 'ava';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gaussianClasses } from '../../cli/demo-data.js';
import { runFedpool as fedpool } from '../helpers/processes.js';
import { CLIENT_TOKEN, WORKER_TOKEN, api, startCoordinatorProcess, tempDir, until } from '../server/helpers.js';
import { modelInit, readMetrics, startTrainingPool } from './processes.js';

interface JobInfo {
  id: string;
  kind: string;
  state: string;
  progress: { done: number; total: number };
}

async function trainJobs(url: string): Promise<JobInfo[]> {
  const res = await api(url, '/api/jobs');
  return ((await res.json()) as JobInfo[]).filter((j) => j.kind === 'train');
}

/** Every file of a model directory, by name. */
function modelFiles(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).sort().map((f) => [f, readFileSync(path.join(dir, f))]));
}

const common = {
  model: 'model',
  task: 'classify',
  data: { source: 'central', path: 'train.jsonl', partition: { clients: 8, kind: 'dirichlet', alpha: 0.5, seed: 9 } },
  local: { steps: 4, batchSize: 16, lr: 0.1, momentum: 0.9 },
  checkpointEvery: 1,
};

async function exactResume(t: ExecutionContext, modeConfig: Record<string, unknown>, total: number): Promise<void> {
  t.timeout(300_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await modelInit(dir, ['--input', 'features:8', '--output', 'classes:3', '--hidden', '16', '--seed', '5']);
  gaussianClasses(path.join(dir, 'train.jsonl'), 600, 50);
  writeFileSync(path.join(dir, 'train.json'), JSON.stringify({ ...common, ...modeConfig }));
  const state = path.join(dir, 'state.db');
  const args = ['--state', state, '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN, '--lease-ms', '120000'];
  const pool = await startTrainingPool(t, dir, { workers: [{ name: 'a', extra: ['--delay-ms', '100'] }], coordinatorArgs: args });
  const url = pool.coordinator.url;
  const train = (out: string) => fedpool(['train', '--url', url, '--token', CLIENT_TOKEN, '--config', path.join(dir, 'train.json'), '--out', path.join(dir, out)]);

  // The uninterrupted run.
  const ref = await train('ref');
  t.is(ref.status, 0, ref.stderr);

  // The same config again, its coordinator killed -9 mid-job and restarted on the same state file and port.
  const run = train('resumed');
  const running = async () => (await trainJobs(url)).find((j) => j.state === 'running');
  await until(async () => ((await running())?.progress.done ?? 0) >= 3, 'the second job past step 3', 120_000);
  const job = await running();
  pool.coordinator.proc.kill('SIGKILL');
  await pool.coordinator.exited;
  pool.coordinator = await startCoordinatorProcess([...args, '--port', String(new URL(url).port)]);
  const resumedAt = (await trainJobs(pool.coordinator.url)).find((j) => j.id === job?.id)?.progress.done ?? -1;
  t.log(`killed at step ≥ ${job?.progress.done}, resumed from the checkpoint of step ${resumedAt} of ${total}`);
  t.true(resumedAt >= 3 && resumedAt < total, `resumed at ${resumedAt}`);
  const r = await run;
  t.is(r.status, 0, r.stderr);

  t.deepEqual(readMetrics(path.join(dir, 'resumed', 'metrics.jsonl')).map((l) => l.step), Array.from({ length: total }, (_, i) => i + 1));
  const want = modelFiles(path.join(dir, 'ref', 'model'));
  const got = modelFiles(path.join(dir, 'resumed', 'model'));
  t.deepEqual([...got.keys()], [...want.keys()]);
  for (const [name, bytes] of want) t.true(bytes.equals(got.get(name) ?? Buffer.alloc(0)), `${name} differs between the uninterrupted and the resumed run`);
  // And the per-step training losses: the resumed run re-ran the steps after its checkpoint on the same updates.
  const lossesOf = (out: string) => readMetrics(path.join(dir, out, 'metrics.jsonl')).map((l) => l.loss);
  t.deepEqual(lossesOf('resumed'), lossesOf('ref'));
}

const aggregation = { robust: { mix: 'nnm', rule: 'cclip', f: 1, tau: 0.5 }, server: { optimizer: 'adam', lr: 0.02 } };

test('sync, server Adam + worker momentum + NNM/cclip: kill -9 and resume ends bit-identical to an uninterrupted run', async (t) => {
  await exactResume(t, { mode: 'sync', rounds: 8, clientsPerRound: 4, roundDeadlineMs: 120_000, aggregation: { weighting: 'samples', ...aggregation } }, 8);
});

test('async FedBuff, server Adam + worker momentum + NNM/cclip + FedAU: kill -9 and resume ends bit-identical to an uninterrupted run', async (t) => {
  await exactResume(t, { mode: 'async', steps: 10, concurrency: 4, buffer: 3, aggregation: { weighting: 'fedau', ...aggregation } }, 10);
});
