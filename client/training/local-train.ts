import * as tf from '@tensorflow/tfjs';
import { ModelError } from '../../shared/model/errors.js';
import { featurizeBatch } from '../../shared/model/featurizer.js';
import { outputUnits, type Manifest } from '../../shared/model/manifest.js';
import { parameterCount, readFlat } from '../../shared/model/weights.js';
import { deriveSeed, mulberry32 } from '../../shared/random.js';

/**
 * A client's local fine-tuning: `steps` minibatch SGD steps with worker-side Polyak momentum (MoNNA:
 * m ← β·m + (1 − β)·g, w ← w − lr·m), on the model's own variables, on whichever TF.js backend is active. The
 * result is what a fine-tuning shard sends back: the update (new − initial weights, flattened in the order of
 * shared/model/weights.ts), optionally the momentum (same order), the sample count and the mean loss.
 */

/** Classification rows: `x` is row-major [n, dim] (already featurized), `labels` the class ids, n = labels.length. */
export interface ClassifyData {
  kind: 'classify';
  x: Float32Array;
  labels: Int32Array;
}

/** Preference pairs: `chosen` and `rejected` are row-major [n, dim] feature rows (row i of each is pair i). */
export interface PairsData {
  kind: 'pairs';
  chosen: Float32Array;
  rejected: Float32Array;
}

export type LocalTrainData = ClassifyData | PairsData;

export interface LocalTrainOptions {
  steps: number;
  batchSize: number;
  lr: number;
  /** β of the Polyak momentum, in [0, 1); 0 is plain SGD. */
  momentum: number;
  /** Seeds the minibatch order. */
  seed: number;
  /** Return the momentum after training (MoNNA clients send it instead of / beside the update). */
  sendMomentum?: boolean;
  /** The client's momentum from its previous round (flat, same order as the weights); default zeros. */
  initialMomentum?: Float32Array;
  /**
   * Index of the first step in the seed's minibatch sequence (default 0). A client that continues with
   * `startStep: previous steps` and the returned momentum trains exactly as if it had run the steps in one call.
   */
  startStep?: number;
}

export interface LocalTrainResult {
  /** New − initial weights, flattened (shared/model/weights.ts order). */
  update: Float32Array;
  /** Momentum after the last step, when `sendMomentum`. */
  momentum?: Float32Array;
  /** Training examples (rows or pairs) the update is built on: min(n, steps × batch). */
  samples: number;
  /** Mean over the steps of the minibatch loss, each taken before its step's update. */
  loss: number;
}

function allFinite(a: Float32Array): boolean {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return Number.isFinite(s);
}

/** Checks the data against the model; returns n. Errors are one-line ModelErrors (retrying elsewhere cannot help). */
function checkData(manifest: Manifest, data: LocalTrainData): number {
  const dim = manifest.input.dim;
  if (data.kind === 'classify') {
    if (manifest.output.kind !== 'classes') throw new ModelError('classify training needs a classifier model; this model outputs a reward');
    const n = data.labels.length;
    if (data.x.length !== n * dim) throw new ModelError(`classify data: x has ${data.x.length} numbers; ${n} labels × ${dim} features need ${n * dim}`);
    const classes = manifest.output.classes;
    for (let i = 0; i < n; i++) {
      const l = data.labels[i];
      if (l < 0 || l >= classes) throw new ModelError(`classify data: label ${i} is ${l}, not a class id in [0, ${classes})`);
    }
    if (!allFinite(data.x)) throw new ModelError('classify data: x has a non-finite number');
    return n;
  }
  if (manifest.output.kind !== 'reward') throw new ModelError('reward-pairs training needs a reward model; this model is a classifier');
  if (data.chosen.length !== data.rejected.length) {
    throw new ModelError(`pairs data: chosen has ${data.chosen.length} numbers, rejected ${data.rejected.length}`);
  }
  if (data.chosen.length % dim !== 0) throw new ModelError(`pairs data: ${data.chosen.length} numbers is not a whole number of ${dim}-feature rows`);
  if (!allFinite(data.chosen) || !allFinite(data.rejected)) throw new ModelError('pairs data: a feature row has a non-finite number');
  return data.chosen.length / dim;
}

