import { combine } from './combine.js';
import { FedAUEstimator, type FedAUSnapshot } from './fedau.js';
import { RobustAggregator, type RobustSnapshot, type RobustSpec } from './robust.js';
import { ServerOptimizer, type ServerOptimizerSnapshot, type ServerOptimizerSpec } from './server-optimizer.js';
import { BLOCK, checkUpdates } from './validate.js';

/**
 * samples: Σ kᵢΔᵢ/Σk over participants; uniform: the participants' plain mean; fedau: Σ ωᵢΔᵢ/N with FedAU's
 * estimated ωᵢ; known: Σ Δᵢ/(N·pᵢ) with the true participation rates (the oracle baseline); all: Σ Δᵢ/N (FedAvg
 * "average all": every absent client counts as a zero update).
 */
export type Weighting = 'samples' | 'uniform' | 'fedau' | 'known' | 'all';

/** One client's contribution to a server step. */
export interface Contribution {
  /** Model delta (local − global), or the worker's momentum negated (MoNNA sends −m so that every update points the way to move). */
  update: Float32Array;
  /** Examples behind the update (weighting 'samples'). */
  samples?: number;
  /** 0-based client index (weighting 'fedau'). */
  client?: number;
}

export interface PipelineSpec {
  weighting: Weighting;
  /** FedAU interval cutoff K (Infinity or null = none). */
  fedauCutoff?: number | null;
  /** Population size N, required for weightings 'fedau', 'known' and 'all' (they divide by all N clients, not the participants). */
  numClients?: number;
  /** Weighting 'known': each client's true participation rate pₙ ∈ (0, 1] (length N). */
  rates?: ArrayLike<number>;
  robust: RobustSpec;
  server: ServerOptimizerSpec;
}

/**
 * Per-update scale sᵢ so that the plain mean of sᵢ·Δᵢ is the weighting's aggregate:
 * uniform → 1; samples → n·kᵢ/Σk (the sample-weighted mean); fedau → n·ωᵢ/N (FedAU's Σ ωᵢΔᵢ / N).
 * Robust rules then see the scaled updates, so each weighting means the same thing under every rule.
 */
export function weightingScales(
  weighting: Weighting,
  contributions: readonly Contribution[],
  fedau: FedAUEstimator | null,
  population?: { numClients?: number | undefined; rates?: ArrayLike<number> | undefined },
): Float64Array {
  const s = new Float64Array(contributions.length);
  fillWeightingScales(weighting, contributions, fedau, population, s);
  return s;
}

/** weightingScales written into s[0 … n) (s may be longer: a scratch array). */
function fillWeightingScales(
  weighting: Weighting,
  contributions: readonly Contribution[],
  fedau: FedAUEstimator | null,
  population: { numClients?: number | undefined; rates?: ArrayLike<number> | undefined } | undefined,
  s: Float64Array,
): void {
  const n = contributions.length;
  if (weighting === 'uniform') {
    s.fill(1, 0, n);
    return;
  }
  if (weighting === 'samples') {
    let total = 0;
    for (let i = 0; i < n; i++) {
      const k = contributions[i].samples;
      if (typeof k !== 'number' || !Number.isFinite(k) || k < 0) throw new RangeError(`weighting samples: contribution ${i} has no valid sample count (${String(k)})`);
      s[i] = k;
      total += k;
    }
    if (total === 0) throw new RangeError('weighting samples: all sample counts are zero');
    for (let i = 0; i < n; i++) s[i] = (n * s[i]) / total;
    return;
  }
  if (weighting === 'fedau') {
    if (fedau === null) throw new RangeError('weighting fedau: needs numClients');
    const N = fedau.numClients;
    for (let i = 0; i < n; i++) {
      const c = contributions[i].client;
      if (c === undefined) throw new RangeError(`weighting fedau: contribution ${i} has no client index`);
      s[i] = (n * fedau.weight(c)) / N;
    }
    return;
  }
  if (weighting === 'known' || weighting === 'all') {
    const N = population?.numClients;
    if (N === undefined || !Number.isInteger(N) || N < 1) throw new RangeError(`weighting ${weighting}: needs numClients`);
    if (weighting === 'all') {
      s.fill(n / N, 0, n);
      return;
    }
    const rates = population?.rates;
    if (rates === undefined || rates.length !== N) throw new RangeError(`weighting known: needs rates for all ${N} clients`);
    for (let i = 0; i < n; i++) {
      const c = contributions[i].client;
      if (c === undefined || !Number.isInteger(c) || c < 0 || c >= N) throw new RangeError(`weighting known: contribution ${i} has no valid client index (${String(c)})`);
      s[i] = n / (N * rates[c]!);
    }
    return;
  }
  throw new RangeError(`unknown weighting ${JSON.stringify(weighting)} (samples, uniform, fedau, known or all)`);
}

export interface StepResult {
  model: Float32Array;
  /** The aggregated update the optimizer applied (null when nobody took part). */
  aggregate: Float32Array | null;
  /** The per-update scales used (see weightingScales). */
  scales: Float64Array;
}

