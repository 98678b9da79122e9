// TrainingService: a job that has ended keeps only what the HTTP API serves (state, progress, metrics, the model with
// its final weights); its driver, data, partitions, eval data, bindings and TF.js model are dropped, so a long-running
// coordinator does not grow with every finished job. In-process: a real Pool (lease table, services, MemoryStore);
// the sink answers each train lease at once with a small update.
import test from 'ava';
import { packedBundle } from '../../helpers/bundles.js';
import { centralRows, inProcessCoordinator } from '../../helpers/in-process-coordinator.js';
import type { CentralData } from '../../../server/training/job-request.js';
import { parseTrainConfig } from '../../../shared/config/train.js';
import { unpackBundle } from '../../../shared/model/bundle.js';
import { WEIGHTS_FILE } from '../../../shared/model/tf-model.js';
import type { WeightsMessage } from '../../../shared/protocol/index.js';

const DIM = 4;
const CLASSES = 3;

const modelBundle = (): Promise<Uint8Array> => packedBundle({ kind: 'features', dim: DIM }, 'classes', 1, CLASSES);
const rows = (n: number): CentralData => centralRows(n, DIM, CLASSES);

/** The service's per-job state (private): what an ended job must no longer hold. */
interface JobInternals {
  driver: unknown;
  model: unknown;
  data: unknown;
  evalData: unknown;
  adversary: unknown;
  placement: unknown;
  shards: Map<number, unknown>;
  held: unknown[];
}

async function setup(t: import('ava').ExecutionContext) {
  const { jobs } = inProcessCoordinator([{ name: 'a', credit: 4 }, { name: 'b', credit: 4 }]);
  const service = jobs.training;
  t.teardown(() => jobs.close());
  const model = jobs.blobs.put(await modelBundle());
  const internals = (id: string): JobInternals => (service as unknown as { jobs: Map<string, JobInternals> }).jobs.get(id)!;
  const until = async (id: string, ok: () => boolean): Promise<void> => {
    while (!ok()) await Promise.race([service.waitForChange(id), new Promise((r) => setTimeout(r, 50))]);
  };
  return { service, model, internals, until };
}

function trainConfig(mode: 'sync' | 'async'): ReturnType<typeof parseTrainConfig> {
  const base = {
    model: 'model', task: 'classify',
    data: { source: 'central', path: 'train.jsonl', partition: { clients: 6, kind: 'iid', seed: 3 } },
    eval: { path: 'val.jsonl', every: 1 },
    local: { steps: 1, batchSize: 8, lr: 0.1 },
  };
  const json = mode === 'sync' ? { ...base, mode, rounds: 3, clientsPerRound: 3, roundDeadlineMs: 30_000 } : { ...base, mode, steps: 4, concurrency: 2, buffer: 2 };
  return parseTrainConfig(json, '/', (_base, p) => p);
}

function assertReleased(t: import('ava').ExecutionContext, j: JobInternals): void {
  t.is(j.driver, undefined, 'driver dropped');
  t.is(j.model, undefined, 'TF.js model disposed and dropped');
  t.is(j.data, undefined, 'training data dropped');
  t.is(j.evalData, undefined, 'eval data dropped');
  t.is(j.adversary, null);
  t.is(j.placement, undefined, 'placement (partitions, bindings) dropped');
  t.is(j.shards.size, 0);
  t.is(j.held.length, 0);
}

for (const mode of ['sync', 'async'] as const) {
  test(`a finished ${mode} job drops its driver, data, eval data and model but still serves state, metrics and the final model`, async (t) => {
    const { service, model, internals, until } = await setup(t);
    const total = mode === 'sync' ? 3 : 4;
    const { id } = service.submit({ model, config: trainConfig(mode), data: rows(60), eval: rows(30) });
    await until(id, () => internals(id).driver !== undefined);
    const running = internals(id);
    t.not(running.model, undefined);
    t.not(running.evalData, undefined);

    await until(id, () => service.status(id)?.state !== 'running');
    const status = service.status(id)!;
    t.is(status.state, 'done');
    t.deepEqual(status.progress, { done: total, total });
    assertReleased(t, internals(id));

    // What the HTTP API serves for an ended job is still there.
    const metrics = service.metrics(id, 0)!;
    t.true(metrics.ended);
    t.deepEqual(metrics.lines.map((l) => l.step), Array.from({ length: total }, (_, i) => i + 1));
    t.true(metrics.lines.every((l) => typeof l.accuracy === 'number'));
    const bundle = await service.modelBundle(id);
    t.truthy(bundle);
    const initial = await service.modelBundle(id); // served again: a temporary model each time, nothing kept
    t.deepEqual(initial, bundle);
    t.is(internals(id).model, undefined, 'modelBundle keeps no model for an ended job');
    const weights = unpackBundle(bundle!).files.get(WEIGHTS_FILE)!;
    const original = unpackBundle((await modelBundle())).files.get(WEIGHTS_FILE)!;
    t.notDeepEqual(weights, original, 'the bundle carries the trained weights');
  });
}

