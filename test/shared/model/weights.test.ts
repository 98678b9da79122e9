// Flat weights: the order the coordinator and workers share, round trips, and length checks.
import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../../client/backends.js';
import { parseManifest, type Manifest } from '../../../shared/model/manifest.js';
import { buildModel } from '../../../shared/model/tf-model.js';
import { getFlatWeights, parameterCount, setFlatWeights } from '../../../shared/model/weights.js';

const manifest: Manifest = parseManifest(
  { format: 'fedpool-model', version: 1, kind: 'classifier', input: { kind: 'features', dim: 5 }, output: { kind: 'classes', classes: 3 }, hidden: [4], seed: 7 },
  'test',
);

test.before(async () => {
  await selectBackend('cpu');
});

test('parameterCount and order: kernel then bias, layer by layer, as model.getWeights()', (t) => {
  const model = buildModel(manifest);
  t.is(parameterCount(model), 5 * 4 + 4 + 4 * 3 + 3);
  const flat = getFlatWeights(model);
  const expected = model.getWeights().flatMap((w) => Array.from(w.dataSync()));
  t.deepEqual(Array.from(flat), expected);
  model.dispose();
});

test('set then get round-trips exactly, and changes predictions', (t) => {
  const model = buildModel(manifest);
  const before = tf.tidy(() => (model.predict(tf.ones([1, 5])) as tf.Tensor).dataSync().slice());
  const flat = Float32Array.from({ length: parameterCount(model) }, (_, i) => Math.sin(i) * 0.3);
  const tensors = tf.memory().numTensors;
  setFlatWeights(model, flat);
  t.is(tf.memory().numTensors, tensors, 'no tensor leaked');
  t.deepEqual(getFlatWeights(model), flat);
  const after = tf.tidy(() => (model.predict(tf.ones([1, 5])) as tf.Tensor).dataSync().slice());
  t.notDeepEqual(Array.from(after), Array.from(before));
  flat[0] = 99; // the model does not keep the caller's array
  t.not(getFlatWeights(model)[0], 99);
  model.dispose();
});

test('a second model with the same manifest takes the first one\'s flat weights', (t) => {
  const a = buildModel(manifest);
  const b = buildModel({ ...manifest, seed: 8 });
  t.notDeepEqual(getFlatWeights(a), getFlatWeights(b));
  setFlatWeights(b, getFlatWeights(a));
  t.deepEqual(getFlatWeights(b), getFlatWeights(a));
  a.dispose();
  b.dispose();
});

test('wrong length or type: one-line RangeError, weights unchanged', (t) => {
  const model = buildModel(manifest);
  const before = getFlatWeights(model);
  const n = parameterCount(model);
  for (const bad of [new Float32Array(n - 1), new Float32Array(n + 1), new Float32Array(0)]) {
    const err = t.throws(() => setFlatWeights(model, bad), { instanceOf: RangeError });
    t.regex(err?.message ?? '', new RegExp(`got ${bad.length} weights, the model has ${n} trainable parameters`));
    t.false((err?.message ?? '').includes('\n'));
  }
  t.throws(() => setFlatWeights(model, new Float64Array(n) as unknown as Float32Array), { instanceOf: RangeError });
  t.deepEqual(getFlatWeights(model), before);
  model.dispose();
});
