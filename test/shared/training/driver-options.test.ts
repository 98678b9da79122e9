// The drivers' optional settings the simulator needs (issue 12: one driver for coordinator and simulator), each of
// which leaves a driver without it unchanged: every available client when clientsPerRound is absent, a prebuilt
// participation process, a server step-size schedule, the adversary's every-round Byzantine clients with the
// line-searched ALIE/FOE, and FedBuff's 'sum' reduction and FLSim normalisation in the async driver.
import test from 'ava';
import { FedBuffBuffer } from '../../../shared/aggregation/fedbuff.js';
import { RobustAggregator } from '../../../shared/aggregation/robust.js';
import { optimalAttack } from '../../../shared/attacks.js';
import { createParticipation } from '../../../shared/data/participation.js';
import { Adversary } from '../../../shared/training/adversary.js';
import { AsyncDriver, type AsyncDriverConfig } from '../../../shared/training/async-driver.js';
import { SyncDriver, type SyncDriverConfig } from '../../../shared/training/sync-driver.js';
import type { ClientArrival, DispatchOrder } from '../../../shared/training/types.js';
import { gaussianCenters, plainMean, quadratic } from './quadratic.js';

function config(over: Partial<SyncDriverConfig> = {}): SyncDriverConfig {
  return { numClients: 10, clientsPerRound: 10, rounds: 20, participation: null, seed: 7, pipeline: plainMean, ...over };
}

function arrival(o: DispatchOrder, update: number[]): ClientArrival {
  return { client: o.client, baseVersion: o.version, update: Float32Array.from(update), samples: 1, loss: 0 };
}

test('clientsPerRound absent: every available client takes part and the sampler draws nothing', (t) => {
  const participation = { kind: 'bernoulli', p: 0.5, seed: 3 } as const;
  const all = new SyncDriver(config({ clientsPerRound: undefined, participation }), new Float32Array(1));
  const process = createParticipation(participation, 10, 3);
  for (let r = 0; r < 10; r++) {
    const want = [...process.available(r)].flatMap((a, i) => (a === 1 ? [i] : []));
    t.deepEqual(all.startRound(r).map((o) => o.client), want);
    all.closeRound(r);
  }
  t.is(all.snapshot().rng, config().seed, 'the sampling RNG never moved');
});

test('participationProcess: a prebuilt process is used as is (and equals the spec it was built from)', (t) => {
  const spec = { kind: 'markov', p: 0.4, q: 0.3 } as const;
  const a = new SyncDriver(config({ clientsPerRound: 3, participation: { ...spec, seed: 5 } }), new Float32Array(1));
  const b = new SyncDriver(config({ clientsPerRound: 3, participation: null, participationProcess: createParticipation(spec, 10, 5) }), new Float32Array(1));
  for (let r = 0; r < 15; r++) {
    t.deepEqual(b.startRound(r).map((o) => o.client), a.startRound(r).map((o) => o.client));
    a.closeRound(r);
    b.closeRound(r);
  }
  // A process of fewer clients than the driver's: the rest are never available.
  const short = new SyncDriver(config({ participation: null, participationProcess: createParticipation({ kind: 'bernoulli', p: 1 }, 4, 1) }), new Float32Array(1));
  t.deepEqual(short.startRound(0).map((o) => o.client), [0, 1, 2, 3]);
});

test('stepSize: γ_t multiplies the aggregate; γ ≡ 1 is the driver without it, bit for bit; a bad γ is refused', (t) => {
  const centers = gaussianCenters(10, 3, 1, 2);
  const run = (over: Partial<SyncDriverConfig>): Float32Array[] => {
    const d = new SyncDriver(config({ clientsPerRound: 4, ...over }), new Float32Array(3));
    const q = quadratic(centers, { eta: 0.5, noise: 0.1, seed: 1 });
    const xs: Float32Array[] = [];
    while (!d.done) {
      for (const o of d.startRound(0)) d.accept(q.train(o), 0);
      xs.push(d.closeRound(0).weights);
    }
    return xs;
  };
  t.deepEqual(run({ stepSize: () => 1 }), run({}));
  const half = new SyncDriver(config({ numClients: 2, clientsPerRound: 2, stepSize: (r) => 0.5 / (1 + r) }), new Float32Array(1));
  let orders = half.startRound(0);
  for (const o of orders) half.accept(arrival(o, [o.client === 0 ? 2 : 4]), 0);
  t.deepEqual(Array.from(half.closeRound(0).weights), [1.5]); // 0.5 · mean(2, 4)
  orders = half.startRound(1);
  for (const o of orders) half.accept(arrival(o, [4]), 0);
  t.deepEqual(Array.from(half.closeRound(1).weights), [2.5]); // + 0.25 · 4
  const bad = new SyncDriver(config({ numClients: 1, clientsPerRound: 1, stepSize: () => Number.NaN }), new Float32Array(1));
  for (const o of bad.startRound(0)) bad.accept(arrival(o, [1]), 0);
  t.throws(() => bad.closeRound(0), { instanceOf: RangeError, message: /stepSize\(0\)/ });
});

