// docs/algorithms.md §2.5, server-coordinated: n = 26 clients, f = 5 of them Byzantine (h = 21 honest), softmax regression
// (C = 10, F = 20, 210 parameters) on the Gaussian mixture (class means 0.6·N(0, I), unit noise), 200 samples per
// honest client with Dir(1) label proportions, batch 25, 300 steps. Server-coordinated MoNNA (§2.3): each honest
// worker keeps m ← 0.9·m + 0.1·g at the global x and sends −m (one local step at lr 1, so every update points the way
// to move); the server sets x ← x + γ_t·F(NNM(−m…)) with γ_t = 0.5/(1 + t/50), recomputed every step. The five
// Byzantine clients all send the same vector (§2.2), built from the round's 21 honest updates; with no attack they
// send nothing (the rules still declare f = 5). Headline: test accuracy / loss of the last iterate on the task's
// 10,000-row class-balanced test set, loss capped at 99 (a diverged run, as §2.5 writes it).
// Expected (§2.5 table): averaging collapses under scaled SF (.001), ALIE (.505) and FOE (.000); NNM + CWTM ≥ .757
// under every attack.
import type { PipelineSpec } from '../../shared/aggregation/pipeline.js';
import type { RobustSpec } from '../../shared/aggregation/robust.js';
import { runSync, type SyncAttack } from '../engine/sync.js';
import { createSoftmaxTask } from '../tasks/softmax.js';
import type { RunResult } from '../types.js';
import type { Preset } from './preset.js';

export const MONNA_ATTACKS = {
  honest: 21,
  byzantine: 5,
  samplesPerClient: 200,
  classes: 10,
  features: 20,
  alpha: 1,
  batchSize: 25,
  momentum: 0.9,
  gamma0: 0.5,
  decay: 50,
  steps: 300,
  logEvery: 25,
  /** §2.5: "Loss is capped at 99 (it diverged)". */
  lossCap: 99,
} as const;

/** Experiment suffix → the engine's attack. */
const attacks: Record<string, SyncAttack> = {
  none: 'none',
  sf: 'sign-flip',
  'scaled-sf': 'scaled-sign-flip',
  'alie-opt': 'alie',
  'foe-opt': 'foe',
  lf: 'label-flip',
  mimic: 'mimic',
};

const f = MONNA_ATTACKS.byzantine;
/** §2.5's columns as the shared RobustSpec (CC: τ = 1, L = 3 per the table header). */
const rules: Record<string, RobustSpec> = {
  avg: { mix: 'none', rule: 'mean', f },
  cwmed: { mix: 'none', rule: 'median', f },
  cwtm: { mix: 'none', rule: 'trimmed-mean', f },
  krum: { mix: 'none', rule: 'krum', f },
  gm: { mix: 'none', rule: 'geomed', f },
  cc: { mix: 'none', rule: 'cclip', f, tau: 1, iters: 3 },
  'nnm+cwtm': { mix: 'nnm', rule: 'trimmed-mean', f },
  'nnm+krum': { mix: 'nnm', rule: 'krum', f },
};

export interface MonnaOverrides {
  /** Server steps (default 300; the CI test runs fewer). */
  steps?: number;
}

/** One (experiment, algorithm, seed) run of the grid, with the step count overridable for CI-sized tests. */
export function runMonna(experiment: string, algorithm: string, seed: number, overrides: MonnaOverrides = {}): RunResult {
  const attack = attacks[experiment.replace(/^monna-attacks\//, '')];
  if (attack === undefined || !experiment.startsWith('monna-attacks/')) throw new RangeError(`monna-attacks: unknown experiment ${experiment}`);
  const robust = rules[algorithm];
  if (robust === undefined) throw new RangeError(`monna-attacks: unknown algorithm ${algorithm}`);
  const steps = overrides.steps ?? MONNA_ATTACKS.steps;
  const P = MONNA_ATTACKS;
  const task = createSoftmaxTask({ numClients: P.honest, samplesPerClient: P.samplesPerClient, classes: P.classes, features: P.features, alpha: P.alpha, seed });
  const pipeline: PipelineSpec = { weighting: 'uniform', robust, server: { optimizer: 'sgd', lr: 1 } };
  const r = runSync({
    experiment, algorithm, seed, task,
    rounds: steps,
    participation: null,
    // One local step at lr 1: the update is exactly −m, the worker's momentum negated (§2.3 (b)).
    local: { steps: 1, lr: 1, batchSize: P.batchSize, momentum: P.momentum },
    clientMomentum: true,
    serverLr: (t) => P.gamma0 / (1 + t / P.decay),
    pipeline,
    byzantine: { clients: P.byzantine, attack },
    logEvery: P.logEvery,
  });
  // The last evaluation; the engine stops a run whose loss is no longer finite (its row's loss is null).
  const last = r.rows.at(-1);
  const finalLoss = last === undefined ? null : last.loss === null ? P.lossCap : Math.min(last.loss, P.lossCap);
  return { ...r, finalLoss };
}

export const monnaAttacks: Preset = {
  name: 'monna-attacks',
  description: 'Robust rules with worker momentum under Byzantine attacks, server-coordinated MoNNA (docs/algorithms.md §2.5)',
  experiments: Object.keys(attacks).map((a) => `monna-attacks/${a}`),
  algorithms: Object.keys(rules),
  lossLabel: 'test loss of the last iterate (capped at 99)',
  heavyRuns: true,
  run(experiment: string, algorithm: string, seed: number): RunResult {
    return runMonna(experiment, algorithm, seed);
  },
};
