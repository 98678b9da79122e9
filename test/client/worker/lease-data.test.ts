// The lease runner's data helpers: central preference pairs as training data, and the label-flipping attack.
import test from 'ava';
import { centralPairsData, flipLabels } from '../../../client/training/lease-data.js';
import { DatasetError } from '../../../client/training/datasets.js';
import type { LocalTrainData } from '../../../client/training/local-train.js';
import { parseManifest, type Manifest } from '../../../shared/model/manifest.js';
import { Tensor } from '../../../shared/protocol/index.js';

const classes = (n: number): Manifest =>
  parseManifest({ format: 'fedpool-model', version: 1, kind: 'classifier', input: { kind: 'features', dim: 2 }, output: { kind: 'classes', classes: n }, hidden: [4], seed: 1 }, 'test');
const reward: Manifest = parseManifest(
  { format: 'fedpool-model', version: 1, kind: 'reward', input: { kind: 'features', dim: 2 }, output: { kind: 'reward' }, hidden: [4], seed: 1 },
  'test',
);

test('centralPairsData: float32 chosen/rejected tensors become pairs data, not copied', (t) => {
  const chosen = Float32Array.of(1, 2, 3, 4);
  const rejected = Float32Array.of(5, 6, 7, 8);
  const d = centralPairsData(Tensor.float32(chosen, [2, 2]), Tensor.float32(rejected, [2, 2]));
  t.deepEqual(d, { kind: 'pairs', chosen: Float32Array.of(1, 2, 3, 4), rejected: Float32Array.of(5, 6, 7, 8) });
  if (d.kind !== 'pairs') return;
  t.is(d.chosen, chosen);
  t.is(d.rejected, rejected);
});

test('centralPairsData: non-float32 tensors are refused with a DatasetError', (t) => {
  t.throws(() => centralPairsData(Tensor.int32([1, 2]), Tensor.float32([1, 2])), { instanceOf: DatasetError, message: /chosen and rejected must be float32/ });
  t.throws(() => centralPairsData(Tensor.float32([1, 2]), Tensor.uint8([1, 2])), { instanceOf: DatasetError });
});

test('flipLabels: class y becomes C − 1 − y; the input is left alone', (t) => {
  const labels = Int32Array.of(0, 1, 2, 3, 4, 2);
  const x = Float32Array.from({ length: 12 }, (_, i) => i);
  const data: LocalTrainData = { kind: 'classify', x, labels };
  const out = flipLabels(data, classes(5));
  if (out.kind !== 'classify') return t.fail();
  t.true(out.labels instanceof Int32Array);
  t.deepEqual(Array.from(out.labels), [4, 3, 2, 1, 0, 2]);
  t.deepEqual(Array.from(labels), [0, 1, 2, 3, 4, 2], 'input labels unmutated');
  t.not(out.labels, labels);
  t.deepEqual(Array.from(out.x), Array.from(x), 'rows unchanged');
  t.deepEqual(Array.from(x), Array.from({ length: 12 }, (_, i) => i));
  // Two classes: a plain swap; flipping twice is the identity.
  const two = flipLabels({ kind: 'classify', x, labels: Int32Array.of(0, 1, 1, 0) }, classes(2));
  if (two.kind !== 'classify') return t.fail();
  t.deepEqual(Array.from(two.labels), [1, 0, 0, 1]);
  const back = flipLabels(flipLabels(data, classes(5)), classes(5));
  if (back.kind !== 'classify') return t.fail();
  t.deepEqual(Array.from(back.labels), Array.from(labels));
});

test('flipLabels: pairs train with chosen and rejected swapped; the input is left alone', (t) => {
  const chosen = Float32Array.of(1, 2);
  const rejected = Float32Array.of(3, 4);
  const data: LocalTrainData = { kind: 'pairs', chosen, rejected };
  const out = flipLabels(data, reward);
  t.deepEqual(out, { kind: 'pairs', chosen: Float32Array.of(3, 4), rejected: Float32Array.of(1, 2) });
  t.not(out, data);
  t.is(data.chosen, chosen, 'input object unmutated');
  t.is(data.rejected, rejected);
  t.deepEqual(Array.from(chosen), [1, 2]);
  t.deepEqual(Array.from(rejected), [3, 4]);
});
