// sim.json's extensions (docs/sim-config.md): a fixed ALIE/FOE z (`byzantine.z`), worker momentum kept across rounds
// (`local.keepMomentum`), a sync server step-size decay (`lrDecay`) and peer-to-peer MoNNA/NNA algorithms
// (`mode: "p2p"`). Each field's refusals are one exact line; each feature equals the direct engine call it stands for.
import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PipelineSpec } from '../../shared/aggregation/pipeline.js';
import { parseSimConfig, SimConfigError } from '../../simulations/config.js';
import { runP2P, type P2PRunSpec } from '../../simulations/engine/p2p.js';
import { runSync, type SyncRunSpec } from '../../simulations/engine/sync.js';
import { runMonna } from '../../simulations/presets/monna-attacks.js';
import { presetFromConfig } from '../../simulations/presets/from-config.js';
import { simulate } from '../../simulations/runner.js';
import { createQuadraticTask } from '../../simulations/tasks/quadratic.js';
import { createSoftmaxTask } from '../../simulations/tasks/softmax.js';
import type { LearningTask } from '../../simulations/types.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const base = { name: 'x', task: { kind: 'quadratic' }, clients: 10, rounds: 5, algorithms: [{ name: 'a' }] };
const p2p = { name: 'p', mode: 'p2p' };

