// Local fine-tuning (trainLocally) in this thread: it learns, its update is exact, it is seeded, momentum carries over.
import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../../client/backends.js';
import { MinibatchSampler, featurizePairs, trainLocally, type ClassifyData, type LocalTrainOptions, type PairsData } from '../../../client/training/local-train.js';
import { ModelError } from '../../../shared/model/errors.js';
import { parseManifest, type Manifest } from '../../../shared/model/manifest.js';
import { buildModel } from '../../../shared/model/tf-model.js';
import { getFlatWeights, parameterCount, setFlatWeights } from '../../../shared/model/weights.js';
import { mulberry32, normal } from '../../../shared/random.js';

const DIM = 8;
const classifier: Manifest = parseManifest(
  { format: 'fedpool-model', version: 1, kind: 'classifier', input: { kind: 'features', dim: DIM }, output: { kind: 'classes', classes: 2 }, hidden: [16], seed: 3 },
  'test',
);
const reward: Manifest = parseManifest(
  { format: 'fedpool-model', version: 1, kind: 'reward', input: { kind: 'features', dim: DIM }, output: { kind: 'reward' }, hidden: [16], seed: 4 },
  'test',
);
const OPTS: LocalTrainOptions = { steps: 60, batchSize: 32, lr: 0.1, momentum: 0.9, seed: 1 };

/** Two Gaussian classes, means ±0.8 on every axis, unit variance. */
function gaussians(n: number, seed: number): ClassifyData {
  const rand = mulberry32(seed);
  const x = new Float32Array(n * DIM);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = rand() < 0.5 ? 0 : 1;
    for (let j = 0; j < DIM; j++) x[i * DIM + j] = (labels[i] === 1 ? 0.8 : -0.8) + normal(rand);
  }
  return { kind: 'classify', x, labels };
}

/** Pairs ordered by a hidden linear reward w·x (w fixed by seed 99): chosen is the higher one. */
function preferences(n: number, seed: number): PairsData {
  const wr = mulberry32(99);
  const w = Array.from({ length: DIM }, () => normal(wr));
  const rand = mulberry32(seed);
  const chosen = new Float32Array(n * DIM);
  const rejected = new Float32Array(n * DIM);
  for (let i = 0; i < n; i++) {
    const a = Array.from({ length: DIM }, () => normal(rand));
    const b = Array.from({ length: DIM }, () => normal(rand));
    const score = (v: number[]) => v.reduce((s, vj, j) => s + vj * w[j], 0);
    const [c, r] = score(a) >= score(b) ? [a, b] : [b, a];
    chosen.set(c, i * DIM);
    rejected.set(r, i * DIM);
  }
  return { kind: 'pairs', chosen, rejected };
}

function predict(model: tf.LayersModel, x: Float32Array): Float32Array {
  return tf.tidy(() => (model.predict(tf.tensor2d(x, [x.length / DIM, DIM])) as tf.Tensor).dataSync() as Float32Array).slice();
}

function evalClassifier(model: tf.LayersModel, data: ClassifyData): { loss: number; accuracy: number } {
  const p = predict(model, data.x);
  let loss = 0;
  let correct = 0;
  for (let i = 0; i < data.labels.length; i++) {
    const p1 = p[i * 2 + 1];
    const y = data.labels[i];
    loss -= Math.log(Math.max(1e-12, y === 1 ? p1 : 1 - p1));
    if ((p1 > 0.5 ? 1 : 0) === y) correct++;
  }
  return { loss: loss / data.labels.length, accuracy: correct / data.labels.length };
}

function pairAccuracy(model: tf.LayersModel, data: PairsData): number {
  const c = predict(model, data.chosen);
  const r = predict(model, data.rejected);
  return c.filter((v, i) => v > r[i]).length / c.length;
}

test.before(async () => {
  await selectBackend('cpu');
});

