import { combine } from './combine.js';
import { stalenessWeight, type StalenessSpec } from './staleness.js';
import { checkInteger } from './validate.js';

export interface FedBuffOptions {
  /** K: the server steps after every K accepted arrivals. */
  size: number;
  /** s(τ); default poly with exponent ½, i.e. (1+τ)^−½. */
  staleness?: StalenessSpec;
  /**
   * 'mean' (the paper): aggregate = Σ cᵢΔᵢ / K. 'sum' (FLSim's WEIGHTED_SUM): aggregate = Σ cᵢΔᵢ, with the 1/K
   * folded into the server lr. The two differ by exactly a factor K in the server lr. Default 'mean'.
   */
  reduction?: 'mean' | 'sum';
  /**
   * FLSim's normalisation: divide s(τ) by s(τ̄) so an update of the typical staleness τ̄ has weight 1
   * (with poly ½ and τ̄ = 1 the applied weight is √2/√(1+τ)). Default: none (raw s(τ)).
   */
  normalizeAt?: number;
  /** Arrivals staler than this are dropped, not buffered (FLSim's max_staleness). Default Infinity. */
  maxStaleness?: number;
  /**
   * A robust rule over the buffered, already-scaled updates cᵢΔᵢ (e.g. RobustAggregator.aggregate). Default:
   * the plain mean, which reproduces the reductions above exactly. With 'sum' the rule's output is multiplied by
   * the count. Robust rules need K ≥ 2f+1 (Krum 2f+3).
   */
  rule?: (updates: Float32Array[]) => Float32Array;
}

export type FedBuffAddResult =
  | { kind: 'dropped'; reason: string }
  | { kind: 'buffered'; count: number }
  | FedBuffReady;

export interface FedBuffReady {
  kind: 'ready';
  aggregate: Float32Array;
  /** Updates in this aggregate (K, or fewer on flush). */
  count: number;
  stalenessMean: number;
}

/**
 * The arrivals a FedBuffBuffer holds between steps: each update (a copy), its factor weightᵢ·s(τᵢ)/s(normalizeAt)
 * and its staleness τᵢ; `dim` is the update length once one has been seen (−1 before). Plain data.
 */
export interface FedBuffSnapshot {
  size: number;
  dim: number;
  updates: Float32Array[];
  factors: number[];
  taus: number[];
}

/**
 * FedBuff's server buffer (Nguyen et al. 2022; docs/algorithms.md §3.1–3.2): each arrival is weighted by
 * cᵢ = weightᵢ·s(τᵢ), where τᵢ is the number of server steps since the client downloaded its model;
 * after K arrivals add() returns the aggregate and the buffer empties. The caller steps the model with it.
 */
export class FedBuffBuffer {
  readonly size: number;
  readonly staleness: StalenessSpec;
  readonly reduction: 'mean' | 'sum';
  readonly maxStaleness: number;
  private readonly norm: number;
  private readonly rule: ((updates: Float32Array[]) => Float32Array) | null;
  private updates: Float32Array[] = [];
  private factors: number[] = [];
  private taus: number[] = [];
  private dim = -1;

  constructor(options: FedBuffOptions) {
    checkInteger('FedBuffBuffer', 'size', options.size);
    this.size = options.size;
    this.staleness = options.staleness ?? { kind: 'poly', exponent: 0.5 };
    stalenessWeight(this.staleness, 0); // validates the spec now, not at the first arrival
    this.reduction = options.reduction ?? 'mean';
    if (this.reduction !== 'mean' && this.reduction !== 'sum') throw new RangeError(`FedBuffBuffer: reduction must be mean or sum, got ${String(this.reduction)}`);
    this.maxStaleness = options.maxStaleness ?? Infinity;
    if (!(this.maxStaleness >= 0)) throw new RangeError(`FedBuffBuffer: maxStaleness must be ≥ 0, got ${String(this.maxStaleness)}`);
    this.rule = options.rule ?? null;
    const at = options.normalizeAt;
    if (at !== undefined && !(Number.isFinite(at) && at >= 0)) throw new RangeError(`FedBuffBuffer: normalizeAt must be a finite number ≥ 0, got ${String(at)}`);
    this.norm = at === undefined ? 1 : stalenessWeight(this.staleness, at);
    if (!(this.norm > 0)) throw new RangeError('FedBuffBuffer: s(normalizeAt) is 0, cannot normalise by it');
  }

  /** Updates waiting in the buffer. */
  get count(): number {
    return this.updates.length;
  }

