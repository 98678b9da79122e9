// snapshot() / restore() of every stateful aggregation class (issue 12, exact checkpoints): a snapshot taken after
// any prefix of a random update sequence, restored into a fresh instance, continues bit for bit like the original;
// restore refuses malformed snapshots with a RangeError and changes nothing.
import test from 'ava';
import fc from 'fast-check';
import { FedAUEstimator } from '../../../shared/aggregation/fedau.js';
import { FedBuffBuffer, type FedBuffSnapshot } from '../../../shared/aggregation/fedbuff.js';
import { ServerAggregator, type PipelineSpec, type ServerAggregatorSnapshot } from '../../../shared/aggregation/pipeline.js';
import { RobustAggregator, type RobustSpec } from '../../../shared/aggregation/robust.js';
import { ServerOptimizer, type ServerOptimizerSpec } from '../../../shared/aggregation/server-optimizer.js';

/** Same bits (so −0 ≠ 0 and NaN payloads count). */
function sameBits(a: Float32Array | Float64Array, b: Float32Array | Float64Array): boolean {
  if (a.constructor !== b.constructor || a.length !== b.length) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.every((v, i) => v === y[i]);
}

const D = 5;
const vec = (d = D) => fc.float32Array({ minLength: d, maxLength: d, noNaN: true, noDefaultInfinity: true, min: -4, max: 4 });
/** A sequence of rounds, each a list of n updates, and the round after which the snapshot is taken. */
const rounds = (n: fc.Arbitrary<number>) =>
  fc.array(n.chain((k) => fc.array(vec(), { minLength: k, maxLength: k })), { minLength: 1, maxLength: 12 }).chain((rs) => fc.tuple(fc.constant(rs), fc.nat({ max: rs.length })));

const optimizers: ServerOptimizerSpec[] = [
  { optimizer: 'sgd', lr: 1 },
  { optimizer: 'sgd', lr: 0.7, momentum: 0.9 },
  { optimizer: 'adam', lr: 0.05 },
  { optimizer: 'adam', lr: 0.01, beta1: 0.5, beta2: 0.9, eps: 1e-6 },
];

for (const spec of optimizers) {
  test(`ServerOptimizer ${JSON.stringify(spec)}: snapshot → restore into a fresh one continues bit for bit`, (t) => {
    fc.assert(
      fc.property(fc.array(vec(), { minLength: 1, maxLength: 20 }), fc.nat(), (deltas, cut) => {
        const k = cut % (deltas.length + 1);
        const a = new ServerOptimizer(spec);
        let x: Float32Array = new Float32Array(D).fill(0.25);
        for (const d of deltas.slice(0, k)) x = a.step(x, d);
        const b = new ServerOptimizer(spec);
        b.restore(structuredClone(a.snapshot()), D);
        let xa = x;
        let xb = x;
        for (const d of deltas.slice(k)) {
          xa = a.step(xa, d);
          xb = b.step(xb, d);
          if (!sameBits(xa, xb)) return false;
        }
        return a.steps === b.steps && JSON.stringify(a.snapshot(), replacer) === JSON.stringify(b.snapshot(), replacer);
      }),
    );
    t.pass();
  });
}

/** JSON.stringify replacer that shows typed arrays as number lists. */
function replacer(_k: string, v: unknown): unknown {
  return v instanceof Float32Array || v instanceof Float64Array ? Array.from(v) : v;
}

test('ServerOptimizer.restore: the snapshot is copied, not aliased; without the moments the next step differs', (t) => {
  const spec: ServerOptimizerSpec = { optimizer: 'adam', lr: 0.1 };
  const a = new ServerOptimizer(spec);
  const x = a.step(new Float32Array(D), Float32Array.of(1, 2, 3, 4, 5));
  const s = a.snapshot();
  const b = new ServerOptimizer(spec);
  b.restore(s);
  s.first!.fill(99);
  const d = Float32Array.of(-1, 0.5, 2, 0, 1);
  const ya = a.step(x, d);
  t.true(sameBits(ya, b.step(x, d)));
  // A fresh optimizer (what a checkpoint without the moments resumed with) takes another step: the tests can fail.
  t.false(sameBits(new ServerOptimizer(spec).step(x, d), ya));
});