function checkOptions(opts: LocalTrainOptions, params: number): void {
  const int = (v: number, name: string, min: number) => {
    if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`local training: ${name} must be an integer ≥ ${min}, got ${String(v)}`);
  };
  int(opts.steps, 'steps', 1);
  int(opts.batchSize, 'batchSize', 1);
  int(opts.startStep ?? 0, 'startStep', 0);
  if (!Number.isSafeInteger(opts.seed)) throw new RangeError(`local training: seed must be an integer, got ${String(opts.seed)}`);
  if (!(opts.lr > 0) || !Number.isFinite(opts.lr)) throw new RangeError(`local training: lr must be a positive number, got ${String(opts.lr)}`);
  if (!(opts.momentum >= 0 && opts.momentum < 1)) throw new RangeError(`local training: momentum β must be in [0, 1), got ${String(opts.momentum)}`);
  const m = opts.initialMomentum;
  if (m !== undefined && (!(m instanceof Float32Array) || m.length !== params)) {
    throw new RangeError(`local training: momentum has ${m instanceof Float32Array ? m.length : 'no'} entries, the model has ${params} parameters`);
  }
}

/**
 * The minibatch sequence of a seed: the concatenation of per-epoch permutations of [0, n) (epoch e shuffled with
 * mulberry32(fnv1a32("fedpool-batch:<seed>:<e>")), Fisher–Yates); step s takes positions [s·b, (s+1)·b). So a batch
 * samples without replacement within an epoch (a batch crossing an epoch boundary finishes one epoch and starts the
 * next), and any step's batch is a pure function of (seed, n, b, s): the sequence resumes from any step.
 */
export class MinibatchSampler {
  private epoch = -1;
  private perm = new Int32Array(0);
  constructor(
    readonly n: number,
    readonly batch: number,
    readonly seed: number,
  ) {}

  private permutation(epoch: number): Int32Array {
    if (epoch !== this.epoch) {
      const rand = mulberry32(deriveSeed(this.seed, 'batch', epoch));
      const p = new Int32Array(this.n);
      for (let i = 0; i < this.n; i++) p[i] = i;
      for (let i = this.n - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        const t = p[i];
        p[i] = p[j];
        p[j] = t;
      }
      this.epoch = epoch;
      this.perm = p;
    }
    return this.perm;
  }

  /** The row indices of step `step`. */
  indices(step: number): Int32Array {
    const out = new Int32Array(this.batch);
    for (let k = 0; k < this.batch; k++) {
      const pos = step * this.batch + k;
      out[k] = this.permutation(Math.floor(pos / this.n))[pos % this.n];
    }
    return out;
  }
}

/**
 * Logits of a classifier. fedpool's classifiers end in a Dense layer with softmax; cross-entropy on
 * log(clamp(softmax)) would lose the gradient exactly where the model is confidently wrong (the clamp's gradient is
 * zero), and log of a rounded probability is inaccurate. So, when the last layer is that softmax Dense, we run the
 * layers before it and apply its kernel and bias ourselves (the same variables, so gradients reach them), giving the
 * logits; the loss is then the stable logSoftmax cross-entropy. Any other last layer: undefined (the caller falls
 * back to the clamped log of the model's output).
 */
function logitsOf(model: tf.LayersModel, x: tf.Tensor2D): tf.Tensor2D | undefined {
  const layers = model.layers;
  const last = layers[layers.length - 1];
  if (last === undefined || last.getClassName() !== 'Dense') return undefined;
  const config = last.getConfig();
  if (config.activation !== 'softmax' || config.useBias === false) return undefined;
  const weights = last.trainableWeights;
  if (weights.length !== 2) return undefined;
  let h: tf.Tensor = x;
  for (const layer of layers.slice(0, -1)) h = layer.apply(h) as tf.Tensor;
  const [kernel, bias] = weights;
  return tf.add(tf.matMul(h as tf.Tensor2D, kernel.read() as tf.Tensor2D), bias.read()) as tf.Tensor2D;
}

/** Smallest probability the fallback's log sees. */
const PROB_FLOOR = 1e-7;

function classifyLoss(model: tf.LayersModel, classes: number, x: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  const oneHot = tf.oneHot(labels, classes);
  const logits = logitsOf(model, x);
  const logProbs = logits !== undefined ? tf.logSoftmax(logits) : tf.log(tf.clipByValue(model.apply(x) as tf.Tensor, PROB_FLOOR, 1));
  return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, logProbs), 1))) as tf.Scalar;
}

