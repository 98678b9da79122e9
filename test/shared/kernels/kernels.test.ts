// The WebAssembly kernels against the scalar reference and a float64 oracle (docs/kernels.md): the committed bytes are
// the assembly of the committed text; the coordinate-wise rules are bit-identical to the scalar insertion sort
// (NaN, ±∞ and ±0 included); weighted sums and squared distances stay within the documented bounds; a pair's
// distance is the same bits alone or in a matrix; the module's memory is reused across shapes without stale values.
import test from 'ava';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { combine, combineRows } from '../../../shared/aggregation/combine.js';
import { centeredClipping } from '../../../shared/aggregation/centered-clipping.js';
import { coordinateMedian, trimmedMean } from '../../../shared/aggregation/coordinatewise.js';
import { geometricMedian } from '../../../shared/aggregation/geometric-median.js';
import { pairwiseSquaredDistances, squaredDistance } from '../../../shared/aggregation/distances.js';
import { MIN_WASM_LENGTH, useKernels, wasmKernels } from '../../../shared/kernels/wasm.js';
import { firstNonFinite } from '../../../shared/protocol/tensor.js';
import { mulberry32 } from '../../../shared/random.js';
import { assembleKernels, binaryFile, binaryModuleText } from '../../helpers/assemble-kernels.js';

/** The bound of docs/kernels.md: |kernel − exact| ≤ 1e-6 · Σ|terms| per coordinate (plus float32 rounding of the exact value). */
const BOUND = 1e-6;

/** n seeded vectors of length d; `special` of every 1000 values are NaN, ±∞, ±0 or a copy of a neighbour's value. */
function vectors(seed: number, n: number, d: number, special = 0): Float32Array[] {
  const rng = mulberry32(seed);
  const out = Array.from({ length: n }, () => Float32Array.from({ length: d }, () => (rng() - 0.5) * 2 ** Math.floor(rng() * 20 - 10)));
  const odd = [Number.NaN, Infinity, -Infinity, 0, -0];
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      if (rng() * 1000 >= special) continue;
      const r = rng();
      out[i][j] = r < 0.5 ? (odd[Math.floor(rng() * odd.length)] as number) : out[Math.floor(rng() * n)][j];
    }
  }
  return out;
}

/** Runs f with the given kernels selected, restoring the default after. */
function using<T>(which: 'wasm' | 'js', f: () => T): T {
  useKernels(which);
  try {
    return f();
  } finally {
    useKernels('wasm');
  }
}

const shape = fc.record({
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  n: fc.integer({ min: 1, max: 32 }),
  d: fc.integer({ min: MIN_WASM_LENGTH, max: 9000 }),
});

test('the committed kernels-binary.ts is the assembly of wat.ts (run `npm run kernels` after changing it)', async (t) => {
  t.is(readFileSync(binaryFile, 'utf8'), binaryModuleText(await assembleKernels()));
});

test('the kernels run here (Node.js has WebAssembly SIMD), and short vectors take the scalar paths', (t) => {
  t.not(wasmKernels(MIN_WASM_LENGTH), null);
  t.is(wasmKernels(MIN_WASM_LENGTH - 1), null);
  t.is(using('js', () => wasmKernels(10_000)), null);
});

test('trimmed mean and median: bit-identical to the scalar insertion sort for n ≤ 32, NaN, ±∞ and ±0 included', (t) => {
  fc.assert(
    fc.property(shape, fc.integer({ min: 0, max: 40 }), ({ seed, n, d }, special) => {
      const x = vectors(seed, n, d, special);
      const f = Math.floor((n - 1) / 2);
      for (const rule of [(u: Float32Array[]) => trimmedMean(u, f), coordinateMedian]) {
        const want = using('js', () => rule(x));
        const got = rule(x);
        for (let j = 0; j < d; j++) if (!Object.is(got[j], want[j])) return t.fail(`n=${n} d=${d} [${j}]: ${got[j]} vs ${want[j]}`);
      }
      return true;
    }),
    { numRuns: 60 },
  );
  t.pass();
});

