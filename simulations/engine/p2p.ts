// Peer-to-peer MoNNA / NNA (docs/algorithms.md §2.1, the "all n received" ByzFL form): n nodes, the first h honest and f
// Byzantine. Each honest node keeps its own model x_i and Polyak momentum m_i; every round it takes one local step
// x_i^{½} = x_i − γ_t·m_i on its own data (the LearningTask's localUpdate, steps 1, lr γ_t, momentum β), the Byzantine nodes
// broadcast one vector built from the honest half-steps (attacks act in MODEL space), and every honest node sets
// x_i ← NNA at pivot x_i^{½} over all n received half-steps: the mean of its n − f nearest (itself included).
// β = 0 is NNA, β > 0 MoNNA; a declared f of 0 makes every node's NNA the plain mean, i.e. D-SGD with exact averaging.
import { nna } from '../../shared/aggregation/nnm.js';
import { byzantineVectors } from '../../shared/attacks.js';
import { deriveSeed, mulberry32 } from '../../shared/random.js';
import type { MetricRow, RunResult, LearningTask } from '../types.js';

/** Byzantine behaviours in P2P ('none': the Byzantine nodes send nothing, so each honest node receives h vectors). */
export const P2P_ATTACKS = ['none', 'sign-flip', 'scaled-sign-flip', 'alie', 'foe', 'mimic'] as const;
export type P2PAttack = (typeof P2P_ATTACKS)[number];

/**
 * f Byzantine nodes, all sending the same vector to every honest node (§2.2), built from the round's honest
 * half-step models: sign-flip −μ; scaled-sign-flip −(h/f)·μ (the plain mean of all n is 0); alie μ + z·σ and foe
 * (1 − z)·μ with a fixed z (`z`; defaults as shared/attacks.ts: alieZ(n, f) and 2); mimic a copy of honest node 0's.
 */
export interface P2PByzantineSpec {
  nodes: number;
  attack: P2PAttack;
  /** alie/foe: the fixed z (no line search here). */
  z?: number;
}

export interface P2PRunSpec {
  experiment: string;
  algorithm: string;
  seed: number;
  /** Honest node i trains on the task's client i. */
  task: LearningTask;
  /** Honest nodes h (default task.numClients; at most task.numClients). */
  honest?: number;
  /** Byzantine nodes (default none). */
  byzantine?: P2PByzantineSpec;
  /**
   * The f NNA is run with: each honest node averages its n − f nearest received vectors (default byzantine.nodes).
   * 0 = plain averaging of everything received (D-SGD). Needs n > 2f, n the number of vectors received.
   */
  f?: number;
  rounds: number;
  /** γ0, the local step size of round 0. */
  lr: number;
  /** γ_t = γ0 / (1 + t'/lrDecay), t' = t rounded down to a multiple of `lrDecayEvery` (default 1); absent: constant γ0. */
  lrDecay?: number;
  lrDecayEvery?: number;
  /** Polyak momentum β (m ← βm + (1−β)g); 0 = NNA, > 0 MoNNA. */
  momentum: number;
  /** Minibatch size of the local gradient. */
  batchSize: number;
  /** Log a metrics row every this many rounds (and after the last). */
  logEvery: number;
  /** Which model the rows evaluate: honest node 0's (default, as the paper's code) or the mean of the honest models. */
  evaluate?: 'node0' | 'mean';
  /** Loss target for time-to-target (virtual time = rounds done). */
  target?: number;
}

/** The honest nodes' models after a run (for invariants), besides the usual RunResult. */
export interface P2PRunResult extends RunResult {
  models: Float32Array[];
}

