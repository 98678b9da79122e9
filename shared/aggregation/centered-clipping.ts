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
  const v = Float64Array.from(center);
  const delta = new Float64Array(d);
  const coef = new Float64Array(n);
  const skip = new Uint8Array(n); // xᵢ = v contributes nothing (and avoids τ/0)
  for (let it = 0; it < iters; it++) {
    // All n clipping coefficients first (they depend only on v), then delta in one sweep over the inputs.
    for (let i = 0; i < n; i++) {
      const x = updates[i];
      let sq = 0;
      for (let j = 0; j < d; j++) {
        const t = x[j] - v[j];
        sq += t * t;
      }
      const norm = Math.sqrt(sq);
      skip[i] = norm === 0 ? 1 : 0;
      coef[i] = Math.min(1, tau / norm) / n;
    }
    delta.fill(0);
    for (let i = 0; i < n; i++) {
      if (skip[i] === 1) continue;
      const c = coef[i];
      const x = updates[i];
      // Pair inputs when the next one contributes too: ((δ + c·(x−v)) + c'·(x'−v)) is the same sum, one write.
      if (i + 1 < n && skip[i + 1] === 0) {
        const c2 = coef[++i];
        const y = updates[i];
        for (let j = 0; j < d; j++) delta[j] = delta[j] + c * (x[j] - v[j]) + c2 * (y[j] - v[j]);
      } else {
        for (let j = 0; j < d; j++) delta[j] += c * (x[j] - v[j]);
      }
    }
    for (let j = 0; j < d; j++) v[j] += delta[j];
  }
  return Float32Array.from(v);
}
