// Fine-tuning leases on a worker: central data (virtual clients) through the real training pool in-process, a
// worker's own JSONL dataset through the real CLI, and the failures (unknown dataset, bad file) — all against the
// fake coordinator over real sockets, with a real model from `fedpool model init`.
import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectBackend } from '../../../client/backends.js';
import { BlobCache } from '../../../client/blob-cache.js';
import { trainSeed } from '../../../client/train-shard.js';
import { readBundleDir } from '../../../client/scoring/bundle-fs.js';
import { Datasets, parseDataset, DatasetError } from '../../../client/training/datasets.js';
import { trainLocally, type ClassifyData } from '../../../client/training/local-train.js';
import { createTrainingPool, type TrainingPool } from '../../../client/training/pool.js';
import { Worker } from '../../../client/worker.js';
import { packBundle } from '../../../shared/model/bundle.js';
import { loadFromFiles } from '../../../shared/model/tf-model.js';
import { getFlatWeights, parameterCount, setFlatWeights } from '../../../shared/model/weights.js';
import { Tensor, type TrainTask } from '../../../shared/protocol/index.js';
import { mulberry32 } from '../../../shared/random.js';
import { cleanEnv, runFedpool, startFedpool } from '../../helpers/processes.js';
import { FakeCoordinator, FakeScorer, trainShard } from './fake-coordinator.js';

const scratch = mkdtempSync(join(tmpdir(), 'fedpool-train-'));
const env = cleanEnv({ FEDPOOL_LOG: 'info', FEDPOOL_CACHE_DIR: join(scratch, 'cache') });
const DIM = 4;

let files: Map<string, Uint8Array>;
let bundle: Uint8Array;
let pool: TrainingPool;

