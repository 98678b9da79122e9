// Synchronous rounds on a virtual clock: each round asks the participation process who is available, samples up to
// `clientsPerRound` of them, lets each train locally (the LearningTask), and hands the updates to the very ServerAggregator
// the coordinator uses (weighting → NNM → rule → server optimizer). A round lasts as long as its slowest client.
// Optional Byzantine clients (docs/algorithms.md §2.2) join every round with vectors built from that round's honest updates.
import { centeredClipping } from '../../shared/aggregation/centered-clipping.js';
import { nearestNeighborMixing } from '../../shared/aggregation/nnm.js';
import { ServerAggregator, type Contribution, type PipelineSpec } from '../../shared/aggregation/pipeline.js';
import { RobustAggregator } from '../../shared/aggregation/robust.js';
import { byzantineVectors, optimalAttack } from '../../shared/attacks.js';
import type { Participation } from '../../shared/data/participation.js';
import { mulberry32, sampleWithoutReplacement } from '../../shared/random.js';
import type { LocalOptions, MetricRow, Rng, RunResult, LearningTask } from '../types.js';

/** Seconds a client's local job takes (drawn per job). */
export type Duration = (client: number, rng: Rng) => number;

/** Byzantine behaviours of docs/algorithms.md §2.2 ('none': the Byzantine clients send nothing). */
export const SYNC_ATTACKS = ['none', 'sign-flip', 'scaled-sign-flip', 'alie', 'foe', 'label-flip', 'mimic'] as const;
export type SyncAttack = (typeof SYNC_ATTACKS)[number];

