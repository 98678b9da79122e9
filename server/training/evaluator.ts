// The coordinator's side of a training job that needs TF.js: the initial weights of the model bundle, evaluation on
// held-out rows, and the bundle with the current weights. Loaded lazily (dynamic import) on the first training job,
// so a coordinator that only scores never loads TF.js. Backend: wasm, falling back to cpu.
//
// Evaluation runs off the coordinator's event loop (issue 12), on one piscina thread (eval-task.ts) shared by every
// job: TF.js's wasm and cpu backends compute inside predict() itself, synchronously, so `await tensor.data()` on the
// main thread would not free the loop (a 4096-row batch of a 1e6-parameter model is about a second of blocked loop).
// The thread runs the same code (evaluateClassesOn, evaluatePairsOn) on the same backend with the same batches, so the
// numbers are bit-identical to the in-process evaluation it replaced. What stays on the loop: copying the bundle and
// eval data into SharedArrayBuffers once (in 4 MiB steps that yield between them) and the weights once per evaluation.
import * as tf from '@tensorflow/tfjs';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { packBundle, unpackBundle, type BundleFiles } from '../../shared/model/bundle.js';
import { loadFromFiles, saveToFiles, WEIGHTS_FILE } from '../../shared/model/tf-model.js';
import { readFlatWeights, setFlatWeights } from '../../shared/model/weights.js';
import type { Manifest } from '../../shared/model/manifest.js';

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

export interface EvalResult {
  loss: number;
  accuracy: number;
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

/** What the evaluation thread is asked (eval-task.ts). Arrays other than `weights` are views of SharedArrayBuffers. */
export type EvalTask =
  | { op: 'classes'; id: string; bundle: Uint8Array; backend: string; weights: Float32Array; dim: number; classes: number; rows: Float32Array; labels: Int32Array }
  | { op: 'pairs'; id: string; bundle: Uint8Array; backend: string; weights: Float32Array; dim: number; chosen: Float32Array; rejected: Float32Array }
  | { op: 'drop'; id: string };

let modelCount = 0;
let threads: Piscina | undefined;
/** Models that have run on the evaluation thread and are not disposed. */
const users = new Set<string>();

/**
 * The evaluation thread, started on the first evaluation. One thread: evaluations queue (FIFO, across jobs) and the
 * thread caches each model it has loaded. Idle, it does not keep the process alive (piscina unrefs it).
 */
function evalThreads(): Piscina {
  threads ??= new Piscina({
    // .ts from source (under tsx, which worker threads inherit through execArgv), .js from dist/.
    filename: new URL(`./eval-task${extname(fileURLToPath(import.meta.url))}`, import.meta.url).href,
    minThreads: 1,
    maxThreads: 1,
  });
  return threads;
}

/**
 * A disposed model: the thread drops its copy; the last one closes the thread (queued evaluations are refused, one
 * already running finishes first and its result is ignored by its job; destroy() instead trips piscina over the
 * running task's late answer).
 */
function forget(id: string): void {
  if (!users.delete(id) || threads === undefined) return;
  const pool = threads;
  if (users.size === 0) {
    threads = undefined;
    void pool.close({ force: true }).catch(() => undefined);
  } else {
    void pool.run({ op: 'drop', id } satisfies EvalTask).catch(() => undefined);
  }
}

/** Bytes copied into a SharedArrayBuffer between two yields to the event loop (about a millisecond of copying). */
const SHARE_STEP = 4 << 20;
const sharedCopies = new WeakMap<ArrayBufferView, Promise<SharedArrayBuffer>>();

/**
 * `src`'s bytes in a SharedArrayBuffer, copied once per array (eval data and bundles are never modified in place) in
 * SHARE_STEP pieces with a yield between them, so a large eval set does not stall the loop while it is copied.
 */
function shared(src: Float32Array | Int32Array | Uint8Array): Promise<SharedArrayBuffer> {
  let copy = sharedCopies.get(src);
  if (copy === undefined) {
    copy = (async () => {
      const sab = new SharedArrayBuffer(src.byteLength);
      const to = new Uint8Array(sab);
      const from = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
      for (let i = 0; i < from.length; i += SHARE_STEP) {
        if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
        to.set(from.subarray(i, i + SHARE_STEP), i);
      }
      return sab;
    })();
    sharedCopies.set(src, copy);
  }
  return copy;
}

export class TrainModel {
  private constructor(
    private readonly model: tf.LayersModel,
    readonly manifest: Manifest,
    private readonly files: Map<string, Uint8Array>,
    /** weights.bin is exactly the flat trainable weights (one weights file, manifest order = getFlatWeights order). */
    private readonly patchable: boolean,
    readonly initialWeights: Float32Array,
    /** The packed bundle it was loaded from: the evaluation thread loads its own copy. */
    private readonly bundle: Uint8Array,
  ) {}

