// `fedpool job ID [--json]`: one job in detail — state, progress, rate, error, why it waits, each worker's share.
import { coordinatorApi } from '../api.js';
import { jobDetail } from '../job-view.js';

export async function run(options: Record<string, unknown>): Promise<void> {
  const id = String(options['id'] ?? '');
  const api = coordinatorApi(options, 'job');
  const job = await api.requireJob(id, 'job');
  process.stdout.write(options['json'] === true ? `${JSON.stringify(job)}\n` : jobDetail(job, Date.now(), api.owner));
}
