// The discrete-event async engine (simulations/engine/async.ts) keeps docs/algorithms.md §3.4's invariants; the event
// queue and the speed models behave.
import test from 'ava';
import { FedBuffBuffer } from '../../shared/aggregation/fedbuff.js';
import { stalenessWeight } from '../../shared/aggregation/staleness.js';
import { mulberry32 } from '../../shared/random.js';
import { runAsync, type AsyncRunSpec, type AsyncTraceEvent } from '../../simulations/engine/async.js';
import { EventQueue } from '../../simulations/engine/event-queue.js';
import { createSpeeds, logNormalMeans } from '../../simulations/engine/speeds.js';
import { runSync, type Duration } from '../../simulations/engine/sync.js';
import { createQuadraticTask } from '../../simulations/tasks/quadratic.js';
import { createSoftmaxTask } from '../../simulations/tasks/softmax.js';
import type { LocalOptions, LearningTask } from '../../simulations/types.js';

const local: LocalOptions = { steps: 3, lr: 0.2, batchSize: 1, momentum: 0 };
const sgd = { optimizer: 'sgd', lr: 1 } as const;
const mean = { mix: 'none', rule: 'mean', f: 0 } as const;
const constant = { kind: 'constant' } as const;
const quad = (n: number): LearningTask => createQuadraticTask({ numClients: n, dim: 4, seed: 11 });
const base = { experiment: 'e', algorithm: 'a', seed: 3, local };

function collect(): { events: AsyncTraceEvent[]; trace: (e: AsyncTraceEvent) => void } {
  const events: AsyncTraceEvent[] = [];
  return {
    events,
    trace: (e) => {
      if (e.kind === 'arrival') events.push({ ...e, update: Float32Array.from(e.update) });
      else if (e.kind === 'step') events.push({ ...e, model: Float32Array.from(e.model) });
      else events.push(e);
    },
  };
}

// ---- event queue ----

test('EventQueue: in-order and out-of-order pushes interleaved with pops come out by time, priority, insertion order', (t) => {
  // The FIFO fast path and the heap together against a sort of everything pushed (a reference model).
  const rng = mulberry32(9);
  const q = new EventQueue<number>();
  const live: Array<{ time: number; priority: number; seq: number }> = [];
  let seq = 0;
  let clock = 0;
  for (let i = 0; i < 5_000; i++) {
    if (rng() < 0.55) {
      // Mostly in order (sync rounds, ticks), sometimes earlier than the last one (async durations).
      const time = rng() < 0.7 ? clock + Math.floor(rng() * 3) : Math.max(0, clock + Math.floor(rng() * 20) - 10);
      const priority = Math.floor(rng() * 2);
      q.push(time, seq, priority);
      live.push({ time, priority, seq: seq++ });
    } else if (live.length > 0) {
      live.sort((a, b) => a.time - b.time || a.priority - b.priority || a.seq - b.seq);
      const want = live.shift()!;
      t.is(q.peekTime(), want.time);
      const got = i % 2 === 0 ? q.pop() : { time: want.time, value: q.popValue() };
      if (got?.value !== want.seq) t.fail(`pop ${i}: got ${got?.value}, want ${want.seq}`);
      clock = want.time;
    }
    if (q.size !== live.length) t.fail(`size ${q.size}, want ${live.length}`);
  }
  t.is(q.size, live.length);
});

test('EventQueue: pops by time, then priority, then insertion order', (t) => {
  const q = new EventQueue<number>();
  const rng = mulberry32(5);
  const times: number[] = [];
  for (let i = 0; i < 500; i++) {
    const time = Math.floor(rng() * 50);
    times.push(time);
    q.push(time, i);
  }
  const out: Array<{ time: number; value: number }> = [];
  while (q.size > 0) out.push(q.pop()!);
  t.deepEqual(out.map((e) => e.time), [...times].sort((a, b) => a - b));
  for (let i = 1; i < out.length; i++) if (out[i]!.time === out[i - 1]!.time) t.true(out[i]!.value > out[i - 1]!.value);
  q.push(1, 10, 1);
  q.push(1, 11, 0);
  q.push(0.5, 12, 5);
  t.is(q.peekTime(), 0.5);
  t.deepEqual([q.pop()!.value, q.pop()!.value, q.pop()!.value], [12, 11, 10]);
  t.is(q.pop(), undefined);
  t.is(q.peekTime(), Infinity);
});

