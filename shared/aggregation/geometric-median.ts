import { ResidentRows } from '../kernels/wasm.js';
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
 * The iterate is kept in float64. The passes over the inputs run in the float64 WebAssembly kernels where they can
 * (inputs copied once into a module instance of their own; docs/kernels.md), else in the scalar loops below.
 */
export function geometricMedian(updates: readonly Float32Array[], options: GeometricMedianOptions = {}): Float32Array {
  const d = checkUpdates('geometricMedian', updates);
  const tol = options.tol ?? 1e-7;
  const maxIter = options.maxIter ?? 1000;
  checkNonNegative('geometricMedian', 'tol', tol);
  checkInteger('geometricMedian', 'maxIter', maxIter, 0);
  const n = updates.length;
  const passes: Passes = ResidentRows.fits(n, d) ? residentPasses(updates) : scalarPasses(updates);
  passes.start();
  const beta = new Float64Array(n);
  for (let it = 0; it < maxIter; it++) {
    passes.squaredDistances(beta);
    let total = 0;
    for (let i = 0; i < n; i++) {
      beta[i] = 1 / Math.max(Math.sqrt(beta[i]), EPS);
      total += beta[i];
    }
    for (let i = 0; i < n; i++) beta[i] /= total;
    passes.weightedSum(beta);
    const [step, norm] = passes.advance();
    if (Math.sqrt(step) <= tol * Math.max(1, Math.sqrt(norm))) break;
  }
  return passes.result();
}

/** Weiszfeld's passes over the inputs, on the iterate z and the next iterate. */
interface Passes {
  /** z ← the mean of the inputs. */
  start(): void;
  /** out[i] = ‖z − xᵢ‖². */
  squaredDistances(out: Float64Array): void;
  /** next ← Σᵢ cᵢxᵢ. */
  weightedSum(c: Float64Array): void;
  /** Returns [‖next − z‖², ‖next‖²] and makes next the iterate. */
  advance(): [number, number];
  /** The iterate, rounded to float32. */
  result(): Float32Array;
}

function scalarPasses(updates: readonly Float32Array[]): Passes {
  const d = updates[0].length;
  let z = new Float64Array(d);
  let next = new Float64Array(d);
  return {
    start() {
      for (const x of updates) for (let j = 0; j < d; j++) z[j] += x[j];
      for (let j = 0; j < d; j++) z[j] /= updates.length;
    },
    squaredDistances: (out) => squaredDistancesTo(z, updates, out),
    weightedSum: (c) => weightedSum(updates, c, next),
    advance() {
      let step = 0;
      let norm = 0;
      for (let j = 0; j < d; j++) {
        const t = next[j] - z[j];
        step += t * t;
        norm += next[j] * next[j];
      }
      [z, next] = [next, z];
      return [step, norm];
    },
    result: () => Float32Array.from(z),
  };
}

function residentPasses(updates: readonly Float32Array[]): Passes {
  const rows = new ResidentRows(updates, 2);
  let z = 0;
  const at = (i: number): number => rows.vector(i);
  return {
    start() {
      // Σ 1·xᵢ in input order, then ÷ n: the scalar loop's operations.
      rows.weightedSum(new Float64Array(updates.length).fill(1), at(z));
      rows.divide(at(z), updates.length);
    },
    squaredDistances: (out) => rows.squaredDistancesFrom(at(z), out),
    weightedSum: (c) => rows.weightedSum(c, at(1 - z)),
    advance() {
      const r = rows.stepAndNorm(at(1 - z), at(z));
      z = 1 - z;
      return r;
    },
    result: () => new Float32Array(rows.view(z)),
  };
}

/**
 * out = Σᵢ cᵢ·xᵢ, each coordinate summed from 0 in input order. Four inputs per pass, written
 * ((((out + c₀x₀) + c₁x₁) + c₂x₂) + c₃x₃) so the sums are bit-identical to one input per pass, with a quarter of
 * the read-modify-writes of out (which dominate this loop in JS).
 */
function weightedSum(updates: readonly Float32Array[], c: Float64Array, out: Float64Array): void {
  const n = updates.length;
  const d = out.length;
  out.fill(0);
  let i = 0;
  for (; i + 3 < n; i += 4) {
    const x0 = updates[i], x1 = updates[i + 1], x2 = updates[i + 2], x3 = updates[i + 3];
    const c0 = c[i], c1 = c[i + 1], c2 = c[i + 2], c3 = c[i + 3];
    for (let j = 0; j < d; j++) out[j] = out[j] + c0 * x0[j] + c1 * x1[j] + c2 * x2[j] + c3 * x3[j];
  }
  for (; i < n; i++) {
    const x = updates[i];
    const ci = c[i];
    for (let j = 0; j < d; j++) out[j] += ci * x[j];
  }
}

/** out[i] = ‖z − xᵢ‖², blocked over coordinates. */
function squaredDistancesTo(z: Float64Array, updates: readonly Float32Array[], out: Float64Array): void {
  const n = updates.length;
  const d = z.length;
  out.fill(0);
  for (let j0 = 0; j0 < d; j0 += BLOCK) {
    const j1 = Math.min(d, j0 + BLOCK);
    // Two inputs per pass share the loads of z; each sum still runs in coordinate order.
    let i = 0;
    for (; i + 1 < n; i += 2) {
      const x = updates[i], y = updates[i + 1];
      let s = 0, u = 0;
      for (let j = j0; j < j1; j++) {
        const zj = z[j];
        const t = zj - x[j], v = zj - y[j];
        s += t * t;
        u += v * v;
      }
      out[i] += s;
      out[i + 1] += u;
    }
    if (i < n) {
      const x = updates[i];
      let s = 0;
      for (let j = j0; j < j1; j++) {
        const t = z[j] - x[j];
        s += t * t;
      }
      out[i] += s;
    }
  }
}
