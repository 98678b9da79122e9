import { move } from 'piscina';
import type { BackendChoice, BackendRequest } from '../backends.js';
import { ensureBackend, modelCache } from '../thread-state.js';
import type { ModelItem } from '../../shared/model/featurizer.js';
import { scoreBatch, scoreFeatureMatrix, type LoadedModel } from '../../shared/model/tf-model.js';

const model = modelCache((loaded: LoadedModel) => loaded);

/**
 * The piscina task module: runs in a worker thread with its own TF.js instance. Each thread selects its backend
 * once (on its first task) and keeps the last few models it loaded, by hash, so a shard of a known model costs only
 * featurize + predict.
 */

export interface ScoreTaskInput {
  kind: 'score';
  /** sha-256 of `bundle`; checked once per thread when the model is first loaded. */
  hash: string;
  /** The packed bundle. The pool passes a SharedArrayBuffer view: shared, never copied per task. */
  bundle: Uint8Array;
  backend: BackendRequest;
  batchSize: number;
  /** Either the items as they are (text items, or anything the pool could not pack)… */
  items?: ModelItem[];
  /** …or a features shard packed into one row-major rows × cols matrix (one buffer to transfer). */
  matrix?: { x: Float32Array; rows: number; cols: number };
}

export interface ProbeTaskInput {
  kind: 'probe';
  backend: BackendRequest;
}

export type TaskInput = ScoreTaskInput | ProbeTaskInput;

/** A failure retrying elsewhere cannot fix, returned rather than thrown: structured clone would drop its name. */
export interface TaskFailure {
  failure: { name: string; message: string };
}

/** What a probe returns: the backend this thread runs on. */
export interface ProbeResult {
  choice: BackendChoice;
}

export default async function scoreTask(task: TaskInput): Promise<Float32Array | TaskFailure | ProbeResult> {
  if (task.kind === 'probe') return { choice: await ensureBackend(task.backend) };
  await ensureBackend(task.backend);
  try {
    const { model: m, manifest } = await model(task.hash, task.bundle);
    const scores = task.matrix
      ? await scoreFeatureMatrix(m, manifest, task.matrix.x, task.matrix.rows, task.matrix.cols, task.batchSize)
      : await scoreBatch(m, manifest, task.items ?? [], task.batchSize);
    return move(scores) as Float32Array; // transferred back, not copied
  } catch (err) {
    if (err instanceof Error && (err.name === 'ModelError' || err.name === 'BundleError')) {
      return { failure: { name: err.name, message: err.message } };
    }
    throw err;
  }
}
