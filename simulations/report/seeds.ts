// report.html's lines: one metric's rows per seed turned into a mean line and a min–max band across seeds.
//
// Decisions:
// - Seeds whose logged x values (steps, or times) are identical are aggregated exactly at those x values. Otherwise
//   (virtual time differs by seed) each seed is interpolated linearly onto a common grid — the union of all logged x
//   values, or MAX_POINTS evenly spaced points when that is more — and a grid point aggregates only the seeds whose
//   logged range covers it (never extrapolated); where no seed spans two neighbouring grid points the line breaks.
// - Null and non-finite values are left out (a diverged run's line stops).
// - Every line has at most MAX_POINTS points: longer ones are bucketed (the line keeps each bucket's last point, the
//   band each bucket's min and max, so the band still encloses the line).
import type { MetricRow } from '../types.js';

export const MAX_POINTS = 300;

export interface Pt {
  x: number;
  y: number;
}

export interface BandPt {
  x: number;
  mean: number;
  lo: number;
  hi: number;
}

export type Metric = 'loss' | 'accuracy';
export type XAxis = 'step' | 'time';

/** One run's finite (and, on a log axis, positive) values of `metric` against `xAxis`, in x order. */
export function seriesOf(rows: readonly MetricRow[], metric: Metric, xAxis: XAxis, positiveOnly: boolean): Pt[] {
  const pts: Pt[] = [];
  for (const r of rows) {
    const y = r[metric];
    const x = r[xAxis];
    if (y === null || !Number.isFinite(y) || !Number.isFinite(x)) continue;
    if (positiveOnly && y <= 0) continue;
    pts.push({ x, y });
  }
  // Stable sort: rows are normally already in order; equal x keep their logged order.
  return pts.every((p, i) => i === 0 || pts[i - 1].x <= p.x) ? pts : pts.map((p, i) => ({ p, i })).sort((a, b) => a.p.x - b.p.x || a.i - b.i).map((e) => e.p);
}

function sameXs(series: readonly Pt[][]): boolean {
  const first = series[0];
  return series.every((s) => s.length === first.length && s.every((p, i) => p.x === first[i].x));
}

function stats(ys: readonly number[], x: number): BandPt {
  let sum = 0;
  let lo = Infinity;
  let hi = -Infinity;
  for (const y of ys) {
    sum += y;
    if (y < lo) lo = y;
    if (y > hi) hi = y;
  }
  return { x, mean: sum / ys.length, lo, hi };
}

/** Mean and min–max over seeds, as contiguous segments (a gap no seed covers splits the line). */
export function aggregateSeeds(seriesIn: readonly Pt[][], maxPoints = MAX_POINTS): BandPt[][] {
  const series = seriesIn.filter((s) => s.length > 0);
  if (series.length === 0) return [];
  if (sameXs(series)) {
    const seg = series[0].map((p, i) => stats(series.map((s) => s[i].y), p.x));
    return [downsample(seg, maxPoints)];
  }
  // The grid: every x any seed logged (so each seed's breakpoints are kept and the mean is exact between them), or
  // when that is too many, max evenly spaced points over the whole range.
  const union = [...new Set(series.flatMap((s) => s.map((p) => p.x)))].sort((a, b) => a - b);
  let gridXs = union;
  if (union.length > maxPoints) {
    const x0 = union[0];
    const x1 = union[union.length - 1];
    gridXs = Array.from({ length: maxPoints }, (_, i) => (i === maxPoints - 1 ? x1 : x0 + ((x1 - x0) * i) / (maxPoints - 1)));
  }
  const starts = series.map((s) => s[0].x);
  const ends = series.map((s) => s[s.length - 1].x);
  const ptr = series.map(() => 0);
  const segments: BandPt[][] = [];
  let current: BandPt[] = [];
  let prev = -Infinity;
  for (const gx of gridXs) {
    const ys: number[] = [];
    series.forEach((s, k) => {
      if (gx < starts[k] || gx > ends[k]) return;
      let j = ptr[k];
      while (j + 1 < s.length && s[j + 1].x <= gx) j++;
      ptr[k] = j;
      const a = s[j];
      if (a.x === gx || j === s.length - 1) {
        ys.push(a.y);
        return;
      }
      const b = s[j + 1];
      ys.push(a.y + ((gx - a.x) / (b.x - a.x)) * (b.y - a.y));
    });
    // Draw from the previous grid point only if some seed spans both; otherwise start a new segment.
    const connected = ys.length > 0 && current.length > 0 && starts.some((st, k) => st <= prev && ends[k] >= gx);
    if (!connected && current.length > 0) {
      segments.push(current);
      current = [];
    }
    if (ys.length > 0) current.push(stats(ys, gx));
    prev = gx;
  }
  if (current.length > 0) segments.push(current);
  return segments;
}

/** ≤ max points: bucket i keeps its last point for the line (the first bucket its first) and min/max for the band. */
function downsample(seg: BandPt[], max: number): BandPt[] {
  const n = seg.length;
  if (n <= max) return seg;
  const out: BandPt[] = [];
  for (let b = 0; b < max; b++) {
    const start = Math.floor((b * n) / max);
    const end = Math.floor(((b + 1) * n) / max);
    const rep = seg[b === 0 ? start : end - 1];
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = start; i < end; i++) {
      lo = Math.min(lo, seg[i].lo);
      hi = Math.max(hi, seg[i].hi);
    }
    out.push({ x: rep.x, mean: rep.mean, lo, hi });
  }
  return out;
}
