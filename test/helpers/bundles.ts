// Small packed model bundles built in the test process (no hidden layers), for tests that need a real bundle of a
// given input kind without running `fedpool model init`.
import { packBundle } from '../../shared/model/bundle.js';
import { parseManifest, type InputSpec } from '../../shared/model/manifest.js';
import { buildModel, saveToFiles } from '../../shared/model/tf-model.js';

/** A linear reward model or a classifier of `classes` classes over `input`, packed as a bundle, initialised from `seed`. */
export async function packedBundle(input: InputSpec, output: 'reward' | 'classes' = 'reward', seed = 1, classes = 2): Promise<Uint8Array> {
  const manifest = parseManifest({
    format: 'fedpool-model', version: 1, kind: output === 'reward' ? 'reward' : 'classifier', input,
    output: output === 'reward' ? { kind: 'reward' } : { kind: 'classes', classes }, hidden: [], seed,
  }, 'test model');
  const model = buildModel(manifest);
  try {
    return packBundle(await saveToFiles(model, manifest));
  } finally {
    model.dispose();
  }
}
