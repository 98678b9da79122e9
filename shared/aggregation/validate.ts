// Input checks shared by every rule. Rules throw RangeError with a message that names the rule and the problem,
// so a caller several layers up (coordinator, simulator) can report it verbatim.

/** Checks a non-empty list of equal-length Float32Arrays; returns the common length d. */
export function checkUpdates(rule: string, updates: readonly Float32Array[]): number {
  if (!Array.isArray(updates) || updates.length === 0) {
    throw new RangeError(`${rule}: needs at least one update, got none`);
  }
  const first = updates[0];
  if (!(first instanceof Float32Array)) throw new RangeError(`${rule}: update 0 is not a Float32Array`);
  const d = first.length;
  for (let i = 1; i < updates.length; i++) {
    const u = updates[i];
    if (!(u instanceof Float32Array)) throw new RangeError(`${rule}: update ${i} is not a Float32Array`);
    if (u.length !== d) {
      throw new RangeError(`${rule}: updates have unequal lengths (update 0 has ${d}, update ${i} has ${u.length})`);
    }
  }
  return d;
}

/** Checks one weight per update, each finite and ≥ 0, not all zero; returns them as float64 with their sum. */
export function checkWeights(
  rule: string,
  weights: ArrayLike<number>,
  n: number,
): { w: Float64Array; total: number } {
  if (weights == null || typeof weights.length !== 'number') throw new RangeError(`${rule}: weights must be a list of numbers`);
  if (weights.length !== n) throw new RangeError(`${rule}: got ${weights.length} weights for ${n} updates`);
  const w = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const wi = weights[i];
    if (typeof wi !== 'number' || !Number.isFinite(wi)) throw new RangeError(`${rule}: weight ${i} is not a finite number (${String(wi)})`);
    if (wi < 0) throw new RangeError(`${rule}: weight ${i} is negative (${wi})`);
    w[i] = wi;
    total += wi;
  }
  if (total === 0) throw new RangeError(`${rule}: all weights are zero`);
  if (!Number.isFinite(total)) throw new RangeError(`${rule}: weights sum to infinity`);
  return { w, total };
}

/** Checks that f is a non-negative integer with n > minFactor·f + extra (e.g. n > 2f for trimmed mean). */
export function checkF(rule: string, f: number, n: number, minFactor: number, extra: number): void {
  if (!Number.isInteger(f) || f < 0) throw new RangeError(`${rule}: f must be a non-negative integer, got ${String(f)}`);
  const needed = minFactor * f + extra;
  if (!(n > needed)) {
    const cond = extra === 0 ? `n > ${minFactor}f` : `n > ${minFactor}f+${extra}`;
    throw new RangeError(`${rule}: cannot tolerate f = ${f} with n = ${n} updates (needs ${cond}, i.e. n ≥ ${needed + 1})`);
  }
}

/** Checks an integer option ≥ min. */
export function checkInteger(rule: string, name: string, v: number, min = 1): void {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`${rule}: ${name} must be an integer ≥ ${min}, got ${String(v)}`);
}

export function checkNonNegative(rule: string, name: string, v: number, allowInfinity = false): void {
  const ok = typeof v === 'number' && !Number.isNaN(v) && v >= 0 && (allowInfinity || Number.isFinite(v));
  if (!ok) throw new RangeError(`${rule}: ${name} must be a ${allowInfinity ? '' : 'finite '}number ≥ 0, got ${String(v)}`);
}

/** Column block size for cache-friendly passes: a float64 accumulator of this size stays in L1/L2. */
export const BLOCK = 4096;