// ---- speed models ----

test('speeds: seeded, positive, with the right means and ranges', (t) => {
  const draw = (d: Duration, client: number, n: number, seed = 1): Float64Array => {
    const rng = mulberry32(seed);
    return Float64Array.from({ length: n }, () => d(client, rng));
  };
  const avg = (a: Float64Array): number => a.reduce((s, v) => s + v, 0) / a.length;
  t.true(draw(createSpeeds({ kind: 'constant', value: 2.5 }, 3, 1), 0, 10).every((v) => v === 2.5));
  t.true(Math.abs(avg(draw(createSpeeds({ kind: 'exponential', mean: 2 }, 3, 1), 1, 50_000)) - 2) < 0.05);
  const hn = draw(createSpeeds({ kind: 'half-normal', sd: 1, min: 0.1 }, 3, 1), 2, 50_000);
  t.true(hn.every((v) => v >= 0.1) && Math.abs(avg(hn) - 0.1 - Math.sqrt(2 / Math.PI)) < 0.02);
  const u = draw(createSpeeds({ kind: 'uniform', min: 1, max: 3 }, 3, 1), 0, 20_000);
  t.true(u.every((v) => v >= 1 && v < 3) && Math.abs(avg(u) - 2) < 0.03);
  const pe = draw(createSpeeds({ kind: 'per-example', perExample: 0.01, sd: 0.002, samples: [100, 400] }, 2, 1), 1, 20_000);
  t.true(Math.abs(avg(pe) - 4) < 0.01);
  // log-normal: per-client means fixed by the seed, exp(N(0,1)) across clients, jobs within [0.8, 1.2]·m_n.
  const means = logNormalMeans(20_000, 7);
  t.deepEqual(means, logNormalMeans(20_000, 7));
  t.notDeepEqual(means, logNormalMeans(20_000, 8));
  const logs = Float64Array.from(means, Math.log);
  t.true(Math.abs(avg(logs)) < 0.03);
  t.true(Math.abs(avg(Float64Array.from(logs, (v) => v * v)) - 1) < 0.05);
  const ln = createSpeeds({ kind: 'log-normal', jitter: [0.8, 1.2] }, 20_000, 7);
  const jobs = draw(ln, 42, 10_000);
  t.true(jobs.every((v) => v >= 0.8 * means[42]! && v <= 1.2 * means[42]!));
  t.true(Math.abs(avg(jobs) / means[42]! - 1) < 0.01);
  t.throws(() => createSpeeds({ kind: 'uniform', min: 2, max: 1 }, 3, 1), { instanceOf: RangeError });
  t.throws(() => createSpeeds({ kind: 'exponential', mean: 0 }, 3, 1), { instanceOf: RangeError });
});

// ---- §3.4 invariants ----

test('§3.4.1/6: s(0) = 1, s(3) = ½; FLSim normalisation makes weight(τ̄ = 1) = 1', (t) => {
  const s = { kind: 'poly', exponent: 0.5 } as const;
  t.is(stalenessWeight(s, 0), 1);
  t.is(stalenessWeight(s, 3), 0.5);
  const b = new FedBuffBuffer({ size: 1, staleness: s, normalizeAt: 1 });
  const r = b.add(Float32Array.of(1), 1);
  t.is(r.kind, 'ready');
  if (r.kind === 'ready') t.true(Math.abs(r.aggregate[0]! - 1) < 1e-6);
});

