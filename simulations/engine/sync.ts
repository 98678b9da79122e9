// Synchronous rounds on a virtual clock, run by the coordinator's own SyncDriver (shared/training/sync-driver.ts)
// through the driven engine (engine/driven.ts): each round the driver asks the participation process who is
// available, samples up to `clientsPerRound` of them with its seeded Random (everyone available when absent), the
// in-process clients train (engine/clients.ts), and the driver closes the round with the very ServerAggregator the
// coordinator uses (weighting → NNM → rule → server optimizer). A round lasts as long as its slowest client. Optional
// Byzantine clients (docs/algorithms.md §2.2) are f extra clients of the driver that join every round with an honest
// participant, attacked through the one adversary (shared/training/adversary.ts). Reporting — rows every logEvery,
// iterate averaging over a tail, time to target, maxTime — stays here.
import type { PipelineSpec } from '../../shared/aggregation/pipeline.js';
import type { Participation } from '../../shared/data/participation.js';
import { deriveSeed } from '../../shared/random.js';
import { Adversary } from '../../shared/training/adversary.js';
import { SyncDriver } from '../../shared/training/sync-driver.js';
import type { LocalOptions, MetricRow, RunResult, LearningTask } from '../types.js';
import { orderDurations, taskClient, type Duration } from './clients.js';
import { runDriver } from './driven.js';

export type { Duration } from './clients.js';

/** Byzantine behaviours of docs/algorithms.md §2.2 ('none': the Byzantine clients send nothing). */
export const SYNC_ATTACKS = ['none', 'sign-flip', 'scaled-sign-flip', 'alie', 'foe', 'label-flip', 'mimic'] as const;
export type SyncAttack = (typeof SYNC_ATTACKS)[number];

/**
 * f Byzantine clients, present in every round that has an honest participant, besides the sampled honest clients
 * (§2.2). The vector attacks send one vector built from the round's honest updates: sign-flip −μ; scaled-sign-flip
 * −(h/f)·μ (the plain mean of all n is 0); alie μ + z·σ and foe (1 − z)·μ with z line-searched over {¼, …, 16} against
 * the defence in use (shared/attacks.ts optimalAttack), or with the fixed `z` when one is given; mimic a copy of the
 * first honest participant's update. label-flip: each Byzantine client trains on a copy of an honest client's rows
 * with flipped labels (its own momentum when clientMomentum is on). h is the number of honest participants.
 */
export interface ByzantineSpec {
  clients: number;
  attack: SyncAttack;
  /** alie/foe: a fixed z > 0 instead of the line search (no defence probe then). */
  z?: number;
}

export interface SyncRunSpec {
  experiment: string;
  algorithm: string;
  seed: number;
  task: LearningTask;
  rounds: number;
  /** Who is available in round t (null: everyone, every round). */
  participation: Participation | null;
  /** Sample at most this many available clients per round (default: all available take part). */
  clientsPerRound?: number;
  local: LocalOptions;
  pipeline: PipelineSpec;
  /** Log a metrics row every this many rounds (and after the last). */
  logEvery: number;
  /**
   * finalLoss is the loss of the iterate average over the last `averageTail` fraction of rounds (docs/algorithms.md §1.5
   * averages the last half to remove partial-participation noise); 0 = the last iterate.
   */
  averageTail?: number;
  /** Loss target for time-to-target (virtual time of the first logged row at or below it). */
  target?: number;
  /** End the run at the first logged row at or below `target`, or past this virtual time. */
  stopAtTarget?: boolean;
  maxTime?: number;
  /** Local job durations (default: every job takes 1). */
  duration?: Duration;
  /** Keep each client's Polyak momentum across its rounds (worker momentum, MoNNA). */
  clientMomentum?: boolean;
  /**
   * Server step size of round t (0-based): the aggregate is multiplied by it before the server optimizer (with sgd,
   * lr 1: x ← x + γ_t·F(…)). Server-coordinated MoNNA (docs/algorithms.md §2.3) sends −m (one local step at lr 1) and
   * steps x ← x − γ_t·F(NNM(m…)) here, so rules with absolute scales (cclip's τ) see the momenta themselves.
   */
  serverLr?: (t: number) => number;
  /** Byzantine clients (default none). Needs weighting 'uniform'. */
  byzantine?: ByzantineSpec;
}

