// The quadratic population of docs/algorithms.md §1.5: f_n(x) = ½‖x − c_n‖² with z_n ~ U(0, 1) and
// c_n = 3(2z_n − 1)·e₁ + 0.5·N(0, I). Local training is SGD with N(0, σ²I) gradient noise, y ← y − γ(y − c_n + ξ).
// Platform-free. Per-client state is d + 1 numbers (one row of a shared N×d Float64Array plus z_n).
//
// Closed form (used when momentum β = 0): after I steps from x,
//   y_I = c + (1−γ)^I (x − c) − γ Σ_k (1−γ)^{I−1−k} ξ_k,
// a sum of independent Gaussians, i.e. per coordinate c + (1−γ)^I (x − c) + s·N(0, 1) with
//   s = σγ·sqrt(Σ_{k<I} (1−γ)^{2k}).
// That is exact in distribution and costs d Gaussian draws per update instead of I·d. With β > 0 the step loop runs.
import { gaussianFill, mulberry32 } from '../../shared/random.js';
import type { LocalOptions, LocalResult, Rng, LearningTask } from '../types.js';

export interface QuadraticOptions {
  numClients: number;
  dim: number;
  seed: number;
  /** Std of the per-coordinate stochastic-gradient noise σ (default 1, as in §1.5). */
  gradientNoise?: number;
  /** Use the closed form when β = 0 (default true; false always runs the step loop — for tests and checks). */
  closedForm?: boolean;
}

export interface QuadraticTask extends LearningTask {
  /** z_n ~ U(0, 1) per client (§1.5 sets p_n = 0.02 + 0.48 z_n²). */
  readonly z: Float64Array;
  /** The centres c_n, row-major N×d. */
  readonly centres: Float64Array;
  /** x* = mean of the c_n: the minimiser of the global objective (1/N) Σ f_n. */
  readonly optimum: Float64Array;
}

function checkInt(value: number, what: string, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new RangeError(`quadratic task: ${what} must be an integer ≥ ${min}, got ${String(value)}`);
}

/**
 * Build the population. Determined by `seed` alone: z_1..z_N are drawn first, then the N×d noise of the centres, from
 * one mulberry32 stream. `centres` (row-major N×d), when given, replaces the drawn centres (it is copied, never
 * mutated); z is still drawn from the seed.
 */
