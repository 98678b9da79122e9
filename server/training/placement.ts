// Where a training job's clients train (docs/architecture.md, "Training"): on central data, any training worker can
// train any client and the coordinator ships the client's partition with its lease; on worker-held data, client i is
// the i-th worker that announced the dataset, its leases are pinned to that worker and the data never leaves it.
import type { TrainConfig } from '../../shared/config/train.js';
import { partitionDirichlet, partitionIid } from '../../shared/data/partition.js';
import { scorerOutputOf, Tensor, type TrainTask } from '../../shared/protocol/index.js';
import type { WorkerRegistry, WorkerInfo } from '../worker-registry.js';
import { pinned } from '../scheduler.js';
import type { CentralData } from './job-request.js';

/**
 * Whether a worker can train a job: runs train tasks, not draining, holds the job's dataset if it names one, and for
 * a head over embeddings fronts an embedding server of that model (it embeds its own rows; docs/scorers.md).
 */
export function eligible(w: WorkerInfo, dataset: string | undefined, embedding?: string): boolean {
  if (w.draining || !w.capabilities.tasks.includes('train')) return false;
  if (embedding !== undefined) {
    const scorer = w.capabilities.scorer;
    if (scorer === undefined || scorerOutputOf(scorer.api) !== 'embedding' || scorer.model !== embedding) return false;
  }
  return dataset === undefined || (w.capabilities.datasets ?? []).includes(dataset);
}

export interface Placement {
  /** Which clients can train now; `any` false: none (the job waits). Walks the connected workers. */
  reachability(): { any: boolean; reachable: (client: number) => boolean };
  /** The lease-table key of each client's shard now: undefined for the job's own key, pinned(worker), or null when its worker is gone. */
  keysOf(clients: readonly number[]): Array<string | undefined | null>;
  /** A lease's data for a client. */
  leaseData(client: number): TrainTask['data'];
  /** Whether a lost lease of the client's shard may go to another worker. */
  readonly movable: boolean;
}

/** Central data: the coordinator's rows, split into one partition per client. */
export class CentralPlacement implements Placement {
  readonly movable = true;

  constructor(
    private readonly workers: WorkerRegistry,
    private readonly data: CentralData,
    /** Row indices of each client. */
    readonly parts: number[][],
  ) {}

  static partition(config: TrainConfig, data: CentralData): number[][] {
    if (config.data.source !== 'central') throw new RangeError('central placement needs central data');
    const part = config.data.partition;
    if (part.kind === 'iid' || data.kind === 'pairs') return partitionIid(data.n, part.clients, part.seed);
    let numClasses = 0;
    for (const l of data.labels) numClasses = Math.max(numClasses, l + 1);
    return partitionDirichlet(data.labels, numClasses, part.clients, part.alpha ?? 0.3, part.seed);
  }

  reachability(): { any: boolean; reachable: (client: number) => boolean } {
    const any = this.workers.list().some((w) => eligible(w, undefined));
    return { any, reachable: () => any };
  }

  keysOf(clients: readonly number[]): Array<string | undefined> {
    return clients.map(() => undefined);
  }

  leaseData(client: number): TrainTask['data'] {
    const d = this.data;
    const idx = this.parts[client] ?? [];
    const dim = d.dim;
    const gather = (src: Float32Array): Float32Array => {
      const out = new Float32Array(idx.length * dim);
      idx.forEach((r, i) => out.set(src.subarray(r * dim, (r + 1) * dim), i * dim));
      return out;
    };
    if (d.kind === 'pairs') {
      return { source: 'central-pairs', chosen: Tensor.float32(gather(d.chosen), [idx.length, dim]), rejected: Tensor.float32(gather(d.rejected), [idx.length, dim]) };
    }
    const labels = Int32Array.from(idx, (r) => d.labels[r]!);
    return { source: 'central', rows: Tensor.float32(gather(d.rows), [idx.length, dim]), labels: Tensor.int32(labels) };
  }
}

/** Worker-held data: each client is one worker (by name) holding the dataset. */
export class WorkerPlacement implements Placement {
  readonly movable = false;
  /** Worker name → client. */
  readonly bindings = new Map<string, number>();

  constructor(
    private readonly workers: WorkerRegistry,
    readonly dataset: string,
    /** A head over embeddings: the embedding model its workers' servers must serve. */
    readonly embedding: string | undefined,
    private readonly log: (worker: string, client: number) => void,
  ) {}

  /** Workers that could be clients now. */
  holders(): number {
    return this.workers.list().filter((w) => eligible(w, this.dataset, this.embedding)).length;
  }

  /**
   * Gives each newly seen holder of the dataset the lowest free client id, while any of `numClients` is free. New
   * holders are taken in name order, not connection order, so the workers present when the job starts are clients
   * 0, 1, … by `--name` whatever order they connected in.
   */
  bind(numClients: number): void {
    if (this.bindings.size >= numClients) return;
    const fresh = this.workers.list().filter((w) => eligible(w, this.dataset, this.embedding) && !this.bindings.has(w.name));
    if (fresh.length === 0) return;
    fresh.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const used = new Set(this.bindings.values());
    let client = 0;
    for (const w of fresh) {
      if (this.bindings.size >= numClients) return;
      if (this.bindings.has(w.name)) continue; // two connections under one name: the first binds
      while (used.has(client)) client++;
      used.add(client);
      this.bindings.set(w.name, client);
      this.log(w.name, client);
    }
  }

  /** The connected workers that train the clients: client → worker id (one pass over the workers). */
  private clientWorkers(): Map<number, string> {
    const out = new Map<number, string>();
    for (const w of this.workers.list()) {
      const client = this.bindings.get(w.name);
      if (client !== undefined && !out.has(client) && eligible(w, this.dataset, this.embedding)) out.set(client, w.id);
    }
    return out;
  }

  reachability(): { any: boolean; reachable: (client: number) => boolean } {
    const connected = this.clientWorkers();
    return { any: connected.size > 0, reachable: (c) => connected.has(c) };
  }

  keysOf(clients: readonly number[]): Array<string | null> {
    const workers = this.clientWorkers();
    return clients.map((c) => {
      const w = workers.get(c);
      return w === undefined ? null : pinned(w);
    });
  }

  leaseData(): TrainTask['data'] {
    return { source: 'worker', name: this.dataset };
  }
}
