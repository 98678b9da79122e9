// What `fedpool simulate --live` will run for a sim.json: one real training job (train.json) per experiment ×
// algorithm × seed, on worker-held data `sim-s<seed>`, with the experiment's participation given to the
// coordinator's participation model and its Byzantine clients to the coordinator's adversary. Pure: every setting
// the real coordinator cannot run is refused here, one line naming the field, before anything starts.
import { createParticipation, participationSeed } from '../../shared/data/participation.js';
import { ConfigError, parseTrainConfig, type TrainConfig } from '../../shared/config/train.js';
import { resolvedExperiments, type ResolvedExperiment, type SimConfig } from '../../simulations/config.js';
import { participationSpec } from '../../simulations/presets/from-config.js';
import { UserError } from '../errors.js';
import { datasetName } from './host-messages.js';

/**
 * Coordinator leases and sync round deadlines in live mode: a simulated job may sleep for minutes of scaled virtual
 * time (the simulator's rounds wait for their slowest client), and a dead worker host is detected by host-process.ts.
 */
export const LEASE_MS = 600_000;

/** Async jobs run until the virtual-time cap (the simulator's `maxTime`), then are cancelled: steps is only a bound. */
export const ASYNC_STEP_BOUND = 1_000_000;

export interface LiveRun {
  /** `NAME/EXPERIMENT`, as the simulator names rows. */
  experiment: string;
  /** The experiment's own name (the hosts look its speeds up by it). */
  experimentName: string;
  algorithm: string;
  seed: number;
  train: TrainConfig;
}

export interface LivePlan {
  /** Honest workers (the config's clients) and the most Byzantine workers any experiment has. */
  honest: number;
  byzantine: number;
  runs: LiveRun[];
  /** Settings that mean something else live, said once on stderr. */
  notes: string[];
}

/** Runs in the simulator's grid order: experiments × algorithms × seeds. */
export function planLive(cfg: SimConfig, seeds: number, file: string): LivePlan {
  const fail = (field: string, problem: string): never => {
    throw new UserError(`fedpool simulate --live: ${file}: ${field}: ${problem}`);
  };
  if (cfg.task.kind === 'quadratic') fail('task.kind', "live mode trains a real model on the coordinator; 'quadratic' has none (use softmax, mnist or spam)");
  const N = cfg.clients;
  const experiments = resolvedExperiments(cfg);
  const notes: string[] = [];
  if (cfg.averageTail > 0) notes.push('averageTail: the coordinator keeps only the current model, so the final loss is the last iterate\'s');

  cfg.algorithms.forEach((a, k) => {
    const at = `algorithms.${k}`;
    if (a.mode === 'p2p') fail(`${at}.mode`, "'p2p' has no coordinator; live mode runs sync and async algorithms");
    if (a.mode === 'sync') {
      if (a.weighting === 'known' || a.weighting === 'all') fail(`${at}.weighting`, `'${a.weighting}' is a simulator-only weighting; the coordinator has samples, uniform and fedau`);
      if (a.lrDecay !== undefined) fail(`${at}.lrDecay`, 'the coordinator has no server step-size schedule');
    } else if (a.mode === 'async' && a.kind === 'fedfix') {
      fail(`${at}.kind`, "'fedfix' is simulator-only; the coordinator runs fedbuff (buffer 1 = FedAsync)");
    }
  });
  experiments.forEach((e, i) => {
    const field = cfg.experiments === undefined ? 'byzantine' : `experiments.${i}.byzantine`;
    const b = e.byzantine;
    if (b === null || b.clients === 0) return;
    if (b.attack === 'mimic') fail(`${field}.attack`, "'mimic' is simulator-only; the coordinator's adversary has sign-flip, scaled-sign-flip, alie, foe and label-flip");
    if ((b.attack === 'alie' || b.attack === 'foe') && b.z === undefined) fail(`${field}.z`, `live ${b.attack} needs a fixed z (the line search against the defence is simulator-only)`);
  });
  const attacked = experiments.some((e) => e.byzantine !== null && e.byzantine.attack !== 'none' && e.byzantine.clients > 0);
  cfg.algorithms.forEach((a, k) => {
    // The coordinator samples clientsPerRound among all available clients, Byzantine ones included; the simulator's
    // attackers join every round beside the sampled honest clients.
    if (attacked && a.mode === 'sync' && a.clientsPerRound !== undefined) fail(`algorithms.${k}.clientsPerRound`, "not with Byzantine clients live (the coordinator's sampling would leave attackers out of some rounds)");
  });
  const byzantine = Math.max(0, ...experiments.map((e) => (e.byzantine === null || e.byzantine.attack === 'none' ? 0 : e.byzantine.clients)));

  const runs: LiveRun[] = [];
  experiments.forEach((e) => {
    cfg.algorithms.forEach((a, k) => {
      for (let seed = 1; seed <= seeds; seed++) {
        let train: TrainConfig;
        try {
          train = parseTrainConfig(trainJson(cfg, e, k, seed), '/');
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          throw new UserError(`fedpool simulate --live: ${file}: algorithms.${k} (${a.name}) in experiment ${e.name}: the coordinator refuses it: ${err.message.replace(/^train\.json: /, '')}`);
        }
        runs.push({ experiment: `${cfg.name}/${e.name}`, experimentName: e.name, algorithm: a.name, seed, train });
      }
    });
  });
  return { honest: N, byzantine, runs, notes };
}