export function runP2P(spec: P2PRunSpec): P2PRunResult {
  const { task, rounds } = spec;
  const d = task.dim;
  const h = spec.honest ?? task.numClients;
  checkInt('honest', h, 1);
  if (h > task.numClients) throw new RangeError(`runP2P: honest = ${h} exceeds the task's ${task.numClients} clients`);
  checkInt('rounds', rounds, 0);
  checkInt('logEvery', spec.logEvery, 1);
  const byz = spec.byzantine;
  if (byz !== undefined) {
    checkInt('byzantine.nodes', byz.nodes, 0);
    if (!(P2P_ATTACKS as readonly string[]).includes(byz.attack)) throw new RangeError(`runP2P: unknown attack ${JSON.stringify(byz.attack)} (one of ${P2P_ATTACKS.join(', ')})`);
  }
  const fByz = byz === undefined || byz.attack === 'none' ? 0 : byz.nodes;
  const f = spec.f ?? byz?.nodes ?? 0;
  checkInt('f', f, 0);
  const received = h + fByz;
  if (!(received > 2 * f)) throw new RangeError(`runP2P: NNA with f = ${f} needs more than ${2 * f} received vectors, got ${received}`);
  if (!(Number.isFinite(spec.lr) && spec.lr >= 0)) throw new RangeError(`runP2P: lr must be a finite number ≥ 0, got ${String(spec.lr)}`);
  if (!(spec.momentum >= 0 && spec.momentum < 1)) throw new RangeError(`runP2P: momentum must lie in [0, 1), got ${String(spec.momentum)}`);
  if (spec.lrDecay !== undefined && !(spec.lrDecay > 0 && Number.isFinite(spec.lrDecay))) throw new RangeError(`runP2P: lrDecay must be a finite number > 0, got ${String(spec.lrDecay)}`);
  const decayEvery = spec.lrDecayEvery ?? 1;
  checkInt('lrDecayEvery', decayEvery, 1);
  const gamma = (t: number): number => (spec.lrDecay === undefined ? spec.lr : spec.lr / (1 + (Math.floor(t / decayEvery) * decayEvery) / spec.lrDecay));

  // Node i's training noise in round t comes from deriveSeed(seed, 'train', t, i), as client i's job on version t in
  // runSync (engine/clients.ts), so f = 0 reproduces sync D-SGD with the same seed.
  const x0 = task.initial();
  let models: Float32Array[] = Array.from({ length: h }, () => Float32Array.from(x0));
  const momenta = spec.momentum > 0 ? Array.from({ length: h }, () => new Float32Array(d)) : null;
  const half: Float32Array[] = Array.from({ length: h }, () => new Float32Array(d));
  const delta = new Float32Array(d);
  const rows: MetricRow[] = [];
  let time = 0;
  let updates = 0;
  let timeToTarget: number | null = null;
  const evaluated = (): Float32Array => {
    if (spec.evaluate !== 'mean') return models[0]!;
    const acc = new Float64Array(d);
    for (const m of models) for (let j = 0; j < d; j++) acc[j] += m[j]!;
    const out = new Float32Array(d);
    for (let j = 0; j < d; j++) out[j] = acc[j]! / h;
    return out;
  };
  const log = (step: number): number => {
    const e = task.evaluate(evaluated());
    rows.push({ experiment: spec.experiment, algorithm: spec.algorithm, seed: spec.seed, step, time, loss: finiteOrNull(e.loss), accuracy: e.accuracy });
    if (timeToTarget === null && spec.target !== undefined && e.loss <= spec.target) timeToTarget = time;
    return e.loss;
  };
  log(0);
  for (let t = 0; t < rounds; t++) {
    const local = { steps: 1, lr: gamma(t), batchSize: spec.batchSize, momentum: spec.momentum };
    for (let i = 0; i < h; i++) {
      const x = models[i]!;
      task.localUpdate(i, x, local, mulberry32(deriveSeed(spec.seed, 'train', t, i)), delta, momenta?.[i]);
      const y = half[i]!;
      for (let j = 0; j < d; j++) y[j] = x[j]! + delta[j]!;
    }
    updates += h;
    time += 1;
    const all: Float32Array[] = fByz > 0 ? [...half, ...byzantineVectors(byz!.attack as Exclude<P2PAttack, 'none'>, { honest: half, byzantine: fByz, scale: byz!.attack === 'alie' || byz!.attack === 'foe' ? byz!.z : undefined })] : half;
    // Every node mixes the same received set (complete communication); nna never mutates its inputs.
    models = Array.from({ length: h }, (_, i) => nna(all, f, i));
    if ((t + 1) % spec.logEvery === 0 || t + 1 === rounds) {
      if (!Number.isFinite(log(t + 1))) break; // diverged
    }
  }
  const last = rows.at(-1);
  return {
    experiment: spec.experiment, algorithm: spec.algorithm, seed: spec.seed, rows,
    finalLoss: last?.loss ?? null, finalAccuracy: last?.accuracy ?? null, timeToTarget, updates, models,
  };
}

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`runP2P: ${name} must be an integer ≥ ${min}, got ${String(v)}`);
}

function finiteOrNull(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}
