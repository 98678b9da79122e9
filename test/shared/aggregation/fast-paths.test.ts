// The allocation-free paths the simulator uses must be the documented equivalents of the general ones.
import test from 'ava';
import fc from 'fast-check';
import { FedAUEstimator } from '../../../shared/aggregation/fedau.js';
import { ServerAggregator, type Contribution, type PipelineSpec } from '../../../shared/aggregation/pipeline.js';
import { createParticipation } from '../../../shared/data/participation.js';

const specs: PipelineSpec[] = [
  { weighting: 'fedau', numClients: 6, robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1 } },
  { weighting: 'samples', robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 0.5, momentum: 0.9 } },
  { weighting: 'known', numClients: 6, rates: [0.2, 0.5, 1, 0.3, 0.9, 0.1], robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'adam', lr: 0.1 } },
  { weighting: 'uniform', robust: { mix: 'nnm', rule: 'trimmed-mean', f: 1 }, server: { optimizer: 'sgd', lr: 1 } },
];

const round = fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { minLength: 3, maxLength: 6 }).chain((clients) =>
  fc.tuple(fc.constant(clients), fc.array(fc.float({ min: -10, max: 10, noNaN: true }), { minLength: clients.length * 4, maxLength: clients.length * 4 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: clients.length, maxLength: clients.length })),
);

test('stepModel gives exactly step().model, round after round, for every weighting and with robust rules', (t) => {
  fc.assert(
    fc.property(fc.array(round, { minLength: 1, maxLength: 8 }), (rounds) => {
      for (const spec of specs) {
        const a = new ServerAggregator(spec);
        const b = new ServerAggregator(spec);
        let xa: Float32Array = new Float32Array(4);
        let xb: Float32Array = new Float32Array(4);
        for (const [clients, values, samples] of rounds) {
          const contributions: Contribution[] = clients.map((client, i) => ({ client, samples: samples[i], update: Float32Array.from(values.slice(i * 4, i * 4 + 4)) }));
          const copies = contributions.map((c) => Float32Array.from(c.update));
          xa = a.step(xa, contributions).model;
          xb = b.stepModel(xb, contributions);
          t.deepEqual(xb, xa);
          contributions.forEach((c, i) => t.deepEqual(c.update, copies[i])); // inputs untouched
        }
        if (a.fedau !== null) t.deepEqual(b.fedau?.snapshot(), a.fedau.snapshot());
      }
    }),
    { numRuns: 60 },
  );
});

test('stepModel refuses what step refuses', (t) => {
  const agg = new ServerAggregator(specs[0]!);
  const bad: Contribution[] = [{ client: 0, update: new Float32Array(4) }, { client: 1, update: new Float32Array(3) }];
  const e1 = t.throws(() => new ServerAggregator(specs[0]!).step(new Float32Array(4), bad), { instanceOf: RangeError });
  const e2 = t.throws(() => agg.stepModel(new Float32Array(4), bad), { instanceOf: RangeError });
  t.is(e2?.message, e1?.message);
});

test('observeClients(list, count) equals observeRound of the first count ids; a bad id changes nothing', (t) => {
  const a = new FedAUEstimator(5, 3);
  const b = new FedAUEstimator(5, 3);
  for (const r of [[0, 2], [], [1, 2, 4], [3], [0, 1, 2, 3, 4]]) {
    a.observeRound(r);
    b.observeClients(Int32Array.from([...r, 9, 9]), r.length); // trailing ids beyond count are ignored
  }
  t.deepEqual(b.snapshot(), a.snapshot());
  const before = b.snapshot();
  t.throws(() => b.observeClients([1, 7], 2), { instanceOf: RangeError });
  t.deepEqual(b.snapshot(), before);
});

test('participation.availability() is the same state available() copies, without a copy', (t) => {
  for (const spec of [{ kind: 'bernoulli', p: 0.4 }, { kind: 'markov', p: 0.3, q: 0.2 }, { kind: 'cyclic', p: 0.5, period: 6 }] as const) {
    const a = createParticipation(spec, 20, 7);
    const b = createParticipation(spec, 20, 7);
    for (let r = 0; r < 30; r++) t.deepEqual(Array.from(b.availability!(r)), Array.from(a.available(r)));
  }
});
