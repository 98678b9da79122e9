// The per-job coordinator cost, as a table: aligned text for the terminal, a ReportTable for report.html.
import type { ReportTable } from '../../simulations/report/html.js';
import type { LiveRunStats } from './coordinator-cost.js';

const LIVE_HEADERS = ['experiment', 'algorithm', 'seed', 'state', 'wall s', 'steps', 'updates', 'updates/s', 'coord CPU %', 'coord RSS MB'] as const;

/** One job's cells of the resources table (terminal and report). */
function liveCells(s: LiveRunStats): string[] {
  return [s.experiment, s.algorithm, String(s.seed), s.state, s.wall_s.toFixed(1), String(s.server_steps), String(s.client_updates), s.updates_per_s.toFixed(1), s.coordinator_cpu_percent.toFixed(1), s.coordinator_rss_peak_mb.toFixed(1)];
}

/** The resources table for report.html. */
export function liveReportTable(stats: readonly LiveRunStats[]): ReportTable {
  return {
    title: 'Coordinator cost per job (live)',
    note: 'CPU as a share of one core and peak resident memory of the coordinator process, sampled from its /metrics every second; updates are what it aggregated (Byzantine workers included).',
    headers: LIVE_HEADERS,
    rows: stats.map(liveCells),
  };
}

/** The per-job resources table printed after the summary. */
export function liveTable(stats: readonly LiveRunStats[]): string {
  const head = [...LIVE_HEADERS];
  const body = stats.map(liveCells);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), ...body.map(line)].join('\n');
}
