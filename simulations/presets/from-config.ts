// A parsed sim.json (../config.ts) as a `Preset`: experiments × algorithms with `run(experiment, algorithm, seed)`,
// so the runner, its threads, the report and the CLI treat it like a fixed preset. Seeding follows the presets: the
// task from the seed, participation from participationSeed(seed) (as fedau-participation, and as live mode's train.json, which
// gives the coordinator the same process), the speed model's per-client means from deriveSeed(seed, 'speed-means')
// (engine/speeds.ts), and the engines' own streams from the seed by purpose (engine/clients.ts). Node-only through
// the real-data tasks (mnist, spam).
// p2p algorithms run engine/p2p.ts: honest node i trains on client i, the experiment's Byzantine clients become
// Byzantine nodes, and every round takes 1 on the virtual clock.
import type { PipelineSpec } from '../../shared/aggregation/pipeline.js';
import { createParticipation, participationSeed, type ParticipationSpec } from '../../shared/data/participation.js';
import { resolvedExperiments, type ResolvedExperiment, type SimConfig, type SimP2PAlgorithmConfig, type SimSpeedsConfig } from '../config.js';
import { runAsync, type AsyncAlgorithm } from '../engine/async.js';
import { P2P_ATTACKS, runP2P, type P2PAttack, type P2PRunSpec } from '../engine/p2p.js';
import { createSpeeds, type SpeedSpec } from '../engine/speeds.js';
import { runSync, type Duration } from '../engine/sync.js';
import { createQuadraticTask } from '../tasks/quadratic.js';
import { createMnistTask, createSpamTask } from '../tasks/real-data.js';
import { createSoftmaxTask } from '../tasks/softmax.js';
import type { RunResult, LearningTask } from '../types.js';
import type { Preset } from './preset.js';

