// The pure parts of `fedpool simulate --live`: the simulated workers' linear trainer against the real worker's local
// training, the layout transposition, the plan's refusals and its train.json, and the coordinator's /metrics parse.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { selectBackend } from '../../client/backends.js';
import { trainLocally, type ClassifyData } from '../../client/training/local-train.js';
import { LinearTrainer, toBundleLayout, toTaskLayout } from '../../cli/simulate-live/linear-trainer.js';
import { parseResources } from '../../cli/simulate-live/live.js';
import { participationSeed } from '../../shared/data/participation.js';
import { ASYNC_STEP_BOUND, LEASE_MS, planLive } from '../../cli/simulate-live/plan.js';
import { workerName } from '../../cli/simulate-live/host-messages.js';
import { packBundle } from '../../shared/model/bundle.js';
import { parseManifest } from '../../shared/model/manifest.js';
import { buildModel, saveToFiles } from '../../shared/model/tf-model.js';
import { getFlatWeights } from '../../shared/model/weights.js';
import { mulberry32 } from '../../shared/random.js';
import { parseSimConfig } from '../../simulations/config.js';

const F = 6;
const C = 3;

async function linearBundle(): Promise<{ bundle: Uint8Array; model: ReturnType<typeof buildModel>; manifest: ReturnType<typeof parseManifest> }> {
  await selectBackend('cpu');
  const manifest = parseManifest({ format: 'fedpool-model', version: 1, kind: 'classifier', input: { kind: 'features', dim: F }, output: { kind: 'classes', classes: C }, hidden: [], seed: 5 }, 'test');
  const model = buildModel(manifest);
  return { bundle: packBundle(await saveToFiles(model, manifest)), model, manifest };
}

