// The server-side pipeline: weighting → optional NNM → rule → optimizer.
import test from 'ava';
import {
  RobustAggregator,
  ServerAggregator,
  ServerOptimizer,
  trimmedMean,
  weightedMean,
  nearestNeighborMixing,
  minInputs,
  mulberry32,
  type PipelineSpec,
} from '../../../shared/index.js';
import { relErr, rng, normal } from '../../helpers/arbitraries.js';

const base: PipelineSpec = { weighting: 'uniform', robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1 } };

test('samples weighting with the mean rule is the sample-weighted mean', (t) => {
  const agg = new ServerAggregator({ ...base, weighting: 'samples' });
  const cs = [
    { update: Float32Array.of(1, 0), samples: 30 },
    { update: Float32Array.of(0, 1), samples: 10 },
  ];
  const { aggregate } = agg.aggregate(cs);
  t.deepEqual(Array.from(aggregate), [0.75, 0.25]);
  t.throws(() => agg.aggregate([{ update: Float32Array.of(1, 0) }]), { instanceOf: RangeError, message: /sample count/ });
});

test('robust rules see the weighted (scaled) updates: nnm + trimmed-mean equals the rules composed by hand', (t) => {
  const r = rng(4);
  const ups = Array.from({ length: 9 }, () => Float32Array.from({ length: 6 }, () => normal(r)));
  const samples = [1, 2, 3, 4, 5, 6, 7, 8, 9];
  const total = samples.reduce((a, b) => a + b, 0);
  const agg = new ServerAggregator({ ...base, weighting: 'samples', robust: { mix: 'nnm', rule: 'trimmed-mean', f: 2 } });
  const got = agg.aggregate(ups.map((update, i) => ({ update, samples: samples[i] }))).aggregate;
  const scaled = ups.map((u, i) => u.map((v) => v * ((9 * samples[i]) / total)));
  t.true(relErr(got, trimmedMean(nearestNeighborMixing(scaled, 2), 2)) <= 1e-6);
});

test('nnm + mean and nnm + krum without materialising the mixed vectors agree with composing the public rules', (t) => {
  const r = rng(12);
  const ups = Array.from({ length: 11 }, () => Float32Array.from({ length: 40 }, () => normal(r)));
  ups[10] = ups[10].map((v) => v * 50);
  const mixed = nearestNeighborMixing(ups, 3);
  const viaMean = new RobustAggregator({ mix: 'nnm', rule: 'mean', f: 3 }).aggregate(ups);
  t.true(relErr(viaMean, weightedMean(mixed)) <= 1e-5);
  const viaKrum = new RobustAggregator({ mix: 'nnm', rule: 'krum', f: 3 }).aggregate(ups);
  t.true(mixed.some((m) => relErr(viaKrum, m) <= 1e-5), 'nnm+krum must return one of the mixed vectors');
});

test('a round with too few updates for the rule is one clear RangeError', (t) => {
  t.is(minInputs('krum', 'none', 2), 7);
  t.is(minInputs('median', 'nnm', 3), 7);
  const agg = new ServerAggregator({ ...base, robust: { mix: 'nnm', rule: 'krum', f: 2 } });
  const cs = Array.from({ length: 6 }, () => ({ update: new Float32Array(3) }));
  t.throws(() => agg.step(new Float32Array(3), cs), { instanceOf: RangeError, message: 'robust nnm+krum: cannot tolerate f = 2 with n = 6 updates (needs n ≥ 7)' });
  t.throws(() => new RobustAggregator({ mix: 'none', rule: 'bogus' as never, f: 0 }), { instanceOf: RangeError, message: /unknown rule/ });
});

test('cclip starts at 0 and then clips around the previous aggregate', (t) => {
  const agg = new RobustAggregator({ mix: 'none', rule: 'cclip', f: 0, tau: 1 });
  const u = [Float32Array.of(10), Float32Array.of(10)];
  t.deepEqual(Array.from(agg.aggregate(u)), [1]); // from 0, each pull clipped to τ = 1
  t.deepEqual(Array.from(agg.aggregate(u)), [2]); // from the previous aggregate
  t.deepEqual(Array.from(agg.clippingCenter ?? []), [2]);
});

test('server optimizers: sgd (with momentum) and adam', (t) => {
  const sgd = new ServerOptimizer({ optimizer: 'sgd', lr: 0.5, momentum: 0.5 });
  let x: Float32Array = Float32Array.of(0);
  x = sgd.step(x, Float32Array.of(2)); // buf 2 → x = 1
  t.deepEqual(Array.from(x), [1]);
  x = sgd.step(x, Float32Array.of(2)); // buf 3 → x = 2.5
  t.deepEqual(Array.from(x), [2.5]);
  const adam = new ServerOptimizer({ optimizer: 'adam', lr: 0.1 });
  const y = adam.step(Float32Array.of(1, 1), Float32Array.of(5, -0.001));
  // First Adam step moves every coordinate by ≈ lr in the update's direction, whatever its size.
  t.true(Math.abs(y[0] - 1.1) < 1e-5 && Math.abs(y[1] - 0.9) < 1e-4, `${y[0]}, ${y[1]}`);
  t.throws(() => new ServerOptimizer({ optimizer: 'sgd', lr: -1 }), { instanceOf: RangeError });
  t.throws(() => new ServerOptimizer({ optimizer: 'sgd', lr: 1, momentum: 1 }), { instanceOf: RangeError });
  t.throws(() => sgd.step(Float32Array.of(1, 2), Float32Array.of(1)), { instanceOf: RangeError, message: /parameters/ });
});

