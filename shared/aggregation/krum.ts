import { combine } from './combine.js';
import { pairwiseSquaredDistances } from './distances.js';
import { checkF, checkUpdates } from './validate.js';

/** score(i) = sum of the n−f−2 smallest squared distances from i to the others (Blanchard et al. 2017). */
export function krumScores(D: Float64Array, n: number, f: number): Float64Array {
  const k = n - f - 2;
  const scores = new Float64Array(n);
  const row = new Float64Array(n - 1);
  for (let i = 0; i < n; i++) {
    let c = 0;
    for (let j = 0; j < n; j++) if (j !== i) row[c++] = D[i * n + j];
    row.sort();
    let s = 0;
    for (let t = 0; t < k; t++) s += row[t];
    scores[i] = s;
  }
  return scores;
}

/** Indices of the m lowest Krum scores, ties broken by lower index. */
export function krumSelect(D: Float64Array, n: number, f: number, m: number): Int32Array {
  const scores = krumScores(D, n, f);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b] || a - b);
  return Int32Array.from(order.slice(0, m));
}

/** Krum: a copy of the input with the lowest score (ties → lowest index). Needs n > 2f+2. */
export function krum(updates: readonly Float32Array[], f: number): Float32Array {
  checkUpdates('krum', updates);
  const n = updates.length;
  checkF('krum', f, n, 2, 2);
  const best = krumSelect(pairwiseSquaredDistances(updates), n, f, 1)[0];
  return Float32Array.from(updates[best]);
}

/** Multi-Krum: mean of the m lowest-score inputs (default m = n−f). Needs n > 2f+2 and 1 ≤ m ≤ n. */
export function multiKrum(updates: readonly Float32Array[], f: number, m?: number): Float32Array {
  checkUpdates('multiKrum', updates);
  const n = updates.length;
  checkF('multiKrum', f, n, 2, 2);
  const mm = m ?? n - f;
  if (!Number.isInteger(mm) || mm < 1 || mm > n) throw new RangeError(`multiKrum: m must be an integer in [1, ${n}], got ${String(m)}`);
  return combine(updates, selectionCoefficients(krumSelect(pairwiseSquaredDistances(updates), n, f, mm), n));
}

/** Coefficients of the plain mean over the selected indices. */
export function selectionCoefficients(selected: Int32Array, n: number): Float64Array {
  const c = new Float64Array(n);
  for (let k = 0; k < selected.length; k++) c[selected[k]] = 1 / selected.length;
  return c;
}
