// Following a job's JSONL stream (score results, training metrics) through coordinator restarts: a dropped or refused
// connection, or a stream that ends while the job has not, is retried for RECONNECT_MS, each time from the stream's
// first line (the caller's `attempt` says how to treat lines it has seen). When it gives up, the message names the
// job and how to pick it up again.
import { UnreachableError, type CoordinatorApi } from './api.js';
import { UserError } from './errors.js';

/** How long an unreachable coordinator is retried (it may be restarting). */
export const RECONNECT_MS = 120_000;

/**
 * Resolves when the job has ended (done, failed or cancelled; the caller reads which). `attempt` is called before
 * each pass over the stream and returns the handler of that pass's lines. `again` is how to pick the job up later.
 */
export async function followJob(api: CoordinatorApi, id: string, command: string, path: string, attempt: () => (value: unknown) => void, again: string): Promise<void> {
  let lostAt: number | undefined;
  const lost = (why: string): void => {
    if (lostAt === undefined) process.stderr.write(`fedpool ${command}: ${why}; retrying for up to ${RECONNECT_MS / 1000} s\n`);
    lostAt ??= Date.now();
    if (Date.now() - lostAt > RECONNECT_MS) throw new UserError(`fedpool ${command}: ${why}; gave up after ${RECONNECT_MS / 1000} s. Job ${id} may still be running: ${again}`);
  };
  for (;;) {
    try {
      const onLine = attempt();
      await api.followLines(path, (v) => {
        lostAt = undefined;
        onLine(v);
      });
    } catch (e) {
      if (e instanceof UserError && !(e instanceof UnreachableError)) throw e;
      lost(`connection lost (${e instanceof Error ? e.message : String(e)})`);
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    // The stream also ends when the coordinator shuts down; only a finished job ends the follow.
    try {
      const job = await api.findJob(id);
      if (job === undefined) throw new UserError(`fedpool ${command}: job ${id} is gone from the coordinator at ${api.url} (it restarted without its state file, or the job was deleted)`);
      if (job.state === 'done' || job.state === 'failed' || job.state === 'cancelled') return;
      lost(`the coordinator closed the stream of job ${id} before it ended`);
    } catch (e) {
      if (!(e instanceof UnreachableError)) throw e;
      lost(`connection lost (${e.message})`);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
