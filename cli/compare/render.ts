// `fedpool compare`'s outputs: the plain-text table printed on stdout and the self-contained HTML report (inline
// CSS and SVG, nothing fetched). What the numbers mean: docs/scoring-reports.md.
import type { CompareReport, Comparison, JoinedRecord } from './report.js';

/** A number for the table: 3 decimals, "-" where undefined (NaN, or the statistic does not apply). */
function fmt(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(3);
}

interface Column {
  head: string;
  cell: (c: Comparison) => string;
}

/** The columns that apply to what the files hold. */
function columns(report: CompareReport): Column[] {
  const cols: Column[] = [
    { head: 'model_a', cell: (c) => c.a },
    { head: 'model_b', cell: (c) => c.b },
  ];
  if (report.counts.pairs > 0) {
    cols.push(
      { head: 'pairs', cell: (c) => String(c.pairs?.n ?? 0) },
      { head: 'agree', cell: (c) => fmt(c.pairs?.agreement) },
      { head: 'kappa', cell: (c) => fmt(c.pairs?.kappa) },
    );
  }
  if (report.counts.bestof > 0) {
    cols.push(
      { head: 'bestof', cell: (c) => String(c.bestof?.n ?? 0) },
      { head: 'bestof_agree', cell: (c) => fmt(c.bestof?.agreement) },
      { head: 'bestof_kappa', cell: (c) => fmt(c.bestof?.kappa) },
    );
  }
  if (report.counts.items > 0) {
    cols.push(
      { head: 'items', cell: (c) => String(c.items?.n ?? 0) },
      { head: 'tau', cell: (c) => fmt(c.items?.tau) },
      { head: 'rho', cell: (c) => fmt(c.items?.rho) },
    );
    if (report.counts.groups > 0) {
      cols.push(
        { head: 'groups', cell: (c) => String(c.items?.groups?.n ?? 0) },
        { head: 'group_tau', cell: (c) => fmt(c.items?.groups?.tau) },
        { head: 'group_rho', cell: (c) => fmt(c.items?.groups?.rho) },
        { head: 'top1', cell: (c) => fmt(c.items?.groups?.top1) },
      );
    }
  }
  return cols;
}

/** How many models and ids: "3 models, 120 ids in every file (4 dropped: not in every file)". */
function counted(report: CompareReport): string {
  const dropped = report.dropped > 0 ? ` (${report.dropped} dropped: not in every file)` : '';
  return `${report.models.length} models, ${report.common} ids in every file${dropped}`;
}

/** The first line of the stdout report. */
export function headline(report: CompareReport): string {
  return `fedpool compare: ${counted(report)}`;
}

