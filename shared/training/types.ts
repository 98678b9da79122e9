// Shared types of the coordinator's training state machines (issue 4): SyncDriver (FedAvg / FedAU rounds) and
// AsyncDriver (FedBuff steps). Both are pure: no sockets, no timers; every method that depends on time takes `now`
// (milliseconds, any monotone clock the caller chooses), so the coordinator and the simulator drive them alike.
import { FedAUEstimator, type FedAUSnapshot } from '../aggregation/fedau.js';
import { ServerAggregator, type PipelineSpec } from '../aggregation/pipeline.js';
import type { ParticipationSpec } from '../data/participation.js';
import type { RuleName } from '../aggregation/robust.js';
import { firstNonFinite, isDecodedFinite } from '../protocol/tensor.js';

/** A client's finished shard, as the coordinator receives it. */
export interface ClientArrival {
  /** 0-based virtual client index. */
  client: number;
  /** The model version the shard was built on (DispatchOrder.version). */
  baseVersion: number;
  /** Model delta (local − global), or −momentum for MoNNA: the direction the server should move. */
  update: Float32Array;
  /** The client's Polyak momentum after this shard; the driver keeps it and sends it back with the next order. */
  momentum?: Float32Array;
  /** Examples behind the update (weighting 'samples'). */
  samples: number;
  /** Mean training loss of the shard. */
  loss: number;
}

/** One shard to start: train `client` from `weights` (model `version`), resuming from `momentum` if given. */
export interface DispatchOrder {
  client: number;
  version: number;
  /** The current global model. Shared with the driver and other orders of this version: treat as read-only. */
  weights: Float32Array;
  /** The client's stored momentum (absent before its first accepted shard). Read-only, like weights. */
  momentum?: Float32Array;
}

/** One server step, as a metrics.jsonl line minus `accuracy` (eval adds it). */
export interface StepMetrics {
  /** Model version after the step (1-based server step count). */
  step: number;
  /** The `now` the step was taken at. */
  time: number;
  /** Mean loss over the updates this step aggregated; null when it aggregated none. */
  loss: number | null;
  /** Distinct clients whose updates this step aggregated. */
  participants: number;
  /** Mean staleness τ of those updates (0 in sync mode); null when none. */
  staleness_mean: number | null;
}

/** Simulated availability: a participation spec with an optional seed of its own (default: the driver's seed). */
export type ParticipationSetting = ParticipationSpec & { readonly seed?: number };

/** Plain-JSON form of a Float32Array (exact: every float32 is a double). */
export type PlainVector = number[];

/**
 * State both drivers persist (see their snapshot() for what is and is not captured). Vectors are plain number arrays
 * in the JSON form (snapshot()) and Float32Array copies in the binary form (binarySnapshot(), what checkpoints store
 * without turning millions of floats into JS numbers); restore takes either.
 */
export interface DriverSnapshotBase<V extends ArrayLike<number> = PlainVector> {
  version: number;
  weights: V;
  /** [client, momentum] pairs. */
  momenta: Array<[number, V]>;
  fedau: FedAUSnapshot | null;
  /** The driver's Random state (shared/random.ts). */
  rng: number;
}

/** Fills in PipelineSpec.numClients for FedAU from the driver's population when the spec leaves it out. */
export function withPopulation(pipeline: PipelineSpec, numClients: number): PipelineSpec {
  if (pipeline.weighting === 'fedau' && (pipeline.numClients === undefined || pipeline.numClients === 0)) return { ...pipeline, numClients };
  if (pipeline.weighting === 'fedau' && pipeline.numClients !== numClients) {
    throw new RangeError(`training driver: pipeline.numClients (${String(pipeline.numClients)}) differs from numClients (${numClients})`);
  }
  return pipeline;
}

export function checkCount(where: string, name: string, v: number, min = 1): void {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`${where}: ${name} must be an integer ≥ ${min}, got ${String(v)}`);
}