/** All state of a ServerAggregator that spans rounds (its scratch arrays hold none). Plain data. */
export interface ServerAggregatorSnapshot {
  fedau: FedAUSnapshot | null;
  robust: RobustSnapshot;
  optimizer: ServerOptimizerSnapshot;
}

/**
 * The composable server-side pipeline: client weighting → optional NNM → rule → server optimizer → new model.
 * Holds the state that spans rounds: the FedAU estimator, the cclip center and the optimizer's moments.
 */
export class ServerAggregator {
  readonly spec: Readonly<PipelineSpec>;
  readonly fedau: FedAUEstimator | null;
  readonly robust: RobustAggregator;
  readonly optimizer: ServerOptimizer;
  /** Scratch: the float64 accumulator of the fused mean, and the client ids a step observes. */
  private acc = new Float64Array(0);
  private ids = new Float64Array(0);
  /** Scratch of stepModel: the scales and the aggregate, which it does not hand out. */
  private scaleScratch = new Float64Array(0);
  private aggScratch = new Float32Array(0);

  constructor(spec: PipelineSpec) {
    this.spec = spec;
    if (spec.weighting === 'fedau') {
      if (spec.numClients === undefined) throw new RangeError('weighting fedau: numClients (the population size N) is required');
      this.fedau = new FedAUEstimator(spec.numClients, spec.fedauCutoff ?? Infinity);
    } else {
      this.fedau = null;
    }
    if (spec.weighting === 'known') {
      const r = spec.rates;
      if (spec.numClients === undefined || r === undefined || r.length !== spec.numClients) throw new RangeError('weighting known: numClients and rates (one per client) are required');
      for (let i = 0; i < r.length; i++) if (!(r[i]! > 0 && r[i]! <= 1)) throw new RangeError(`weighting known: rates[${i}] must be in (0, 1], got ${String(r[i])}`);
    }
    if (spec.weighting === 'all' && spec.numClients === undefined) throw new RangeError('weighting all: numClients (the population size N) is required');
    this.robust = new RobustAggregator(spec.robust);
    this.optimizer = new ServerOptimizer(spec.server);
  }

  /** The state that, with the spec, determines every later step: FedAU counters, cclip center, optimizer moments (copies). */
  snapshot(): ServerAggregatorSnapshot {
    return { fedau: this.fedau?.snapshot() ?? null, robust: this.robust.snapshot(), optimizer: this.optimizer.snapshot() };
  }

  /**
   * Loads a snapshot taken under the same spec; `dim`, when given, is the model size. Every part is checked before
   * any is loaded, so a malformed snapshot (RangeError) leaves the aggregator as it was.
   */
  restore(s: ServerAggregatorSnapshot, dim?: number): void {
    if (s === null || typeof s !== 'object') throw new RangeError('server aggregation restore: snapshot must be an object');
    if ((s.fedau === null) !== (this.fedau === null)) {
      throw new RangeError(`server aggregation restore: snapshot ${s.fedau === null ? 'has no' : 'has'} FedAU state, the weighting is ${this.spec.weighting}`);
    }
    // Dry runs on throwaway instances first: restore() must not half-apply.
    if (this.fedau !== null && s.fedau !== null) new FedAUEstimator(this.fedau.numClients, this.fedau.cutoff).restore(s.fedau);
    new RobustAggregator(this.robust.spec).restore(s.robust, dim);
    new ServerOptimizer(this.optimizer.spec).restore(s.optimizer, dim);
    if (this.fedau !== null && s.fedau !== null) this.fedau.restore(s.fedau);
    this.robust.restore(s.robust, dim);
    this.optimizer.restore(s.optimizer, dim);
  }

  /** Aggregates one round's contributions into an update, without stepping or observing participation. */
  aggregate(contributions: readonly Contribution[]): { aggregate: Float32Array; scales: Float64Array } {
    const d = this.fusedMeanDim(contributions);
    if (d >= 0) {
      const scales = weightingScales(this.spec.weighting, contributions, this.fedau, this.spec);
      const aggregate = new Float32Array(d);
      this.meanInto(contributions, scales, aggregate);
      return { aggregate, scales };
    }
    const updates = contributions.map((c) => c.update);
    checkUpdates('server aggregation', updates);
    const scales = weightingScales(this.spec.weighting, contributions, this.fedau, this.spec);
    const n = updates.length;
    const { rule, mix } = this.spec.robust;
    if (rule === 'mean' && mix === 'none') {
      const c = new Float64Array(n);
      for (let i = 0; i < n; i++) c[i] = scales[i] / n;
      return { aggregate: combine(updates, c), scales };
    }
    const scaled = scales.every((v) => v === 1) ? updates : updates.map((u, i) => scaleVector(u, scales[i]));
    return { aggregate: this.robust.aggregate(scaled), scales };
  }

