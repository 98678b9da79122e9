import fc from 'fast-check';
import { mulberry32, normal } from '../../shared/random.js';

/** A float32 vector of length d: integer-valued (exact arithmetic, exact ties) or continuous. */
export function vector(d: number, integer = false): fc.Arbitrary<Float32Array> {
  const el = integer ? fc.integer({ min: -50, max: 50 }) : fc.double({ min: -100, max: 100, noNaN: true, noDefaultInfinity: true });
  return fc.array(el, { minLength: d, maxLength: d }).map((a) => Float32Array.from(a));
}

export interface SetOptions {
  minN?: number;
  maxN?: number;
  maxD?: number;
  integer?: boolean;
}

/** n updates of one common length d. */
export function updateSet(o: SetOptions = {}): fc.Arbitrary<Float32Array[]> {
  const { minN = 1, maxN = 12, maxD = 16, integer = false } = o;
  return fc
    .record({ n: fc.integer({ min: minN, max: maxN }), d: fc.integer({ min: 1, max: maxD }) })
    .chain(({ n, d }) => fc.array(vector(d, integer), { minLength: n, maxLength: n }));
}

/** A set of updates and an f the caller's rule tolerates: n ≥ factor·f + extra + 1. */
export function updateSetWithF(factor: number, extra: number, o: SetOptions = {}): fc.Arbitrary<{ updates: Float32Array[]; f: number }> {
  return updateSet({ ...o, minN: Math.max(o.minN ?? 1, extra + 1) }).chain((updates) => {
    const maxF = factor === 0 ? 0 : Math.floor((updates.length - extra - 1) / factor);
    return fc.integer({ min: 0, max: Math.max(0, maxF) }).map((f) => ({ updates, f }));
  });
}

export function shift(updates: readonly Float32Array[], c: Float32Array): Float32Array[] {
  return updates.map((u) => u.map((v, j) => v + c[j]));
}

export function scale(updates: readonly Float32Array[], a: number): Float32Array[] {
  return updates.map((u) => u.map((v) => v * a));
}

/** max_j |a_j − b_j| / max(1, |b_j|). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let j = 0; j < a.length; j++) worst = Math.max(worst, Math.abs(a[j] - b[j]) / Math.max(1, Math.abs(b[j])));
  return worst;
}

export function clone(updates: readonly Float32Array[]): Float32Array[] {
  return updates.map((u) => Float32Array.from(u));
}

export function sameArrays(a: readonly Float32Array[], b: readonly Float32Array[]): boolean {
  return a.length === b.length && a.every((u, i) => u.length === b[i].length && u.every((v, j) => Object.is(v, b[i][j])));
}

/** Seeded uniform [0,1) (mulberry32), for tests that build inputs by hand. */
export const rng = mulberry32;

/**
 * Updates drawn from a seeded normal distribution rather than shrinkable values: ties then have probability 0,
 * which properties that hold only without ties (index tie-breaks) need.
 */
export function generalPositionSetWithF(factor: number, extra: number, maxN = 12, maxD = 16): fc.Arbitrary<{ updates: Float32Array[]; f: number }> {
  return fc
    .record({ seed: fc.integer(), n: fc.integer({ min: extra + 1, max: maxN }), d: fc.integer({ min: 1, max: maxD }), fr: fc.double({ min: 0, max: 1, noNaN: true }) })
    .map(({ seed, n, d, fr }) => {
      const r = rng(seed);
      const updates = Array.from({ length: n }, () => Float32Array.from({ length: d }, () => 10 * normal(r)));
      const maxF = factor === 0 ? 0 : Math.floor((n - extra - 1) / factor);
      return { updates, f: Math.min(maxF, Math.floor(fr * (maxF + 1))) };
    });
}

export { normal };
