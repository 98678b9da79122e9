// One contract run against every rule (the DISCO pattern): the same properties, the same bad inputs.
import test from 'ava';
import fc from 'fast-check';
import {
  centeredClipping,
  coordinateMedian,
  geometricMedian,
  krum,
  krumScores,
  multiKrum,
  nearestNeighborMixing,
  pairwiseSquaredDistances,
  nna,
  RobustAggregator,
  trimmedMean,
  weightedMean,
  type RuleName,
} from '../../../shared/index.js';
import { clone, generalPositionSetWithF, relErr, sameArrays, scale, shift, updateSetWithF, vector } from '../../helpers/arbitraries.js';

interface RuleCase {
  name: string;
  /** The rule tolerates f when n > factor·f + extra. */
  factor: number;
  extra: number;
  /** `offset` is where the rule's own reference point sits (cclip's center); other rules ignore it. */
  apply: (u: Float32Array[], f: number, offset: Float32Array) => Float32Array;
  permutationInvariant: boolean;
  scaleEquivariant: boolean;
  /** Tolerance for the equivariance checks (iterative rules converge only to a tolerance). */
  tol: number;
  /** Krum-type rules break score ties by index, so permutation invariance only holds without a tie at the cut. */
  untiedAt?: (u: Float32Array[], f: number) => boolean;
}

/**
 * True unless the m-th and (m+1)-th smallest Krum scores tie between different vectors (a tie between identical
 * vectors, common after NNM, selects the same value either way). "Tie" is within float32 rounding: a permutation
 * changes the order of NNM's sums, so its float32 outputs, and so the scores, move by ~1e-7 relative; two scores
 * 1.5e-8 apart once picked different vectors under a permutation (a fast-check seed in CI found it).
 */
function krumCutUntied(u: Float32Array[], f: number, m: number): boolean {
  const scores = krumScores(pairwiseSquaredDistances(u), u.length, f);
  const sorted = Array.from(scores).sort((a, b) => a - b);
  if (m >= sorted.length) return true;
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b));
  if (!close(sorted[m], sorted[m - 1])) return true;
  const tied = u.filter((_, i) => close(scores[i], sorted[m]));
  return tied.every((v) => relErr(v, tied[0]) <= 1e-6);
}

const robust = (mix: 'none' | 'nnm', rule: RuleName) => (u: Float32Array[], f: number) => new RobustAggregator({ mix, rule, f }).aggregate(u);

const cases: RuleCase[] = [
  { name: 'weightedMean', factor: 0, extra: 0, apply: (u) => weightedMean(u), permutationInvariant: true, scaleEquivariant: true, tol: 1e-5 },
  { name: 'weightedMean (weights)', factor: 0, extra: 0, apply: (u) => weightedMean(u, u.map((_, i) => 1 + (i % 3))), permutationInvariant: false, scaleEquivariant: true, tol: 1e-5 },
  { name: 'coordinateMedian', factor: 0, extra: 0, apply: (u) => coordinateMedian(u), permutationInvariant: true, scaleEquivariant: true, tol: 1e-5 },
  { name: 'trimmedMean', factor: 2, extra: 0, apply: (u, f) => trimmedMean(u, f), permutationInvariant: true, scaleEquivariant: true, tol: 1e-5 },
  { name: 'krum', factor: 2, extra: 2, apply: (u, f) => krum(u, f), permutationInvariant: true, scaleEquivariant: true, tol: 1e-5, untiedAt: (u, f) => krumCutUntied(u, f, 1) },
  { name: 'multiKrum', factor: 2, extra: 2, apply: (u, f) => multiKrum(u, f), permutationInvariant: true, scaleEquivariant: true, tol: 1e-5, untiedAt: (u, f) => krumCutUntied(u, f, u.length - f) },
  { name: 'geometricMedian', factor: 0, extra: 0, apply: (u) => geometricMedian(u, { tol: 1e-10 }), permutationInvariant: true, scaleEquivariant: false, tol: 1e-3 },
  {
    name: 'centeredClipping',
    factor: 0,
    extra: 0,
    apply: (u, _f, offset) => centeredClipping(u, offset, { tau: 5, iters: 3 }),
    permutationInvariant: true,
    scaleEquivariant: false,
    tol: 1e-4,
  },
  { name: 'nna (pivot 0)', factor: 2, extra: 0, apply: (u, f) => nna(u, f, 0), permutationInvariant: false, scaleEquivariant: true, tol: 1e-5 },
  { name: 'nnm+mean', factor: 2, extra: 0, apply: robust('nnm', 'mean'), permutationInvariant: true, scaleEquivariant: true, tol: 1e-5 },
  { name: 'nnm+median', factor: 2, extra: 0, apply: robust('nnm', 'median'), permutationInvariant: true, scaleEquivariant: true, tol: 1e-5 },
  { name: 'nnm+trimmed-mean', factor: 2, extra: 0, apply: robust('nnm', 'trimmed-mean'), permutationInvariant: true, scaleEquivariant: true, tol: 1e-5 },
  { name: 'nnm+krum', factor: 2, extra: 2, apply: robust('nnm', 'krum'), permutationInvariant: true, scaleEquivariant: true, tol: 1e-4, untiedAt: (u, f) => krumCutUntied(nearestNeighborMixing(u, f), f, 1) },
  { name: 'nnm+multi-krum', factor: 2, extra: 2, apply: robust('nnm', 'multi-krum'), permutationInvariant: true, scaleEquivariant: true, tol: 1e-4, untiedAt: (u, f) => krumCutUntied(nearestNeighborMixing(u, f), f, u.length - f) },
  { name: 'nnm+geomed', factor: 2, extra: 0, apply: robust('nnm', 'geomed'), permutationInvariant: true, scaleEquivariant: false, tol: 1e-3 },
];

