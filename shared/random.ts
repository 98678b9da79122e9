// Seeded randomness for everything that must be reproducible: simulations, attacks, delays, test and benchmark data.
// One generator (mulberry32), one way to derive a seed for a purpose (deriveSeed), one sampler and one shuffle.
import { FNV_OFFSET, FNV_PRIME, fnvUpdate } from './model/featurizer.js';

/** A uniform source that can also fill normals itself (mulberry32's, with its state inlined in the loop). */
type FastSource = (() => number) & { fillGaussian?: (out: Float64Array | Float32Array, std: number) => void };

/** A mulberry32 generator that can start over from another seed without allocating a new one (a job per seed). */
export type Mulberry32 = (() => number) & { reseed(seed: number): void };

/** mulberry32: a small, fast 32-bit PRNG; uniform in [0, 1). Same seed, same sequence, on every platform. */
export function mulberry32(seed: number): Mulberry32 {
  // The state lives in a one-element typed array: a 32-bit integer kept in a closure variable would be boxed (a heap
  // number) on every store once it leaves the small-integer range, i.e. an allocation per draw.
  const state = new Int32Array(1);
  state[0] = seed >>> 0;
  const next: FastSource & Partial<Pick<Mulberry32, 'reseed'>> = () => {
    const a = (state[0] + 0x6d2b79f5) | 0;
    state[0] = a;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  // gaussianFill's hot path: the ziggurat's common case with the generator step inlined (no call per draw). It
  // consumes exactly the numbers `next` would, so results equal the generic path's bit for bit.
  next.fillGaussian = (out, std) => {
    let a = state[0];
    for (let i = 0, n = out.length; i < n; i++) {
      a = (a + 0x6d2b79f5) | 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      const hz = t ^ (t >>> 14); // the 32 bits as a signed integer, as ziggurat() reads them
      const iz = hz & 127;
      if (Math.abs(hz) < kn[iz]) {
        out[i] = std * (hz * wn[iz]);
      } else {
        state[0] = a; // the rare path draws from `next` itself
        out[i] = std * zigguratSlow(hz, iz, next);
        a = state[0];
      }
    }
    state[0] = a;
  };
  next.reseed = (s: number) => {
    state[0] = s >>> 0;
  };
  return next as Mulberry32;
}

/** One standard normal from a uniform source (Box–Muller; 1 − u keeps the log finite). */
export function normal(uniform: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

// Marsaglia & Tsang's ziggurat (J. Stat. Software 5(8), 2000), 128 strips: ~98% of draws cost one 32-bit integer,
// a compare and a multiply — several times cheaper than Box–Muller's log, sqrt and cos. Tables built once.
const ZIG_R = 3.442619855899;
const kn = new Float64Array(128);
const wn = new Float64Array(128);
const fn = new Float64Array(128);
{
  const m1 = 2147483648;
  const vn = 9.91256303526217e-3;
  let dn = ZIG_R;
  let tn = dn;
  const q = vn / Math.exp(-0.5 * dn * dn);
  kn[0] = (dn / q) * m1;
  kn[1] = 0;
  wn[0] = q / m1;
  wn[127] = dn / m1;
  fn[0] = 1;
  fn[127] = Math.exp(-0.5 * dn * dn);
  for (let i = 126; i >= 1; i--) {
    dn = Math.sqrt(-2 * Math.log(vn / dn + Math.exp(-0.5 * dn * dn)));
    kn[i + 1] = (dn / tn) * m1;
    tn = dn;
    fn[i] = Math.exp(-0.5 * dn * dn);
    wn[i] = dn / m1;
  }
}

/** One N(0, 1) draw by the ziggurat; `uniform` must give 32 random bits as k/2³² (mulberry32 does). */
export function ziggurat(uniform: () => number): number {
  const hz = (uniform() * 4294967296) | 0; // the source's 32 bits as a signed integer
  const iz = hz & 127;
  return Math.abs(hz) < kn[iz] ? hz * wn[iz] : zigguratSlow(hz, iz, uniform);
}

/** The ziggurat's rare cases (outside the strips' cores), starting from a rejected draw `hz`. */
function zigguratSlow(hz0: number, iz0: number, uniform: () => number): number {
  let hz = hz0;
  let iz = iz0;
  for (;;) {
    const x = hz * wn[iz];
    if (Math.abs(hz) < kn[iz]) return x;
    if (iz === 0) {
      // The tail beyond R (Marsaglia 1964).
      let a: number;
      let b: number;
      do {
        a = -Math.log(1 - uniform()) / ZIG_R;
        b = -Math.log(1 - uniform());
      } while (b + b < a * a);
      return hz > 0 ? ZIG_R + a : -ZIG_R - a;
    }
    if (fn[iz] + uniform() * (fn[iz - 1] - fn[iz]) < Math.exp(-0.5 * x * x)) return x;
    hz = (uniform() * 4294967296) | 0;
    iz = hz & 127;
  }
}

/** Fills `out` with independent N(0, std²) draws (ziggurat). Deterministic per source. */
export function gaussianFill(uniform: () => number, out: Float64Array | Float32Array, std = 1): void {
  const fast = (uniform as FastSource).fillGaussian;
  if (fast !== undefined) return fast(out, std);
  for (let i = 0; i < out.length; i++) out[i] = std * ziggurat(uniform);
}

/**
 * A seed for one purpose, derived from a base seed: FNV-1a of `fedpool-<purpose>:<seed>[:<part>…]`. Distinct
 * purposes (and parts, e.g. a round or a layer) give independent-looking streams from one user seed, the same on
 * every platform. E.g. deriveSeed(seed, 'layer', 2), deriveSeed(version, 'train', client).
 */
export function deriveSeed(seed: number, purpose: string, ...parts: (string | number)[]): number {
  // FNV-1a of `fedpool-${purpose}:${[seed, ...parts].join(':')}`, hashed as it would be written but without building
  // the string: simulators derive one seed per job, and the string and its hash were a sixth of a small run's time.
  let h = fnvUpdate(FNV_PREFIX, purpose);
  h = fnvPart(Math.imul(h ^ COLON, FNV_PRIME), seed);
  for (const p of parts) h = fnvPart(Math.imul(h ^ COLON, FNV_PRIME), p);
  return h >>> 0;
}

const FNV_PREFIX = fnvUpdate(FNV_OFFSET, 'fedpool-');
const COLON = 58;
const ZERO = 48;
const MINUS = 45;
const DIGITS = new Uint8Array(16); // a safe integer has at most 16 digits

/** Continues the hash over String(p): a safe integer's decimal digits directly, anything else through its string. */
function fnvPart(hash: number, p: string | number): number {
  if (typeof p !== 'number' || !Number.isSafeInteger(p)) return fnvUpdate(hash, String(p));
  let h = hash;
  let n = p;
  if (n < 0) {
    h = Math.imul(h ^ MINUS, FNV_PRIME);
    n = -n;
  }
  // Digits from the last, exactly (n − n mod 10 is a multiple of 10), then hashed from the first.
  let count = 0;
  do {
    const digit = n % 10;
    DIGITS[count++] = digit;
    n = (n - digit) / 10;
  } while (n > 0);
  while (count > 0) h = Math.imul(h ^ (ZERO + (DIGITS[--count] as number)), FNV_PRIME);
  return h;
}

/** In-place Fisher–Yates shuffle (from the end). */
export function shuffle<T>(items: T[], uniform: () => number): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(uniform() * (i + 1));
    const t = items[i] as T;
    items[i] = items[j] as T;
    items[j] = t;
  }
}

/** min(k, items.length) items, uniformly without replacement, in draw order (a partial Fisher–Yates on a copy). */
export function sampleWithoutReplacement<T>(items: ArrayLike<T>, k: number, uniform: () => number): T[] {
  const a = Array.from(items);
  const m = Math.min(k, a.length);
  for (let i = 0; i < m; i++) {
    const j = i + Math.floor(uniform() * (a.length - i));
    const t = a[i] as T;
    a[i] = a[j] as T;
    a[j] = t;
  }
  return a.slice(0, m);
}

/**
 * mulberry32 as an object whose 32-bit state can be read and restored (checkpoints keep a driver's random choices):
 * the same sequence as mulberry32(seed).
 */
export class Random {
  private a: number;

  constructor(seed: number) {
    this.a = seed >>> 0;
  }

  get state(): number {
    return this.a;
  }

  static fromState(state: number): Random {
    const r = new Random(0);
    r.a = state >>> 0;
    return r;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A uniform sample of min(k, items.length) items without replacement, in draw order. */
  sample<T>(items: ArrayLike<T>, k: number): T[] {
    return sampleWithoutReplacement(items, k, () => this.next());
  }
}
