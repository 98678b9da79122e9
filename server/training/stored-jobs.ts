// A training job as the state store keeps it: loading a stored record back (data, checkpoint, metrics) when the
// coordinator restarts, and the job's model as a bundle with its current or final weights (GET /api/jobs/:id/model).
import type { TrainConfig } from '../../shared/config/train.js';
import type { BlobStore } from '../blobs.js';
import { isTerminal, type Store, type TrainJobRecord } from '../store.js';
import { unpackCheckpoint } from './checkpoint.js';
import type { CentralData } from './job-request.js';
import { unpackCentralData } from './persist.js';
import { TrainingJob, type TrainMetricLine } from './training-job.js';

function readData(blobs: BlobStore, hash: string | undefined): CentralData | undefined {
  if (hash === undefined) return undefined;
  const bytes = blobs.read(hash);
  return bytes === undefined ? undefined : unpackCentralData(bytes);
}

/**
 * A stored job with its data and last checkpoint (metrics, client count, bindings, the driver state to resume from).
 * `unreadable` says why the job cannot go on when its data or checkpoint is damaged: one damaged record must not
 * keep the coordinator from starting; that job fails, the others go on.
 */
export function loadTrainingJob(record: TrainJobRecord, config: TrainConfig, store: Store, blobs: BlobStore): { job: TrainingJob; unreadable: string | undefined } {
  let data: CentralData | undefined;
  let evalData: CentralData | undefined;
  let unreadable: string | undefined;
  try {
    data = readData(blobs, record.data);
    evalData = readData(blobs, record.eval);
  } catch (e) {
    unreadable = `its data cannot be read from the state store: ${e instanceof Error ? e.message : String(e)}`;
  }
  const job = new TrainingJob(record.id, config, record.model, data, evalData, record.createdAt, record.owner ?? null);
  let cp: ReturnType<Store['trainCheckpoint']>;
  try {
    cp = store.trainCheckpoint(record.id);
  } catch (e) {
    unreadable ??= `its checkpoint cannot be read: ${e instanceof Error ? e.message : String(e)}`;
  }
  if (cp !== undefined && unreadable === undefined) {
    try {
      const c = unpackCheckpoint(cp.state);
      job.metrics = cp.metrics.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as TrainMetricLine);
      job.numClients = c.numClients;
      job.bindings = c.bindings;
      job.resumeFrom = { snapshot: c.snapshot, elapsed: c.elapsed };
      job.finalWeights = Float32Array.from(c.snapshot.weights);
      job.checkpointedStep = cp.step;
    } catch (e) {
      unreadable = `its checkpoint cannot be read: ${e instanceof Error ? e.message : String(e)}`;
      job.metrics = [];
      job.resumeFrom = undefined;
    }
  }
  if (config.data.source === 'central' && data === undefined) unreadable ??= 'its model or data blob is missing from the state store';
  return { job, unreadable };
}

/** The packed model bundle with the job's current weights (the initial bundle before training starts). */
export async function bundleOf(job: TrainingJob, blobs: BlobStore): Promise<Uint8Array | undefined> {
  const weights = job.driver?.weights ?? job.finalWeights;
  if (weights === undefined) return blobs.read(job.modelHash);
  const model = job.model;
  if (model === undefined) {
    // An ended job (its model was disposed) or one still loading: load the model for this call only, so ended
    // jobs hold no model between requests.
    const bundle = blobs.read(job.modelHash);
    if (bundle === undefined) return undefined;
    const { TrainModel } = await import('./evaluator.js');
    const temporary = await TrainModel.load(bundle);
    try {
      return await temporary.bundleWith(weights);
    } finally {
      temporary.dispose();
    }
  }
  job.modelUsers++;
  try {
    return await model.bundleWith(weights);
  } finally {
    job.modelUsers--;
    // The job ended while this call used the model: the last user disposes it.
    if (job.modelUsers === 0 && isTerminal(job.state) && job.model === model) job.disposeModel();
  }
}
