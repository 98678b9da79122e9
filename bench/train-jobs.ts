// What the training benchmarks (bench/train.ts, bench/coordinator-training.ts) submit: a classifier bundle made by
// `fedpool model init` and seeded central data, as `fedpool train` would send them.
import path from 'node:path';
import { run as modelInit } from '../cli/commands/model-init.js';
import { readBundleDir } from '../client/scoring/bundle-fs.js';
import { bundleHash, packBundle } from '../shared/model/bundle.js';
import { mulberry32, normal } from '../shared/random.js';

export const CLASSES = 10;

/** A CLASSES-way classifier over `input` with `hidden` layers, written under dir and packed: its bytes and hash. */
export async function initModel(dir: string, input: string, hidden: string): Promise<{ bytes: Uint8Array; hash: string }> {
  const out = path.join(dir, input.replace(':', '-'));
  await modelInit({ out, input, output: `classes:${CLASSES}`, hidden, seed: 1 });
  const bytes = packBundle(await readBundleDir(out));
  return { bytes, hash: await bundleHash(bytes) };
}

/** n seeded Gaussian class rows of `dim` features, as the base64 columns `fedpool train` sends. */
export function classifyColumns(n: number, dim: number, seed: number): { dim: number; n: number; rows: string; labels: string } {
  const u = mulberry32(seed);
  const gaussian = () => normal(u);
  const rows = new Float32Array(n * dim);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const label = i % CLASSES;
    labels[i] = label;
    for (let j = 0; j < dim; j++) rows[i * dim + j] = (j % CLASSES === label ? 1 : 0) + gaussian();
  }
  const b64 = (a: Float32Array | Int32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
  return { dim, n, rows: b64(rows), labels: b64(labels) };
}