/** The train.json of one run (before parseTrainConfig fills in its defaults). */
function trainJson(cfg: SimConfig, e: ResolvedExperiment, k: number, seed: number): Record<string, unknown> {
  const a = cfg.algorithms[k]!;
  const N = cfg.clients;
  const b = e.byzantine !== null && e.byzantine.attack !== 'none' && e.byzantine.clients > 0 ? e.byzantine : null;
  const f = b?.clients ?? 0;
  const clients = N + f;
  const pspec = participationSpec(e, {});
  // Byzantine clients join every round, as in the simulator.
  const rates = pspec === null ? null : [...createParticipation(pspec, N, participationSeed(seed)).rates, ...Array<number>(f).fill(1)];
  const local = { steps: cfg.local.steps, batchSize: cfg.local.batchSize, lr: cfg.local.lr, momentum: cfg.local.momentum };
  const json: Record<string, unknown> = {
    model: 'live-model',
    task: 'classify',
    data: { source: 'worker', name: datasetName(seed), clients, seed },
    eval: { path: 'live-eval', every: cfg.logEvery },
    local,
  };
  if (pspec !== null && rates !== null) {
    json.participation = {
      kind: pspec.kind,
      p: rates,
      ...(pspec.kind === 'markov' && { q: pspec.q }),
      ...(pspec.kind === 'cyclic' && { period: pspec.period }),
      seed: participationSeed(seed),
    };
  }
  if (b !== null) {
    const honestPerRound = rates === null ? N : rates.slice(0, N).reduce((s, p) => s + p, 0);
    // The simulator's scaled sign flip sends −(h/f)·μ with h this round's honest count; live uses its expectation.
    const scale = b.attack === 'scaled-sign-flip' ? Math.max(honestPerRound / f, 1e-6) : b.attack === 'alie' || b.attack === 'foe' ? b.z : undefined;
    json.adversary = { clients: Array.from({ length: f }, (_, i) => N + i), attack: b.attack, ...(scale !== undefined && { scale }) };
  }
  if (a.mode === 'sync') {
    Object.assign(json, {
      mode: 'sync',
      rounds: cfg.rounds,
      clientsPerRound: a.clientsPerRound ?? clients,
      roundDeadlineMs: LEASE_MS,
      aggregation: { weighting: a.weighting, fedauCutoff: a.fedauCutoff, robust: a.robust, server: a.server },
    });
  } else if (a.mode === 'async') {
    Object.assign(json, {
      mode: 'async',
      steps: ASYNC_STEP_BOUND,
      concurrency: a.concurrency,
      buffer: a.buffer,
      ...(a.staleness !== undefined && { staleness: a.staleness }),
      ...(a.maxStaleness !== undefined && { maxStaleness: a.maxStaleness }),
      aggregation: { weighting: 'uniform', fedauCutoff: null, robust: { mix: 'none', rule: 'mean', f: 0 }, server: a.server },
    });
  }
  return json;
}
