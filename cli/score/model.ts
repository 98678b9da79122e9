// The model as `fedpool score` submits it: read the directory, validate it completely (format, weight files and
// their sizes, dims), pack it into one content-addressed blob.
import { readBundleDir } from '../../client/scoring/bundle-fs.js';
import { bundleHash, packBundle, validateBundle } from '../../shared/model/bundle.js';
import { ModelError } from '../../shared/model/errors.js';
import type { InputSpec } from '../../shared/model/manifest.js';
import { UserError } from '../errors.js';

export type ModelInputSpec = InputSpec;

export async function loadModelForSubmit(dir: string): Promise<{ hash: string; bytes: Uint8Array; input: ModelInputSpec }> {
  try {
    const files = await readBundleDir(dir);
    const { manifest } = validateBundle(files, dir);
    if (manifest.output.kind === 'classes' && manifest.output.classes !== 2) {
      throw new UserError(`${dir}: fedpool score needs a reward model or a binary classifier (this one has ${manifest.output.classes} classes)`);
    }
    const bytes = packBundle(files);
    return { hash: await bundleHash(bytes), bytes, input: manifest.input };
  } catch (e) {
    if (e instanceof ModelError) throw new UserError(e.message);
    throw e;
  }
}
