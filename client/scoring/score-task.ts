import { move } from 'piscina';
import type { BackendRequest } from '../backends.js';
import { ensureBackend, isModelProblem, modelCache, permanentFailure, type ProbeResult, type ProbeTaskInput, type TaskFailure } from '../thread-state.js';
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

export type TaskInput = ScoreTaskInput | ProbeTaskInput;
export type { ProbeResult, TaskFailure };

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
    const failure = permanentFailure(err, isModelProblem);
    if (failure !== undefined) return failure;
    throw err;
  }
}