/** The stdout report: the headline, then one row per two models, columns padded to line up. */
export function renderTable(report: CompareReport): string {
  const cols = columns(report);
  const rows = [cols.map((c) => c.head), ...report.comparisons.map((r) => cols.map((c) => c.cell(r)))];
  const widths = cols.map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  const text = rows.map((r) => r.map((v, k) => v.padEnd(widths[k])).join('  ').trimEnd());
  return `${headline(report)}\n${text.join('\n')}\n`;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** White at 0, green towards +1, red towards −1; grey where undefined. */
function cellColor(v: number): string {
  if (!Number.isFinite(v)) return '#eeeeee';
  const t = Math.max(-1, Math.min(1, v));
  const mix = (to: [number, number, number]): string => `rgb(${to.map((c) => Math.round(255 + (c - 255) * Math.abs(t))).join(',')})`;
  return t >= 0 ? mix([60, 170, 90]) : mix([215, 70, 60]);
}

/** A models × models matrix of one statistic, the diagonal 1. */
function matrix(report: CompareReport, title: string, value: (c: Comparison) => number | undefined): string {
  const names = report.models.map((m) => m.name);
  const get = (i: number, j: number): number => {
    if (i === j) return 1;
    const c = report.comparisons.find((x) => (x.a === names[i] && x.b === names[j]) || (x.a === names[j] && x.b === names[i]));
    return c === undefined ? Number.NaN : value(c) ?? Number.NaN;
  };
  const head = `<tr><th></th>${names.map((n) => `<th>${esc(n)}</th>`).join('')}</tr>`;
  const body = names
    .map((n, i) => `<tr><th>${esc(n)}</th>${names.map((_, j) => {
      const v = get(i, j);
      return `<td class="num" style="background:${cellColor(v)}">${fmt(v)}</td>`;
    }).join('')}</tr>`)
    .join('\n');
  return `<h2>${esc(title)}</h2>\n<table class="matrix">\n${head}\n${body}\n</table>`;
}

/** Scatter points of the first two models: items, and both sides of pairs and best-of rows. */
function scatterPoints(records: readonly JoinedRecord[]): { x: number; y: number; role: 'item' | 'chosen' | 'rejected' }[] {
  const points: { x: number; y: number; role: 'item' | 'chosen' | 'rejected' }[] = [];
  for (const r of records) {
    const [a, b] = r.lines;
    if (a.kind === 'item' && b.kind === 'item') points.push({ x: a.score, y: b.score, role: 'item' });
    else if (a.kind === 'pair' && b.kind === 'pair') points.push({ x: a.chosen, y: b.chosen, role: 'chosen' }, { x: a.rejected, y: b.rejected, role: 'rejected' });
    else if (a.kind === 'bestof' && b.kind === 'bestof') {
      points.push({ x: a.chosen, y: b.chosen, role: 'chosen' });
      a.rejected.forEach((v, k) => points.push({ x: v, y: b.rejected[k], role: 'rejected' }));
    }
  }
  return points;
}

/** At most this many circles are drawn (every k-th point beyond it), so the page stays small. */
const MAX_POINTS = 5000;
const ROLE_COLORS = { item: '#3b6fb6', chosen: '#2e9e5b', rejected: '#d2553f' } as const;

function ticks(lo: number, hi: number): number[] {
  return [0, 1, 2, 3, 4].map((k) => lo + ((hi - lo) * k) / 4);
}

function tickLabel(v: number): string {
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(1) : String(+v.toPrecision(3));
}

/** An SVG scatter plot of the first two models' scores, axes labelled with their names. */
function scatter(report: CompareReport, records: readonly JoinedRecord[]): string {
  const all = scatterPoints(records).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (all.length === 0) return '';
  const step = Math.ceil(all.length / MAX_POINTS);
  const points = all.filter((_, k) => k % step === 0);
  const range = (vs: number[]): [number, number] => {
    let lo = Math.min(...vs);
    let hi = Math.max(...vs);
    if (lo === hi) {
      lo -= 1;
      hi += 1;
    }
    const pad = (hi - lo) * 0.05;
    return [lo - pad, hi + pad];
  };
  const [x0, x1] = range(points.map((p) => p.x));
  const [y0, y1] = range(points.map((p) => p.y));
  const W = 520;
  const H = 520;
  const m = { l: 70, r: 20, t: 20, b: 60 };
  const sx = (v: number): number => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (v: number): number => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
  const [nx, ny] = [report.models[0].name, report.models[1].name];
  const parts: string[] = [];
  parts.push(`<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(`scores: ${nx} against ${ny}`)}">`);
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="#fafafa" stroke="#999"/>`);
  for (const v of ticks(x0, x1)) {
    const x = sx(v).toFixed(1);
    parts.push(`<line x1="${x}" y1="${H - m.b}" x2="${x}" y2="${H - m.b + 5}" stroke="#666"/><text x="${x}" y="${H - m.b + 18}" text-anchor="middle" class="tick">${tickLabel(v)}</text>`);
  }
  for (const v of ticks(y0, y1)) {
    const y = sy(v).toFixed(1);
    parts.push(`<line x1="${m.l - 5}" y1="${y}" x2="${m.l}" y2="${y}" stroke="#666"/><text x="${m.l - 8}" y="${y}" text-anchor="end" dominant-baseline="middle" class="tick">${tickLabel(v)}</text>`);
  }
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 15}" text-anchor="middle" class="axis">${esc(nx)} score</text>`);
  parts.push(`<text x="18" y="${(m.t + H - m.b) / 2}" text-anchor="middle" class="axis" transform="rotate(-90 18 ${(m.t + H - m.b) / 2})">${esc(ny)} score</text>`);
  for (const p of points) parts.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="2.5" fill="${ROLE_COLORS[p.role]}" fill-opacity="0.6"/>`);
  parts.push('</svg>');
  const roles = [...new Set(points.map((p) => p.role))];
  const legend = roles.map((r) => `<span class="swatch" style="background:${ROLE_COLORS[r]}"></span>${r}`).join(' ');
  const sampled = step > 1 ? ` (every ${step}th of ${all.length} points drawn)` : '';
  return `<h2>Scores: ${esc(nx)} against ${esc(ny)}</h2>\n<p>${legend}${sampled}</p>\n${parts.join('\n')}`;
}

function statsTable(report: CompareReport): string {
  const cols = columns(report);
  const head = `<tr>${cols.map((c) => `<th>${esc(c.head)}</th>`).join('')}</tr>`;
  const body = report.comparisons.map((r) => `<tr>${cols.map((c, k) => `<td${k > 1 ? ' class="num"' : ''}>${esc(c.cell(r))}</td>`).join('')}</tr>`).join('\n');
  return `<table>\n${head}\n${body}\n</table>`;
}

function subsetTable(report: CompareReport): string {
  if (report.counts.subsets.length === 0) return '';
  const rows: string[] = [];
  for (const c of report.comparisons) {
    for (const [name, s] of Object.entries(c.subsets ?? {})) {
      rows.push(
        `<tr><td>${esc(c.a)}</td><td>${esc(c.b)}</td><td>${esc(name)}</td>` +
          `<td class="num">${s.pairs?.n ?? ''}</td><td class="num">${s.pairs ? fmt(s.pairs.agreement) : ''}</td><td class="num">${s.pairs ? fmt(s.pairs.kappa) : ''}</td>` +
          `<td class="num">${s.bestof?.n ?? ''}</td><td class="num">${s.bestof ? fmt(s.bestof.kappa) : ''}</td>` +
          `<td class="num">${s.items?.n ?? ''}</td><td class="num">${s.items ? fmt(s.items.tau) : ''}</td><td class="num">${s.items ? fmt(s.items.rho) : ''}</td></tr>`,
      );
    }
  }
  const head = '<tr><th>model_a</th><th>model_b</th><th>subset</th><th>pairs</th><th>agree</th><th>kappa</th><th>bestof</th><th>bestof_kappa</th><th>items</th><th>tau</th><th>rho</th></tr>';
  return `<h2>Per subset</h2>\n<table>\n${head}\n${rows.join('\n')}\n</table>`;
}

const CSS = `body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:0.3em 0.6em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}table.matrix td{min-width:4.5em}
.tick{font-size:11px;fill:#444}.axis{font-size:13px;fill:#222}
.swatch{display:inline-block;width:0.8em;height:0.8em;border-radius:50%;margin:0 0.3em 0 0.8em;vertical-align:middle}
p.note{color:#555;font-size:0.9em}`;

/** The self-contained HTML report: no external scripts, styles, fonts or images. */
export function renderHtml(report: CompareReport, records: readonly JoinedRecord[]): string {
  const models = report.models
    .map((m) => {
      const acc = [m.pairs ? `pair accuracy ${fmt(m.pairs.accuracy)} (${m.pairs.n})` : '', m.bestof ? `best-of accuracy ${fmt(m.bestof.accuracy)} (${m.bestof.n})` : ''].filter((s) => s !== '').join(', ');
      return `<li><b>${esc(m.name)}</b>: ${esc(m.file)}, ${m.lines} lines, ${m.unmatched} not in every file${acc ? `; ${acc}` : ''}</li>`;
    })
    .join('\n');
  const matrices: string[] = [];
  if (report.counts.pairs > 0) matrices.push(matrix(report, "Cohen's κ on pair preferences (chosen / rejected / tie)", (c) => c.pairs?.kappa));
  if (report.counts.bestof > 0) matrices.push(matrix(report, "Cohen's κ on best-of-k outcomes", (c) => c.bestof?.kappa));
  if (report.counts.items > 0) matrices.push(matrix(report, 'Kendall τ-b of item scores', (c) => c.items?.tau));
  const c = report.counts;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fedpool compare: ${esc(report.models.map((m) => m.name).join(', '))}</title>
<style>
${CSS}
</style>
</head>
<body>
<h1>fedpool compare</h1>
<p>${esc(counted(report))}: ${c.pairs} pairs, ${c.bestof} best-of-k rows, ${c.items} items (${c.groups} groups).</p>
<ul>
${models}
</ul>
${statsTable(report)}
${matrices.join('\n')}
${subsetTable(report)}
${report.models.length >= 2 ? scatter(report, records) : ''}
<p class="note">agree: share of pairs on which both models prefer the same side (a tie is its own outcome); κ: Cohen's kappa over
those outcomes; τ: Kendall τ-b and ρ: Spearman ρ of the scores (ties share ranks); group_*: mean over groups of at least two
items; top1: share of those groups where both models' best-of-n pick is the same item. "-": undefined (see docs/scoring-reports.md in fedpool).</p>
</body>
</html>
`;
}
