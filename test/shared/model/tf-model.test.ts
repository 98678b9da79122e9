import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../../client/backends.js';
import { validateBundle } from '../../../shared/model/bundle.js';
import { featurizeBatch } from '../../../shared/model/featurizer.js';
import { parseManifest, type Manifest } from '../../../shared/model/manifest.js';
import { buildModel, layerSeed, loadFromFiles, manifestBytes, saveToFiles, scoreBatch } from '../../../shared/model/tf-model.js';

const manifest = (patch: Record<string, unknown> = {}): Manifest =>
  parseManifest(
    { format: 'fedpool-model', version: 1, kind: 'reward', input: { kind: 'features', dim: 6 }, output: { kind: 'reward' }, hidden: [8, 4], seed: 3, ...patch },
    'test',
  );

const features = (n: number, dim: number) =>
  Array.from({ length: n }, (_, i) => ({ features: Float32Array.from({ length: dim }, (_, j) => Math.sin(i * 7 + j * 3)) }));

test.before(async () => {
  await selectBackend('cpu');
});

test('the MLP has the manifest shape, fixed layer names and seeded weights', async (t) => {
  const m = manifest();
  const a = buildModel(m);
  const b = buildModel(m);
  const c = buildModel({ ...m, seed: 4 });
  t.deepEqual(a.layers.map((l) => l.name), ['hidden_1', 'hidden_2', 'output']);
  t.is(a.countParams(), 6 * 8 + 8 + 8 * 4 + 4 + 4 + 1);
  const bytes = async (model: tf.LayersModel) => (await saveToFiles(model, m)).get('weights.bin');
  t.deepEqual(await bytes(a), await bytes(b), 'same seed, same weights');
  t.notDeepEqual(await bytes(a), await bytes(c));
  t.not(layerSeed(3, 0), layerSeed(3, 1));
  t.not(layerSeed(3, 1), layerSeed(4, 0));
  const [k1, k2] = [a.layers[0].getWeights()[0], a.layers[1].getWeights()[0]];
  t.notDeepEqual(Array.from(k1.dataSync()).slice(0, 4), Array.from(k2.dataSync()).slice(0, 4), 'layers get distinct seeds');
  for (const model of [a, b, c]) model.dispose();
});

test('saved files load back into a model with the same predictions', async (t) => {
  for (const m of [manifest(), manifest({ hidden: [] }), manifest({ input: { kind: 'text', dim: 32 } })]) {
    const model = buildModel(m);
    const files = await saveToFiles(model, m);
    const loaded = await loadFromFiles(files);
    t.deepEqual(loaded.manifest, m);
    const items = m.input.kind === 'text' ? [{ prompt: 'p one', response: 'r one' }, { prompt: 'p two', response: 'r two' }] : features(5, 6);
    const want = tf.tidy(() => (model.predict(tf.tensor2d(featurizeBatch(items, m), [items.length, m.input.dim])) as tf.Tensor).dataSync());
    t.deepEqual(await scoreBatch(loaded.model, m, items, 1024), Float32Array.from(want));
    t.deepEqual(await scoreBatch(model, m, items, 1), Float32Array.from(want), 'batch size does not change the numbers');
    model.dispose();
    loaded.model.dispose();
  }
});

test('a binary classifier scores the probability of class 1; a classifier of 3 classes its 3 probabilities per item', async (t) => {
  const m = manifest({ kind: 'classifier', output: { kind: 'classes', classes: 2 } });
  const model = buildModel(m);
  const items = features(4, 6);
  const probs = tf.tidy(() => (model.predict(tf.tensor2d(featurizeBatch(items, m), [4, 6])) as tf.Tensor).arraySync() as number[][]);
  const scores = await scoreBatch(model, m, items, 64);
  probs.forEach((p, i) => {
    t.true(Math.abs(p[0] + p[1] - 1) < 1e-6);
    t.is(scores[i], Math.fround(p[1]));
  });
  const m3 = manifest({ kind: 'classifier', output: { kind: 'classes', classes: 3 } });
  const model3 = buildModel(m3);
  const probs3 = tf.tidy(() => (model3.predict(tf.tensor2d(featurizeBatch(items, m3), [4, 6])) as tf.Tensor).arraySync() as number[][]);
  // Batches of 3 rows: the rows of several predict calls end up in order, 3 values each.
  t.deepEqual(Array.from(await scoreBatch(model3, m3, items, 3)), probs3.flat().map((p) => Math.fround(p)));
  t.deepEqual(await scoreBatch(model, m, [], 64), new Float32Array(0));
  await t.throwsAsync(scoreBatch(model, m, items, 0), { message: 'batch size must be a positive integer, got 0' });
  await t.throwsAsync(scoreBatch(model, m, [...items, { features: new Float32Array(2) }], 8), { message: 'item 4: features has 2 entries; the model takes 6' });
  model.dispose();
  model3.dispose();
});

test('loading checks the real model shape where model.json alone cannot tell', async (t) => {
  // A Reshape after the last Dense hides the output units from the static check.
  const m = manifest({ hidden: [] });
  const model = tf.sequential({
    layers: [tf.layers.dense({ name: 'd', inputShape: [6], units: 3 }), tf.layers.reshape({ name: 'r', targetShape: [3] })],
  });
  const topology = model.toJSON(null, false) as Record<string, unknown>;
  const weightBytes = new Uint8Array((6 * 3 + 3) * 4);
  const files = new Map([
    ['fedpool.json', manifestBytes(m)],
    ['model.json', new TextEncoder().encode(JSON.stringify({ format: 'layers-model', modelTopology: topology, weightsManifest: [{ paths: ['weights.bin'], weights: [{ name: 'd/kernel', shape: [6, 3], dtype: 'float32' }, { name: 'd/bias', shape: [3], dtype: 'float32' }] }] }))],
    ['weights.bin', weightBytes],
  ]);
  t.notThrows(() => validateBundle(files));
  await t.throwsAsync(loadFromFiles(files), { name: 'BundleError', message: "model bundle: the model's output has shape [null,3] but fedpool.json's output needs 1 units" });
  model.dispose();
});

test('saveToFiles refuses a manifest that does not match the model', async (t) => {
  const model = buildModel(manifest());
  await t.throwsAsync(saveToFiles(model, manifest({ input: { kind: 'features', dim: 7 } })), { message: "model bundle: the model's input has 6 features but fedpool.json says features:7" });
  model.dispose();
});
