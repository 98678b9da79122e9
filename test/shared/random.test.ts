// shared/random.ts: the ziggurat normals and mulberry32's inlined fast path.
import test from 'ava';
import { gaussianFill, mulberry32, ziggurat } from '../../shared/random.js';

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
