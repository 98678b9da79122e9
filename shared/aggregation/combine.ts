import { BLOCK } from './validate.js';

/**
 * out[r] = Σ_i coeffs[r·n + i] · updates[i] for every row r, accumulated in float64.
 * Works column block by column block so the block of every input stays in cache while all rows use it:
 * this is the one kernel behind weightedMean, multiKrum and NNM (a small dense matrix times the update stack).
 */
export function combineRows(updates: readonly Float32Array[], coeffs: Float64Array, rows: number): Float32Array[] {
  const n = updates.length;
  const d = n === 0 ? 0 : updates[0].length;
  const out: Float32Array[] = [];
  for (let r = 0; r < rows; r++) out.push(new Float32Array(d));
  // Per row, the inputs it actually uses (NNM and Krum rows are sparse in practice).
  const used: Int32Array[] = [];
  for (let r = 0; r < rows; r++) {
    const idx: number[] = [];
    for (let i = 0; i < n; i++) if (coeffs[r * n + i] !== 0) idx.push(i);
    used.push(Int32Array.from(idx));
  }
  const acc = new Float64Array(BLOCK);
  for (let j0 = 0; j0 < d; j0 += BLOCK) {
    const len = Math.min(BLOCK, d - j0);
    for (let r = 0; r < rows; r++) {
      const idx = used[r];
      acc.fill(0, 0, len);
      for (let k = 0; k < idx.length; k++) {
        const i = idx[k];
        const c = coeffs[r * n + i];
        const x = updates[i];
        for (let j = 0; j < len; j++) acc[j] += c * x[j0 + j];
      }
      const o = out[r];
      for (let j = 0; j < len; j++) o[j0 + j] = acc[j];
    }
  }
  return out;
}

/** Σ_i coeffs[i]·updates[i] as one vector. */
export function combine(updates: readonly Float32Array[], coeffs: Float64Array): Float32Array {
  return combineRows(updates, coeffs, 1)[0];
}