/** Σ_i c_i x_i[j] in float64, and Σ_i |c_i x_i[j]|. */
function exactCombination(x: readonly Float32Array[], c: ArrayLike<number>, j: number): { sum: number; scale: number } {
  let sum = 0;
  let scale = 0;
  for (let i = 0; i < x.length; i++) {
    if (c[i] === 0) continue;
    sum += c[i] * x[i][j];
    scale += Math.abs(c[i] * x[i][j]);
  }
  return { sum, scale };
}

test('weighted sums: within 1e-6 · Σ|cᵢxᵢ| of the float64 sum, for any coefficients, rows and duplicate rows', (t) => {
  fc.assert(
    fc.property(shape, fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 6 }), ({ seed, n, d }, n2, rows) => {
      const x = vectors(seed, n + n2, d);
      const m = x.length;
      const rng = mulberry32(seed ^ 0x9e3779b9);
      // Coefficients of mixed sign and scale, some zero; the last row repeats the first (computed once, copied).
      const coeffs = Float64Array.from({ length: rows * m }, () => (rng() < 0.2 ? 0 : (rng() - 0.3) * 3));
      if (rows > 1) coeffs.copyWithin((rows - 1) * m, 0, m);
      const out = combineRows(x, coeffs, rows);
      for (let r = 0; r < rows; r++) {
        const c = coeffs.subarray(r * m, (r + 1) * m);
        for (let j = 0; j < d; j++) {
          const { sum, scale } = exactCombination(x, c, j);
          const err = Math.abs(out[r][j] - sum);
          if (!(err <= BOUND * scale + Math.abs(sum - Math.fround(sum)))) return t.fail(`row ${r} [${j}]: ${out[r][j]} vs ${sum} (scale ${scale})`);
        }
      }
      if (rows > 1 && out[0] === out[rows - 1]) return t.fail('a repeated row shares its array');
      return true;
    }),
    { numRuns: 40 },
  );
  t.pass();
});

test('weighted sums: NaN and ±∞ in an input with a non-zero coefficient reach the output, as in float64; a zero coefficient ignores them', (t) => {
  const x = vectors(7, 3, 1000);
  x[1][5] = Number.NaN;
  x[1][6] = Infinity;
  x[2][7] = -Infinity;
  const used = combine(x, Float64Array.from([0.5, 0.25, 0.25]));
  t.true(Number.isNaN(used[5]));
  t.is(used[6], Infinity);
  t.is(used[7], -Infinity);
  const ignored = combine(x, Float64Array.from([1, 0, 0]));
  t.deepEqual(ignored, x[0]);
});

test('squared distances: within 1e-6 relative of float64, exactly 0 between copies, symmetric, and a pair alone gives the matrix entry bit for bit', (t) => {
  fc.assert(
    fc.property(shape, ({ seed, n, d }) => {
      const x = vectors(seed, Math.max(2, n), d);
      x.push(Float32Array.from(x[0])); // a copy, not adjacent to its original
      const D = pairwiseSquaredDistances(x);
      const m = x.length;
      for (let a = 0; a < m; a++) {
        if (D[a * m + a] !== 0) return t.fail(`D[${a}][${a}] = ${D[a * m + a]}`);
        for (let b = 0; b < m; b++) {
          if (D[a * m + b] !== D[b * m + a]) return t.fail('not symmetric');
          let exact = 0;
          for (let j = 0; j < d; j++) exact += (x[a][j] - x[b][j]) ** 2;
          if (!(Math.abs(D[a * m + b] - exact) <= BOUND * exact)) return t.fail(`D[${a}][${b}] = ${D[a * m + b]} vs ${exact}`);
        }
      }
      if (D[m - 1] !== 0) return t.fail('a copy is not exactly 0 from its original');
      if (!Object.is(squaredDistance(x[1], x[m - 2]), D[1 * m + m - 2])) return t.fail('a pair alone differs from its matrix entry');
      return true;
    }),
    { numRuns: 40 },
  );
  t.pass();
});

