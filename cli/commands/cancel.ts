// `fedpool cancel ID`: cancels a queued or running job (its workers drop its shards); an ended job is left as it is.
import { coordinatorApi } from '../api.js';
import { UserError } from '../errors.js';

export async function run(options: Record<string, unknown>): Promise<void> {
  const id = String(options['id'] ?? '');
  const api = coordinatorApi(options, 'cancel');
  const job = await api.requireJob(id, 'cancel');
  if (job.state === 'done' || job.state === 'failed') throw new UserError(`fedpool cancel: job ${id} already ended ${job.state}; nothing to cancel`);
  if (job.state !== 'cancelled') await api.cancel(id);
  const after = await api.findJob(id);
  if (options['json'] === true) process.stdout.write(`${JSON.stringify(after ?? job)}\n`);
  else process.stdout.write(`fedpool: job ${id} ${after?.state === 'cancelled' ? 'cancelled' : `is ${after?.state ?? 'gone'}`} at ${after?.progress.done ?? job.progress.done}/${job.progress.total}\n`);
}
