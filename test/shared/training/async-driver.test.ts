// AsyncDriver (FedBuff): an in-test event loop with seeded shard durations drives it on the quadratic objective.
import test from 'ava';
import { Adversary } from '../../../shared/training/adversary.js';
import { AsyncDriver, type AsyncDriverConfig } from '../../../shared/training/async-driver.js';
import type { StepMetrics } from '../../../shared/training/types.js';
import type { PipelineSpec } from '../../../shared/aggregation/pipeline.js';
import { createParticipation } from '../../../shared/data/participation.js';
import { mulberry32 } from '../../../shared/random.js';
import { gaussianCenters, halfSqDist, plainMean, quadratic, type Quadratic } from './quadratic.js';

function config(over: Partial<AsyncDriverConfig> = {}): AsyncDriverConfig {
  return {
    numClients: 10,
    concurrency: 5,
    buffer: 3,
    staleness: { kind: 'poly', exponent: 0.5 },
    maxStaleness: null,
    steps: 100,
    seed: 5,
    participation: null,
    pipeline: plainMean,
    ...over,
  };
}

interface RunResult {
  metrics: StepMetrics[];
  arrivals: number;
  buffered: number;
  dropped: number;
  taus: number[];
  final: Float32Array;
  /** The model after each step. */
  iterates: Float32Array[];
}

/** Discrete-event simulation: each shard takes a seeded random duration (per client speed × U[0.5, 1.5]). */
function simulate(d: AsyncDriver, q: Quadratic, opts: { speeds?: number[]; attackers?: Set<number>; seed?: number } = {}): RunResult {
  const rand = mulberry32(opts.seed ?? 99);
  const events: Array<{ at: number; order: ReturnType<AsyncDriver['fill']>[number] }> = [];
  const out: RunResult = { metrics: [], arrivals: 0, buffered: 0, dropped: 0, taus: [], final: d.weights, iterates: [] };
  let now = 0;
  const schedule = () => {
    for (const order of d.fill(now)) events.push({ at: now + (opts.speeds?.[order.client] ?? 1) * (0.5 + rand()), order });
  };
  schedule();
  while (!d.done && events.length > 0) {
    events.sort((a, b) => a.at - b.at);
    const ev = events.shift() as (typeof events)[number];
    now = ev.at;
    const r = d.accept(q.train(ev.order, opts.attackers?.has(ev.order.client) ? 10 : 0), now);
    out.arrivals++;
    if (r.status === 'dropped') out.dropped++;
    if (r.status === 'buffered' || r.status === 'stepped') {
      out.buffered++;
      out.taus.push(r.staleness);
    }
    if (r.stepped) {
      out.metrics.push(r.metrics);
      out.iterates.push(r.weights);
    }
    schedule();
  }
  out.final = d.weights;
  return out;
}

test('steps = ⌊buffered arrivals / K⌋, staleness is recorded, concurrency is kept', (t) => {
  const q = quadratic(gaussianCenters(10, 3, 1, 1), { eta: 0.3, noise: 0.01, seed: 2 });
  const speeds = Array.from({ length: 10 }, (_, i) => 1 + i); // heterogeneous: client 9 is 10× slower than client 0
  const d = new AsyncDriver(config({ steps: 40 }), new Float32Array(3));
  const r = simulate(d, q, { speeds });
  t.is(d.version, 40);
  t.is(r.metrics.length, 40);
  t.is(Math.floor(r.buffered / 3), 40);
  t.is(d.bufferedCount, r.buffered - 3 * 40);
  t.deepEqual(r.metrics.map((m) => m.step), Array.from({ length: 40 }, (_, i) => i + 1));
  const mean = r.taus.reduce((a, b) => a + b, 0) / r.taus.length;
  t.log(`${r.arrivals} arrivals, mean staleness ${mean.toFixed(2)}, max ${Math.max(...r.taus)}`);
  t.true(mean > 0.5, 'slow clients return stale updates');
  t.true(r.metrics.every((m) => m.staleness_mean !== null && m.staleness_mean >= 0 && m.participants >= 1 && m.loss !== null));
  t.is(d.fill(0).length, 0, 'done: nothing more is dispatched');
});

