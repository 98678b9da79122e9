// What a job costs the coordinator process, read from its Prometheus /metrics (prom-client's default metrics, prefix
// fedpool_): CPU seconds before and after the job, and peak memory sampled while it runs.
import { UserError } from '../errors.js';
import { WHO } from './command-name.js';

/** What one job cost the coordinator. */
export interface LiveRunStats {
  experiment: string;
  algorithm: string;
  seed: number;
  job: string;
  /** 'done', or 'cancelled' when the run stopped at maxTime or the target. */
  state: string;
  wall_s: number;
  server_steps: number;
  client_updates: number;
  updates_per_s: number;
  /** Coordinator process CPU seconds during the job, and as a share of one core. */
  coordinator_cpu_s: number;
  coordinator_cpu_percent: number;
  coordinator_rss_peak_mb: number;
  coordinator_heap_peak_mb: number;
}

export interface Resources {
  cpuSeconds: number;
  rssBytes: number;
  heapBytes: number;
}

/** The coordinator's own process figures from its Prometheus text (prom-client default metrics, prefix fedpool_). */
export function parseResources(text: string): Resources {
  const value = (name: string): number => {
    const m = new RegExp(`^${name} ([0-9.eE+-]+)`, 'm').exec(text);
    if (m === null) throw new Error(`coordinator /metrics has no ${name}`);
    return Number(m[1]);
  };
  return { cpuSeconds: value('fedpool_process_cpu_seconds_total'), rssBytes: value('fedpool_process_resident_memory_bytes'), heapBytes: value('fedpool_nodejs_heap_size_used_bytes') };
}

export async function scrape(url: string): Promise<Resources> {
  const res = await fetch(new URL('/metrics', url), { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new UserError(`${WHO}: the coordinator's /metrics answered ${res.status}`);
  return parseResources(await res.text());
}

/**
 * The coordinator's peak memory while a job runs: from `start`, then a scrape once a second until `stop`. Once a
 * second: each scrape costs the coordinator a walk of its handles and file descriptors (one per socket), so sampling
 * faster would inflate the very CPU figure it measures.
 */
export class PeakSampler {
  rssBytes: number;
  heapBytes: number;
  private sampling = true;
  private readonly loop: Promise<void>;

  constructor(
    private readonly url: string,
    start: Resources,
  ) {
    this.rssBytes = start.rssBytes;
    this.heapBytes = start.heapBytes;
    this.loop = this.sample();
  }

  /** Counts one reading towards the peaks. */
  see(r: Resources): void {
    this.rssBytes = Math.max(this.rssBytes, r.rssBytes);
    this.heapBytes = Math.max(this.heapBytes, r.heapBytes);
  }

  /** Stops sampling; resolves once the last scrape in flight has been counted. */
  stop(): Promise<void> {
    this.sampling = false;
    return this.loop;
  }

  private async sample(): Promise<void> {
    while (this.sampling) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        this.see(await scrape(this.url));
      } catch {
        // a missed sample only lowers the resolution
      }
    }
  }
}
