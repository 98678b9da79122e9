// The TF.js side of a training job's model on the coordinator, run on its evaluation thread only (eval-task.ts): the
// backend, loading the model (its initial weights, and whether weights.bin is exactly them), evaluation on held-out
// data, and a bundle with other weights. The coordinator's own thread never loads TF.js (evaluator.ts): its heap stays
// small, so its full collections stay short, and a large model's load never blocks its event loop.
import * as tf from '@tensorflow/tfjs';
import { packBundle, type BundleFiles } from '../../shared/model/bundle.js';
import { saveToFiles, WEIGHTS_FILE } from '../../shared/model/tf-model.js';
import { readFlatWeights, setFlatWeights } from '../../shared/model/weights.js';
import type { Manifest } from '../../shared/model/manifest.js';
import type { EvalResult } from './evaluator.js';

let backend: Promise<string> | undefined;

/** Sets the TF.js backend once per process: wasm if it initialises, else cpu. Resolves to the backend's name. */
export function initBackend(): Promise<string> {
  backend ??= (async () => {
    try {
      await import('@tensorflow/tfjs-backend-wasm');
      if ((await tf.setBackend('wasm')) && tf.getBackend() === 'wasm') {
        await tf.ready();
        return 'wasm';
      }
    } catch {
      // fall through to cpu
    }
    await tf.setBackend('cpu');
    await tf.ready();
    return 'cpu';
  })();
  return backend;
}

const EVAL_BATCH = 4096;

/**
 * Mean cross-entropy and accuracy of `model` with `weights` on rows [n, dim] with class labels in [0, classes). Runs
 * synchronously on the calling thread: the coordinator calls it on the evaluation thread only (TrainModel.evaluate).
 */
export function evaluateClassesOn(model: tf.LayersModel, dim: number, classes: number, weights: Float32Array, rows: Float32Array, labels: Int32Array): EvalResult {
  setFlatWeights(model, weights);
  const n = labels.length;
  const k = classes;
  let loss = 0;
  let correct = 0;
  for (let start = 0; start < n; start += EVAL_BATCH) {
    const m = Math.min(EVAL_BATCH, n - start);
    const probs = tf.tidy(() => {
      const x = tf.tensor2d(rows.subarray(start * dim, (start + m) * dim), [m, dim]);
      return (model.predict(x) as tf.Tensor).dataSync() as Float32Array;
    });
    for (let i = 0; i < m; i++) {
      const y = labels[start + i]!;
      let best = 0;
      for (let c = 1; c < k; c++) if (probs[i * k + c]! > probs[i * k + best]!) best = c;
      if (best === y) correct++;
      loss -= Math.log(Math.max(probs[i * k + y] ?? 0, 1e-7));
    }
  }
  return { loss: loss / n, accuracy: correct / n };
}

/** Preference pairs on a reward model (TrainModel.evaluatePairs), synchronously on the calling thread. */
export function evaluatePairsOn(model: tf.LayersModel, dim: number, weights: Float32Array, chosen: Float32Array, rejected: Float32Array): EvalResult {
  setFlatWeights(model, weights);
  const n = chosen.length / dim;
  let loss = 0;
  let correct = 0;
  for (let start = 0; start < n; start += EVAL_BATCH) {
    const m = Math.min(EVAL_BATCH, n - start);
    const [rc, rr] = [chosen, rejected].map((rows) =>
      tf.tidy(() => (model.predict(tf.tensor2d(rows.subarray(start * dim, (start + m) * dim), [m, dim])) as tf.Tensor).dataSync() as Float32Array),
    ) as [Float32Array, Float32Array];
    for (let i = 0; i < m; i++) {
      const margin = rc[i]! - rr[i]!;
      if (margin > 0) correct++;
      // softplus(−margin), computed without overflow.
      loss += margin > 0 ? Math.log1p(Math.exp(-margin)) : -margin + Math.log1p(Math.exp(margin));
    }
  }
  return { loss: loss / n, accuracy: correct / n };
}

/**
 * The flat trainable weights of a loaded model, and whether its bundle's weights.bin is exactly those bytes (one
 * weights file whose order is the flat order: then a bundle with other weights is weights.bin replaced, no TF.js).
 */
export async function initialWeights(model: tf.LayersModel, weightPaths: readonly string[], bin: Uint8Array | undefined): Promise<{ weights: Float32Array; patchable: boolean }> {
  const flat = await readFlatWeights(model);
  let patchable = weightPaths.length === 1 && weightPaths[0] === WEIGHTS_FILE && bin !== undefined && bin.byteLength === flat.byteLength;
  if (patchable && bin !== undefined) {
    const a = new Uint8Array(flat.buffer, flat.byteOffset, flat.byteLength);
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== bin[i]) {
        patchable = false;
        break;
      }
    }
  }
  return { weights: flat, patchable };
}

/** The packed bundle of `model` with `weights` (saved through TF.js: for bundles whose weights.bin cannot be patched). */
export async function bundleWithWeights(model: tf.LayersModel, manifest: Manifest, weights: Float32Array): Promise<Uint8Array> {
  setFlatWeights(model, weights);
  return packBundle((await saveToFiles(model, manifest)) as BundleFiles);
}
