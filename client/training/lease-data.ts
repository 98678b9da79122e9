// A train lease's data as local training reads it: central rows/labels or featurized pairs shipped with the lease,
// or one of the worker's own datasets (featurized, or embedded through the worker's own server, once per
// (dataset, model)); then, for an adversary experiment, its labels flipped.
import type { Tensor, TrainTask } from '../../shared/protocol/index.js';
import type { Manifest } from '../../shared/model/index.js';
import { embedForModel, type Embedder } from '../embed.js';
import type { DatasetSource } from '../lease-ports.js';
import { remember } from '../../shared/lru.js';
import { DatasetError, toTrainData } from './datasets.js';
import { embedTrainData } from './embed-data.js';
import type { LocalTrainData } from './local-train.js';

/**
 * Central rows/labels (the lease's tensors) → classification data. Labels must be class ids: int32 [n], or float32
 * [n] holding integers. Other label forms are not trainable yet (not retryable).
 */
export function centralTrainData(rows: Tensor, labels: Tensor): LocalTrainData {
  if (!(rows.data instanceof Float32Array)) throw new DatasetError(`central data: rows must be float32, got ${rows.dtype}`);
  if (labels.ndim !== 1) throw new DatasetError(`central data: labels ${labels.describe()} are not supported yet; send class ids [n]`);
  let ids: Int32Array;
  if (labels.data instanceof Int32Array) ids = labels.data;
  else {
    const values = labels.data;
    ids = new Int32Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (!Number.isInteger(v)) throw new DatasetError(`central data: label ${i} is ${v}, not a class id`);
      ids[i] = v;
    }
  }
  return { kind: 'classify', x: rows.data, labels: ids };
}

/** Central preference pairs (featurized by the submitter) as training data. */
export function centralPairsData(chosen: Tensor, rejected: Tensor): LocalTrainData {
  if (!(chosen.data instanceof Float32Array) || !(rejected.data instanceof Float32Array)) throw new DatasetError('central pairs: chosen and rejected must be float32');
  return { kind: 'pairs', chosen: chosen.data, rejected: rejected.data };
}

/** The label-flipping attack (docs/algorithms.md §2.2): class y → C − 1 − y; pairs train with chosen and rejected swapped. */
export function flipLabels(data: LocalTrainData, manifest: Manifest): LocalTrainData {
  if (data.kind === 'pairs') return { kind: 'pairs', chosen: data.rejected, rejected: data.chosen };
  const classes = manifest.output.kind === 'classes' ? manifest.output.classes : 0;
  return { kind: 'classify', x: data.x, labels: data.labels.map((y) => classes - 1 - y) };
}

export interface LeaseDataOptions {
  /** Datasets train leases may name (`data: {source: 'worker', name}`). */
  datasets?: DatasetSource | undefined;
  /** The embedding server a worker dataset is embedded through, for a head over embeddings. */
  server?: Embedder | undefined;
}

export class LeaseData {
  /** Per (dataset, model hash): the dataset as that model's training data, loading or loaded. */
  private readonly trainData = new Map<string, Promise<LocalTrainData>>();

  constructor(private readonly options: LeaseDataOptions) {}

  /** The lease's data for the model `manifest` describes, labels flipped when the lease asks for it. */
  async forTask(task: TrainTask, manifest: Manifest): Promise<LocalTrainData> {
    const source = task.data;
    let data: LocalTrainData;
    if (source.source === 'central') data = centralTrainData(source.rows, source.labels);
    else if (source.source === 'central-pairs') data = centralPairsData(source.chosen, source.rejected);
    else data = await this.workerData(source.name, task.modelHash, manifest);
    if (task.flipLabels === true) data = flipLabels(data, manifest);
    return data;
  }

  /** A worker dataset as training data for one model: featurized (or embedded) once per (dataset, model). */
  private workerData(name: string, hash: string, manifest: Manifest): Promise<LocalTrainData> {
    const key = `${name}\0${hash}`;
    let data = this.trainData.get(key);
    if (data === undefined) {
      const datasets = this.options.datasets;
      if (datasets === undefined) return Promise.reject(new DatasetError(`no dataset ${name} on this worker`));
      const input = manifest.input;
      data = (async () => {
        const dataset = await datasets.get(name);
        if (input.kind !== 'embedding') return toTrainData(dataset, manifest);
        // The rows are embedded through this worker's own server: the text never leaves it.
        return embedTrainData(dataset, { ...manifest, input }, (texts) => embedForModel(this.options.server, input, texts));
      })();
      remember(this.trainData, key, data, 8);
      const loading = data;
      loading.catch(() => {
        if (this.trainData.get(key) === loading) this.trainData.delete(key);
      });
    }
    return data;
  }
}