test('every-round adversary: the Byzantine clients join every round with an honest participant, are never sampled, and stay out of empty rounds', (t) => {
  const adversary = new Adversary({ clients: [8, 9], attack: 'sign-flip', seed: 1, presence: 'every-round' });
  const d = new SyncDriver(config({ clientsPerRound: 3, participation: { kind: 'bernoulli', p: 0.3, seed: 2 }, adversary }), new Float32Array(1));
  let empty = 0;
  for (let r = 0; r < 20; r++) {
    const clients = d.startRound(r).map((o) => o.client);
    if (clients.length === 0) empty++;
    else {
      t.deepEqual(clients.slice(-2), [8, 9]);
      t.true(clients.length <= 5 && clients.slice(0, -2).every((c) => c < 8));
    }
    for (const c of clients) d.accept({ client: c, baseVersion: r, update: Float32Array.of(c < 8 ? 1 : 1000), samples: 1, loss: 0 }, r);
    d.closeRound(r);
  }
  t.true(empty > 0, 'some rounds had no available honest client');
  // Honest updates are all 1, the two attackers send −1: the mean is (h − 2)/(h + 2) per round, never 1000.
  t.true(d.weights[0]! < 20);
});

test('line-searched ALIE (no scale): the driver hands the adversary its robust rule, and the vectors are optimalAttack’s', (t) => {
  const pipeline = { weighting: 'uniform', robust: { mix: 'none', rule: 'trimmed-mean', f: 1 }, server: { optimizer: 'sgd', lr: 1 } } as const;
  const adversary = new Adversary({ clients: [3], attack: 'alie', seed: 1, presence: 'every-round' });
  const d = new SyncDriver(config({ numClients: 4, clientsPerRound: undefined, rounds: 1, pipeline, adversary }), new Float32Array(2));
  const honest = [[1, 2], [3, -1], [0.5, 0.25]];
  for (const o of d.startRound(0)) d.accept(arrival(o, o.client < 3 ? honest[o.client]! : [0, 0]), 0);
  const x = d.closeRound(0).weights;
  const rule = new RobustAggregator(pipeline.robust);
  const { vectors } = optimalAttack('alie', { honest: honest.map((h) => Float32Array.from(h)), byzantine: 1 }, (all) => rule.aggregate(all));
  const expected = rule.aggregate([...honest.map((h) => Float32Array.from(h)), vectors[0]!]);
  t.deepEqual(Array.from(x), Array.from(expected));
  // Without a defence there is nothing to search against.
  t.throws(() => adversary.apply([arrival({ client: 0, version: 0, weights: x }, [1, 1]), arrival({ client: 3, version: 0, weights: x }, [0, 0])], 0), { instanceOf: RangeError, message: /needs the defence/ });
});

test('adversary: mimic copies the first honest update; scale absent gives scaled-sign-flip h/f; every-round with no honest update sends nothing', (t) => {
  const o = (client: number): DispatchOrder => ({ client, version: 0, weights: new Float32Array(2) });
  const arrivals = [arrival(o(0), [1, 2]), arrival(o(1), [3, 4]), arrival(o(2), [5, 6]), arrival(o(5), [9, 9])];
  const mimic = new Adversary({ clients: [5], attack: 'mimic', seed: 1 }).apply(arrivals, 0);
  t.deepEqual(Array.from(mimic[3]!.update), [1, 2]);
  t.not(mimic[3]!.update, arrivals[0]!.update);
  const ssf = new Adversary({ clients: [5], attack: 'scaled-sign-flip', seed: 1 }).apply(arrivals, 0);
  t.deepEqual(Array.from(ssf[3]!.update), [-9, -12]); // −(3/1)·μ, μ = (3, 4)
  const lonely = [arrival(o(5), [9, 9])];
  t.deepEqual(new Adversary({ clients: [5], attack: 'sign-flip', seed: 1, presence: 'every-round' }).apply(lonely, 0), []);
  t.deepEqual(Array.from(new Adversary({ clients: [5], attack: 'sign-flip', seed: 1 }).apply(lonely, 0)[0]!.update), [-9, -9]);
  t.false(new Adversary({ clients: [5], attack: 'label-flip', seed: 1 }).replacesUpdates);
  t.true(new Adversary({ clients: [5], attack: 'mimic', seed: 1 }).everyRound === false);
});

test('async reduction sum and normalizeAt: the driver steps with the FedBuffBuffer’s aggregate (to float32 rounding)', (t) => {
  const staleness = { kind: 'poly', exponent: 0.5 } as const;
  const base: AsyncDriverConfig = { numClients: 4, concurrency: 4, buffer: 2, staleness, maxStaleness: null, steps: 3, seed: 1, participation: null, pipeline: plainMean };
  for (const extra of [{}, { reduction: 'sum' as const }, { normalizeAt: 1 }, { reduction: 'sum' as const, normalizeAt: 2 }]) {
    const d = new AsyncDriver({ ...base, ...extra }, new Float32Array(1));
    const buffer = new FedBuffBuffer({ size: 2, staleness, ...extra });
    let x = 0;
    const orders = d.fill(0);
    // Two fresh arrivals step the model; the next two are one step stale.
    const updates = [1, 3, 5, 7];
    orders.forEach((order, i) => {
      const tau = d.version - order.version;
      const r = d.accept(arrival(order, [updates[i]!]), 0);
      const b = buffer.add(Float32Array.of(updates[i]!), tau);
      if (b.kind === 'ready') {
        t.true(r.stepped);
        x = Math.fround(x + b.aggregate[0]!);
        // The driver scales each update in float32 before its rule (the buffer's own path sums in float64): equal to
        // float32 rounding.
        if (r.stepped) t.true(Math.abs(r.weights[0]! - x) <= 1e-6 * Math.abs(x), `${JSON.stringify(extra)}: ${r.weights[0]} vs ${x}`);
        if (r.stepped) x = r.weights[0]!;
      }
    });
    t.is(d.version, 2);
  }
});