test('the new fields refuse bad values with one exact line naming the field', (t) => {
  const cases: [unknown, string, string][] = [
    // byzantine.z
    [{ ...base, byzantine: { clients: 2, attack: 'sign-flip', z: 1 } }, 'byzantine.z', "only for attack 'alie' or 'foe', got 'sign-flip'"],
    [{ ...base, experiments: [{ name: 'e', byzantine: { clients: 1, attack: 'mimic', z: 2 } }] }, 'experiments.0.byzantine.z', "only for attack 'alie' or 'foe', got 'mimic'"],
    // local.keepMomentum
    [{ ...base, maxTime: 5, local: { momentum: 0.9, keepMomentum: true }, algorithms: [{ name: 'a' }, { name: 'b', mode: 'async', concurrency: 2, buffer: 1 }] },
      'local.keepMomentum', 'async algorithms do not keep per-client momentum (engine/async.ts has none); drop it or the async algorithms'],
    [{ ...base, local: { momentum: 0.9, keepMomentum: true }, algorithms: [p2p] }, 'local.keepMomentum', 'only for sync algorithms (p2p nodes always keep their own momentum)'],
    [{ ...base, local: { keepMomentum: true } }, 'local.keepMomentum', 'needs local.momentum > 0 (with β = 0 there is no momentum to keep)'],
    // lrDecay
    [{ ...base, maxTime: 5, algorithms: [{ name: 'b', mode: 'async', concurrency: 2, buffer: 1, lrDecay: 5 }] }, 'algorithms.0.lrDecay', 'unknown key'],
    [{ ...base, algorithms: [p2p, { ...p2p, name: 'q', lrDecayEvery: 5 }] }, 'algorithms.1.lrDecayEvery', 'only with lrDecay'],
    // mode p2p
    [{ ...base, rounds: undefined, algorithms: [p2p] }, 'rounds', 'required when an algorithm has mode p2p'],
    [{ ...base, participation: { kind: 'bernoulli', p: 0.5 }, algorithms: [p2p] }, 'participation', 'p2p algorithms have every node in every round; drop participation or the p2p algorithms'],
    [{ ...base, experiments: [{ name: 'e', speeds: { kind: 'constant', value: 2 } }], algorithms: [p2p] }, 'experiments.0.speeds', 'p2p rounds all take 1 (their virtual time is the round count); drop speeds or the p2p algorithms'],
    [{ ...base, byzantine: { clients: 2, attack: 'label-flip' }, algorithms: [p2p] }, 'byzantine.attack', "'label-flip' is not simulated for p2p algorithms (they take none, sign-flip, scaled-sign-flip, alie, foe, mimic)"],
    [{ ...base, algorithms: [{ ...p2p, f: 5 }] }, 'algorithms.0.f', 'NNA with f = 5 needs more than 10 received vectors, but experiment "default" gives 10 (10 honest + 0 Byzantine)'],
    [{ ...base, clients: 4, experiments: [{ name: 'ok' }, { name: 'many', byzantine: { clients: 4, attack: 'sign-flip' } }], algorithms: [p2p] },
      'algorithms.0.f', 'NNA with f = 4 (the experiment\'s Byzantine clients) needs more than 8 received vectors, but experiment "many" gives 8 (4 honest + 4 Byzantine)'],
    [{ ...base, clients: 3, byzantine: { clients: 4, attack: 'alie' }, algorithms: [{ ...p2p, f: 0 }] },
      'byzantine.z', 'required for p2p algorithms here: the default z = Φ⁻¹((n − s)/n) needs s = ⌊n/2 + 1⌋ − f ≥ 1, but n = 7, f = 4 give s = 0'],
    [{ ...base, averageTail: 0.5, algorithms: [p2p] }, 'averageTail', 'only for sync algorithms'],
    [{ ...base, maxTime: 5, byzantine: { clients: 1, attack: 'sign-flip' }, algorithms: [p2p, { name: 'b', mode: 'async', concurrency: 2, buffer: 1 }] },
      'byzantine', 'Byzantine clients are simulated for sync and p2p algorithms only'],
    [{ ...base, algorithms: [{ ...p2p, weighting: 'uniform' }] }, 'algorithms.0.weighting', 'unknown key'],
    [{ ...base, byzantine: { clients: 1, attack: 'foe' }, algorithms: [p2p, { name: 's', weighting: 'samples' }] }, 'algorithms.1.weighting', "Byzantine clients (byzantine) need 'uniform', got 'samples'"],
  ];
  for (const [cfg, field, problem] of cases) {
    const e = t.throws(() => parseSimConfig(cfg), { instanceOf: SimConfigError }, field);
    if (e === undefined) continue;
    t.is(e.field, field);
    t.is(e.message, `sim.json: ${field}: ${problem}`);
  }
  // zod's own range messages, still one line naming the field.
  const ranges: [unknown, string][] = [
    [{ ...base, byzantine: { clients: 1, attack: 'alie', z: 0 } }, 'byzantine.z'],
    [{ ...base, algorithms: [{ name: 'a', lrDecay: -1 }] }, 'algorithms.0.lrDecay'],
    [{ ...base, algorithms: [{ ...p2p, momentum: 1 }] }, 'algorithms.0.momentum'],
    [{ ...base, algorithms: [{ ...p2p, lrDecay: 5, lrDecayEvery: 0 }] }, 'algorithms.0.lrDecayEvery'],
    [{ ...base, algorithms: [{ ...p2p, f: 1.5 }] }, 'algorithms.0.f'],
    [{ ...base, algorithms: [{ ...p2p, evaluate: 'all' }] }, 'algorithms.0.evaluate'],
    [{ ...base, local: { keepMomentum: 'yes' } }, 'local.keepMomentum'],
  ];
  for (const [cfg, field] of ranges) {
    const e = t.throws(() => parseSimConfig(cfg), { instanceOf: SimConfigError }, field);
    if (e === undefined) continue;
    t.is(e.field, field, e.message);
    t.false(e.message.includes('\n'));
  }
});

test('accepted: p2p with Byzantine nodes needs no uniform weighting; defaults fill in and parse again to themselves', (t) => {
  const cfg = parseSimConfig({ ...base, byzantine: { clients: 3, attack: 'alie', z: 1.5 }, algorithms: [p2p, { name: 'u', weighting: 'uniform', lrDecay: 20 }] });
  t.deepEqual(cfg.algorithms[0], { name: 'p', mode: 'p2p', evaluate: 'node0' });
  t.deepEqual(cfg.byzantine, { clients: 3, attack: 'alie', z: 1.5 });
  t.deepEqual(cfg.local, { steps: 5, lr: 0.1, batchSize: 16, momentum: 0 });
  t.deepEqual(parseSimConfig(JSON.parse(JSON.stringify(cfg))), cfg);
  // A mix of sync and p2p may average the sync tail; rounds only needs to be there.
  t.notThrows(() => parseSimConfig({ ...base, averageTail: 0.5, algorithms: [p2p, { name: 's' }] }));
  // label-flip is fine while no p2p algorithm is in the grid, and with Byzantine clients set to 0.
  t.notThrows(() => parseSimConfig({ ...base, byzantine: { clients: 2, attack: 'label-flip' }, algorithms: [{ name: 's', weighting: 'uniform' }] }));
  t.notThrows(() => parseSimConfig({ ...base, byzantine: { clients: 0, attack: 'label-flip' }, algorithms: [p2p] }));
});