test('arrivals staler than maxStaleness are dropped and do not count toward a step', (t) => {
  const q = quadratic(gaussianCenters(10, 3, 1, 1), { eta: 0.3, noise: 0.01, seed: 2 });
  const d = new AsyncDriver(config({ concurrency: 8, buffer: 2, maxStaleness: 1, steps: 30 }), new Float32Array(3));
  const r = simulate(d, q, { speeds: Array.from({ length: 10 }, (_, i) => 1 + 2 * i) });
  t.log(`${r.arrivals} arrivals, ${r.dropped} dropped as too stale`);
  t.true(r.dropped > 0);
  t.true(r.taus.every((tau) => tau <= 1));
  t.is(Math.floor(r.buffered / 2), d.version);
  t.is(d.stats.dropped, r.dropped);
});

test('refusals: no shard in flight, wrong base version, after abandon; abandon frees the client for fill()', (t) => {
  const q = quadratic(gaussianCenters(4, 2, 1, 1), { eta: 0.3, noise: 0, seed: 2 });
  const d = new AsyncDriver(config({ numClients: 4, concurrency: 2, buffer: 1, steps: 10 }), new Float32Array(2));
  const orders = d.fill(0);
  t.is(orders.length, 2);
  t.is(d.fill(0).length, 0, 'full');
  const idle = [0, 1, 2, 3].find((c) => !orders.some((o) => o.client === c)) as number;
  t.is(d.accept({ client: idle, baseVersion: 0, update: new Float32Array(2), samples: 1, loss: 0 }, 1).status, 'refused');
  t.is(d.accept({ ...q.train(orders[0]), baseVersion: 3 }, 1).status, 'refused');
  t.true(d.abandon(orders[1].client));
  t.is(d.accept(q.train(orders[1]), 1).status, 'refused', 'abandoned shard');
  const r = d.accept(q.train(orders[0]), 2);
  t.true(r.stepped);
  t.is(d.fill(3).length, 2);
});

test('async FedBuff converges on the quadratic', (t) => {
  const q = quadratic(gaussianCenters(10, 4, 1, 3), { eta: 0.3, noise: 0.01, seed: 4 });
  const d = new AsyncDriver(config({ steps: 300 }), new Float32Array(4));
  const r = simulate(d, q);
  const avg = new Float64Array(4);
  for (const x of r.iterates.slice(150)) for (let j = 0; j < 4; j++) avg[j] += x[j] / 150;
  const err = halfSqDist(avg, q.optimum);
  t.log(`½‖x̄ − x*‖² (iterates averaged over steps 151–300, K = 3, C = 5): ${err.toExponential(2)}; last iterate ${halfSqDist(r.final, q.optimum).toExponential(2)}; start ${halfSqDist(new Float32Array(4), q.optimum).toFixed(2)}`);
  t.true(err < 0.05);
});

test('FedAU in async mode: one server step is one estimator round over the buffer’s clients', (t) => {
  const q = quadratic(gaussianCenters(6, 2, 1, 3), { eta: 0.3, noise: 0, seed: 4 });
  const d = new AsyncDriver(config({ numClients: 6, concurrency: 3, buffer: 3, steps: 1, pipeline: { ...plainMean, weighting: 'fedau' } }), new Float32Array(2));
  const orders = d.fill(0);
  let last;
  for (const o of orders) last = d.accept(q.train(o), 1);
  t.true(last?.stepped);
  const gap = d.snapshot().fedau?.gap ?? [];
  const inBuffer = new Set(orders.map((o) => o.client));
  t.deepEqual(gap, gap.map((_, c) => (inBuffer.has(c) ? 0 : 1)));
  // First participation: ω = 1, so the aggregate is Σ Δ / N.
  const expected = [0, 1].map((j) => orders.reduce((s, o) => s + -0.3 * (0 - q.centers[o.client][j]), 0) / 6);
  Array.from(d.weights).forEach((w, j) => t.true(Math.abs(w - expected[j]) < 1e-5));
});

