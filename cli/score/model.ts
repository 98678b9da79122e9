// The model as `fedpool score` submits it: read the directory, validate it completely (format, weight files and
// their sizes, dims), pack it into one content-addressed blob.
import { readBundleDir } from '../../client/scoring/bundle-fs.js';
import { bundleHash, packBundle, validateBundle } from '../../shared/model/bundle.js';
import { ModelError } from '../../shared/model/errors.js';
import type { InputSpec, OutputSpec } from '../../shared/model/manifest.js';
import { UserError } from '../errors.js';

export type ModelInputSpec = InputSpec;

export async function loadModelForSubmit(dir: string): Promise<{ hash: string; bytes: Uint8Array; input: ModelInputSpec; output: OutputSpec }> {
  try {
    const files = await readBundleDir(dir);
    const { manifest } = validateBundle(files, dir);
    const bytes = packBundle(files);
    return { hash: await bundleHash(bytes), bytes, input: manifest.input, output: manifest.output };
  } catch (e) {
    if (e instanceof ModelError) throw new UserError(e.message);
    throw e;
  }
}