export function createQuadraticTask(opts: QuadraticOptions, centres?: Float64Array): QuadraticTask {
  const { numClients: N, dim: d, seed } = opts;
  checkInt(N, 'numClients', 1);
  checkInt(d, 'dim', 1);
  const sigma = opts.gradientNoise ?? 1;
  if (!(sigma >= 0) || !Number.isFinite(sigma)) throw new RangeError(`quadratic task: gradientNoise must be a finite number ≥ 0, got ${String(sigma)}`);
  const rng = mulberry32(seed);
  const z = new Float64Array(N);
  for (let n = 0; n < N; n++) z[n] = rng();
  let c: Float64Array;
  if (centres !== undefined) {
    if (centres.length !== N * d) throw new RangeError(`quadratic task: centres must have numClients·dim = ${N * d} entries, got ${centres.length}`);
    c = Float64Array.from(centres);
  } else {
    c = new Float64Array(N * d);
    gaussianFill(rng, c, 0.5);
    for (let n = 0; n < N; n++) c[n * d] += 3 * (2 * z[n] - 1);
  }
  const optimum = new Float64Array(d);
  for (let n = 0; n < N; n++) {
    const row = n * d;
    for (let j = 0; j < d; j++) optimum[j] += c[row + j];
  }
  for (let j = 0; j < d; j++) optimum[j] /= N;

  const closedForm = opts.closedForm ?? true;
  const noise = new Float64Array(d); // scratch
  const y = new Float64Array(d); // scratch
  const m = new Float64Array(d); // scratch: momentum in float64 while stepping

  // Cache of the closed-form coefficients for the last (steps, lr) seen: the engine uses one setting per run.
  let cachedSteps = -1;
  let cachedLr = NaN;
  let decay = 1; // (1−γ)^I
  let spread = 0; // s/σ = γ·sqrt(Σ_{k<I} (1−γ)^{2k})
  let lossMeanFactor = 0; // (1/I) Σ_{k<I} (1−γ)^{2k}
  let lossNoiseTerm = 0; // (1/I) Σ_{k<I} ½·σ²·d·γ² Σ_{j<k} (1−γ)^{2j}
  const coefficients = (steps: number, lr: number): void => {
    if (steps === cachedSteps && lr === cachedLr) return;
    const q = (1 - lr) * (1 - lr);
    let geo = 0; // Σ_{j<k} q^j
    let qk = 1; // q^k
    let sumQ = 0;
    let sumNoise = 0;
    for (let k = 0; k < steps; k++) {
      sumQ += qk;
      sumNoise += 0.5 * sigma * sigma * d * lr * lr * geo;
      geo += qk;
      qk *= q;
    }
    decay = Math.pow(1 - lr, steps);
    spread = lr * Math.sqrt(geo);
    lossMeanFactor = steps > 0 ? sumQ / steps : 0;
    lossNoiseTerm = steps > 0 ? sumNoise / steps : 0;
    cachedSteps = steps;
    cachedLr = lr;
  };

  return {
    name: 'quadratic',
    numClients: N,
    dim: d,
    z,
    centres: c,
    optimum,
    initial(): Float32Array {
      return new Float32Array(d);
    },
    /**
     * Δ = y_I − x. `loss` is the mean of f_n over the iterates the steps start from (y_0 … y_{I−1}); in closed form
     * (β = 0) it is that quantity's expectation, which is exact for the mean and costs nothing. With β = 0 the
     * momentum buffer carries no state (m = g every step) and is left untouched.
     */
    localUpdate(client: number, x: Float32Array, o: LocalOptions, rng: Rng, out: Float32Array, momentum?: Float32Array): LocalResult {
      if (!(client >= 0 && client < N) || !Number.isInteger(client)) throw new RangeError(`quadratic task: no client ${String(client)}`);
      const row = client * d;
      const steps = o.steps;
      const lr = o.lr;
      const beta = o.momentum;
      if (beta === 0 && closedForm) {
        coefficients(steps, lr);
        let dist2 = 0;
        const s = sigma * spread;
        if (s > 0) gaussianFill(rng, noise, s);
        else noise.fill(0);
        for (let j = 0; j < d; j++) {
          const xj = x[j];
          const diff = xj - c[row + j];
          dist2 += diff * diff;
          // y − x = (1 − (1−γ)^I)(c − x) + noise
          out[j] = (decay - 1) * diff + noise[j];
        }
        return { samples: 1, loss: 0.5 * dist2 * lossMeanFactor + lossNoiseTerm };
      }
      if (momentum !== undefined && momentum.length !== d) throw new RangeError(`quadratic task: momentum must have length ${d}`);
      for (let j = 0; j < d; j++) y[j] = x[j];
      if (momentum !== undefined && beta !== 0) for (let j = 0; j < d; j++) m[j] = momentum[j];
      else m.fill(0);
      let lossSum = 0;
      for (let k = 0; k < steps; k++) {
        gaussianFill(rng, noise, sigma);
        let f = 0;
        for (let j = 0; j < d; j++) {
          const diff = y[j] - c[row + j];
          f += diff * diff;
          const g = diff + noise[j];
          const mj = beta * m[j] + (1 - beta) * g;
          m[j] = mj;
          y[j] -= lr * mj;
        }
        lossSum += 0.5 * f;
      }
      for (let j = 0; j < d; j++) out[j] = y[j] - x[j];
      if (momentum !== undefined && beta !== 0) for (let j = 0; j < d; j++) momentum[j] = m[j];
      return { samples: 1, loss: steps > 0 ? lossSum / steps : NaN };
    },
    evaluate(x: Float32Array): { loss: number; accuracy: number | null } {
      let s = 0;
      for (let j = 0; j < d; j++) {
        const diff = x[j] - optimum[j];
        s += diff * diff;
      }
      return { loss: 0.5 * s, accuracy: null };
    },
  };
}
