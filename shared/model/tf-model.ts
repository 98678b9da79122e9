import * as tf from '@tensorflow/tfjs';
import { MANIFEST_FILE, MODEL_FILE, WEIGHTS_FILE, validateBundle, type BundleFiles, type LayersModelJson } from './bundle.js';
import { checkFeatureMatrix, featurizeBatch, type ModelItem } from './featurizer.js';
import { deriveSeed } from '../random.js';
import { BundleError, ModelError } from './errors.js';
import { outputUnits, scoreWidth, type Manifest } from './manifest.js';

/**
 * The TF.js side of a model bundle: build the MLP `fedpool model init` writes, save it to bundle files, load a
 * bundle back, and score items. It uses whichever TF.js backend is active; picking one is the caller's job
 * (client/backends.ts). Only platform-free TF.js APIs (withSaveHandler / fromMemory), no file or network I/O.
 */

export { WEIGHTS_FILE } from './bundle.js';

/**
 * Layer i's initializer seed, derived from the model seed by hashing, so layers get distinct, well-spread seeds and
 * seed S's layer 1 never equals seed S+1's layer 0 (as `seed + i` would).
 */
export function layerSeed(seed: number, layer: number): number {
  return deriveSeed(seed, 'layer', layer);
}

/**
 * The manifest's MLP: Dense layers with ReLU, then 1 linear unit (reward) or C softmax units (classes). Glorot-uniform
 * kernels seeded per layer, zero biases, and fixed layer names: TF.js would otherwise number layers by a
 * process-wide counter, and model.json (so the model hash) would depend on what else the process built.
 */
export function buildModel(manifest: Manifest): tf.Sequential {
  const sizes = manifest.hidden;
  const layers: tf.layers.Layer[] = [];
  sizes.forEach((units, i) => {
    layers.push(
      tf.layers.dense({
        name: `hidden_${i + 1}`,
        units,
        activation: 'relu',
        kernelInitializer: tf.initializers.glorotUniform({ seed: layerSeed(manifest.seed, i) }),
        biasInitializer: 'zeros',
        ...(i === 0 ? { inputShape: [manifest.input.dim] } : {}),
      }),
    );
  });
  layers.push(
    tf.layers.dense({
      name: 'output',
      units: outputUnits(manifest.output),
      activation: manifest.output.kind === 'reward' ? 'linear' : 'softmax',
      kernelInitializer: tf.initializers.glorotUniform({ seed: layerSeed(manifest.seed, sizes.length) }),
      biasInitializer: 'zeros',
      ...(sizes.length === 0 ? { inputShape: [manifest.input.dim] } : {}),
    }),
  );
  return tf.sequential({ name: 'fedpool_model', layers });
}

/** fedpool.json with a fixed key order, so equal manifests give equal bytes (and equal model hashes). */
export function manifestBytes(manifest: Manifest): Uint8Array {
  const { format, version, kind, input, output, hidden, seed } = manifest;
  const json = JSON.stringify({ format, version, kind, input, output, hidden, seed }, null, 2);
  return new TextEncoder().encode(`${json}\n`);
}

function toBytes(data: tf.io.WeightData | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  return new Uint8Array(tf.io.CompositeArrayBuffer.join(data));
}

/** The bundle files of `model` + `manifest`: model.json (weights in one weights.bin), weights.bin, fedpool.json. */
export async function saveToFiles(model: tf.LayersModel, manifest: Manifest): Promise<Map<string, Uint8Array>> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (artifacts === undefined || artifacts.modelTopology === undefined || artifacts.modelTopology instanceof ArrayBuffer) {
    throw new Error('TF.js did not hand over a JSON model topology');
  }
  const modelJson = {
    modelTopology: artifacts.modelTopology,
    format: artifacts.format ?? 'layers-model',
    generatedBy: artifacts.generatedBy ?? null,
    convertedBy: artifacts.convertedBy ?? null,
    weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs ?? [] }],
  };
  const files = new Map<string, Uint8Array>([
    [MANIFEST_FILE, manifestBytes(manifest)],
    [MODEL_FILE, new TextEncoder().encode(JSON.stringify(modelJson))],
    [WEIGHTS_FILE, toBytes(artifacts.weightData)],
  ]);
  validateBundle(files); // the model and the manifest must agree before anything is written
  return files;
}

function concatWeights(files: BundleFiles, paths: readonly string[]): ArrayBuffer {
  const total = paths.reduce((sum, p) => sum + (files.get(p) as Uint8Array).byteLength, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of paths) {
    const bytes = files.get(p) as Uint8Array;
    out.set(bytes, offset);
    offset += bytes.byteLength;
  }
  return out.buffer;
}

export interface LoadedModel {
  model: tf.LayersModel;
  manifest: Manifest;
}

