// SyncDriver: FedAvg / FedAU rounds on an in-test quadratic objective; late arrivals, empty rounds, momentum,
// snapshot/restore, and a Byzantine round with MoNNA-style nnm + trimmed-mean.
import test from 'ava';
import { Adversary } from '../../../shared/training/adversary.js';
import { SyncDriver, type SyncDriverConfig } from '../../../shared/training/sync-driver.js';
import type { PipelineSpec } from '../../../shared/aggregation/pipeline.js';
import { createParticipation } from '../../../shared/data/participation.js';
import { mulberry32, normal } from '../../../shared/random.js';
import { gaussianCenters, halfSqDist, plainMean, quadratic, type Quadratic } from './quadratic.js';

function config(over: Partial<SyncDriverConfig> = {}): SyncDriverConfig {
  return { numClients: 10, clientsPerRound: 10, rounds: 50, participation: null, seed: 7, pipeline: plainMean, ...over };
}

/** Runs every round to the end; each dispatched client delivers unless `drop` says otherwise. Returns iterates. */
function run(d: SyncDriver, q: Quadratic, opts: { attackers?: Set<number>; scale?: number } = {}): Float32Array[] {
  const xs: Float32Array[] = [];
  let t = 0;
  while (!d.done) {
    for (const o of d.startRound(t)) d.accept(q.train(o, opts.attackers?.has(o.client) ? (opts.scale ?? 10) : 0), t + 1);
    xs.push(d.closeRound(t + 2).weights);
    t += 10;
  }
  return xs;
}

test('sync FedAvg converges to the mean of the client optima', (t) => {
  const q = quadratic(gaussianCenters(10, 4, 1, 1), { eta: 0.5, noise: 0.01, seed: 2 });
  const d = new SyncDriver(config({ clientsPerRound: 5, rounds: 200 }), new Float32Array(4));
  const xs = run(d, q);
  const avg = new Float64Array(4);
  for (const x of xs.slice(100)) for (let j = 0; j < 4; j++) avg[j] += x[j] / 100;
  const err = halfSqDist(avg, q.optimum);
  t.log(`FedAvg (5 of 10 per round) iterate-averaged error ${err.toExponential(2)}`);
  t.true(err < 0.01);
  t.is(d.version, 200);
});

test('FedAU removes the participation bias FedAvg (average participating) suffers (docs/algorithms.md §1.5 in miniature)', (t) => {
  const N = 40;
  const dim = 5;
  const T = 3000;
  const errs = { fedau: 0, fedavg: 0 };
  for (const seed of [1, 2]) {
    const rand = mulberry32(100 + seed);
    const z = Array.from({ length: N }, () => rand());
    const centers = z.map((zn) => Float64Array.from({ length: dim }, (_, j) => (j === 0 ? 3 * (2 * zn - 1) : 0) + 0.5 * normal(rand)));
    const p = z.map((zn) => 0.02 + 0.48 * zn * zn);
    for (const weighting of ['fedau', 'uniform'] as const) {
      const q = quadratic(centers, { eta: 0.5, noise: 0.3, seed: 200 + seed });
      const pipeline: PipelineSpec = { ...plainMean, weighting };
      const d = new SyncDriver(config({ numClients: N, clientsPerRound: N, rounds: T, participation: { kind: 'bernoulli', p, seed }, seed, pipeline }), new Float32Array(dim));
      const xs = run(d, q);
      const avg = new Float64Array(dim);
      for (const x of xs.slice(T / 2)) for (let j = 0; j < dim; j++) avg[j] += x[j] / (T / 2);
      errs[weighting === 'fedau' ? 'fedau' : 'fedavg'] += halfSqDist(avg, q.optimum) / 2;
    }
  }
  t.log(`iterate-averaged ½‖x̄ − x*‖² over 2 seeds: FedAU ${errs.fedau.toFixed(4)}, FedAvg (avg participating) ${errs.fedavg.toFixed(4)}, ratio ${(errs.fedau / errs.fedavg).toFixed(4)}`);
  t.true(errs.fedavg > 0.3, 'FedAvg is biased');
  t.true(errs.fedau < 0.2 * errs.fedavg);
});

