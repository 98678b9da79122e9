// report.html: one self-contained file (inline CSS and SVG, no scripts, no external resources), deterministic for
// a given input (nothing reads the clock or a random source: `generatedAt` comes from the caller).
//
// Per experiment: loss against step and against virtual time (and accuracy, where any run reports it), one colour
// per algorithm (the same colour across the whole report), the mean over seeds as a line and the min–max across
// seeds as a shaded band; then the experiment's summary table.
//
// Decisions:
// - Seeds whose logged x values (steps, or times) are identical are aggregated exactly at those x values. Otherwise
//   (virtual time differs by seed) each seed is interpolated linearly onto a common grid — the union of all logged x
//   values, or MAX_POINTS evenly spaced points when that is more — and a grid point aggregates only the seeds whose
//   logged range covers it (never extrapolated); where no seed spans two neighbouring grid points the line breaks.
// - Null and non-finite values are left out (a diverged run's line stops; the legend says "diverged in k/n").
// - Loss uses a log-scale y axis when all its values are positive and span more than two decades.
// - Every line has at most MAX_POINTS points: longer ones are bucketed (the line keeps each bucket's last point, the
//   band each bucket's min and max, so the band still encloses the line).
import type { MetricRow, RunResult } from '../types.js';
import { anyReached, byExperiment, formatSig4, summaryStats, timeToTargetCell, type SummaryStats } from './summary.js';

/** What the report shows about a preset (a `Preset` from simulations/presets fits). */
export interface ReportPresetInfo {
  readonly name: string;
  readonly description?: string;
  readonly experiments: readonly string[];
  /** What final loss means, shown above the preset's tables. */
  readonly lossLabel?: string;
}

export interface ReportOptions {
  title: string;
  /** Shown verbatim (e.g. an ISO timestamp); the caller's, so the output stays deterministic. */
  generatedAt: string;
  /** Group experiments under their presets (name, description, loss label); others go under "Other experiments". */
  presets?: readonly ReportPresetInfo[];
  /** Extra tables at the end (e.g. live mode's coordinator cost per job): cells are shown as text. */
  tables?: readonly ReportTable[];
}

export interface ReportTable {
  title: string;
  note?: string;
  headers: readonly string[];
  rows: readonly (readonly (string | number)[])[];
}

function extraTableHtml(t: ReportTable): string {
  const out: string[] = [`<h2>${escapeHtml(t.title)}</h2>`];
  if (t.note !== undefined) out.push(`<p class="note">${escapeHtml(t.note)}</p>`);
  out.push(`<table><thead><tr>${t.headers.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>`);
  for (const r of t.rows) out.push(`<tr>${r.map((c) => `<td>${escapeHtml(String(c))}</td>`).join('')}</tr>`);
  out.push('</tbody></table>');
  return out.join('');
}

export const MAX_POINTS = 300;

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML content and (double- or single-quoted) attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

// ---------- colours ----------

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#7f7f7f'];

function colourAt(i: number): string {
  if (i < PALETTE.length) return PALETTE[i];
  const hue = Math.round(((i - PALETTE.length) * 137.508 + 20) % 360);
  return `hsl(${hue},55%,42%)`;
}

// ---------- aggregation over seeds ----------

interface Pt {
  x: number;
  y: number;
}

interface BandPt {
  x: number;
  mean: number;
  lo: number;
  hi: number;
}

type Metric = 'loss' | 'accuracy';
type XAxis = 'step' | 'time';

