// The coordinator's side of a training job that needs TF.js: the initial weights of the model bundle, evaluation on
// held-out rows, and the bundle with the current weights. Loaded lazily (dynamic import) on the first training job,
// so a coordinator that only scores never loads TF.js. Backend: wasm, falling back to cpu.
import * as tf from '@tensorflow/tfjs';
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

export class TrainModel {
  private constructor(
    private readonly model: tf.LayersModel,
    readonly manifest: Manifest,
    private readonly files: Map<string, Uint8Array>,
    /** weights.bin is exactly the flat trainable weights (one weights file, manifest order = getFlatWeights order). */
    private readonly patchable: boolean,
    readonly initialWeights: Float32Array,
  ) {}

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
    return new TrainModel(model, manifest, files, patchable, flat);
  }

  get classes(): number {
    return this.manifest.output.kind === 'classes' ? this.manifest.output.classes : 1;
  }

  /** Mean cross-entropy and accuracy of the model with `weights` on rows [n, dim] with class labels. */
  evaluate(weights: Float32Array, rows: Float32Array, labels: Int32Array): EvalResult {
    setFlatWeights(this.model, weights);
    const n = labels.length;
    const dim = this.manifest.input.dim;
    const k = this.classes;
    let loss = 0;
    let correct = 0;
    for (let start = 0; start < n; start += EVAL_BATCH) {
      const m = Math.min(EVAL_BATCH, n - start);
      const probs = tf.tidy(() => {
        const x = tf.tensor2d(rows.subarray(start * dim, (start + m) * dim), [m, dim]);
        return (this.model.predict(x) as tf.Tensor).dataSync() as Float32Array;
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

  /**
   * Preference pairs on a reward model: accuracy = share of pairs with r(chosen) > r(rejected) (ties wrong, as in
   * `fedpool score`), loss = mean Bradley–Terry loss −log σ(r_chosen − r_rejected).
   */
  evaluatePairs(weights: Float32Array, chosen: Float32Array, rejected: Float32Array): EvalResult {
    setFlatWeights(this.model, weights);
    const dim = this.manifest.input.dim;
    const n = chosen.length / dim;
    let loss = 0;
    let correct = 0;
    for (let start = 0; start < n; start += EVAL_BATCH) {
      const m = Math.min(EVAL_BATCH, n - start);
      const [rc, rr] = [chosen, rejected].map((rows) =>
        tf.tidy(() => (this.model.predict(tf.tensor2d(rows.subarray(start * dim, (start + m) * dim), [m, dim])) as tf.Tensor).dataSync() as Float32Array),
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

  dispose(): void {
    this.model.dispose();
  }
}
