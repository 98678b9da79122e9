// Softmax regression on a Gaussian mixture (docs/algorithms.md §2.5 and §3.5): C classes with means 0.6·N(0, I_F) and unit
// noise; each client's label proportions ~ Dir(α). Platform-free, hand-written loops, float64 arithmetic throughout
// (the data is stored as float32).
//
// Storage: every client's rows live once in one Float32Array (row-major, F per row) with one Int32Array of labels;
// client n owns the contiguous rows [n·S, (n+1)·S). A shared class-balanced test set is stored the same way.
// Model: W (C×F, row-major) followed by b (C), flattened: C·F + C parameters (210 for 10×20). x₀ = 0.
import { dirichletSample } from '../../shared/data/partition.js';
import { deriveSeed, gaussianFill, mulberry32 } from '../../shared/random.js';
import type { LocalOptions, LocalResult, Rng, LearningTask } from '../types.js';

export interface SoftmaxOptions {
  numClients: number;
  /** Training rows per client. */
  samplesPerClient: number;
  /** C (default 10). */
  classes?: number;
  /** F (default 20). */
  features?: number;
  /** Dirichlet concentration of each client's label proportions. */
  alpha: number;
  seed: number;
  /** Rows of the shared test set (class-balanced: row i has label i mod C). Default 10,000. */
  testSamples?: number;
  /** Scale of the class means (default 0.6). */
  meanScale?: number;
}

export interface SoftmaxTask extends LearningTask {
  readonly classes: number;
  readonly features: number;
  readonly samplesPerClient: number;
  /** Class means, C×F row-major. */
  readonly means: Float64Array;
  /** Client n owns training rows [offsets[n], offsets[n+1]) (length numClients + 1); samplesPerClient is S for generated data, the rounded mean for real data. */
  readonly offsets: Int32Array;
  /** Training rows × F and labels, clients' rows contiguous (generated data: client n owns rows [n·S, (n+1)·S)). */
  readonly trainX: Float32Array;
  readonly trainY: Int32Array;
  readonly testX: Float32Array;
  readonly testY: Int32Array;
  /** Mean cross-entropy and accuracy of model `x` on rows [from, to) of (X, Y). */
  lossOn(x: ArrayLike<number>, X: Float32Array, Y: Int32Array, from: number, to: number): { loss: number; accuracy: number };
  /**
   * Mean cross-entropy over training rows [from, to) at model `x` (returned) and its gradient (written into `grad`,
   * length dim), in float64; labels flipped (C − 1 − y) when `flip`.
   */
  gradientOn(x: ArrayLike<number>, from: number, to: number, flip: boolean, grad: Float64Array): number;
}

function checkInt(value: number, what: string, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new RangeError(`softmax task: ${what} must be an integer ≥ ${min}, got ${String(value)}`);
}

/** An independent stream per purpose (deriveSeed), so e.g. the class means do not depend on numClients. */
function stream(seed: number, purpose: 'means' | 'labels' | 'train-rows' | 'test-rows'): () => number {
  return mulberry32(deriveSeed(seed, 'softmax', purpose));
}

/** Logits of `row` under the flattened model w (W C×F then b) into `logits`; returns the largest. */
function forward(w: Float64Array, row: Float64Array, C: number, F: number, logits: Float64Array): number {
  let max = -Infinity;
  const bias = C * F;
  for (let k = 0; k < C; k++) {
    let s = w[bias + k];
    const o = k * F;
    let j = 0;
    for (; j + 3 < F; j += 4) s += w[o + j] * row[j] + w[o + j + 1] * row[j + 1] + w[o + j + 2] * row[j + 2] + w[o + j + 3] * row[j + 3];
    for (; j < F; j++) s += w[o + j] * row[j];
    logits[k] = s;
    if (s > max) max = s;
  }
  return max;
}