test('late, duplicate, foreign and stale arrivals are refused; late ones count as not participating for FedAU', (t) => {
  const q = quadratic(gaussianCenters(4, 3, 1, 3), { eta: 0.5, noise: 0, seed: 4 });
  const d = new SyncDriver(config({ numClients: 4, clientsPerRound: 4, rounds: 3, pipeline: { ...plainMean, weighting: 'fedau' } }), new Float32Array(3));
  const orders = d.startRound(0);
  t.deepEqual(orders.map((o) => o.client), [0, 1, 2, 3]);
  const arrivals = orders.map((o) => q.train(o));
  for (const a of arrivals.slice(0, 3)) t.true(d.accept(a, 1));
  t.false(d.accept(arrivals[0], 1), 'duplicate');
  t.deepEqual(d.pending, [3]);
  t.false(d.accept({ ...arrivals[3], baseVersion: 5 }, 1), 'wrong version');
  t.false(d.accept({ ...arrivals[3], update: new Float32Array(2) }, 1), 'wrong size');
  t.false(d.accept({ ...arrivals[3], update: Float32Array.of(0, NaN, 0) }, 1), 'non-finite');
  const r = d.closeRound(2);
  t.is(r.metrics.participants, 3);
  t.false(d.accept(arrivals[3], 3), 'late');
  t.regex(d.refusal(arrivals[3]) ?? '', /no round is open/);
  // FedAU saw client 3 absent: its gap is 1, the others closed an interval.
  t.deepEqual(d.snapshot().fedau?.gap, [0, 0, 0, 1]);
  const orders2 = d.startRound(10);
  t.false(d.accept(arrivals[3], 11), 'previous round’s shard in the next round');
  t.true(d.accept(q.train(orders2[3]), 11));
});

test('an empty round leaves the model unchanged and advances the version', (t) => {
  const w0 = Float32Array.of(1, 2, 3);
  const d = new SyncDriver(config({ rounds: 5 }), w0);
  t.is(d.startRound(0).length, 10);
  const r = d.closeRound(1);
  t.deepEqual(Array.from(r.weights), [1, 2, 3]);
  t.deepEqual(r.metrics, { step: 1, time: 1, loss: null, participants: 0, staleness_mean: null });
  t.is(d.version, 1);
  // Rare participation: some rounds dispatch nobody at all.
  const rare = new SyncDriver(config({ rounds: 30, participation: { kind: 'bernoulli', p: 0.02 } }), w0);
  let empty = 0;
  while (!rare.done) {
    if (rare.startRound(0).length === 0) empty++;
    t.deepEqual(Array.from(rare.closeRound(0).weights), [1, 2, 3]);
  }
  t.true(empty > 0);
});

test('momentum travels: a client’s returned momentum comes back with its next order', (t) => {
  const d = new SyncDriver(config({ numClients: 3, clientsPerRound: 3, rounds: 3 }), new Float32Array(2));
  const o = d.startRound(0);
  t.is(o[1].momentum, undefined);
  d.accept({ client: 1, baseVersion: 0, update: Float32Array.of(1, 1), momentum: Float32Array.of(0.5, -0.5), samples: 1, loss: 1 }, 1);
  d.closeRound(2);
  const o2 = d.startRound(3);
  t.deepEqual(Array.from(o2[1].momentum ?? []), [0.5, -0.5]);
  t.is(o2[0].momentum, undefined);
  t.deepEqual(Array.from(d.weights), [1, 1]); // the uniform mean of one update, server lr 1
});

test('sampling is seeded and at most clientsPerRound of the available clients', (t) => {
  const mk = () => new SyncDriver(config({ numClients: 20, clientsPerRound: 4, participation: { kind: 'bernoulli', p: 0.5 } }), new Float32Array(1));
  const a = mk();
  const b = mk();
  for (let r = 0; r < 10; r++) {
    const oa = a.startRound(r).map((o) => o.client);
    t.deepEqual(oa, b.startRound(r).map((o) => o.client));
    t.true(oa.length <= 4);
    a.closeRound(r);
    b.closeRound(r);
  }
});

