import { BLOCK } from './validate.js';

/**
 * out[r] = Σ_i coeffs[r·n + i] · updates[i] for every row r, accumulated in float64.
 * Works column block by column block so the block of every input stays in cache while all rows use it:
 * this is the one kernel behind weightedMean, multiKrum and NNM (a small dense matrix times the update stack).
 */
export function combineRows(updates: readonly Float32Array[], coeffs: Float64Array, rows: number): Float32Array[] {
  const n = updates.length;
  const d = n === 0 ? 0 : updates[0].length;
  // Rows with identical coefficients (common after NNM: honest clients near each other share a neighbour set)
  // are computed once and copied.
  const firstSame = new Int32Array(rows);
  const seen = new Map<string, number>();
  for (let r = 0; r < rows; r++) {
    const key = coeffs.subarray(r * n, r * n + n).join(',');
    const prev = seen.get(key);
    firstSame[r] = prev ?? r;
    if (prev === undefined) seen.set(key, r);
  }
  const out: Float32Array[] = [];
  for (let r = 0; r < rows; r++) out.push(firstSame[r] === r ? new Float32Array(d) : out[firstSame[r]]);
  // Per row, the inputs it actually uses (NNM and Krum rows are sparse in practice).
  const used: Int32Array[] = [];
  for (let r = 0; r < rows; r++) {
    const idx: number[] = [];
    if (firstSame[r] === r) for (let i = 0; i < n; i++) if (coeffs[r * n + i] !== 0) idx.push(i);
    used.push(Int32Array.from(idx));
  }
  const acc = new Float64Array(BLOCK);
  for (let j0 = 0; j0 < d; j0 += BLOCK) {
    const len = Math.min(BLOCK, d - j0);
    for (let r = 0; r < rows; r++) {
      if (firstSame[r] !== r) continue;
      const idx = used[r];
      acc.fill(0, 0, len);
      // Four inputs per pass: a quarter of the accumulator loads and stores, which dominate in JS.
      let k = 0;
      for (; k + 4 <= idx.length; k += 4) {
        const i0 = idx[k], i1 = idx[k + 1], i2 = idx[k + 2], i3 = idx[k + 3];
        const c0 = coeffs[r * n + i0], c1 = coeffs[r * n + i1], c2 = coeffs[r * n + i2], c3 = coeffs[r * n + i3];
        const x0 = updates[i0], x1 = updates[i1], x2 = updates[i2], x3 = updates[i3];
        for (let j = 0, g = j0; j < len; j++, g++) acc[j] += c0 * x0[g] + c1 * x1[g] + c2 * x2[g] + c3 * x3[g];
      }
      for (; k < idx.length; k++) {
        const i = idx[k];
        const c = coeffs[r * n + i];
        const x = updates[i];
        for (let j = 0, g = j0; j < len; j++, g++) acc[j] += c * x[g];
      }
      const o = out[r];
      for (let j = 0; j < len; j++) o[j0 + j] = acc[j];
    }
  }
  // Copies, not aliases: callers own each returned row.
  return out.map((o, r) => (firstSame[r] === r ? o : Float32Array.from(o)));
}

/** Σ_i coeffs[i]·updates[i] as one vector. */
export function combine(updates: readonly Float32Array[], coeffs: Float64Array): Float32Array {
  const n = updates.length;
  const d = n === 0 ? 0 : updates[0].length;
  // Short vectors (simulations with d ≈ 10 call this millions of times): no blocking, no row bookkeeping.
  if (d <= BLOCK) {
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
