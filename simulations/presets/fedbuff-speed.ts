// docs/algorithms.md §3.5: N = 100 clients × 100 samples of the softmax / Gaussian-mixture task (Dir(1) label skew),
// Q = 10 local SGD steps (lr 0.1, batch 16), η_g = 1; each client's mean job duration ~ LogNormal(0, 1), times
// U[0.8, 1.2] per job. Sync FedAvg samples M = 10 clients per round (a round lasts as long as its slowest client);
// the asynchronous methods keep C = 10 in flight, drawn uniformly from the idle clients. Target: test loss ≤ the
// centralised optimum's + 0.03 (per seed); each run stops at the target or at virtual time TIME_CAP. Expected
// (§3.5): FedBuff K = 5 reaches the target several times (≈ 5×) sooner than sync FedAvg.
import { runAsync, type AsyncAlgorithm } from '../engine/async.js';
import { createSpeeds } from '../engine/speeds.js';
import { runSync } from '../engine/sync.js';
import { centralisedOptimum, createSoftmaxTask, type SoftmaxTask } from '../tasks/softmax.js';
import type { LocalOptions, MetricRow, RunResult } from '../types.js';
import type { Preset } from './preset.js';

export const FEDBUFF_SPEED = {
  numClients: 100,
  samplesPerClient: 100,
  alpha: 1,
  concurrency: 10,
  /** Virtual-time cap of every run. */
  timeCap: 1000,
  /** Sync rounds simulated (then cut at the target or the time cap); ~4 time units per round, so 300 cover the cap. */
  syncRounds: 300,
  targetMargin: 0.03,
} as const;

const local: LocalOptions = { steps: 10, lr: 0.1, batchSize: 16, momentum: 0 };
const poly = { kind: 'poly', exponent: 0.5 } as const;

const asyncAlgorithms: Record<string, AsyncAlgorithm> = {
  'fedbuff-k5': { kind: 'fedbuff', buffer: 5, staleness: poly },
  'fedbuff-k10': { kind: 'fedbuff', buffer: 10, staleness: poly },
  'fedbuff-k5-nostale': { kind: 'fedbuff', buffer: 5, staleness: { kind: 'constant' } },
  fedasync: { kind: 'fedbuff', buffer: 1, staleness: poly },
  'fedfix-0.5': { kind: 'fedfix', interval: 0.5 },
  'fedfix-1.0': { kind: 'fedfix', interval: 1 },
};
const algorithms = ['sync-fedavg', ...Object.keys(asyncAlgorithms)];

export interface FedBuffSpeedSetup {
  task: SoftmaxTask;
  /** Centralised optimum's test loss (softmax.ts centralisedOptimum) and the target = that + 0.03. */
  optimumLoss: number;
  target: number;
}

// The centralised optimum costs ~a second; every algorithm of a seed shares it (per thread).
const optimumCache = new Map<number, number>();

export function fedbuffSpeedSetup(seed: number): FedBuffSpeedSetup {
  const task = createSoftmaxTask({ numClients: FEDBUFF_SPEED.numClients, samplesPerClient: FEDBUFF_SPEED.samplesPerClient, alpha: FEDBUFF_SPEED.alpha, seed });
  let optimumLoss = optimumCache.get(seed);
  if (optimumLoss === undefined) {
    optimumLoss = centralisedOptimum(task).loss;
    optimumCache.set(seed, optimumLoss);
  }
  return { task, optimumLoss, target: optimumLoss + FEDBUFF_SPEED.targetMargin };
}

/** Cut a sync run's rows at the first one reaching the target or passing the time cap (async runs stop there). */
function cut(r: RunResult, target: number): RunResult {
  const rows: MetricRow[] = [];
  for (const row of r.rows) {
    if (row.time > FEDBUFF_SPEED.timeCap) break;
    rows.push(row);
    if (row.loss !== null && row.loss <= target) break;
  }
  const last = rows.at(-1);
  const rounds = last?.step ?? 0;
  return { ...r, rows, finalLoss: last?.loss ?? null, finalAccuracy: last?.accuracy ?? null, updates: rounds * FEDBUFF_SPEED.concurrency };
}

export const fedbuffSpeed: Preset = {
  name: 'fedbuff-speed',
  description: 'sync FedAvg vs FedBuff (K = 5, 10), FedAsync and FedFix under log-normal client speeds: virtual time to a target loss (docs/algorithms.md §3.5)',
  experiments: ['fedbuff-speed/lognormal'],
  algorithms,
  lossLabel: 'test loss at the target or the time cap (target = centralised optimum + 0.03)',
  heavyRuns: true,
  run(experiment: string, algorithm: string, seed: number): RunResult {
    if (experiment !== 'fedbuff-speed/lognormal') throw new RangeError(`fedbuff-speed: unknown experiment ${experiment}`);
    const { task, target } = fedbuffSpeedSetup(seed);
    const duration = createSpeeds({ kind: 'log-normal', mu: 0, sigma: 1, jitter: [0.8, 1.2] }, FEDBUFF_SPEED.numClients, seed);
    const server = { optimizer: 'sgd', lr: 1 } as const;
    if (algorithm === 'sync-fedavg') {
      const r = runSync({
        experiment, algorithm, seed, task,
        rounds: FEDBUFF_SPEED.syncRounds,
        participation: null,
        clientsPerRound: FEDBUFF_SPEED.concurrency,
        local,
        pipeline: { weighting: 'uniform', robust: { mix: 'none', rule: 'mean', f: 0 }, server },
        logEvery: 1,
        target,
        stopAtTarget: true,
        maxTime: FEDBUFF_SPEED.timeCap,
        duration,
      });
      return cut(r, target);
    }
    const algo = asyncAlgorithms[algorithm];
    if (algo === undefined) throw new RangeError(`fedbuff-speed: unknown algorithm ${algorithm}`);
    const r = runAsync({
      experiment, algorithm, seed, task,
      concurrency: FEDBUFF_SPEED.concurrency,
      algo,
      local,
      server,
      duration,
      maxTime: FEDBUFF_SPEED.timeCap,
      logEvery: 1, // every server step, as every sync round: time to target is exact, not on a grid
      target,
      stopAtTarget: true,
    });
    const { steps: _s, arrivals: _a, dispatched: _d, endTime: _e, ...base } = r;
    return base;
  },
};
