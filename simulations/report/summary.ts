// summary.json rows and the terminal summary table.
//
// Decisions:
// - Groups are (experiment, algorithm) in first-seen order; `seeds` counts the runs in the group.
// - final_loss_mean / final_accuracy_mean: the mean over the runs where the value is non-null; null when every run's
//   value is null. A non-finite value (a diverged run) makes the mean non-finite (Infinity / NaN) rather than being
//   dropped: JSON.stringify writes that as null, the table as `inf` / `nan`.
// - time_to_target_mean: null unless EVERY run reached the target — a mean over only the runs that reached it would
//   flatter an algorithm that often never gets there. How many did is `reached` in `summaryStats` and the table.
import type { RunResult, SummaryRow } from '../types.js';

/** A summary row plus how many of its runs reached the target (0 also when no target is set). */
export interface SummaryStats extends SummaryRow {
  reached: number;
}

function meanOfPresent(values: readonly (number | null)[]): number | null {
  let sum = 0;
  let n = 0;
  for (const v of values) {
    if (v === null) continue;
    sum += v;
    n++;
  }
  return n === 0 ? null : sum / n;
}

/** Groups results by (experiment, algorithm), first-seen order, with the `reached` count. */
export function summaryStats(results: readonly RunResult[]): SummaryStats[] {
  const groups = new Map<string, RunResult[]>();
  for (const r of results) {
    const key = JSON.stringify([r.experiment, r.algorithm]);
    const g = groups.get(key);
    if (g === undefined) groups.set(key, [r]);
    else g.push(r);
  }
  const out: SummaryStats[] = [];
  for (const runs of groups.values()) {
    const first = runs[0];
    const times = runs.map((r) => r.timeToTarget);
    const reached = times.filter((t) => t !== null).length;
    out.push({
      experiment: first.experiment,
      algorithm: first.algorithm,
      seeds: runs.length,
      final_loss_mean: meanOfPresent(runs.map((r) => r.finalLoss)),
      final_accuracy_mean: meanOfPresent(runs.map((r) => r.finalAccuracy)),
      time_to_target_mean: reached === runs.length ? meanOfPresent(times) : null,
      reached,
    });
  }
  return out;
}

/** summary.json's rows: exactly the contract's keys, in the contract's order. */
export function summarize(results: readonly RunResult[]): SummaryRow[] {
  return summaryStats(results).map((s) => ({
    experiment: s.experiment,
    algorithm: s.algorithm,
    seeds: s.seeds,
    final_loss_mean: s.final_loss_mean,
    final_accuracy_mean: s.final_accuracy_mean,
    time_to_target_mean: s.time_to_target_mean,
  }));
}

export const MISSING = '—';

/** 4 significant digits: fixed notation for 1e-4 ≤ |x| < 1e7, else exponent (`1.234e-5`); `inf`/`nan`; null → —. */
export function formatSig4(x: number | null): string {
  if (x === null) return MISSING;
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return '0';
  const e = Math.floor(Math.log10(Math.abs(x)));
  if (e >= -4 && e < 7) return x.toFixed(Math.max(0, 3 - e));
  return x.toExponential(3).replace('e+', 'e');
}

function hasReached(r: SummaryRow | SummaryStats): r is SummaryStats {
  return 'reached' in r && typeof r.reached === 'number';
}

/** The time-to-target cell: the mean, with `(k/n)` when the row knows it and some run of its experiment reached. */
export function timeToTargetCell(r: SummaryRow | SummaryStats, showReached: boolean): string {
  const mean = formatSig4(r.time_to_target_mean);
  return showReached && hasReached(r) ? `${mean} (${r.reached}/${r.seeds})` : mean;
}

/** Rows grouped by experiment, first-seen order. */
export function byExperiment<R extends SummaryRow>(rows: readonly R[]): Map<string, R[]> {
  const m = new Map<string, R[]>();
  for (const r of rows) {
    const g = m.get(r.experiment);
    if (g === undefined) m.set(r.experiment, [r]);
    else g.push(r);
  }
  return m;
}

/** Whether any row of a block (one experiment) reached its target, so `(k/n)` is worth showing. */
export function anyReached(rows: readonly (SummaryRow | SummaryStats)[]): boolean {
  return rows.some((r) => (hasReached(r) ? r.reached > 0 : r.time_to_target_mean !== null));
}

const HEAD = ['algorithm', 'seeds', 'final loss', 'final accuracy', 'time to target'] as const;

/**
 * A fixed-width text table for the terminal: one block per experiment (its name, then a header and one line per
 * algorithm), columns aligned across the whole table, numbers to 4 significant digits, — where null. Given
 * `summaryStats` rows it adds `(k/n)` runs-reached-target to the time column in experiments where any run did.
 */
export function summaryTable(rows: readonly (SummaryRow | SummaryStats)[]): string {
  if (rows.length === 0) return '(no runs)';
  const blocks: { experiment: string; cells: string[][] }[] = [];
  for (const [experiment, group] of byExperiment(rows)) {
    const show = anyReached(group);
    blocks.push({
      experiment,
      cells: group.map((r) => [r.algorithm, String(r.seeds), formatSig4(r.final_loss_mean), formatSig4(r.final_accuracy_mean), timeToTargetCell(r, show)]),
    });
  }
  const widths = HEAD.map((h, i) => Math.max(h.length, ...blocks.flatMap((b) => b.cells.map((c) => [...c[i]].length))));
  const pad = (s: string, w: number, left: boolean) => {
    const fill = ' '.repeat(Math.max(0, w - [...s].length));
    return left ? s + fill : fill + s;
  };
  const line = (cells: readonly string[]) => `  ${cells.map((c, i) => pad(c, widths[i], i === 0)).join('  ')}`.trimEnd();
  const out: string[] = [];
  for (const b of blocks) {
    if (out.length > 0) out.push('');
    out.push(b.experiment);
    out.push(line(HEAD));
    for (const c of b.cells) out.push(line(c));
  }
  return out.join('\n');
}
