// `fedpool model pull ID --out DIR`: a training job's model (its current weights while it runs, its final ones once
// it ended) as a normal bundle directory, the same files `fedpool train` writes to DIR/model/.
import path from 'node:path';
import { writeBundleDir } from '../../client/scoring/bundle-fs.js';
import { unpackBundle } from '../../shared/model/bundle.js';
import { ModelError } from '../../shared/model/errors.js';
import { coordinatorApi } from '../api.js';
import { UserError } from '../errors.js';
import { checkEmptyDir } from '../out-dir.js';

export async function run(options: Record<string, unknown>): Promise<void> {
  const id = String(options['id'] ?? '');
  const out = path.resolve(String(options['out']));
  await checkEmptyDir(out, 'the model directory', 'a model?');
  const api = coordinatorApi(options, 'model pull');
  const job = await api.requireJob(id, 'model pull');
  if (job.kind !== 'train') throw new UserError(`fedpool model pull: job ${id} is a ${job.kind} job; only training jobs have a model to pull`);
  const bytes = await api.bytes(`/api/jobs/${encodeURIComponent(id)}/model`);
  let files;
  try {
    files = unpackBundle(bytes, `model of job ${id}`).files;
  } catch (e) {
    if (e instanceof ModelError) throw new UserError(`fedpool model pull: ${e.message}`);
    throw e;
  }
  await writeBundleDir(out, files);
  process.stdout.write(`${JSON.stringify({ job: id, state: job.state, step: job.progress.done, out })}\n`);
}