test.before(async () => {
  const dir = join(scratch, 'model');
  const init = await runFedpool(['model', 'init', '--out', dir, '--input', `features:${DIM}`, '--output', 'classes:2', '--hidden', '8', '--seed', '3'], { env });
  if (init.status !== 0) throw new Error(`model init failed: ${init.stderr}`);
  files = await readBundleDir(dir);
  bundle = packBundle(files);
  await selectBackend('cpu');
  pool = createTrainingPool({ threads: 1, backend: 'cpu' });
});
test.after.always(async () => {
  await pool?.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** A linearly separable 2-class problem: label = [x0 + x1 > x2]. */
function classifyData(n: number, seed: number): ClassifyData {
  const rand = mulberry32(seed);
  const x = Float32Array.from({ length: n * DIM }, () => rand() * 2 - 1);
  const labels = Int32Array.from({ length: n }, (_, i) => (x[i * DIM]! + x[i * DIM + 1]! > x[i * DIM + 2]! ? 1 : 0));
  return { kind: 'classify', x, labels };
}

/** The bundle's own weights, flat: what a coordinator sends with the leases of model version 0. */
async function initialWeights(): Promise<Float32Array> {
  const { model } = await loadFromFiles(files);
  const w = getFlatWeights(model);
  model.dispose();
  return w;
}

/** Mean cross-entropy of the model at `weights` on `data`. */
async function lossAt(weights: Float32Array, data: ClassifyData): Promise<number> {
  const { model } = await loadFromFiles(files);
  try {
    setFlatWeights(model, weights);
    const n = data.labels.length;
    const loss = tf.tidy(() => {
      const p = model.predict(tf.tensor2d(data.x, [n, DIM])) as tf.Tensor2D;
      const picked = tf.sum(tf.mul(p, tf.oneHot(tf.tensor1d(data.labels, 'int32'), 2)), 1);
      return tf.neg(tf.mean(tf.log(tf.clipByValue(picked, 1e-7, 1))));
    });
    const v = (await loss.data())[0]!;
    loss.dispose();
    return v;
  } finally {
    model.dispose();
  }
}

async function inProcessWorker(coord: FakeCoordinator, datasets = new Datasets(new Map())): Promise<Worker> {
  const worker = new Worker({ url: coord.url, name: 'train-w', threads: 1, backend: 'cpu', scorer: new FakeScorer(), trainer: pool, datasets, blobs: new BlobCache() });
  void worker.start().catch(() => {});
  return worker;
}

const local = { steps: 20, batchSize: 8, lr: 0.2, momentum: 0.9 };

test('a central-data train lease: update of the model size, same as trainLocally in-process, lowers the loss; momentum sent; the weights sent for its version and the lease’s momentum used', async (t) => {
  const coord = await new FakeCoordinator().listen();
  t.teardown(() => coord.close());
  const hash = coord.addBlob(bundle);
  const data = classifyData(48, 7);
  const bundleWeights = await initialWeights();
  const task: TrainTask = {
    kind: 'train',
    modelHash: hash,
    modelVersion: 3,
    client: 5,
    local,
    data: { source: 'central', rows: Tensor.float32(data.x, [48, DIM]), labels: Tensor.int32(data.labels) },
  };
  coord.enqueue(trainShard('J', task, bundleWeights));
  const worker = await inProcessWorker(coord);
  t.teardown(() => worker.close());
  await coord.until(() => coord.results.length + coord.failures.length >= 1, 'the first answer');
  t.deepEqual(coord.failures, []);
  t.like(coord.hellos[0]!.message.capabilities, { tasks: ['score', 'train'] });
  const first = coord.updates[0]!.payload;

  // The same training in this process, from the bundle's weights with the same seed.
  const { model, manifest } = await loadFromFiles(files);
  const initial = getFlatWeights(model);
  const params = parameterCount(model);
  const expected = await trainLocally(model, manifest, data, { ...local, seed: trainSeed(3, 5), sendMomentum: true });
  model.dispose();

  t.is(first.update.size, params);
  t.is(first.baseVersion, 3);
  t.is(first.samples, 48);
  t.true(Number.isFinite(first.loss));
  t.true(Math.abs(first.loss - expected.loss) < 1e-4, `${first.loss} vs ${expected.loss}`);
  const got = first.update.data as Float32Array;
  let maxDiff = 0;
  for (let i = 0; i < params; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i]! - expected.update[i]!));
  t.true(maxDiff < 1e-5, `update differs by ${maxDiff}`);
  t.is(first.momentum?.size, params, 'a virtual client’s momentum travels back to the coordinator');

  const trained = initial.map((w, i) => w + got[i]!);
  const [before, after] = [await lossAt(initial, data), await lossAt(trained, data)];
  t.true(after < before, `loss ${before} → ${after}`);

  // Next round: the coordinator sends the trained weights and the client's momentum.
  const momentum = first.momentum!.data as Float32Array;
  coord.enqueue(trainShard('J', { ...task, modelVersion: 4, momentum: Tensor.float32(momentum) }, trained));
  await coord.until(() => coord.results.length + coord.failures.length >= 2, 'the second answer');
  t.deepEqual(coord.failures, []);
  const second = coord.updates[1]!.payload;
  const again = await loadFromFiles(files);
  setFlatWeights(again.model, trained);
  const expected2 = await trainLocally(again.model, again.manifest, data, { ...local, seed: trainSeed(4, 5), sendMomentum: true, initialMomentum: momentum });
  again.model.dispose();
  t.is(second.baseVersion, 4);
  t.true(Math.abs(second.loss - expected2.loss) < 1e-4, `${second.loss} vs ${expected2.loss}`);
  t.true(second.loss < first.loss, 'training continues from the sent weights');
  t.is(coord.blobRequests.length, 1, 'the model is fetched once');

  // The coordinator sends a version's weights once (shared/training/held-weights.ts): version 4 again, with no weights
  // message, trains from the held ones; a version it never received is refused, retryably, rather than trained from
  // the bundle's weights; so is momentum of the wrong size, for good.
  const bare = { ...task, modelVersion: 4, momentum: Tensor.float32(momentum) };
  coord.enqueue(trainShard('J', bare), trainShard('J', { ...bare, modelVersion: 5 }), trainShard('K', bare), trainShard('J', { ...bare, momentum: Tensor.float32(momentum.subarray(1)) }));
  await coord.until(() => coord.results.length + coord.failures.length >= 6, 'four more answers');
  const third = coord.updates[2]!.payload;
  t.deepEqual(third.update.data, second.update.data, 'the held weights of version 4: the same update as the lease after the weights message');
  t.is(coord.failures.length, 3, 'version 5 of J, and version 4 of another job K, were never received; the short momentum');
  const reasons = new Map(coord.failures.map((f) => [f.message.reason, f.message.retryable]));
  for (const v of [4, 5]) t.is(reasons.get(`this worker does not hold the weights of model version ${v}`), true);
  t.is(reasons.get(`the lease's momentum has ${params - 1} values, the weights ${params}`), false);
});