export function runSync(spec: SyncRunSpec): RunResult {
  const { task, rounds } = spec;
  const d = task.dim;
  const N = task.numClients;
  const byz = checkByzantine(spec);
  const f = byz === null ? 0 : byz.clients;
  const adversary =
    byz === null
      ? null
      : new Adversary({
          clients: Array.from({ length: f }, (_, i) => N + i),
          attack: byz.attack as Exclude<SyncAttack, 'none'>,
          ...(byz.z !== undefined && { scale: byz.z }),
          seed: spec.seed,
          presence: 'every-round',
        });
  const serverLr = spec.serverLr;
  const driver = new SyncDriver(
    {
      numClients: N + f,
      ...(spec.clientsPerRound !== undefined && { clientsPerRound: spec.clientsPerRound }),
      rounds,
      participation: null,
      ...(spec.participation !== null && { participationProcess: spec.participation }),
      seed: deriveSeed(spec.seed, 'sample'),
      pipeline: spec.pipeline,
      adversary,
      ...(serverLr !== undefined && {
        stepSize: (t: number) => {
          const lr = serverLr(t);
          if (!(Number.isFinite(lr) && lr >= 0)) throw new RangeError(`runSync: serverLr(${t}) must be a finite number ≥ 0, got ${String(lr)}`);
          return lr;
        },
      }),
    },
    task.initial(),
  );
  let updates = 0;
  const client = taskClient(task, spec.local, { seed: spec.seed, keepMomentum: spec.clientMomentum === true, honest: N, adversary, onTrain: () => updates++ });

  const tail = spec.averageTail ?? 0;
  const tailStart = tail > 0 ? Math.floor(rounds * (1 - tail)) : rounds;
  const avg = new Float64Array(d);
  let averaged = 0;
  let x = driver.weights;
  let time = 0;
  let timeToTarget: number | null = null;
  const rows: MetricRow[] = [];
  const log = (step: number): { loss: number; accuracy: number | null } => {
    const e = task.evaluate(x);
    rows.push({ experiment: spec.experiment, algorithm: spec.algorithm, seed: spec.seed, step, time, loss: finiteOrNull(e.loss), accuracy: e.accuracy });
    if (timeToTarget === null && spec.target !== undefined && e.loss <= spec.target) timeToTarget = time;
    return e;
  };
  log(0);
  runDriver(driver, client, {
    duration: orderDurations(spec.duration, spec.seed, N),
    // A round nobody takes part in: the old default clock (every job takes 1) still ticks; measured durations do not.
    emptyStepTime: spec.duration === undefined ? 1 : 0,
    onStep: (step, now) => {
      const t = step.metrics.step - 1;
      x = step.weights;
      time = now;
      if (t >= tailStart) {
        for (let j = 0; j < d; j++) avg[j] += x[j]!;
        averaged++;
      }
      if ((t + 1) % spec.logEvery !== 0 && t + 1 !== rounds) return false;
      const e = log(t + 1);
      if (!Number.isFinite(e.loss)) return true; // diverged: nothing more to learn from this run
      if (spec.stopAtTarget === true && timeToTarget !== null) return true;
      return spec.maxTime !== undefined && time >= spec.maxTime;
    },
  });
  let finalLoss: number | null;
  let finalAccuracy: number | null;
  if (averaged > 0 && tail > 0) {
    const xa = new Float32Array(d);
    for (let j = 0; j < d; j++) xa[j] = avg[j]! / averaged;
    const e = task.evaluate(xa);
    finalLoss = finiteOrNull(e.loss);
    finalAccuracy = e.accuracy;
  } else {
    const last = rows.at(-1);
    finalLoss = last?.loss ?? null;
    finalAccuracy = last?.accuracy ?? null;
  }
  return { experiment: spec.experiment, algorithm: spec.algorithm, seed: spec.seed, rows, finalLoss, finalAccuracy, timeToTarget, updates };
}

/** The Byzantine spec that attacks (null: none, f = 0 or 'none' — those send nothing), after checking it. */
function checkByzantine(spec: SyncRunSpec): ByzantineSpec | null {
  const b = spec.byzantine;
  if (b === undefined) return null;
  if (!Number.isInteger(b.clients) || b.clients < 0) throw new RangeError(`runSync: byzantine.clients must be an integer ≥ 0, got ${String(b.clients)}`);
  if (!(SYNC_ATTACKS as readonly string[]).includes(b.attack)) throw new RangeError(`runSync: unknown attack ${JSON.stringify(b.attack)} (one of ${SYNC_ATTACKS.join(', ')})`);
  if (b.z !== undefined) {
    if (b.attack !== 'alie' && b.attack !== 'foe') throw new RangeError(`runSync: byzantine.z is only for attack 'alie' or 'foe', got ${JSON.stringify(b.attack)}`);
    if (!(Number.isFinite(b.z) && b.z > 0)) throw new RangeError(`runSync: byzantine.z must be a finite number > 0, got ${String(b.z)}`);
  }
  if (b.clients === 0) return null;
  if (spec.pipeline.weighting !== 'uniform') throw new RangeError(`runSync: Byzantine clients need weighting 'uniform', got ${JSON.stringify(spec.pipeline.weighting)}`);
  return b.attack === 'none' ? null : b;
}

function finiteOrNull(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}