/** Bradley–Terry: mean of −log σ(r_c − r_r) = softplus(−(r_c − r_r)), one forward pass over both halves. */
function pairsLoss(model: tf.LayersModel, chosen: tf.Tensor2D, rejected: tf.Tensor2D): tf.Scalar {
  const b = chosen.shape[0];
  const r = (model.apply(tf.concat([chosen, rejected], 0)) as tf.Tensor).reshape([2 * b]);
  const [rc, rr] = tf.split(r, 2);
  return tf.mean(tf.softplus(tf.neg(tf.sub(rc, rr)))) as tf.Scalar;
}

function variablesOf(model: tf.LayersModel): tf.Variable[] {
  return model.trainableWeights.map((w) => {
    const v = w.read();
    if (!(v instanceof tf.Variable)) throw new Error(`weight ${w.name} is not backed by a TF.js variable`);
    return v;
  });
}

/**
 * Trains `model` in place (its weights end at the trained values) for `opts.steps` steps on `data`, and returns the
 * shard result. Every tensor it makes is disposed; no TF.js setting is changed.
 */
export async function trainLocally(model: tf.LayersModel, manifest: Manifest, data: LocalTrainData, opts: LocalTrainOptions): Promise<LocalTrainResult> {
  const params = parameterCount(model);
  checkOptions(opts, params);
  const n = checkData(manifest, data);
  if (n === 0) throw new ModelError('local training: the client has no data');
  const dim = manifest.input.dim;
  const batch = Math.min(opts.batchSize, n);
  const sampler = new MinibatchSampler(n, batch, opts.seed);
  const start = opts.startStep ?? 0;
  const vars = variablesOf(model);
  // The starting weights stay on the backend; the update is taken there and read back once.
  const initial = vars.map((v) => tf.clone(v));
  const beta = opts.momentum;
  const classes = outputUnits(manifest.output);

  // The client's data and momentum live on the backend for the whole call.
  const inputs = tf.tidy(() =>
    data.kind === 'classify'
      ? [tf.tensor2d(data.x, [n, dim]), tf.tensor1d(data.labels, 'int32')]
      : [tf.tensor2d(data.chosen, [n, dim]), tf.tensor2d(data.rejected, [n, dim])],
  );
  const m: tf.Variable[] = [];
  let offset = 0;
  for (const v of vars) {
    const size = v.size;
    const init = opts.initialMomentum?.slice(offset, offset + size) ?? new Float32Array(size);
    m.push(tf.tidy(() => tf.variable(tf.tensor(init, v.shape, 'float32'), false)));
    offset += size;
  }
  const losses: tf.Scalar[] = [];
  try {
    for (let s = 0; s < opts.steps; s++) {
      const idx = sampler.indices(start + s);
      losses.push(
        tf.tidy(() => {
          const rows = tf.tensor1d(idx, 'int32');
          const a = tf.gather(inputs[0], rows);
          const b = tf.gather(inputs[1], rows);
          const f = (): tf.Scalar =>
            data.kind === 'classify' ? classifyLoss(model, classes, a as tf.Tensor2D, b as tf.Tensor1D) : pairsLoss(model, a as tf.Tensor2D, b as tf.Tensor2D);
          const { value, grads } = tf.variableGrads(f, vars);
          vars.forEach((v, i) => {
            const g = grads[v.name];
            if (g === undefined) return; // a weight the loss does not reach: no gradient, no step
            m[i].assign(tf.add(tf.mul(m[i], beta), tf.mul(g, 1 - beta)));
            v.assign(tf.sub(v, tf.mul(m[i], opts.lr)));
          });
          return value;
        }),
      );
    }
    const meanLoss = tf.tidy(() => tf.mean(tf.stack(losses)));
    const loss = (await meanLoss.data())[0];
    meanLoss.dispose();
    const deltas = tf.tidy(() => vars.map((v, i) => tf.sub(v, initial[i]!)));
    let update: Float32Array;
    try {
      update = await readFlat(deltas);
    } finally {
      tf.dispose(deltas);
    }
    const result: LocalTrainResult = { update, samples: Math.min(n, opts.steps * batch), loss };
    // Async reads: webgpu in Node has no synchronous path.
    if (opts.sendMomentum === true) result.momentum = await readFlat(m);
    return result;
  } finally {
    tf.dispose(initial);
    tf.dispose(losses);
    tf.dispose(inputs);
    tf.dispose(m);
  }
}

/** A preference pair as text (`text:DIM` reward models). */
export interface TextPair {
  prompt?: string;
  chosen: string;
  rejected: string;
}

/** Featurizes text preference pairs (kept beside the dataset parser, which must not load TF.js). */
export { featurizePairs } from './datasets.js';
