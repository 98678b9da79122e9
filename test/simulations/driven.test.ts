// The driven engine (simulations/engine/driven.ts) runs the coordinator's own drivers: given a train.json (sync and
// async, through createDriver) and the simulator's client function, it produces bit for bit the models of the same
// driver driven by hand — next(), the client's job, take() — in the engine's event order; and runSync / runAsync
// (FedBuff) are exactly such runs of a SyncDriver / AsyncDriver.
import test from 'ava';
import { parseTrainConfig } from '../../shared/config/train.js';
import { createParticipation } from '../../shared/data/participation.js';
import { deriveSeed } from '../../shared/random.js';
import { Adversary } from '../../shared/training/adversary.js';
import { AsyncDriver } from '../../shared/training/async-driver.js';
import { createDriver } from '../../shared/training/create-driver.js';
import { SyncDriver } from '../../shared/training/sync-driver.js';
import type { DispatchOrder, TrainingDriver } from '../../shared/training/types.js';
import { runAsync, type AsyncTraceEvent } from '../../simulations/engine/async.js';
import { taskClient } from '../../simulations/engine/clients.js';
import { runDriver, type ClientFn } from '../../simulations/engine/driven.js';
import { runSync } from '../../simulations/engine/sync.js';
import { createQuadraticTask } from '../../simulations/tasks/quadratic.js';
import { createSoftmaxTask } from '../../simulations/tasks/softmax.js';
import type { LearningTask } from '../../simulations/types.js';

const N = 12;
const DIM = 4;
const local = { steps: 3, lr: 0.2, batchSize: 1, momentum: 0.5 };
const quad = (): LearningTask => createQuadraticTask({ numClients: N, dim: DIM, seed: 5 });

/** A duration that depends only on the order, so the engine and the hand-driven loop see the same clock. */
const duration = (o: DispatchOrder): number => 0.5 + ((o.client * 7 + o.version * 3) % 5) * 0.25;

/** Drives `d` by hand in the engine's event order: arrivals by (time, dispatch order), next() after each instant. */
function byHand(d: TrainingDriver, client: ClientFn): Float32Array[] {
  const models: Float32Array[] = [];
  const pending: Array<{ time: number; seq: number; order: DispatchOrder; work: ReturnType<ClientFn> }> = [];
  let seq = 0;
  let now = 0;
  for (;;) {
    if (d.done) break;
    if (d.wantsMore) {
      const { orders, step } = d.next(now);
      for (const order of orders) pending.push({ time: now + duration(order), seq: seq++, order, work: client(order) });
      if (step !== null) {
        models.push(step.weights);
        continue;
      }
    }
    if (pending.length === 0) break;
    pending.sort((a, b) => a.time - b.time || a.seq - b.seq);
    now = pending[0]!.time;
    while (!d.done && pending.length > 0 && pending[0]!.time === now) {
      const { order, work } = pending.shift()!;
      const r = d.take({ client: order.client, baseVersion: order.version, update: work.update, samples: work.samples, loss: work.loss, ...(work.momentum !== undefined && { momentum: work.momentum }) }, now);
      if (r.status === 'refused') {
        const s = d.miss(order.client, order.version, now);
        if (s !== null) models.push(s.weights);
      } else if (r.status === 'taken' && r.step !== null) models.push(r.step.weights);
    }
  }
  return models;
}

const common = { model: 'm', task: 'classify', data: { source: 'worker', name: 'sim', clients: N, seed: 3 }, local: { steps: 3, batchSize: 1, lr: 0.2, momentum: 0.5 } };