function seriesOf(rows: readonly MetricRow[], metric: Metric, xAxis: XAxis, positiveOnly: boolean): Pt[] {
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

// ---------- axes ----------

interface Tick {
  v: number;
  label: string;
}

interface Axis {
  lo: number;
  hi: number;
  log: boolean;
  ticks: Tick[];
}

function niceStep(range: number, target: number): number {
  const raw = range / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return nice * mag;
}

function expLabel(v: number): string {
  return Number(v.toPrecision(3)).toExponential().replace('e+', 'e');
}

function linearAxis(min: number, max: number, extend: boolean): Axis {
  let lo = min;
  let hi = max;
  if (!(hi > lo)) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep(hi - lo, 5);
  if (extend) {
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
  }
  const maxAbs = Math.max(Math.abs(lo), Math.abs(hi));
  const stepText = String(Number(step.toPrecision(2)));
  const useExp = maxAbs >= 1e6 || maxAbs < 1e-3 || stepText.includes('e');
  const decimals = useExp ? 0 : (stepText.split('.')[1] ?? '').length;
  const ticks: Tick[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k <= Math.floor(hi / step + 1e-9); k++) {
    const v = k * step;
    ticks.push({ v, label: k === 0 ? '0' : useExp ? expLabel(v) : v.toFixed(decimals) });
  }
  return { lo, hi, log: false, ticks };
}

function logAxis(min: number, max: number): Axis {
  const kLo = Math.floor(Math.log10(min));
  let kHi = Math.ceil(Math.log10(max));
  if (kHi === kLo) kHi++;
  const every = Math.max(1, Math.ceil((kHi - kLo) / 6));
  const ticks: Tick[] = [];
  for (let k = kLo; k <= kHi; k += every) {
    const v = Number(`1e${k}`);
    ticks.push({ v, label: k >= -3 && k <= 4 ? String(v) : `1e${k}` });
  }
  return { lo: Number(`1e${kLo}`), hi: Number(`1e${kHi}`), log: true, ticks };
}

function fraction(a: Axis, v: number): number {
  return a.log ? (Math.log10(v) - Math.log10(a.lo)) / (Math.log10(a.hi) - Math.log10(a.lo)) : (v - a.lo) / (a.hi - a.lo);
}

// ---------- SVG ----------

const W = 480;
const H = 290;
const M = { l: 60, r: 14, t: 26, b: 42 };
const PW = W - M.l - M.r;
const PH = H - M.t - M.b;

const r1 = (v: number): string => String(Math.round(v * 10) / 10);

interface Line {
  algorithm: string;
  colour: string;
  seeds: number;
  segments: BandPt[][];
}

function svgPlot(title: string, xLabel: string, yLabel: string, x: Axis, y: Axis, lines: readonly Line[]): string {
  const px = (v: number) => M.l + fraction(x, v) * PW;
  const py = (v: number) => M.t + (1 - fraction(y, v)) * PH;
  const out: string[] = [];
  out.push(`<svg class="plot" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(title)}">`);
  out.push(`<title>${escapeHtml(title)}</title>`);
  out.push(`<text x="${W / 2}" y="16" class="pt">${escapeHtml(title)}</text>`);
  // Grid and ticks.
  const grid: string[] = [];
  for (const t of y.ticks) {
    const yy = r1(py(t.v));
    grid.push(`M${M.l} ${yy}H${M.l + PW}`);
    out.push(`<text x="${M.l - 5}" y="${yy}" class="yt">${escapeHtml(t.label)}</text>`);
  }
  for (const t of x.ticks) {
    const xx = r1(px(t.v));
    grid.push(`M${xx} ${M.t}V${M.t + PH}`);
    out.push(`<text x="${xx}" y="${M.t + PH + 14}" class="xt">${escapeHtml(t.label)}</text>`);
  }
  out.push(`<path class="grid" d="${grid.join('')}"/>`);
  out.push(`<rect class="frame" x="${M.l}" y="${M.t}" width="${PW}" height="${PH}"/>`);
  out.push(`<text x="${M.l + PW / 2}" y="${H - 6}" class="xl">${escapeHtml(xLabel)}</text>`);
  out.push(`<text transform="translate(14 ${M.t + PH / 2}) rotate(-90)" class="yl">${escapeHtml(yLabel)}</text>`);
  // Bands first (under every line), then lines.
  for (const l of lines) {
    for (const seg of l.segments) {
      if (seg.every((p) => p.lo === p.hi)) continue;
      const upper = seg.map((p, i) => `${i === 0 ? 'M' : 'L'}${r1(px(p.x))} ${r1(py(p.hi))}`).join('');
      const lower = seg.map((p) => `L${r1(px(p.x))} ${r1(py(p.lo))}`).reverse().join('');
      out.push(`<path class="band" fill="${l.colour}" d="${upper}${lower}Z"/>`);
    }
  }
  for (const l of lines) {
    const label = `${l.algorithm}: mean over ${l.seeds} seed${l.seeds === 1 ? '' : 's'}${l.seeds > 1 ? ', band min–max' : ''}`;
    out.push(`<g stroke="${l.colour}" fill="${l.colour}"><title>${escapeHtml(label)}</title>`);
    for (const seg of l.segments) {
      if (seg.length === 1) out.push(`<circle r="2.5" cx="${r1(px(seg[0].x))}" cy="${r1(py(seg[0].mean))}"/>`);
      else out.push(`<path class="line" d="${seg.map((p, i) => `${i === 0 ? 'M' : 'L'}${r1(px(p.x))} ${r1(py(p.mean))}`).join('')}"/>`);
    }
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('');
}

function plotFor(
  groups: readonly { algorithm: string; runs: readonly RunResult[] }[],
  colours: ReadonlyMap<string, string>,
  metric: Metric,
  xAxis: XAxis,
  experiment: string,
): string | null {
  // Scale decision on the raw values.
  let min = Infinity;
  let max = -Infinity;
  for (const g of groups) {
    for (const run of g.runs) {
      for (const r of run.rows) {
        const v = r[metric];
        if (v === null || !Number.isFinite(v)) continue;
        if (v < min) min = v;
        if (v > max) max = v;
      }
    }
  }
  if (!(min <= max)) return null;
  const log = metric === 'loss' && min > 0 && max / min > 100;
  const lines: Line[] = groups.map((g) => ({
    algorithm: g.algorithm,
    colour: colours.get(g.algorithm) ?? colourAt(0),
    seeds: g.runs.length,
    segments: aggregateSeeds(g.runs.map((run) => seriesOf(run.rows, metric, xAxis, log))),
  }));
  let xMin = Infinity;
  let xMax = -Infinity;
  let yMin = Infinity;
  let yMax = -Infinity;
  for (const l of lines) {
    for (const seg of l.segments) {
      for (const p of seg) {
        xMin = Math.min(xMin, p.x);
        xMax = Math.max(xMax, p.x);
        yMin = Math.min(yMin, p.lo);
        yMax = Math.max(yMax, p.hi);
      }
    }
  }
  if (!(xMin <= xMax)) return null;
  const x = linearAxis(xMin, xMax, false);
  const y = log ? logAxis(yMin, yMax) : linearAxis(yMin, yMax, true);
  const xLabel = xAxis === 'step' ? 'step' : 'virtual time';
  const yLabel = log ? `${metric} (log scale)` : metric;
  return svgPlot(`${experiment}: ${metric} vs ${xLabel}`, xLabel, yLabel, x, y, lines);
}

// ---------- page ----------

function diverged(run: RunResult): boolean {
  if (run.finalLoss !== null && !Number.isFinite(run.finalLoss)) return true;
  let seen = false;
  for (const r of run.rows) {
    if (r.loss === null) {
      if (seen) return true;
    } else if (!Number.isFinite(r.loss)) return true;
    else seen = true;
  }
  return false;
}

function summaryTableHtml(rows: readonly SummaryStats[], colours: ReadonlyMap<string, string>): string {
  const show = anyReached(rows);
  const out: string[] = [];
  out.push('<table><thead><tr><th>algorithm</th><th>seeds</th><th>final loss (mean)</th><th>final accuracy (mean)</th>');
  out.push(`<th>time to target (mean${show ? ', reached/seeds' : ''})</th></tr></thead><tbody>`);
  for (const r of rows) {
    out.push(
      `<tr><td><span class="sw" style="background:${colours.get(r.algorithm) ?? colourAt(0)}"></span>${escapeHtml(r.algorithm)}</td>` +
        `<td>${r.seeds}</td><td>${escapeHtml(formatSig4(r.final_loss_mean))}</td><td>${escapeHtml(formatSig4(r.final_accuracy_mean))}</td>` +
        `<td>${escapeHtml(timeToTargetCell(r, show))}</td></tr>`,
    );
  }
  out.push('</tbody></table>');
  return out.join('');
}

const CSS = [
  'body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1040px;padding:0 16px;color:#222}',
  'h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px;margin-top:24px}',
  '.meta,.note{color:#555}.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:8px}',
  'svg.plot{width:100%;height:auto;font-size:11px}.pt{text-anchor:middle;font-weight:600}.xt,.xl{text-anchor:middle}',
  '.yt{text-anchor:end;dominant-baseline:middle}.yl{text-anchor:middle}.grid{stroke:#e6e6e6;fill:none}',
  '.frame{fill:none;stroke:#999}.band{fill-opacity:.18;stroke:none}.line{fill:none;stroke-width:1.6}',
  '.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px}',
  '.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}',
  'table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}',
  'th:first-child,td:first-child{text-align:left}th{font-weight:600}',
].join('\n');

/** The whole report.html. */
export function reportHtml(results: readonly RunResult[], opts: ReportOptions): string {
  const byExp = new Map<string, Map<string, RunResult[]>>();
  const colours = new Map<string, string>();
  for (const r of results) {
    if (!colours.has(r.algorithm)) colours.set(r.algorithm, colourAt(colours.size));
    let e = byExp.get(r.experiment);
    if (e === undefined) byExp.set(r.experiment, (e = new Map<string, RunResult[]>()));
    const runs = e.get(r.algorithm);
    if (runs === undefined) e.set(r.algorithm, [r]);
    else runs.push(r);
  }
  const tables = byExperiment(summaryStats(results));
  const ids = new Map([...byExp.keys()].map((name, i) => [name, `e${i}`]));

  // Sections: each preset's experiments (in the preset's order), then the rest.
  const sections: { preset: ReportPresetInfo | null; experiments: string[] }[] = [];
  const placed = new Set<string>();
  for (const p of opts.presets ?? []) {
    const exps = p.experiments.filter((e) => byExp.has(e) && !placed.has(e));
    exps.forEach((e) => placed.add(e));
    if (exps.length > 0) sections.push({ preset: p, experiments: exps });
  }
  const rest = [...byExp.keys()].filter((e) => !placed.has(e));
  if (rest.length > 0) sections.push({ preset: null, experiments: rest });

  const seeds = [...new Set(results.map((r) => r.seed))].sort((a, b) => a - b);
  const out: string[] = [];
  out.push('<!DOCTYPE html>');
  out.push('<html lang="en"><head><meta charset="utf-8">');
  out.push('<meta name="viewport" content="width=device-width,initial-scale=1">');
  out.push(`<title>${escapeHtml(opts.title)}</title>`);
  out.push(`<style>\n${CSS}\n</style></head><body>`);
  out.push(`<h1>${escapeHtml(opts.title)}</h1>`);
  out.push(
    `<p class="meta">Generated ${escapeHtml(opts.generatedAt)} · ${results.length} run${results.length === 1 ? '' : 's'} · ` +
      `${byExp.size} experiment${byExp.size === 1 ? '' : 's'} · ${colours.size} algorithm${colours.size === 1 ? '' : 's'} · ` +
      `seeds ${escapeHtml(seeds.join(', ') || '—')}</p>`,
  );
  if (results.length === 0) {
    out.push('<p>No runs.</p></body></html>');
    return `${out.join('\n')}\n`;
  }
  out.push(
    `<p class="note">Lines: mean over seeds; shaded band: min–max across seeds. Against step, seeds are aligned at the steps they logged; ` +
      `against virtual time, seeds whose times differ are interpolated linearly onto a common grid and a point averages only the seeds ` +
      `whose logged time range covers it. Loss uses a log scale when it spans more than two decades. Lines have at most ${MAX_POINTS} points.</p>`,
  );
  out.push('<nav><ul>');
  for (const s of sections) {
    for (const e of s.experiments) out.push(`<li><a href="#${ids.get(e) ?? ''}">${escapeHtml(e)}</a></li>`);
  }
  out.push('</ul></nav>');

  for (const s of sections) {
    if (s.preset !== null) {
      out.push(`<h2>${escapeHtml(s.preset.name)}</h2>`);
      if (s.preset.description !== undefined) out.push(`<p>${escapeHtml(s.preset.description)}</p>`);
    } else if (sections.length > 1) out.push('<h2>Other experiments</h2>');
    for (const experiment of s.experiments) {
      const algos = byExp.get(experiment) ?? new Map<string, RunResult[]>();
      const groups = [...algos.entries()].map(([algorithm, runs]) => ({ algorithm, runs }));
      out.push(`<section id="${ids.get(experiment) ?? ''}"><h3>${escapeHtml(experiment)}</h3>`);
      out.push('<ul class="legend">');
      for (const g of groups) {
        const k = g.runs.filter(diverged).length;
        const note = `${g.runs.length} seed${g.runs.length === 1 ? '' : 's'}${k > 0 ? `, diverged in ${k}/${g.runs.length}` : ''}`;
        out.push(`<li><span class="sw" style="background:${colours.get(g.algorithm) ?? colourAt(0)}"></span>${escapeHtml(g.algorithm)} <span class="note">(${note})</span></li>`);
      }
      out.push('</ul>');
      const plots: string[] = [];
      for (const metric of ['loss', 'accuracy'] as const) {
        for (const xAxis of ['step', 'time'] as const) {
          const svg = plotFor(groups, colours, metric, xAxis, experiment);
          if (svg !== null) plots.push(svg);
        }
      }
      if (plots.length > 0) out.push(`<div class="plots">\n${plots.join('\n')}\n</div>`);
      else out.push('<p class="note">No finite loss or accuracy values to plot.</p>');
      if (s.preset?.lossLabel !== undefined) out.push(`<p class="note">Final loss: ${escapeHtml(s.preset.lossLabel)}</p>`);
      out.push(summaryTableHtml(tables.get(experiment) ?? [], colours));
      out.push('</section>');
    }
  }
  for (const t of opts.tables ?? []) out.push(extraTableHtml(t));
  out.push('</body></html>');
  return `${out.join('\n')}\n`;
}
