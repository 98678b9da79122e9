// The coordinator's evaluation (issue 12) runs on a thread, off the event loop: its numbers must be bit-identical to
// the synchronous in-process evaluation it replaced (written out here as the reference, on the same backend), and an
// evaluation must let the event loop run while it computes.
import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { packBundle } from '../../../shared/model/bundle.js';
import { parseManifest } from '../../../shared/model/manifest.js';
import { buildModel, saveToFiles } from '../../../shared/model/tf-model.js';
import { TrainModel } from '../../../server/training/evaluator.js';
import { evaluateClassesOn, evaluatePairsOn, initBackend } from '../../../server/training/tf-eval.js';
import { mulberry32 } from '../../../shared/random.js';

/** Deterministic numbers in [-1, 1). */
function uniformPm1(seed: number): () => number {
  const u = mulberry32(seed);
  return () => u() * 2 - 1;
}

async function bundleOf(dim: number, hidden: number[], output: 'reward' | number, seed: number): Promise<{ bundle: Uint8Array; model: tf.LayersModel }> {
  const manifest = parseManifest({
    format: 'fedpool-model', version: 1, kind: output === 'reward' ? 'reward' : 'classifier', input: { kind: 'features', dim },
    output: output === 'reward' ? { kind: 'reward' } : { kind: 'classes', classes: output }, hidden, seed,
  }, 'test model');
  const model = buildModel(manifest);
  return { bundle: packBundle(await saveToFiles(model, manifest)), model };
}

// The evaluation as the coordinator computed it before issue 12: the same functions, run synchronously on the
// test's own thread — the thread's answers must equal them bit for bit.
const referenceClasses = evaluateClassesOn;
const referencePairs = evaluatePairsOn;

test.before(async () => {
  await initBackend(); // the reference runs on the coordinator's backend, as the evaluation did
});

test('classifier evaluation on the thread is bit-identical to the synchronous in-process one (two batches, shifted weights)', async (t) => {
  const dim = 24;
  const k = 5;
  const { bundle, model } = await bundleOf(dim, [32, 16], k, 7);
  const trained = await TrainModel.load(bundle);
  t.teardown(() => {
    trained.dispose();
    model.dispose();
  });
  const rand = uniformPm1(3);
  const n = 4096 + 517; // a full batch and a partial one
  const rows = Float32Array.from({ length: n * dim }, rand);
  const labels = Int32Array.from({ length: n }, () => Math.floor(((rand() + 1) / 2) * k));
  for (const scale of [0, 0.05, 0.5]) {
    const weights = trained.initialWeights.map((w) => w + scale * rand());
    const expected = referenceClasses(model, dim, k, weights, rows, labels);
    const got = await trained.evaluate(weights, rows, labels);
    t.true(Object.is(got.loss, expected.loss), `loss ${got.loss} vs ${expected.loss} (scale ${scale})`);
    t.true(Object.is(got.accuracy, expected.accuracy), `accuracy ${got.accuracy} vs ${expected.accuracy} (scale ${scale})`);
  }
});

test('reward-pairs evaluation on the thread is bit-identical to the synchronous in-process one', async (t) => {
  const dim = 16;
  const { bundle, model } = await bundleOf(dim, [8], 'reward', 11);
  const trained = await TrainModel.load(bundle);
  t.teardown(() => {
    trained.dispose();
    model.dispose();
  });
  const rand = uniformPm1(5);
  const n = 4096 + 33;
  const chosen = Float32Array.from({ length: n * dim }, rand);
  const rejected = Float32Array.from({ length: n * dim }, rand);
  const weights = trained.initialWeights.map((w) => w + 0.3 * rand());
  const expected = referencePairs(model, dim, weights, chosen, rejected);
  const got = await trained.evaluatePairs(weights, chosen, rejected);
  t.true(Object.is(got.loss, expected.loss), `loss ${got.loss} vs ${expected.loss}`);
  t.true(Object.is(got.accuracy, expected.accuracy), `accuracy ${got.accuracy} vs ${expected.accuracy}`);
});

test('evaluation yields to the event loop, uses the weights as they were when called, and keeps two models apart', async (t) => {
  const dim = 12;
  const a = await bundleOf(dim, [10], 3, 1);
  const b = await bundleOf(dim, [6], 3, 2);
  const ma = await TrainModel.load(a.bundle);
  const mb = await TrainModel.load(b.bundle);
  t.teardown(() => {
    ma.dispose();
    mb.dispose();
    a.model.dispose();
    b.model.dispose();
  });
  const rand = uniformPm1(9);
  const n = 300;
  const rows = Float32Array.from({ length: n * dim }, rand);
  const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
  const wa = ma.initialWeights.map((w) => w + 0.2 * rand());
  const expectedA = referenceClasses(a.model, dim, 3, wa, rows, labels);
  const expectedB = referenceClasses(b.model, dim, 3, mb.initialWeights, rows, labels);
  let ticked = false;
  setImmediate(() => {
    ticked = true;
  });
  let tickedFirst: boolean | undefined;
  const pa = ma.evaluate(wa, rows, labels).then((r) => {
    tickedFirst = ticked;
    return r;
  });
  wa.fill(0); // the caller's array changes after the call: the evaluation must not see it
  const pb = mb.evaluate(mb.initialWeights, rows, labels);
  const [ra, rb] = await Promise.all([pa, pb]);
  t.true(tickedFirst, 'a setImmediate scheduled before the evaluation ran before it finished');
  t.deepEqual(ra, expectedA);
  t.deepEqual(rb, expectedB);
});

test('a disposed model refuses to evaluate', async (t) => {
  const { bundle, model } = await bundleOf(4, [], 2, 1);
  model.dispose();
  const m = await TrainModel.load(bundle);
  m.dispose();
  await t.throwsAsync(m.evaluate(m.initialWeights, new Float32Array(8), new Int32Array(2)), { message: /disposed/ });
});
