// shared/random.ts: the ziggurat normals and mulberry32's inlined fast path.
import test from 'ava';
import fc from 'fast-check';
import { Random, deriveSeed, gaussianFill, mulberry32, sampleWithoutReplacement, shuffle, ziggurat } from '../../shared/random.js';
import { fnv1a32 } from '../../shared/model/featurizer.js';

test("mulberry32's inlined normal path draws exactly what the generic ziggurat draws from the same stream", (t) => {
  const fast = new Float64Array(200_003);
  const slow = new Float64Array(200_003);
  gaussianFill(mulberry32(9), fast, 2);
  const r = mulberry32(9);
  gaussianFill(() => r(), slow, 2); // a plain function: the generic path
  t.deepEqual(fast, slow);
  // And the stream continues identically afterwards.
  const r1 = mulberry32(3);
  const r2 = mulberry32(3);
  gaussianFill(r1, new Float32Array(1000));
  for (let i = 0; i < 1000; i++) ziggurat(r2);
  t.is(r1(), r2());
});

test('ziggurat normals have the moments and tails of N(0, 1)', (t) => {
  const n = 1_000_000;
  const x = new Float64Array(n);
  gaussianFill(mulberry32(11), x);
  let mean = 0;
  for (const v of x) mean += v;
  mean /= n;
  let variance = 0;
  let beyond2 = 0;
  let beyond3 = 0;
  for (const v of x) {
    variance += (v - mean) ** 2;
    if (Math.abs(v) > 2) beyond2++;
    if (Math.abs(v) > 3) beyond3++;
  }
  variance /= n;
  t.true(Math.abs(mean) < 0.005, `mean ${mean}`);
  t.true(Math.abs(variance - 1) < 0.01, `variance ${variance}`);
  t.true(Math.abs(beyond2 / n - 0.0455) < 0.002, `P(|x| > 2) = ${beyond2 / n}`);
  t.true(Math.abs(beyond3 / n - 0.0027) < 0.0004, `P(|x| > 3) = ${beyond3 / n}`);
});

test('Random is mulberry32 with its state exposed: same sequence, and a restored state continues it', (t) => {
  const r = new Random(2026);
  const m = mulberry32(2026);
  const first = Array.from({ length: 50 }, () => r.next());
  t.deepEqual(first, Array.from({ length: 50 }, () => m()));
  const resumed = Random.fromState(r.state);
  t.deepEqual(Array.from({ length: 20 }, () => resumed.next()), Array.from({ length: 20 }, () => r.next()));
});

test('deriveSeed keeps the seeds fedpool derived before it existed (bundles, minibatches and train shards repeat)', (t) => {
  t.is(deriveSeed(3, 'layer', 1), fnv1a32('fedpool-layer:3:1'));
  t.is(deriveSeed(7, 'batch', 0), fnv1a32('fedpool-batch:7:0'));
  t.is(deriveSeed(12, 'train', 4), fnv1a32('fedpool-train:12:4'));
  t.not(deriveSeed(1, 'attack', 0), deriveSeed(1, 'attack', 1));
  t.not(deriveSeed(1, 'attack', 0), deriveSeed(1, 'layer', 0));
  // It hashes the string it describes without building it: the same value for any seed and parts.
  fc.assert(
    fc.property(
      fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.maxSafeNat(), fc.double(), fc.constant(-0)),
      fc.string(),
      fc.array(fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.double(), fc.string({ unit: 'grapheme' }))),
      (seed, purpose, parts) => deriveSeed(seed, purpose, ...parts) === fnv1a32(`fedpool-${purpose}:${[seed, ...parts].join(':')}`),
    ),
    { numRuns: 2000 },
  );
  t.is(deriveSeed(Number.MAX_SAFE_INTEGER, 'x', -Number.MAX_SAFE_INTEGER, 1e21, 0.5), fnv1a32(`fedpool-x:${Number.MAX_SAFE_INTEGER}:${-Number.MAX_SAFE_INTEGER}:1e+21:0.5`));
});

test('the sampler draws k distinct items uniformly; the shuffle is a permutation', (t) => {
  const items = Array.from({ length: 10 }, (_, i) => i);
  const u = mulberry32(5);
  const counts = new Array<number>(10).fill(0);
  for (let rep = 0; rep < 20_000; rep++) {
    const s = sampleWithoutReplacement(items, 3, u);
    t.is(new Set(s).size, 3);
    for (const i of s) counts[i] = (counts[i] ?? 0) + 1;
  }
  // Each item is drawn with probability 3/10: 6,000 of 20,000 (σ ≈ 65).
  for (const c of counts) t.true(Math.abs(c - 6000) < 400, `count ${c}`);
  t.deepEqual(sampleWithoutReplacement(items, 20, u).sort((a, b) => a - b), items, 'k past the length takes everything');
  const a = items.slice();
  shuffle(a, u);
  t.deepEqual(a.slice().sort((x, y) => x - y), items);
  t.notDeepEqual(a, items);
});
