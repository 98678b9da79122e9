import { runSplit, sharedFloats, threadsFor } from '../kernels/parallel.js';
import { wasmKernels } from '../kernels/wasm.js';
import { checkF, checkUpdates } from './validate.js';

/** Sorts a[0..n) ascending in place; insertion sort for the small n typical of one round, native sort beyond. */
function sortColumn(a: Float64Array, n: number): void {
  if (n > 32) {
    a.subarray(0, n).sort();
    return;
  }
  for (let i = 1; i < n; i++) {
    const v = a[i];
    let k = i - 1;
    while (k >= 0 && a[k] > v) {
      a[k + 1] = a[k];
      k--;
    }
    a[k + 1] = v;
  }
}

/**
 * Per coordinate: sort the n values and average sorted[lo..hi). One scratch column, no per-coordinate allocation.
 */
function sortedWindowMean(updates: readonly Float32Array[], lo: number, hi: number): Float32Array {
  const n = updates.length;
  const d = updates[0].length;
  const out = new Float32Array(d);
  const count = hi - lo;
  const kernels = n <= 32 ? wasmKernels(d) : null;
  // The kernel sorts four coordinates at once with the same placements as the loop below: bit-identical results.
  if (kernels !== null) {
    const t = threadsFor(updates);
    if (t === null) return kernels.sortedWindowMean(updates, lo, hi);
    const inputs = [...updates];
    const shared = sharedFloats(d);
    runSplit(t, d, 4, (from, to) => ({ op: 'window-mean', inputs, lo, hi, out: shared, from, to }));
    return new Float32Array(shared); // a copy in ordinary memory
  }
  if (n <= 32) {
    // Few inputs: insert each value as it is read, into col[1..n] behind a −∞ sentinel at col[0] (no value is
    // below it, NaN included, so the scan needs no bounds test). Same order as sortColumn, so the same sums.
    const col = new Float64Array(n + 1);
    col[0] = -Infinity;
    for (let j = 0; j < d; j++) {
      col[1] = updates[0][j];
      for (let i = 1; i < n; i++) {
        const v = updates[i][j];
        let k = i;
        while (col[k] > v) {
          col[k + 1] = col[k];
          k--;
        }
        col[k + 1] = v;
      }
      let s = 0;
      for (let k = lo + 1; k <= hi; k++) s += col[k];
      out[j] = s / count;
    }
    return out;
  }
  const col = new Float64Array(n);
  for (let j = 0; j < d; j++) {
    for (let i = 0; i < n; i++) col[i] = updates[i][j];
    sortColumn(col, n);
    let s = 0;
    for (let k = lo; k < hi; k++) s += col[k];
    out[j] = s / count;
  }
  return out;
}

/** Coordinate-wise median; for even n the mean of the two middle values. */
export function coordinateMedian(updates: readonly Float32Array[]): Float32Array {
  checkUpdates('coordinateMedian', updates);
  const n = updates.length;
  return n % 2 === 1 ? sortedWindowMean(updates, (n - 1) / 2, (n + 1) / 2) : sortedWindowMean(updates, n / 2 - 1, n / 2 + 1);
}

/** Coordinate-wise trimmed mean: drop the f smallest and f largest values, average the rest (needs n > 2f). */
export function trimmedMean(updates: readonly Float32Array[], f: number): Float32Array {
  checkUpdates('trimmedMean', updates);
  const n = updates.length;
  checkF('trimmedMean', f, n, 2, 0);
  return sortedWindowMean(updates, f, n - f);
}
