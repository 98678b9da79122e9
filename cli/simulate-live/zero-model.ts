// The model every live job starts from: the simulator's x₀ = 0 as a real bundle the coordinator can serve.
import { bundleHash, packBundle } from '../../shared/model/bundle.js';
import { parseManifest } from '../../shared/model/manifest.js';

/** A linear softmax classifier bundle with zero weights: the simulator's x₀ = 0. */
export async function zeroModel(features: number, classes: number): Promise<{ hash: string; bytes: Uint8Array }> {
  const [{ selectBackend }, tfModel, { setFlatWeights, parameterCount }] = await Promise.all([
    import('../../client/backends.js'),
    import('../../shared/model/tf-model.js'),
    import('../../shared/model/weights.js'),
  ]);
  await selectBackend('cpu');
  const manifest = parseManifest({ format: 'fedpool-model', version: 1, kind: 'classifier', input: { kind: 'features', dim: features }, output: { kind: 'classes', classes }, hidden: [], seed: 0 }, 'live model');
  const model = tfModel.buildModel(manifest);
  try {
    setFlatWeights(model, new Float32Array(parameterCount(model)));
    const bytes = packBundle(await tfModel.saveToFiles(model, manifest));
    return { hash: await bundleHash(bytes), bytes };
  } finally {
    model.dispose();
  }
}