/**
 * f Byzantine clients, present in every round besides the honest participants, all sending the same vector
 * (§2.2), built from the round's honest updates: sign-flip −μ; scaled-sign-flip −(h/f)·μ (the plain mean of all n
 * is 0); alie μ + z·σ and foe (1 − z)·μ with z line-searched over {¼, …, 16} against the defence in use
 * ("alie opt"/"foe opt", shared/attacks.ts optimalAttack), or with the fixed `z` when one is given; label-flip the
 * mean of the honest participants' updates trained on flipped labels (each keeps a separate flipped-label momentum
 * when clientMomentum is on); mimic a copy of the first honest participant's update. h is the number of honest
 * participants of the round.
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
  const { task, rounds, local } = spec;
  const d = task.dim;
  const N = task.numClients;
  // Independent streams, so e.g. changing the sampling does not change the training noise.
  const trainRng = mulberry32(spec.seed * 2654435761 + 1);
  const sampleRng = mulberry32(spec.seed * 2654435761 + 2);
  const timeRng = mulberry32(spec.seed * 2654435761 + 3);
  const aggregator = new ServerAggregator(spec.pipeline);
  const momenta = spec.clientMomentum === true ? new Map<number, Float32Array>() : null;
  const byz = checkByzantine(spec);
  const byzRng = mulberry32(spec.seed * 2654435761 + 4);
  const flippedMomenta = momenta !== null && byz?.attack === 'label-flip' ? new Map<number, Float32Array>() : null;
  const flipped = new Float32Array(d);
  const probe = byz === null || (byz.attack !== 'alie' && byz.attack !== 'foe') || byz.z !== undefined ? null : defenceProbe(spec.pipeline, aggregator);
  const everyone = Int32Array.from({ length: N }, (_, i) => i);
  const availableList = new Int32Array(N); // reused every round
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
  const contributions: Contribution[] = []; // this round's, reused
  const pool: Contribution[] = []; // honest contributions' objects, reused
  const log = (step: number): { loss: number; accuracy: number | null } => {
    const e = task.evaluate(x);
    rows.push({ experiment: spec.experiment, algorithm: spec.algorithm, seed: spec.seed, step, time, loss: finiteOrNull(e.loss), accuracy: e.accuracy });
    if (timeToTarget === null && spec.target !== undefined && e.loss <= spec.target) timeToTarget = time;
    return e;
  };
  log(0);
  for (let t = 0; t < rounds; t++) {
    let chosen: ArrayLike<number> = everyone;
    let numChosen = N; // chosen[0 … numChosen): no per-round view of availableList
    if (spec.participation !== null) {
      const p = spec.participation;
      const a = p.availability !== undefined ? p.availability(t) : p.available(t); // read only, before the next round
      let count = 0;
      for (let i = 0; i < N; i++) if (a[i] === 1) availableList[count++] = i;
      chosen = availableList;
      numChosen = count;
    }
    if (spec.clientsPerRound !== undefined && numChosen > spec.clientsPerRound) {
      chosen = sample(chosen, numChosen, spec.clientsPerRound, sampleRng);
      numChosen = chosen.length;
    }
    contributions.length = 0;
    let roundTime = 0;
    for (let k = 0; k < numChosen; k++) {
      const client = chosen[k]!;
      const out = (buffers[k] ??= new Float32Array(d));
      let m: Float32Array | undefined;
      if (momenta !== null) {
        m = momenta.get(client);
        if (m === undefined) momenta.set(client, (m = new Float32Array(d)));
      }
      const r = task.localUpdate(client, x, local, trainRng, out, m);
      // The aggregator keeps neither the list nor its entries, so both are reused round after round.
      let c = pool[k];
      if (c === undefined) pool.push((c = { update: out, samples: r.samples, client }));
      else {
        c.update = out;
        c.samples = r.samples;
        c.client = client;
      }
      contributions.push(c);
      if (spec.duration !== undefined) roundTime = Math.max(roundTime, spec.duration(client, timeRng));
      else roundTime = 1;
    }
    updates += contributions.length;
    time += contributions.length > 0 ? roundTime : spec.duration === undefined ? 1 : 0;
    if (byz !== null && byz.attack !== 'none' && contributions.length > 0) {
      const honest = contributions.map((c) => c.update);
      let vectors: Float32Array[];
      if (byz.attack === 'label-flip') {
        // The mean of the honest participants' updates trained on flipped labels, from a separate training stream.
        const mean = new Float64Array(d);
        const flipOpts: LocalOptions = { ...local, flipLabels: true };
        for (let k = 0; k < numChosen; k++) {
          const client = chosen[k]!;
          let m: Float32Array | undefined;
          if (flippedMomenta !== null) {
            m = flippedMomenta.get(client);
            if (m === undefined) flippedMomenta.set(client, (m = new Float32Array(d)));
          }
          task.localUpdate(client, x, flipOpts, byzRng, flipped, m);
          for (let j = 0; j < d; j++) mean[j] += flipped[j]!;
        }
        updates += numChosen;
        const b = new Float32Array(d);
        for (let j = 0; j < d; j++) b[j] = mean[j]! / numChosen;
        vectors = Array.from({ length: byz.clients }, () => Float32Array.from(b));
      } else if ((byz.attack === 'alie' || byz.attack === 'foe') && byz.z === undefined) {
        vectors = optimalAttack(byz.attack, { honest, byzantine: byz.clients }, probe!).vectors;
      } else if (byz.attack === 'alie' || byz.attack === 'foe') {
        vectors = byzantineVectors(byz.attack, { honest, byzantine: byz.clients, scale: byz.z });
      } else {
        vectors = byzantineVectors(byz.attack, { honest, byzantine: byz.clients });
      }
      vectors.forEach((v, i) => contributions.push({ update: v, samples: 0, client: N + i }));
    }
    const lr = spec.serverLr?.(t);
    if (lr === undefined) {
      x = aggregator.stepModel(x, contributions);
    } else {
      if (!(Number.isFinite(lr) && lr >= 0)) throw new RangeError(`runSync: serverLr(${t}) must be a finite number ≥ 0, got ${String(lr)}`);
      x = aggregator.step(x, contributions, undefined, lr).model;
    }
    if (t >= tailStart) {
      for (let j = 0; j < d; j++) avg[j] += x[j]!;
      averaged++;
    }
    if ((t + 1) % spec.logEvery === 0 || t + 1 === rounds) {
      const e = log(t + 1);
      if (!Number.isFinite(e.loss)) break; // diverged: nothing more to learn from this run
      if (spec.stopAtTarget === true && timeToTarget !== null) break;
      if (spec.maxTime !== undefined && time >= spec.maxTime) break;
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
  return b;
}

/**
 * The defence the ALIE/FOE line search probes: the pipeline's robust stage (weighting 'uniform' is the identity),
 * without touching the aggregator's state — cclip starts from the aggregator's current center, as the real step will.
 */
function defenceProbe(pipeline: PipelineSpec, aggregator: ServerAggregator): (all: Float32Array[]) => Float32Array {
  const robust = pipeline.robust;
  if (robust.rule === 'cclip') {
    return (all) => {
      const y = robust.mix === 'nnm' ? nearestNeighborMixing(all, robust.f) : all;
      const center = aggregator.robust.clippingCenter ?? new Float32Array(all[0]!.length);
      return centeredClipping(y, center, { tau: robust.tau ?? 1, iters: robust.iters });
    };
  }
  const stateless = new RobustAggregator(robust);
  return (all) => stateless.aggregate(all);
}

function finiteOrNull(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}

/** k of the first `count` items, uniformly without replacement, in ascending order. */
function sample(items: ArrayLike<number>, count: number, k: number, rng: Rng): number[] {
  return sampleWithoutReplacement(Array.from({ length: count }, (_, i) => items[i] as number), k, rng).sort((p, q) => p - q);
}