test.serial('classifier on two Gaussians: loss falls, held-out accuracy rises', async (t) => {
  const train = gaussians(400, 11);
  const heldOut = gaussians(400, 12);
  const model = buildModel(classifier);
  const before = evalClassifier(model, heldOut);
  const tensors = tf.memory().numTensors;
  const first = await trainLocally(model, classifier, train, OPTS);
  t.is(tf.memory().numTensors, tensors, 'no tensor leaked');
  const after = evalClassifier(model, heldOut);
  t.log(`held-out loss ${before.loss.toFixed(3)} → ${after.loss.toFixed(3)}, accuracy ${before.accuracy} → ${after.accuracy}`);
  t.true(after.loss < before.loss * 0.7);
  t.true(after.accuracy > 0.95 && after.accuracy > before.accuracy);
  t.is(first.samples, 400);
  t.is(first.update.length, parameterCount(model));
  t.is(first.momentum, undefined);
  const second = await trainLocally(model, classifier, train, { ...OPTS, seed: 2 });
  t.true(second.loss < first.loss, `mean training loss ${first.loss} then ${second.loss}`);
  model.dispose();
});

test.serial('reward model on separable preferences: held-out pairwise accuracy rises', async (t) => {
  const model = buildModel(reward);
  const heldOut = preferences(300, 21);
  const before = pairAccuracy(model, heldOut);
  const out = await trainLocally(model, reward, preferences(500, 20), { ...OPTS, steps: 100 });
  const after = pairAccuracy(model, heldOut);
  t.log(`pairwise accuracy ${before} → ${after}, mean loss ${out.loss.toFixed(3)}`);
  t.true(after > 0.9 && after > before + 0.1);
  t.true(out.loss < Math.log(2) + 0.05); // starts near log 2 (r_c ≈ r_r)
  model.dispose();
});

test.serial('update = trained − initial: initial + update reproduces the trained predictions', async (t) => {
  const data = gaussians(200, 5);
  const model = buildModel(classifier);
  const initial = getFlatWeights(model);
  const { update } = await trainLocally(model, classifier, data, OPTS);
  const trained = getFlatWeights(model);
  for (let j = 0; j < update.length; j++) {
    if (update[j] !== Math.fround(trained[j] - initial[j])) return t.fail(`update[${j}]`);
  }
  const copy = buildModel({ ...classifier, seed: 77 });
  setFlatWeights(copy, initial.map((w, j) => w + update[j]));
  const a = predict(model, data.x);
  const b = predict(copy, data.x);
  t.true(a.every((v, i) => Math.abs(v - b[i]) < 1e-5));
  model.dispose();
  copy.dispose();
});

test.serial('determinism: same seed → identical update and loss; another seed → another update', async (t) => {
  const data = preferences(200, 8);
  const run = async (seed: number) => {
    const model = buildModel(reward);
    try {
      return await trainLocally(model, reward, data, { ...OPTS, steps: 20, seed, sendMomentum: true });
    } finally {
      model.dispose();
    }
  };
  const [a, b, c] = [await run(5), await run(5), await run(6)];
  t.deepEqual(a.update, b.update);
  t.deepEqual(a.momentum, b.momentum);
  t.is(a.loss, b.loss);
  t.notDeepEqual(a.update, c.update);
});

test.serial('momentum continuity: 5 + 5 steps with the momentum passed on = 10 steps in one call', async (t) => {
  const data = gaussians(100, 9); // 100 rows, batch 32: the sequence crosses epoch boundaries
  const opts = { ...OPTS, steps: 10, sendMomentum: true };
  const whole = buildModel(classifier);
  const one = await trainLocally(whole, classifier, data, opts);
  const split = buildModel(classifier);
  const first = await trainLocally(split, classifier, data, { ...opts, steps: 5 });
  const second = await trainLocally(split, classifier, data, { ...opts, steps: 5, startStep: 5, initialMomentum: first.momentum });
  t.deepEqual(getFlatWeights(split), getFlatWeights(whole));
  t.deepEqual(second.momentum, one.momentum);
  t.true(one.update.every((u, j) => Math.abs(u - (first.update[j] + second.update[j])) < 1e-6));
  // Without the momentum, the second half differs: the EMA really carries over.
  const fresh = buildModel(classifier);
  await trainLocally(fresh, classifier, data, { ...opts, steps: 5 });
  const noCarry = await trainLocally(fresh, classifier, data, { ...opts, steps: 5, startStep: 5 });
  t.notDeepEqual(noCarry.update, second.update);
  for (const m of [whole, split, fresh]) m.dispose();
});

