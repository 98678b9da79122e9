// Event-loop lag during the coordinator's evaluation of a training job's model (issue 12): the synchronous
// in-process evaluation the coordinator ran before (kept below for comparison) against TrainModel.evaluate, which runs
// on an evaluation thread. Lag is perf_hooks.monitorEventLoopDelay at 1 ms resolution, enabled for the evaluation only.
//   npm run bench:eval-lag [-- --rows N]
import * as tf from '@tensorflow/tfjs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { packBundle } from '../shared/model/bundle.js';
import { parseManifest } from '../shared/model/manifest.js';
import { buildModel, saveToFiles } from '../shared/model/tf-model.js';
import { setFlatWeights } from '../shared/model/weights.js';
import { TrainModel, type EvalResult } from '../server/training/evaluator.js';
import { evaluateClassesOn, initBackend } from '../server/training/tf-eval.js';
import { mulberry32 } from '../shared/random.js';

const arg = process.argv.indexOf('--rows');
const ROWS = arg > 0 ? Number(process.argv[arg + 1]) : 8192;
const DIM = 1000;
const CLASSES = 10;

/** The evaluation as the coordinator ran it before issue 12 — the same function, on the event loop instead of a thread. */
const evaluateSync = (model: tf.LayersModel, weights: Float32Array, rows: Float32Array, labels: Int32Array): EvalResult =>
  evaluateClassesOn(model, DIM, CLASSES, weights, rows, labels);

interface Row {
  how: string;
  ms: number;
  p50: number;
  p99: number;
  max: number;
  result: EvalResult;
}

async function measure(how: string, run: () => EvalResult | Promise<EvalResult>): Promise<Row> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const t0 = performance.now();
  // Started from a timer so the histogram has a loop turn before it, as an evaluation inside a socket handler does.
  const result = await new Promise<EvalResult>((resolve, reject) => setTimeout(() => void Promise.resolve().then(run).then(resolve, reject), 0));
  const ms = performance.now() - t0;
  await new Promise((resolve) => setTimeout(resolve, 2)); // one more sample after it ends
  h.disable();
  return { how, ms, p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6, result };
}

const backend = await initBackend();
const manifest = parseManifest({
  format: 'fedpool-model', version: 1, kind: 'classifier', input: { kind: 'features', dim: DIM },
  output: { kind: 'classes', classes: CLASSES }, hidden: [1000], seed: 1,
}, 'bench model');
const built = buildModel(manifest);
const bundle = packBundle(await saveToFiles(built, manifest));
built.dispose();
const model = await TrainModel.load(bundle);
const local = await TrainModel.load(bundle); // its TF.js model, for the synchronous evaluation
const localModel = (local as unknown as { model: tf.LayersModel }).model;
const u = mulberry32(1);
const rand = (): number => u() * 2 - 1;
const rows = Float32Array.from({ length: ROWS * DIM }, rand);
const labels = Int32Array.from({ length: ROWS }, (_, i) => i % CLASSES);
const weights = model.initialWeights.map((w) => w + 0.01 * rand());

const table: Row[] = [];
evaluateSync(localModel, weights, rows, labels); // warm the backend's kernels
table.push(await measure('before: synchronous, on the loop', () => evaluateSync(localModel, weights, rows, labels)));
table.push(await measure('after: thread, first call (starts it)', () => model.evaluate(weights, rows, labels)));
table.push(await measure('after: thread, warm', () => model.evaluate(weights, rows, labels)));
table.push(await measure('after: thread, warm (again)', () => model.evaluate(weights, rows, labels)));
model.dispose();
local.dispose();

const same = table.every((r) => Object.is(r.result.loss, table[0]!.result.loss) && Object.is(r.result.accuracy, table[0]!.result.accuracy));
console.log(`backend ${backend}; model ${model.initialWeights.length.toLocaleString('en-US')} parameters (${DIM}→1000→${CLASSES}); ${ROWS} eval rows`);
console.log('| evaluation | params | eval ms | loop delay p50 ms | p99 ms | max ms |');
console.log('|---|--:|--:|--:|--:|--:|');
for (const r of table) {
  console.log(`| ${r.how} | ${model.initialWeights.length} | ${r.ms.toFixed(0)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(1)} |`);
}
console.log(`results bit-identical across rows: ${same ? 'yes' : 'NO'} (loss ${table[0]!.result.loss}, accuracy ${table[0]!.result.accuracy})`);
