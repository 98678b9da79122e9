// How much two reward models agree on the same data: preference agreement and Cohen's κ over pair outcomes, Kendall
// τ-b and Spearman ρ over item scores, and agreement of best-of-n picks. Pure functions; definitions and degenerate
// cases are in docs/scoring-reports.md.

/** The outcome of a pair under one model. */
export type Preference = 'chosen' | 'rejected' | 'tie';

/** Which side a model prefers: a tie (or a NaN score, where nothing is preferred) is its own outcome. */
export function preference(chosen: number, rejected: number): Preference {
  return chosen > rejected ? 'chosen' : rejected > chosen ? 'rejected' : 'tie';
}

export interface LabelAgreement {
  n: number;
  /** Observed agreement p_o: share of cases with the same label. NaN for n = 0. */
  agreement: number;
  /** Cohen's κ = (p_o − p_e) / (1 − p_e); 1 when p_e = 1 and p_o = 1 (both constant, same label). NaN for n = 0. */
  kappa: number;
}

/** Observed agreement and Cohen's κ of two labelings of the same cases. */
export function cohenKappa<L>(a: readonly L[], b: readonly L[]): LabelAgreement {
  if (a.length !== b.length) throw new RangeError(`cohenKappa: ${a.length} labels against ${b.length}`);
  const n = a.length;
  if (n === 0) return { n, agreement: Number.NaN, kappa: Number.NaN };
  const ca = new Map<L, number>();
  const cb = new Map<L, number>();
  let same = 0;
  for (let i = 0; i < n; i++) {
    if (a[i] === b[i]) same++;
    ca.set(a[i], (ca.get(a[i]) ?? 0) + 1);
    cb.set(b[i], (cb.get(b[i]) ?? 0) + 1);
  }
  const po = same / n;
  let pe = 0;
  for (const [label, count] of ca) pe += (count / n) * ((cb.get(label) ?? 0) / n);
  // p_e = 1 only when both labelings are one and the same constant label, so p_o = 1 as well: perfect agreement.
  const kappa = pe >= 1 ? (po >= 1 ? 1 : Number.NaN) : (po - pe) / (1 - pe);
  return { n, agreement: po, kappa };
}

/** Ascending order without subtraction (∞ − ∞ is NaN). */
function cmp(p: number, q: number): number {
  return p < q ? -1 : p > q ? 1 : 0;
}

/** Ranks 1..n (inputs without NaN), tied values sharing the average of the ranks they span. */
export function averageRanks(x: readonly number[]): number[] {
  const order = x.map((_, i) => i).sort((i, j) => cmp(x[i], x[j]) || i - j);
  const ranks = new Array<number>(x.length);
  for (let start = 0; start < order.length; ) {
    let end = start + 1;
    while (end < order.length && x[order[end]] === x[order[start]]) end++;
    const rank = (start + 1 + end) / 2; // mean of ranks start+1 … end
    for (let k = start; k < end; k++) ranks[order[k]] = rank;
    start = end;
  }
  return ranks;
}

/** Pearson correlation; NaN when either side has no variance or n < 2. */
export function pearson(x: readonly number[], y: readonly number[]): number {
  const n = x.length;
  if (n !== y.length) throw new RangeError(`pearson: ${n} values against ${y.length}`);
  if (n < 2) return Number.NaN;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx;
    const dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return Number.NaN;
  return Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)));
}

/** Spearman ρ: Pearson correlation of the average ranks. NaN when either side is constant, has a NaN, or n < 2. */
export function spearmanRho(x: readonly number[], y: readonly number[]): number {
  if (x.length !== y.length) throw new RangeError(`spearmanRho: ${x.length} values against ${y.length}`);
  if (x.some(Number.isNaN) || y.some(Number.isNaN)) return Number.NaN;
  return pearson(averageRanks(x), averageRanks(y));
}

/**
 * Kendall τ-b = (n_c − n_d) / √((n_0 − n_1)(n_0 − n_2)), n_1 and n_2 the pairs tied in x and in y. NaN when either
 * side is constant or has a NaN, or n < 2. O(n log n) (Knight's algorithm: sort by x then y, count y's inversions by merge sort).
 */
