// report.html: one self-contained file (inline CSS and SVG, no scripts, no external resources), deterministic for
// a given input (nothing reads the clock or a random source: `generatedAt` comes from the caller).
//
// Per experiment: loss against step and against virtual time (and accuracy, where any run reports it), one colour
// per algorithm (the same colour across the whole report), the mean over seeds as a line and the min–max across
// seeds as a shaded band; then the experiment's summary table. A diverged run's line stops; the legend says
// "diverged in k/n".
//
// This module assembles the page; the lines over seeds are seeds.ts, their axes axes.ts, the SVG plot.ts, the
// tables tables.ts.
import type { RunResult } from '../types.js';
import { colourAt } from './colours.js';
import { escapeHtml } from './escape.js';
import { plotFor } from './plot.js';
import { MAX_POINTS } from './seeds.js';
import { byExperiment, summaryStats } from './summary.js';
import { extraTableHtml, summaryTableHtml, type ReportTable } from './tables.js';

// What importers of report/html have always found here.
export { escapeHtml } from './escape.js';
export { aggregateSeeds, MAX_POINTS } from './seeds.js';
export type { ReportTable } from './tables.js';

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

/** A run diverged: a non-finite loss, or a null loss after a logged one. */
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
