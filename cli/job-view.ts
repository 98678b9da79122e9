// How the lifecycle commands (jobs, job, cancel, wait) show a job: one table row, or a few lines of detail. The
// coordinator's GET /api/jobs and GET /api/jobs/:id are the source; nothing here talks to it.

import type { JobStatus } from './api.js';

/** A job status as the coordinator sent it (--json prints all of it). */
export type JobView = JobStatus & Record<string, unknown>;

/** The unit a job's progress counts: items for a score job, server steps for a training job. */
export function progressUnit(job: JobView): string {
  return job.kind === 'train' ? 'steps' : 'items';
}

/** Progress per second from submission to the end (or to now): an average, not the current speed. */
export function rateOf(job: JobView, now: number): number | undefined {
  const start = Date.parse(job.createdAt);
  const end = job.finishedAt === undefined ? now : Date.parse(job.finishedAt);
  const seconds = (end - start) / 1000;
  return Number.isFinite(seconds) && seconds > 0 && job.progress.done > 0 ? job.progress.done / seconds : undefined;
}

/** 42s, 7m, 3h, 2d. */
export function shortDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

function rateText(job: JobView, now: number): string {
  const rate = rateOf(job, now);
  if (rate === undefined) return '-';
  const unit = job.kind === 'train' ? 'steps/s' : 'items/s';
  return `${rate >= 100 ? Math.round(rate).toLocaleString('en-US') : rate.toPrecision(2)} ${unit}`;
}

/** The owner column: "you" for the caller's own jobs, the owner's short id otherwise, "-" for ownerless ones. */
function ownerText(owner: string | null | undefined, me: string | undefined): string {
  if (owner === null || owner === undefined) return '-';
  return me !== undefined && me.startsWith(owner) ? 'you' : owner;
}

/** Rows of cells as lines, columns aligned (the first row is the header). */
export function alignedTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ')).join('\n') + '\n';
}

/** A table of jobs, one line each; `me` is the caller's owner hash (sha-256 of its token). */
export function jobsTable(jobs: readonly JobView[], now: number, me: string | undefined): string {
  const rows = [['ID', 'KIND', 'OWNER', 'STATE', 'PROGRESS', 'RATE', 'AGE']];
  for (const j of jobs) {
    rows.push([
      j.id, j.kind, ownerText(j.owner, me), j.state, `${j.progress.done}/${j.progress.total} ${progressUnit(j)}`, rateText(j, now),
      shortDuration(now - Date.parse(j.createdAt)),
    ]);
  }
  return alignedTable(rows);
}

/** A job's detail as lines of `key: value`. */
export function jobDetail(job: JobView, now: number, me: string | undefined): string {
  const lines = [
    `job ${job.id}`,
    `  kind:      ${job.kind}`,
    `  owner:     ${ownerText(job.owner, me)}`,
    `  state:     ${job.state}`,
    `  progress:  ${job.progress.done}/${job.progress.total} ${progressUnit(job)}`,
    `  rate:      ${rateText(job, now)} (average since submission)`,
    `  submitted: ${job.createdAt} (${shortDuration(now - Date.parse(job.createdAt))} ago)`,
  ];
  if (job.finishedAt !== undefined) lines.push(`  ended:     ${job.finishedAt}`);
  if (typeof job['model'] === 'string') lines.push(`  model:     ${job['model']}`);
  if (typeof job['mode'] === 'string') lines.push(`  mode:      ${job['mode']}`);
  if (job.waiting !== undefined) lines.push(`  waiting:   ${job.waiting}`);
  if (job.error !== undefined) lines.push(`  error:     ${job.error}`);
  const workers = job.workers ?? [];
  const total = workers.reduce((s, w) => s + w.shards, 0);
  if (workers.length === 0) lines.push('  workers:   no results yet (since the coordinator started)');
  else {
    lines.push(`  workers (shards delivered since the coordinator started):`);
    const width = Math.max(...workers.map((w) => w.worker.length));
    for (const w of workers) lines.push(`    ${w.worker.padEnd(width)}  ${w.shards}  ${((100 * w.shards) / total).toFixed(0)}%`);
  }
  return lines.join('\n') + '\n';
}

/** Exit status of `fedpool wait` for each way a job ends (README, "Jobs"). */
export const WAIT_EXIT: Readonly<Record<string, number>> = { done: 0, failed: 1, cancelled: 4 };
