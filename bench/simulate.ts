// Simulator speed (issue 5), side by side in one run:
// 1. The fedau-participation preset with 3 seeds (36 runs of 3000 rounds): fedpool's runner in one thread and in
//    one thread per core, beside bench/simulate_numpy.py — the same experiment in numpy with all 36 runs advanced
//    together as arrays (the fast way to write it in numpy). Both print their errors, which must agree statistically.
// 2. Client updates per second of the sync engine for N = 1,000 / 10,000 / 100,000 clients on the quadratic task
//    (d = 10, I = 5, Bernoulli participation p = 0.1, FedAU weighting), each for a fixed number of rounds.
// 3. The same on the softmax task (10 classes, 20 features, 210 parameters, 20 rows per client, I = 5 minibatch
//    steps of 16 rows): every client takes part every round, FedAvg's uniform mean. Task creation is not timed.
//
//   npm run build && node dist/bench/simulate.js [--seeds 3] [--quick]
import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createParticipation } from '../shared/data/participation.js';
import { runSync } from '../simulations/engine/sync.js';
import { summarize } from '../simulations/report/summary.js';
import { simulate } from '../simulations/runner.js';
import { createQuadraticTask } from '../simulations/tasks/quadratic.js';
import { createSoftmaxTask } from '../simulations/tasks/softmax.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const seedsAt = args.indexOf('--seeds');
const seeds = seedsAt >= 0 ? Number(args[seedsAt + 1]) : quick ? 1 : 3;
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.basename(path.dirname(here)) === 'dist' ? path.resolve(here, '../..') : path.resolve(here, '..');

console.log(`fedpool simulator benchmark (${cpus()[0]?.model ?? 'cpu'}, ${availableParallelism()} cores, node ${process.version})\n`);

// ---- 1. the preset against numpy ----------------------------------------------------------------
interface NumpyOut {
  seconds: number;
  runs: number;
  numpy: string;
  errors: Record<string, number>;
}
const py = spawnSync('python3', [path.join(root, 'bench', 'simulate_numpy.py'), '--seeds', String(seeds)], { encoding: 'utf8' });
const numpy = py.status === 0 ? (JSON.parse(py.stdout) as NumpyOut) : null;
if (numpy === null) console.log(`numpy reference unavailable: ${py.stderr.trim().split('\n').at(-1) ?? py.error?.message ?? 'python3 failed'}`);

const timings: Array<{ name: string; seconds: number; errors: Record<string, number> }> = [];
for (const threads of [1, availableParallelism()]) {
  const t0 = performance.now();
  const results = await simulate({ preset: 'fedau-participation', seeds, threads });
  const seconds = (performance.now() - t0) / 1000;
  const errors = Object.fromEntries(summarize(results).map((s) => [`${s.experiment.replace('fedau-participation/', '')}/${s.algorithm}`, s.final_loss_mean ?? Number.NaN]));
  timings.push({ name: `fedpool, ${threads} thread${threads > 1 ? 's' : ''}`, seconds, errors });
}
if (numpy !== null) timings.push({ name: `numpy ${numpy.numpy}, all runs as arrays`, seconds: numpy.seconds, errors: numpy.errors });

console.log(`fedau-participation, ${seeds} seed(s) = ${12 * seeds} runs × 3000 rounds, wall seconds (lower is better):\n`);
console.log('| implementation | seconds | vs numpy |');
console.log('|:--|--:|--:|');
for (const r of timings) console.log(`| ${r.name} | ${r.seconds.toFixed(3)} | ${numpy === null ? '—' : `${(r.seconds / numpy.seconds).toFixed(2)}×`} |`);
console.log('\nfinal ½‖x̄ − x*‖² (mean over seeds), per pattern/algorithm:\n');
console.log(`| run | ${timings.map((r) => r.name).join(' | ')} |`);
console.log(`|:--|${timings.map(() => '--:').join('|')}|`);
for (const key of Object.keys(timings[0]!.errors)) console.log(`| ${key} | ${timings.map((r) => (r.errors[key] ?? Number.NaN).toFixed(4)).join(' | ')} |`);

// ---- 2. client updates per second ----------------------------------------------------------------
console.log('\nsync engine, quadratic d = 10, I = 5, Bernoulli p = 0.1, FedAU weighting, one thread:\n');
console.log('| clients N | rounds | client updates | seconds | updates/s |');
console.log('|--:|--:|--:|--:|--:|');
for (const N of quick ? [1_000, 10_000] : [1_000, 10_000, 100_000]) {
  const rounds = Math.max(20, Math.round(2_000_000 / N / 0.1 / 10) * 10 / (quick ? 10 : 1));
  const task = createQuadraticTask({ numClients: N, dim: 10, seed: 1 });
  const t0 = performance.now();
  const r = runSync({
    experiment: 'bench', algorithm: 'fedau', seed: 1, task, rounds,
    participation: createParticipation({ kind: 'bernoulli', p: 0.1 }, N, 2),
    local: { steps: 5, lr: 0.1, batchSize: 1, momentum: 0 },
    pipeline: { weighting: 'fedau', numClients: N, robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1 } },
    logEvery: rounds,
  });
  const s = (performance.now() - t0) / 1000;
  console.log(`| ${N.toLocaleString('en-US')} | ${rounds} | ${r.updates.toLocaleString('en-US')} | ${s.toFixed(2)} | ${Math.round(r.updates / s).toLocaleString('en-US')} |`);
}

// ---- 3. client updates per second, softmax -------------------------------------------------------
// 100,000 clients × 20 rows × 20 features of float32 is 160 MB of training data; the update buffers add N·210 floats.
const SOFTMAX = { samplesPerClient: 20, classes: 10, features: 20, steps: 5, batchSize: 16 } as const;
console.log(`\nsync engine, softmax C = ${SOFTMAX.classes}, F = ${SOFTMAX.features} (d = ${SOFTMAX.classes * (SOFTMAX.features + 1)}), ${SOFTMAX.samplesPerClient} rows per client, I = ${SOFTMAX.steps}, batch ${SOFTMAX.batchSize}, every client every round, FedAvg uniform mean, one thread:\n`);
console.log('| clients N | rounds | client updates | seconds | updates/s |');
console.log('|--:|--:|--:|--:|--:|');
for (const N of quick ? [1_000, 10_000] : [1_000, 10_000, 100_000]) {
  // About 40,000 client updates per case, a second or two at ~20,000/s; N = 100,000 needs its one full round.
  const rounds = Math.max(1, Math.round(40_000 / N / (quick ? 10 : 1)));
  const task = createSoftmaxTask({ numClients: N, samplesPerClient: SOFTMAX.samplesPerClient, classes: SOFTMAX.classes, features: SOFTMAX.features, alpha: 1, seed: 1 });
  const t0 = performance.now();
  const r = runSync({
    experiment: 'bench', algorithm: 'fedavg', seed: 1, task, rounds,
    participation: null,
    local: { steps: SOFTMAX.steps, lr: 0.1, batchSize: SOFTMAX.batchSize, momentum: 0 },
    pipeline: { weighting: 'uniform', robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1 } },
    logEvery: rounds,
  });
  const s = (performance.now() - t0) / 1000;
  console.log(`| ${N.toLocaleString('en-US')} | ${rounds} | ${r.updates.toLocaleString('en-US')} | ${s.toFixed(2)} | ${Math.round(r.updates / s).toLocaleString('en-US')} |`);
}
