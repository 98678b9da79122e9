// Synchronous rounds on a virtual clock: each round asks the participation process who is available, samples up to
// `clientsPerRound` of them, lets each train locally (the Task), and hands the updates to the very ServerAggregator
// the coordinator uses (weighting → NNM → rule → server optimizer). A round lasts as long as its slowest client.
import { ServerAggregator, type Contribution, type PipelineSpec } from '../../shared/aggregation/pipeline.js';
import type { Participation } from '../../shared/data/participation.js';
import { mulberry32 } from '../../shared/random.js';
import type { LocalOptions, MetricRow, Rng, RunResult, Task } from '../types.js';

/** Seconds a client's local job takes (drawn per job). */
export type Duration = (client: number, rng: Rng) => number;

export interface SyncRunSpec {
  experiment: string;
  algorithm: string;
  seed: number;
  task: Task;
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
   * finalLoss is the loss of the iterate average over the last `averageTail` fraction of rounds (algorithms.md §1.5
   * averages the last half to remove partial-participation noise); 0 = the last iterate.
   */
  averageTail?: number;
  /** Loss target for time-to-target (virtual time of the first logged row at or below it). */
  target?: number;
  /** Local job durations (default: every job takes 1). */
  duration?: Duration;
  /** Keep each client's Polyak momentum across its rounds (worker momentum, MoNNA). */
  clientMomentum?: boolean;
}

export function runSync(spec: SyncRunSpec): RunResult {
  const { task, rounds, local } = spec;
  const d = task.dim;
  const N = task.numClients;
  // Independent streams, so e.g. changing the sampling does not change the training noise.
  const trainRng = mulberry32(spec.seed * 2654435761 + 1);
  const sampleRng = mulberry32(spec.seed * 2654435761 + 2);
  const timeRng = mulberry32(spec.seed * 2654435761 + 3);
  const aggregator = new ServerAggregator(spec.pipeline);
  const momenta = spec.clientMomentum === true ? new Map<number, Float32Array>() : null;
  const everyone = Int32Array.from({ length: N }, (_, i) => i);
  const tail = spec.averageTail ?? 0;
  const tailStart = tail > 0 ? Math.floor(rounds * (1 - tail)) : rounds;
  const avg = new Float64Array(d);
  let averaged = 0;
  let x = task.initial();
  let time = 0;
  let updates = 0;
  let timeToTarget: number | null = null;
  const rows: MetricRow[] = [];
  const buffers: Float32Array[] = [];
  const log = (step: number): { loss: number; accuracy: number | null } => {
    const e = task.evaluate(x);
    rows.push({ experiment: spec.experiment, algorithm: spec.algorithm, seed: spec.seed, step, time, loss: finiteOrNull(e.loss), accuracy: e.accuracy });
    if (timeToTarget === null && spec.target !== undefined && e.loss <= spec.target) timeToTarget = time;
    return e;
  };
  log(0);
  for (let t = 0; t < rounds; t++) {
    let chosen: ArrayLike<number> = everyone;
    if (spec.participation !== null) {
      const a = spec.participation.available(t);
      const list: number[] = [];
      for (let i = 0; i < N; i++) if (a[i] === 1) list.push(i);
      chosen = list;
    }
    if (spec.clientsPerRound !== undefined && chosen.length > spec.clientsPerRound) chosen = sample(chosen, spec.clientsPerRound, sampleRng);
    const contributions: Contribution[] = [];
    let roundTime = 0;
    for (let k = 0; k < chosen.length; k++) {
      const client = chosen[k]!;
      const out = (buffers[k] ??= new Float32Array(d));
      let m: Float32Array | undefined;
      if (momenta !== null) {
        m = momenta.get(client);
        if (m === undefined) momenta.set(client, (m = new Float32Array(d)));
      }
      const r = task.localUpdate(client, x, local, trainRng, out, m);
      contributions.push({ update: out, samples: r.samples, client });
      if (spec.duration !== undefined) roundTime = Math.max(roundTime, spec.duration(client, timeRng));
      else roundTime = 1;
    }
    updates += contributions.length;
    time += contributions.length > 0 ? roundTime : spec.duration === undefined ? 1 : 0;
    x = aggregator.step(x, contributions).model;
    if (t >= tailStart) {
      for (let j = 0; j < d; j++) avg[j] += x[j]!;
      averaged++;
    }
    if ((t + 1) % spec.logEvery === 0 || t + 1 === rounds) {
      const e = log(t + 1);
      if (!Number.isFinite(e.loss)) break; // diverged: nothing more to learn from this run
    }
  }
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

function finiteOrNull(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}

/** k of the items, uniformly without replacement (partial Fisher–Yates on a copy), in ascending order. */
function sample(items: ArrayLike<number>, k: number, rng: Rng): number[] {
  const a = Array.from(items);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rng() * (a.length - i));
    const tmp = a[i]!;
    a[i] = a[j]!;
    a[j] = tmp;
  }
  return a.slice(0, k).sort((p, q) => p - q);
}