test('snapshot/restore (JSON round trip, even mid-round) continues exactly like the original', (t) => {
  const centers = gaussianCenters(10, 3, 1, 9);
  const cfg = config({ clientsPerRound: 4, rounds: 20, participation: { kind: 'markov', p: 0.6, q: 0.2 }, pipeline: { ...plainMean, weighting: 'fedau' } });
  const a = new SyncDriver(cfg, new Float32Array(3));
  const qa = quadratic(centers, { eta: 0.5, noise: 0, seed: 1 });
  for (let r = 0; r < 8; r++) {
    for (const o of a.startRound(r)) a.accept(qa.train(o), r);
    a.closeRound(r);
  }
  a.startRound(8); // open round: the snapshot lands before it
  const snap = JSON.parse(JSON.stringify(a.snapshot()));
  const b = SyncDriver.restore(cfg, snap);
  t.is(b.version, 8);
  t.false(b.roundOpen);
  // Two restores of the same snapshot run on identically: same samples, same weights.
  const c = SyncDriver.restore(cfg, snap);
  const qb = quadratic(centers, { eta: 0.5, noise: 0, seed: 1 });
  const qc = quadratic(centers, { eta: 0.5, noise: 0, seed: 1 });
  while (!b.done) {
    const ob = b.startRound(0);
    const oc = c.startRound(0);
    t.deepEqual(ob.map((o) => o.client), oc.map((o) => o.client));
    for (const o of ob) b.accept(qb.train(o), 0);
    for (const o of oc) c.accept(qc.train(o), 0);
    t.deepEqual(Array.from(b.closeRound(0).weights), Array.from(c.closeRound(0).weights));
  }
  // And the restored round 8 samples the same clients as the original's open round 8.
  const a2 = SyncDriver.restore(cfg, snap);
  const reopened = a2.startRound(0).map((o) => o.client);
  const fresh = new SyncDriver(cfg, new Float32Array(3));
  const qf = quadratic(centers, { eta: 0.5, noise: 0, seed: 1 });
  for (let r = 0; r < 8; r++) {
    for (const o of fresh.startRound(r)) fresh.accept(qf.train(o), r);
    fresh.closeRound(r);
  }
  t.deepEqual(reopened, fresh.startRound(8).map((o) => o.client));
});

test('2 of 10 clients sending scaled sign flips: mean diverges, nnm + trimmed-mean (f = 2) stays near the attack-free optimum', (t) => {
  const centers = gaussianCenters(10, 5, 0.3, 11);
  const attackers = new Set([3, 7]);
  const robust: PipelineSpec = { ...plainMean, robust: { mix: 'nnm', rule: 'trimmed-mean', f: 2 } };
  const final = (pipeline: PipelineSpec, atk: Set<number>) => {
    const q = quadratic(centers, { eta: 0.5, noise: 0.05, seed: 12 });
    const d = new SyncDriver(config({ rounds: 60, pipeline }), new Float32Array(5));
    return run(d, q, { attackers: atk }).at(-1) as Float32Array;
  };
  const clean = final(plainMean, new Set());
  const errClean = halfSqDist(clean, quadratic(centers, { eta: 0, noise: 0, seed: 0 }).optimum);
  const errMean = halfSqDist(final(plainMean, attackers), clean);
  const errRobust = halfSqDist(final(robust, attackers), clean);
  t.log(`½‖x − x_clean‖²: mean under attack ${errMean.toExponential(2)}, nnm+trimmed-mean under attack ${errRobust.toExponential(3)} (clean run vs optimum ${errClean.toExponential(2)})`);
  t.true(errMean > 100 || !Number.isFinite(errMean));
  t.true(errRobust < 0.05);
});

