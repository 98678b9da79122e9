import { move, transferableSymbol, valueSymbol } from 'piscina';
import type { BackendRequest } from '../backends.js';
import type { LoadedModel } from '../../shared/model/tf-model.js';
import { ensureBackend, isModelProblem, modelCache, permanentFailure, type ProbeResult, type ProbeTaskInput, type TaskFailure } from '../thread-state.js';
import { readFlatWeights, setFlatWeights } from '../../shared/model/weights.js';
import { trainLocally, type LocalTrainOptions, type LocalTrainResult, type LocalTrainData } from './local-train.js';

/**
 * The piscina task module for fine-tuning shards: runs in a worker thread with its own TF.js instance. Each thread
 * selects its backend once and keeps the last few models it loaded, by hash, with the bundle's own weights; every
 * task first sets the weights it trains from (the task's, or the bundle's), since the previous task left the
 * model at its trained weights.
 */

export interface TrainTaskInput {
  kind: 'train';
  /** sha-256 of `bundle`; checked once per thread when the model is first loaded. */
  hash: string;
  /** The packed bundle (the pool passes a SharedArrayBuffer view, shared with all threads). */
  bundle: Uint8Array;
  backend: BackendRequest;
  /** Weights to train from (flat, shared/model/weights.ts order); default the bundle's. */
  weights?: Float32Array;
  /** The client's momentum to continue from. */
  momentum?: Float32Array;
  data: LocalTrainData;
  /** Options for trainLocally, without the momentum (given above). */
  opts: Omit<LocalTrainOptions, 'initialMomentum'>;
}

export type TrainTaskMessage = TrainTaskInput | ProbeTaskInput;

interface CachedModel extends LoadedModel {
  /** The bundle's weights, restored for tasks that send none. */
  initial: Float32Array;
}

const cachedModel = modelCache(async (loaded): Promise<CachedModel> => ({ ...loaded, initial: await readFlatWeights(loaded.model) }));

/** The result with its buffers transferred, not cloned (piscina's Transferable protocol). */
function transferable(result: LocalTrainResult): LocalTrainResult {
  const buffers: ArrayBuffer[] = [result.update.buffer as ArrayBuffer];
  if (result.momentum !== undefined) buffers.push(result.momentum.buffer as ArrayBuffer);
  return move({
    get [transferableSymbol]() {
      return buffers;
    },
    get [valueSymbol]() {
      return result;
    },
  }) as unknown as LocalTrainResult;
}

export default async function trainTask(task: TrainTaskMessage): Promise<LocalTrainResult | TaskFailure | ProbeResult> {
  if (task.kind === 'probe') return { choice: await ensureBackend(task.backend) };
  await ensureBackend(task.backend);
  try {
    const { model, manifest, initial } = await cachedModel(task.hash, task.bundle);
    setFlatWeights(model, task.weights ?? initial);
    const opts: LocalTrainOptions = task.momentum !== undefined ? { ...task.opts, initialMomentum: task.momentum } : { ...task.opts };
    return transferable(await trainLocally(model, manifest, task.data, opts));
  } catch (err) {
    // Also RangeError: bad options, weights or data.
    const failure = permanentFailure(err, (e) => isModelProblem(e) || e instanceof RangeError);
    if (failure !== undefined) return failure;
    throw err;
  }
}
