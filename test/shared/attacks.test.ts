// Byzantine vector attacks (docs/algorithms.md §2.2): each formula checked against μ, σ recomputed here independently.
import test from 'ava';
import fc from 'fast-check';
import {
  alieZ,
  byzantineVectors,
  coordinateMedian,
  inverseNormalCdf,
  mulberry32,
  optimalAttack,
  VECTOR_ATTACKS,
  weightedMean,
  type AttackInput,
  type VectorAttack,
} from '../../shared/index.js';
import { clone, normal, relErr, rng, sameArrays } from '../helpers/arbitraries.js';

const f32 = (...v: number[]) => Float32Array.from(v);
const GRID = [0.25, 0.5, 1, 2, 4, 8, 16];

/** Plain-number μ and unbiased σ per coordinate (σ only for h ≥ 2). */
function meanStd(honest: readonly Float32Array[]): { mu: number[]; sigma: number[] } {
  const h = honest.length;
  const mu = Array.from(honest[0], (_, j) => honest.reduce((s, x) => s + x[j], 0) / h);
  const sigma = mu.map((m, j) => Math.sqrt(honest.reduce((s, x) => s + (x[j] - m) ** 2, 0) / (h - 1)));
  return { mu, sigma };
}

/** h seeded normal vectors of length d, offset so μ is far from 0. */
function honestSet(seed: number, h: number, d: number): Float32Array[] {
  const r = rng(seed);
  return Array.from({ length: h }, () => Float32Array.from({ length: d }, (_, j) => j - d / 2 + 3 * normal(r)));
}

const honestArb = fc
  .record({ seed: fc.integer(), h: fc.integer({ min: 2, max: 10 }), d: fc.integer({ min: 1, max: 12 }), f: fc.integer({ min: 1, max: 5 }) })
  .map(({ seed, h, d, f }) => ({ honest: honestSet(seed, h, d), f }));

function allEqual(t: { true: (v: boolean, m?: string) => void }, vs: Float32Array[], f: number): void {
  t.true(vs.length === f, `expected ${f} vectors, got ${vs.length}`);
  t.true(vs.every((v) => sameArrays([v], [vs[0]])), 'all Byzantine vectors equal');
}

test('sign-flip: every Byzantine vector is −μ', (t) => {
  fc.assert(
    fc.property(honestArb, ({ honest, f }) => {
      const vs = byzantineVectors('sign-flip', { honest, byzantine: f, scale: 123 }); // scale is ignored
      allEqual(t, vs, f);
      return relErr(vs[0], meanStd(honest).mu.map((m) => -m)) <= 1e-6;
    }),
  );
});

test('scaled-sign-flip: default scale h/f zeroes the plain mean of all n; explicit scale gives −scale·μ', (t) => {
  fc.assert(
    fc.property(honestArb, ({ honest, f }) => {
      const vs = byzantineVectors('scaled-sign-flip', { honest, byzantine: f });
      allEqual(t, vs, f);
      const mean = weightedMean([...honest, ...vs]);
      const big = Math.max(...honest.flatMap((x) => Array.from(x, Math.abs)));
      const explicit = byzantineVectors('scaled-sign-flip', { honest, byzantine: f, scale: 0.5 });
      return mean.every((v) => Math.abs(v) <= 1e-5 * big) && relErr(explicit[0], meanStd(honest).mu.map((m) => -0.5 * m)) <= 1e-6;
    }),
  );
});

test('alie: b = μ + z·σ with the unbiased σ; the default z is alieZ(h+f, f)', (t) => {
  fc.assert(
    fc.property(honestArb, fc.double({ min: 0, max: 20, noNaN: true }), ({ honest, f }, z) => {
      const { mu, sigma } = meanStd(honest);
      const vs = byzantineVectors('alie', { honest, byzantine: f, scale: z });
      allEqual(t, vs, f);
      const h = honest.length;
      // Default z only exists while f < ⌊n/2 + 1⌋.
      const zDef = f < Math.floor((h + f) / 2 + 1) ? alieZ(h + f, f) : undefined;
      const okDef = zDef === undefined || relErr(byzantineVectors('alie', { honest, byzantine: f })[0], mu.map((m, j) => m + zDef * sigma[j])) <= 1e-6;
      return relErr(vs[0], mu.map((m, j) => m + z * sigma[j])) <= 1e-6 && okDef;
    }),
  );
  // One honest vector: no spread to exploit (σ would be 0/0), so b = μ rather than NaN.
  t.deepEqual(Array.from(byzantineVectors('alie', { honest: [f32(1, -2)], byzantine: 1, scale: 3 })[0]), [1, -2]);
});