/** Add ∇ cross-entropy(row, label) at w into g (unscaled); returns the loss. Overwrites `logits`. */
function rowGradient(w: Float64Array, row: Float64Array, label: number, C: number, F: number, logits: Float64Array, g: Float64Array): number {
  const max = forward(w, row, C, F, logits);
  const own = logits[label] - max;
  let z = 0;
  for (let k = 0; k < C; k++) {
    const e = Math.exp(logits[k] - max);
    logits[k] = e;
    z += e;
  }
  const inv = 1 / z;
  const bias = C * F;
  for (let k = 0; k < C; k++) {
    const coef = logits[k] * inv - (k === label ? 1 : 0);
    g[bias + k] += coef;
    const o = k * F;
    let j = 0;
    for (; j + 3 < F; j += 4) {
      g[o + j] += coef * row[j];
      g[o + j + 1] += coef * row[j + 1];
      g[o + j + 2] += coef * row[j + 2];
      g[o + j + 3] += coef * row[j + 3];
    }
    for (; j < F; j++) g[o + j] += coef * row[j];
  }
  return Math.log(z) - own;
}

function loadRow(X: Float32Array, i: number, F: number, row: Float64Array): void {
  const at = i * F;
  for (let j = 0; j < F; j++) row[j] = X[at + j];
}

export function createSoftmaxTask(opts: SoftmaxOptions): SoftmaxTask {
  const N = opts.numClients;
  const S = opts.samplesPerClient;
  const C = opts.classes ?? 10;
  const F = opts.features ?? 20;
  const T = opts.testSamples ?? 10_000;
  const alpha = opts.alpha;
  checkInt(N, 'numClients', 1);
  checkInt(S, 'samplesPerClient', 1);
  checkInt(C, 'classes', 2);
  checkInt(F, 'features', 1);
  checkInt(T, 'testSamples', 1);
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw new RangeError(`softmax task: alpha must be a finite number > 0, got ${String(alpha)}`);
  const scale = opts.meanScale ?? 0.6;

  const means = new Float64Array(C * F);
  gaussianFill(stream(opts.seed, 'means'), means, scale);

  const noiseRow = new Float64Array(F);
  const fillRows = (X: Float32Array, Y: Int32Array, rng: () => number): void => {
    for (let i = 0; i < Y.length; i++) {
      const y = Y[i];
      gaussianFill(rng, noiseRow, 1);
      const at = i * F;
      const mu = y * F;
      for (let j = 0; j < F; j++) X[at + j] = means[mu + j] + noiseRow[j];
    }
  };

  // Training data: per client, proportions ~ Dir(α), then S labels drawn from them, then the features.
  const trainY = new Int32Array(N * S);
  const trainX = new Float32Array(N * S * F);
  const labelRng = stream(opts.seed, 'labels');
  const cum = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const props = dirichletSample(C, alpha, labelRng);
    let acc = 0;
    for (let k = 0; k < C; k++) cum[k] = acc += props[k];
    for (let i = 0; i < S; i++) {
      const u = labelRng() * acc;
      let k = 0;
      while (k < C - 1 && u >= cum[k]) k++;
      trainY[n * S + i] = k;
    }
  }
  fillRows(trainX, trainY, stream(opts.seed, 'train-rows'));

  const testY = new Int32Array(T);
  for (let i = 0; i < T; i++) testY[i] = i % C;
  const testX = new Float32Array(T * F);
  fillRows(testX, testY, stream(opts.seed, 'test-rows'));

  const offsets = Int32Array.from({ length: N + 1 }, (_, n) => n * S);
  return buildSoftmaxTask({ name: 'softmax', classes: C, features: F, means, samplesPerClient: S, offsets, trainX, trainY, testX, testY });
}

interface SoftmaxData {
  name: string;
  classes: number;
  features: number;
  means: Float64Array;
  samplesPerClient: number;
  offsets: Int32Array;
  trainX: Float32Array;
  trainY: Int32Array;
  testX: Float32Array;
  testY: Int32Array;
}

