// A parsed sim.json (../config.ts) as a `Preset`: experiments × algorithms with `run(experiment, algorithm, seed)`,
// so the runner, its threads, the report and the CLI treat it like a fixed preset. Seeding follows the presets: the
// task from the seed, participation from seed + 1000 (as fedau-participation), speeds from seed + 5000 (as
// fedbuff-speed), and the engines' own streams from the seed. Node-only through the real-data tasks (mnist, spam).
import type { PipelineSpec } from '../../shared/aggregation/pipeline.js';
import { createParticipation, type ParticipationSpec } from '../../shared/data/participation.js';
import { resolvedExperiments, type ResolvedExperiment, type SimConfig, type SimSpeedsConfig } from '../config.js';
import { runAsync, type AsyncAlgorithm } from '../engine/async.js';
import { createSpeeds, type SpeedSpec } from '../engine/speeds.js';
import { runSync, type Duration } from '../engine/sync.js';
import { createQuadraticTask } from '../tasks/quadratic.js';
import { createMnistTask, createSpamTask } from '../tasks/real-data.js';
import { createSoftmaxTask } from '../tasks/softmax.js';
import type { RunResult, Task } from '../types.js';
import type { Preset } from './preset.js';

function makeTask(cfg: SimConfig, seed: number): Task & { z?: Float64Array } {
  const t = cfg.task;
  const numClients = cfg.clients;
  switch (t.kind) {
    case 'quadratic':
      return createQuadraticTask({ numClients, dim: t.dim, seed, gradientNoise: t.gradientNoise });
    case 'softmax':
      return createSoftmaxTask({
        numClients, seed,
        samplesPerClient: t.samplesPerClient, classes: t.classes, features: t.features, alpha: t.alpha,
        ...(t.testSamples !== undefined && { testSamples: t.testSamples }),
        ...(t.meanScale !== undefined && { meanScale: t.meanScale }),
      });
    case 'mnist':
      return createMnistTask({ numClients, seed, alpha: t.alpha, perClassTrain: t.perClassTrain, perClassTest: t.perClassTest, pool: t.pool });
    case 'spam':
      return createSpamTask({ numClients, seed, alpha: t.alpha, dim: t.dim, testFraction: t.testFraction });
  }
}

function speedSpec(s: SimSpeedsConfig): SpeedSpec {
  return s.kind === 'log-normal' && s.jitter === undefined ? { kind: 'log-normal', mu: s.mu, sigma: s.sigma } : s;
}

/** The participation spec of an experiment (p 'by data': p_n = min + (max − min)·z_n², algorithms.md §1.5). */
function participationSpec(e: ResolvedExperiment, task: { z?: Float64Array }): ParticipationSpec | null {
  const p = e.participation;
  if (p === null) return null;
  let prob: ParticipationSpec['p'];
  if (typeof p.p === 'number' || Array.isArray(p.p)) prob = p.p;
  else if (p.p.by === 'data') {
    const { min, max } = p.p;
    if (task.z === undefined) throw new RangeError("participation p.by 'data' needs the quadratic task");
    prob = Array.from(task.z, (z) => min + (max - min) * z * z);
  } else prob = { min: p.p.min, max: p.p.max };
  switch (p.kind) {
    case 'bernoulli':
      return { kind: 'bernoulli', p: prob };
    case 'markov':
      return { kind: 'markov', p: prob, q: p.q };
    case 'cyclic':
      return { kind: 'cyclic', p: prob, period: p.period };
  }
}

function describe(cfg: SimConfig): string {
  if (cfg.description !== undefined) return cfg.description;
  const modes = [...new Set(cfg.algorithms.map((a) => a.mode))].join(' + ');
  return `sim.json: ${cfg.task.kind} task, ${cfg.clients} clients, ${modes} algorithms`;
}

/** The Preset a parsed sim.json describes. Experiment names are `NAME/EXPERIMENT`; algorithm names as written. */
export function presetFromConfig(cfg: SimConfig): Preset {
  const experiments = new Map(resolvedExperiments(cfg).map((e) => [`${cfg.name}/${e.name}`, e]));
  const algorithms = new Map(cfg.algorithms.map((a) => [a.name, a]));
  const tail = cfg.averageTail;
  return {
    name: cfg.name,
    description: describe(cfg),
    experiments: [...experiments.keys()],
    algorithms: [...algorithms.keys()],
    lossLabel: tail > 0 ? `loss of the iterate average over the last ${tail} of the rounds (sync), of the last iterate (async)` : 'loss of the last iterate',
    run(experiment: string, algorithm: string, seed: number): RunResult {
      const e = experiments.get(experiment);
      if (e === undefined) throw new RangeError(`${cfg.name}: unknown experiment ${experiment}`);
      const a = algorithms.get(algorithm);
      if (a === undefined) throw new RangeError(`${cfg.name}: unknown algorithm ${algorithm}`);
      const N = cfg.clients;
      const task = makeTask(cfg, seed);
      const duration: Duration | undefined = e.speeds === null ? undefined : createSpeeds(speedSpec(e.speeds), N, seed + 5000);
      const common = {
        experiment, algorithm, seed, task,
        local: cfg.local,
        ...(cfg.target !== undefined && { target: cfg.target }),
        ...(cfg.stopAtTarget && { stopAtTarget: true }),
        ...(duration !== undefined && { duration }),
      };
      if (a.mode === 'sync') {
        const pspec = participationSpec(e, task);
        const participation = pspec === null ? null : createParticipation(pspec, N, seed + 1000);
        const pipeline: PipelineSpec = {
          weighting: a.weighting,
          fedauCutoff: a.fedauCutoff,
          numClients: N,
          ...(a.weighting === 'known' && participation !== null && { rates: participation.rates }),
          robust: { ...a.robust },
          server: a.server,
        };
        return runSync({
          ...common,
          rounds: cfg.rounds ?? 1,
          participation,
          ...(a.clientsPerRound !== undefined && { clientsPerRound: a.clientsPerRound }),
          pipeline,
          logEvery: cfg.logEvery,
          averageTail: tail,
          ...(cfg.maxTime !== undefined && { maxTime: cfg.maxTime }),
          ...(e.byzantine !== null && e.byzantine.clients > 0 && { byzantine: e.byzantine }),
        });
      }
      const algo: AsyncAlgorithm =
        a.kind === 'fedfix'
          ? { kind: 'fedfix', interval: a.interval ?? 1 }
          : {
              kind: 'fedbuff',
              buffer: a.buffer ?? 1,
              ...(a.staleness !== undefined && { staleness: a.staleness }),
              ...(a.maxStaleness !== undefined && { maxStaleness: a.maxStaleness }),
            };
      const r = runAsync({ ...common, concurrency: a.concurrency, algo, server: a.server, maxTime: cfg.maxTime ?? Infinity, logEvery: cfg.logEvery });
      const { steps: _s, arrivals: _a, dispatched: _d, endTime: _e, ...base } = r;
      return base;
    },
  };
}