test('2 of 10 clients sending scaled sign flips: mean degrades, nnm + trimmed-mean (f = 2) stays near the attack-free run', (t) => {
  const centers = gaussianCenters(10, 5, 0.3, 11);
  const attackers = new Set([2, 6]);
  const cfg = (pipeline: PipelineSpec) => config({ concurrency: 10, buffer: 10, steps: 60, staleness: { kind: 'constant' }, pipeline });
  const robust: PipelineSpec = { ...plainMean, robust: { mix: 'nnm', rule: 'trimmed-mean', f: 2 } };
  const runOnce = (pipeline: PipelineSpec, atk: Set<number>) => simulate(new AsyncDriver(cfg(pipeline), new Float32Array(5)), quadratic(centers, { eta: 0.5, noise: 0.05, seed: 12 }), { attackers: atk }).final;
  const clean = runOnce(plainMean, new Set());
  const errMean = halfSqDist(runOnce(plainMean, attackers), clean);
  const errRobust = halfSqDist(runOnce(robust, attackers), clean);
  t.log(`½‖x − x_clean‖²: mean under attack ${errMean.toExponential(2)}, nnm+trimmed-mean under attack ${errRobust.toExponential(3)}`);
  t.true(errMean > 100 || !Number.isFinite(errMean));
  t.true(errRobust < 0.05);
});

test('snapshot/restore round-trips through JSON; in-flight shards are not carried', (t) => {
  const q = quadratic(gaussianCenters(10, 3, 1, 1), { eta: 0.3, noise: 0, seed: 2 });
  const cfg = config({ steps: 10, participation: { kind: 'bernoulli', p: 0.7 }, pipeline: { ...plainMean, weighting: 'fedau' } });
  const d = new AsyncDriver(cfg, new Float32Array(3));
  simulate(d, q);
  const snap = JSON.parse(JSON.stringify(d.snapshot()));
  const r = AsyncDriver.restore({ ...cfg, steps: 20 }, snap);
  t.is(r.version, 10);
  t.deepEqual(Array.from(r.weights), Array.from(d.weights));
  t.deepEqual(r.snapshot().fedau, d.snapshot().fedau);
  t.deepEqual(r.inFlightClients, []);
  t.true(r.fill(0).length > 0);
});

test('a buffer too small for the robust rule is refused at construction', (t) => {
  t.throws(() => new AsyncDriver(config({ buffer: 4, pipeline: { ...plainMean, robust: { mix: 'nnm', rule: 'trimmed-mean', f: 2 } } }), new Float32Array(1)), { message: /needs ≥ 5/ });
});

test('fill(now, reachable) dispatches only reachable idle clients, intersected with participation', (t) => {
  const even = (c: number) => c % 2 === 0;
  const d = new AsyncDriver(config({ numClients: 10, concurrency: 8 }), new Float32Array(2));
  const first = d.fill(0, even).map((o) => o.client);
  t.deepEqual([...first].sort((a, b) => a - b), [0, 2, 4, 6, 8], 'only the 5 reachable, although 8 are wanted');
  t.deepEqual(d.fill(1, even), [], 'all reachable ones are in flight');
  t.deepEqual(d.fill(1, () => false), []);
  const rest = d.fill(2).map((o) => o.client);
  t.is(rest.length, 3);
  t.true(rest.every((c) => !even(c)), 'the default reaches everyone');

  // Participation: the first dispatch is available(r) ∩ reachable for the first round r where that is non-empty.
  const participation = { kind: 'bernoulli' as const, p: 0.5, seed: 4 };
  const avail = createParticipation(participation, 10, 4);
  const reachable = (c: number) => c >= 3;
  let expected: number[] = [];
  let sawExclusion = false;
  for (let r = 0; expected.length === 0 && r < 100; r++) {
    const a = avail.available(r);
    expected = [...Array(10).keys()].filter((c) => a[c] === 1 && reachable(c));
    if ([...Array(10).keys()].some((c) => a[c] === 1 && !reachable(c))) sawExclusion = true;
  }
  const p = new AsyncDriver(config({ numClients: 10, concurrency: 10, participation }), new Float32Array(2));
  t.deepEqual(p.fill(0, reachable).map((o) => o.client).sort((a, b) => a - b), expected);
  t.true(sawExclusion, 'the test saw available but unreachable clients');
});