// --- byzantine.z ---------------------------------------------------------------------------------------------

/** A quadratic task that records every local update it writes and every model it evaluates. */
function recorded(seed: number): { task: LearningTask; updates: Float32Array[]; models: Float32Array[] } {
  const quad = createQuadraticTask({ numClients: 2, dim: 3, seed, gradientNoise: 1 });
  const updates: Float32Array[] = [];
  const models: Float32Array[] = [];
  const task: LearningTask = {
    ...quad,
    localUpdate: (client, x, opts, rng, out, momentum) => {
      const r = quad.localUpdate(client, x, opts, rng, out, momentum);
      updates.push(Float32Array.from(out));
      return r;
    },
    evaluate: (x) => {
      models.push(Float32Array.from(x));
      return quad.evaluate(x);
    },
  };
  return { task, updates, models };
}

const meanPipeline: PipelineSpec = { weighting: 'uniform', robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1 } };

function oneRound(byzantine: SyncRunSpec['byzantine']): { updates: Float32Array[]; x0: Float32Array; x1: Float32Array } {
  const { task, updates, models } = recorded(3);
  runSync({
    experiment: 'e', algorithm: 'a', seed: 4, task, rounds: 1, participation: null,
    local: { steps: 2, lr: 0.3, batchSize: 1, momentum: 0 }, pipeline: meanPipeline, logEvery: 1,
    ...(byzantine !== undefined && { byzantine }),
  });
  return { updates, x0: models[0]!, x1: models[1]! };
}

test('byzantine.z: 2 honest clients, the mean step moves by (u1 + u2 + f·b)/(2 + f) with b = μ + zσ (alie) or (1 − z)μ (foe)', (t) => {
  for (const [attack, z, f] of [['alie', 1.5, 1], ['alie', 0.25, 3], ['foe', 3, 2], ['foe', 0.5, 1]] as const) {
    const { updates, x0, x1 } = oneRound({ clients: f, attack, z });
    t.is(updates.length, 2);
    const [u1, u2] = updates as [Float32Array, Float32Array];
    for (let j = 0; j < 3; j++) {
      const mu = (u1[j]! + u2[j]!) / 2;
      const sigma = Math.abs(u1[j]! - u2[j]!) / Math.SQRT2; // the unbiased std of two values
      const b = attack === 'alie' ? mu + z * sigma : (1 - z) * mu;
      const expected = x0[j]! + (u1[j]! + u2[j]! + f * b) / (2 + f);
      t.true(Math.abs(x1[j]! - expected) <= 1e-5 * Math.max(1, Math.abs(expected)), `${attack} z ${z} f ${f} coordinate ${j}: ${x1[j]} vs ${expected}`);
    }
  }
  // Without z the line search against the mean picks the largest z on its grid (16), not 1.5.
  const fixed = oneRound({ clients: 1, attack: 'alie', z: 1.5 });
  const searched = oneRound({ clients: 1, attack: 'alie' });
  const sixteen = oneRound({ clients: 1, attack: 'alie', z: 16 });
  t.deepEqual(searched.updates, fixed.updates);
  t.notDeepEqual(searched.x1, fixed.x1);
  t.deepEqual(searched.x1, sixteen.x1);
});

