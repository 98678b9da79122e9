// Rule-specific invariants of docs/algorithms.md §5 (the shared ones live in contract.test.ts).
import test from 'ava';
import fc from 'fast-check';
import {
  centeredClipping,
  coordinateMedian,
  geometricMedian,
  krum,
  multiKrum,
  trimmedMean,
  weightedMean,
} from '../../../shared/index.js';
import { generalPositionSetWithF, normal, relErr, rng } from '../../helpers/arbitraries.js';

const f32 = (...v: number[]) => Float32Array.from(v);

test('coordinateMedian: odd n → middle value; even n → mean of the two middle values (not the lower)', (t) => {
  t.deepEqual(Array.from(coordinateMedian([f32(3, -1), f32(1, 5), f32(2, 0)])), [2, 0]);
  t.deepEqual(Array.from(coordinateMedian([f32(4), f32(1), f32(3), f32(100)])), [3.5]);
  // n > 32 takes the native-sort path: same semantics.
  const big = Array.from({ length: 40 }, (_, i) => f32(i));
  t.deepEqual(Array.from(coordinateMedian(big)), [19.5]);
});

test('trimmedMean: f = 0 is the mean; f = (n−1)/2 is the median for odd n', (t) => {
  fc.assert(
    fc.property(generalPositionSetWithF(0, 0), ({ updates }) => {
      const n = updates.length;
      const ok0 = relErr(trimmedMean(updates, 0), weightedMean(updates)) <= 1e-6;
      const okMed = n % 2 === 0 || relErr(trimmedMean(updates, (n - 1) / 2), coordinateMedian(updates)) === 0;
      return ok0 && okMed;
    }),
  );
  t.deepEqual(Array.from(trimmedMean([f32(1), f32(2), f32(3), f32(100), f32(-50)], 1)), [2]);
  t.pass();
});

test('krum: n ≥ 2f+3 honest points in a ball and f far identical outliers → an honest input', (t) => {
  fc.assert(
    fc.property(fc.integer(), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 1, max: 10 }), (seed, f, more, d) => {
      const r = rng(seed);
      const honest = Array.from({ length: 2 * f + 3 + more }, () => Float32Array.from({ length: d }, () => normal(r)));
      const outlier = Float32Array.from({ length: d }, () => 1e5);
      const updates = [...honest, ...Array.from({ length: f }, () => outlier)];
      const out = krum(updates, f);
      return honest.some((h) => relErr(out, h) === 0);
    }),
  );
  t.pass();
});

test('krum: score ties go to the lowest index; the result is a copy', (t) => {
  const u = [f32(0), f32(1), f32(10), f32(11), f32(100)];
  // f = 1, n = 5: two neighbours each. Scores 101, 82, 82, 101, …: inputs 1 and 2 tie, index 1 wins.
  const out = krum(u, 1);
  t.deepEqual(Array.from(out), [1]);
  out[0] = 42;
  t.is(u[1][0], 1);
});

test('multiKrum: m = n with f = 0 is the mean; m = 1 is krum', (t) => {
  fc.assert(
    fc.property(generalPositionSetWithF(2, 2), ({ updates, f }) => {
      const n = updates.length;
      return relErr(multiKrum(updates, 0, n), weightedMean(updates)) <= 1e-6 && relErr(multiKrum(updates, f, 1), krum(updates, f)) === 0;
    }),
  );
  t.pass();
});

test('geometricMedian: 1-D odd n is the median; a strict majority at one point is that point', (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: 1, maxLength: 15 }).filter((a) => a.length % 2 === 1), (vals) => {
      const u = vals.map((v) => f32(v));
      const med = [...vals].sort((a, b) => a - b)[(vals.length - 1) / 2];
      return Math.abs(geometricMedian(u)[0] - med) <= 1e-3 * Math.max(1, Math.abs(med));
    }),
  );
  const p = f32(3, -2, 7);
  const u = [p, p, p, f32(100, 100, 100), f32(-40, 9, 0)];
  t.true(relErr(geometricMedian(u), p) <= 1e-5);
});

test('centeredClipping: τ = ∞, L = 1 is the mean; τ = 0 is the center', (t) => {
  fc.assert(
    fc.property(generalPositionSetWithF(0, 0), ({ updates }) => {
      const d = updates[0].length;
      const v0 = Float32Array.from({ length: d }, (_, j) => j - 1);
      return (
        relErr(centeredClipping(updates, new Float32Array(d), { tau: Infinity }), weightedMean(updates)) <= 1e-5 &&
        relErr(centeredClipping(updates, v0, { tau: 0, iters: 3 }), v0) === 0
      );
    }),
  );
  // A far outlier moves the result by at most τ/n per iteration.
  const out = centeredClipping([f32(0), f32(0), f32(1e6)], f32(0), { tau: 3 });
  t.deepEqual(Array.from(out), [1]);
  t.pass();
});