/** The task over rows already laid out client by client (generated, or real data reordered by a partition). */
function buildSoftmaxTask(data: SoftmaxData): SoftmaxTask {
  const { classes: C, features: F, means, samplesPerClient: S, offsets, trainX, trainY, testX, testY } = data;
  const N = offsets.length - 1;
  const T = testY.length;
  const P = C * F + C;
  let largest = 0;
  for (let n = 0; n < N; n++) largest = Math.max(largest, offsets[n + 1]! - offsets[n]!);

  // Scratch (a task instance is used by one thread at a time).
  const yW = new Float64Array(P);
  const grad = new Float64Array(P);
  const mom = new Float64Array(P);
  const logits = new Float64Array(C);
  const order = new Int32Array(largest);

  const row = new Float64Array(F); // scratch: the current row in float64
  const evalW = new Float64Array(P); // scratch: the model being evaluated, in float64 (keeps the loops monomorphic)

  /** Mean cross-entropy and accuracy on rows [from, to). */
  const lossOn = (x: ArrayLike<number>, X: Float32Array, Y: Int32Array, from: number, to: number): { loss: number; accuracy: number } => {
    for (let p = 0; p < P; p++) evalW[p] = x[p];
    let loss = 0;
    let correct = 0;
    for (let i = from; i < to; i++) {
      loadRow(X, i, F, row);
      const max = forward(evalW, row, C, F, logits);
      let z = 0;
      for (let k = 0; k < C; k++) z += Math.exp(logits[k] - max);
      const y = Y[i];
      loss += max + Math.log(z) - logits[y];
      if (logits[y] === max) {
        // correct unless an earlier class ties at the max (argmax takes the lowest index)
        let first = 0;
        while (logits[first] !== max) first++;
        if (first === y) correct++;
      }
    }
    const n = to - from;
    return { loss: n > 0 ? loss / n : NaN, accuracy: n > 0 ? correct / n : NaN };
  };

  /**
   * Add the gradient of the cross-entropy of row `i` of (X, Y) at model w into g (unscaled); returns its loss.
   * `flip` trains on C − 1 − y.
   */
  const accumulateRow = (w: Float64Array, i: number, X: Float32Array, Y: Int32Array, flip: boolean, g: Float64Array): number => {
    loadRow(X, i, F, row);
    return rowGradient(w, row, flip ? C - 1 - Y[i] : Y[i], C, F, logits, g);
  };

  const gradW = new Float64Array(P);
  const gradientOn = (x: ArrayLike<number>, from: number, to: number, flip: boolean, g: Float64Array): number => {
    for (let p = 0; p < P; p++) gradW[p] = x[p];
    g.fill(0);
    let loss = 0;
    for (let i = from; i < to; i++) loss += accumulateRow(gradW, i, trainX, trainY, flip, g);
    const n = to - from;
    for (let p = 0; p < P; p++) g[p] /= n;
    return loss / n;
  };

  const task: SoftmaxTask = {
    name: data.name,
    numClients: N,
    dim: P,
    classes: C,
    features: F,
    samplesPerClient: S,
    means,
    offsets,
    trainX,
    trainY,
    testX,
    testY,
    lossOn,
    gradientOn,
    initial(): Float32Array {
      return new Float32Array(P);
    },
    /**
     * Minibatch SGD on the client's rows: each step draws min(batchSize, S) distinct rows (a partial Fisher–Yates
     * shuffle with `rng`), g = ∇ mean cross-entropy, m ← βm + (1−β)g, y ← y − γ·m (g when β = 0). `loss` is the mean
     * minibatch loss over the steps. With β = 0 the momentum buffer carries no state and is left untouched.
     */
    localUpdate(client: number, x: Float32Array, o: LocalOptions, rng: Rng, out: Float32Array, momentum?: Float32Array): LocalResult {
      if (!(client >= 0 && client < N) || !Number.isInteger(client)) throw new RangeError(`softmax task: no client ${String(client)}`);
      if (momentum !== undefined && momentum.length !== P) throw new RangeError(`softmax task: momentum must have length ${P}`);
      const beta = o.momentum;
      const lr = o.lr;
      const flip = o.flipLabels === true;
      const base = offsets[client]!;
      const S = offsets[client + 1]! - base;
      const B = Math.max(1, Math.min(S, Math.floor(o.batchSize)));
      for (let p = 0; p < P; p++) yW[p] = x[p];
      const useMomentum = beta !== 0;
      if (useMomentum) {
        if (momentum !== undefined) for (let p = 0; p < P; p++) mom[p] = momentum[p];
        else mom.fill(0);
      }
      for (let i = 0; i < S; i++) order[i] = base + i;
      let lossSum = 0;
      for (let step = 0; step < o.steps; step++) {
        if (B < S) {
          for (let i = 0; i < B; i++) {
            const j = i + Math.floor(rng() * (S - i));
            const t = order[i];
            order[i] = order[j];
            order[j] = t;
          }
        }
        grad.fill(0);
        let batchLoss = 0;
        for (let r = 0; r < B; r++) batchLoss += accumulateRow(yW, order[r], trainX, trainY, flip, grad);
        lossSum += batchLoss / B;
        const inv = 1 / B;
        if (useMomentum) {
          for (let p = 0; p < P; p++) {
            const mp = beta * mom[p] + (1 - beta) * grad[p] * inv;
            mom[p] = mp;
            yW[p] -= lr * mp;
          }
        } else {
          const s = lr * inv;
          for (let p = 0; p < P; p++) yW[p] -= s * grad[p];
        }
      }
      for (let p = 0; p < P; p++) out[p] = yW[p] - x[p];
      if (useMomentum && momentum !== undefined) for (let p = 0; p < P; p++) momentum[p] = mom[p];
      return { samples: S, loss: o.steps > 0 ? lossSum / o.steps : NaN };
    },
    evaluate(x: Float32Array): { loss: number; accuracy: number | null } {
      return lossOn(x, testX, testY, 0, T);
    },
  };
  return task;
}