test('sync train.json (FedAU, Bernoulli participation, NNM + trimmed mean, server momentum, an ALIE client): engine = by hand, bit for bit', (t) => {
  const cfg = parseTrainConfig({
    ...common, mode: 'sync', rounds: 30, clientsPerRound: 6, participation: { kind: 'bernoulli', p: 0.7 },
    aggregation: { weighting: 'fedau', fedauCutoff: null, robust: { mix: 'nnm', rule: 'trimmed-mean', f: 1 }, server: { optimizer: 'sgd', lr: 1, momentum: 0.5 } },
    adversary: { clients: [4], attack: 'alie', scale: 1.5 },
  }, '/');
  const task = quad();
  const client = taskClient(task, local, { seed: 9, keepMomentum: true });
  const driven = runDriver(createDriver(cfg, N, task.initial()), client, { duration, recordWeights: true });
  const hand = byHand(createDriver(cfg, N, task.initial()), client);
  t.is(driven.ended, 'done');
  t.is(driven.steps, 30);
  t.is(hand.length, 30);
  t.deepEqual(driven.weights, hand);
  t.true(hand[29]!.some((v, j) => v !== hand[0]![j]), 'the model moved');
});

test('async train.json (FedBuff K = 3, maxStaleness 1, trimmed mean, a sign-flip client): engine = by hand, bit for bit', (t) => {
  const cfg = parseTrainConfig({
    ...common, mode: 'async', steps: 40, concurrency: 5, buffer: 3, maxStaleness: 1,
    aggregation: { weighting: 'uniform', fedauCutoff: null, robust: { mix: 'none', rule: 'trimmed-mean', f: 1 }, server: { optimizer: 'sgd', lr: 1, momentum: 0 } },
    adversary: { clients: [1], attack: 'sign-flip' },
  }, '/');
  const task = quad();
  const client = taskClient(task, local, { seed: 9, keepMomentum: true });
  const d = createDriver(cfg, N, task.initial());
  const driven = runDriver(d, client, { duration, recordWeights: true });
  const hand = byHand(createDriver(cfg, N, task.initial()), client);
  t.is(driven.ended, 'done');
  t.is(driven.steps, 40);
  t.deepEqual(driven.weights, hand);
  t.true(driven.dropped > 0, `some arrivals were too stale (${driven.dropped})`);
  t.is((d as AsyncDriver).stats.dropped, driven.dropped);
});

test('runSync is the SyncDriver run: the same models as the driver driven by hand, with the simulator’s Byzantine clients', (t) => {
  const softmax = () => createSoftmaxTask({ numClients: 6, samplesPerClient: 30, alpha: 1, seed: 4, testSamples: 200 });
  const models: Float32Array[] = [];
  const base = softmax();
  const task: LearningTask = { ...base, evaluate: (x) => (models.push(Float32Array.from(x)), base.evaluate(x)) };
  const seed = 7;
  const opts = { steps: 1, lr: 1, batchSize: 10, momentum: 0.9 };
  const pipeline = { weighting: 'uniform', robust: { mix: 'none', rule: 'cclip', f: 2, tau: 1, iters: 3 }, server: { optimizer: 'sgd', lr: 1 } } as const;
  const participation = () => createParticipation({ kind: 'bernoulli', p: 0.6 }, 6, 11);
  const gamma = (r: number): number => 0.5 / (1 + r / 10);
  runSync({
    experiment: 'e', algorithm: 'a', seed, task, rounds: 20, participation: participation(), clientsPerRound: 4, logEvery: 1,
    local: opts, clientMomentum: true, pipeline, serverLr: gamma, byzantine: { clients: 2, attack: 'alie' },
  });
  // The same run, by hand: clients 6 and 7 are the two Byzantine ones, line-searched ALIE against cclip.
  const adversary = new Adversary({ clients: [6, 7], attack: 'alie', seed, presence: 'every-round' });
  const d = new SyncDriver(
    { numClients: 8, clientsPerRound: 4, rounds: 20, participation: null, participationProcess: participation(), seed: deriveSeed(seed, 'sample'), pipeline, adversary, stepSize: gamma },
    base.initial(),
  );
  const hand = byHand(d, taskClient(base, opts, { seed, keepMomentum: true, honest: 6, adversary }));
  t.is(hand.length, 20);
  t.deepEqual(models.slice(1), hand);
});

