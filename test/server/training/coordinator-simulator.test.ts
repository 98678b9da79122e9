// One driver for the coordinator and the simulator (docs/architecture.md, "Training"): the same train.json, seed and
// client function give the same sequence of models on the coordinator's training service (in-process Pool, leases
// answered by a "worker" that computes each update with the function) and in the simulator's driven engine
// (simulations/engine/driven.ts, in-process clients on a virtual clock) — bit for bit, sync and async, with client
// momentum, sample weighting or FedAU, NNM + a robust rule and a stateful server optimizer.
import test from 'ava';
import { TrainModel } from '../../../server/training/evaluator.js';
import type { CentralData } from '../../../server/training/job-request.js';
import { parseTrainConfig, type TrainConfig } from '../../../shared/config/train.js';
import { createDriver } from '../../../shared/training/create-driver.js';
import type { DispatchOrder } from '../../../shared/training/types.js';
import { runDriver, type ClientWork } from '../../../simulations/engine/driven.js';
import { packedBundle } from '../../helpers/bundles.js';
import { centralRows, inProcessCoordinator } from '../../helpers/in-process-coordinator.js';

const DIM = 3;
const CLASSES = 2;

const modelBundle = (): Promise<Uint8Array> => packedBundle({ kind: 'features', dim: DIM }, 'classes', 7, CLASSES);
const rows = (n: number): CentralData => centralRows(n, DIM, CLASSES);

/**
 * A participant's local work, the same on both sides: a pull towards a target of its own plus momentum — a function of
 * the order only (client, weights, momentum), as real local training is given a seed per (version, client).
 */
function work(client: number, weights: Float32Array, momentum: Float32Array | undefined): ClientWork {
  const m = momentum === undefined ? new Float32Array(weights.length) : Float32Array.from(momentum);
  const update = new Float32Array(weights.length);
  for (let j = 0; j < weights.length; j++) {
    const target = Math.sin(client * 7 + j) * (client === 4 ? 5 : 1); // client 4 pulls hard: the robust rule has work
    m[j] = 0.9 * (m[j] as number) + 0.1 * (target - (weights[j] as number));
    update[j] = m[j] as number;
  }
  return { update, momentum: m, samples: 3 + (client % 4), loss: client / 10 };
}

const orderWork = (o: DispatchOrder): ClientWork => work(o.client, o.weights, o.momentum);

function config(mode: 'sync' | 'async'): TrainConfig {
  const base = {
    model: 'model', task: 'classify', data: { source: 'central', path: 'train.jsonl', partition: { clients: 8, kind: 'iid', seed: 11 } },
    local: { steps: 1, batchSize: 4, lr: 0.1 },
  };
  const robust = { mix: 'nnm', rule: 'trimmed-mean', f: 1 };
  const json = mode === 'sync'
    ? { ...base, mode, rounds: 6, clientsPerRound: 4, roundDeadlineMs: 600_000, aggregation: { weighting: 'samples', robust, server: { optimizer: 'sgd', lr: 0.8, momentum: 0.5 } } }
    : { ...base, mode, steps: 6, concurrency: 4, buffer: 3, aggregation: { weighting: 'fedau', robust, server: { optimizer: 'adam', lr: 0.05 } } };
  return parseTrainConfig(json, '/', (_b, p) => p);
}

/** The coordinator's models: each version's weights as its leases carried them, and the final weights. */
async function coordinatorRun(t: import('ava').ExecutionContext, cfg: TrainConfig, bundle: Uint8Array): Promise<{ leased: Map<number, Float32Array>; final: Float32Array }> {
  const byVersion = new Map<number, Float32Array>();
  // One worker with credit 1: shards are trained one at a time in the order the driver dispatched them.
  const { jobs } = inProcessCoordinator([{ name: 'w', credit: 1, capabilities: { tasks: ['train'] } }], {
    update: (task, weights) => {
      const seen = byVersion.get(task.modelVersion);
      if (seen === undefined) byVersion.set(task.modelVersion, Float32Array.from(weights));
      else t.deepEqual(seen, weights, `every lease of version ${task.modelVersion} trains from the same weights`);
      return work(task.client, weights, task.momentum?.data as Float32Array | undefined);
    },
  });
  t.teardown(() => jobs.close());
  const model = jobs.blobs.put(bundle);
  const { id } = jobs.training.submit({ model, config: cfg, data: rows(40) });
  while (jobs.training.status(id)?.state === 'running' || jobs.training.status(id)?.state === 'queued') await jobs.training.waitForChange(id);
  t.is(jobs.training.status(id)?.state, 'done', jobs.training.status(id)?.error);
  const final = (jobs.training as unknown as { jobs: Map<string, { finalWeights: Float32Array }> }).jobs.get(id)?.finalWeights as Float32Array;
  return { leased: byVersion, final };
}

/** The simulator's models from the same initial weights: the initial model, then the model after every step. */
function simulatorRun(cfg: TrainConfig, initial: Float32Array): Float32Array[] {
  const driver = createDriver(cfg, 8, initial);
  // Arrivals one at a time in dispatch order, as the coordinator's single worker of credit 1 delivers them: the k-th
  // dispatched shard arrives at time k (the clock is at the arrival that made room for it when it is dispatched).
  let dispatched = 0;
  let clock = 0;
  const run = runDriver(driver, orderWork, {
    recordWeights: true,
    duration: () => ++dispatched - clock,
    onArrival: (_a, now) => {
      clock = now;
    },
  });
  return [initial, ...run.weights];
}

for (const mode of ['sync', 'async'] as const) {
  test(`${mode}: the coordinator and the simulator run the same driver to the same models, bit for bit`, async (t) => {
    const bundle = await modelBundle();
    const loaded = await TrainModel.load(bundle);
    const initial = Float32Array.from(loaded.initialWeights);
    loaded.dispose();
    const cfg = config(mode);
    const { leased, final } = await coordinatorRun(t, cfg, bundle);
    const simulated = simulatorRun(cfg, initial);
    t.is(simulated.length, 7, 'the initial model and six steps');
    t.deepEqual(leased.get(0), initial, "the first leases carry the bundle's weights");
    t.deepEqual(final, simulated[6], 'the final models are equal');
    // Every model the coordinator leased is the simulator's model of that version (async may skip leasing a version).
    for (const [v, w] of leased) t.deepEqual(w, simulated[v], `version ${v}`);
    t.true(leased.size >= (mode === 'sync' ? 6 : 4), `the coordinator leased versions ${[...leased.keys()].join(', ')}`);
    t.notDeepEqual(final, initial);
  });
}
