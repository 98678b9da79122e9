// NNA / NNM / MoNNA invariants of docs/algorithms.md §2.4.
import test from 'ava';
import fc from 'fast-check';
import { momentumStep, nearestNeighborMixing, nna, weightedMean } from '../../../shared/index.js';
import { generalPositionSetWithF, relErr, rng, normal } from '../../helpers/arbitraries.js';

test('§2.4.1 f = 0: every NNA pivot and every NNM row is the plain mean', (t) => {
  fc.assert(
    fc.property(generalPositionSetWithF(0, 0), ({ updates }) => {
      const mean = weightedMean(updates);
      return nearestNeighborMixing(updates, 0).every((row) => relErr(row, mean) <= 1e-6) && updates.every((_, p) => relErr(nna(updates, 0, p), mean) <= 1e-6);
    }),
  );
  t.pass();
});

test('§2.4.2 the pivot is always among its own neighbours, even when it is everybody’s outlier', (t) => {
  const u = [Float32Array.of(0), Float32Array.of(1), Float32Array.of(2), Float32Array.of(1000)];
  t.deepEqual(Array.from(nna(u, 1, 3)), [Math.fround((1000 + 2 + 1) / 3)]);
  // A duplicate of the pivot at a lower index ties at distance 0 and must not push the pivot out.
  const dup = [Float32Array.of(5), Float32Array.of(5), Float32Array.of(0), Float32Array.of(9)];
  t.deepEqual(Array.from(nna(dup, 1, 1)), [Math.fround((5 + 5 + 9) / 3)]);
  // n − f = 1 (n = 1): the output is the pivot.
  t.deepEqual(Array.from(nna([Float32Array.of(3, 4)], 0, 0)), [3, 4]);
});

test('§2.4.3 exclusion: Byzantine inputs farther from the pivot than every honest one → exactly the honest mean', (t) => {
  fc.assert(
    fc.property(fc.integer(), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 20 }), (seed, f, extraHonest, d) => {
      const r = rng(seed);
      const h = f + extraHonest; // n − f honest, n > 2f
      const honest = Array.from({ length: h }, () => Float32Array.from({ length: d }, () => normal(r)));
      const far = Array.from({ length: f }, () => Float32Array.from({ length: d }, () => 1e4 + r()));
      const updates = [...honest, ...far];
      const expected = weightedMean(honest);
      return honest.every((_, p) => relErr(nna(updates, f, p), expected) <= 1e-6) && relErr(nearestNeighborMixing(updates, f)[0], expected) <= 1e-6;
    }),
  );
  t.pass();
});

test('§2.4.4 invariant to permuting the non-pivot inputs', (t) => {
  fc.assert(
    fc.property(generalPositionSetWithF(2, 0), fc.integer(), ({ updates, f }, seed) => {
      const r = rng(seed);
      const others = updates.slice(1);
      for (let i = others.length - 1; i > 0; i--) {
        const j = Math.floor(r() * (i + 1));
        [others[i], others[j]] = [others[j], others[i]];
      }
      return relErr(nna([updates[0], ...others], f, 0), nna(updates, f, 0)) <= 1e-6;
    }),
  );
  t.pass();
});

test('NNA at pivot i is exactly row i of NNM', (t) => {
  fc.assert(
    fc.property(generalPositionSetWithF(2, 0), ({ updates, f }) => {
      const rows = nearestNeighborMixing(updates, f);
      return updates.every((_, p) => relErr(nna(updates, f, p), rows[p]) === 0);
    }),
  );
  t.pass();
});

test('§2.4.5 MoNNA with β = 0, f = 0 and complete communication: all models identical after one round', (t) => {
  const r = rng(3);
  const models = Array.from({ length: 7 }, () => Float32Array.from({ length: 5 }, () => normal(r)));
  const halfSteps = models.map((x) => {
    const g = Float32Array.from({ length: 5 }, () => normal(r));
    const m = momentumStep(null, g, 0);
    return x.map((v, j) => v - 0.1 * m[j]);
  });
  const mixed = halfSteps.map((_, i) => nna(halfSteps, 0, i));
  t.true(mixed.every((m) => relErr(m, mixed[0]) <= 1e-6));
});

test('§2.4.6 momentum is an EMA: constant g gives m_t = (1 − β^{t+1})·g', (t) => {
  const g = Float32Array.of(2, -4, 0.5);
  for (const beta of [0, 0.5, 0.9, 0.99]) {
    let m: Float32Array | null = null;
    for (let step = 0; step < 30; step++) {
      m = momentumStep(m, g, beta);
      const expected = g.map((v) => (1 - Math.pow(beta, step + 1)) * v);
      t.true(relErr(m, expected) <= 1e-5, `β=${beta} t=${step}`);
    }
  }
  t.throws(() => momentumStep(null, g, 1), { instanceOf: RangeError });
  t.throws(() => momentumStep(new Float32Array(2), g, 0.9), { instanceOf: RangeError });
});
