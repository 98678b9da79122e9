// FedAU estimator: every invariant of docs/algorithms.md §1.4.
import test from 'ava';
import fc from 'fast-check';
import { FedAUEstimator, ServerAggregator, type Contribution } from '../../../shared/index.js';
import { relErr, rng } from '../../helpers/arbitraries.js';

/** Feeds per-round participation of one client (true/false) and returns the weight after each round. */
function trace(history: readonly boolean[], cutoff = Infinity): number[] {
  const e = new FedAUEstimator(1, cutoff);
  return history.map((p) => {
    e.observeRound(p ? [0] : []);
    return e.weight(0);
  });
}

const history = fc.array(fc.boolean(), { minLength: 1, maxLength: 300 });

test('§1.4.1 all-participate: ω = 1 after the first round, and stays 1', (t) => {
  t.deepEqual(trace(Array(50).fill(true)), Array(50).fill(1));
});

test('§1.4.1 all p = 1: FedAU is exactly FedAvg with full participation', (t) => {
  const N = 6;
  const r = rng(7);
  const spec = { robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1 } } as const;
  const fedau = new ServerAggregator({ ...spec, weighting: 'fedau', numClients: N });
  const avg = new ServerAggregator({ ...spec, weighting: 'uniform' });
  let a: Float32Array = new Float32Array(4);
  let b: Float32Array = new Float32Array(4);
  for (let round = 0; round < 10; round++) {
    const cs: Contribution[] = Array.from({ length: N }, (_, client) => ({ client, update: Float32Array.from({ length: 4 }, () => r() - 0.5) }));
    a = fedau.step(a, cs).model;
    b = avg.step(b, cs).model;
    t.deepEqual(Array.from(a), Array.from(b), `round ${round}`);
  }
});

test('§1.4.2 K = 1: ω ≡ 1 whatever the history', (t) => {
  fc.assert(fc.property(history, (h) => trace(h, 1).every((w) => w === 1)));
  t.pass();
});

test('§1.4.3 deterministic period P: ω after m participations is (1 + (m−1)P)/m', (t) => {
  for (const P of [2, 3, 7]) {
    const e = new FedAUEstimator(1);
    let m = 0;
    for (let round = 0; round < 20 * P; round++) {
      const takes = round % P === 0;
      e.observeRound(takes ? [0] : []);
      if (takes) {
        m++;
        t.is(e.weight(0), (1 + (m - 1) * P) / m, `P=${P}, m=${m}`);
      }
    }
  }
});

/** FedAU's cyclic-L generator (docs/algorithms.md §1.3): start inactive at a random phase, active max(1, round(Lp)) rounds. */
function cyclic(p: number, L: number, rounds: number, phase: number): boolean[] {
  const active = Math.max(1, Math.round(L * p));
  const inactive = Math.max(1, L - active);
  const out: boolean[] = [];
  let on = false;
  let left = inactive - phase;
  for (let t = 0; t < rounds; t++) {
    if (left === 0) {
      on = !on;
      left = on ? active : inactive;
    }
    out.push(on);
    left--;
  }
  return out;
}

test('§1.4.3 cyclic p = 0.02, L = 100, K = 50: intervals (50, 49, 1) per cycle, ω → 33.33', (t) => {
  const w = trace(cyclic(0.02, 100, 100 * 300, 0), 50).at(-1)!;
  t.true(Math.abs(w - 100 / 3) < 0.05, `ω = ${w}`);
});

/** Mean weight over many clients of one rate after many rounds. */
function meanWeight(gen: (r: () => number, rounds: number) => boolean[], clients: number, rounds: number, cutoff: number, seed: number): number {
  const r = rng(seed);
  let s = 0;
  for (let c = 0; c < clients; c++) s += trace(gen(r, rounds), cutoff).at(-1)!;
  return s / clients;
}

const bernoulli = (p: number) => (r: () => number, rounds: number) => Array.from({ length: rounds }, () => r() < p);

/** Two-state Markov chain with P(off→on) = q, P(on→off) = q(1/p − 1) and stationary rate p (§1.3). */
const markov = (p: number, q: number) => (r: () => number, rounds: number) => {
  let down = q * (1 / p - 1);
  let up = q;
  if (down > 1) {
    up /= down;
    down = 1;
  }
  let on = r() < p;
  return Array.from({ length: rounds }, () => {
    on = on ? r() >= down : r() < up;
    return on;
  });
};

