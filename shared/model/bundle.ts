import { Packr, Unpackr } from 'msgpackr';
import { BundleError } from './errors.js';
import { outputUnits, parseManifest, type Manifest } from './manifest.js';

/**
 * A model bundle is the files of a model directory: `fedpool.json` (the manifest), `model.json` (a TF.js
 * LayersModel: topology + weightsManifest) and the weight files that manifest names. It travels as ONE
 * content-addressed blob: MessagePack of `{files: {name: bytes}}` with names in sorted order, and its sha-256 (hex)
 * is the model hash. Platform-free: no filesystem here (see client/scoring/bundle-fs.ts).
 */

export type BundleFiles = ReadonlyMap<string, Uint8Array>;

export const MANIFEST_FILE = 'fedpool.json';
export const MODEL_FILE = 'model.json';
/** The weights file `fedpool model init` writes: the flat trainable weights, float32 little-endian, in manifest order. */
export const WEIGHTS_FILE = 'weights.bin';

/** TF.js weight dtypes we can size; `string` weights have no fixed width and no fedpool model uses them. */
const DTYPE_BYTES: Readonly<Record<string, number>> = { float32: 4, int32: 4, bool: 1, complex64: 8 };
const QUANTIZED_BYTES: Readonly<Record<string, number>> = { uint8: 1, uint16: 2, float16: 2 };

export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string } & Record<string, unknown>;
}

export interface WeightsGroup {
  paths: string[];
  weights: WeightSpec[];
}

/** The parts of a TF.js LayersModel `model.json` that fedpool reads; the rest is passed through to TF.js untouched. */
export interface LayersModelJson {
  format?: string;
  generatedBy?: string | null;
  convertedBy?: string | null;
  modelTopology: Record<string, unknown>;
  weightsManifest: WeightsGroup[];
  [key: string]: unknown;
}

export interface ValidBundle {
  manifest: Manifest;
  model: LayersModelJson;
  /** Weight files in the order TF.js concatenates them (groups in order, paths in order). */
  weightPaths: string[];
}

function fail(where: string, message: string): never {
  throw new BundleError(`${where}: ${message}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * File names inside a bundle: relative paths of plain segments. No `..`, no absolute paths, no backslashes, so a
 * bundle unpacked into a directory can never write outside it.
 */
export function isSafeBundleName(name: string): boolean {
  if (name.length === 0 || name.length > 255 || name === '__proto__') return false;
  return name.split('/').every((seg) => /^[A-Za-z0-9_.-]+$/.test(seg) && seg !== '.' && seg !== '..');
}

function parseJsonFile(files: BundleFiles, name: string, where: string): unknown {
  const bytes = files.get(name);
  if (bytes === undefined) {
    fail(where, name === MANIFEST_FILE ? `${name} is missing (not a fedpool model; \`fedpool model init\` writes one)` : `${name} is missing`);
  }
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as unknown;
  } catch (err) {
    fail(where, `${name} is not valid JSON (${err instanceof Error ? err.message.replace(/\s+/g, ' ') : String(err)})`);
  }
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function parseWeightSpec(spec: unknown, at: string, where: string): WeightSpec {
  if (!isRecord(spec) || typeof spec.name !== 'string') fail(where, `${at} is not a weight spec with a name`);
  const { name, shape, dtype, quantization } = spec;
  if (!Array.isArray(shape) || !shape.every(isNonNegInt)) fail(where, `weight ${name}: shape must be an array of non-negative integers`);
  if (typeof dtype !== 'string' || DTYPE_BYTES[dtype] === undefined) {
    fail(where, `weight ${name}: dtype ${JSON.stringify(dtype)} is not supported (float32, int32, bool or complex64)`);
  }
  const out: WeightSpec = { name, shape: shape as number[], dtype };
  if (quantization !== undefined && quantization !== null) {
    if (!isRecord(quantization) || typeof quantization.dtype !== 'string' || QUANTIZED_BYTES[quantization.dtype] === undefined) {
      fail(where, `weight ${name}: quantization dtype must be uint8, uint16 or float16`);
    }
    out.quantization = quantization as WeightSpec['quantization'];
  }
  return out;
}

function weightBytes(spec: WeightSpec): number {
  const size = spec.shape.reduce((a, b) => a * b, 1);
  const width = spec.quantization ? QUANTIZED_BYTES[spec.quantization.dtype] : DTYPE_BYTES[spec.dtype];
  return size * width;
}