export function makeTask(cfg: SimConfig, seed: number): LearningTask & { z?: Float64Array } {
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

export function speedSpec(s: SimSpeedsConfig): SpeedSpec {
  return s.kind === 'log-normal' && s.jitter === undefined ? { kind: 'log-normal', mu: s.mu, sigma: s.sigma } : s;
}

/** The participation spec of an experiment (p 'by data': p_n = min + (max − min)·z_n², docs/algorithms.md §1.5). */
export function participationSpec(e: ResolvedExperiment, task: { z?: Float64Array }): ParticipationSpec | null {
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

function isP2PAttack(a: string): a is P2PAttack {
  return (P2P_ATTACKS as readonly string[]).includes(a);
}

/**
 * The runP2P spec of a p2p algorithm in an experiment (the config's rounds, cut, as a sync run would stop, at the
 * first logged round at or past maxTime: every p2p round takes 1).
 */
export function p2pSpec(cfg: SimConfig, e: ResolvedExperiment, a: SimP2PAlgorithmConfig, experiment: string, seed: number, task: LearningTask): P2PRunSpec {
  if (e.participation !== null || e.speeds !== null) throw new RangeError(`${cfg.name}: p2p algorithm ${a.name} takes neither participation nor speeds`);
  const rounds = cfg.rounds ?? 1;
  const cap = cfg.maxTime === undefined ? rounds : Math.min(rounds, Math.ceil(cfg.maxTime / cfg.logEvery) * cfg.logEvery);
  const b = e.byzantine !== null && e.byzantine.clients > 0 ? e.byzantine : null;
  if (b !== null && !isP2PAttack(b.attack)) throw new RangeError(`${cfg.name}: attack ${b.attack} is not simulated for p2p algorithms`);
  return {
    experiment, algorithm: a.name, seed, task,
    ...(b !== null && isP2PAttack(b.attack) && { byzantine: { nodes: b.clients, attack: b.attack, ...(b.z !== undefined && { z: b.z }) } }),
    f: a.f ?? b?.clients ?? 0,
    rounds: cap,
    lr: a.lr ?? cfg.local.lr,
    ...(a.lrDecay !== undefined && { lrDecay: a.lrDecay }),
    ...(a.lrDecayEvery !== undefined && { lrDecayEvery: a.lrDecayEvery }),
    momentum: a.momentum ?? cfg.local.momentum,
    batchSize: cfg.local.batchSize,
    logEvery: cfg.logEvery,
    evaluate: a.evaluate,
    ...(cfg.target !== undefined && { target: cfg.target }),
  };
}

function describe(cfg: SimConfig): string {
  if (cfg.description !== undefined) return cfg.description;
  const modes = [...new Set(cfg.algorithms.map((a) => a.mode))].join(' + ');
  return `sim.json: ${cfg.task.kind} task, ${cfg.clients} clients, ${modes} algorithms`;
}

/** A sync algorithm's `lrDecay` τ: the aggregate of round t (0-based) is scaled by γ_t = 1/(1 + t/τ). */
export function serverLrDecay(tau: number): (t: number) => number {
  return (t) => 1 / (1 + t / tau);
}

/** The Preset a parsed sim.json describes. Experiment names are `NAME/EXPERIMENT`; algorithm names as written. */
export function presetFromConfig(cfg: SimConfig): Preset {
  const experiments = new Map(resolvedExperiments(cfg).map((e) => [`${cfg.name}/${e.name}`, e]));
  const algorithms = new Map(cfg.algorithms.map((a) => [a.name, a]));
  const tail = cfg.averageTail;
  const modes = new Set(cfg.algorithms.map((a) => a.mode));
  const lastIterate = modes.has('p2p') ? (modes.has('async') ? 'async, p2p' : 'p2p') : 'async';
  return {
    name: cfg.name,
    description: describe(cfg),
    experiments: [...experiments.keys()],
    algorithms: [...algorithms.keys()],
    lossLabel: tail > 0 ? `loss of the iterate average over the last ${tail} of the rounds (sync), of the last iterate (${lastIterate})` : 'loss of the last iterate',
    // Softmax-type tasks (generated or real data) take ~0.1 s and more per run; the quadratic task's runs are tiny.
    heavyRuns: cfg.task.kind !== 'quadratic',
    run(experiment: string, algorithm: string, seed: number): RunResult {
      const e = experiments.get(experiment);
      if (e === undefined) throw new RangeError(`${cfg.name}: unknown experiment ${experiment}`);
      const a = algorithms.get(algorithm);
      if (a === undefined) throw new RangeError(`${cfg.name}: unknown algorithm ${algorithm}`);
      const N = cfg.clients;
      const task = makeTask(cfg, seed);
      if (a.mode === 'p2p') {
        const { models: _m, ...r } = runP2P(p2pSpec(cfg, e, a, experiment, seed, task));
        if (!cfg.stopAtTarget) return r;
        // Stop at the target as a sync run does: keep the rows up to the first that reaches it (later rounds cannot
        // change them), and count the updates of the rounds up to it.
        const k = r.rows.findIndex((row) => row.loss !== null && row.loss <= (cfg.target ?? -Infinity));
        if (k < 0 || k === r.rows.length - 1) return r;
        const rows = r.rows.slice(0, k + 1);
        const last = rows[k]!;
        return { ...r, rows, finalLoss: last.loss, finalAccuracy: last.accuracy, updates: N * last.step };
      }
      const { keepMomentum, ...local } = cfg.local;
      const duration: Duration | undefined = e.speeds === null ? undefined : createSpeeds(speedSpec(e.speeds), N, seed);
      const common = {
        experiment, algorithm, seed, task,
        local,
        ...(cfg.target !== undefined && { target: cfg.target }),
        ...(cfg.stopAtTarget && { stopAtTarget: true }),
        ...(duration !== undefined && { duration }),
      };
      if (a.mode === 'sync') {
        const pspec = participationSpec(e, task);
        const participation = pspec === null ? null : createParticipation(pspec, N, participationSeed(seed));
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
          ...(keepMomentum === true && { clientMomentum: true }),
          ...(a.lrDecay !== undefined && { serverLr: serverLrDecay(a.lrDecay) }),
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