  /** The buffered arrivals (copies): with the options, all that determines the next aggregate. */
  snapshot(): FedBuffSnapshot {
    return { size: this.size, dim: this.dim, updates: this.updates.map((u) => u.slice()), factors: this.factors.slice(), taus: this.taus.slice() };
  }

  /** Loads a snapshot taken under the same size (copied). Malformed: RangeError, the buffer is unchanged. */
  restore(s: FedBuffSnapshot): void {
    const where = 'FedBuffBuffer.restore';
    if (s === null || typeof s !== 'object') throw new RangeError(`${where}: snapshot must be an object`);
    if (s.size !== this.size) throw new RangeError(`${where}: snapshot is of a buffer of size ${String(s.size)}, this one has ${this.size}`);
    if (!Array.isArray(s.updates) || !Array.isArray(s.factors) || !Array.isArray(s.taus)) throw new RangeError(`${where}: updates, factors and taus must be arrays`);
    const k = s.updates.length;
    if (k >= this.size) throw new RangeError(`${where}: ${k} buffered updates, a buffer of size ${this.size} steps at ${this.size}`);
    if (s.factors.length !== k || s.taus.length !== k) throw new RangeError(`${where}: ${k} updates but ${s.factors.length} factors and ${s.taus.length} staleness values`);
    if (!Number.isInteger(s.dim) || s.dim < -1 || (k > 0 && s.dim < 0)) throw new RangeError(`${where}: dim must be an integer ≥ −1 (≥ 0 once updates are held), got ${String(s.dim)}`);
    for (let i = 0; i < k; i++) {
      const u = s.updates[i];
      if (!(u instanceof Float32Array)) throw new RangeError(`${where}: update ${i} is not a Float32Array`);
      if (u.length !== s.dim) throw new RangeError(`${where}: update ${i} has ${u.length} values, dim is ${s.dim}`);
      const f = s.factors[i];
      if (typeof f !== 'number' || !Number.isFinite(f) || f < 0) throw new RangeError(`${where}: factor ${i} must be a finite number ≥ 0, got ${String(f)}`);
      const tau = s.taus[i];
      if (!Number.isInteger(tau) || tau! < 0 || tau! > this.maxStaleness) throw new RangeError(`${where}: staleness ${i} must be an integer in [0, maxStaleness], got ${String(tau)}`);
    }
    this.dim = s.dim;
    this.updates = s.updates.map((u) => u.slice());
    this.factors = s.factors.slice();
    this.taus = s.taus.slice();
  }

  add(update: Float32Array, staleness: number, weight = 1): FedBuffAddResult {
    if (!(update instanceof Float32Array)) throw new RangeError('FedBuffBuffer.add: update must be a Float32Array');
    if (this.dim >= 0 && update.length !== this.dim) throw new RangeError(`FedBuffBuffer.add: update has length ${update.length}, buffer holds length ${this.dim}`);
    if (!Number.isInteger(staleness) || staleness < 0) throw new RangeError(`FedBuffBuffer.add: staleness must be an integer ≥ 0, got ${String(staleness)}`);
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0) throw new RangeError(`FedBuffBuffer.add: weight must be a finite number ≥ 0, got ${String(weight)}`);
    if (staleness > this.maxStaleness) return { kind: 'dropped', reason: `staleness ${staleness} exceeds maxStaleness ${this.maxStaleness}` };
    this.dim = update.length;
    this.updates.push(update);
    this.factors.push((weight * stalenessWeight(this.staleness, staleness)) / this.norm);
    this.taus.push(staleness);
    if (this.updates.length < this.size) return { kind: 'buffered', count: this.updates.length };
    return this.drain();
  }

  /** Aggregates a partial buffer (end of training); null when empty. 'mean' then divides by the count held. */
  flush(): FedBuffReady | null {
    return this.updates.length === 0 ? null : this.drain();
  }

  private drain(): FedBuffReady {
    const k = this.updates.length;
    const per = this.reduction === 'mean' ? 1 / k : 1;
    let aggregate: Float32Array;
    if (this.rule === null) {
      aggregate = combine(this.updates, Float64Array.from(this.factors, (c) => c * per));
    } else {
      const scaled = this.updates.map((u, i) => {
        const c = this.factors[i];
        const out = new Float32Array(u.length);
        for (let j = 0; j < u.length; j++) out[j] = u[j] * c;
        return out;
      });
      aggregate = this.rule(scaled);
      if (this.reduction === 'sum') for (let j = 0; j < aggregate.length; j++) aggregate[j] *= k;
    }
    const stalenessMean = this.taus.reduce((a, b) => a + b, 0) / k;
    this.updates = [];
    this.factors = [];
    this.taus = [];
    return { kind: 'ready', aggregate, count: k, stalenessMean };
  }
}