test('runAsync (FedBuff) is the AsyncDriver run: its step models are the driver’s driven by hand', (t) => {
  const task = quad();
  const steps: Float32Array[] = [];
  const staleness = { kind: 'poly', exponent: 0.5 } as const;
  const duration1 = (c: number): number => 0.5 + (c % 4) * 0.3;
  runAsync({
    experiment: 'e', algorithm: 'a', seed: 2, task, concurrency: 5, local, maxTime: 1e9, maxSteps: 25,
    algo: { kind: 'fedbuff', buffer: 2, staleness }, duration: (c) => duration1(c),
    trace: (e: AsyncTraceEvent) => {
      if (e.kind === 'step') steps.push(Float32Array.from(e.model));
    },
  });
  const d = new AsyncDriver(
    { numClients: N, concurrency: 5, buffer: 2, staleness, maxStaleness: null, steps: 25, seed: deriveSeed(2, 'sample'), participation: null, pipeline: { weighting: 'uniform', robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1 } } },
    task.initial(),
  );
  // runAsync's durations are per-client constants here, so the hand loop's order-based clock is the same one.
  const models = byHandWith(d, taskClient(task, local, { seed: 2 }), (o) => duration1(o.client));
  t.is(steps.length, 25);
  t.deepEqual(steps, models);
});

/** byHand with another clock. */
function byHandWith(d: TrainingDriver, client: ClientFn, dur: (o: DispatchOrder) => number): Float32Array[] {
  const pending: Array<{ time: number; seq: number; order: DispatchOrder; work: ReturnType<ClientFn> }> = [];
  const models: Float32Array[] = [];
  let seq = 0;
  let now = 0;
  while (!d.done) {
    if (d.wantsMore) for (const order of d.next(now).orders) pending.push({ time: now + dur(order), seq: seq++, order, work: client(order) });
    if (pending.length === 0) break;
    pending.sort((a, b) => a.time - b.time || a.seq - b.seq);
    now = pending[0]!.time;
    while (!d.done && pending.length > 0 && pending[0]!.time === now) {
      const { order, work } = pending.shift()!;
      const r = d.take({ client: order.client, baseVersion: order.version, update: work.update, samples: work.samples, loss: work.loss }, now);
      if (r.status === 'taken' && r.step !== null) models.push(r.step.weights);
    }
  }
  return models;
}

test('runDriver: maxTime stops before a later arrival; onStep can stop the run; an empty sync round costs emptyStepTime', (t) => {
  const task = quad();
  const client = taskClient(task, local, { seed: 1 });
  const sync = () => new SyncDriver({ numClients: N, clientsPerRound: 3, rounds: 10, participation: null, seed: 1, pipeline: { weighting: 'uniform', robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1 } } }, task.initial());
  const capped = runDriver(sync(), client, { duration: () => 2, maxTime: 7 });
  t.is(capped.ended, 'maxTime');
  t.is(capped.steps, 3); // rounds end at 2, 4, 6; the fourth would end at 8
  t.is(capped.endTime, 6);
  const times: number[] = [];
  const stopped = runDriver(sync(), client, { onStep: (_s, now) => (times.push(now), now >= 3) });
  t.is(stopped.ended, 'stopped');
  t.deepEqual(times, [1, 2, 3]);
  // Nobody is ever available: every round closes at once, each costing emptyStepTime.
  const never = { kind: 'bernoulli', p: 1e-9 } as const;
  const empty = new SyncDriver({ numClients: N, rounds: 4, participation: { ...never, seed: 3 }, seed: 1, pipeline: { weighting: 'uniform', robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1 } } }, task.initial());
  const clock: number[] = [];
  const r = runDriver(empty, client, { emptyStepTime: 1.5, onStep: (_s, now) => void clock.push(now) });
  t.deepEqual(clock, [1.5, 3, 4.5, 6]);
  t.is(r.dispatched, 0);
  t.throws(() => runDriver(sync(), client, { duration: () => -1 }), { instanceOf: RangeError, message: /durations must be finite/ });
});
