import { combine } from './combine.js';
import { checkUpdates, checkWeights } from './validate.js';

/** Σ wᵢxᵢ / Σ wᵢ, or the plain mean without weights; accumulated in float64. */
export function weightedMean(updates: readonly Float32Array[], weights?: ArrayLike<number>): Float32Array {
  checkUpdates('weightedMean', updates);
  const n = updates.length;
  const coeffs = new Float64Array(n);
  if (weights === undefined) {
    coeffs.fill(1 / n);
  } else {
    const { w, total } = checkWeights('weightedMean', weights, n);
    for (let i = 0; i < n; i++) coeffs[i] = w[i] / total;
  }
  return combine(updates, coeffs);
}
