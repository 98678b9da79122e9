import * as tf from '@tensorflow/tfjs';

/**
 * A model's trainable weights as one flat Float32Array: what fine-tuning shards ship (weights to the worker, an
 * update and momentum back) and what the aggregation library averages.
 *
 * Order (the coordinator and every worker must agree on it): `model.trainableWeights` in TF.js order — layers in
 * model order, and within a layer its weights in creation order (a Dense layer: kernel, then bias) — which is also
 * the order `model.getWeights()` lists them for fedpool's MLPs (they have no non-trainable weights). Each weight is
 * laid out row-major (TF.js's own layout: a Dense kernel [in, out] is `in` rows of `out` numbers). So a flat vector
 * is: hidden_1 kernel, hidden_1 bias, hidden_2 kernel, …, output kernel, output bias. Non-trainable weights (none in
 * fedpool's models) are not included and are left alone by setFlatWeights.
 */

/** Total number of trainable parameters (the length of getFlatWeights). */
export function parameterCount(model: tf.LayersModel): number {
  let n = 0;
  for (const w of model.trainableWeights) n += w.shape.reduce((a: number, b) => a * (b ?? 0), 1);
  return n;
}

function concat(parts: readonly ArrayLike<number>[], total: number): Float32Array {
  const out = new Float32Array(total);
  let offset = 0;
  for (const values of parts) {
    out.set(values, offset);
    offset += values.length;
  }
  return out;
}

/**
 * The trainable weights concatenated, in the order documented above. The result owns its buffer. Synchronous reads
 * work on the CPU backends (wasm, cpu, tfjs-node) only; code that may run on webgpu uses readFlatWeights.
 */
export function getFlatWeights(model: tf.LayersModel): Float32Array {
  return concat(model.trainableWeights.map((w) => w.read().dataSync()), parameterCount(model));
}

/** getFlatWeights for every backend: webgpu in Node cannot read tensors synchronously (no OffscreenCanvas). */
export async function readFlatWeights(model: tf.LayersModel): Promise<Float32Array> {
  return readFlat(model.trainableWeights.map((w) => w.read()));
}

/** Tensors' values concatenated in order, read asynchronously (every backend). The result owns its buffer. */
export async function readFlat(tensors: readonly tf.Tensor[]): Promise<Float32Array> {
  const parts = await Promise.all(tensors.map((t) => t.data()));
  return concat(parts as Float32Array[], parts.reduce((n, p) => n + p.length, 0));
}

/**
 * Overwrites the trainable weights from a flat vector in the order documented above (the vector is copied, not
 * kept). A vector of the wrong length throws a one-line RangeError and changes nothing.
 */
export function setFlatWeights(model: tf.LayersModel, flat: Float32Array): void {
  const expected = parameterCount(model);
  if (!(flat instanceof Float32Array)) throw new RangeError('setFlatWeights: weights must be a Float32Array');
  if (flat.length !== expected) {
    throw new RangeError(`setFlatWeights: got ${flat.length} weights, the model has ${expected} trainable parameters`);
  }
  let offset = 0;
  for (const w of model.trainableWeights) {
    const size = w.shape.reduce((a: number, b) => a * (b ?? 0), 1);
    const part = flat.slice(offset, offset + size); // a copy: the backend may keep the array it is given
    tf.tidy(() => {
      w.write(tf.tensor(part, w.shape as number[], 'float32'));
    });
    offset += size;
  }
}