/** Why an arrival's payload is unusable (wrong length, non-finite values, bad samples/loss), or null. */
export function payloadProblem(a: ClientArrival, dim: number): string | null {
  if (!(a.update instanceof Float32Array)) return 'update is not a Float32Array';
  if (a.update.length !== dim) return `update has ${a.update.length} values, the model has ${dim}`;
  // An update decoded from a worker's frame was scanned there; the simulator's and an adversary's arrays are scanned here.
  if (!isDecodedFinite(a.update)) {
    const j = firstNonFinite(a.update);
    if (j >= 0) return `update has a non-finite value at ${j}`;
  }
  if (a.momentum !== undefined && (!(a.momentum instanceof Float32Array) || a.momentum.length !== dim)) return 'momentum does not match the model size';
  if (typeof a.samples !== 'number' || !Number.isFinite(a.samples) || a.samples < 0) return `samples must be a finite number ≥ 0, got ${String(a.samples)}`;
  if (typeof a.loss !== 'number' || Number.isNaN(a.loss)) return `loss must be a number, got ${String(a.loss)}`;
  return null;
}

export function snapshotMomenta<V extends ArrayLike<number>>(m: ReadonlyMap<number, Float32Array>, copy: (v: Float32Array) => V): Array<[number, V]> {
  return [...m.entries()].sort((x, y) => x[0] - y[0]).map(([c, v]) => [c, copy(v)]);
}

export const plainCopy = (v: Float32Array): PlainVector => Array.from(v);
export const binaryCopy = (v: Float32Array): Float32Array => v.slice();
/** No copy: for snapshots consumed before the driver runs again (viewSnapshot). */
export const sameVector = <V>(v: V): V => v;

export function restoreMomenta(pairs: ReadonlyArray<readonly [number, ArrayLike<number>]>, numClients: number, dim: number): Map<number, Float32Array> {
  const out = new Map<number, Float32Array>();
  for (const [c, v] of pairs) {
    if (!Number.isInteger(c) || c < 0 || c >= numClients) throw new RangeError(`restore: momentum for unknown client ${String(c)}`);
    if (v.length !== dim) throw new RangeError(`restore: momentum of client ${c} has ${v.length} values, the model has ${dim}`);
    out.set(c, Float32Array.from(v));
  }
  return out;
}

/**
 * A ServerAggregator whose FedAU estimator can start from a snapshot (the base class builds a fresh one and has
 * no setter). Everything else — weighting, NNM, rule, optimizer, step() — is the base class's.
 */
export class DriverAggregator extends ServerAggregator {
  override readonly fedau: FedAUEstimator | null;

  constructor(spec: PipelineSpec, fedau: FedAUSnapshot | null = null) {
    super(spec);
    if (spec.weighting !== 'fedau') {
      if (fedau !== null) throw new RangeError('restore: snapshot has FedAU state but the pipeline does not weight by fedau');
      this.fedau = null;
    } else if (fedau === null) {
      this.fedau = new FedAUEstimator(spec.numClients as number, spec.fedauCutoff ?? Infinity);
    } else {
      if (fedau.numClients !== spec.numClients) throw new RangeError(`restore: FedAU state is for ${fedau.numClients} clients, the pipeline has ${String(spec.numClients)}`);
      this.fedau = FedAUEstimator.restore(fedau);
    }
  }
}

/**
 * The server aggregator's state besides FedAU (which DriverSnapshotBase.fedau holds): the cclip center and the server
 * optimizer's step count and float64 moments. V: float32 vectors, D: float64 ones (number arrays in the JSON form,
 * Float32Array / Float64Array in the binary one).
 */
export interface ServerStateSnapshot<V extends ArrayLike<number> = PlainVector, D extends ArrayLike<number> = PlainVector> {
  robust: { rule: RuleName; center: V | null };
  optimizer: { optimizer: 'sgd' | 'adam'; steps: number; first: D | null; second: D | null };
}

export const plainCopy64 = (v: Float64Array): PlainVector => Array.from(v);
export const binaryCopy64 = (v: Float64Array): Float64Array => v.slice();

export function snapshotServer<V extends ArrayLike<number>, D extends ArrayLike<number>>(
  a: ServerAggregator,
  copy: (v: Float32Array) => V,
  copy64: (v: Float64Array) => D,
): ServerStateSnapshot<V, D> {
  const r = a.robust.snapshot();
  const o = a.optimizer.snapshot();
  return {
    robust: { rule: r.rule, center: r.center === null ? null : copy(r.center) },
    optimizer: { optimizer: o.optimizer, steps: o.steps, first: o.first === null ? null : copy64(o.first), second: o.second === null ? null : copy64(o.second) },
  };
}