export function kendallTauB(x: readonly number[], y: readonly number[]): number {
  const n = x.length;
  if (n !== y.length) throw new RangeError(`kendallTauB: ${n} values against ${y.length}`);
  if (n < 2 || x.some(Number.isNaN) || y.some(Number.isNaN)) return Number.NaN;
  const order = x.map((_, i) => i).sort((i, j) => cmp(x[i], x[j]) || cmp(y[i], y[j]));
  const xs = order.map((i) => x[i]);
  const ys = order.map((i) => y[i]);
  const n0 = (n * (n - 1)) / 2;
  const n1 = tiedPairs(xs, (i) => xs[i] === xs[i - 1]);
  const n3 = tiedPairs(xs, (i) => xs[i] === xs[i - 1] && ys[i] === ys[i - 1]);
  // Pairs in x order whose y values are strictly inverted are the discordant ones (ties in x are sorted by y).
  const discordant = countInversions(ys);
  const sortedY = ys; // sorted in place by countInversions
  const n2 = tiedPairs(sortedY, (i) => sortedY[i] === sortedY[i - 1]);
  if (n0 === n1 || n0 === n2) return Number.NaN;
  // n_c − n_d = (n_0 − n_1 − n_2 + n_3) − 2 n_d: every pair tied in neither is concordant or discordant.
  const s = n0 - n1 - n2 + n3 - 2 * discordant;
  return Math.max(-1, Math.min(1, s / Math.sqrt((n0 - n1) * (n0 - n2))));
}

/** Σ t(t − 1)/2 over runs of consecutive positions where `same(i)` links i to i − 1. */
function tiedPairs(values: readonly number[], same: (i: number) => boolean): number {
  let total = 0;
  let run = 1;
  for (let i = 1; i <= values.length; i++) {
    if (i < values.length && same(i)) run++;
    else {
      total += (run * (run - 1)) / 2;
      run = 1;
    }
  }
  return total;
}

/** Number of pairs i < j with a[i] > a[j] (strictly); sorts `a` ascending in place (stable bottom-up merge sort). */
function countInversions(a: number[]): number {
  const n = a.length;
  let src = a;
  let dst = new Array<number>(n);
  let inversions = 0;
  for (let width = 1; width < n; width *= 2) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      const mid = Math.min(lo + width, n);
      const hi = Math.min(lo + 2 * width, n);
      let i = lo;
      let j = mid;
      let k = lo;
      while (i < mid && j < hi) {
        if (src[j] < src[i]) {
          inversions += mid - i; // src[j] is below every remaining left element
          dst[k++] = src[j++];
        } else dst[k++] = src[i++];
      }
      while (i < mid) dst[k++] = src[i++];
      while (j < hi) dst[k++] = src[j++];
    }
    [src, dst] = [dst, src];
  }
  if (src !== a) for (let i = 0; i < n; i++) a[i] = src[i];
  return inversions;
}

/** Index of the highest value, the first on ties (a NaN never wins). */
export function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best] || Number.isNaN(values[best])) best = i;
  return best;
}

export interface GroupAgreement {
  /** Groups with at least two items. */
  groups: number;
  /** Mean τ-b over those groups where it is defined, and how many that is. */
  tau: number;
  tauGroups: number;
  /** Mean ρ over those groups where it is defined, and how many that is. */
  rho: number;
  rhoGroups: number;
  /** Share of the groups (≥ 2 items) where both models' best-of-n pick is the same item (first in order on ties). */
  top1: number;
}

/**
 * Agreement within groups: each group is the two models' scores of the same items, in input order. Groups of one
 * item are left out (nothing to rank or pick between); means are NaN when no group counts.
 */
export function groupAgreement(groups: readonly { a: readonly number[]; b: readonly number[] }[]): GroupAgreement {
  let counted = 0;
  let tauSum = 0;
  let tauGroups = 0;
  let rhoSum = 0;
  let rhoGroups = 0;
  let same = 0;
  for (const g of groups) {
    if (g.a.length !== g.b.length) throw new RangeError(`groupAgreement: a group has ${g.a.length} scores against ${g.b.length}`);
    if (g.a.length < 2) continue;
    counted++;
    const tau = kendallTauB(g.a, g.b);
    if (!Number.isNaN(tau)) {
      tauSum += tau;
      tauGroups++;
    }
    const rho = spearmanRho(g.a, g.b);
    if (!Number.isNaN(rho)) {
      rhoSum += rho;
      rhoGroups++;
    }
    if (argmax(g.a) === argmax(g.b)) same++;
  }
  return {
    groups: counted,
    tau: tauGroups === 0 ? Number.NaN : tauSum / tauGroups,
    tauGroups,
    rho: rhoGroups === 0 ? Number.NaN : rhoSum / rhoGroups,
    rhoGroups,
    top1: counted === 0 ? Number.NaN : same / counted,
  };
}
