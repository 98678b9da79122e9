import { ResidentRows } from '../kernels/wasm.js';
import { checkNonNegative, checkInteger, checkUpdates } from './validate.js';

export interface CenteredClippingOptions {
  /** Clipping radius τ ≥ 0 (Infinity allowed: then one iteration is the plain mean). */
  tau: number;
  /** Number of clipping iterations L. Default 1. */
  iters?: number;
}

/**
 * Centered clipping (Karimireddy, He & Jaggi 2021): v ← center; `iters` times
 * v ← v + (1/n) Σ (xᵢ − v)·min(1, τ/‖xᵢ − v‖). The center is usually the previous round's aggregate.
 */
export function centeredClipping(
  updates: readonly Float32Array[],
  center: Float32Array,
  options: CenteredClippingOptions,
): Float32Array {
  const d = checkUpdates('centeredClipping', updates);
  if (!(center instanceof Float32Array)) throw new RangeError('centeredClipping: center must be a Float32Array');
  if (center.length !== d) throw new RangeError(`centeredClipping: center has length ${center.length}, updates have ${d}`);
  if (options == null || typeof options.tau !== 'number') throw new RangeError('centeredClipping: options.tau is required');
  const { tau } = options;
  const iters = options.iters ?? 1;
  checkNonNegative('centeredClipping', 'tau', tau, true);
  checkInteger('centeredClipping', 'iters', iters, 0);
  const n = updates.length;
  const passes = ResidentRows.fits(n, d) ? residentPasses(updates, center) : scalarPasses(updates, center);
  const sq = new Float64Array(n);
  const coef = new Float64Array(n);
  for (let it = 0; it < iters; it++) {
    // All n clipping coefficients first (they depend only on v), then delta in one sweep over the inputs.
    passes.squaredDistances(sq);
    const used: number[] = []; // xᵢ = v contributes nothing (and avoids τ/0)
    for (let i = 0; i < n; i++) {
      const norm = Math.sqrt(sq[i]);
      coef[i] = Math.min(1, tau / norm) / n;
      if (norm !== 0) used.push(i);
    }
    passes.step(coef, used);
  }
  return passes.result();
}

/** The passes over the inputs, on the float64 center v. */
interface Passes {
  /** out[i] = ‖xᵢ − v‖². */
  squaredDistances(out: Float64Array): void;
  /** v ← v + Σ_{i in used, in order} cᵢ(xᵢ − v). */
  step(c: Float64Array, used: readonly number[]): void;
  /** v rounded to float32. */
  result(): Float32Array;
}

function scalarPasses(updates: readonly Float32Array[], center: Float32Array): Passes {
  const d = center.length;
  const v = Float64Array.from(center);
  const delta = new Float64Array(d);
  return {
    squaredDistances(out) {
      updates.forEach((x, i) => {
        let sq = 0;
        for (let j = 0; j < d; j++) {
          const t = x[j] - v[j];
          sq += t * t;
        }
        out[i] = sq;
      });
    },
    step(c, used) {
      delta.fill(0);
      let k = 0;
      // Two inputs per pass: ((δ + c·(x−v)) + c'·(x'−v)) is the same sum as one at a time, with half the writes.
      for (; k + 1 < used.length; k += 2) {
        const x = updates[used[k]], y = updates[used[k + 1]];
        const c1 = c[used[k]], c2 = c[used[k + 1]];
        for (let j = 0; j < d; j++) delta[j] = delta[j] + c1 * (x[j] - v[j]) + c2 * (y[j] - v[j]);
      }
      if (k < used.length) {
        const x = updates[used[k]];
        const c1 = c[used[k]];
        for (let j = 0; j < d; j++) delta[j] += c1 * (x[j] - v[j]);
      }
      for (let j = 0; j < d; j++) v[j] += delta[j];
    },
    result: () => Float32Array.from(v),
  };
}

function residentPasses(updates: readonly Float32Array[], center: Float32Array): Passes {
  const rows = new ResidentRows(updates, 2);
  const [v, delta] = [rows.vector(0), rows.vector(1)];
  rows.view(0).set(center);
  return {
    squaredDistances: (out) => rows.squaredDistancesFrom(v, out),
    step(c, used) {
      rows.clippedSum(c, used, v, delta);
      rows.addInto(v, delta);
    },
    result: () => new Float32Array(rows.view(0)),
  };
}
