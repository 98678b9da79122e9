import { combineRows } from './combine.js';
import { orderByDistance, pairwiseSquaredDistances, squaredDistance } from './distances.js';
import { checkF, checkUpdates } from './validate.js';

/**
 * Row-stochastic mixing matrix of NNM: row i puts 1/(n−f) on input i and on its n−f−1 nearest others
 * (squared L2, ties → lower index). The pivot is always its own neighbour, even if a duplicate ties with it.
 */
export function nnmMixingMatrix(D: Float64Array, n: number, f: number, pivots?: readonly number[]): Float64Array {
  const rows = pivots ?? Array.from({ length: n }, (_, i) => i);
  const W = new Float64Array(rows.length * n);
  const c = 1 / (n - f);
  for (let r = 0; r < rows.length; r++) {
    const p = rows[r];
    W[r * n + p] = c;
    const order = orderByDistance(D, n, p, p);
    for (let k = 0; k < n - f - 1; k++) W[r * n + order[k]] = c;
  }
  return W;
}

/**
 * Nearest-neighbour mixing (Allouah et al. 2023): returns n vectors, row i = mean of the n−f inputs nearest
 * input i (itself included). Needs n > 2f.
 */
export function nearestNeighborMixing(updates: readonly Float32Array[], f: number): Float32Array[] {
  checkUpdates('nearestNeighborMixing', updates);
  const n = updates.length;
  checkF('nearestNeighborMixing', f, n, 2, 0);
  const W = nnmMixingMatrix(pairwiseSquaredDistances(updates), n, f);
  return combineRows(updates, W, n);
}

/** Nearest-neighbour averaging at one pivot (MoNNA's mixing step at node `pivot`): row `pivot` of NNM. */
export function nna(updates: readonly Float32Array[], f: number, pivot: number): Float32Array {
  checkUpdates('nna', updates);
  const n = updates.length;
  checkF('nna', f, n, 2, 0);
  if (!Number.isInteger(pivot) || pivot < 0 || pivot >= n) {
    throw new RangeError(`nna: pivot must be an integer in [0, ${n - 1}], got ${String(pivot)}`);
  }
  // One pivot needs only its own distance row: O(nd), not the full matrix.
  const D = distanceRow(updates, pivot);
  const W = nnmMixingMatrix(D, n, f, [pivot]);
  return combineRows(updates, W.subarray(0, n), 1)[0];
}

/** An n×n matrix whose only filled row (and column) is the pivot's, enough for orderByDistance. */
function distanceRow(updates: readonly Float32Array[], p: number): Float64Array {
  const n = updates.length;
  const D = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    if (i === p) continue;
    const s = squaredDistance(updates[p], updates[i]);
    D[p * n + i] = s;
    D[i * n + p] = s;
  }
  return D;
}