test('§1.4.4 Bernoulli(p): ω → (1 − (1−p)^K)/p, and 1/p for K = ∞', (t) => {
  for (const [p, K] of [[0.1, 5], [0.1, Infinity], [0.3, 3], [0.02, 50]] as const) {
    const theory = K === Infinity ? 1 / p : (1 - Math.pow(1 - p, K)) / p;
    const got = meanWeight(bernoulli(p), 100, p < 0.05 ? 20000 : 5000, K, 11);
    t.true(Math.abs(got - theory) / theory < 0.03, `p=${p} K=${K}: ${got.toFixed(3)} vs ${theory.toFixed(3)}`);
  }
});

test('§1.4.4 Markov and cyclic with rate p: ω → 1/p for K = ∞', (t) => {
  const mk = meanWeight(markov(0.1, 0.05), 100, 8000, Infinity, 3);
  t.true(Math.abs(mk - 10) < 0.5, `markov: ${mk}`);
  const r = rng(5);
  let cy = 0;
  for (let c = 0; c < 20; c++) cy += trace(cyclic(0.1, 100, 5000, Math.floor(r() * 90)), Infinity).at(-1)!;
  t.true(Math.abs(cy / 20 - 10) < 0.3, `cyclic: ${cy / 20}`);
});

/** One client's part in a round: absent, sends an update, or takes part but its update is dropped (late). */
type Part = 'absent' | 'sends' | 'late';

const causalCase = fc.integer({ min: 2, max: 6 }).chain((N) =>
  fc.record({
    N: fc.constant(N),
    // null is the config's spelling of "no cutoff".
    K: fc.constantFrom<number | null>(1, 2, 3, 5, 10, Infinity, null),
    rounds: fc.array(
      fc.record({
        parts: fc.array(fc.constantFrom<Part>('absent', 'sends', 'sends', 'late'), { minLength: N, maxLength: N }),
        // Nonzero first coordinates: a weight error must move the model. The second coordinate is always 1.
        values: fc.array(fc.integer({ min: 1, max: 16 }).chain((v) => fc.constantFrom(v / 4, -v / 4)), { minLength: N, maxLength: N }),
        reversed: fc.boolean(), // contribution order is not client order
      }),
      { minLength: 1, maxLength: 40 },
    ),
  }),
);

test('§1.4.5 causality: every participant\'s weight in round t is read before round t is observed (step, stepModel, general path)', (t) => {
  // Failures throw, so fast-check shrinks to the shortest history and reports it with the message.
  fc.assert(
    fc.property(causalCase, ({ N, K, rounds }) => {
      const server = { optimizer: 'sgd', lr: 1 } as const;
      const fused = { weighting: 'fedau', numClients: N, fedauCutoff: K, robust: { mix: 'none', rule: 'mean', f: 0 }, server } as const;
      // trimmed-mean with f = 0 is the plain mean computed by the robust rule: step's general (unfused) path.
      const general = { ...fused, robust: { mix: 'none', rule: 'trimmed-mean', f: 0 } } as const;
      const viaStep = new ServerAggregator(fused);
      const viaStepModel = new ServerAggregator(fused);
      const viaGeneral = new ServerAggregator(general);
      // The reference: weights read for the round, then the round observed.
      const ref = new FedAUEstimator(N, K ?? Infinity);
      let xStep: Float32Array = new Float32Array(2);
      let xStepModel: Float32Array = new Float32Array(2);
      let xGeneral: Float32Array = new Float32Array(2);
      const xRef = new Float32Array(2);
      for (const [r, { parts, values, reversed }] of rounds.entries()) {
        const senders = parts.flatMap((p, c) => (p === 'sends' ? [c] : []));
        if (reversed) senders.reverse();
        const took = parts.flatMap((p, c) => (p === 'absent' ? [] : [c]));
        const cs: Contribution[] = senders.map((client) => ({ client, update: Float32Array.of(values[client], 1) }));
        // Without late clients the participants default to the contributions' clients (the other observe path).
        const participants = took.length === senders.length ? undefined : took;

        const w = ref.weights(senders);
        ref.observeRound(took);
        const n = senders.length;
        const mean = [0, 0];
        for (let i = 0; i < n; i++) {
          mean[0] += (w[i] / N) * values[senders[i]];
          mean[1] += w[i] / N;
        }
        const agg = Float32Array.from(mean);
        for (let j = 0; j < 2; j++) xRef[j] += agg[j];

        const a = viaStep.step(xStep, cs, participants);
        const g = viaGeneral.step(xGeneral, cs, participants);
        xStepModel = viaStepModel.stepModel(xStepModel, cs, participants);
        xStep = a.model;
        xGeneral = g.model;
        const where = `round ${r}, N ${N}, K ${String(K)}, senders [${senders.join(',')}], took [${took.join(',')}]`;
        for (const [name, scales] of [['step', a.scales], ['general', g.scales]] as const) {
          if (scales.length !== n) throw new Error(`${name} ${where}: ${scales.length} scales for ${n} contributions`);
          for (let i = 0; i < n; i++) {
            const want = (n * w[i]) / N;
            if (Math.abs(scales[i] - want) > 1e-12 * want) {
              throw new Error(`${name} ${where}: client ${senders[i]} scale ${scales[i]}, want n·ω/N = ${want} (ω = ${w[i]})`);
            }
          }
        }
        if (n > 0 && (a.aggregate === null || relErr(a.aggregate, agg) > 1e-6)) {
          throw new Error(`step ${where}: aggregate ${String(a.aggregate)}, want ${String(agg)}`);
        }
        for (const [name, x] of [['step', xStep], ['stepModel', xStepModel], ['general', xGeneral]] as const) {
          if (relErr(x, xRef) > 1e-5) {
            throw new Error(`${name} ${where}: model ${String(x)}, want ${String(xRef)}`);
          }
        }
      }
      // All three observed the same rounds as the reference.
      const want = ref.snapshot();
      return [viaStep, viaStepModel, viaGeneral].every((s) => JSON.stringify(s.fedau?.snapshot()) === JSON.stringify(want));
    }),
    { numRuns: 200, includeErrorInReport: true },
  );
  t.pass();
});