  /**
   * One server round: weights are read before the round is observed (FedAU causality), then every client's
   * participation state advances, then the optimizer steps. An empty round leaves the model unchanged.
   * `participants` defaults to the contributions' client indices; pass it when some participants' updates
   * were dropped (late ones count as not participating). `stepSize` multiplies the aggregate before the optimizer.
   */
  step(model: Float32Array, contributions: readonly Contribution[], participants?: Iterable<number>, stepSize = 1): StepResult {
    if (contributions.length === 0) {
      this.fedau?.observeRound(participants ?? []);
      return { model: Float32Array.from(model), aggregate: null, scales: new Float64Array(0) };
    }
    const { aggregate, scales } = this.aggregate(contributions);
    this.observe(contributions, participants);
    // A server step-size schedule γ_t scales the aggregate itself, so rules with absolute scales (cclip's τ) and the
    // optimizer's state see what the clients sent (simulations: server-coordinated MoNNA, sim.json lrDecay).
    // Scaled as a copy: the rule's own output may be its state (cclip keeps it as the next round's centre, which must
    // stay the unscaled aggregate).
    const scaled = stepSize === 1 ? aggregate : aggregate.map((v) => v * stepSize);
    return { model: this.optimizer.step(model, scaled), aggregate: scaled, scales };
  }

  /**
   * step(…).model: the same round, returning only the new model. Nothing else is handed out, so the plain mean's
   * scales and aggregate live in the aggregator's scratch arrays (simulations call this for every round).
   */
  stepModel(model: Float32Array, contributions: readonly Contribution[], participants?: Iterable<number>): Float32Array {
    const d = contributions.length === 0 ? -1 : this.fusedMeanDim(contributions);
    if (d < 0) return this.step(model, contributions, participants).model;
    const n = contributions.length;
    if (this.scaleScratch.length < n) this.scaleScratch = new Float64Array(Math.max(n, 2 * this.scaleScratch.length));
    fillWeightingScales(this.spec.weighting, contributions, this.fedau, this.spec, this.scaleScratch);
    if (this.aggScratch.length !== d) this.aggScratch = new Float32Array(d);
    this.meanInto(contributions, this.scaleScratch, this.aggScratch);
    this.observe(contributions, participants);
    return this.optimizer.step(model, this.aggScratch);
  }

  /**
   * For the fused plain mean (rule mean, no mixing, a non-empty array of updates of length d ≤ BLOCK): d, after the
   * same checks and errors as checkUpdates on contributions.map((c) => c.update) — every update is read first (a
   * missing contribution is a TypeError before any RangeError), and the first bad update in index order is reported.
   * −1 when the general path must run (other rules; long updates, which combine's blocked kernel sums in another order).
   */
  private fusedMeanDim(contributions: readonly Contribution[]): number {
    const { rule, mix } = this.spec.robust;
    if (rule !== 'mean' || mix !== 'none' || !Array.isArray(contributions)) return -1;
    const n = contributions.length;
    let problem: string | null = null;
    let d = 0;
    for (let i = 0; i < n; i++) {
      const u = contributions[i].update;
      if (problem !== null) continue;
      if (!(u instanceof Float32Array)) problem = `server aggregation: update ${i} is not a Float32Array`;
      else if (i === 0) d = u.length;
      else if (u.length !== d) problem = `server aggregation: updates have unequal lengths (update 0 has ${d}, update ${i} has ${u.length})`;
    }
    if (n === 0) throw new RangeError('server aggregation: needs at least one update, got none');
    if (problem !== null) throw new RangeError(problem);
    return d > BLOCK ? -1 : d;
  }

  /** out = Σ (scales[i]/n)·updates[i], accumulated in float64 in combine's short-vector order. */
  private meanInto(contributions: readonly Contribution[], scales: Float64Array, out: Float32Array): void {
    const n = contributions.length;
    const d = out.length;
    let acc = this.acc;
    if (acc.length !== d) acc = this.acc = new Float64Array(d);
    else acc.fill(0);
    for (let i = 0; i < n; i++) {
      const c = scales[i] / n;
      if (c === 0) continue;
      const x = contributions[i].update;
      for (let j = 0; j < d; j++) acc[j] += c * x[j];
    }
    for (let j = 0; j < d; j++) out[j] = acc[j];
  }

  /** FedAU observes the round's participants (default: the contributions' clients). */
  private observe(contributions: readonly Contribution[], participants: Iterable<number> | undefined): void {
    if (this.fedau === null) return;
    if (participants !== undefined) {
      this.fedau.observeRound(participants);
      return;
    }
    // The contributions' clients, gathered in a scratch list the aggregator owns (never handed out).
    const n = contributions.length;
    let ids = this.ids;
    if (ids.length < n) ids = this.ids = new Float64Array(Math.max(n, 2 * ids.length));
    for (let i = 0; i < n; i++) ids[i] = contributions[i].client as number;
    this.fedau.observeClients(ids, n);
  }
}

function scaleVector(u: Float32Array, s: number): Float32Array {
  const out = new Float32Array(u.length);
  for (let j = 0; j < u.length; j++) out[j] = u[j] * s;
  return out;
}