test('byzantine.z in sim.json: the sync run equals runSync with that z and differs from the line search', (t) => {
  const cfg = {
    name: 'z', task: { kind: 'quadratic', dim: 5 }, clients: 8, rounds: 30, logEvery: 10,
    local: { steps: 3, lr: 0.1, batchSize: 1 },
    byzantine: { clients: 2, attack: 'alie', z: 1 },
    experiments: [{ name: 'fixed' }, { name: 'searched', byzantine: { clients: 2, attack: 'alie' } }],
    algorithms: [{ name: 'cwtm', weighting: 'uniform', robust: { rule: 'trimmed-mean', f: 2 } }],
  };
  const preset = presetFromConfig(parseSimConfig(cfg));
  const fixed = preset.run('z/fixed', 'cwtm', 1);
  const searched = preset.run('z/searched', 'cwtm', 1);
  const direct = runSync({
    experiment: 'z/fixed', algorithm: 'cwtm', seed: 1, task: createQuadraticTask({ numClients: 8, dim: 5, seed: 1, gradientNoise: 1 }),
    rounds: 30, participation: null, local: { steps: 3, lr: 0.1, batchSize: 1, momentum: 0 }, logEvery: 10, averageTail: 0,
    pipeline: { weighting: 'uniform', fedauCutoff: null, numClients: 8, robust: { mix: 'none', rule: 'trimmed-mean', f: 2 }, server: { optimizer: 'sgd', lr: 1, momentum: 0 } },
    byzantine: { clients: 2, attack: 'alie', z: 1 },
  });
  t.deepEqual(fixed, direct);
  t.notDeepEqual(fixed.rows.map((r) => r.loss), searched.rows.map((r) => r.loss));
});

// --- local.keepMomentum and lrDecay --------------------------------------------------------------------------

const softmaxCfg = {
  name: 'm', task: { kind: 'softmax', samplesPerClient: 40, testSamples: 500 }, clients: 6, rounds: 12, logEvery: 4,
  local: { steps: 2, lr: 0.2, batchSize: 8, momentum: 0.9 },
  algorithms: [{ name: 'avg', weighting: 'uniform' }, { name: 'decay', weighting: 'uniform', lrDecay: 3, server: { optimizer: 'sgd', lr: 0.5 } }],
};

function directSoftmax(algorithm: string, extra: Partial<SyncRunSpec>, lr = 1): ReturnType<typeof runSync> {
  return runSync({
    experiment: 'm/default', algorithm, seed: 2, task: createSoftmaxTask({ numClients: 6, samplesPerClient: 40, testSamples: 500, classes: 10, features: 20, alpha: 1, seed: 2 }),
    rounds: 12, participation: null, local: { steps: 2, lr: 0.2, batchSize: 8, momentum: 0.9 }, logEvery: 4, averageTail: 0,
    pipeline: { weighting: 'uniform', fedauCutoff: null, numClients: 6, robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr, momentum: 0 } },
    ...extra,
  });
}

test('local.keepMomentum: changes the run and equals runSync({ clientMomentum: true })', (t) => {
  const off = presetFromConfig(parseSimConfig(softmaxCfg)).run('m/default', 'avg', 2);
  const on = presetFromConfig(parseSimConfig({ ...softmaxCfg, local: { ...softmaxCfg.local, keepMomentum: true } })).run('m/default', 'avg', 2);
  t.deepEqual(off, directSoftmax('avg', {}));
  t.deepEqual(on, directSoftmax('avg', { clientMomentum: true }));
  t.notDeepEqual(on.rows.map((r) => r.loss), off.rows.map((r) => r.loss));
});

test('lrDecay: equals runSync with serverLr γ_t = 1/(1 + t/τ) and differs from no decay', (t) => {
  const preset = presetFromConfig(parseSimConfig(softmaxCfg));
  const decayed = preset.run('m/default', 'decay', 2);
  t.deepEqual(decayed, directSoftmax('decay', { serverLr: (r) => 1 / (1 + r / 3) }, 0.5));
  t.notDeepEqual(decayed.rows.map((r) => r.loss), directSoftmax('decay', {}, 0.5).rows.map((r) => r.loss));
});

