import { centeredClipping } from './centered-clipping.js';
import { combine, combineRows } from './combine.js';
import { coordinateMedian, trimmedMean } from './coordinatewise.js';
import { mixedSquaredDistances, pairwiseSquaredDistances } from './distances.js';
import { geometricMedian } from './geometric-median.js';
import { krumSelect } from './krum.js';
import { nnmMixingMatrix } from './nnm.js';
import { checkF, checkUpdates } from './validate.js';

export type RuleName = 'mean' | 'median' | 'trimmed-mean' | 'krum' | 'multi-krum' | 'geomed' | 'cclip';
export type MixName = 'none' | 'nnm';

export interface RobustSpec {
  /** Pre-aggregation: 'nnm' replaces each input by the mean of its n−f nearest inputs. */
  mix: MixName;
  rule: RuleName;
  /** Declared number of Byzantine inputs among the n of a round. */
  f: number;
  /** multi-krum: how many inputs to average (default n−f). */
  m?: number;
  /** cclip: radius τ (default 1) and iterations L (default 1). */
  tau?: number;
  iters?: number;
  /** geomed: Weiszfeld tolerance and iteration cap. */
  tol?: number;
  maxIter?: number;
}

/** The state spanning rounds: cclip's center (null before the first aggregate, and for every other rule). */
export interface RobustSnapshot {
  rule: RuleName;
  center: Float32Array | null;
}

/** What each rule needs of n and f, so a misconfigured round fails with one clear line before any work. */
export function minInputs(rule: RuleName, mix: MixName, f: number): number {
  let need = 1;
  if (rule === 'trimmed-mean') need = 2 * f + 1;
  if (rule === 'krum' || rule === 'multi-krum') need = 2 * f + 3;
  if (mix === 'nnm') need = Math.max(need, 2 * f + 1);
  return need;
}

/**
 * One robust aggregation: optional NNM, then the rule. Stateful only for centered clipping, whose center is the
 * previous aggregate (starting at 0), as Karimireddy et al. use it with worker momentum.
 *
 * The n×n distance matrix is computed once; Krum after NNM derives the mixed vectors' distances from it, and
 * rules that are linear in the inputs (mean, Krum, multi-Krum) combine the raw inputs with mixed coefficients
 * instead of materialising the n mixed vectors.
 */
export class RobustAggregator {
  readonly spec: Readonly<RobustSpec>;
  private center: Float32Array | null = null;

  constructor(spec: RobustSpec) {
    const rules: readonly RuleName[] = ['mean', 'median', 'trimmed-mean', 'krum', 'multi-krum', 'geomed', 'cclip'];
    if (!rules.includes(spec.rule)) throw new RangeError(`robust aggregation: unknown rule ${JSON.stringify(spec.rule)} (one of ${rules.join(', ')})`);
    if (spec.mix !== 'none' && spec.mix !== 'nnm') throw new RangeError(`robust aggregation: unknown mix ${JSON.stringify(spec.mix)} (none or nnm)`);
    if (!Number.isInteger(spec.f) || spec.f < 0) throw new RangeError(`robust aggregation: f must be a non-negative integer, got ${String(spec.f)}`);
    this.spec = { ...spec };
  }

  /** The center the next cclip call starts from (null before the first aggregate). */
  get clippingCenter(): Float32Array | null {
    return this.center;
  }

  /** The state that, with the spec, determines later aggregates (a copy). */
  snapshot(): RobustSnapshot {
    return { rule: this.spec.rule, center: this.center === null ? null : this.center.slice() };
  }

  /** Loads a snapshot taken under the same rule (copied); `dim`, when given, is the length the center must have. */
  restore(s: RobustSnapshot, dim?: number): void {
    const where = 'robust aggregation restore';
    if (s === null || typeof s !== 'object') throw new RangeError(`${where}: snapshot must be an object`);
    if (s.rule !== this.spec.rule) throw new RangeError(`${where}: snapshot is of rule ${String(s.rule)}, this aggregator's is ${this.spec.rule}`);
    const c = s.center;
    if (c !== null) {
      if (this.spec.rule !== 'cclip') throw new RangeError(`${where}: only cclip has a center`);
      if (!(c instanceof Float32Array)) throw new RangeError(`${where}: center must be a Float32Array or null`);
      if (dim !== undefined && c.length !== dim) throw new RangeError(`${where}: center has ${c.length} values, the model has ${dim}`);
      for (let j = 0; j < c.length; j++) if (!Number.isFinite(c[j])) throw new RangeError(`${where}: center has a non-finite value at ${j}`);
    }
    this.center = c === null ? null : c.slice();
  }

  aggregate(updates: readonly Float32Array[]): Float32Array {
    const { rule, mix, f } = this.spec;
    const d = checkUpdates(`robust ${rule}`, updates);
    const n = updates.length;
    const need = minInputs(rule, mix, f);
    if (n < need) {
      throw new RangeError(`robust ${mix === 'nnm' ? 'nnm+' : ''}${rule}: cannot tolerate f = ${f} with n = ${n} updates (needs n ≥ ${need})`);
    }
    let out: Float32Array;
    if (mix === 'none') {
      out = this.rule(updates, d, null, null);
    } else {
      const D = pairwiseSquaredDistances(updates);
      const W = nnmMixingMatrix(D, n, f);
      out = this.rule(updates, d, D, W);
    }
    if (rule === 'cclip') this.center = out;
    return out;
  }

  /** Applies the rule to the inputs, or to the mixed inputs W·X when W is given. */
  private rule(x: readonly Float32Array[], d: number, D: Float64Array | null, W: Float64Array | null): Float32Array {
    const n = x.length;
    const { rule, f } = this.spec;
    if (rule === 'mean') {
      const c = new Float64Array(n);
      if (W === null) c.fill(1 / n);
      else for (let r = 0; r < n; r++) for (let i = 0; i < n; i++) c[i] += W[r * n + i] / n;
      return combine(x, c);
    }
    if (rule === 'krum' || rule === 'multi-krum') {
      checkF(`robust ${rule}`, f, n, 2, 2);
      const m = rule === 'krum' ? 1 : (this.spec.m ?? n - f);
      if (!Number.isInteger(m) || m < 1 || m > n) throw new RangeError(`robust multi-krum: m must be an integer in [1, ${n}], got ${String(m)}`);
      const dist = W === null ? (D ?? pairwiseSquaredDistances(x)) : mixedSquaredDistances(D!, W, n, n);
      const sel = krumSelect(dist, n, f, m);
      const c = new Float64Array(n);
      for (let k = 0; k < sel.length; k++) {
        const r = sel[k];
        if (W === null) c[r] += 1 / m;
        else for (let i = 0; i < n; i++) c[i] += W[r * n + i] / m;
      }
      if (W === null && m === 1) return Float32Array.from(x[sel[0]]); // exact copy, as krum() returns
      return combine(x, c);
    }
    const y = W === null ? x : combineRows(x, W, n);
    switch (rule) {
      case 'median':
        return coordinateMedian(y);
      case 'trimmed-mean':
        return trimmedMean(y, f);
      case 'geomed':
        return geometricMedian(y, { tol: this.spec.tol, maxIter: this.spec.maxIter });
      case 'cclip':
        return centeredClipping(y, this.center ?? new Float32Array(d), { tau: this.spec.tau ?? 1, iters: this.spec.iters });
    }
  }
}
