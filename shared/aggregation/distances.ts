import { runSplit, threadsFor, type KernelThreads } from '../kernels/parallel.js';
import { DISTANCE_BLOCK, pairMatrix, wasmKernels } from '../kernels/wasm.js';
import { BLOCK } from './validate.js';

/**
 * Symmetric n×n matrix of squared L2 distances, row-major in a Float64Array: by the WebAssembly kernel where it runs
 * (float32 differences and squares in short runs, summed in float64; docs/kernels.md), else in float64 here.
 * Computed once per round and shared by Krum, multi-Krum and every NNM/NNA pivot.
 * Direct differences (not ‖a‖²+‖b‖²−2a·b) so identical inputs are exactly 0 apart and index tie-breaks are exact.
 */
export function pairwiseSquaredDistances(updates: readonly Float32Array[]): Float64Array {
  // Byzantine inputs are often f copies of one vector (and the ALIE/FOE line search builds them 7× a round): compute
  // the distances of the distinct inputs only and spread them. A copy's distances are exactly its original's, and a
  // finite copy is exactly 0 from it, as computed (x − x = 0); non-finite vectors never count as copies (∞ − ∞ is NaN).
  const n = updates.length;
  const first = copyOfPrevious(updates);
  if (first !== null) {
    const distinct: Float32Array[] = [];
    const at = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      if (first[i] === i) distinct.push(updates[i]);
      at[i] = distinct.length - 1;
    }
    const Du = distinctSquaredDistances(distinct);
    const m = distinct.length;
    const D = new Float64Array(n * n);
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) D[a * n + b] = Du[at[a] * m + at[b]];
    return D;
  }
  return distinctSquaredDistances(updates);
}

/**
 * null when no input is a copy of the one before it; else first[i] = the index of the first of the run of copies
 * input i belongs to (i itself when it starts one). A copy: same length, every x[j] − y[j] === 0 (so both finite).
 */
function copyOfPrevious(updates: readonly Float32Array[]): Int32Array | null {
  const n = updates.length;
  let first: Int32Array | null = null;
  for (let i = 1; i < n; i++) {
    const x = updates[i - 1], y = updates[i];
    let same = x.length === y.length;
    for (let j = 0; same && j < x.length; j++) same = x[j] - y[j] === 0;
    if (!same) continue;
    if (first === null) first = Int32Array.from({ length: n }, (_, k) => k);
    first[i] = first[i - 1];
  }
  return first;
}

/** pairwiseSquaredDistances without the search for copies. */
function distinctSquaredDistances(updates: readonly Float32Array[]): Float64Array {
  const n = updates.length;
  const d = n === 0 ? 0 : updates[0].length;
  const kernels = wasmKernels(d);
  if (kernels !== null) {
    const t = threadsFor(updates);
    if (t === null) return kernels.squaredDistances(updates);
    return threadedSquaredDistances(t, updates);
  }
  const D = new Float64Array(n * n);
  // Column blocks keep the n input slices in cache while all pairs use them.
  for (let j0 = 0; j0 < d; j0 += BLOCK) {
    const j1 = Math.min(d, j0 + BLOCK);
    let a = 0;
    // Two rows against four partners per pass: six loads serve eight pairs. Each pair's sum is still accumulated
    // in coordinate order, so results are bit-identical to squaredDistance().
    for (; a + 1 < n; a += 2) {
      const xa = updates[a], xc = updates[a + 1];
      D[a * n + a + 1] += blockDistance(xa, xc, j0, j1);
      let b = a + 2;
      for (; b + 4 <= n; b += 4) {
        const y0 = updates[b], y1 = updates[b + 1], y2 = updates[b + 2], y3 = updates[b + 3];
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0, u0 = 0, u1 = 0, u2 = 0, u3 = 0;
        for (let j = j0; j < j1; j++) {
          const v = xa[j], w = xc[j];
          const p0 = y0[j], p1 = y1[j], p2 = y2[j], p3 = y3[j];
          const t0 = v - p0, t1 = v - p1, t2 = v - p2, t3 = v - p3;
          s0 += t0 * t0;
          s1 += t1 * t1;
          s2 += t2 * t2;
          s3 += t3 * t3;
          const q0 = w - p0, q1 = w - p1, q2 = w - p2, q3 = w - p3;
          u0 += q0 * q0;
          u1 += q1 * q1;
          u2 += q2 * q2;
          u3 += q3 * q3;
        }
        const ra = a * n + b, rc = ra + n;
        D[ra] += s0;
        D[ra + 1] += s1;
        D[ra + 2] += s2;
        D[ra + 3] += s3;
        D[rc] += u0;
        D[rc + 1] += u1;
        D[rc + 2] += u2;
        D[rc + 3] += u3;
      }
      for (; b < n; b++) {
        const xb = updates[b];
        let s = 0, u = 0;
        for (let j = j0; j < j1; j++) {
          const p = xb[j];
          const t = xa[j] - p, q = xc[j] - p;
          s += t * t;
          u += q * q;
        }
        D[a * n + b] += s;
        D[(a + 1) * n + b] += u;
      }
    }
    // An odd n leaves the last row, which has no partner after it.
  }
  for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) D[b * n + a] = D[a * n + b];
  return D;
}

/**
 * squaredDistances with whole distance blocks spread over threads: each block's pair sums land in a shared array,
 * and are added here in block order, as the one-thread kernel adds them, so every entry is the same bits.
 */
