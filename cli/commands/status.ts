// `fedpool status [--json]`: the pool at a glance, what the dashboard shows: the connected workers (what each serves,
// its device, state, throughput, record) and the jobs this token may see.
import { coordinatorApi } from '../api.js';
import { alignedTable, jobsTable } from '../job-view.js';

/** A worker as GET /api/workers shows it (the fields this table reads). */
interface WorkerRow {
  name: string;
  backend: string;
  device: string | null;
  scorer: { api: string; model: string } | null;
  state: string;
  itemsPerSecond: number;
  shardsDone: number;
  trainShardsDone: number;
  record: { accepted: number; lost: number; refused: number; rejected: number };
}

export async function run(options: Record<string, unknown>): Promise<void> {
  const api = coordinatorApi(options, 'status');
  const [workers, jobs] = await Promise.all([api.workers() as Promise<WorkerRow[]>, api.jobs()]);
  if (options['json'] === true) {
    process.stdout.write(`${JSON.stringify({ url: api.url, workers, jobs })}\n`);
    return;
  }
  const now = Date.now();
  const active = jobs.filter((j) => j.state === 'queued' || j.state === 'running').length;
  let text = `coordinator ${api.url}: ${workers.length} worker(s), ${active} job(s) queued or running, ${jobs.length} in all\n\n`;
  if (workers.length === 0) text += 'no workers connected\n';
  else {
    const rows = [['WORKER', 'SERVES', 'DEVICE', 'STATE', 'ITEMS/S', 'SHARDS', 'RECORD (accepted/lost/refused/rejected)']];
    for (const w of workers) {
      rows.push([
        w.name, w.scorer === null ? w.backend : `${w.scorer.api}:${w.scorer.model}`, w.device ?? '-', w.state, String(w.itemsPerSecond),
        String(w.shardsDone + w.trainShardsDone), `${w.record.accepted}/${w.record.lost}/${w.record.refused}/${w.record.rejected}`,
      ]);
    }
    text += alignedTable(rows);
  }
  text += '\n';
  text += jobs.length === 0 ? 'no jobs\n' : jobsTable(jobs, now, api.owner);
  process.stdout.write(text);
}
