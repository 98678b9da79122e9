// The local training of a simulated worker (`fedpool simulate --live`): softmax regression on a linear classifier
// bundle (`hidden: []`), in plain JS with the simulator's own minibatch SGD (simulations/tasks/softmax.ts), so a
// thousand simulated workers in a few processes need no TF.js threads. It implements the worker's Trainer interface,
// so leases, momentum, label flipping and results go through the real lease runner and connection.
//
// Layouts: a bundle's flat weights are TF.js order, the kernel [F, C] row-major then the bias [C]; the simulator's
// tasks use W [C, F] row-major then b [C]. Weights and momenta are transposed on the way in and out.
import type { TrainShard } from '../../client/training/pool.js';
import type { LocalTrainResult } from '../../client/training/local-train.js';
import type { Trainer } from '../../client/worker.js';
import { unpackBundle } from '../../shared/model/bundle.js';
import type { Manifest } from '../../shared/model/manifest.js';
import { mulberry32 } from '../../shared/random.js';
import { createDataSoftmaxTask } from '../../simulations/tasks/softmax.js';

interface LinearModel {
  features: number;
  classes: number;
  /** The bundle's own weights (TF.js order): what a lease without weights trains from. */
  initial: Float32Array;
}

/** The linear softmax classifier a bundle holds; a RangeError (not retryable) for any other model. */
export function linearModel(bundle: Uint8Array): LinearModel {
  const { manifest, files } = unpackBundle(bundle, 'live model');
  checkLinear(manifest);
  if (manifest.input.kind !== 'features' || manifest.output.kind !== 'classes') throw new RangeError('unreachable');
  const F = manifest.input.dim;
  const C = manifest.output.classes;
  const bin = files.get('weights.bin');
  if (bin === undefined || bin.byteLength !== (F * C + C) * 4) throw new RangeError(`live model: weights.bin must hold ${F * C + C} float32 values`);
  // Copied: the bundle's bytes may not be 4-byte aligned.
  const initial = new Float32Array(bin.byteLength / 4);
  new Uint8Array(initial.buffer).set(bin);
  return { features: F, classes: C, initial };
}

function checkLinear(m: Manifest): void {
  if (m.hidden.length > 0 || m.input.kind !== 'features' || m.output.kind !== 'classes') {
    throw new RangeError('simulated workers train linear softmax classifiers only (features input, classes output, no hidden layers)');
  }
}

/** TF.js order (kernel [F, C], bias) → simulator order (W [C, F], b). */
export function toTaskLayout(w: Float32Array, F: number, C: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let j = 0; j < F; j++) for (let k = 0; k < C; k++) out[k * F + j] = w[j * C + k]!;
  out.set(w.subarray(F * C), F * C);
  return out;
}

/** Simulator order → TF.js order. */
export function toBundleLayout(x: Float32Array, F: number, C: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let k = 0; k < C; k++) for (let j = 0; j < F; j++) out[j * C + k] = x[k * F + j]!;
  out.set(x.subarray(F * C), F * C);
  return out;
}

export interface LinearTrainerOptions {
  /** Milliseconds this job takes on the virtual clock scaled to wall time (the speed model); awaited after training. */
  delayMs: () => number;
  /** False: every job starts from zero momentum (sim.json's momentum within one job); true: the lease's momentum. */
  keepMomentum: () => boolean;
}

const EMPTY = { features: new Float32Array(0), labels: new Int32Array(0) };

export class LinearTrainer implements Trainer {
  private readonly models = new Map<string, LinearModel>();

  constructor(private readonly options: LinearTrainerOptions) {}

  async train(shard: TrainShard): Promise<LocalTrainResult> {
    let model = this.models.get(shard.hash);
    if (model === undefined) {
      model = linearModel(shard.bundle);
      if (this.models.size >= 4) this.models.clear();
      this.models.set(shard.hash, model);
    }
    const { features: F, classes: C } = model;
    const data = shard.data;
    if (data.kind !== 'classify') throw new RangeError('simulated workers train on classification rows only');
    const n = data.labels.length;
    if (data.x.length !== n * F) throw new RangeError(`data rows have ${data.x.length / Math.max(1, n)} features, the model takes ${F}`);
    const rows = Array.from({ length: n }, (_, i) => i);
    const task = createDataSoftmaxTask({ name: 'live', classes: C, features: F, train: { features: data.x, labels: data.labels }, test: EMPTY, parts: [rows] });
    const o = shard.opts;
    const x = toTaskLayout(shard.weights ?? model.initial, F, C);
    const beta = o.momentum;
    const momentum = beta > 0 ? (shard.momentum !== undefined && this.options.keepMomentum() ? toTaskLayout(shard.momentum, F, C) : new Float32Array(x.length)) : undefined;
    const out = new Float32Array(x.length);
    const r = task.localUpdate(0, x, { steps: o.steps, lr: o.lr, batchSize: o.batchSize, momentum: beta }, mulberry32(o.seed), out, momentum);
    const delay = this.options.delayMs();
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    return {
      update: toBundleLayout(out, F, C),
      ...(o.sendMomentum === true && momentum !== undefined ? { momentum: toBundleLayout(momentum, F, C) } : {}),
      // As the real worker counts them (local-train.ts), not the simulator's rows per client.
      samples: Math.min(n, o.steps * Math.min(o.batchSize, n)),
      loss: r.loss,
    };
  }
}
