// Byzantine vector attacks built from the honest vectors (docs/algorithms.md §2.2, "Attack formulas as coded"), for
// simulations and robustness tests. Pure and platform-free. Label flip is a data-side attack and lives elsewhere.
import { checkInteger, checkUpdates } from './aggregation/validate.js';
import { normal } from './random.js';

export const VECTOR_ATTACKS = ['sign-flip', 'scaled-sign-flip', 'alie', 'foe', 'random', 'mimic'] as const;
export type VectorAttack = (typeof VECTOR_ATTACKS)[number];

export interface AttackInput {
  /** ≥ 1 honest vectors of equal length. */
  honest: readonly Float32Array[];
  /** f ≥ 1, the number of Byzantine vectors to build. */
  byzantine: number;
  /**
   * sign-flip: ignored; scaled-sign-flip: b = −scale·μ (default h/f, which makes the plain mean of all n exactly 0);
   * alie: z (b = μ + z·σ; default alieZ(h+f, f)); foe: z (b = (1−z)·μ; default 2);
   * random: std of N(0, scale²) noise per coordinate (default 1); mimic: ignored.
   */
  scale?: number;
  /** random only: uniform [0,1) source (e.g. mulberry32); each Byzantine vector gets its own noise. */
  random?: () => number;
}

/** The grid of docs/algorithms.md §2.5 ("alie_opt"/"foe_opt"), ascending so that ties keep the smallest z. */
const Z_GRID = [0.25, 0.5, 1, 2, 4, 8, 16] as const;

interface HonestStats {
  mu: Float64Array;
  /** Unbiased (h − 1) coordinate-wise std; all zeros when h = 1, where the spread is unknown (0/0 otherwise). */
  sigma: Float64Array;
}

/** Two passes in float64 (mean, then squared deviations): no catastrophic cancellation for large offsets. */
function honestStats(honest: readonly Float32Array[], d: number): HonestStats {
  const h = honest.length;
  const mu = new Float64Array(d);
  for (const x of honest) for (let j = 0; j < d; j++) mu[j] += x[j];
  for (let j = 0; j < d; j++) mu[j] /= h;
  const sigma = new Float64Array(d);
  if (h > 1) {
    for (const x of honest) {
      for (let j = 0; j < d; j++) {
        const e = x[j] - mu[j];
        sigma[j] += e * e;
      }
    }
    for (let j = 0; j < d; j++) sigma[j] = Math.sqrt(sigma[j] / (h - 1));
  }
  return { mu, sigma };
}

/** f separate copies: callers own (and may mutate) every returned vector independently. */
function copies(b: Float32Array, f: number): Float32Array[] {
  return Array.from({ length: f }, (_, i) => (i === 0 ? b : Float32Array.from(b)));
}

function checkScale(rule: string, v: number, allowZero: boolean): void {
  const ok = typeof v === 'number' && Number.isFinite(v) && (allowZero ? v >= 0 : v > 0);
  if (!ok) throw new RangeError(`${rule}: scale must be a finite number ${allowZero ? '≥' : '>'} 0, got ${String(v)}`);
}

/** Validates kind, honest and f; returns d. */
function checkInput(rule: string, kind: string, input: AttackInput): number {
  if (!(VECTOR_ATTACKS as readonly string[]).includes(kind)) {
    throw new RangeError(`${rule}: unknown attack '${String(kind)}' (expected one of ${VECTOR_ATTACKS.join(', ')})`);
  }
  if (input == null || typeof input !== 'object') throw new RangeError(`${rule}: input must be an object`);
  const d = checkUpdates(rule, input.honest);
  checkInteger(rule, 'byzantine (f)', input.byzantine, 1);
  return d;
}

/** b for alie/foe at a given z, from precomputed stats (so the line search computes μ, σ once). */
function shifted(kind: 'alie' | 'foe', s: HonestStats, z: number): Float32Array {
  const d = s.mu.length;
  const b = new Float32Array(d);
  if (kind === 'alie') for (let j = 0; j < d; j++) b[j] = s.mu[j] + z * s.sigma[j];
  else for (let j = 0; j < d; j++) b[j] = (1 - z) * s.mu[j];
  return b;
}

/** The f Byzantine vectors of one attack; fresh arrays, inputs never mutated. */
export function byzantineVectors(kind: VectorAttack, input: AttackInput): Float32Array[] {
  const rule = `attack '${String(kind)}'`;
  const d = checkInput(rule, kind, input);
  const { honest, byzantine: f, scale } = input;
  const h = honest.length;
  switch (kind) {
    case 'mimic':
      return copies(Float32Array.from(honest[0]), f);
    case 'random': {
      const std = scale ?? 1;
      checkScale(rule, std, false);
      const r = input.random;
      if (typeof r !== 'function') throw new RangeError(`${rule}: needs a random source (input.random), e.g. mulberry32(seed)`);
      // Pure noise, independent of μ (ByzFL's Gaussian attack with mean 0); one draw per coordinate per vector.
      return Array.from({ length: f }, () => {
        const b = new Float32Array(d);
        for (let j = 0; j < d; j++) b[j] = std * normal(r);
        return b;
      });
    }
    case 'sign-flip':
    case 'scaled-sign-flip': {
      const a = kind === 'sign-flip' ? 1 : (scale ?? h / f);
      checkScale(rule, a, false);
      const { mu } = honestStats(honest, d);
      const b = new Float32Array(d);
      for (let j = 0; j < d; j++) b[j] = -a * mu[j];
      return copies(b, f);
    }
    case 'alie':
    case 'foe': {
      // z = 0 is allowed: it is the degenerate b = μ (and alieZ itself returns 0 for f = 1, even n).
      const z = scale ?? (kind === 'alie' ? alieZ(h + f, f) : 2);
      checkScale(rule, z, true);
      return copies(shifted(kind, honestStats(honest, d), z), f);
    }
  }
}