test('ServerOptimizer.restore refuses malformed snapshots and then is unchanged', (t) => {
  const adam = new ServerOptimizer({ optimizer: 'adam', lr: 0.1 });
  adam.step(new Float32Array(3), Float32Array.of(1, 2, 3));
  const good = adam.snapshot();
  const before = JSON.stringify(adam.snapshot(), replacer);
  const bad: Array<[string, unknown]> = [
    ['wrong kind', { ...good, optimizer: 'sgd' }],
    ['negative steps', { ...good, steps: -1 }],
    ['fractional steps', { ...good, steps: 1.5 }],
    ['moments missing after steps', { ...good, first: null, second: null }],
    ['one moment only', { ...good, second: null }],
    ['moments before any step', { ...good, steps: 0 }],
    ['float32 moment', { ...good, first: new Float32Array(3) }],
    ['number-array moment', { ...good, first: [0, 0, 0] }],
    ['unequal moments', { ...good, second: new Float64Array(2) }],
    ['negative second moment', { ...good, second: Float64Array.of(1, -1, 1) }],
    ['non-finite moment', { ...good, first: Float64Array.of(1, NaN, 1) }],
    ['not an object', null],
  ];
  for (const [what, s] of bad) t.throws(() => adam.restore(s as typeof good), { instanceOf: RangeError }, what);
  t.throws(() => adam.restore(good, 4), { instanceOf: RangeError, message: /model has 4/ });
  t.is(JSON.stringify(adam.snapshot(), replacer), before);
  const plain = new ServerOptimizer({ optimizer: 'sgd', lr: 1 });
  t.throws(() => plain.restore({ optimizer: 'sgd', steps: 1, first: new Float64Array(3), second: null }), { instanceOf: RangeError, message: /without momentum/ });
  const sgd = new ServerOptimizer({ optimizer: 'sgd', lr: 1, momentum: 0.5 });
  t.throws(() => sgd.restore({ optimizer: 'sgd', steps: 2, first: new Float64Array(3), second: new Float64Array(3) }), { instanceOf: RangeError, message: /second moment/ });
  t.throws(() => sgd.restore({ optimizer: 'sgd', steps: 2, first: null, second: null }), { instanceOf: RangeError, message: /missing/ });
});

const robustSpecs: RobustSpec[] = [
  { mix: 'none', rule: 'cclip', f: 0, tau: 0.5 },
  { mix: 'nnm', rule: 'cclip', f: 1, tau: 0.3, iters: 2 },
  { mix: 'nnm', rule: 'trimmed-mean', f: 1 },
];

for (const spec of robustSpecs) {
  test(`RobustAggregator ${spec.mix}+${spec.rule}: snapshot → restore continues bit for bit`, (t) => {
    fc.assert(
      fc.property(rounds(fc.integer({ min: 3, max: 6 })), ([rs, k]) => {
        const a = new RobustAggregator(spec);
        for (const r of rs.slice(0, k)) a.aggregate(r);
        const b = new RobustAggregator(spec);
        b.restore(structuredClone(a.snapshot()), D);
        return rs.slice(k).every((r) => sameBits(a.aggregate(r), b.aggregate(r)));
      }),
    );
    t.pass();
  });
}

test('RobustAggregator.restore refuses malformed snapshots', (t) => {
  const a = new RobustAggregator({ mix: 'none', rule: 'cclip', f: 0 });
  a.aggregate([Float32Array.of(1, 2), Float32Array.of(3, 4)]);
  const good = a.snapshot();
  t.throws(() => a.restore({ ...good, rule: 'mean' }), { instanceOf: RangeError, message: /rule/ });
  t.throws(() => a.restore(good, 3), { instanceOf: RangeError, message: /model has 3/ });
  t.throws(() => a.restore({ ...good, center: Float32Array.of(1, Infinity) }), { instanceOf: RangeError, message: /non-finite/ });
  t.throws(() => a.restore({ ...good, center: [1, 2] as unknown as Float32Array }), { instanceOf: RangeError });
  t.deepEqual(Array.from(a.clippingCenter ?? []), Array.from(good.center ?? [0]));
  const median = new RobustAggregator({ mix: 'none', rule: 'median', f: 0 });
  t.throws(() => median.restore({ rule: 'median', center: Float32Array.of(1, 2) }), { instanceOf: RangeError, message: /only cclip/ });
});