test('keepMomentum + lrDecay restate monna-attacks (server-coordinated MoNNA): the same rows as runMonna', (t) => {
  const P = { honest: 21, byzantine: 5, steps: 10 };
  const cfg = parseSimConfig({
    name: 'monna-attacks',
    task: { kind: 'softmax', samplesPerClient: 200, classes: 10, features: 20, alpha: 1 },
    clients: P.honest, rounds: P.steps, logEvery: 25,
    local: { steps: 1, lr: 1, batchSize: 25, momentum: 0.9, keepMomentum: true },
    experiments: [{ name: 'scaled-sf', byzantine: { clients: P.byzantine, attack: 'scaled-sign-flip' } }, { name: 'alie-opt', byzantine: { clients: P.byzantine, attack: 'alie' } }],
    algorithms: [{ name: 'nnm+cwtm', weighting: 'uniform', robust: { mix: 'nnm', rule: 'trimmed-mean', f: 5 }, lrDecay: 50, server: { optimizer: 'sgd', lr: 0.5 } }],
  });
  const preset = presetFromConfig(cfg);
  for (const experiment of ['monna-attacks/scaled-sf', 'monna-attacks/alie-opt']) {
    const mine = preset.run(experiment, 'nnm+cwtm', 1);
    const theirs = runMonna(experiment, 'nnm+cwtm', 1, { steps: P.steps });
    t.is(mine.rows.length, 2);
    t.deepEqual(mine.rows, theirs.rows, experiment);
  }
});

// --- mode p2p ------------------------------------------------------------------------------------------------

test('a p2p config runs runP2P with the spec it describes (identical rows, no model copies in the result)', (t) => {
  const cfg = parseSimConfig({
    name: 'pp', task: { kind: 'quadratic', dim: 4, gradientNoise: 0.5 }, clients: 7, rounds: 20, logEvery: 5, target: 3,
    local: { lr: 0.2, batchSize: 1, momentum: 0.5 },
    byzantine: { clients: 2, attack: 'alie', z: 1.2 },
    algorithms: [
      { name: 'monna', mode: 'p2p', momentum: 0.9, lr: 0.3, lrDecay: 10, lrDecayEvery: 4, evaluate: 'mean' },
      { name: 'dsgd', mode: 'p2p', f: 0 },
    ],
  });
  const preset = presetFromConfig(cfg);
  const monna = preset.run('pp/default', 'monna', 3);
  const spec: P2PRunSpec = {
    experiment: 'pp/default', algorithm: 'monna', seed: 3, task: createQuadraticTask({ numClients: 7, dim: 4, seed: 3, gradientNoise: 0.5 }),
    byzantine: { nodes: 2, attack: 'alie', z: 1.2 }, f: 2, rounds: 20, lr: 0.3, lrDecay: 10, lrDecayEvery: 4, momentum: 0.9, batchSize: 1, logEvery: 5, evaluate: 'mean', target: 3,
  };
  const { models, ...direct } = runP2P(spec);
  t.is(models.length, 7);
  t.deepEqual(monna, direct);
  t.false('models' in monna);
  t.deepEqual(monna.rows.map((r) => [r.step, r.time]), [[0, 0], [5, 5], [10, 10], [15, 15], [20, 20]]);
  // Defaults: lr and momentum from local, f given as 0, rows of honest node 0.
  const dsgd = preset.run('pp/default', 'dsgd', 3);
  const { models: _m, ...dsgdDirect } = runP2P({ ...spec, algorithm: 'dsgd', task: createQuadraticTask({ numClients: 7, dim: 4, seed: 3, gradientNoise: 0.5 }), f: 0, lr: 0.2, momentum: 0.5, lrDecay: undefined, lrDecayEvery: undefined, evaluate: 'node0' });
  t.deepEqual(dsgd, dsgdDirect);
  t.notDeepEqual(dsgd.rows.map((r) => r.loss), monna.rows.map((r) => r.loss));
});