/** The original ALIE constant: s = ⌊n/2 + 1⌋ − f, z = Φ⁻¹((n − s)/n). */
export function alieZ(n: number, f: number): number {
  checkInteger('alieZ', 'n', n, 2);
  checkInteger('alieZ', 'f', f, 1);
  const s = Math.floor(n / 2 + 1) - f;
  // s ≤ 0 would make (n − s)/n ≥ 1: the formula only covers f < ⌊n/2 + 1⌋.
  if (s <= 0) throw new RangeError(`alieZ: f = ${f} is too large for n = ${n} (s = ⌊n/2 + 1⌋ − f = ${s} must be ≥ 1)`);
  return inverseNormalCdf((n - s) / n);
}

const A = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
const B = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
const C = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
const D = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
const P_LOW = 0.02425;
const SQRT_2PI = Math.sqrt(2 * Math.PI);

/** Standard normal density. */
function phi(x: number): number {
  return Math.exp(-0.5 * x * x) / SQRT_2PI;
}

/**
 * Upper tail Q(t) = 1 − Φ(t) for t ≥ 0, with ~1e-16 accuracy (JS has no erfc). Below 3: Marsaglia's series
 * Φ(t) − ½ = φ(t)·Σ t^(2k+1)/(2k+1)!! (all terms positive, so no cancellation); from 3 on: the continued fraction
 * Q(t) = φ(t)/(t + 1/(t + 2/(t + …))) by modified Lentz, which keeps relative accuracy deep in the tail.
 */
function upperTail(t: number): number {
  if (t < 3) {
    let term = t;
    let sum = t;
    for (let k = 1; k < 200 && term > 1e-17 * sum; k++) {
      term *= (t * t) / (2 * k + 1);
      sum += term;
    }
    return 0.5 - phi(t) * sum;
  }
  const tiny = 1e-300;
  let f = t;
  let c = t;
  let dd = 0;
  for (let k = 1; k < 500; k++) {
    dd = t + k * dd;
    dd = dd === 0 ? tiny : dd;
    c = t + k / c;
    c = c === 0 ? tiny : c;
    dd = 1 / dd;
    const delta = c * dd;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return phi(t) / f;
}

/** Φ⁻¹(p): Acklam's rational approximation (relative error 1.15e-9) plus one Halley step (then ~1e-15). */
export function inverseNormalCdf(p: number): number {
  if (typeof p !== 'number' || !(p > 0 && p < 1)) throw new RangeError(`inverseNormalCdf: p must lie in (0, 1), got ${String(p)}`);
  let x: number;
  if (p < P_LOW || p > 1 - P_LOW) {
    const q = Math.sqrt(-2 * Math.log(p < P_LOW ? p : 1 - p));
    const v = (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1);
    x = p < P_LOW ? v : -v;
  } else {
    const q = p - 0.5;
    const r = q * q;
    x = ((((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q) / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1);
  }
  // e = Φ(x) − p, written through the tail on x's side; for p ≥ ½, 1 − p is exact (Sterbenz), so no precision is lost.
  const e = x <= 0 ? upperTail(-x) - p : 1 - p - upperTail(x);
  const u = e / phi(x);
  const refined = x - u / (1 + (x * u) / 2);
  // Far in the tail φ(x) underflows; Acklam's value alone is then the best available.
  return Number.isFinite(refined) ? refined : x;
}

/**
 * Line search over z ∈ {¼, ½, 1, 2, 4, 8, 16} (docs/algorithms.md §2.5 "alie_opt"/"foe_opt"): the z maximising
 * ‖defence(honest ∪ f×b(z)) − μ‖² against the defence actually in use; ties → smallest z.
 * The defence must not mutate its input (it receives the caller's honest arrays).
 */
export function optimalAttack(
  kind: 'alie' | 'foe',
  input: Omit<AttackInput, 'scale'>,
  defence: (all: Float32Array[]) => Float32Array,
): { z: number; vectors: Float32Array[] } {
  const rule = `optimalAttack '${String(kind)}'`;
  if (kind !== 'alie' && kind !== 'foe') throw new RangeError(`${rule}: kind must be 'alie' or 'foe'`);
  const d = checkInput(rule, kind, input);
  if (typeof defence !== 'function') throw new RangeError(`${rule}: defence must be a function`);
  const stats = honestStats(input.honest, d);
  let best: { z: number; vectors: Float32Array[] } | undefined;
  let bestObj = -Infinity;
  for (const z of Z_GRID) {
    const vectors = copies(shifted(kind, stats, z), input.byzantine);
    const out = defence([...input.honest, ...vectors.map((v) => Float32Array.from(v))]);
    if (!(out instanceof Float32Array) || out.length !== d) {
      throw new RangeError(`${rule}: defence must return a Float32Array of length ${d}`);
    }
    let obj = 0;
    for (let j = 0; j < d; j++) obj += (out[j] - stats.mu[j]) ** 2;
    if (Number.isNaN(obj)) throw new RangeError(`${rule}: defence output is NaN at z = ${z}`);
    // Strict '>' over an ascending grid: ties keep the smaller z.
    if (best === undefined || obj > bestObj) {
      best = { z, vectors };
      bestObj = obj;
    }
  }
  return best!;
}
