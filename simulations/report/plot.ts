// report.html's plots: one inline <svg> per experiment × metric × x axis, each algorithm's mean over seeds as a line
// over its min–max band. Loss uses a log-scale y axis when all its values are positive and span more than two decades.
import type { RunResult } from '../types.js';
import { fraction, linearAxis, logAxis, type Axis } from './axes.js';
import { colourAt } from './colours.js';
import { escapeHtml } from './escape.js';
import { aggregateSeeds, seriesOf, type BandPt, type Metric, type XAxis } from './seeds.js';

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

/** One experiment's plot of `metric` against `xAxis`, or null when it has no finite value to show. */
export function plotFor(
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