export interface CentralisedResult {
  /** The trained model. */
  model: Float32Array;
  /** Test loss and accuracy of the trained model (§3.5's target is `loss + 0.03`). */
  loss: number;
  accuracy: number;
  /** Final mean training loss. */
  trainLoss: number;
}

/**
 * Train on all clients' data pooled, with plain full-batch gradient descent from x₀ = 0 (`steps` steps at rate `lr`),
 * as the estimate of the centralised optimum. Deterministic (no randomness).
 */
export function centralisedOptimum(task: SoftmaxTask, steps = 300, lr = 1): CentralisedResult {
  const rows = task.trainY.length;
  const w = new Float64Array(task.dim);
  let trainLoss = NaN;
  const g = new Float64Array(task.dim);
  for (let s = 0; s < steps; s++) {
    trainLoss = task.gradientOn(w, 0, rows, false, g);
    for (let p = 0; p < w.length; p++) w[p] -= lr * g[p];
  }
  const model = Float32Array.from(w);
  const e = task.lossOn(model, task.testX, task.testY, 0, task.testY.length);
  return { model, loss: e.loss, accuracy: e.accuracy, trainLoss };
}

/** Real rows and labels (one [n, F] matrix each for training and test) for createDataSoftmaxTask. */
export interface LabelledRows {
  features: Float32Array;
  labels: Int32Array;
}

/**
 * Softmax regression on real data (MNIST, SpamAssassin): the training rows are reordered so that each client's rows
 * (`parts[n]`, e.g. a Dirichlet partition by label) are contiguous; the test rows are the shared evaluation set.
 */
export function createDataSoftmaxTask(opts: { name: string; classes: number; features: number; train: LabelledRows; test: LabelledRows; parts: readonly (readonly number[])[] }): SoftmaxTask {
  const { classes: C, features: F, train, test, parts } = opts;
  checkInt(C, 'classes', 2);
  checkInt(F, 'features', 1);
  const n = train.labels.length;
  if (train.features.length !== n * F || test.features.length !== test.labels.length * F) throw new RangeError(`${opts.name} task: features must hold rows × ${F} values`);
  if (parts.length === 0) throw new RangeError(`${opts.name} task: needs at least one client`);
  let total = 0;
  for (const p of parts) total += p.length;
  const trainX = new Float32Array(total * F);
  const trainY = new Int32Array(total);
  const offsets = new Int32Array(parts.length + 1);
  let at = 0;
  parts.forEach((rows, client) => {
    if (rows.length === 0) throw new RangeError(`${opts.name} task: client ${client} has no rows`);
    for (const r of rows) {
      if (!(r >= 0 && r < n) || !Number.isInteger(r)) throw new RangeError(`${opts.name} task: client ${client} names row ${r}, not one of the ${n} rows`);
      trainX.set(train.features.subarray(r * F, (r + 1) * F), at * F);
      trainY[at++] = train.labels[r]!;
    }
    offsets[client + 1] = at;
  });
  for (const y of [...trainY, ...test.labels]) if (!(y >= 0 && y < C)) throw new RangeError(`${opts.name} task: label ${y} is not a class in [0, ${C})`);
  return buildSoftmaxTask({
    name: opts.name, classes: C, features: F, means: new Float64Array(0), samplesPerClient: Math.round(total / parts.length),
    offsets, trainX, trainY, testX: Float32Array.from(test.features), testY: Int32Array.from(test.labels),
  });
}
