import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { SchedulerStats } from './scheduler.js';
import { JOB_STATES, type JobState } from './store.js';

export interface MetricSources {
  stats: SchedulerStats;
  workersConnected: () => number;
  /** Workers (by name) in quarantine. */
  workersQuarantined?: () => number;
  jobCounts: () => Record<JobState, number>;
}

/**
 * One prom-client registry per coordinator (never the global one, so several coordinators in a
 * process — tests — keep separate numbers). Scheduler counters are read from its stats at scrape
 * time, so there is exactly one place that counts them.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly protocolErrors: Counter<'code'>;
  readonly jobDuration: Histogram<'state'>;
  readonly blobBytesServed: Counter;
  /** Connections destroyed at once for passing a cap (server/connection-limits.ts). */
  readonly connectionsRefused: Counter<'reason'>;
  readonly connectionsOpen: Gauge;
  /** Bytes of request bodies being received (server/body-budget.ts), and the requests refused for want of room. */
  readonly requestBodyBytes: Gauge;
  readonly requestBodiesRefused: Counter;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    const { stats } = sources;
    collectDefaultMetrics({ register: this.registry, prefix: 'fedpool_' });
    new Gauge({
      name: 'fedpool_workers_connected', help: 'Workers registered (hello received) and connected', registers,
      collect() {
        this.set(sources.workersConnected());
      },
    });
    new Gauge({
      name: 'fedpool_workers_quarantined', help: 'Workers (by name) in quarantine: no leases until let out', registers,
      collect() {
        this.set(sources.workersQuarantined?.() ?? 0);
      },
    });
    new Gauge({
      name: 'fedpool_jobs', help: 'Jobs by state', labelNames: ['state'] as const, registers,
      collect() {
        const counts = sources.jobCounts();
        for (const state of JOB_STATES) this.set({ state }, counts[state]);
      },
    });
    new Counter({
      name: 'fedpool_shards_leased_total', help: 'Leases issued (speculative = duplicate of an outstanding shard)', labelNames: ['speculative'] as const, registers,
      collect() {
        this.reset();
        this.inc({ speculative: 'false' }, stats.leased - stats.speculative);
        this.inc({ speculative: 'true' }, stats.speculative);
      },
    });
    new Counter({
      name: 'fedpool_shards_completed_total', help: 'Shards completed (each exactly once)', registers,
      collect() {
        this.reset();
        this.inc(stats.completed);
      },
    });
    new Counter({
      name: 'fedpool_shards_requeued_total', help: 'Shards put back in the queue, by cause', labelNames: ['reason'] as const, registers,
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(stats.requeued)) this.inc({ reason }, n);
      },
    });
    new Counter({
      name: 'fedpool_late_results_ignored_total', help: 'Results for leases that were no longer current (late, duplicate, cancelled)', registers,
      collect() {
        this.reset();
        this.inc(stats.ignored);
      },
    });
    new Counter({
      name: 'fedpool_items_scored_total', help: 'Items in completed shards', registers,
      collect() {
        this.reset();
        this.inc(stats.itemsDone);
      },
    });
    new Counter({
      name: 'fedpool_redundancy_disagreements_total', help: "Shards whose redundant results did not all agree within their job's tolerance", registers,
      collect() {
        this.reset();
        this.inc(stats.disagreements);
      },
    });
    new Counter({
      name: 'fedpool_redundancy_disputed_items_total', help: 'Items no quorum of redundant results settled', registers,
      collect() {
        this.reset();
        this.inc(stats.disputed);
      },
    });
    this.protocolErrors = new Counter({ name: 'fedpool_protocol_errors_total', help: 'Invalid frames or messages from workers, by code', labelNames: ['code'] as const, registers });
    this.blobBytesServed = new Counter({ name: 'fedpool_blob_bytes_served_total', help: 'Blob bytes sent to workers', registers });
    this.connectionsRefused = new Counter({ name: 'fedpool_connections_refused_total', help: 'TCP connections closed at once for passing a cap: per-ip (one address or IPv6 /64) or total', labelNames: ['reason'] as const, registers });
    for (const reason of ['per-ip', 'total']) this.connectionsRefused.inc({ reason }, 0);
    this.connectionsOpen = new Gauge({ name: 'fedpool_connections_open', help: 'TCP connections held by the coordinator (HTTP and websockets)', registers });
    this.requestBodyBytes = new Gauge({ name: 'fedpool_request_body_bytes_in_flight', help: 'Bytes of request bodies (JSON and blob uploads) being received or parsed, reserved by their declared size', registers });
    this.requestBodiesRefused = new Counter({ name: 'fedpool_request_bodies_refused_total', help: 'Requests refused because their body would pass the budget for bodies in flight (503)', registers });
    this.jobDuration = new Histogram({
      name: 'fedpool_job_duration_seconds', help: 'Submission to end of a job', labelNames: ['state'] as const, registers,
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400],
    });
  }
}
