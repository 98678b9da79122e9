// The piscina training pool against in-process trainLocally on the same backend: identical results, from real threads.
import test from 'ava';
import { selectBackend } from '../../../client/backends.js';
import { trainLocally, type ClassifyData, type LocalTrainOptions } from '../../../client/training/local-train.js';
import { createTrainingPool } from '../../../client/training/pool.js';
import { BundleError, ModelError } from '../../../shared/model/errors.js';
import { bundleHash, packBundle } from '../../../shared/model/bundle.js';
import { parseManifest, type Manifest } from '../../../shared/model/manifest.js';
import { buildModel, loadFromFiles, saveToFiles } from '../../../shared/model/tf-model.js';
import { getFlatWeights, setFlatWeights } from '../../../shared/model/weights.js';
import { mulberry32, normal } from '../../../shared/random.js';

const BACKEND = 'wasm';
const DIM = 12;
const manifest: Manifest = parseManifest(
  { format: 'fedpool-model', version: 1, kind: 'classifier', input: { kind: 'features', dim: DIM }, output: { kind: 'classes', classes: 3 }, hidden: [16], seed: 5 },
  'test',
);
const OPTS: Omit<LocalTrainOptions, 'initialMomentum'> = { steps: 15, batchSize: 16, lr: 0.05, momentum: 0.9, seed: 3, sendMomentum: true };

function data(n: number, seed: number): ClassifyData {
  const rand = mulberry32(seed);
  const labels = Int32Array.from({ length: n }, () => Math.floor(rand() * 3));
  const x = Float32Array.from({ length: n * DIM }, (_, k) => normal(rand) + (labels[Math.floor(k / DIM)] === k % 3 ? 1 : 0));
  return { kind: 'classify', x, labels };
}

async function bundle(m: Manifest) {
  const model = buildModel(m);
  const files = await saveToFiles(model, m);
  model.dispose();
  const bytes = packBundle(files);
  return { files, bytes, hash: await bundleHash(bytes) };
}

async function inProcess(files: Map<string, Uint8Array>, d: ClassifyData, opts: LocalTrainOptions, weights?: Float32Array) {
  const { model } = await loadFromFiles(files);
  try {
    if (weights !== undefined) setFlatWeights(model, weights);
    return await trainLocally(model, manifest, d, opts);
  } finally {
    model.dispose();
  }
}

test.before(async () => {
  await selectBackend(BACKEND);
});

test('pool = in-process on the same backend: bundle weights, given weights + momentum, and a reused thread', async (t) => {
  const { files, bytes, hash } = await bundle(manifest);
  const d = data(120, 1);
  const pool = createTrainingPool({ threads: 2, backend: BACKEND });
  try {
    t.is((await pool.probe()).backend, BACKEND);
    const ref = await inProcess(files, d, OPTS);
    // Several shards of the same model at once: threads reuse the cached model, so each must reset its weights.
    const fromBundle = await Promise.all([0, 1, 2, 3].map(() => pool.train({ hash, bundle: bytes, data: d, opts: OPTS })));
    for (const r of fromBundle) {
      t.deepEqual(r.update, ref.update);
      t.deepEqual(r.momentum, ref.momentum);
      t.is(r.loss, ref.loss);
      t.is(r.samples, 120);
    }
    // A later round: weights moved on, the client's momentum carried.
    const { model } = await loadFromFiles(files);
    const base = getFlatWeights(model).map((w, j) => w + ref.update[j]);
    model.dispose();
    const momentum = ref.momentum as Float32Array;
    const ref2 = await inProcess(files, d, { ...OPTS, initialMomentum: momentum, startStep: 15 }, base);
    const weightsCopy = base.slice();
    const r2 = await pool.train({ hash, bundle: bytes, weights: base, momentum, data: d, opts: { ...OPTS, startStep: 15 } });
    t.deepEqual(r2.update, ref2.update);
    t.deepEqual(r2.momentum, ref2.momentum);
    t.deepEqual(base, weightsCopy, "the caller's arrays stay usable and unchanged");
    t.is(d.x.length, 120 * DIM);
  } finally {
    await pool.close();
  }
});

test('pool failures: bad data → ModelError, wrong weights length → RangeError, wrong hash → BundleError', async (t) => {
  const { bytes, hash } = await bundle(manifest);
  const pool = createTrainingPool({ threads: 1, backend: BACKEND });
  try {
    const d = data(10, 2);
    await t.throwsAsync(pool.train({ hash, bundle: bytes, data: { ...d, labels: d.labels.map(() => 7) }, opts: OPTS }), { instanceOf: ModelError, message: /label 0 is 7/ });
    await t.throwsAsync(pool.train({ hash, bundle: bytes, weights: new Float32Array(5), data: d, opts: OPTS }), { instanceOf: RangeError, message: /got 5 weights/ });
    const other = await bundle({ ...manifest, seed: 6 });
    await t.throwsAsync(pool.train({ hash: other.hash, bundle: bytes, data: d, opts: OPTS }), { instanceOf: BundleError, message: /sha-256/ });
    t.is((await pool.train({ hash, bundle: bytes, data: d, opts: OPTS })).update.length > 0, true, 'the thread still works');
  } finally {
    await pool.close();
  }
});
