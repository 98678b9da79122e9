import test from 'ava';
import { parseAggregationConfig, ServerAggregator } from '../../../shared/index.js';

test('defaults: sample-weighted FedAvg (mean rule, sgd lr 1)', (t) => {
  const spec = parseAggregationConfig({}, { numClients: 20 });
  t.deepEqual(spec, {
    weighting: 'samples',
    fedauCutoff: null,
    numClients: 20,
    robust: { mix: 'none', rule: 'mean', f: 0 },
    server: { optimizer: 'sgd', lr: 1, momentum: 0 },
  });
  t.truthy(new ServerAggregator(spec));
});

test('the issue’s full form parses into a working pipeline', (t) => {
  const spec = parseAggregationConfig(
    { weighting: 'fedau', fedauCutoff: 50, robust: { mix: 'nnm', rule: 'trimmed-mean', f: 2 }, server: { optimizer: 'adam', lr: 0.01 } },
    { numClients: 10, perStep: 10 },
  );
  t.is(spec.server.optimizer, 'adam');
  const agg = new ServerAggregator(spec);
  t.is(agg.fedau?.cutoff, 50);
});

test('bad configs are one line naming the field', (t) => {
  const err = (input: unknown, perStep?: number) => t.throws(() => parseAggregationConfig(input, { numClients: 10, perStep }), { instanceOf: RangeError });
  t.regex(err({ weighting: 'votes' })?.message ?? '', /^aggregation\.weighting: /);
  t.regex(err({ robust: { rule: 'krum', f: -1 } })?.message ?? '', /^aggregation\.robust\.f: /);
  t.regex(err({ robust: { rule: 'krum' }, extra: 1 })?.message ?? '', /^aggregation: .*extra/);
  t.regex(err({ server: { optimizer: 'sgd', momentum: 1 } })?.message ?? '', /^aggregation\.server\.momentum: /);
  t.is(err({ robust: { mix: 'nnm', rule: 'krum', f: 2 } }, 6)?.message, 'aggregation.robust: nnm + krum with f = 2 needs at least 7 updates per step, but a step aggregates 6');
});