test('§1.4.6 first participation has weight 1, however long the wait before it', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 500 }), (wait) => {
      const e = new FedAUEstimator(3);
      for (let i = 0; i < wait; i++) e.observeRound([1]);
      return e.weight(0) === 1 && e.weight(2) === 1;
    }),
  );
  t.pass();
});

test('§1.4.7 the server divides by N, not |S|; an empty round leaves the model unchanged', (t) => {
  const N = 10;
  const agg = new ServerAggregator({ weighting: 'fedau', numClients: N, robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1, momentum: 0.9 } });
  const model = Float32Array.of(1, 2);
  const step = agg.step(model, [{ client: 3, update: Float32Array.of(10, -20) }]);
  t.deepEqual(Array.from(step.aggregate!), [1, -2]); // ω = 1 at first participation, divided by N = 10
  t.deepEqual(Array.from(step.model), [2, 0]);
  const empty = agg.step(step.model, []);
  t.is(empty.aggregate, null);
  t.deepEqual(Array.from(empty.model), [2, 0]); // no momentum drift either
  t.is(agg.fedau!.roundsObserved, 2);
});

test('§1.4.8 ω ≤ K always', (t) => {
  fc.assert(fc.property(history, fc.integer({ min: 1, max: 20 }), (h, K) => trace(h, K).every((w) => w <= K && w >= 1)));
  t.pass();
});

test('snapshot/restore continues identically; bad input is a RangeError', (t) => {
  const e = new FedAUEstimator(4, 5);
  const r = rng(1);
  for (let i = 0; i < 30; i++) e.observeRound([0, 1, 2, 3].filter(() => r() < 0.4));
  const copy = FedAUEstimator.restore(JSON.parse(JSON.stringify(e.snapshot())));
  for (let i = 0; i < 30; i++) {
    const p = [0, 1, 2, 3].filter(() => r() < 0.4);
    e.observeRound(p);
    copy.observeRound(p);
  }
  t.deepEqual(Array.from(copy.weights([0, 1, 2, 3])), Array.from(e.weights([0, 1, 2, 3])));
  t.throws(() => new FedAUEstimator(0), { instanceOf: RangeError });
  t.throws(() => new FedAUEstimator(3, 0), { instanceOf: RangeError });
  t.throws(() => e.observeRound([4]), { instanceOf: RangeError, message: /client/ });
  t.throws(() => e.weight(-1), { instanceOf: RangeError });
  t.throws(() => FedAUEstimator.restore({ ...e.snapshot(), gap: [1] }), { instanceOf: RangeError });
});
