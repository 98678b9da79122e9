// Local fine-tuning speed of one worker thread, in process: trainLocally() steps/s (batch 32) for the ~1e5- and
// ~1e6-parameter classifiers of bench/train.ts, on the backend named on the command line (default auto). Separates
// the worker's compute from the pool's overheads that bench/train.ts measures end to end.
//
//   npm run build && node dist/bench/local-train.js [webgpu|wasm|cpu|auto] [--steps 40]
import { selectBackend, type BackendRequest } from '../client/backends.js';
import { trainLocally } from '../client/training/local-train.js';
import { parseManifest } from '../shared/model/manifest.js';
import { buildModel } from '../shared/model/tf-model.js';
import { parameterCount } from '../shared/model/weights.js';
import { mulberry32 } from '../shared/random.js';

const args = process.argv.slice(2);
const requested = (args.find((a) => !a.startsWith('--')) ?? 'auto') as BackendRequest;
const stepsAt = args.indexOf('--steps');
const steps = stepsAt >= 0 ? Number(args[stepsAt + 1]) : 40;
const choice = await selectBackend(requested);
console.log(`\nfedpool local training, one thread, backend ${choice.backend}${choice.device ? ` (${choice.device})` : ''}, batch 32, ${steps} timed steps after 5 warm-up steps\n`);
console.log('| model | params | local steps/s | ms/step |');
console.log('|:--|--:|--:|--:|');
for (const [dim, hidden] of [[784, [128]], [1024, [768, 256]]] as const) {
  const manifest = parseManifest({ format: 'fedpool-model', version: 1, kind: 'classifier', input: { kind: 'features', dim }, output: { kind: 'classes', classes: 10 }, hidden: [...hidden], seed: 1 }, 'bench manifest');
  const model = buildModel(manifest);
  const n = 512;
  const rand = mulberry32(1);
  const x = Float32Array.from({ length: n * dim }, () => rand());
  const labels = Int32Array.from({ length: n }, (_, i) => i % 10);
  const opts = { steps: 5, batchSize: 32, lr: 0.05, momentum: 0.9, seed: 1, sendMomentum: true };
  await trainLocally(model, manifest, { kind: 'classify', x, labels }, opts);
  const t0 = performance.now();
  await trainLocally(model, manifest, { kind: 'classify', x, labels }, { ...opts, steps });
  const seconds = (performance.now() - t0) / 1000;
  console.log(`| ${dim}→${hidden.join('→')}→10 | ${parameterCount(model).toLocaleString('en-US')} | ${(steps / seconds).toFixed(1)} | ${((seconds * 1000) / steps).toFixed(1)} |`);
  model.dispose();
}
process.exit(0);
