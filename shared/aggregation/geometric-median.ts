import { BLOCK, checkNonNegative, checkInteger, checkUpdates } from './validate.js';

export interface GeometricMedianOptions {
  /** Stop when ‖z_new − z‖ ≤ tol·max(1, ‖z‖). Default 1e-7. */
  tol?: number;
  /** Default 1000. */
  maxIter?: number;
}

/** Distances below this count as this, so a z sitting on an input stays finite (Weiszfeld's singularity). */
const EPS = 1e-12;

/**
 * Geometric median by Weiszfeld's iteration started at the mean:
 * z ← Σ xᵢ/max(‖z−xᵢ‖, 1e-12) / Σ 1/max(‖z−xᵢ‖, 1e-12), until ‖z_new − z‖ ≤ tol·max(1, ‖z‖) or maxIter steps.
 * The iterate is kept in float64.
 */
export function geometricMedian(updates: readonly Float32Array[], options: GeometricMedianOptions = {}): Float32Array {
  const d = checkUpdates('geometricMedian', updates);
  const tol = options.tol ?? 1e-7;
  const maxIter = options.maxIter ?? 1000;
  checkNonNegative('geometricMedian', 'tol', tol);
  checkInteger('geometricMedian', 'maxIter', maxIter, 0);
  const n = updates.length;
  let z = new Float64Array(d);
  for (const x of updates) for (let j = 0; j < d; j++) z[j] += x[j];
  for (let j = 0; j < d; j++) z[j] /= n;
  let next = new Float64Array(d);
  const beta = new Float64Array(n);
  for (let it = 0; it < maxIter; it++) {
    distancesTo(z, updates, beta);
    let total = 0;
    for (let i = 0; i < n; i++) {
      beta[i] = 1 / Math.max(beta[i], EPS);
      total += beta[i];
    }
    next.fill(0);
    for (let i = 0; i < n; i++) {
      const c = beta[i] / total;
      const x = updates[i];
      for (let j = 0; j < d; j++) next[j] += c * x[j];
    }
    let step = 0;
    let norm = 0;
    for (let j = 0; j < d; j++) {
      const t = next[j] - z[j];
      step += t * t;
      norm += next[j] * next[j];
    }
    [z, next] = [next, z];
    if (Math.sqrt(step) <= tol * Math.max(1, Math.sqrt(norm))) break;
  }
  return Float32Array.from(z);
}

/** out[i] = ‖z − xᵢ‖, blocked over coordinates. */
function distancesTo(z: Float64Array, updates: readonly Float32Array[], out: Float64Array): void {
  const n = updates.length;
  const d = z.length;
  out.fill(0);
  for (let j0 = 0; j0 < d; j0 += BLOCK) {
    const j1 = Math.min(d, j0 + BLOCK);
    for (let i = 0; i < n; i++) {
      const x = updates[i];
      let s = 0;
      for (let j = j0; j < j1; j++) {
        const t = z[j] - x[j];
        s += t * t;
      }
      out[i] += s;
    }
  }
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(out[i]);
}