function data(n: number): ClassifyData {
  const rng = mulberry32(9);
  const labels = Int32Array.from({ length: n }, (_, i) => i % C);
  const x = Float32Array.from({ length: n * F }, (_, j) => rng() * 2 - 1 + (labels[Math.floor(j / F)]! === j % F ? 1.5 : 0));
  return { kind: 'classify', x, labels };
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('layouts: TF.js kernel [F, C] + bias ↔ the simulator W [C, F] + b, inverse of each other', (t) => {
  const w = Float32Array.from({ length: F * C + C }, (_, i) => i);
  const x = toTaskLayout(w, F, C);
  t.is(x[1 * F + 2], w[2 * C + 1]); // W[k=1, j=2] = kernel[j=2, k=1]
  t.is(x[F * C + 2], w[F * C + 2]);
  t.deepEqual(toBundleLayout(x, F, C), w);
});

test('the simulated workers’ trainer computes the real worker’s local update on a linear classifier (full batch, with momentum)', async (t) => {
  const { bundle, model, manifest } = await linearBundle();
  const d = data(24);
  const initial = getFlatWeights(model);
  const momentum = Float32Array.from({ length: initial.length }, (_, i) => Math.sin(i) * 0.1);
  const opts = { steps: 4, batchSize: 24, lr: 0.5, momentum: 0.5, seed: 1 };
  const expected = await trainLocally(model, manifest, d, { ...opts, sendMomentum: true, initialMomentum: momentum });
  model.dispose();
  const trainer = new LinearTrainer({ delayMs: () => 0, keepMomentum: () => true });
  const got = await trainer.train({ hash: 'h', bundle, data: d, momentum, opts: { ...opts, sendMomentum: true } });
  t.true(maxDiff(got.update, expected.update) < 1e-5, `update differs by ${maxDiff(got.update, expected.update)}`);
  t.true(maxDiff(got.momentum!, expected.momentum!) < 1e-5);
  t.true(Math.abs(got.loss - expected.loss) < 1e-5, `${got.loss} vs ${expected.loss}`);
  t.is(got.samples, expected.samples);
  t.true(maxDiff(got.update, new Float32Array(got.update.length)) > 1e-3, 'it trained');
  // keepMomentum false: the lease's momentum is ignored, every job starts from zero.
  const fresh = await new LinearTrainer({ delayMs: () => 0, keepMomentum: () => false }).train({ hash: 'h', bundle, data: d, momentum, opts });
  const zero = await new LinearTrainer({ delayMs: () => 0, keepMomentum: () => true }).train({ hash: 'h', bundle, data: d, opts });
  t.deepEqual(fresh.update, zero.update);
  t.true(maxDiff(fresh.update, got.update) > 1e-4);
});

test('the trainer refuses models with hidden layers, non-retryably', async (t) => {
  await selectBackend('cpu');
  const manifest = parseManifest({ format: 'fedpool-model', version: 1, kind: 'classifier', input: { kind: 'features', dim: F }, output: { kind: 'classes', classes: C }, hidden: [4], seed: 5 }, 'test');
  const model = buildModel(manifest);
  const bundle = packBundle(await saveToFiles(model, manifest));
  model.dispose();
  const err = await t.throwsAsync(new LinearTrainer({ delayMs: () => 0, keepMomentum: () => true }).train({ hash: 'h2', bundle, data: data(4), opts: { steps: 1, batchSize: 4, lr: 0.1, momentum: 0, seed: 1 } }));
  t.true(err instanceof RangeError);
  t.regex(err!.message, /linear softmax classifiers only/);
});

const base = {
  name: 'live',
  task: { kind: 'softmax', samplesPerClient: 20 },
  clients: 10,
  rounds: 4,
  maxTime: 50,
  algorithms: [{ name: 'fedavg', weighting: 'uniform' }],
};

function plan(extra: Record<string, unknown>, seeds = 1): ReturnType<typeof planLive> {
  return planLive(parseSimConfig({ ...base, ...extra }), seeds, 'sim.json');
}

test('plan: what the coordinator cannot run is refused before anything starts, one line naming the field', (t) => {
  const refuse = (extra: Record<string, unknown>, message: string): void => {
    t.is(t.throws(() => plan(extra))?.message, `fedpool simulate --live: sim.json: ${message}`);
  };
  refuse({ task: { kind: 'quadratic' } }, "task.kind: live mode trains a real model on the coordinator; 'quadratic' has none (use softmax, mnist or spam)");
  refuse({ algorithms: [{ name: 'k', weighting: 'known' }], participation: { kind: 'bernoulli', p: 0.5 } }, "algorithms.0.weighting: 'known' is a simulator-only weighting; the coordinator has samples, uniform and fedau");
  refuse({ algorithms: [{ name: 'fix', mode: 'async', kind: 'fedfix', concurrency: 2, interval: 1 }] }, "algorithms.0.kind: 'fedfix' is simulator-only; the coordinator runs fedbuff (buffer 1 = FedAsync)");
  refuse({ byzantine: { clients: 2, attack: 'alie' } }, 'byzantine.z: live alie needs a fixed z (the line search against the defence is simulator-only)');
  refuse({ experiments: [{ name: 'a' }, { name: 'm', byzantine: { clients: 2, attack: 'mimic' } }] }, "experiments.1.byzantine.attack: 'mimic' is simulator-only; the coordinator's adversary has sign-flip, scaled-sign-flip, alie, foe and label-flip");
  refuse({ algorithms: [{ name: 'p', mode: 'p2p' }] }, "algorithms.0.mode: 'p2p' has no coordinator; live mode runs sync and async algorithms");
  refuse({ algorithms: [{ name: 'd', weighting: 'uniform', lrDecay: 10 }] }, 'algorithms.0.lrDecay: the coordinator has no server step-size schedule');
  refuse({ byzantine: { clients: 2, attack: 'sign-flip' }, algorithms: [{ name: 's', weighting: 'uniform', clientsPerRound: 4 }] }, "algorithms.0.clientsPerRound: not with Byzantine clients live (the coordinator's sampling would leave attackers out of some rounds)");
});

test('plan: one train.json per experiment × algorithm × seed, Byzantine workers after the honest ones, participation and attack carried over', (t) => {
  const p = plan({
    participation: { kind: 'markov', p: { min: 0.2, max: 0.6 }, q: 0.1 },
    experiments: [{ name: 'clean' }, { name: 'ssf', byzantine: { clients: 2, attack: 'scaled-sign-flip' } }, { name: 'alie', byzantine: { clients: 3, attack: 'alie', z: 1.5 } }],
    algorithms: [{ name: 'fedavg', weighting: 'uniform' }, { name: 'robust', weighting: 'uniform', robust: { mix: 'nnm', rule: 'trimmed-mean', f: 2 } }],
  }, 2);
  t.is(p.honest, 10);
  t.is(p.byzantine, 3);
  t.deepEqual(p.runs.map((r) => `${r.experiment} ${r.algorithm} ${r.seed}`).slice(0, 5), ['live/clean fedavg 1', 'live/clean fedavg 2', 'live/clean robust 1', 'live/clean robust 2', 'live/ssf fedavg 1']);
  const clean = p.runs[0]!.train;
  t.like(clean, { task: 'classify', mode: 'sync', rounds: 4, clientsPerRound: 10, data: { source: 'worker', name: 'sim-s1', clients: 10 } });
  t.is(clean.adversary, undefined);
  t.like(clean.participation, { kind: 'markov', q: 0.1, seed: participationSeed(1) });
  const rates = clean.participation!.p as number[];
  t.is(rates.length, 10);
  t.true(Math.abs(rates[0]! - 0.2) < 1e-12 && Math.abs(rates[9]! - 0.6) < 1e-12);
  const ssf = p.runs.find((r) => r.experiment === 'live/ssf' && r.algorithm === 'robust' && r.seed === 2)!.train;
  t.like(ssf, { clientsPerRound: 12, roundDeadlineMs: LEASE_MS, data: { name: 'sim-s2', clients: 12 }, adversary: { clients: [10, 11], attack: 'scaled-sign-flip' } });
  t.deepEqual((ssf.participation!.p as number[]).slice(10), [1, 1], 'Byzantine clients join every round');
  t.true(Math.abs(ssf.adversary!.scale - 4 / 2) < 1e-9, 'scale = expected honest per round (Σp = 4) / f');
  t.like(p.runs.find((r) => r.experiment === 'live/alie')!.train, { adversary: { clients: [10, 11, 12], attack: 'alie', scale: 1.5 } });
});

test('plan: async algorithms run until maxTime (the step count is only a bound)', (t) => {
  const p = plan({ algorithms: [{ name: 'fb', mode: 'async', concurrency: 4, buffer: 2, maxStaleness: 3 }] });
  t.like(p.runs[0]!.train, { mode: 'async', steps: ASYNC_STEP_BOUND, concurrency: 4, buffer: 2, maxStaleness: 3, aggregation: { weighting: 'uniform' } });
});

test('worker names sort in index order; /metrics figures are read from the Prometheus text', (t) => {
  const names = Array.from({ length: 12_000 }, (_, k) => workerName(k, 12_000));
  t.deepEqual([...names].sort(), names);
  t.is(workerName(7, 20), 'sim-0007');
  const r = parseResources('# HELP x\nfedpool_process_cpu_seconds_total 1.5\nfedpool_process_resident_memory_bytes 1048576\nfedpool_nodejs_heap_size_used_bytes 2e6\n');
  t.deepEqual(r, { cpuSeconds: 1.5, rssBytes: 1048576, heapBytes: 2e6 });
  t.throws(() => parseResources('nothing'), { message: /no fedpool_process_cpu_seconds_total/ });
});

test('docs/examples/live-population.json (the README’s live benchmark) parses and plans', (t) => {
  const json = JSON.parse(readFileSync(new URL('../../docs/examples/live-population.json', import.meta.url), 'utf8')) as unknown;
  const p = planLive(parseSimConfig(json), 1, 'live-population.json');
  t.deepEqual(p.runs.map((r) => r.algorithm), ['fedavg', 'fedau']);
  t.is(p.honest, 1000);
});
