// Client speed models: how long one local job takes on the virtual clock. Each model is seeded, keeps at most one
// number per client (its mean), and returns a `Duration` (client, rng) → seconds that both engines accept: the
// per-client part is fixed by the seed at creation, the per-job part is drawn from the client's own duration stream.
import { deriveSeed, mulberry32, normal } from '../../shared/random.js';
import type { Rng } from '../types.js';
import type { Duration } from './sync.js';

export type SpeedSpec =
  /** Every job takes `value` (default 1). */
  | { kind: 'constant'; value?: number }
  /** Exponential with mean `mean` per job (FLSim's exponential durations). */
  | { kind: 'exponential'; mean: number }
  /** min + |N(0, sd²)| per job (FLSim's half-normal durations, sd 1 in its Sent140 example). */
  | { kind: 'half-normal'; sd: number; min?: number }
  /** U[min, max] per job. */
  | { kind: 'uniform'; min: number; max: number }
  /**
   * Per client a mean m_n = exp(μ + σ·z_n), z_n ~ N(0, 1) drawn once from the seed; each job takes m_n·U[jitter]
   * (docs/algorithms.md §3.5: μ = 0, σ = 1, jitter [0.8, 1.2]). No jitter: exactly m_n every job.
   */
  | { kind: 'log-normal'; mu?: number; sigma?: number; jitter?: readonly [number, number] }
  /**
   * Per-example Gaussian time (FLSim): each of the client's n examples takes N(perExample, sd²), so a job takes
   * max(floor, n·perExample + √n·sd·z). `samples` is one count for all clients or one per client.
   */
  | { kind: 'per-example'; perExample: number; sd?: number; samples: number | ArrayLike<number>; floor?: number };

function positive(what: string, v: number): void {
  if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`speed ${what} must be a finite number > 0, got ${String(v)}`);
}
function nonNegative(what: string, v: number): void {
  if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`speed ${what} must be a finite number ≥ 0, got ${String(v)}`);
}

/**
 * Builds the duration model for `numClients` clients. `seed` (the run's seed) fixes the per-client means (log-normal,
 * from deriveSeed(seed, 'speed-means')); per-job draws use the rng the engine hands the returned function (each
 * client's own stream, engine/clients.ts). Durations are always > 0 except a constant 0.
 */
export function createSpeeds(spec: SpeedSpec, numClients: number, seed: number): Duration {
  if (!Number.isInteger(numClients) || numClients < 1) throw new RangeError(`speeds: numClients must be an integer ≥ 1, got ${String(numClients)}`);
  switch (spec.kind) {
    case 'constant': {
      const v = spec.value ?? 1;
      nonNegative('constant value', v);
      return () => v;
    }
    case 'exponential': {
      positive('exponential mean', spec.mean);
      const m = spec.mean;
      return (_c: number, rng: Rng) => -m * Math.log(1 - rng());
    }
    case 'half-normal': {
      nonNegative('half-normal sd', spec.sd);
      const min = spec.min ?? 0;
      nonNegative('half-normal min', min);
      const sd = spec.sd;
      return (_c: number, rng: Rng) => min + Math.abs(sd * normal(rng));
    }
    case 'uniform': {
      nonNegative('uniform min', spec.min);
      if (!(Number.isFinite(spec.max) && spec.max >= spec.min)) throw new RangeError(`speed uniform max must be finite and ≥ min, got ${String(spec.max)}`);
      const { min, max } = spec;
      return (_c: number, rng: Rng) => min + (max - min) * rng();
    }
    case 'log-normal': {
      const mu = spec.mu ?? 0;
      const sigma = spec.sigma ?? 1;
      if (!Number.isFinite(mu)) throw new RangeError(`speed log-normal mu must be finite, got ${String(mu)}`);
      nonNegative('log-normal sigma', sigma);
      const means = new Float64Array(numClients);
      const rng = mulberry32(deriveSeed(seed, 'speed-means'));
      for (let n = 0; n < numClients; n++) means[n] = Math.exp(mu + sigma * normal(rng));
      const jitter = spec.jitter;
      if (jitter === undefined) return (c: number) => means[c]!;
      const [lo, hi] = jitter;
      positive('log-normal jitter low', lo);
      if (!(Number.isFinite(hi) && hi >= lo)) throw new RangeError(`speed log-normal jitter high must be finite and ≥ low, got ${String(hi)}`);
      return (c: number, r: Rng) => means[c]! * (lo + (hi - lo) * r());
    }
    case 'per-example': {
      positive('per-example time', spec.perExample);
      const sd = spec.sd ?? 0;
      nonNegative('per-example sd', sd);
      const floor = spec.floor ?? 1e-9;
      positive('per-example floor', floor);
      const s = spec.samples;
      const count = typeof s === 'number' ? () => s : (c: number) => s[c]!;
      if (typeof s !== 'number' && s.length !== numClients) throw new RangeError(`speed per-example: samples has ${s.length} entries for ${numClients} clients`);
      const per = spec.perExample;
      return (c: number, rng: Rng) => {
        const n = count(c);
        return Math.max(floor, n * per + (sd > 0 ? Math.sqrt(n) * sd * normal(rng) : 0));
      };
    }
    default:
      throw new RangeError(`speeds: unknown kind ${JSON.stringify((spec as { kind?: unknown }).kind)}`);
  }
}

/** Per-client mean durations of a log-normal model (for reports and tests); same draws as createSpeeds. */
export function logNormalMeans(numClients: number, seed: number, mu = 0, sigma = 1): Float64Array {
  const d = createSpeeds({ kind: 'log-normal', mu, sigma }, numClients, seed);
  const never: Rng = () => 0;
  return Float64Array.from({ length: numClients }, (_, c) => d(c, never));
}
