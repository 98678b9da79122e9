// One way from a train.json config to a training driver, for the coordinator's training service and the simulator
// alike: the same config, seed and client count give the same driver (docs/architecture.md, "Training").
import { trainPipelineSpec, type TrainConfig } from '../config/train.js';
import { Adversary } from './adversary.js';
import { AsyncDriver, type AsyncDriverSnapshot } from './async-driver.js';
import { SyncDriver, type SyncDriverSnapshot } from './sync-driver.js';
import type { ParticipationSetting } from './types.js';

/** A driver's checkpoint in either form (JSON numbers or typed arrays). */
export type AnyDriverSnapshot = SyncDriverSnapshot<ArrayLike<number>, ArrayLike<number>> | AsyncDriverSnapshot<ArrayLike<number>, ArrayLike<number>>;

/** The seed of a training job: the central partition's, or the worker-held data's. */
export function trainSeed(config: TrainConfig): number {
  return config.data.source === 'central' ? config.data.partition.seed : config.data.seed;
}

/** The job's adversary (robustness experiments), or null. */
export function trainAdversary(config: TrainConfig): Adversary | null {
  return config.adversary === undefined ? null : new Adversary({ ...config.adversary, seed: trainSeed(config) });
}

/**
 * The driver of a training job over `numClients` clients, starting from `initial` weights, or from `snapshot` (a
 * checkpoint of the same config) when given. `adversary` defaults to trainAdversary(config); pass the one the caller
 * also uses for label flipping so both see one object.
 */
export function createDriver(
  config: TrainConfig,
  numClients: number,
  initial: Float32Array,
  snapshot?: AnyDriverSnapshot,
  adversary: Adversary | null = trainAdversary(config),
): SyncDriver | AsyncDriver {
  const pipeline = trainPipelineSpec(config);
  const participation = (config.participation ?? null) as ParticipationSetting | null;
  const seed = trainSeed(config);
  if (config.mode === 'sync') {
    const c = { numClients, clientsPerRound: Math.min(config.clientsPerRound, numClients), rounds: config.rounds, participation, seed, pipeline, adversary };
    if (snapshot !== undefined && snapshot.kind !== 'sync') throw new RangeError('restore: an async checkpoint for a sync job');
    return snapshot === undefined ? new SyncDriver(c, initial) : SyncDriver.restore(c, snapshot);
  }
  const c = {
    numClients, concurrency: Math.min(config.concurrency, numClients), buffer: config.buffer, staleness: config.staleness, maxStaleness: config.maxStaleness,
    steps: config.steps, seed, participation, pipeline, adversary,
  };
  if (snapshot !== undefined && snapshot.kind !== 'async') throw new RangeError('restore: a sync checkpoint for an async job');
  return snapshot === undefined ? new AsyncDriver(c, initial) : AsyncDriver.restore(c, snapshot);
}