test('a cancelled job drops its training state too', async (t) => {
  const { service, model, internals, until } = await setup(t);
  const config = trainConfig('sync');
  const { id } = service.submit({ model, config: { ...config, rounds: 1000 } as typeof config, data: rows(60), eval: rows(30) });
  await until(id, () => (service.metrics(id, 0)?.lines.length ?? 0) >= 2);
  t.true(service.cancel(id));
  t.is(service.status(id)?.state, 'cancelled');
  const done = service.status(id)!.progress.done;
  t.true(done >= 2);
  assertReleased(t, internals(id));
  t.truthy(await service.modelBundle(id));
});

/** A worker-data sync job on four workers; returns client → worker name of every lease and the clients per round. */
async function workerDataRun(t: import('ava').ExecutionContext, data: Record<string, unknown>, clientsPerRound: number): Promise<{ trainedBy: Map<number, string>; rounds: number[][] }> {
  const trainedBy = new Map<number, string>();
  const rounds: number[][] = [];
  // Connected in an order that is neither the name order nor its reverse.
  const names = ['sim-0002', 'sim-0000', 'sim-0003', 'sim-0001'];
  const { jobs } = inProcessCoordinator(names.map((name) => ({ name, capabilities: { tasks: ['train'], datasets: ['d'] }, credit: 1 })), {
    onTrainLease: (worker, task) => {
      trainedBy.set(task.client, worker);
      (rounds[task.modelVersion] ??= []).push(task.client);
    },
  });
  const service = jobs.training;
  const blobs = jobs.blobs;
  t.teardown(() => jobs.close());
  const model = blobs.put(await modelBundle());
  const config = parseTrainConfig({
    model: 'model', task: 'classify', data: { source: 'worker', name: 'd', clients: 4, ...data },
    mode: 'sync', rounds: 6, clientsPerRound, local: { steps: 1, batchSize: 8, lr: 0.1 },
  }, '/', (_base, p) => p);
  const { id } = service.submit({ model, config });
  while (service.status(id)?.state !== 'done') await Promise.race([service.waitForChange(id), new Promise((r) => setTimeout(r, 50))]);
  return { trainedBy, rounds: rounds.map((r) => [...r].sort()) };
}

test('worker-held data: the holders present at the start are clients 0, 1, … in name order, whatever order they connected in', async (t) => {
  const { trainedBy } = await workerDataRun(t, {}, 4);
  t.deepEqual([...trainedBy.entries()].sort((a, b) => a[0] - b[0]), [[0, 'sim-0000'], [1, 'sim-0001'], [2, 'sim-0002'], [3, 'sim-0003']]);
});

test('worker-held data: data.seed seeds the clients sampled per round (same seed, same sample)', async (t) => {
  const a = await workerDataRun(t, { seed: 1 }, 2);
  const again = await workerDataRun(t, { seed: 1 }, 2);
  const b = await workerDataRun(t, { seed: 2 }, 2);
  t.deepEqual(again.rounds, a.rounds);
  t.notDeepEqual(b.rounds, a.rounds);
});

test('training shards live in the one lease table: they use the credit score shards use, and a central shard lost with its worker goes to another in the same round', async (t) => {
  const { jobs, held, answer } = inProcessCoordinator([{ name: 'a', credit: 2 }, { name: 'b', credit: 1 }], { answer: false });
  t.teardown(() => jobs.close());
  const [a, b] = jobs.workers.list().map((w) => w.id) as [string, string];
  const model = jobs.blobs.put(await modelBundle());
  const config = trainConfig('sync');
  const { id } = jobs.training.submit({ model, config: { ...config, rounds: 1, clientsPerRound: 3 } as typeof config, data: rows(60) });
  while (held.length < 3) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(jobs.scheduler.workerLoad(a), { credit: 2, inFlight: 2 }, 'train leases count in the table every lease counts in');
  t.deepEqual(jobs.scheduler.workerLoad(b), { credit: 1, inFlight: 1 });
  const lostClient = held.find((h) => h.workerId === b)?.lease.task;
  jobs.removeWorker(b);
  t.is(held.length, 3, 'no free credit: the lost shard waits in the queue');
  answer(held.shift()!);
  const again = held.at(-1)!;
  t.is(again.workerId, a);
  t.is(again.lease.attempt, 2);
  t.like(again.lease.task, { kind: 'train', client: lostClient?.kind === 'train' ? lostClient.client : -1, modelVersion: 0 });
  for (const h of held.splice(0)) answer(h);
  while (jobs.training.status(id)?.state === 'running') await jobs.training.waitForChange(id);
  t.is(jobs.training.status(id)?.state, 'done');
  t.is(jobs.training.metrics(id, 0)?.lines[0]?.participants, 3, 'all three clients of the round took part');
  t.deepEqual(jobs.scheduler.workerLoad(a), { credit: 2, inFlight: 0 });
});

