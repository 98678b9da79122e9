// FedBuff buffer and staleness weights: docs/algorithms.md §3.4 (1–3, 6; 4–5 are simulator properties).
import test from 'ava';
import fc from 'fast-check';
import { FedBuffBuffer, RobustAggregator, stalenessWeight, weightedMean } from '../../../shared/index.js';
import { relErr, rng } from '../../helpers/arbitraries.js';

test('§3.4.1 s(0) = 1 and s(3) = ½ for poly ½; constant and hinge', (t) => {
  const poly = { kind: 'poly', exponent: 0.5 } as const;
  t.is(stalenessWeight(poly, 0), 1);
  t.is(stalenessWeight(poly, 3), 0.5);
  t.is(stalenessWeight({ kind: 'constant' }, 17), 1);
  t.is(stalenessWeight({ kind: 'hinge', a: 2, b: 3 }, 3), 1);
  t.is(stalenessWeight({ kind: 'hinge', a: 2, b: 3 }, 5), 1 / 5);
  t.throws(() => stalenessWeight(poly, -1), { instanceOf: RangeError, message: /τ/ });
  t.throws(() => stalenessWeight(poly, Number.NaN), { instanceOf: RangeError });
  t.throws(() => stalenessWeight({ kind: 'poly', exponent: -1 }, 1), { instanceOf: RangeError });
  t.throws(() => stalenessWeight({ kind: 'nope' } as never, 1), { instanceOf: RangeError, message: /unknown kind/ });
});

test('§3.4.1 steps = ⌊arrivals/K⌋, the buffer is empty after each step', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 8 }), fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 60 }), (K, taus) => {
      const b = new FedBuffBuffer({ size: K });
      let steps = 0;
      for (const tau of taus) {
        const res = b.add(Float32Array.of(1, 2), tau);
        if (res.kind === 'ready') {
          steps++;
          if (b.count !== 0 || res.count !== K) return false;
        }
      }
      return steps === Math.floor(taus.length / K) && b.count === taus.length % K;
    }),
  );
  t.pass();
});

test('§3.4.2 K = 1, s ≡ 1, η = 1: each update is applied on its own, in order', (t) => {
  const b = new FedBuffBuffer({ size: 1, staleness: { kind: 'constant' } });
  const r = rng(9);
  let x = new Float32Array(3);
  const expected = new Float64Array(3);
  for (let i = 0; i < 20; i++) {
    const u = Float32Array.from({ length: 3 }, () => r() - 0.5);
    const res = b.add(u, i % 4);
    if (res.kind !== 'ready') return t.fail('K = 1 must step on every arrival');
    t.deepEqual(Array.from(res.aggregate), Array.from(u));
    x = x.map((v, j) => v + res.aggregate[j]);
    for (let j = 0; j < 3; j++) expected[j] += u[j];
  }
  t.true(relErr(x, expected) < 1e-5);
});

test('§3.4.3 C = K clients arriving together with τ = 0: one step is synchronous FedAvg', (t) => {
  const r = rng(2);
  const updates = Array.from({ length: 5 }, () => Float32Array.from({ length: 8 }, () => r() * 2 - 1));
  const b = new FedBuffBuffer({ size: 5 });
  let res;
  for (const u of updates) res = b.add(u, 0);
  t.is(res?.kind, 'ready');
  if (res?.kind === 'ready') {
    t.true(relErr(res.aggregate, weightedMean(updates)) <= 1e-7);
    t.is(res.stalenessMean, 0);
  }
});

test('reductions: sum = K × mean; staleness and weights multiply; maxStaleness drops', (t) => {
  const u = [Float32Array.of(4, 8), Float32Array.of(2, 2)];
  const mean = new FedBuffBuffer({ size: 2 });
  const sum = new FedBuffBuffer({ size: 2, reduction: 'sum' });
  mean.add(u[0], 3, 2);
  sum.add(u[0], 3, 2);
  const a = mean.add(u[1], 0);
  const s = sum.add(u[1], 0);
  // weights: 2·s(3) = 1 for u0, 1·s(0) = 1 for u1.
  t.deepEqual(a.kind === 'ready' ? Array.from(a.aggregate) : null, [3, 5]);
  t.deepEqual(s.kind === 'ready' ? Array.from(s.aggregate) : null, [6, 10]);
  t.is(a.kind === 'ready' ? a.stalenessMean : -1, 1.5);
  const capped = new FedBuffBuffer({ size: 2, maxStaleness: 2 });
  t.is(capped.add(u[0], 3).kind, 'dropped');
  t.is(capped.count, 0);
});

test('§3.4.6 FLSim normalisation: weight(τ̄) = 1', (t) => {
  const b = new FedBuffBuffer({ size: 1, normalizeAt: 1 });
  const at = b.add(Float32Array.of(1), 1);
  t.is(at.kind === 'ready' ? at.aggregate[0] : -1, 1);
  const fresh = b.add(Float32Array.of(1), 0);
  t.true(fresh.kind === 'ready' && Math.abs(fresh.aggregate[0] - Math.SQRT2) < 1e-6);
});

test('flush aggregates a partial buffer; robust rules apply to the scaled buffered updates', (t) => {
  const robust = new RobustAggregator({ mix: 'none', rule: 'median', f: 0 });
  const b = new FedBuffBuffer({ size: 10, staleness: { kind: 'constant' }, rule: (u) => robust.aggregate(u) });
  b.add(Float32Array.of(1), 0);
  b.add(Float32Array.of(2), 0);
  b.add(Float32Array.of(1000), 0);
  const res = b.flush();
  t.is(res?.count, 3);
  t.deepEqual(res ? Array.from(res.aggregate) : null, [2]);
  t.is(b.flush(), null);
  t.throws(() => new FedBuffBuffer({ size: 0 }), { instanceOf: RangeError });
  t.throws(() => new FedBuffBuffer({ size: 2, staleness: { kind: 'poly', exponent: Number.NaN } }), { instanceOf: RangeError });
  const b2 = new FedBuffBuffer({ size: 3 });
  b2.add(Float32Array.of(1, 2), 0);
  t.throws(() => b2.add(Float32Array.of(1), 0), { instanceOf: RangeError, message: /length/ });
  t.throws(() => b2.add(Float32Array.of(1, 2), -1), { instanceOf: RangeError });
  t.throws(() => b2.add(Float32Array.of(1, 2), 0, -2), { instanceOf: RangeError });
});