/** FedAdam written out in float64 (g = −Δ, bias-corrected moments); the model is stored in float32 after each step. */
function referenceAdam(lr: number, b1: number, b2: number, eps: number, d: number): (x: Float32Array, delta: Float32Array) => Float32Array {
  const m = new Float64Array(d);
  const v = new Float64Array(d);
  let t = 0;
  return (x, delta) => {
    t++;
    const out = new Float32Array(d);
    for (let j = 0; j < d; j++) {
      const g = -delta[j];
      m[j] = b1 * m[j] + (1 - b1) * g;
      v[j] = b2 * v[j] + (1 - b2) * g * g;
      out[j] = x[j] - (lr * (m[j] / (1 - b1 ** t))) / (Math.sqrt(v[j] / (1 - b2 ** t)) + eps);
    }
    return out;
  };
}

/** SGD with heavy-ball momentum in float64: buf = μ·buf + Δ, x ← x + lr·buf. */
function referenceSgd(lr: number, mu: number, d: number): (x: Float32Array, delta: Float32Array) => Float32Array {
  const buf = new Float64Array(d);
  return (x, delta) => {
    const out = new Float32Array(d);
    for (let j = 0; j < d; j++) {
      buf[j] = mu * buf[j] + delta[j];
      out[j] = x[j] + lr * buf[j];
    }
    return out;
  };
}

test('server optimizers over 20 steps match float64 Adam (bias corrections included) and momentum SGD at every step', (t) => {
  const d = 8;
  const cases: Array<{ name: string; opt: ServerOptimizer; ref: (x: Float32Array, delta: Float32Array) => Float32Array }> = [
    { name: 'adam defaults', opt: new ServerOptimizer({ optimizer: 'adam', lr: 0.1 }), ref: referenceAdam(0.1, 0.9, 0.999, 1e-8, d) },
    { name: 'adam b1 0.5 b2 0.9 eps 1e-3', opt: new ServerOptimizer({ optimizer: 'adam', lr: 0.05, beta1: 0.5, beta2: 0.9, eps: 1e-3 }), ref: referenceAdam(0.05, 0.5, 0.9, 1e-3, d) },
    { name: 'adam b1 0 b2 0.99', opt: new ServerOptimizer({ optimizer: 'adam', lr: 0.01, beta1: 0, beta2: 0.99, eps: 1e-6 }), ref: referenceAdam(0.01, 0, 0.99, 1e-6, d) },
    { name: 'sgd momentum 0.9', opt: new ServerOptimizer({ optimizer: 'sgd', lr: 0.3, momentum: 0.9 }), ref: referenceSgd(0.3, 0.9, d) },
  ];
  for (const [k, { name, opt, ref }] of cases.entries()) {
    const r = mulberry32(100 + k);
    // Deltas of mixed scales, so the second moment (and its bias correction) differs per coordinate.
    const scales = Float64Array.from({ length: d }, (_, j) => 10 ** (j % 4 - 2));
    let x: Float32Array = Float32Array.from({ length: d }, () => normal(r));
    for (let step = 1; step <= 20; step++) {
      const delta = Float32Array.from(scales, (s) => s * (normal(r) + 0.3));
      const got = opt.step(x, delta);
      const want = ref(x, delta);
      t.true(relErr(got, want) <= 1e-6, `${name}, step ${step}: ${String(got)} vs ${String(want)}`);
      x = want; // both continue from the same float32 model
    }
    t.is(opt.steps, 20);
  }
});

test('inputs are never mutated by a pipeline step', (t) => {
  const ups = [Float32Array.of(1, 2), Float32Array.of(3, 4), Float32Array.of(5, 6)];
  const model = Float32Array.of(0, 0);
  const agg = new ServerAggregator({ ...base, weighting: 'fedau', numClients: 5, robust: { mix: 'nnm', rule: 'median', f: 1 } });
  agg.step(model, ups.map((update, client) => ({ update, client })));
  t.deepEqual(ups.map((u) => Array.from(u)), [[1, 2], [3, 4], [5, 6]]);
  t.deepEqual(Array.from(model), [0, 0]);
});

test('a server step size scales what the optimizer applies, not the centre cclip carries to the next round', (t) => {
  const agg = new ServerAggregator({ ...base, robust: { mix: 'none', rule: 'cclip', f: 0, tau: 100 } });
  const cs = [{ update: Float32Array.of(10) }, { update: Float32Array.of(10) }];
  const r = agg.step(Float32Array.of(0), cs, undefined, 0.5);
  t.deepEqual([...r.model], [5], 'the model moved by γ·aggregate');
  t.deepEqual([...(agg.snapshot().robust.center ?? [])], [10], 'the centre is the unscaled aggregate');
});
