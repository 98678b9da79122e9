// A coordinator's JobRegistry in process (no sockets): MemoryStore, real lease table and services, workers added by name
// with the capabilities given, and a sink that answers every train lease on the next turn with a small update
// (0.01 everywhere, or options.update's). Like a real worker, each simulated worker keeps the `weights` messages sent to
// it (shared/training/held-weights.ts) and answers a lease from the ones of its version. Tests of the training service drive
// it through the registry, as the socket layer does.
import pino from 'pino';
import type { CentralData } from '../../server/training/job-request.js';
import { JobRegistry } from '../../server/job-registry.js';
import { MemoryStore } from '../../server/store-memory.js';
import type { OutgoingLease } from '../../server/job-service.js';
import { ProtocolError, Tensor, type Capabilities, type LeaseMessage, type TrainTask, type WeightsMessage } from '../../shared/protocol/index.js';
import { HeldWeights, weightsKey } from '../../shared/training/held-weights.js';

/** n central rows of `dim` deterministic features, labels cycling through `classes` (a training job's data). */
export function centralRows(n: number, dim: number, classes: number): CentralData {
  const rows = new Float32Array(n * dim).map((_, i) => Math.sin(i));
  return { kind: 'classify', dim, n, rows, labels: Int32Array.from({ length: n }, (_, i) => i % classes) };
}

export interface InProcessCoordinator {
  jobs: JobRegistry;
  /** Worker name of every train lease sent, in order. */
  leasedTo: string[];
  /** With `answer: false`: the train leases sent and not answered yet, by worker id. */
  held: Array<{ workerId: string; lease: LeaseMessage }>;
  /** Answers a held lease as the automatic answer would. */
  answer(h: { workerId: string; lease: LeaseMessage }): void;
  /** Results the coordinator refused at its boundary: "worker: why". */
  refused: string[];
}

export function inProcessCoordinator(
  workers: Array<{ name: string; capabilities?: Partial<Capabilities>; credit?: number }>,
  options: {
    leaseMs?: number;
    /** Every train lease sent, with the `weights` message sent before it (when the worker did not hold its version). */
    onTrainLease?: (worker: string, task: TrainTask, weights: WeightsMessage | undefined) => void;
    /** false: keep train leases in `held` until the test answers them. Default true. */
    answer?: boolean;
    /** What a train lease's update is (default 0.01 everywhere, 5 samples, loss 1); `worker` is the worker's name. */
    update?: (task: TrainTask, weights: Float32Array, worker: string) => { update: Float32Array; momentum?: Float32Array; samples: number; loss: number };
  } = {},
): InProcessCoordinator {
  const jobs = new JobRegistry({ store: new MemoryStore(), leaseMs: options.leaseMs ?? 60_000, logger: pino({ level: 'silent' }), maxFrameBytes: 64 << 20 });
  const leasedTo: string[] = [];
  const held: InProcessCoordinator['held'] = [];
  const refused: string[] = [];
  const heldBy = new Map<string, HeldWeights<Float32Array>>();
  const heldOf = (workerId: string): HeldWeights<Float32Array> => {
    let h = heldBy.get(workerId);
    if (h === undefined) heldBy.set(workerId, (h = new HeldWeights()));
    return h;
  };
  const answer = ({ workerId, lease: m }: { workerId: string; lease: LeaseMessage }): void => {
    if (m.task.kind !== 'train') return;
    const weights = heldOf(workerId).get(weightsKey(m.jobId, m.task.modelHash, m.task.modelVersion));
    if (!(weights instanceof Float32Array)) throw new Error(`worker ${workerId} has no weights for ${m.jobId} version ${m.task.modelVersion}`);
    const size = weights.length;
    const u = options.update?.(m.task, weights, jobs.workers.get(workerId)?.name ?? workerId) ?? { update: new Float32Array(size).fill(0.01), samples: 5, loss: 1 };
    try {
      jobs.result(workerId, {
        type: 'result', leaseId: m.leaseId, shardId: m.shardId,
        payload: {
          kind: 'update', update: Tensor.float32(u.update), samples: u.samples, loss: u.loss, baseVersion: m.task.modelVersion,
          ...(u.momentum === undefined ? {} : { momentum: Tensor.float32(u.momentum) }),
        },
      });
    } catch (e) {
      // The coordinator refused the result at its boundary (the socket layer would answer an error frame).
      if (!(e instanceof ProtocolError)) throw e;
      refused.push(`${jobs.workers.get(workerId)?.name ?? workerId}: ${e.message}`);
    }
  };
  jobs.sink = {
    sendLease(workerId: string, { message: m, weights }: OutgoingLease): void {
      if (m.task.kind !== 'train') return;
      // As a worker keeps them, on arrival (client/train-shard.ts received()).
      if (weights !== undefined) heldOf(workerId).add(weightsKey(weights.jobId, weights.modelHash, weights.modelVersion), weights.weights.data as Float32Array);
      const name = jobs.workers.get(workerId)?.name ?? workerId;
      leasedTo.push(name);
      options.onTrainLease?.(name, m.task, weights);
      if (options.answer === false) held.push({ workerId, lease: m });
      else setImmediate(() => answer({ workerId, lease: m }));
    },
    dropJob(): void {},
  };
  for (const w of workers) {
    const info = jobs.addWorker(w.name, { backend: 'cpu', threads: 1, tasks: ['score', 'train'], ...w.capabilities });
    jobs.pull(info.id, w.credit ?? 2);
  }
  return { jobs, leasedTo, held, answer, refused };
}
