// `fedpool prune --older DAYS`: deletes the ended jobs (done, failed, cancelled) this token may see that ended more
// than DAYS ago, through the coordinator, which drops their results and checkpoints, shrinks its state file and
// removes the blobs no job names any more (`DELETE /api/jobs/:id`; `--retain-jobs DAYS` on the coordinator does the
// same on a timer).
import { coordinatorApi } from '../api.js';
import { UserError } from '../errors.js';

const DAY_MS = 86_400_000;

export async function run(options: Record<string, unknown>): Promise<void> {
  const days = Number(options['older']);
  if (!(Number.isFinite(days) && days >= 0)) throw new UserError('fedpool prune: --older DAYS must be a number ≥ 0');
  const api = coordinatorApi(options, 'prune');
  const cutoff = Date.now() - days * DAY_MS;
  const jobs = await api.jobs();
  const due = jobs.filter((j) => (j.state === 'done' || j.state === 'failed' || j.state === 'cancelled') && Date.parse(j.finishedAt ?? j.createdAt) <= cutoff);
  const deleted: string[] = [];
  const failed: string[] = [];
  for (const j of due) {
    try {
      await api.deleteEndedJob(j.id);
      deleted.push(j.id);
    } catch (e) {
      failed.push(`${j.id}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const summary = { deleted: deleted.length, kept: jobs.length - deleted.length, ids: deleted };
  if (options['json'] === true) process.stdout.write(`${JSON.stringify({ ...summary, ...(failed.length === 0 ? {} : { failed }) })}\n`);
  else process.stdout.write(`fedpool prune: deleted ${deleted.length} job(s) that ended more than ${days} day(s) ago; ${summary.kept} kept\n`);
  if (failed.length > 0) throw new UserError(`fedpool prune: ${failed.length} job(s) could not be deleted: ${failed.join('; ')}`);
}
