// docs/algorithms.md §1.5, exactly: N = 100 clients, d = 10, quadratic f_n(x) = ½‖x − c_n‖² with c_n = 3(2z_n − 1)e₁ +
// 0.5·N(0, I), participation correlated with the data, p_n = 0.02 + 0.48·z_n², I = 5 local SGD steps with γ = 0.1
// and N(0, I) gradient noise, T = 3000 rounds, η = 1 (1/mean p for average-all). The headline loss is
// ½‖x̄ − x*‖² of the iterate average over the last 1500 rounds. Expected: FedAU ≈ known 1/p ≈ 0.00x; FedAvg ≈ 0.7–0.86.
import type { PipelineSpec } from '../../shared/aggregation/pipeline.js';
import { createParticipation, participationSeed, type ParticipationSpec } from '../../shared/data/participation.js';
import { runSync } from '../engine/sync.js';
import { createQuadraticTask } from '../tasks/quadratic.js';
import type { RunResult } from '../types.js';
import type { Preset } from './preset.js';

const N = 100;
const DIM = 10;
const ROUNDS = 3000;

const patterns: Record<string, (p: number[]) => ParticipationSpec> = {
  bernoulli: (p) => ({ kind: 'bernoulli', p }),
  'markov-0.05': (p) => ({ kind: 'markov', p, q: 0.05 }),
  'cyclic-100': (p) => ({ kind: 'cyclic', p, period: 100 }),
};

const algorithms = ['fedau', 'known-1/p', 'avg-participating', 'avg-all'] as const;

function pipeline(algorithm: string, rates: number[]): PipelineSpec {
  const robust = { mix: 'none', rule: 'mean', f: 0 } as const;
  switch (algorithm) {
    case 'fedau':
      return { weighting: 'fedau', fedauCutoff: null, numClients: N, robust, server: { optimizer: 'sgd', lr: 1 } };
    case 'known-1/p':
      return { weighting: 'known', numClients: N, rates, robust, server: { optimizer: 'sgd', lr: 1 } };
    case 'avg-participating':
      return { weighting: 'uniform', robust, server: { optimizer: 'sgd', lr: 1 } };
    case 'avg-all': {
      const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
      return { weighting: 'all', numClients: N, robust, server: { optimizer: 'sgd', lr: 1 / mean } };
    }
    default:
      throw new RangeError(`fedau-participation: unknown algorithm ${algorithm}`);
  }
}

export const fedauParticipation: Preset = {
  name: 'fedau-participation',
  description: 'FedAU vs FedAvg under data-correlated Bernoulli, Markov and cyclic participation (docs/algorithms.md §1.5)',
  experiments: Object.keys(patterns).map((p) => `fedau-participation/${p}`),
  algorithms,
  lossLabel: '½‖x̄ − x*‖², iterates averaged over the last half',
  run(experiment: string, algorithm: string, seed: number): RunResult {
    const pattern = experiment.replace(/^fedau-participation\//, '');
    const make = patterns[pattern];
    if (make === undefined) throw new RangeError(`fedau-participation: unknown experiment ${experiment}`);
    const task = createQuadraticTask({ numClients: N, dim: DIM, seed });
    const rates = Array.from(task.z, (z) => 0.02 + 0.48 * z * z);
    return runSync({
      experiment, algorithm, seed, task,
      rounds: ROUNDS,
      participation: createParticipation(make(rates), N, participationSeed(seed)),
      local: { steps: 5, lr: 0.1, batchSize: 1, momentum: 0 },
      pipeline: pipeline(algorithm, rates),
      logEvery: 50,
      averageTail: 0.5,
    });
  },
};
