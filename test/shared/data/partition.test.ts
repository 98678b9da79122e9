import test from 'ava';
import fc from 'fast-check';
import { dirichletSample, logGammaSample, partitionDirichlet, partitionIid } from '../../../shared/data/partition.js';
import { mulberry32 } from '../../../shared/random.js';

function assertCover(parts: number[][], n: number): boolean {
  const seen = new Uint8Array(n);
  for (const p of parts) {
    for (const i of p) {
      if (!Number.isInteger(i) || i < 0 || i >= n || seen[i]) return false;
      seen[i] = 1;
    }
  }
  return seen.every((v) => v === 1);
}

test('iid: exact cover, sizes within one, deterministic per seed', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 500 }), fc.integer({ min: 1, max: 40 }), fc.integer(), (n, clients, seed) => {
      const parts = partitionIid(n, clients, seed);
      if (parts.length !== clients || !assertCover(parts, n)) return false;
      const sizes = parts.map((p) => p.length);
      if (Math.max(...sizes) - Math.min(...sizes) > 1) return false;
      if (n >= clients && sizes.some((s) => s === 0)) return false;
      return JSON.stringify(partitionIid(n, clients, seed)) === JSON.stringify(parts);
    }),
  );
  t.notDeepEqual(partitionIid(100, 4, 1), partitionIid(100, 4, 2));
});

test('dirichlet: exact cover, no empty client when n ≥ clients, deterministic', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 0, maxLength: 400 }),
      fc.integer({ min: 1, max: 30 }),
      fc.double({ min: 0.001, max: 100, noNaN: true }),
      fc.integer(),
      (labels, clients, alpha, seed) => {
        const parts = partitionDirichlet(labels, 10, clients, alpha, seed);
        if (parts.length !== clients || !assertCover(parts, labels.length)) return false;
        if (labels.length >= clients && parts.some((p) => p.length === 0)) return false;
        return JSON.stringify(partitionDirichlet(labels, 10, clients, alpha, seed)) === JSON.stringify(parts);
      },
    ),
    { numRuns: 200 },
  );
  t.pass();
});

function meanClientEntropy(labels: number[], parts: number[][], classes: number): number {
  let total = 0;
  for (const p of parts) {
    const counts = new Array<number>(classes).fill(0);
    for (const i of p) counts[labels[i]]++;
    let h = 0;
    for (const c of counts) if (c > 0) h -= (c / p.length) * Math.log(c / p.length);
    total += h;
  }
  return total / parts.length;
}

test('dirichlet: label skew grows as alpha falls (mean per-client label entropy)', (t) => {
  const classes = 10;
  const labels = Array.from({ length: 5000 }, (_, i) => i % classes);
  const entropy = (alpha: number) => {
    let sum = 0;
    for (let seed = 1; seed <= 3; seed++) sum += meanClientEntropy(labels, partitionDirichlet(labels, classes, 20, alpha, seed), classes);
    return sum / 3;
  };
  const hs = [100, 1, 0.3, 0.05].map(entropy);
  t.log('entropies (alpha 100, 1, 0.3, 0.05):', hs.map((h) => h.toFixed(3)).join(' '));
  t.true(hs[0] > 0.95 * Math.log(classes));
  for (let i = 1; i < hs.length; i++) t.true(hs[i] < hs[i - 1]);
  t.true(hs[3] < 0.6);
});

test('gamma sampler: mean ≈ alpha for alpha below and above 1; tiny alpha stays finite', (t) => {
  for (const alpha of [0.1, 0.5, 1, 3.7]) {
    const rand = mulberry32(7);
    let sum = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) sum += Math.exp(logGammaSample(alpha, rand));
    t.true(Math.abs(sum / n - alpha) < 0.05 * Math.max(1, alpha), `alpha ${alpha}: mean ${sum / n}`);
  }
  const p = dirichletSample(50, 1e-4, mulberry32(1));
  t.true(p.every(Number.isFinite));
  t.true(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
});

test('bad arguments throw RangeError', (t) => {
  t.throws(() => partitionIid(10, 0, 1), { instanceOf: RangeError });
  t.throws(() => partitionIid(-1, 2, 1), { instanceOf: RangeError });
  t.throws(() => partitionDirichlet([0, 1, 2], 2, 2, 0.5, 1), { instanceOf: RangeError, message: /row 2/ });
  t.throws(() => partitionDirichlet([0, 1], 2, 2, 0, 1), { instanceOf: RangeError, message: /alpha/ });
});
