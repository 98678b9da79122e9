// The train-shard path: one fine-tuning shard on the training pool, from the lease's weights (or the last ones
// received for that model version) and momentum, to the `update` result. A worker's own dataset keeps its momentum
// here between shards (docs/architecture.md, "The path of a model update").
import { Tensor, type ResultPayload, type TrainTask } from '../shared/protocol/index.js';
import { unpackBundle, type Manifest } from '../shared/model/index.js';
import { deriveSeed } from '../shared/random.js';
import type { DatasetSource, ServerScorer, Trainer } from './lease-ports.js';
import { remember } from '../shared/lru.js';
import { HeldWeights, weightsKey } from '../shared/training/held-weights.js';
import { LeaseData } from './training/lease-data.js';
import type { LocalTrainResult } from './training/local-train.js';
import type { TrainShard } from './training/pool.js';

/** The minibatch seed of a fine-tuning shard: a pure function of (model version, client), so any worker repeats it. */
export function trainSeed(modelVersion: number, client: number): number {
  return deriveSeed(modelVersion, 'train', client);
}

export interface TrainShardOptions {
  /** Runs train leases; without one, training throws. */
  trainer?: Trainer | undefined;
  /** Datasets train leases may name (`data: {source: 'worker', name}`). */
  datasets?: DatasetSource | undefined;
  /** The embedding server a worker dataset goes through for a head over embeddings. */
  server?: ServerScorer | undefined;
}

export type UpdatePayload = Extract<ResultPayload, { kind: 'update' }>;

export class TrainShards {
  private readonly manifests = new Map<string, Manifest>();
  private readonly momenta = new Map<string, Float32Array>();
  private readonly weights = new HeldWeights<Float32Array>();
  private readonly data: LeaseData;

  constructor(private readonly options: TrainShardOptions) {
    this.data = new LeaseData(options);
  }

  /**
   * One fine-tuning shard. Momentum (MoNNA): central data (virtual clients) → the lease's momentum in, the new
   * momentum out (the coordinator keeps it between rounds, so the client can move between workers). A worker's own
   * dataset → the momentum stays here, keyed by (job, dataset, model hash): two jobs on the same dataset and model
   * never share one; a lease that carries momentum overrides it, and then the new momentum is sent back too.
   */
  async train(task: TrainTask, bundle: Uint8Array, jobId: string): Promise<UpdatePayload> {
    const trainer = this.options.trainer;
    if (trainer === undefined) throw new Error('this worker does not run train tasks');
    const manifest = this.manifest(task.modelHash, bundle);
    const source = task.data;
    const data = await this.data.forTask(task, manifest);
    const momentumKey = source.source === 'worker' ? `${jobId}\0${source.name}\0${task.modelHash}` : undefined;
    // Coordinator-held clients (rows or pairs) carry their momentum with the shard; a worker's own dataset keeps it here.
    const sendMomentum = source.source !== 'worker' || task.momentum !== undefined;
    const initialMomentum = task.momentum?.data instanceof Float32Array ? task.momentum.data : momentumKey === undefined ? undefined : this.momenta.get(momentumKey);
    const weights = this.weightsFor(task, jobId);
    const shard: TrainShard = {
      hash: task.modelHash,
      bundle,
      data,
      opts: {
        steps: task.local.steps,
        batchSize: task.local.batchSize,
        lr: task.local.lr,
        momentum: task.local.momentum,
        seed: trainSeed(task.modelVersion, task.client),
        // A worker dataset's momentum is kept here even when it is not sent.
        sendMomentum: sendMomentum || momentumKey !== undefined,
      },
      weights,
      ...(initialMomentum === undefined ? {} : { momentum: initialMomentum }),
    };
    let result: LocalTrainResult;
    try {
      result = await trainer.train(shard);
    } catch (e) {
      // The pool rejects bad options, weights or data with RangeErrors (ModelError is one): no retry can fix them.
      if (e instanceof RangeError) Object.assign(e, { retryable: false });
      throw e;
    }
    if (momentumKey !== undefined && result.momentum !== undefined) remember(this.momenta, momentumKey, result.momentum, 64);
    return {
      kind: 'update',
      update: Tensor.float32(result.update),
      ...(sendMomentum && result.momentum !== undefined ? { momentum: Tensor.float32(result.momentum) } : {}),
      samples: result.samples,
      loss: result.loss,
      baseVersion: task.modelVersion,
    };
  }

  /** The bundle's manifest, parsed once per model hash. */
  private manifest(hash: string, bundle: Uint8Array): Manifest {
    let m = this.manifests.get(hash);
    if (m === undefined) {
      m = unpackBundle(bundle).manifest;
      remember(this.manifests, hash, m, 8);
    }
    return m;
  }

  /**
   * A train lease arrived: the weights it carries are kept, in arrival order, exactly as the coordinator records
   * having sent them (shared/training/held-weights.ts). Called for every train lease as it arrives, before anything
   * can refuse or delay it, so the two records cannot drift apart.
   */
  received(task: TrainTask, jobId: string): void {
    const sent = task.weights?.data;
    if (sent instanceof Float32Array) this.weights.add(weightsKey(jobId, task.modelHash, task.modelVersion), sent);
  }

  /**
   * The weights a lease trains from: its own, else the ones an earlier lease of the same job and version carried
   * (the coordinator omits weights the worker holds). A lease without weights for a version this worker does not
   * hold is refused (retryable: the coordinator then sends them) rather than trained from the bundle's weights.
   */
  private weightsFor(task: TrainTask, jobId: string): Float32Array {
    const sent = task.weights?.data;
    if (sent instanceof Float32Array) return sent;
    const held = this.weights.get(weightsKey(jobId, task.modelHash, task.modelVersion));
    if (held === undefined) throw new Error(`the lease has no weights and this worker does not hold those of model version ${task.modelVersion}`);
    return held;
  }
}
