// The coordinator's side of a training job's model: its initial weights, evaluation on held-out rows, and the bundle
// with the current weights. Everything that needs TF.js runs on one piscina thread (eval-task.ts, functions in
// tf-eval.ts) shared by every job, started with the first training job: the coordinator's own thread never loads
// TF.js, so its heap stays small (TF.js with its wasm backend is ~16 MB of heap, which every full collection would
// mark) and a large model's load or evaluation never blocks its event loop (issue 12: a 4096-row batch of a
// 1e6-parameter model is about a second of compute inside predict()). The thread loads each model once and keeps it
// by id; evaluations are the same code on the same backend as before, so their numbers are unchanged. What stays on
// the loop: copying the bundle and eval data into SharedArrayBuffers once (in 4 MiB steps that yield between them),
// the weights once per evaluation, and patching weights.bin for a bundle with other weights when it can be patched.
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { WEIGHTS_FILE, packBundle, unpackBundle, validateBundle } from '../../shared/model/bundle.js';
import type { Manifest } from '../../shared/model/manifest.js';

export interface EvalResult {
  loss: number;
  accuracy: number;
}

/** What the evaluation thread is asked (eval-task.ts). Arrays other than `weights` are views of SharedArrayBuffers. */
export type EvalTask =
  | { op: 'load'; id: string; bundle: Uint8Array }
  | { op: 'bundle'; id: string; bundle: Uint8Array; weights: Float32Array }
  | { op: 'classes'; id: string; bundle: Uint8Array; weights: Float32Array; dim: number; classes: number; rows: Float32Array; labels: Int32Array }
  | { op: 'pairs'; id: string; bundle: Uint8Array; weights: Float32Array; dim: number; chosen: Float32Array; rejected: Float32Array }
  | { op: 'drop'; id: string };

/** What the thread answers a `load`: the model's flat weights, and whether weights.bin is exactly them. */
export interface LoadResult {
  weights: Float32Array;
  patchable: boolean;
}

let modelCount = 0;
let threads: Piscina | undefined;
/** Models loaded on the evaluation thread and not disposed. */
const users = new Set<string>();

/**
 * The evaluation thread, started on the first training job. One thread: tasks queue (FIFO, across jobs) and the thread
 * caches each model it has loaded. Idle, it does not keep the process alive (piscina unrefs it).
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
 * A disposed model: the thread drops its copy; the last one closes the thread (queued tasks are refused, one already
 * running finishes first and its result is ignored by its job; destroy() instead trips piscina over the running
 * task's late answer).
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
    /** Names this model's copy on the evaluation thread. */
    private readonly id: string,
    readonly manifest: Manifest,
    private readonly files: Map<string, Uint8Array>,
    /** weights.bin is exactly the flat trainable weights (one weights file, manifest order = getFlatWeights order). */
    private readonly patchable: boolean,
    readonly initialWeights: Float32Array,
    /** The packed bundle it was loaded from: the evaluation thread loads its own copy. */
    private readonly bundle: Uint8Array,
  ) {}

  private disposed = false;

  /**
   * Validates a packed bundle here (format, files, dims: no TF.js), then loads it on the evaluation thread, which
   * answers its flat weights and whether weights.bin can be patched with other weights directly.
   */
  static async load(bundle: Uint8Array): Promise<TrainModel> {
    const { files } = unpackBundle(bundle);
    const { manifest } = validateBundle(files, 'model bundle');
    const id = `m${++modelCount}`;
    users.add(id);
    try {
      const loaded = (await evalThreads().run({ op: 'load', id, bundle: new Uint8Array(await shared(bundle)) } satisfies EvalTask)) as LoadResult;
      return new TrainModel(id, manifest, files, loaded.patchable, loaded.weights, bundle);
    } catch (e) {
      forget(id);
      throw e;
    }
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
    return this.onThread<EvalResult>(w, async (bundle) => ({
      op: 'classes', id: this.id, bundle, weights: w, dim: this.manifest.input.dim, classes: this.classes,
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
    return this.onThread<EvalResult>(w, async (bundle) => ({
      op: 'pairs', id: this.id, bundle, weights: w, dim: this.manifest.input.dim,
      chosen: new Float32Array(await shared(chosen)), rejected: new Float32Array(await shared(rejected)),
    }));
  }

  private async onThread<T>(weights: Float32Array, task: (bundle: Uint8Array) => Promise<EvalTask>): Promise<T> {
    if (this.disposed) throw new Error('the model was disposed');
    const bundle = new Uint8Array(await shared(this.bundle));
    const message = await task(bundle);
    if (this.disposed) throw new Error('the model was disposed');
    return (await evalThreads().run(message, { transferList: [weights.buffer as ArrayBuffer] })) as T;
  }

  /** The packed bundle with `weights` in place of the initial ones (weights.bin patched here, or saved on the thread). */
  async bundleWith(weights: Float32Array): Promise<Uint8Array> {
    if (this.patchable) {
      const files = new Map(this.files);
      files.set(WEIGHTS_FILE, new Uint8Array(weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength)));
      return packBundle(files);
    }
    const w = weights.slice();
    return this.onThread<Uint8Array>(w, async (bundle) => ({ op: 'bundle', id: this.id, bundle, weights: w }));
  }

  /** Frees the model on the evaluation thread (the thread ends once no model uses it). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    forget(this.id);
  }
}
