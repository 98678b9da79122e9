// The connected workers as GET /api/workers (and the dashboard) show them: capabilities, load, throughput, and the
// record and state (quarantined or not) of the identity each belongs to (docs/security.md).
import type { JobRegistry } from './job-registry.js';

/** One entry per connected worker. */
export function workerViews(jobs: JobRegistry) {
  return jobs.workers.list().map((w) => {
    const load = jobs.scheduler.workerLoad(w.id) ?? { credit: 0, inFlight: 0 };
    const record = jobs.records.of(w.identity);
    return {
      id: w.id,
      name: w.name,
      identity: w.identity,
      backend: w.capabilities.backend,
      threads: w.capabilities.threads,
      device: w.capabilities.device ?? null,
      scorer: w.capabilities.scorer ?? null,
      memoryBytes: w.capabilities.memoryBytes ?? null,
      state: record.quarantined ? 'quarantined' : w.draining ? 'draining' : load.inFlight > 0 ? 'busy' : 'idle',
      record: {
        accepted: record.accepted, lost: record.lost, refused: record.refused, protocolErrors: record.protocolErrors, connections: record.connections,
        rejected: record.rejected, verified: record.verified, outvoted: record.outvoted,
      },
      inFlight: load.inFlight,
      credit: load.credit,
      itemsPerSecond: Math.round(w.itemsPerSecond * 10) / 10,
      shardsDone: w.shardsDone,
      itemsDone: w.itemsDone,
      trainShardsDone: w.trainShardsDone,
      connectedAt: new Date(w.connectedAt).toISOString(),
      lastSeenAt: new Date(w.lastSeen).toISOString(),
    };
  });
}