test('an unknown dataset name, a bad dataset file and labels a model cannot take are non-retryable failures', async (t) => {
  const coord = await new FakeCoordinator().listen();
  t.teardown(() => coord.close());
  const hash = coord.addBlob(bundle);
  const badPath = join(scratch, 'bad.jsonl');
  writeFileSync(badPath, '{"features":[1,2,3,4],"label":0}\n{"features":[1,2,3],"label":1}\n');
  const pairsPath = join(scratch, 'pairs.jsonl');
  writeFileSync(pairsPath, '{"prompt":"p","chosen":"a","rejected":"b"}\n');
  const worker = await inProcessWorker(coord, new Datasets(new Map([['bad', badPath], ['pairs', pairsPath]])));
  t.teardown(() => worker.close());
  const base = { kind: 'train' as const, modelHash: hash, modelVersion: 0, client: 0, local };
  const weights = await initialWeights();
  coord.enqueue(
    trainShard('J', { ...base, data: { source: 'worker', name: 'nope' } }, weights),
    trainShard('J', { ...base, data: { source: 'worker', name: 'bad' } }),
    trainShard('J', { ...base, data: { source: 'worker', name: 'pairs' } }),
    trainShard('J', { ...base, data: { source: 'central', rows: Tensor.float32(new Float32Array(2 * DIM), [2, DIM]), labels: Tensor.int32([0, 5]) } }),
  );
  await coord.until(() => coord.failures.length + coord.results.length >= 4, 'four answers');
  t.is(coord.results.length, 0);
  const byShard = new Map(coord.failures.map(({ message: f }) => [f.shardId, f]));
  const reasons = coord.leasesSent.map(({ message: l }) => byShard.get(l.shardId));
  for (const f of reasons) t.false(f?.retryable, f?.reason);
  t.is(reasons[0]?.reason, 'no dataset nope on this worker');
  t.is(reasons[1]?.reason, `dataset bad: ${badPath}:2: 3 features; line 1 has 4`);
  t.regex(reasons[2]?.reason ?? '', /dataset pairs holds preference pairs; this model is a classifier/);
  t.regex(reasons[3]?.reason ?? '', /label 1 is 5/);
});

test('dataset files: the three line forms, one-line errors naming file:line, lazy cached loading', async (t) => {
  const f = parseDataset('d', 'f.jsonl', '{"features":[1,2],"label":1}\n\n{"features":[3,4],"label":0}\n');
  t.like(f, { kind: 'features', dim: 2 });
  if (f.kind === 'features') t.deepEqual([...f.x, ...f.labels], [1, 2, 3, 4, 1, 0]);
  const txt = parseDataset('d', 'f.jsonl', '{"text":"hi","label":0}\n{"prompt":"q","response":"a","label":2}\n');
  t.like(txt, { kind: 'text', items: [{ prompt: '', response: 'hi' }, { prompt: 'q', response: 'a' }] });
  t.like(parseDataset('d', 'f.jsonl', '{"chosen":"a","rejected":"b"}'), { kind: 'pairs', pairs: [{ prompt: '', chosen: 'a', rejected: 'b' }] });
  const err = (text: string) => t.throws(() => parseDataset('d', 'f.jsonl', text), { instanceOf: DatasetError })?.message;
  t.is(err('{"features":[1],"label":0}\nnope'), 'dataset d: f.jsonl:2: not valid JSON');
  t.is(err('{"features":[1],"label":-1}'), 'dataset d: f.jsonl:1: "label" must be a class id (an integer in [0, 65536)), got -1');
  t.is(err('{"features":[1],"label":0}\n{"text":"x","label":0}'), 'dataset d: f.jsonl:2: a text line in a file of features lines');
  t.is(err('{"prompt":"p","chosen":"a"}'), 'dataset d: f.jsonl:1: "rejected" must be a string');
  t.is(err('{"features":[1,null],"label":0}'), 'dataset d: f.jsonl:1: "features"[1] is null, not a finite number');
  t.is(err('{"x":1}'), 'dataset d: f.jsonl:1: expected {"features","label"}, {"text","label"}, {"prompt","response","label"} or {"prompt","chosen","rejected"}');
  t.is(err('\n'), 'dataset d: f.jsonl: no examples (empty file)');

  let reads = 0;
  const sets = new Datasets(new Map([['a', 'a.jsonl']]), async () => (reads++, '{"features":[1],"label":0}'));
  t.is(reads, 0, 'nothing read before first use');
  await Promise.all([sets.get('a'), sets.get('a')]);
  await sets.get('a');
  t.is(reads, 1);
  await t.throwsAsync(sets.get('b'), { message: 'no dataset b on this worker' });
});

