import { move } from 'piscina';
import { selectBackend, type BackendChoice, type BackendRequest } from '../backends.js';
import { BundleError } from '../../shared/model/errors.js';
import { bundleHash, unpackBundle } from '../../shared/model/bundle.js';
import type { ModelItem } from '../../shared/model/featurizer.js';
import { loadFromFiles, scoreBatch, scoreFeatureMatrix, type LoadedModel } from '../../shared/model/tf-model.js';

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

const MODEL_CACHE_SIZE = 4;

let backend: { requested: BackendRequest; ready: Promise<BackendChoice> } | undefined;
const models = new Map<string, Promise<LoadedModel>>(); // insertion order = least recently used first

function ensureBackend(requested: BackendRequest): Promise<BackendChoice> {
  if (backend === undefined) backend = { requested, ready: selectBackend(requested) };
  else if (backend.requested !== requested) {
    return Promise.reject(new Error(`this scoring thread runs backend ${backend.requested}, not ${requested}`));
  }
  return backend.ready;
}

async function load(hash: string, bundle: Uint8Array): Promise<LoadedModel> {
  const bytes = bundle.slice(); // own, non-shared copy: WebCrypto refuses shared memory, and the pool may reuse it
  const actual = await bundleHash(bytes);
  if (actual !== hash) throw new BundleError(`model bundle: sha-256 is ${actual}, expected ${hash}`);
  return loadFromFiles(unpackBundle(bytes).files);
}

function model(hash: string, bundle: Uint8Array): Promise<LoadedModel> {
  const cached = models.get(hash);
  if (cached !== undefined) {
    models.delete(hash);
    models.set(hash, cached);
    return cached;
  }
  const loading = load(hash, bundle);
  models.set(hash, loading);
  loading.catch(() => {
    if (models.get(hash) === loading) models.delete(hash); // a failed load is not cached: the next task retries
  });
  while (models.size > MODEL_CACHE_SIZE) {
    const [oldest, evicted] = models.entries().next().value as [string, Promise<LoadedModel>];
    models.delete(oldest);
    // One task at a time per thread (piscina's default), so nothing is still predicting with it.
    evicted.then((m) => m.model.dispose(), () => {});
  }
  return loading;
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