test('FedAUEstimator: instance restore continues like the original, rounds included; mismatched N or cutoff is refused', (t) => {
  fc.assert(
    fc.property(fc.array(fc.uniqueArray(fc.nat({ max: 5 })), { minLength: 1, maxLength: 30 }), fc.nat(), fc.constantFrom(Infinity, 1, 3), (rs, cut, K) => {
      const k = cut % (rs.length + 1);
      const a = new FedAUEstimator(6, K);
      for (const r of rs.slice(0, k)) a.observeRound(r);
      const b = new FedAUEstimator(6, K);
      b.restore(JSON.parse(JSON.stringify(a.snapshot())));
      for (const r of rs.slice(k)) {
        a.observeRound(r);
        b.observeRound(r);
      }
      return sameBits(a.weights([0, 1, 2, 3, 4, 5]), b.weights([0, 1, 2, 3, 4, 5])) && a.roundsObserved === b.roundsObserved;
    }),
  );
  const e = new FedAUEstimator(3, 4);
  e.observeRound([1]);
  t.throws(() => new FedAUEstimator(4, 4).restore(e.snapshot()), { instanceOf: RangeError, message: /3 clients/ });
  t.throws(() => new FedAUEstimator(3).restore(e.snapshot()), { instanceOf: RangeError, message: /cutoff/ });
  t.throws(() => new FedAUEstimator(3, 4).restore({ ...e.snapshot(), rounds: -2 }), { instanceOf: RangeError, message: /rounds/ });
  // A snapshot from before `rounds` was kept still loads (rounds restart at 0; weights do not depend on them).
  const { rounds: _r, ...old } = e.snapshot();
  const f = new FedAUEstimator(3, 4);
  f.restore(old);
  t.is(f.roundsObserved, 0);
  t.deepEqual(Array.from(f.weights([0, 1, 2])), Array.from(e.weights([0, 1, 2])));
});

for (const rule of [null, 'nnm+cclip'] as const) {
  test(`FedBuffBuffer (${rule ?? 'plain mean'}): snapshot mid-buffer → restore continues bit for bit`, (t) => {
    const arrival = fc.tuple(vec(), fc.nat({ max: 4 }), fc.double({ min: 0, max: 3, noNaN: true }));
    fc.assert(
      fc.property(fc.array(arrival, { minLength: 1, maxLength: 25 }), fc.nat(), (arrivals, cut) => {
        const k = cut % (arrivals.length + 1);
        // The robust rule is stateful (cclip's center): each buffer gets its own aggregator, restored alongside.
        const make = (agg: RobustAggregator) =>
          new FedBuffBuffer({ size: 3, staleness: { kind: 'poly', exponent: 0.5 }, maxStaleness: 3, ...(rule === null ? {} : { rule: (u: Float32Array[]) => agg.aggregate(u) }) });
        const ra = new RobustAggregator({ mix: 'nnm', rule: 'cclip', f: 1, tau: 0.5 });
        const a = make(ra);
        const outA: Float32Array[] = [];
        for (const [u, tau, w] of arrivals.slice(0, k)) a.add(u, tau, w);
        const rb = new RobustAggregator({ mix: 'nnm', rule: 'cclip', f: 1, tau: 0.5 });
        rb.restore(ra.snapshot());
        const b = make(rb);
        b.restore(structuredClone(a.snapshot()));
        const outB: Float32Array[] = [];
        for (const [u, tau, w] of arrivals.slice(k)) {
          const x = a.add(u, tau, w);
          const y = b.add(u, tau, w);
          if (x.kind !== y.kind) return false;
          if (x.kind === 'ready' && y.kind === 'ready') {
            outA.push(x.aggregate);
            outB.push(y.aggregate);
            if (x.stalenessMean !== y.stalenessMean) return false;
          }
        }
        // nnm with f = 1 needs 3 updates: a shorter partial buffer is not flushed (both would refuse it alike).
        const flushable = rule === null || a.count >= 3;
        const fa = flushable ? a.flush() : null;
        const fb = flushable ? b.flush() : null;
        if (a.count !== b.count) return false;
        if ((fa === null) !== (fb === null)) return false;
        if (fa !== null && fb !== null) {
          outA.push(fa.aggregate);
          outB.push(fb.aggregate);
        }
        return outA.every((v, i) => sameBits(v, outB[i]!));
      }),
    );
    t.pass();
  });
}

