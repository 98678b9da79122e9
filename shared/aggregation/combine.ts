import { runSplit, sharedFloats, threadsFor } from '../kernels/parallel.js';
import { wasmKernels } from '../kernels/wasm.js';
import { BLOCK } from './validate.js';

/**
 * out[r] = Σ_i coeffs[r·n + i] · updates[i] for every row r: by the WebAssembly kernel where it runs (float32 products
 * summed eight inputs at a time, added in float64; docs/kernels.md), else accumulated in float64 here.
 * Works column block by column block so the block of every input stays in cache while all rows use it:
 * this is the one kernel behind weightedMean, multiKrum and NNM (a small dense matrix times the update stack).
 */
export function combineRows(updates: readonly Float32Array[], coeffs: Float64Array, rows: number): Float32Array[] {
  const n = updates.length;
  const d = n === 0 ? 0 : updates[0].length;
  // Rows with identical coefficients (common after NNM: honest clients near each other share a neighbour set)
  // are computed once and copied. Found by a numeric hash of each row's coefficient bits, confirmed exactly.
  const firstSame = dedupeRows(coeffs, n, rows);
  const out: Float32Array[] = [];
  for (let r = 0; r < rows; r++) out.push(firstSame[r] === r ? new Float32Array(d) : out[firstSame[r]]);
  // Per row, the inputs it actually uses (NNM and Krum rows are sparse in practice), packed into one array.
  const usedStart = new Int32Array(rows + 1);
  const usedIdx = new Int32Array(rows * n);
  let m = 0;
  for (let r = 0; r < rows; r++) {
    usedStart[r] = m;
    if (firstSame[r] === r) for (let i = 0, o = r * n; i < n; i++) if (coeffs[o + i] !== 0) usedIdx[m++] = i;
  }
  usedStart[rows] = m;
  const kernels = wasmKernels(d);
  if (kernels !== null) {
    const distinct = Array.from(firstSame, (f, r) => f === r);
    const t = threadsFor(updates);
    if (t === null) kernels.combineRows(updates, coeffs, out, usedStart, usedIdx, distinct);
    else {
      // Coordinate ranges across threads: each output value is the same sum whichever thread computes it.
      const inputs = [...updates];
      const shared = out.map((o, r) => (distinct[r] ? sharedFloats(d) : o));
      runSplit(t, d, 4, (from, to) => ({ op: 'combine', inputs, coeffs, usedStart, usedIdx, distinct, out: shared, from, to }));
      shared.forEach((o, r) => {
        if (distinct[r]) out[r].set(o);
      });
    }
    return out.map((o, r) => (firstSame[r] === r ? o : o.slice()));
  }
  const acc = new Float64Array(Math.min(BLOCK, d));
  for (let j0 = 0; j0 < d; j0 += BLOCK) {
    const len = Math.min(BLOCK, d - j0);
    for (let r = 0; r < rows; r++) {
      if (firstSame[r] !== r) continue;
      const k0 = usedStart[r], k1 = usedStart[r + 1];
      const o = r * n;
      acc.fill(0, 0, len);
      // Four inputs per pass: a quarter of the accumulator loads and stores, which dominate in JS.
      let k = k0;
      for (; k + 4 <= k1; k += 4) {
        const i0 = usedIdx[k], i1 = usedIdx[k + 1], i2 = usedIdx[k + 2], i3 = usedIdx[k + 3];
        const c0 = coeffs[o + i0], c1 = coeffs[o + i1], c2 = coeffs[o + i2], c3 = coeffs[o + i3];
        const x0 = updates[i0], x1 = updates[i1], x2 = updates[i2], x3 = updates[i3];
        for (let j = 0, g = j0; j < len; j++, g++) acc[j] += c0 * x0[g] + c1 * x1[g] + c2 * x2[g] + c3 * x3[g];
      }
      for (; k < k1; k++) {
        const i = usedIdx[k];
        const c = coeffs[o + i];
        const x = updates[i];
        for (let j = 0, g = j0; j < len; j++, g++) acc[j] += c * x[g];
      }
      const y = out[r];
      for (let j = 0; j < len; j++) y[j0 + j] = acc[j];
    }
  }
  // Copies, not aliases: callers own each returned row.
  return out.map((o, r) => (firstSame[r] === r ? o : o.slice()));
}

/**
 * firstSame[r] = the first row with exactly the same coefficients as row r (r itself when none earlier).
 * Equality is on the coefficient bit patterns (so ±0 and NaN rows may simply be computed twice, with the same result).
 */
function dedupeRows(coeffs: Float64Array, n: number, rows: number): Int32Array {
  const firstSame = new Int32Array(rows);
  if (rows === 1) return firstSame;
  const bits = new Int32Array(coeffs.buffer, coeffs.byteOffset, coeffs.length * 2);
  const hash = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let h = 0x811c9dc5 | 0;
    for (let k = 2 * r * n, e = k + 2 * n; k < e; k++) h = Math.imul(h ^ bits[k], 0x01000193);
    hash[r] = h;
  }
  // For the few rows of one round a quadratic scan of hashes beats any map; a Map chains hashes beyond that.
  const chain = rows <= 64 ? null : new Map<number, number>();
  const nextSameHash = chain === null ? null : new Int32Array(rows).fill(-1);
  for (let r = 0; r < rows; r++) {
    firstSame[r] = r;
    const h = hash[r];
    if (chain === null || nextSameHash === null) {
      for (let q = 0; q < r; q++) {
        if (hash[q] === h && firstSame[q] === q && sameRow(bits, q, r, n)) {
          firstSame[r] = q;
          break;
        }
      }
    } else {
      const head = chain.get(h);
      let q = head ?? -1;
      for (; q >= 0; q = nextSameHash[q]) {
        if (sameRow(bits, q, r, n)) {
          firstSame[r] = q;
          break;
        }
      }
      if (q < 0) {
        // A new distinct row: prepend to its hash chain (chains hold only first occurrences).
        nextSameHash[r] = head ?? -1;
        chain.set(h, r);
      }
    }
  }
  return firstSame;
}

function sameRow(bits: Int32Array, q: number, r: number, n: number): boolean {
  for (let a = 2 * q * n, b = 2 * r * n, e = a + 2 * n; a < e; a++, b++) if (bits[a] !== bits[b]) return false;
  return true;
}

/** Σ_i coeffs[i]·updates[i] as one vector. */
export function combine(updates: readonly Float32Array[], coeffs: Float64Array): Float32Array {
  const n = updates.length;
  const d = n === 0 ? 0 : updates[0].length;
  // Short vectors (simulations with d ≈ 10 call this millions of times): no blocking, no row bookkeeping.
  if (d <= BLOCK && wasmKernels(d) === null) {
    const acc = new Float64Array(d);
    for (let i = 0; i < n; i++) {
      const c = coeffs[i];
      if (c === 0) continue;
      const x = updates[i];
      for (let j = 0; j < d; j++) acc[j] += c * x[j];
    }
    return Float32Array.from(acc);
  }
  return combineRows(updates, coeffs, 1)[0];
}
