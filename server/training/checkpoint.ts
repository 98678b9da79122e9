// A training job's checkpoint in the state store: the driver's binary snapshot (docs/algorithms.md, "Exact
// checkpoints"), the worker-held client bindings and the seconds trained, packed by persist.ts; metrics.jsonl beside it.
import type { AnyDriverSnapshot } from '../../shared/training/create-driver.js';
import type { AsyncDriverSnapshot } from '../../shared/training/async-driver.js';
import type { SyncDriverSnapshot } from '../../shared/training/sync-driver.js';
import { inlineVectors, outlineVectors, packState, unpackState } from './persist.js';

/**
 * What a checkpoint's packed state holds besides the vectors (weights, then each stored momentum, then the float32
 * vectors of the rest of the snapshot) and the float64 vectors (the server optimizer's moments). In `snapshot` each
 * of those vectors stands as {"$f32": i} / {"$f64": i} (outlineVectors). Checkpoints written before the snapshot had
 * vectors besides weights and momenta have no such references and no `server` state: they resume as before.
 */
interface CheckpointHeader {
  snapshot: Record<string, unknown>;
  momentumClients: number[];
  numClients: number;
  /** Worker-held data: [worker name, client] pairs. */
  bindings: Array<[string, number]>;
  /** Seconds of training before this checkpoint (metrics' `time` continues from it after a restart). */
  elapsed: number;
}

export interface Checkpoint {
  snapshot: AnyDriverSnapshot;
  numClients: number;
  bindings: Array<[string, number]>;
  elapsed: number;
}

export function packCheckpoint(
  snapshot: SyncDriverSnapshot<Float32Array, Float64Array> | AsyncDriverSnapshot<Float32Array, Float64Array>,
  rest: Omit<Checkpoint, 'snapshot'>,
): Uint8Array {
  const { weights, momenta, ...others } = snapshot;
  const vectors = [weights, ...momenta.map(([, v]) => v)];
  const doubles: Float64Array[] = [];
  const header: CheckpointHeader = {
    snapshot: outlineVectors(others, vectors, doubles) as Record<string, unknown>,
    momentumClients: momenta.map(([c]) => c),
    numClients: rest.numClients,
    bindings: rest.bindings,
    elapsed: rest.elapsed,
  };
  return packState({ header, vectors, doubles });
}

/** The checkpoint in `bytes`; throws when they are not one. */
export function unpackCheckpoint(bytes: Uint8Array): Checkpoint {
  const { header, vectors, doubles } = unpackState(bytes) as { header: CheckpointHeader; vectors: Float32Array[]; doubles?: Float64Array[] };
  const [weights, ...momenta] = vectors;
  const rest = inlineVectors(header.snapshot, vectors, doubles ?? []) as Record<string, unknown>;
  const snapshot = { ...rest, weights: weights ?? new Float32Array(0), momenta: header.momentumClients.map((c, i) => [c, momenta[i] ?? new Float32Array(0)]) } as unknown as AnyDriverSnapshot;
  return { snapshot, numClients: header.numClients, bindings: header.bindings, elapsed: header.elapsed };
}