test('startRound(now, reachable) dispatches only reachable clients, intersected with participation', (t) => {
  const even = (c: number) => c % 2 === 0;
  const d = new SyncDriver(config({ numClients: 10, clientsPerRound: 10, rounds: 3 }), new Float32Array(2));
  t.deepEqual(d.startRound(0, even).map((o) => o.client), [0, 2, 4, 6, 8]);
  d.closeRound(1);
  t.deepEqual(d.startRound(10, () => false), [], 'nobody reachable: an empty round');
  d.closeRound(11);
  t.deepEqual(d.startRound(20).map((o) => o.client), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'default: all reachable');

  // clientsPerRound below the reachable count: a sample of the reachable ones only.
  const small = new SyncDriver(config({ numClients: 10, clientsPerRound: 3, rounds: 20 }), new Float32Array(2));
  for (let r = 0; r < 20; r++) {
    const got = small.startRound(r, even).map((o) => o.client);
    t.is(got.length, 3);
    t.true(got.every(even), JSON.stringify(got));
    small.closeRound(r);
  }

  // Participation: round r dispatches available(r) ∩ reachable (clientsPerRound = numClients, so no sampling).
  const participation = { kind: 'bernoulli' as const, p: 0.5, seed: 3 };
  const avail = createParticipation(participation, 10, 3);
  const reachable = (c: number) => c < 6;
  const p = new SyncDriver(config({ numClients: 10, clientsPerRound: 10, rounds: 8, participation }), new Float32Array(2));
  let sawExclusion = false;
  for (let r = 0; r < 8; r++) {
    const a = avail.available(r);
    const expected = [...Array(10).keys()].filter((c) => a[c] === 1 && reachable(c));
    if ([...Array(10).keys()].some((c) => a[c] === 1 && !reachable(c))) sawExclusion = true;
    t.deepEqual(p.startRound(r, reachable).map((o) => o.client), expected, `round ${r}`);
    p.closeRound(r);
  }
  t.true(sawExclusion, 'the test saw available but unreachable clients');
});

test('with an adversary, a round aggregates the attacked updates (mean, 2 of 5 scaled-sign-flipped)', (t) => {
  const updates = [
    [1, 2],
    [9, 9],
    [3, -4],
    [-9, 9],
    [2, 5],
  ];
  const runRound = (adversary: Adversary | null): Float32Array => {
    const d = new SyncDriver(config({ numClients: 5, clientsPerRound: 5, rounds: 1, adversary }), Float32Array.of(10, 20));
    for (const o of d.startRound(0)) {
      t.true(d.accept({ client: o.client, baseVersion: o.version, update: Float32Array.from(updates[o.client]!), samples: 10, loss: 1 }, 1));
    }
    return d.closeRound(2).weights;
  };
  // Honest mean μ over clients 0, 2, 4; clients 1 and 3 send −10μ: the mean of five is (3μ − 20μ)/5 = −17μ/5.
  const mu = [0, 1].map((j) => (updates[0]![j]! + updates[2]![j]! + updates[4]![j]!) / 3);
  const attacked = runRound(new Adversary({ clients: [1, 3], attack: 'scaled-sign-flip', scale: 10, seed: 1 }));
  const plain = runRound(null);
  for (let j = 0; j < 2; j++) {
    const want = [10, 20][j]! + (-17 * mu[j]!) / 5;
    t.true(Math.abs(attacked[j]! - want) < 1e-4, `attacked[${j}] = ${attacked[j]}, want ${want}`);
    const wantPlain = [10, 20][j]! + updates.reduce((s, u) => s + u[j]!, 0) / 5;
    t.true(Math.abs(plain[j]! - wantPlain) < 1e-4, `plain[${j}] = ${plain[j]}, want ${wantPlain}`);
  }
});

test('with an adversary, a robust rule sees the attacked updates too (median of 3 honest + 2 sign-flipped)', (t) => {
  // Coordinate-wise median of {1, 2, 3, −2, −2} = 1 (μ = 2, so both Byzantine send −2): not the honest median 2.
  const pipeline: PipelineSpec = { weighting: 'uniform', robust: { mix: 'none', rule: 'median', f: 2 }, server: { optimizer: 'sgd', lr: 1 } };
  const adversary = new Adversary({ clients: [3, 4], attack: 'sign-flip', scale: 1, seed: 1 });
  const d = new SyncDriver(config({ numClients: 5, clientsPerRound: 5, rounds: 1, pipeline, adversary }), new Float32Array(1));
  const own = [1, 2, 3, 100, 100];
  for (const o of d.startRound(0)) d.accept({ client: o.client, baseVersion: 0, update: Float32Array.of(own[o.client]!), samples: 1, loss: 0 }, 1);
  const r = d.closeRound(2);
  t.is(r.weights[0], 1);
});