test('the CLI worker trains on its own --data JSONL dataset: an update, momentum kept on the worker for its job only', async (t) => {
  const data = classifyData(40, 11);
  const path = join(scratch, 'mine.jsonl');
  writeFileSync(path, Array.from(data.labels, (label, i) => JSON.stringify({ features: [...data.x.subarray(i * DIM, (i + 1) * DIM)], label })).join('\n') + '\n');
  const coord = await new FakeCoordinator().listen();
  t.teardown(() => coord.close());
  const hash = coord.addBlob(bundle);
  const initial = await initialWeights();
  const task: TrainTask = { kind: 'train', modelHash: hash, modelVersion: 2, client: 1, local, data: { source: 'worker', name: 'mine' } };
  // A second job on the same dataset and model must not inherit job J's momentum.
  coord.enqueue(trainShard('J', task, initial), trainShard('J', { ...task, modelVersion: 3 }, initial), trainShard('K', { ...task, modelVersion: 3 }, initial));

  const child = startFedpool(t, ['worker', '--url', coord.url, '--backend', 'cpu', '--threads', '1', '--data', `mine=${path}`], { env });
  await coord.until(() => coord.results.length + coord.failures.length >= 3, 'three answers', 120_000);
  t.deepEqual(coord.failures, [], child.stderr());
  t.like(coord.hellos[0]!.message.capabilities, { tasks: ['score', 'train'] });
  const [a, b, c] = coord.updates.map((u) => u.payload);
  const { model, manifest } = await loadFromFiles(files);
  const params = parameterCount(model);
  const expected = await trainLocally(model, manifest, data, { ...local, seed: trainSeed(2, 1), sendMomentum: true });
  // The second lease (the same initial weights) continues from the momentum the first left on the worker.
  setFlatWeights(model, initial);
  const expectedB = await trainLocally(model, manifest, data, { ...local, seed: trainSeed(3, 1), initialMomentum: expected.momentum! });
  setFlatWeights(model, initial);
  const expectedC = await trainLocally(model, manifest, data, { ...local, seed: trainSeed(3, 1) });
  model.dispose();
  t.is(a?.update.size, params);
  t.like(a, { baseVersion: 2, samples: 40, momentum: undefined });
  t.like(b, { baseVersion: 3, momentum: undefined });
  t.true(Math.abs((a?.loss ?? NaN) - expected.loss) < 1e-4, `${a?.loss} vs ${expected.loss}`);
  t.true(Math.abs((b?.loss ?? NaN) - expectedB.loss) < 1e-4, `${b?.loss} vs ${expectedB.loss}`);
  t.true(Math.abs(expectedB.loss - expectedC.loss) > 1e-3, 'the momentum changes the loss, so the next check can tell');
  t.true(Math.abs((c?.loss ?? NaN) - expectedC.loss) < 1e-4, `job K: ${c?.loss} vs ${expectedC.loss} (fresh momentum)`);
  t.is(await child.stop('SIGTERM'), 0, child.stderr());
});