test('foe: b = (1 − z)·μ; z = 1 gives zeros, z = 0 gives μ, default z = 2 gives −μ', (t) => {
  const honest = honestSet(5, 6, 9);
  const { mu } = meanStd(honest);
  const at = (scale?: number) => byzantineVectors('foe', { honest, byzantine: 2, ...(scale === undefined ? {} : { scale }) });
  t.true(at(1)[0].every((v) => v === 0));
  t.true(relErr(at(0)[0], mu) <= 1e-6);
  t.true(relErr(at()[0], mu.map((m) => -m)) <= 1e-6);
  t.true(relErr(at(3.5)[0], mu.map((m) => -2.5 * m)) <= 1e-6);
  allEqual(t, at(3.5), 2);
});

test('random: seeded and reproducible, its own noise per Byzantine vector, independent of μ', (t) => {
  const honest = honestSet(1, 4, 50);
  const run = (seed: number) => byzantineVectors('random', { honest, byzantine: 3, scale: 2, random: mulberry32(seed) });
  t.true(sameArrays(run(42), run(42)));
  t.false(sameArrays(run(42), run(43)));
  const [a, b, c] = run(42);
  t.false(sameArrays([a], [b]));
  t.false(sameArrays([b], [c]));
  t.throws(() => byzantineVectors('random', { honest, byzantine: 1 }), { instanceOf: RangeError, message: /random source/ });
});

test('random: empirical mean ≈ 0 and std ≈ scale over 1e5 coordinates', (t) => {
  const d = 100_000;
  for (const scale of [undefined, 0.3, 2.5]) {
    const s = scale ?? 1;
    const honest = [new Float32Array(d).fill(7)]; // a non-zero μ must not leak into the noise
    const [b] = byzantineVectors('random', { honest, byzantine: 1, random: mulberry32(9), ...(scale === undefined ? {} : { scale }) });
    const mean = b.reduce((x, v) => x + v, 0) / d;
    const std = Math.sqrt(b.reduce((x, v) => x + (v - mean) ** 2, 0) / (d - 1));
    // Standard errors: s/√d ≈ 0.003s for the mean, s/√(2d) ≈ 0.0022s for the std; 2% is > 6 of them.
    t.true(Math.abs(mean) < 0.02 * s, `mean ${mean}`);
    t.true(Math.abs(std - s) < 0.02 * s, `std ${std} vs ${s}`);
  }
});

test('mimic: copies of honest[0] in new arrays', (t) => {
  const honest = [f32(1, 2, 3), f32(9, 9, 9)];
  const vs = byzantineVectors('mimic', { honest, byzantine: 2 });
  t.deepEqual(vs.map((v) => Array.from(v)), [[1, 2, 3], [1, 2, 3]]);
  t.not(vs[0], honest[0]);
  vs[0][0] = 100;
  t.is(honest[0][0], 1);
  t.is(vs[1][0], 1);
});

test('every kind returns f fresh arrays that share no memory with each other or the inputs; inputs are never mutated', (t) => {
  fc.assert(
    fc.property(honestArb, fc.constantFrom(...VECTOR_ATTACKS), fc.integer(), ({ honest, f }, kind, seed) => {
      const before = clone(honest);
      const input: AttackInput = { honest, byzantine: f, random: mulberry32(seed), ...(kind === 'alie' ? { scale: 1.5 } : {}) };
      const vs = byzantineVectors(kind, input);
      const buffers = new Set([...honest, ...vs].map((v) => v.buffer));
      for (const v of vs) v.fill(Number.NaN); // writes to outputs must not reach the honest vectors
      const opt = optimalAttack(kind === 'foe' ? 'foe' : 'alie', { honest, byzantine: f }, (all) => coordinateMedian(all));
      for (const v of opt.vectors) v.fill(Number.NaN);
      return vs.length === f && buffers.size === honest.length + f && sameArrays(honest, before);
    }),
  );
  t.pass();
});

test('alieZ: the reference constants of docs/algorithms.md §2.2', (t) => {
  t.is(alieZ(26, 5).toFixed(3), '0.396');
  t.is(alieZ(16, 3).toFixed(3), '0.319');
  // Exact values (Python statistics.NormalDist.inv_cdf, Wichura AS241) of Φ⁻¹(17/26) and Φ⁻¹(10/16).
  t.true(Math.abs(alieZ(26, 5) - 0.3957252958144873) < 1e-12);
  t.true(Math.abs(alieZ(16, 3) - 0.31863936396437514) < 1e-12);
  t.is(alieZ(10, 1), 0); // s = 5 = n/2: p = ½
  t.throws(() => alieZ(4, 3), { instanceOf: RangeError, message: /too large/ });
  t.throws(() => alieZ(10, 0), { instanceOf: RangeError });
  t.throws(() => alieZ(7.5, 1), { instanceOf: RangeError });
});