test('one module serves calls of every shape in any order: no stale values from an earlier, larger call', (t) => {
  const calls = [
    () => pairwiseSquaredDistances(vectors(1, 9, 3001)),
    () => combineRows(vectors(2, 40, 777), Float64Array.from({ length: 80 }, (_, i) => (i % 7) / 7), 2)[1],
    () => trimmedMean(vectors(3, 31, 4099, 5), 10),
    () => coordinateMedian(vectors(4, 2, 257)),
    () => pairwiseSquaredDistances(vectors(5, 3, 258)),
    () => combine(vectors(6, 1, 20_001), Float64Array.from([2])),
    () => geometricMedian(vectors(7, 6, 5003)),
    () => centeredClipping(vectors(8, 5, 1001), vectors(9, 1, 1001)[0], { tau: 0.5, iters: 2 }),
    () => geometricMedian(vectors(10, 3, 257)),
  ];
  const alone = calls.map((c) => c());
  const mixed = [...calls.keys()].reverse().map((i) => [i, calls[i]!()] as const);
  for (const [i, v] of mixed) t.deepEqual(v, alone[i], `call ${i}`);
});

test('the NaN scan finds the first NaN or ±∞ wherever it is, and nothing in finite values (±0, subnormals, ±max)', (t) => {
  const scalar = (x: Float32Array): number => x.findIndex((v) => !Number.isFinite(v));
  fc.assert(
    fc.property(fc.integer({ min: MIN_WASM_LENGTH, max: 70_000 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.constantFrom(Number.NaN, Infinity, -Infinity, null), (d, seed, bad) => {
      const rng = mulberry32(seed);
      const finite = [0, -0, 1e-45, -1e-45, 3.4028234663852886e38, -3.4028234663852886e38, 1, -2.5];
      const x = Float32Array.from({ length: d }, () => (rng() < 0.5 ? (finite[Math.floor(rng() * finite.length)] as number) : rng() - 0.5));
      if (bad !== null) {
        // One or two bad values, the last element sometimes: the first is reported.
        const at = rng() < 0.2 ? d - 1 : Math.floor(rng() * d);
        x[at] = bad;
        if (rng() < 0.5) x[Math.floor(rng() * d)] = Number.NaN;
      }
      return firstNonFinite(x) === scalar(x) && firstNonFinite(x.subarray(1)) === scalar(x.subarray(1));
    }),
    { numRuns: 200 },
  );
  t.pass();
});

test('geometric median: the float64 kernels reach the scalar loops’ answer (same start, same iteration, float64 sums in another order)', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 1, max: 13 }), fc.integer({ min: MIN_WASM_LENGTH, max: 3000 }), (seed, n, d) => {
      const x = vectors(seed, n, d);
      const want = using('js', () => geometricMedian(x, { tol: 1e-9, maxIter: 200 }));
      const got = geometricMedian(x, { tol: 1e-9, maxIter: 200 });
      let scale = 1;
      for (let j = 0; j < d; j++) scale = Math.max(scale, Math.abs(want[j]));
      for (let j = 0; j < d; j++) if (!(Math.abs(got[j] - want[j]) <= 1e-6 * scale)) return t.fail(`n=${n} d=${d} [${j}]: ${got[j]} vs ${want[j]}`);
      return true;
    }),
    { numRuns: 25 },
  );
  t.pass();
});

test('centered clipping: the float64 kernels give the scalar loops’ answer (the sweep in the same order; the norms in another float64 order), copies of the center skipped', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 1, max: 13 }), fc.integer({ min: MIN_WASM_LENGTH, max: 3000 }), fc.constantFrom(0.1, 1, 30, Infinity), fc.integer({ min: 1, max: 4 }), (seed, n, d, tau, iters) => {
      const x = vectors(seed, n, d);
      x.push(Float32Array.from(x[0])); // a copy of the center: ‖x − v‖ = 0 in the first iteration
      const want = using('js', () => centeredClipping(x, x[0], { tau, iters }));
      const got = centeredClipping(x, x[0], { tau, iters });
      let scale = 1;
      for (let j = 0; j < d; j++) scale = Math.max(scale, Math.abs(want[j]));
      for (let j = 0; j < d; j++) if (!(Math.abs(got[j] - want[j]) <= 1e-6 * scale)) return t.fail(`n=${n} d=${d} τ=${tau} [${j}]: ${got[j]} vs ${want[j]}`);
      return true;
    }),
    { numRuns: 25 },
  );
  t.pass();
});