test.serial('β = 0 is plain SGD: one step moves the weights by −lr·g, and the momentum returned is g', async (t) => {
  const data = gaussians(32, 4);
  const model = buildModel(classifier);
  const out = await trainLocally(model, classifier, data, { ...OPTS, steps: 1, momentum: 0, lr: 0.5, sendMomentum: true });
  const m = out.momentum as Float32Array;
  t.true(out.update.every((u, j) => Math.abs(u + 0.5 * m[j]) < 1e-6));
  t.true(m.some((v) => v !== 0));
  model.dispose();
});

test.serial('sampler: without replacement within an epoch, seeded, resumable', (t) => {
  const s = new MinibatchSampler(10, 5, 3);
  const epoch = [...s.indices(0), ...s.indices(1)].sort((a, b) => a - b);
  t.deepEqual(epoch, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  t.deepEqual(new MinibatchSampler(10, 5, 3).indices(7), s.indices(7));
  t.notDeepEqual([...s.indices(0), ...s.indices(1)], [...s.indices(2), ...s.indices(3)]);
  const odd = new MinibatchSampler(7, 3, 1);
  const firstTwoEpochs = Array.from({ length: 14 }, (_, p) => odd.indices(Math.floor(p / 3))[p % 3]);
  t.deepEqual(firstTwoEpochs.slice(0, 7).sort(), [0, 1, 2, 3, 4, 5, 6]);
  t.deepEqual(firstTwoEpochs.slice(7).sort(), [0, 1, 2, 3, 4, 5, 6]);
});

test.serial('bad inputs: one-line ModelError / RangeError', async (t) => {
  const model = buildModel(classifier);
  const data = gaussians(10, 1);
  await t.throwsAsync(trainLocally(model, classifier, preferences(4, 1), OPTS), { instanceOf: ModelError, message: /needs a reward model/ });
  await t.throwsAsync(trainLocally(model, classifier, { ...data, labels: data.labels.map(() => 2) }, OPTS), { instanceOf: ModelError, message: /label 0 is 2/ });
  await t.throwsAsync(trainLocally(model, classifier, { ...data, x: data.x.subarray(1) }, OPTS), { instanceOf: ModelError, message: /x has 79 numbers/ });
  await t.throwsAsync(trainLocally(model, classifier, data, { ...OPTS, initialMomentum: new Float32Array(3) }), { instanceOf: RangeError, message: /momentum has 3 entries/ });
  await t.throwsAsync(trainLocally(model, classifier, data, { ...OPTS, momentum: 1 }), { instanceOf: RangeError });
  await t.throwsAsync(trainLocally(model, classifier, { kind: 'classify', x: new Float32Array(0), labels: new Int32Array(0) }, OPTS), { instanceOf: ModelError, message: /no data/ });
  model.dispose();
});

test.serial('text pairs: featurizePairs feeds a text reward model that learns the preference', async (t) => {
  const m: Manifest = parseManifest(
    { format: 'fedpool-model', version: 1, kind: 'reward', input: { kind: 'text', dim: 64 }, output: { kind: 'reward' }, hidden: [8], seed: 1 },
    'test',
  );
  const good = ['thanks', 'clear', 'correct', 'helpful', 'precise'];
  const bad = ['wrong', 'rude', 'vague', 'confusing', 'no'];
  const pairs = (off: number) =>
    Array.from({ length: 60 }, (_, i) => ({ prompt: `question ${i}`, chosen: `${good[(i + off) % 5]} answer ${good[(i + 2) % 5]}`, rejected: `${bad[(i + off) % 5]} answer ${bad[(i + 3) % 5]}` }));
  const train = featurizePairs(pairs(0), m);
  t.is(train.chosen.length, 60 * 64);
  const model = buildModel(m);
  await trainLocally(model, m, train, { ...OPTS, steps: 40, batchSize: 16, lr: 0.2 });
  const heldOut = featurizePairs(pairs(1), m);
  const c = tf.tidy(() => (model.predict(tf.tensor2d(heldOut.chosen, [60, 64])) as tf.Tensor).dataSync().slice());
  const r = tf.tidy(() => (model.predict(tf.tensor2d(heldOut.rejected, [60, 64])) as tf.Tensor).dataSync().slice());
  t.true(c.filter((v, i) => v > r[i]).length >= 55);
  model.dispose();
});
