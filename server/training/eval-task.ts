// The coordinator's TF.js thread (piscina task, started by evaluator.ts): loads a training job's model (its initial
// weights), evaluates it on held-out data, and saves it with other weights, all off the coordinator's event loop and
// out of its heap. Evaluation runs the very functions the coordinator ran in-process before (evaluateClassesOn,
// evaluatePairsOn), so the results are unchanged.
import type * as tf from '@tensorflow/tfjs';
import { WEIGHTS_FILE, unpackBundle } from '../../shared/model/bundle.js';
import { loadFromFiles } from '../../shared/model/tf-model.js';
import type { EvalResult, EvalTask, LoadResult } from './evaluator.js';
import { bundleWithWeights, evaluateClassesOn, evaluatePairsOn, initBackend, initialWeights } from './tf-eval.js';
import type { Manifest } from '../../shared/model/manifest.js';

/** Loaded models by TrainModel id, least recently used first; a few, in case a drop was lost with a thread. */
const models = new Map<string, Promise<{ model: tf.LayersModel; manifest: Manifest; weightPaths: string[]; bin: Uint8Array | undefined }>>();
const CACHED_MODELS = 4;

async function modelFor(id: string, bundle: Uint8Array): Promise<{ model: tf.LayersModel; manifest: Manifest; weightPaths: string[]; bin: Uint8Array | undefined }> {
  let model = models.get(id);
  if (model !== undefined) {
    models.delete(id);
  } else {
    const { files, weightPaths } = unpackBundle(bundle);
    model = initBackend()
      .then(() => loadFromFiles(files))
      .then((loaded) => ({ model: loaded.model, manifest: loaded.manifest, weightPaths, bin: files.get(WEIGHTS_FILE) }));
    if (models.size >= CACHED_MODELS) drop(models.keys().next().value as string);
  }
  models.set(id, model);
  try {
    return await model;
  } catch (e) {
    models.delete(id);
    throw e;
  }
}

function drop(id: string): void {
  const model = models.get(id);
  models.delete(id);
  void model?.then((m) => m.model.dispose(), () => undefined);
}

export default async function evalTask(task: EvalTask): Promise<EvalResult | LoadResult | Uint8Array | null> {
  if (task.op === 'drop') {
    drop(task.id);
    return null;
  }
  const { model, manifest, weightPaths, bin } = await modelFor(task.id, task.bundle);
  switch (task.op) {
    case 'load':
      return initialWeights(model, weightPaths, bin);
    case 'bundle':
      return bundleWithWeights(model, manifest, task.weights);
    case 'classes':
      return evaluateClassesOn(model, task.dim, task.classes, task.weights, task.rows, task.labels);
    case 'pairs':
      return evaluatePairsOn(model, task.dim, task.weights, task.chosen, task.rejected);
  }
}