/** Loads a bundle (validated first) into a LayersModel on the active backend and checks its real input/output shape. */
export async function loadFromFiles(files: BundleFiles, where = 'model bundle'): Promise<LoadedModel> {
  const { manifest, model: json, weightPaths } = validateBundle(files, where);
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology: json.modelTopology as tf.io.ModelArtifacts['modelTopology'],
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights) as tf.io.WeightsManifestEntry[],
    weightData: concatWeights(files, weightPaths),
    ...(json.format !== undefined ? { format: json.format } : {}),
    ...(typeof json.generatedBy === 'string' ? { generatedBy: json.generatedBy } : {}),
    ...(typeof json.convertedBy === 'string' ? { convertedBy: json.convertedBy } : {}),
  };
  let model: tf.LayersModel;
  try {
    model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  } catch (err) {
    throw new BundleError(`${where}: TF.js cannot load model.json (${err instanceof Error ? err.message.replace(/\s+/g, ' ') : String(err)})`);
  }
  const fail = (message: string): never => {
    model.dispose();
    throw new BundleError(`${where}: ${message}`);
  };
  if (model.inputs.length !== 1 || model.outputs.length !== 1) fail('fedpool models have exactly one input and one output');
  const inShape = model.inputs[0].shape;
  const outShape = model.outputs[0].shape;
  if (inShape.length !== 2 || inShape[1] !== manifest.input.dim) {
    fail(`the model's input has shape [${inShape.map(String).join(',')}] but fedpool.json says ${manifest.input.kind}:${manifest.input.dim}`);
  }
  if (outShape.length !== 2 || outShape[1] !== outputUnits(manifest.output)) {
    fail(`the model's output has shape [${outShape.map(String).join(',')}] but fedpool.json's output needs ${outputUnits(manifest.output)} units`);
  }
  return { model, manifest };
}

/**
 * Scores of a featurized batch (`x` is row-major n × dim). We slice the batches ourselves, one `predict` per
 * `batchSize` rows: TF.js's own predict loop gets much slower as the input grows (measured on wasm: 32,768 rows in
 * one call at batch 1024 ran at ~25k items/s, the same rows in 1,024-row calls at ~90k), and its default batch of
 * 32 is an order of magnitude slower than ~1024. The per-batch outputs stay on the backend until one read at the
 * end (no GPU sync per batch). Reward models give their single output; binary classifiers the probability of
 * class 1; classifiers of C ≥ 3 classes their C probabilities per item, row-major (scoreWidth). The result owns its
 * buffer (transferable).
 */
export async function predictScores(model: tf.LayersModel, manifest: Manifest, x: Float32Array, n: number, batchSize: number): Promise<Float32Array> {
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new RangeError(`batch size must be a positive integer, got ${String(batchSize)}`);
  if (n === 0) return new Float32Array(0);
  const dim = manifest.input.dim;
  if (x.length !== n * dim) throw new RangeError(`input has ${x.length} numbers; ${n} items × ${dim} needs ${n * dim}`);
  const width = scoreWidth(manifest.output);
  const column = manifest.output.kind === 'reward' ? 0 : 1;
  const y = tf.tidy(() => {
    const parts: tf.Tensor[] = [];
    for (let start = 0; start < n; start += batchSize) {
      const rows = Math.min(batchSize, n - start);
      // Inner tidy: only this batch's scores survive, not its hidden activations.
      parts.push(
        tf.tidy(() => {
          const out = model.predict(tf.tensor2d(x.subarray(start * dim, (start + rows) * dim), [rows, dim]), { batchSize: rows });
          if (Array.isArray(out)) throw new ModelError('fedpool models have exactly one output');
          return width === 1 ? (out as tf.Tensor).slice([0, column], [rows, 1]) : (out as tf.Tensor);
        }),
      );
    }
    return (parts.length === 1 ? parts[0] : tf.concat(parts, 0)).reshape([n * width]);
  });
  try {
    const data = await y.data();
    const scores = new Float32Array(n * width);
    scores.set(data);
    return scores;
  } finally {
    y.dispose();
  }
}

/** Featurizes `items` with the manifest's featurizer and scores them (see predictScores). */
export async function scoreBatch(model: tf.LayersModel, manifest: Manifest, items: readonly ModelItem[], batchSize: number): Promise<Float32Array> {
  return predictScores(model, manifest, featurizeBatch(items, manifest), items.length, batchSize);
}

/**
 * Scores a features model's items given as one packed row-major `rows × cols` matrix (what the scoring pool sends
 * its threads: one transferable buffer instead of one per item). Same checks and messages as scoreBatch.
 */
export async function scoreFeatureMatrix(model: tf.LayersModel, manifest: Manifest, x: Float32Array, rows: number, cols: number, batchSize: number): Promise<Float32Array> {
  checkFeatureMatrix(x, rows, cols, manifest);
  return predictScores(model, manifest, x, rows, batchSize);
}

export type { LayersModelJson };
