import type { BundleFiles } from '../../shared/model/bundle.js';
import type { ModelItem } from '../../shared/model/featurizer.js';
import { loadFromFiles, scoreBatch } from '../../shared/model/tf-model.js';

/**
 * Scores in this thread, through the same featurize + predict code the pool threads run, without piscina: the
 * single-process reference that pool (and end-to-end) results must equal within 1e-5. Runs on whichever TF.js
 * backend is active in this thread; call `selectBackend` first (TF.js's own default in Node is the slow cpu one).
 */
export async function scoreInProcess(files: BundleFiles, items: readonly ModelItem[], batchSize: number): Promise<Float32Array> {
  const { model, manifest } = await loadFromFiles(files);
  try {
    return await scoreBatch(model, manifest, items, batchSize);
  } finally {
    model.dispose();
  }
}
