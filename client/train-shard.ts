// The train-shard path: one fine-tuning shard on the training pool, from the weights the coordinator sent for the
// lease's model version and the lease's momentum, to the `update` result. A worker's own dataset keeps its momentum
// here between shards (docs/architecture.md, "The path of a model update").
import { Tensor, type ResultPayload, type TrainTask, type WeightsMessage } from '../shared/protocol/index.js';
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
  async train(task: TrainTask, weights: Float32Array, bundle: Uint8Array, jobId: string): Promise<UpdatePayload> {
    const trainer = this.options.trainer;
    if (trainer === undefined) throw new Error('this worker does not run train tasks');
    const manifest = this.manifest(task.modelHash, bundle);
    const source = task.data;
    const data = await this.data.forTask(task, manifest);
    const momentumKey = source.source === 'worker' ? `${jobId}\0${source.name}\0${task.modelHash}` : undefined;
    // Coordinator-held clients (rows or pairs) carry their momentum with the shard; a worker's own dataset keeps it here.
    const sendMomentum = source.source !== 'worker' || task.momentum !== undefined;
    const initialMomentum = task.momentum?.data instanceof Float32Array ? task.momentum.data : momentumKey === undefined ? undefined : this.momenta.get(momentumKey);
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
   * A `weights` message arrived: kept, in arrival order, exactly as the coordinator records having sent them
   * (shared/training/held-weights.ts). Called for every one as it arrives, so the two records cannot drift apart.
   */
  received(m: WeightsMessage): void {
    this.weights.add(weightsKey(m.jobId, m.modelHash, m.modelVersion), m.weights.data as Float32Array);
  }

  /**
   * The weights a lease trains from: the ones the coordinator sent for its job and version, looked up when the lease
   * arrives (the coordinator's record of what this connection holds is the one at that moment). A lease for a version
   * this worker does not hold is refused (retryable: the coordinator then sends them again) rather than trained from
   * the bundle's weights.
   */
  weightsFor(task: TrainTask, jobId: string): Float32Array {
    const held = this.weights.get(weightsKey(jobId, task.modelHash, task.modelVersion));
    if (held === undefined) throw new Error(`this worker does not hold the weights of model version ${task.modelVersion}`);
    const momentum = task.momentum?.size;
    if (momentum !== undefined && momentum !== held.length) {
      throw Object.assign(new RangeError(`the lease's momentum has ${momentum} values, the weights ${held.length}`), { retryable: false });
    }
    return held;
  }
}