function vectorOf<T extends Float32Array | Float64Array>(v: unknown, make: (x: ArrayLike<number>) => T, what: string): T | null {
  if (v === null) return null;
  if (!(v instanceof Float32Array || v instanceof Float64Array || Array.isArray(v))) throw new RangeError(`restore: ${what} must be a list of numbers or null`);
  const list = v as ArrayLike<unknown>;
  for (let j = 0; j < list.length; j++) if (typeof list[j] !== 'number') throw new RangeError(`restore: ${what} holds a non-number at ${j}`);
  return make(list as ArrayLike<number>);
}

/** Loads a ServerStateSnapshot into the driver's aggregator (RangeError when it does not fit the pipeline or the model size). */
export function restoreServer(a: ServerAggregator, s: ServerStateSnapshot<ArrayLike<number>, ArrayLike<number>>, dim: number): void {
  if (s === null || typeof s !== 'object' || s.robust === null || typeof s.robust !== 'object' || s.optimizer === null || typeof s.optimizer !== 'object') {
    throw new RangeError('restore: server state must be {robust, optimizer}');
  }
  const f32 = (x: ArrayLike<number>): Float32Array => Float32Array.from(x);
  const f64 = (x: ArrayLike<number>): Float64Array => Float64Array.from(x);
  a.robust.restore({ rule: s.robust.rule, center: vectorOf(s.robust.center, f32, 'cclip center') }, dim);
  const o = s.optimizer;
  a.optimizer.restore({ optimizer: o.optimizer, steps: o.steps, first: vectorOf(o.first, f64, 'optimizer moment'), second: vectorOf(o.second, f64, 'optimizer second moment') }, dim);
}

/** A server step a driver took: the new model, its metrics line, and why it left the model unchanged, if it did. */
export interface StepResult {
  weights: Float32Array;
  metrics: StepMetrics;
  /** Set when updates arrived but the step could not use them (fewer than the robust rule needs). */
  skipped?: string;
}

/** What take() did with an arrival. */
export type Taken =
  | { status: 'refused'; reason: string }
  /** Async: too stale to use (its client is free again). */
  | { status: 'dropped'; reason: string; staleness: number }
  /** Used; `step` is the server step it completed, if any. */
  | { status: 'taken'; step: StepResult | null };

/**
 * The one interface over both training state machines (docs/architecture.md, "Training"): the coordinator's training
 * service and the simulator drive a SyncDriver or an AsyncDriver with the same four calls, on their own clock (`now`,
 * any monotone milliseconds or virtual time). next() says which clients train now; take() gives back an update; miss()
 * says a dispatched shard will not come; expire() is a sync round's deadline. A step happens inside whichever call
 * completes it, and that call returns it.
 */
export interface TrainingDriver {
  readonly mode: 'sync' | 'async';
  /** Server steps so far (the current model's version). */
  readonly version: number;
  readonly weights: Float32Array;
  readonly done: boolean;
  /** Whether next() could dispatch now (sync: no round is open; async: fewer shards in flight than the concurrency). */
  readonly wantsMore: boolean;
  /**
   * The shards to dispatch now among clients that are `reachable` (default: all). Sync: opens the next round; a round
   * nobody is sampled for closes at once, and `step` is its (unchanged-model) step. Async: tops up the shards in flight.
   */
  next(now: number, reachable?: (client: number) => boolean): { orders: DispatchOrder[]; step: StepResult | null };
  /** Why take() would refuse this arrival now, or null. */
  refusal(arrival: ClientArrival): string | null;
  take(arrival: ClientArrival, now: number): Taken;
  /**
   * The shard `client` was dispatched on model `version` will not arrive (lease lost, worker gone, a refused update).
   * Sync: the client is absent from the round, which closes once every dispatched client arrived or was missed.
   * Async: the client is free again. Unknown or stale (client, version) pairs are ignored.
   */
  miss(client: number, version: number, now: number): StepResult | null;
  /** Sync: the open round's deadline passed; it closes with what arrived. Async: nothing (null). */
  expire(now: number): StepResult | null;
}