function threadedSquaredDistances(t: KernelThreads, updates: readonly Float32Array[]): Float64Array {
  const n = updates.length;
  const d = updates[0].length;
  const pairs = (n * (n - 1)) / 2;
  const blocks = Math.ceil(d / DISTANCE_BLOCK);
  const inputs = [...updates];
  const sums = new Float64Array(new SharedArrayBuffer(blocks * pairs * 8));
  runSplit(t, d, DISTANCE_BLOCK, (from, to) => ({ op: 'distances', inputs, sums, from, to }));
  // Block by block in block order, as the one-thread kernel adds them.
  const packed = new Float64Array(pairs);
  for (let b = 0; b < blocks; b++) for (let p = 0; p < pairs; p++) packed[p] += sums[b * pairs + p];
  return pairMatrix(packed, n);
}

/** Σ_{j0 ≤ j < j1} (x_j − y_j)², in coordinate order. */
function blockDistance(x: Float32Array, y: Float32Array, j0: number, j1: number): number {
  let s = 0;
  for (let j = j0; j < j1; j++) {
    const t = x[j] - y[j];
    s += t * t;
  }
  return s;
}

/** ‖a − b‖² summed block by block in exactly the order of pairwiseSquaredDistances, so results agree bit for bit. */
export function squaredDistance(a: Float32Array, b: Float32Array): number {
  const d = a.length;
  const kernels = wasmKernels(d);
  if (kernels !== null) return kernels.squaredDistances([a, b])[1];
  let total = 0;
  for (let j0 = 0; j0 < d; j0 += BLOCK) {
    const j1 = Math.min(d, j0 + BLOCK);
    let s = 0;
    for (let j = j0; j < j1; j++) {
      const t = a[j] - b[j];
      s += t * t;
    }
    total += s;
  }
  return total;
}

/**
 * Squared distances between mixed vectors yᵣ = Σᵢ Wᵣᵢ xᵢ, from the inputs' distance matrix alone, in O(n³).
 * With G = −½ J D J the Gram matrix of the centred inputs (J = I − 11ᵀ/n) and every row of W summing to 1,
 * ‖yᵣ − yₛ‖² = (W G Wᵀ)ᵣᵣ + (W G Wᵀ)ₛₛ − 2(W G Wᵀ)ᵣₛ, so Krum after NNM needs no second O(n²d) pass over the data.
 */
export function mixedSquaredDistances(D: Float64Array, W: Float64Array, n: number, rows: number): Float64Array {
  const rowMean = new Float64Array(n);
  let grand = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += D[i * n + k];
    rowMean[i] = s / n;
    grand += s;
  }
  grand /= n * n;
  const G = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) G[i * n + k] = -0.5 * (D[i * n + k] - rowMean[i] - rowMean[k] + grand);
  }
  const M = new Float64Array(rows * n); // W G
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < n; i++) {
      const w = W[r * n + i];
      if (w === 0) continue;
      for (let k = 0; k < n; k++) M[r * n + k] += w * G[i * n + k];
    }
  }
  // W G Wᵀ, each entry as ½(Mᵣ·Wₛ + Mₛ·Wᵣ): symmetric in r and s by construction, so rows with equal weights get
  // bit-equal entries and mixed vectors that are the same in exact arithmetic tie exactly (Krum then picks the lower
  // index, whatever rounding the distances carried); Mᵣ·Wₛ alone differs from Mₛ·Wᵣ in the last bits.
  const Gy = new Float64Array(rows * rows);
  for (let r = 0; r < rows; r++) {
    for (let s = r; s < rows; s++) {
      let a = 0;
      let b = 0;
      for (let k = 0; k < n; k++) {
        a += M[r * n + k] * W[s * n + k];
        b += M[s * n + k] * W[r * n + k];
      }
      const v = 0.5 * (a + b);
      Gy[r * rows + s] = v;
      Gy[s * rows + r] = v;
    }
  }
  const out = new Float64Array(rows * rows);
  for (let r = 0; r < rows; r++) {
    for (let s = r + 1; s < rows; s++) {
      const v = Math.max(0, Gy[r * rows + r] + Gy[s * rows + s] - 2 * Gy[r * rows + s]); // rounding may dip below 0
      out[r * rows + s] = v;
      out[s * rows + r] = v;
    }
  }
  return out;
}

/**
 * Indices 0..n−1 other than `skip` (or all when skip < 0), ordered by (distance from row p, index): a stable,
 * index-based tie-break so every rule is deterministic.
 */
export function orderByDistance(D: Float64Array, n: number, p: number, skip: number): Int32Array {
  const out = new Int32Array(skip >= 0 && skip < n ? n - 1 : n);
  const row = p * n;
  // NaN distances make the comparator inconsistent, so the order is whatever the native sort makes of it: keep that.
  let hasNaN = false;
  for (let i = 0; i < n; i++) if (Number.isNaN(D[row + i])) hasNaN = true;
  if (n > 32 || hasNaN) {
    const idx: number[] = [];
    for (let i = 0; i < n; i++) if (i !== skip) idx.push(i);
    idx.sort((x, y) => D[row + x] - D[row + y] || x - y);
    out.set(idx);
    return out;
  }
  // Few inputs: insertion sort on (distance, index), the same order as the comparator above.
  let m = 0;
  for (let i = 0; i < n; i++) {
    if (i === skip) continue;
    const dv = D[row + i];
    let k = m - 1;
    while (k >= 0 && (D[row + out[k]] - dv || out[k] - i) > 0) {
      out[k + 1] = out[k];
      k--;
    }
    out[k + 1] = i;
    m++;
  }
  return out;
}