function parseModelJson(json: unknown, where: string): LayersModelJson {
  if (!isRecord(json)) fail(where, `${MODEL_FILE} is not a JSON object`);
  const { format, modelTopology, weightsManifest } = json;
  if (format !== undefined && format !== 'layers-model') {
    fail(where, `${MODEL_FILE} is a TF.js ${JSON.stringify(format)}; fedpool needs a "layers-model" (a TF.js LayersModel)`);
  }
  if (!isRecord(modelTopology) || typeof modelTopology.class_name !== 'string') {
    fail(where, `${MODEL_FILE} has no LayersModel modelTopology; fedpool needs a TF.js LayersModel`);
  }
  if (!Array.isArray(weightsManifest)) fail(where, `${MODEL_FILE}: weightsManifest must be an array`);
  const groups: WeightsGroup[] = weightsManifest.map((group: unknown, g) => {
    if (!isRecord(group) || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
      fail(where, `${MODEL_FILE}: weightsManifest[${g}] needs paths and weights arrays`);
    }
    const paths = group.paths.map((p: unknown) => {
      if (typeof p !== 'string' || !isSafeBundleName(p)) {
        fail(where, `${MODEL_FILE}: weightsManifest[${g}] names ${JSON.stringify(p)}, not a plain relative file name`);
      }
      return p;
    });
    const weights = group.weights.map((w: unknown, i) => parseWeightSpec(w, `weightsManifest[${g}].weights[${i}]`, where));
    return { paths, weights };
  });
  return { ...json, modelTopology, weightsManifest: groups } as LayersModelJson;
}

function layerConfig(layer: unknown): Record<string, unknown> | undefined {
  return isRecord(layer) && isRecord(layer.config) ? layer.config : undefined;
}