test('p2p under scaled sign flip: declared f = 0 (averaging) ends clearly worse than MoNNA with f = the Byzantine count', (t) => {
  const cfg = parseSimConfig({
    name: 'sf', task: { kind: 'softmax', samplesPerClient: 100, alpha: 1, testSamples: 2000 }, clients: 8, rounds: 100, logEvery: 25,
    local: { lr: 0.75, batchSize: 25, momentum: 0.9 },
    byzantine: { clients: 2, attack: 'scaled-sign-flip' },
    experiments: [{ name: 'attack' }, { name: 'clean', byzantine: null }],
    algorithms: [{ name: 'dsgd', mode: 'p2p', f: 0, lrDecay: 50 }, { name: 'monna', mode: 'p2p', lrDecay: 50 }],
  });
  const preset = presetFromConfig(cfg);
  const dsgd = preset.run('sf/attack', 'dsgd', 1);
  const monna = preset.run('sf/attack', 'monna', 1);
  const clean = preset.run('sf/clean', 'dsgd', 1);
  t.log(`accuracy: D-SGD ${dsgd.finalAccuracy}, MoNNA ${monna.finalAccuracy}, clean D-SGD ${clean.finalAccuracy}; loss: ${dsgd.finalLoss} vs ${monna.finalLoss}`);
  t.true(monna.finalAccuracy! > 0.6, `MoNNA ${monna.finalAccuracy}`);
  t.true(monna.finalAccuracy! > clean.finalAccuracy! - 0.05, `MoNNA ${monna.finalAccuracy} vs clean ${clean.finalAccuracy}`);
  t.true(dsgd.finalAccuracy! < 0.25, `D-SGD ${dsgd.finalAccuracy}`);
  t.true(dsgd.finalLoss === null || dsgd.finalLoss > monna.finalLoss! + 0.5, `loss ${dsgd.finalLoss} vs ${monna.finalLoss}`);
  t.is(monna.updates, 8 * 100);
});

const mixed = {
  name: 'mix', task: { kind: 'quadratic', dim: 4 }, clients: 6, rounds: 30, logEvery: 4, maxTime: 10, averageTail: 0.5,
  local: { steps: 2, lr: 0.2, batchSize: 1, momentum: 0.5 },
  byzantine: { clients: 1, attack: 'foe' },
  algorithms: [{ name: 'sync', weighting: 'uniform', robust: { rule: 'median', f: 1 } }, { name: 'p2p', mode: 'p2p', lr: 0.2 }],
};

test('sync beside p2p: maxTime cuts both at the same logged round, p2p reports its last row, threads give the same', async (t) => {
  const cfg = parseSimConfig(mixed);
  const one = await simulate({ preset: cfg.name, config: cfg, seeds: 2, threads: 1 });
  t.deepEqual(one.map((r) => `${r.algorithm}:${r.seed}`), ['sync:1', 'sync:2', 'p2p:1', 'p2p:2']);
  for (const r of one) {
    t.deepEqual(r.rows.map((row) => row.step), [0, 4, 8, 12], r.algorithm);
    if (r.algorithm === 'p2p') {
      t.is(r.finalLoss, r.rows.at(-1)!.loss);
      t.is(r.updates, 6 * 12);
    }
  }
  t.regex(presetFromConfig(cfg).lossLabel, /last iterate \(p2p\)$/);
  const two = await simulate({ preset: cfg.name, config: cfg, seeds: 2, threads: 2 });
  t.deepEqual(two, one);
});

test('p2p with stopAtTarget keeps the rows up to the first that reaches the target', (t) => {
  const cfg = { name: 'st', task: { kind: 'quadratic', dim: 4, gradientNoise: 0.2 }, clients: 6, rounds: 40, logEvery: 2, local: { lr: 0.3, batchSize: 1 }, algorithms: [{ name: 'p', mode: 'p2p' }] };
  const full = presetFromConfig(parseSimConfig(cfg)).run('st/default', 'p', 1);
  const target = full.rows[3]!.loss! + 1e-9;
  const k = full.rows.findIndex((r) => r.loss! <= target);
  t.true(k > 0 && k < full.rows.length - 1);
  const stopped = presetFromConfig(parseSimConfig({ ...cfg, target, stopAtTarget: true })).run('st/default', 'p', 1);
  t.deepEqual(stopped.rows, full.rows.slice(0, k + 1));
  t.is(stopped.timeToTarget, full.rows[k]!.time);
  t.is(stopped.finalLoss, full.rows[k]!.loss);
  t.is(stopped.updates, 6 * full.rows[k]!.step);
});

test('every JSON example in docs/sim-config.md parses', (t) => {
  const doc = readFileSync(path.join(root, 'docs/sim-config.md'), 'utf8');
  const blocks = [...doc.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]!);
  t.true(blocks.length >= 3);
  for (const block of blocks) t.notThrows(() => presetFromConfig(parseSimConfig(JSON.parse(block))), block.slice(0, 60));
});
