// report.html's tables: each experiment's summary (summary.json's figures, as the terminal table words them) and the
// caller's extra tables.
import { colourAt } from './colours.js';
import { escapeHtml } from './escape.js';
import { anyReached, formatSig4, timeToTargetCell, type SummaryStats } from './summary.js';

export interface ReportTable {
  title: string;
  note?: string;
  headers: readonly string[];
  rows: readonly (readonly (string | number)[])[];
}

/** An extra table: its own heading and note, every cell as text. */
export function extraTableHtml(t: ReportTable): string {
  const out: string[] = [`<h2>${escapeHtml(t.title)}</h2>`];
  if (t.note !== undefined) out.push(`<p class="note">${escapeHtml(t.note)}</p>`);
  out.push(`<table><thead><tr>${t.headers.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>`);
  for (const r of t.rows) out.push(`<tr>${r.map((c) => `<td>${escapeHtml(String(c))}</td>`).join('')}</tr>`);
  out.push('</tbody></table>');
  return out.join('');
}

/** One experiment's summary: a row per algorithm, with its colour swatch. */
export function summaryTableHtml(rows: readonly SummaryStats[], colours: ReadonlyMap<string, string>): string {
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