test('an update over the job’s maxUpdateNorm, or of the wrong length, is refused at the boundary and counted against its worker; others train the model', async (t) => {
  const { jobs, refused } = inProcessCoordinator([{ name: 'honest', credit: 2 }, { name: 'huge', credit: 2 }, { name: 'short', credit: 2 }], {
    update: (_task, weights, worker) => {
      const size = weights.length;
      if (worker === 'huge') return { update: new Float32Array(size).fill(1e3), samples: 5, loss: 1 };
      if (worker === 'short') return { update: new Float32Array(size - 1).fill(0.01), samples: 5, loss: 1 };
      return { update: new Float32Array(size).fill(0.01), samples: 5, loss: 1 };
    },
  });
  t.teardown(() => jobs.close());
  const service = jobs.training;
  const model = jobs.blobs.put(await modelBundle());
  const config = trainConfig('sync');
  const { id } = service.submit({ model, config: { ...config, maxUpdateNorm: 10 } as typeof config, data: rows(60) });
  while (service.status(id)?.state === 'running' || service.status(id)?.state === 'queued') await Promise.race([service.waitForChange(id), new Promise((r) => setTimeout(r, 50))]);
  t.is(service.status(id)?.state, 'done');
  t.true(refused.some((r) => /^huge: invalid field "payload.update": L2 norm \S+ exceeds the job's maxUpdateNorm 10$/.test(r)), refused.join('; '));
  t.true(refused.some((r) => /^short: invalid field "payload.update": \d+ values, the model has \d+$/.test(r)));
  t.true(jobs.records.of('huge').rejected > 0);
  t.true(jobs.records.of('short').rejected > 0);
  t.is(jobs.records.of('honest').rejected, 0);
  t.true(service.metrics(id, 0)!.lines.every((l) => l.participants > 0), 'every round aggregated honest updates only');
});

test('a worker gets a model version’s weights once, before its first lease of that version, in one message object per version for every worker; a new connection gets them again; the updates are right', async (t) => {
  const sent: Array<{ worker: string; version: number; weights: boolean }> = [];
  const messages = new Map<number, Set<WeightsMessage>>();
  const { jobs, refused } = inProcessCoordinator([{ name: 'a', credit: 4 }, { name: 'b', credit: 4 }], {
    onTrainLease: (worker, task, weights) => {
      sent.push({ worker, version: task.modelVersion, weights: weights !== undefined });
      if (weights === undefined) return;
      t.is(weights.modelVersion, task.modelVersion);
      let set = messages.get(weights.modelVersion);
      if (set === undefined) messages.set(weights.modelVersion, (set = new Set()));
      set.add(weights);
    },
  });
  t.teardown(() => jobs.close());
  const model = jobs.blobs.put(await modelBundle());
  const config = trainConfig('sync');
  const { id } = jobs.training.submit({ model, config: { ...config, rounds: 3, clientsPerRound: 6 } as typeof config, data: rows(60) });
  while (jobs.training.status(id)?.state === 'running' || jobs.training.status(id)?.state === 'queued') await Promise.race([jobs.training.waitForChange(id), new Promise((r) => setTimeout(r, 50))]);
  t.is(jobs.training.status(id)?.state, 'done');
  t.deepEqual(refused, []);
  t.is(sent.length, 18);
  const seen = new Set<string>();
  for (const s of sent) {
    const key = `${s.worker}@${s.version}`;
    t.is(s.weights, !seen.has(key), `${key}: weights on the first lease of the version only`);
    seen.add(key);
  }
  t.true(sent.filter((s) => !s.weights).length >= 12, 'most leases came without weights');
  t.deepEqual([...messages.keys()].sort(), [0, 1, 2]);
  for (const [version, set] of messages) t.is(set.size, 1, `version ${version}: one weights message for both workers (encoded once)`);
  t.true(jobs.training.metrics(id, 0)!.lines.every((l) => l.participants === 6));

  // A reconnected worker is a new connection: nothing is assumed held.
  const before = sent.length;
  const a = jobs.workers.list().find((w) => w.name === 'a')!.id;
  jobs.removeWorker(a);
  const again = jobs.addWorker('a', { backend: 'cpu', threads: 1, tasks: ['score', 'train'] });
  jobs.pull(again.id, 4);
  const second = jobs.training.submit({ model, config: { ...config, rounds: 1, clientsPerRound: 6 } as typeof config, data: rows(60) });
  while (jobs.training.status(second.id)?.state !== 'done') await Promise.race([jobs.training.waitForChange(second.id), new Promise((r) => setTimeout(r, 50))]);
  const firstOfA = sent.slice(before).find((s) => s.worker === 'a');
  t.true(firstOfA?.weights, 'the new connection got the weights');
});