test('§3.4.1: server steps = ⌊arrivals/K⌋, each of K arrivals; τ = steps since dispatch ≥ 0; C jobs in flight', (t) => {
  const task = quad(30);
  for (const K of [1, 3, 5, 10]) {
    const { events, trace } = collect();
    const r = runAsync({
      ...base, task, concurrency: 7, algo: { kind: 'fedbuff', buffer: K },
      duration: createSpeeds({ kind: 'log-normal', jitter: [0.8, 1.2] }, 30, 1), maxTime: 40, trace,
    });
    t.true(r.arrivals > 50, `K=${K}: ${r.arrivals} arrivals`);
    t.is(r.steps, Math.floor(r.arrivals / K));
    t.is(r.updates, r.arrivals);
    t.is(r.dispatched - r.arrivals, 7); // every arrival was replaced at once
    let version = 0;
    const inFlight = new Set<number>();
    for (const e of events) {
      if (e.kind === 'dispatch') {
        t.false(inFlight.has(e.client)); // drawn from the idle clients only
        inFlight.add(e.client);
        t.is(e.version, version);
      } else if (e.kind === 'arrival') {
        inFlight.delete(e.client);
        t.is(e.staleness, version - e.version);
        t.true(e.staleness >= 0);
      } else {
        t.is(e.count, K); // the buffer holds exactly K, then empties
        version = e.step;
      }
    }
    t.is(version, r.steps);
  }
});

test('§3.4.2: K = 1 with s ≡ 1 applies every update sequentially, each computed on the model of its dispatch', (t) => {
  // Full-batch softmax: local training is deterministic, so Δ can be recomputed from the logged models.
  const task = createSoftmaxTask({ numClients: 12, samplesPerClient: 20, alpha: 1, seed: 2, testSamples: 200 });
  const opts: LocalOptions = { steps: 2, lr: 0.3, batchSize: 20, momentum: 0 };
  const { events, trace } = collect();
  const r = runAsync({
    ...base, task, local: opts, concurrency: 4, algo: { kind: 'fedbuff', buffer: 1, staleness: constant },
    duration: createSpeeds({ kind: 'exponential', mean: 1 }, 12, 1), maxTime: 15, trace,
  });
  t.true(r.steps > 20);
  const models: Float32Array[] = [task.initial()];
  let stale = 0;
  let pending: Extract<AsyncTraceEvent, { kind: 'arrival' }> | null = null;
  for (const e of events) {
    if (e.kind === 'arrival') pending = e;
    else if (e.kind === 'step') {
      const a = pending!;
      const prev = models[e.step - 1]!;
      const want = new Float32Array(prev.length);
      for (let j = 0; j < prev.length; j++) want[j] = prev[j]! + a.update[j]!;
      t.deepEqual(e.model, want);
      const again = new Float32Array(prev.length);
      task.localUpdate(a.client, models[a.version]!, opts, mulberry32(0), again);
      t.deepEqual(a.update, again);
      if (a.staleness > 0) stale++;
      models.push(e.model);
    }
  }
  t.is(models.length - 1, r.steps);
  t.true(stale > 5, 'some updates were stale');
});

test('§3.4.3/5: equal deterministic durations and C = K → every FedBuff step is sync FedAvg on those clients', (t) => {
  const N = 6;
  const spec = (task: LearningTask): AsyncRunSpec => ({
    ...base, task, concurrency: N, algo: { kind: 'fedbuff', buffer: N }, duration: () => 2, maxTime: 40,
  });
  const { events, trace } = collect();
  const a = runAsync({ ...spec(quad(N)), trace });
  const s = runSync({ ...base, task: quad(N), rounds: 20, participation: null, logEvery: 1, duration: () => 2, pipeline: { weighting: 'uniform', robust: mean, server: sgd } });
  t.is(a.steps, 20);
  t.deepEqual(a.rows.map((r) => [r.step, r.time, r.loss]), s.rows.map((r) => [r.step, r.time, r.loss]));
  for (const e of events) if (e.kind === 'arrival') t.is(e.staleness, 0);
  // A sync round costs 2 (every duration), a FedBuff step the time to the K-th arrival: also 2.
  t.deepEqual(a.rows.slice(1).map((r) => r.time), Array.from({ length: 20 }, (_, i) => 2 * (i + 1)));
});