test('inverseNormalCdf: reference values to 1e-9 across all three Acklam regions, symmetry, domain', (t) => {
  t.is(inverseNormalCdf(0.5), 0);
  t.true(Math.abs(inverseNormalCdf(0.975) - 1.959964) < 1e-6);
  const ref: [number, number][] = [
    [0.975, 1.9599639845400536],
    [0.001, -3.090232306167813],
    [1e-10, -6.361340902404056],
    [1 - 1e-12, 7.0344869100478356],
    [0.02425, -1.9729610513118845],
    [0.3, -0.5244005127080407],
    [0.8413447460685429, 1], // Φ(1)
    [0.0013498980316301035, -3], // Φ(−3)
  ];
  for (const [p, x] of ref) t.true(Math.abs(inverseNormalCdf(p) - x) < 1e-9, `Φ⁻¹(${p}) = ${inverseNormalCdf(p)}, expected ${x}`);
  // Symmetry on pairs (1 − q, q) with q = 1 − p: for q ≥ ½ the subtraction 1 − q is exact, so the pair truly sums to 1.
  fc.assert(
    fc.property(fc.double({ min: 1e-15, max: 0.5, noNaN: true }), (p) => {
      const q = 1 - p;
      return Math.abs(inverseNormalCdf(1 - q) + inverseNormalCdf(q)) <= 1e-9;
    }),
  );
  t.true(inverseNormalCdf(1e-300) < -37 && Number.isFinite(inverseNormalCdf(Number.MIN_VALUE))); // deep tail stays finite
  for (const p of [0, 1, -0.1, 1.5, Number.NaN]) t.throws(() => inverseNormalCdf(p), { instanceOf: RangeError, message: /\(0, 1\)/ });
});

test('optimalAttack: picks a grid z whose objective is ≥ every other grid z, and returns that z’s vectors', (t) => {
  const objective = (honest: Float32Array[], out: Float32Array) => {
    const { mu } = meanStd(honest);
    return mu.reduce((s, m, j) => s + (out[j] - m) ** 2, 0);
  };
  const defences = { median: coordinateMedian, mean: (all: Float32Array[]) => weightedMean(all) };
  for (const kind of ['alie', 'foe'] as const) {
    for (const [name, defence] of Object.entries(defences)) {
      for (const seed of [1, 2, 3]) {
        const honest = honestSet(seed, 11, 20);
        const f = 4;
        const { z, vectors } = optimalAttack(kind, { honest, byzantine: f }, defence);
        t.true(GRID.includes(z), `${kind}/${name}: z = ${z}`);
        const objs = GRID.map((g) => objective(honest, defence([...honest, ...byzantineVectors(kind, { honest, byzantine: f, scale: g })])));
        const mine = objs[GRID.indexOf(z)];
        t.true(objs.every((o) => mine >= o), `${kind}/${name}: z = ${z} objective ${mine} < max ${Math.max(...objs)}`);
        t.true(sameArrays(vectors, byzantineVectors(kind, { honest, byzantine: f, scale: z })));
        // Against the mean the damage grows with z, so the largest grid z wins.
        if (name === 'mean') t.is(z, 16);
      }
    }
  }
});

test('optimalAttack: ties go to the smallest z', (t) => {
  const honest = honestSet(4, 5, 3);
  t.is(optimalAttack('alie', { honest, byzantine: 1 }, () => new Float32Array(3)).z, 0.25);
  t.is(optimalAttack('foe', { honest, byzantine: 2 }, (all) => Float32Array.from(all[0])).z, 0.25);
});

test('RangeErrors name the attack and the problem', (t) => {
  const honest = [f32(1, 2), f32(3, 4)];
  const bad = (kind: string, input: Partial<AttackInput>, message: RegExp) =>
    t.throws(() => byzantineVectors(kind as VectorAttack, { honest, byzantine: 1, ...input } as AttackInput), { instanceOf: RangeError, message });
  for (const kind of VECTOR_ATTACKS) {
    bad(kind, { honest: [] }, /at least one/);
    bad(kind, { honest: [f32(1, 2), f32(1)] }, /unequal lengths/);
    for (const f of [0, -1, 1.5, Number.NaN]) bad(kind, { byzantine: f }, /byzantine \(f\) must be an integer ≥ 1/);
  }
  bad('label-flip', {}, /unknown attack 'label-flip'/);
  for (const kind of ['scaled-sign-flip', 'random'] as const) {
    for (const scale of [0, -1, Number.NaN, Infinity]) bad(kind, { scale, random: mulberry32(1) }, new RegExp(`attack '${kind}': scale must be a finite number > 0`));
  }
  for (const kind of ['alie', 'foe'] as const) {
    for (const scale of [-0.5, Number.NaN, Infinity]) bad(kind, { scale }, /scale must be a finite number ≥ 0/);
  }
  bad('alie', { honest: [f32(1)], byzantine: 3 }, /alieZ: f = 3 is too large for n = 4/); // default z undefined
  t.throws(() => optimalAttack('mimic' as 'alie', { honest, byzantine: 1 }, coordinateMedian), { instanceOf: RangeError, message: /'alie' or 'foe'/ });
  t.throws(() => optimalAttack('alie', { honest, byzantine: 1 }, () => new Float32Array(5)), { instanceOf: RangeError, message: /length 2/ });
  t.throws(() => optimalAttack('foe', { honest, byzantine: 1 }, () => f32(Number.NaN, 0)), { instanceOf: RangeError, message: /NaN/ });
});
