// The fedau-participation preset reproduces docs/algorithms.md §1.5 qualitatively, end to end through the CLI, and the
// sync engine keeps §1.4's invariants.
import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createParticipation } from '../../shared/data/participation.js';
import { runSync } from '../../simulations/engine/sync.js';
import { createQuadraticTask } from '../../simulations/tasks/quadratic.js';
import { runFedpool } from '../helpers/processes.js';
import { tempDir } from '../server/helpers.js';

test('fedpool simulate --preset fedau-participation: FedAU and known 1/p far below FedAvg under all three patterns', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const out = path.join(dir, 'sim');
  const r = await runFedpool(['simulate', '--preset', 'fedau-participation', '--seeds', '1', '--out', out]);
  t.is(r.status, 0, r.stderr);
  const csv = readFileSync(path.join(out, 'metrics.csv'), 'utf8').trim().split('\n');
  t.is(csv[0], 'experiment,algorithm,seed,step,time,loss,accuracy');
  // 3 patterns × 4 algorithms × (1 + 3000/50) logged rows.
  t.is(csv.length - 1, 12 * 61);
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as Array<{ experiment: string; algorithm: string; seeds: number; final_loss_mean: number }>;
  t.is(summary.length, 12);
  for (const pattern of ['bernoulli', 'markov-0.05', 'cyclic-100']) {
    const loss = (a: string): number => summary.find((s) => s.experiment === `fedau-participation/${pattern}` && s.algorithm === a)!.final_loss_mean;
    t.log(pattern, ['fedau', 'known-1/p', 'avg-participating', 'avg-all'].map((a) => `${a} ${loss(a).toFixed(4)}`).join(', '));
    t.true(loss('fedau') < 0.03, `${pattern} fedau ${loss('fedau')}`);
    t.true(loss('known-1/p') < 0.03, `${pattern} known ${loss('known-1/p')}`);
    t.true(loss('avg-participating') > 0.4, `${pattern} avg-participating ${loss('avg-participating')}`);
    t.true(loss('avg-all') > 0.4, `${pattern} avg-all ${loss('avg-all')}`);
    t.true(loss('avg-participating') > 20 * loss('fedau'));
  }
  const html = readFileSync(path.join(out, 'report.html'), 'utf8');
  t.true(html.includes('<svg') && html.includes('fedau-participation/markov-0.05'));
  t.regex(r.stdout, /avg-participating/);
});

const quad = () => createQuadraticTask({ numClients: 8, dim: 3, seed: 4 });
const base = { experiment: 'e', algorithm: 'a', seed: 1, rounds: 40, logEvery: 10, local: { steps: 2, lr: 0.3, batchSize: 1, momentum: 0 } };
const mean = { mix: 'none', rule: 'mean', f: 0 } as const;
const sgd = { optimizer: 'sgd', lr: 1 } as const;

test('sync engine: with everyone participating, FedAU, known 1/p = 1, average-all and average-participating are the same FedAvg', (t) => {
  const runs = [
    { weighting: 'fedau', numClients: 8, robust: mean, server: sgd },
    { weighting: 'known', numClients: 8, rates: new Array(8).fill(1), robust: mean, server: sgd },
    { weighting: 'all', numClients: 8, robust: mean, server: sgd },
    { weighting: 'uniform', robust: mean, server: sgd },
  ].map((pipeline) => runSync({ ...base, task: quad(), participation: null, pipeline: pipeline as never }));
  for (const r of runs.slice(1)) {
    t.deepEqual(r.rows.map((x) => x.loss), runs[0]!.rows.map((x) => x.loss));
  }
  t.is(runs[0]!.updates, 8 * 40);
});

test('sync engine: FedAU with K = 1 equals average-all (every interval is 1); an empty round leaves the model alone', (t) => {
  const participation = () => createParticipation({ kind: 'bernoulli', p: 0.3 }, 8, 9);
  const k1 = runSync({ ...base, task: quad(), participation: participation(), pipeline: { weighting: 'fedau', fedauCutoff: 1, numClients: 8, robust: mean, server: sgd } });
  const all = runSync({ ...base, task: quad(), participation: participation(), pipeline: { weighting: 'all', numClients: 8, robust: mean, server: sgd } });
  t.deepEqual(k1.rows.map((x) => x.loss), all.rows.map((x) => x.loss));
  // Rounds where nobody is available: time still passes, the loss stays.
  const rare = runSync({ ...base, rounds: 5, logEvery: 1, task: quad(), participation: createParticipation({ kind: "bernoulli", p: 0.001 }, 8, 3), pipeline: { weighting: 'uniform', robust: mean, server: sgd } });
  t.is(rare.updates, 0);
  t.true(rare.rows.every((x) => x.loss === rare.rows[0]!.loss));
  t.deepEqual(rare.rows.map((x) => x.time), [0, 1, 2, 3, 4, 5]);
});

test('sync engine: runs are deterministic per seed and differ across seeds', (t) => {
  const run = (seed: number) => runSync({ ...base, seed, task: quad(), participation: createParticipation({ kind: 'markov', p: 0.5, q: 0.2 }, 8, seed), pipeline: { weighting: 'fedau', numClients: 8, robust: mean, server: sgd } });
  t.deepEqual(run(1), run(1));
  t.notDeepEqual(run(1).rows.map((x) => x.loss), run(2).rows.map((x) => x.loss));
});

test('runner: threads change nothing — the same results, in grid order, as one thread', async (t) => {
  const { simulate, gridOf } = await import('../../simulations/runner.js');
  const one = await simulate({ preset: 'fedau-participation', seeds: 2, threads: 1 });
  const seen: number[] = [];
  const two = await simulate({ preset: 'fedau-participation', seeds: 2, threads: 2, onProgress: (done) => seen.push(done) });
  t.deepEqual(two, one);
  t.deepEqual(seen, Array.from({ length: 24 }, (_, i) => i + 1));
  t.deepEqual(one.map((r) => [r.experiment, r.algorithm, r.seed]), gridOf('fedau-participation', 2).map((g) => [g.experiment, g.algorithm, g.seed]));
  t.throws(() => gridOf('fedau-participation', 0), { instanceOf: RangeError });
  t.throws(() => gridOf('nope', 1), { message: /unknown preset "nope"/ });
});
