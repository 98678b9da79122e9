// The coordinator's evaluation thread (piscina task, started by evaluator.ts): evaluates a training job's model on
// its held-out data off the coordinator's event loop. It runs the very functions the coordinator ran in-process
// before (evaluateClassesOn, evaluatePairsOn) on the same backend, so the results are bit-identical.
import type * as tf from '@tensorflow/tfjs';
import { unpackBundle } from '../../shared/model/bundle.js';
import { loadFromFiles } from '../../shared/model/tf-model.js';
import { evaluateClassesOn, evaluatePairsOn, initBackend, type EvalResult, type EvalTask } from './evaluator.js';

/** Loaded models by TrainModel id, least recently used first; a few, in case a drop was lost with a thread. */
const models = new Map<string, Promise<tf.LayersModel>>();
const CACHED_MODELS = 4;

async function modelFor(id: string, bundle: Uint8Array): Promise<tf.LayersModel> {
  let model = models.get(id);
  if (model !== undefined) {
    models.delete(id);
  } else {
    model = loadFromFiles(unpackBundle(bundle).files).then((loaded) => loaded.model);
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
  void model?.then((m) => m.dispose(), () => undefined);
}

export default async function evalTask(task: EvalTask): Promise<EvalResult | null> {
  if (task.op === 'drop') {
    drop(task.id);
    return null;
  }
  // The coordinator's backend, or the numbers could differ from an in-process evaluation.
  const backend = await initBackend();
  if (backend !== task.backend) throw new Error(`the evaluation thread runs TF.js on ${backend}, the coordinator on ${task.backend}`);
  const model = await modelFor(task.id, task.bundle);
  return task.op === 'classes'
    ? evaluateClassesOn(model, task.dim, task.classes, task.weights, task.rows, task.labels)
    : evaluatePairsOn(model, task.dim, task.weights, task.chosen, task.rejected);
}