test('async adversary: a Byzantine arrival is replaced using the honest updates already buffered', (t) => {
  const u = [Float32Array.of(2, 4), Float32Array.of(6, -8), Float32Array.of(100, 100), Float32Array.of(-50, 7), Float32Array.of(1, 1)];
  const make = (clients: number[]) =>
    new AsyncDriver(
      config({ numClients: 5, concurrency: 5, buffer: 3, steps: 5, staleness: { kind: 'constant' }, adversary: new Adversary({ clients, attack: 'sign-flip', scale: 1, seed: 1 }) }),
      new Float32Array(2),
    );
  const deliver = (d: AsyncDriver, order: number[]) => {
    let last: ReturnType<AsyncDriver['accept']> | undefined;
    for (const c of order) last = d.accept({ client: c, baseVersion: 0, update: Float32Array.from(u[c]!), samples: 1, loss: 0 }, 1);
    return last;
  };
  const expectWeights = (w: Float32Array, want: number[], label: string) => {
    for (let j = 0; j < want.length; j++) t.true(Math.abs(w[j]! - want[j]!) < 1e-5, `${label}[${j}] = ${w[j]}, want ${want[j]}`);
  };

  // 0, 1 honest, then 2 (Byzantine) sends −mean(u0, u1) = (−4, 2): the step is the mean of (2,4), (6,−8), (−4,2).
  const d1 = make([2]);
  t.is(d1.fill(0).length, 5);
  const r1 = deliver(d1, [0, 1, 2]);
  t.is(r1?.status, 'stepped');
  expectWeights(d1.weights, [4 / 3, -2 / 3], 'honest first');

  // Byzantine first: the buffer holds nothing honest, so it flips its own update: mean of (−100,−100), (2,4), (6,−8).
  const d2 = make([2]);
  d2.fill(0);
  deliver(d2, [2, 0, 1]);
  expectWeights(d2.weights, [-92 / 3, -104 / 3], 'Byzantine first');

  // Two Byzantine after one honest: both build on u0 only (not on each other): mean of (2,4), (−2,−4), (−2,−4).
  const d3 = make([2, 3]);
  d3.fill(0);
  deliver(d3, [0, 2, 3]);
  expectWeights(d3.weights, [-2 / 3, -4 / 3], 'two Byzantine');

  // A later buffer does not see the previous buffer's honest updates: after the step, 2 arrives first in a fresh buffer.
  const d4 = make([3]);
  d4.fill(0);
  deliver(d4, [0, 1, 4]);
  const w1 = Array.from(d4.weights);
  // Clients 2 and 3 are still in flight from version 0; 0, 1 and 4 go out again on version 1.
  t.deepEqual(d4.fill(2).map((o) => [o.client, o.version]).sort((a, b) => a[0]! - b[0]!), [[0, 1], [1, 1], [4, 1]]);
  const r = d4.accept({ client: 3, baseVersion: 0, update: Float32Array.from(u[3]!), samples: 1, loss: 0 }, 3);
  t.is(r.status, 'buffered');
  t.is(d4.accept({ client: 2, baseVersion: 0, update: Float32Array.from(u[2]!), samples: 1, loss: 0 }, 3).status, 'buffered');
  const last = d4.accept({ client: 0, baseVersion: 1, update: Float32Array.from(u[0]!), samples: 1, loss: 0 }, 5);
  t.is(last.status, 'stepped');
  // Buffer 2: 3 → −u3 = (50, −7) (nothing honest buffered yet), u2, u0 (τ = 1 and 0 are both weight 1 with constant staleness).
  expectWeights(d4.weights, [w1[0]! + (50 + 100 + 2) / 3, w1[1]! + (-7 + 100 + 4) / 3], 'second buffer');
});