/** Layers that keep their input's width: seen after the last Dense, the Dense still fixes the output units. */
const SHAPE_PRESERVING = new Set(['Activation', 'Dropout', 'Softmax', 'ReLU', 'LeakyReLU', 'ELU', 'BatchNormalization', 'LayerNormalization', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout']);

/**
 * The model's input width and output units as far as they can be read from the topology (Sequential, or functional
 * with one input and one output); `undefined` where the topology is something else. Loading the model
 * (tf-model.ts) checks the real shapes again, so this is only the early, cheap check.
 */
export function topologyShape(topology: Record<string, unknown>): { inputShape?: (number | null)[]; units?: number } {
  const config = topology.config;
  const layers = Array.isArray(config) ? config : isRecord(config) && Array.isArray(config.layers) ? config.layers : undefined;
  if (layers === undefined || layers.length === 0) return {};
  const byName = (name: unknown) => layers.find((l) => layerConfig(l)?.name === name);
  const shapeOf = (l: unknown) => {
    const c = layerConfig(l);
    const s = c?.batch_input_shape ?? c?.batchInputShape;
    return Array.isArray(s) && s.every((d) => d === null || isNonNegInt(d)) ? (s as (number | null)[]) : undefined;
  };
  const unitsOf = (l: unknown) => {
    const u = layerConfig(l)?.units;
    return isNonNegInt(u) ? u : undefined;
  };
  if (topology.class_name === 'Sequential') {
    let units: number | undefined;
    for (let i = layers.length - 1; i >= 0; i--) {
      units = unitsOf(layers[i]);
      if (units !== undefined) break;
      const cls = isRecord(layers[i]) ? (layers[i] as Record<string, unknown>).class_name : undefined;
      if (typeof cls !== 'string' || !SHAPE_PRESERVING.has(cls)) break;
    }
    return { inputShape: shapeOf(layers[0]), units };
  }
  if (isRecord(config) && Array.isArray(config.input_layers) && Array.isArray(config.output_layers)) {
    const ins = config.input_layers as unknown[];
    const outs = config.output_layers as unknown[];
    if (ins.length !== 1 || outs.length !== 1 || !Array.isArray(ins[0]) || !Array.isArray(outs[0])) return {};
    return { inputShape: shapeOf(byName(ins[0][0])), units: unitsOf(byName(outs[0][0])) };
  }
  return {};
}

/**
 * Checks that `files` is a complete fedpool model bundle and returns its parsed parts. Every error is one line, e.g.
 * `model bundle: weights file weights.bin is missing`. `where` prefixes errors (e.g. `model bundle ./rm`).
 */
export function validateBundle(files: BundleFiles, where = 'model bundle'): ValidBundle {
  for (const name of files.keys()) {
    if (!isSafeBundleName(name)) fail(where, `file name ${JSON.stringify(name)} is not a plain relative file name`);
  }
  let manifest: Manifest;
  try {
    manifest = parseManifest(parseJsonFile(files, MANIFEST_FILE, where), `${where}: ${MANIFEST_FILE}`);
  } catch (err) {
    if (err instanceof BundleError || !(err instanceof Error)) throw err;
    throw new BundleError(err.message); // already prefixed with `where`
  }
  const model = parseModelJson(parseJsonFile(files, MODEL_FILE, where), where);

  const weightPaths: string[] = [];
  for (const group of model.weightsManifest) {
    let have = 0;
    for (const path of group.paths) {
      const bytes = files.get(path);
      if (bytes === undefined) fail(where, `weights file ${path} is missing`);
      if (path === MANIFEST_FILE || path === MODEL_FILE || weightPaths.includes(path)) fail(where, `weights file ${path} is named twice`);
      weightPaths.push(path);
      have += bytes.byteLength;
    }
    const need = group.weights.reduce((sum, w) => sum + weightBytes(w), 0);
    if (have !== need) {
      const names = group.paths.join(' + ');
      fail(where, `weights file ${names} has ${have} bytes but model.json's weight specs need ${need}`);
    }
  }
  for (const name of files.keys()) {
    if (name !== MANIFEST_FILE && name !== MODEL_FILE && !weightPaths.includes(name)) {
      fail(where, `unexpected file ${name} (not named in model.json's weightsManifest)`);
    }
  }

  const { inputShape, units } = topologyShape(model.modelTopology);
  if (inputShape !== undefined) {
    if (inputShape.length !== 2) {
      fail(where, `the model's input has shape [${inputShape.map(String).join(',')}]; fedpool models take one flat vector per item`);
    }
    if (inputShape[1] !== manifest.input.dim) {
      fail(where, `the model's input has ${String(inputShape[1])} features but fedpool.json says ${manifest.input.kind}:${manifest.input.dim}`);
    }
  }
  const want = outputUnits(manifest.output);
  if (units !== undefined && units !== want) {
    fail(where, `the model has ${units} output units but fedpool.json's output ${manifest.output.kind === 'reward' ? 'reward needs 1' : `classes:${want} needs ${want}`}`);
  }
  return { manifest, model, weightPaths };
}

// Records off: a plain MessagePack map, readable by any MessagePack implementation. Uint8Array values encode as bin.
const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/** Validates `files` and packs them into the bundle blob (names sorted, so equal files give equal bytes). */
export function packBundle(files: BundleFiles): Uint8Array {
  validateBundle(files);
  const names = [...files.keys()].sort();
  const obj: Record<string, Uint8Array> = {};
  for (const name of names) obj[name] = files.get(name) as Uint8Array;
  // Copy out: msgpackr returns a view into its reusable buffer.
  return new Uint8Array(packr.pack({ files: obj }));
}

/** Reverses packBundle and validates the result. Each file gets its own copy of the bytes. */
export function unpackBundle(bytes: Uint8Array, where = 'model bundle'): { files: Map<string, Uint8Array> } & ValidBundle {
  let decoded: unknown;
  try {
    decoded = unpackr.unpack(bytes);
  } catch (err) {
    fail(where, `not a packed fedpool bundle (${err instanceof Error ? err.message.replace(/\s+/g, ' ') : String(err)})`);
  }
  if (!isRecord(decoded) || !isRecord(decoded.files) || Object.keys(decoded).length !== 1) {
    fail(where, 'not a packed fedpool bundle (expected a map {files: {name: bytes}})');
  }
  const files = new Map<string, Uint8Array>();
  for (const [name, value] of Object.entries(decoded.files)) {
    if (!(value instanceof Uint8Array)) fail(where, `file ${JSON.stringify(name)} is not binary data`);
    files.set(name, value.slice());
  }
  return { files, ...validateBundle(files, where) };
}

/**
 * Only the manifest of a packed bundle, without validating the model files: what routing decisions need (the
 * coordinator at submit, a worker before it scores). Loading the bundle validates everything as usual.
 */
export function packedManifest(bytes: Uint8Array, where = 'model bundle'): Manifest {
  let decoded: unknown;
  try {
    decoded = unpackr.unpack(bytes);
  } catch (err) {
    fail(where, `not a packed fedpool bundle (${err instanceof Error ? err.message.replace(/\s+/g, ' ') : String(err)})`);
  }
  if (!isRecord(decoded) || !isRecord(decoded.files)) fail(where, 'not a packed fedpool bundle (expected a map {files: {name: bytes}})');
  const manifest = decoded.files[MANIFEST_FILE];
  if (!(manifest instanceof Uint8Array)) fail(where, `${MANIFEST_FILE} is missing`);
  const json = parseJsonFile(new Map([[MANIFEST_FILE, manifest]]), MANIFEST_FILE, where);
  try {
    return parseManifest(json, `${where}: ${MANIFEST_FILE}`);
  } catch (err) {
    if (err instanceof BundleError || !(err instanceof Error)) throw err;
    throw new BundleError(err.message); // already prefixed with `where`, as validateBundle reports it
  }
}

/** sha-256 of the bundle blob, lower-case hex: the model hash. WebCrypto, so it works in Node ≥ 20 and browsers. */
export async function bundleHash(bytes: Uint8Array): Promise<string> {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}