const zeros = (d: number) => new Float32Array(d);

for (const c of cases) {
  test(`${c.name}: identical inputs give that input`, (t) => {
    fc.assert(
      fc.property(vector(8), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 5 }), (x, n0, f0) => {
        const n = Math.max(n0, c.factor * f0 + c.extra + 1);
        const f = c.factor === 0 ? 0 : f0;
        // cclip's identity needs the center within τ of x; a center at x is the interesting case for equality.
        const out = c.apply(Array.from({ length: n }, () => Float32Array.from(x)), f, x);
        return relErr(out, x) <= 1e-6;
      }),
    );
    t.pass();
  });

  test(`${c.name}: translation equivariant, inputs untouched`, (t) => {
    fc.assert(
      fc.property(updateSetWithF(c.factor, c.extra, { integer: true }), fc.integer({ min: -1000, max: 1000 }), ({ updates, f }, s) => {
        const d = updates[0].length;
        const cvec = new Float32Array(d).map((_, j) => s + j);
        const before = clone(updates);
        const a = c.apply(updates, f, zeros(d));
        if (!sameArrays(updates, before)) return false;
        const b = c.apply(shift(updates, cvec), f, cvec);
        const expected = a.map((v, j) => v + cvec[j]);
        // Errors scale with the shift's magnitude in float32.
        return relErr(b, expected) <= c.tol * (1 + Math.abs(s) / 100);
      }),
    );
    t.pass();
  });

  if (c.permutationInvariant) {
    test(`${c.name}: permutation invariant`, (t) => {
      fc.assert(
        fc.property(generalPositionSetWithF(c.factor, c.extra), fc.infiniteStream(fc.nat()), ({ updates, f }, rand) => {
          const perm = updates.map((_, i) => i);
          const it = rand[Symbol.iterator]();
          for (let i = perm.length - 1; i > 0; i--) {
            const j = (it.next().value as number) % (i + 1);
            [perm[i], perm[j]] = [perm[j], perm[i]];
          }
          fc.pre(c.untiedAt?.(updates, f) ?? true);
          const d = updates[0].length;
          const a = c.apply(updates, f, zeros(d));
          const b = c.apply(perm.map((i) => updates[i]), f, zeros(d));
          return relErr(b, a) <= c.tol;
        }),
      );
      t.pass();
    });
  }

  if (c.scaleEquivariant) {
    test(`${c.name}: positive scaling equivariant`, (t) => {
      fc.assert(
        fc.property(updateSetWithF(c.factor, c.extra, { integer: true }), fc.constantFrom(0.5, 2, 4, 0.25), ({ updates, f }, a) => {
          const d = updates[0].length;
          const base = c.apply(updates, f, zeros(d));
          const scaled = c.apply(scale(updates, a), f, zeros(d));
          return relErr(scaled, base.map((v) => v * a)) <= c.tol;
        }),
      );
      t.pass();
    });
  }

  test(`${c.name}: RangeError on bad input`, (t) => {
    const d0 = zeros(3);
    t.throws(() => c.apply([], 0, d0), { instanceOf: RangeError });
    t.throws(() => c.apply([new Float32Array(3), new Float32Array(4)], 0, d0), { instanceOf: RangeError, message: /length/ });
    if (c.factor > 0) {
      // Exactly at the limit: n = factor·f + extra is one too few.
      const f = 2;
      const n = c.factor * f + c.extra;
      t.throws(() => c.apply(Array.from({ length: n }, () => new Float32Array(3)), f, d0), { instanceOf: RangeError, message: /f = 2/ });
      t.throws(() => c.apply(Array.from({ length: 9 }, () => new Float32Array(3)), 1.5, d0), { instanceOf: RangeError });
      t.throws(() => c.apply(Array.from({ length: 9 }, () => new Float32Array(3)), -1, d0), { instanceOf: RangeError });
    }
  });
}

test('weightedMean: RangeError on bad weights', (t) => {
  const u = [Float32Array.of(1, 2), Float32Array.of(3, 4)];
  for (const w of [[1], [1, -1], [0, 0], [1, Number.NaN], [1, Infinity], [1, 2, 3]]) {
    t.throws(() => weightedMean(u, w), { instanceOf: RangeError }, `weights ${JSON.stringify(w)}`);
  }
  t.deepEqual(Array.from(weightedMean(u, [3, 1])), [1.5, 2.5]);
  t.deepEqual(Array.from(weightedMean(u, [0, 1])), [3, 4]);
});

test('geometricMedian and centeredClipping: RangeError on bad options', (t) => {
  const u = [Float32Array.of(1, 2), Float32Array.of(3, 4)];
  t.throws(() => geometricMedian(u, { tol: -1 }), { instanceOf: RangeError });
  t.throws(() => geometricMedian(u, { maxIter: 1.5 }), { instanceOf: RangeError });
  t.throws(() => centeredClipping(u, new Float32Array(3), { tau: 1 }), { instanceOf: RangeError, message: /center/ });
  t.throws(() => centeredClipping(u, new Float32Array(2), { tau: -1 }), { instanceOf: RangeError, message: /tau/ });
  t.throws(() => centeredClipping(u, new Float32Array(2), { tau: Number.NaN }), { instanceOf: RangeError });
  t.throws(() => multiKrum(Array.from({ length: 5 }, () => new Float32Array(2)), 1, 6), { instanceOf: RangeError, message: /m must be/ });
  t.throws(() => nna(Array.from({ length: 5 }, () => new Float32Array(2)), 1, 5), { instanceOf: RangeError, message: /pivot/ });
});