  /** Names this model's copy on the evaluation thread. */
  private readonly id = `m${++modelCount}`;
  private disposed = false;

  /** Loads a packed bundle; checks whether weights.bin can be patched directly with flat weights. */
  static async load(bundle: Uint8Array): Promise<TrainModel> {
    await initBackend();
    const { files, weightPaths } = unpackBundle(bundle);
    const { model, manifest } = await loadFromFiles(files);
    const flat = await readFlatWeights(model);
    const bin = files.get(WEIGHTS_FILE);
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
    return new TrainModel(model, manifest, files, patchable, flat, bundle);
  }

  get classes(): number {
    return this.manifest.output.kind === 'classes' ? this.manifest.output.classes : 1;
  }

  /**
   * Mean cross-entropy and accuracy of the model with `weights` on rows [n, dim] with class labels, computed on the
   * evaluation thread (evaluateClassesOn). `weights` is copied before the first await: the caller may change it after.
   */
  evaluate(weights: Float32Array, rows: Float32Array, labels: Int32Array): Promise<EvalResult> {
    const w = weights.slice();
    return this.onThread(w, async (bundle, backend) => ({
      op: 'classes', id: this.id, bundle, backend, weights: w, dim: this.manifest.input.dim, classes: this.classes,
      rows: new Float32Array(await shared(rows)), labels: new Int32Array(await shared(labels)),
    }));
  }

  /**
   * Preference pairs on a reward model: accuracy = share of pairs with r(chosen) > r(rejected) (ties wrong, as in
   * `fedpool score`), loss = mean Bradley–Terry loss −log σ(r_chosen − r_rejected). On the evaluation thread
   * (evaluatePairsOn); `weights` is copied before the first await.
   */
  evaluatePairs(weights: Float32Array, chosen: Float32Array, rejected: Float32Array): Promise<EvalResult> {
    const w = weights.slice();
    return this.onThread(w, async (bundle, backend) => ({
      op: 'pairs', id: this.id, bundle, backend, weights: w, dim: this.manifest.input.dim,
      chosen: new Float32Array(await shared(chosen)), rejected: new Float32Array(await shared(rejected)),
    }));
  }

  private async onThread(weights: Float32Array, task: (bundle: Uint8Array, backend: string) => Promise<EvalTask>): Promise<EvalResult> {
    if (this.disposed) throw new Error('the model was disposed');
    const backendName = await initBackend();
    const bundle = new Uint8Array(await shared(this.bundle));
    const message = await task(bundle, backendName);
    if (this.disposed) throw new Error('the model was disposed');
    users.add(this.id);
    return (await evalThreads().run(message, { transferList: [weights.buffer as ArrayBuffer] })) as EvalResult;
  }

  /** The packed bundle with `weights` in place of the initial ones. */
  async bundleWith(weights: Float32Array): Promise<Uint8Array> {
    if (this.patchable) {
      const files = new Map(this.files);
      files.set(WEIGHTS_FILE, new Uint8Array(weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength)));
      return packBundle(files);
    }
    setFlatWeights(this.model, weights);
    return packBundle((await saveToFiles(this.model, this.manifest)) as BundleFiles);
  }

  /** Frees the model here and on the evaluation thread (the thread ends once no model uses it). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.model.dispose();
    forget(this.id);
  }
}
