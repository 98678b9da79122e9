// `fedpool jobs [--json]`: every job this token may see, one line each (README, "Jobs").
import { coordinatorApi } from '../api.js';
import { jobsTable } from '../job-view.js';

export async function run(options: Record<string, unknown>): Promise<void> {
  const api = coordinatorApi(options, 'jobs');
  const jobs = await api.jobs();
  if (options['json'] === true) {
    process.stdout.write(`${JSON.stringify(jobs)}\n`);
    return;
  }
  process.stdout.write(jobs.length === 0 ? `no jobs on the coordinator at ${api.url}\n` : jobsTable(jobs, Date.now(), api.owner));
}