test('§3.4.5: a sync round costs its slowest client, a FedBuff step the time to the K-th arrival', (t) => {
  const durations = [1, 4, 2.5];
  const duration: Duration = (c) => durations[c]!;
  const s = runSync({ ...base, task: quad(3), rounds: 2, participation: null, logEvery: 1, duration, pipeline: { weighting: 'uniform', robust: mean, server: sgd } });
  t.deepEqual(s.rows.map((r) => r.time), [0, 4, 8]);
  const a = runAsync({ ...base, task: quad(3), concurrency: 3, algo: { kind: 'fedbuff', buffer: 2 }, duration, maxTime: 4 });
  // Arrivals: client 0 at 1 (redispatched → 2), at 2 → step 1 at the 2nd arrival (t = 2); 2.5 (client 2), 3 (client 0) → step 2 at 3; 4 → …
  t.deepEqual(a.rows.slice(0, 3).map((r) => r.time), [0, 2, 3]);
});

test('§3.4.4: FedFix with Δt ≥ max duration is sync FedAvg; otherwise weights are ⌈τ/Δt⌉/C', (t) => {
  const N = 5;
  const duration = createSpeeds({ kind: 'uniform', min: 0.3, max: 0.9 }, N, 1);
  const a = runAsync({ ...base, task: quad(N), concurrency: N, algo: { kind: 'fedfix', interval: 1 }, duration, maxTime: 15 });
  const s = runSync({ ...base, task: quad(N), rounds: 15, participation: null, logEvery: 1, pipeline: { weighting: 'uniform', robust: mean, server: sgd } });
  t.is(a.steps, 15);
  t.deepEqual(a.rows.map((r) => [r.step, r.time, r.loss]), s.rows.map((r) => [r.step, r.time, r.loss]));

  // Two clients, durations 1 and 2.5, Δt = 1: client 1's update spans 3 windows and gets weight 3/C at the third tick.
  const { events, trace } = collect();
  runAsync({ ...base, task: quad(2), concurrency: 2, algo: { kind: 'fedfix', interval: 1 }, duration: (c) => (c === 0 ? 1 : 2.5), maxTime: 3, trace });
  const steps = events.filter((e): e is Extract<AsyncTraceEvent, { kind: 'step' }> => e.kind === 'step');
  const arrivals = events.filter((e): e is Extract<AsyncTraceEvent, { kind: 'arrival' }> => e.kind === 'arrival');
  t.deepEqual(steps.map((e) => [e.time, e.count]), [[1, 1], [2, 1], [3, 2]]);
  t.deepEqual(arrivals.map((e) => [e.time, e.client]), [[1, 0], [2, 0], [2.5, 1], [3, 0]]);
  const prev = steps[1]!.model;
  const slow = arrivals[2]!.update;
  const fast = arrivals[3]!.update;
  for (let j = 0; j < prev.length; j++) t.true(Math.abs(steps[2]!.model[j]! - (prev[j]! + (3 / 2) * slow[j]! + (1 / 2) * fast[j]!)) < 1e-5);
  t.true(Math.abs(steps[0]!.model[0]! - arrivals[0]!.update[0]! / 2) < 1e-6);
});

test('async engine: deterministic per seed; stops at the target and at the time cap; logInterval thins the rows', (t) => {
  const task = quad(40);
  const run = (seed: number, extra: Partial<AsyncRunSpec> = {}) =>
    runAsync({ ...base, seed, task, concurrency: 8, algo: { kind: 'fedbuff', buffer: 4 }, duration: createSpeeds({ kind: 'exponential', mean: 1 }, 40, seed), maxTime: 30, ...extra });
  t.deepEqual(run(1), run(1));
  t.notDeepEqual(run(1).rows, run(2).rows);
  const full = run(1);
  t.true(full.endTime <= 30 && full.rows.at(-1)!.time <= 30);
  const losses = full.rows.map((r) => r.loss!);
  const target = (losses[0]! + Math.min(...losses)) / 2;
  const stopped = run(1, { target, stopAtTarget: true });
  t.is(stopped.timeToTarget, full.rows.find((r) => r.loss! <= target)!.time);
  t.is(stopped.rows.at(-1)!.loss! <= target, true);
  t.true(stopped.steps < full.steps);
  const thin = run(1, { logInterval: 5 });
  t.true(thin.rows.length < 12 && thin.rows.length >= 6, `${thin.rows.length} rows`);
  t.is(thin.steps, full.steps);
});
