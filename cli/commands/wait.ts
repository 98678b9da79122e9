// `fedpool wait ID [--json]`: follows a job to its end, prints its final status (a line, or the coordinator's JSON),
// then exits with its status (0 done, 1 failed, 4 cancelled). It asks the
// coordinator once a second, says once why the job waits, and rides out a coordinator restart as `fedpool train` does.
import { SingleBar } from 'cli-progress';
import { UnreachableError, coordinatorApi, type CoordinatorApi } from '../api.js';
import { UserError } from '../errors.js';
import { RECONNECT_MS } from '../follow.js';
import { WAIT_EXIT, progressUnit, type JobView } from '../job-view.js';

const POLL_MS = 1_000;

export async function run(options: Record<string, unknown>): Promise<void> {
  const id = String(options['id'] ?? '');
  const api = coordinatorApi(options, 'wait');
  let job = await api.requireJob(id, 'wait');
  const bar = process.stderr.isTTY ? new SingleBar({ format: `job ${id} [{bar}] {value}/{total} ${progressUnit(job)} | {state}`, stream: process.stderr }) : null;
  bar?.start(job.progress.total, job.progress.done, { state: job.state });
  let said = '';
  let lastState = '';
  try {
    for (;;) {
      if (job.waiting !== undefined && job.waiting !== said) {
        said = job.waiting;
        bar?.stop();
        process.stderr.write(`fedpool wait: job ${id} waits: ${job.waiting}\n`);
      }
      if (bar === null && job.state !== lastState) process.stderr.write(`fedpool wait: job ${id} ${job.state} ${job.progress.done}/${job.progress.total} ${progressUnit(job)}\n`);
      lastState = job.state;
      bar?.update(job.progress.done, { state: job.state });
      if (job.state === 'done' || job.state === 'failed' || job.state === 'cancelled') break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      job = await poll(api, id);
    }
  } finally {
    bar?.stop();
  }
  if (options['json'] === true) process.stdout.write(`${JSON.stringify(job)}\n`);
  else process.stdout.write(`fedpool: job ${id} ${job.state} at ${job.progress.done}/${job.progress.total} ${progressUnit(job)}\n`);
  const code = WAIT_EXIT[job.state] ?? 1;
  if (code !== 0) throw new UserError(`fedpool wait: job ${id} ended ${job.state}${job.error === undefined ? '' : `: ${job.error}`}`, code);
}

/** The job's status, retrying an unreachable coordinator for up to RECONNECT_MS. */
async function poll(api: CoordinatorApi, id: string): Promise<JobView> {
  let lostAt: number | undefined;
  for (;;) {
    try {
      const job = await api.findJob(id);
      if (job === undefined) throw new UserError(`fedpool wait: job ${id} is gone from the coordinator at ${api.url} (deleted, or its retention ended)`);
      if (lostAt !== undefined) process.stderr.write(`fedpool wait: the coordinator answers again\n`);
      return job;
    } catch (e) {
      if (!(e instanceof UnreachableError)) throw e;
      const now = Date.now();
      if (lostAt === undefined) {
        lostAt = now;
        process.stderr.write(`fedpool wait: ${e.message}; retrying for ${RECONNECT_MS / 1000} s\n`);
      } else if (now - lostAt > RECONNECT_MS) {
        throw new UserError(`fedpool wait: lost the coordinator while following job ${id}; run fedpool wait ${id} again once it is back`);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}