test('FedBuffBuffer.restore refuses malformed snapshots and then is unchanged', (t) => {
  const b = new FedBuffBuffer({ size: 3, maxStaleness: 2 });
  b.add(Float32Array.of(1, 2), 1);
  const good = b.snapshot();
  const bad: Array<[string, FedBuffSnapshot]> = [
    ['other size', { ...good, size: 4 }],
    ['a full buffer', { ...good, updates: [Float32Array.of(1, 2), Float32Array.of(1, 2), Float32Array.of(1, 2)], factors: [1, 1, 1], taus: [0, 0, 0] }],
    ['factor count', { ...good, factors: [] }],
    ['update length', { ...good, updates: [Float32Array.of(1, 2, 3)] }],
    ['negative factor', { ...good, factors: [-1] }],
    ['staleness past maxStaleness', { ...good, taus: [3] }],
    ['fractional staleness', { ...good, taus: [0.5] }],
    ['not a Float32Array', { ...good, updates: [[1, 2] as unknown as Float32Array] }],
    ['no dim with updates', { ...good, dim: -1 }],
  ];
  for (const [what, s] of bad) t.throws(() => b.restore(s), { instanceOf: RangeError }, what);
  t.is(b.count, 1);
  t.deepEqual(JSON.stringify(b.snapshot(), replacer), JSON.stringify(good, replacer));
});

const pipelines: PipelineSpec[] = [
  { weighting: 'fedau', numClients: 6, robust: { mix: 'nnm', rule: 'cclip', f: 1, tau: 0.4 }, server: { optimizer: 'adam', lr: 0.05 } },
  { weighting: 'samples', robust: { mix: 'nnm', rule: 'cclip', f: 1, tau: 1, iters: 3 }, server: { optimizer: 'sgd', lr: 0.8, momentum: 0.9 } },
  { weighting: 'uniform', robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'adam', lr: 0.01 } },
];

for (const spec of pipelines) {
  test(`ServerAggregator ${spec.weighting} ${spec.robust.mix}+${spec.robust.rule} ${spec.server.optimizer}: snapshot → restore continues bit for bit`, (t) => {
    const contribution = fc.record({ update: vec(), samples: fc.integer({ min: 1, max: 50 }), client: fc.nat({ max: 5 }) });
    const round = fc.uniqueArray(contribution, { minLength: 3, maxLength: 6, selector: (c) => c.client });
    fc.assert(
      fc.property(fc.array(round, { minLength: 1, maxLength: 10 }), fc.nat(), (rs, cut) => {
        const k = cut % (rs.length + 1);
        const a = new ServerAggregator(spec);
        let x: Float32Array = new Float32Array(D).fill(0.5);
        for (const r of rs.slice(0, k)) x = a.step(x, r).model;
        const b = new ServerAggregator(spec);
        b.restore(structuredClone(a.snapshot()), D);
        let xa = x;
        let xb = x;
        for (const r of rs.slice(k)) {
          xa = a.stepModel(xa, r);
          xb = b.stepModel(xb, r);
          if (!sameBits(xa, xb)) return false;
        }
        return true;
      }),
    );
    t.pass();
  });
}

test('ServerAggregator.restore checks every part before loading any: a bad one leaves it unchanged', (t) => {
  const spec = pipelines[0]!;
  const a = new ServerAggregator(spec);
  const r = [0, 1, 2].map((c) => ({ update: Float32Array.of(c, 1, 2, 3, 4), client: c }));
  a.step(new Float32Array(D), r);
  const good = a.snapshot();
  const other = new ServerAggregator(spec);
  other.step(new Float32Array(D), r);
  other.step(new Float32Array(D), r);
  const before = JSON.stringify(other.snapshot(), replacer);
  const bad: Array<[string, ServerAggregatorSnapshot]> = [
    ['bad optimizer (after good FedAU and center)', { ...good, optimizer: { ...good.optimizer, first: new Float64Array(2) } }],
    ['bad center (after good FedAU)', { ...good, robust: { ...good.robust, center: new Float32Array(2) } }],
    ['bad FedAU', { ...good, fedau: { ...good.fedau!, gap: [1] } }],
    ['no FedAU under fedau weighting', { ...good, fedau: null }],
  ];
  for (const [what, s] of bad) t.throws(() => other.restore(s, D), { instanceOf: RangeError }, what);
  t.is(JSON.stringify(other.snapshot(), replacer), before);
  t.throws(() => new ServerAggregator(pipelines[1]!).restore(good), { instanceOf: RangeError, message: /FedAU/ });
});
