// The piscina scoring pool against the single-process reference: same scores (1e-5), from real worker threads.
import test from 'ava';
import { selectBackend } from '../../../client/backends.js';
import { createScoringPool } from '../../../client/scoring/pool.js';
import { scoreInProcess } from '../../../client/scoring/reference.js';
import { bundleHash, packBundle } from '../../../shared/model/bundle.js';
import type { ModelItem } from '../../../shared/model/featurizer.js';
import { parseManifest, type Manifest } from '../../../shared/model/manifest.js';
import { buildModel, saveToFiles } from '../../../shared/model/tf-model.js';
import { mulberry32 } from '../../../shared/random.js';

const N = 2000;
const SHARD = 256;

const manifest = (input: Manifest['input'], hidden: number[], seed: number): Manifest =>
  parseManifest({ format: 'fedpool-model', version: 1, kind: 'reward', input, output: { kind: 'reward' }, hidden, seed }, 'test');

async function bundleOf(m: Manifest) {
  const model = buildModel(m);
  const files = await saveToFiles(model, m);
  model.dispose();
  const bytes = packBundle(files);
  return { files, bytes, hash: await bundleHash(bytes) };
}

/** Deterministic pseudo-random features in [-1, 1). */
function featureItems(n: number, dim: number): { features: Float32Array }[] {
  const u = mulberry32(12345);
  const next = () => u() * 2 - 1;
  return Array.from({ length: n }, () => ({ features: Float32Array.from({ length: dim }, next) }));
}

function textItems(n: number): { prompt: string; response: string }[] {
  const words = ['the', 'answer', 'is', 'seven', 'because', 'two', 'plus', 'five', 'équivaut', '7', 'so', 'yes', 'no', 'maybe'];
  return Array.from({ length: n }, (_, i) => ({
    prompt: `Question ${i % 50}: what is ${i % 9} + ${i % 7}?`,
    response: Array.from({ length: 3 + (i % 11) }, (_, j) => words[(i * 31 + j * 17) % words.length]).join(' '),
  }));
}

async function poolScores(pool: ReturnType<typeof createScoringPool>, hash: string, bytes: Uint8Array, items: ModelItem[], batchSize: number) {
  const shards: Promise<Float32Array>[] = [];
  for (let i = 0; i < items.length; i += SHARD) shards.push(pool.score(hash, bytes, items.slice(i, i + SHARD), batchSize));
  const out = new Float32Array(items.length);
  (await Promise.all(shards)).forEach((s, k) => out.set(s, k * SHARD));
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

test.before(async () => {
  await selectBackend('wasm');
});

for (const backend of ['wasm', 'cpu'] as const) {
  test.serial(`pool (2 threads, ${backend}) equals the in-process reference for a features and a text model`, async (t) => {
    const pool = createScoringPool({ threads: 2, backend });
    try {
      t.is((await pool.probe()).backend, backend);
      const cases: [Manifest, ModelItem[]][] = [
        [manifest({ kind: 'features', dim: 32 }, [64, 32], 1), featureItems(N, 32)],
        [manifest({ kind: 'text', dim: 256 }, [64, 32], 2), textItems(N)],
      ];
      for (const [m, items] of cases) {
        const { files, bytes, hash } = await bundleOf(m);
        const want = await scoreInProcess(files, items, 1024);
        const before = bytes.slice();
        const got = await poolScores(pool, hash, bytes, items, 1024);
        t.is(got.length, N);
        t.true(maxAbsDiff(got, want) <= 1e-5, `${m.input.kind}: max |pool − reference| = ${maxAbsDiff(got, want)}`);
        t.true(new Set(want).size > N / 2, 'scores are not degenerate');
        t.deepEqual(bytes, before, 'the caller’s bundle is not modified or detached');
        // A second pass hits each thread's model cache and gives the same numbers.
        t.deepEqual(await poolScores(pool, hash, bytes, items, 1024), got);
      }
    } finally {
      await pool.close();
    }
  });
}

test.serial('features go as one packed matrix and the caller keeps its arrays; bad input fails without hurting the pool', async (t) => {
  const m = manifest({ kind: 'features', dim: 4 }, [8], 3);
  const { files, bytes, hash } = await bundleOf(m);
  const pool = createScoringPool({ threads: 2, backend: 'wasm' });
  try {
    const items = featureItems(10, 4);
    const want = await scoreInProcess(files, items, 64);
    const got = await pool.score(hash, bytes, items, 64);
    t.true(maxAbsDiff(got, want) <= 1e-5);
    t.is(items[0].features.length, 4, 'not detached in the caller');
    // Plain number arrays and items of mixed forms take the unpacked path, with the same results and messages.
    t.true(maxAbsDiff(await pool.score(hash, bytes, items.map((it) => ({ features: Array.from(it.features) })), 64), want) <= 1e-5);

    for (const bad of [
      { items: [{ features: new Float32Array(3) }], message: 'item 0: features has 3 entries; the model takes 4' },
      { items: [{ features: new Float32Array(4) }, { features: Float32Array.of(1, 2, NaN, 4) }], message: 'item 1: features[2] is NaN, not a finite number' },
      { items: [{ features: new Float32Array(4) }, { features: Float32Array.of(1, Infinity, 0, 4) }], message: 'item 1: features[1] is Infinity, not a finite number' },
      { items: [{ features: new Float32Array(4) }, { prompt: 'a', response: 'b' }], message: 'item 1: this model takes features (features:4); the item has text' },
    ]) {
      const err = await t.throwsAsync(pool.score(hash, bytes, bad.items, 64), { name: 'ModelError', message: bad.message });
      t.is((err as unknown as { retryable: boolean }).retryable, false);
    }
    const wrongHash = '0'.repeat(64);
    await t.throwsAsync(pool.score(wrongHash, bytes, featureItems(2, 4), 64), {
      name: 'BundleError',
      message: `model bundle: sha-256 is ${hash}, expected ${wrongHash}`,
    });
    await t.throwsAsync(pool.score(hash.replace(/^./, 'f'), new Uint8Array([1, 2, 3]), featureItems(2, 4), 64), { name: 'BundleError' });
    // Bytes that are not the hash's fail and are not remembered under it: the right bytes work afterwards.
    const other = await bundleOf(manifest({ kind: 'features', dim: 4 }, [8], 4));
    await t.throwsAsync(pool.score(other.hash, bytes, featureItems(2, 4), 64), { name: 'BundleError', message: `model bundle: sha-256 is ${hash}, expected ${other.hash}` });
    t.is((await pool.score(other.hash, other.bytes, featureItems(2, 4), 64)).length, 2);
    t.deepEqual(await pool.score(hash, bytes, [], 64), new Float32Array(0));
    t.true(maxAbsDiff(await pool.score(hash, bytes, featureItems(10, 4), 64), want) <= 1e-5, 'still works');
  } finally {
    await pool.close();
  }
});

test.serial('an explicit backend that does not load fails the probe with its reason', async (t) => {
  const pool = createScoringPool({ threads: 1, backend: 'tfjs-node' });
  try {
    let available = true;
    try {
      await import(['@tensorflow', 'tfjs-node'].join('/'));
    } catch {
      available = false;
    }
    if (available) {
      t.is((await pool.probe()).backend, 'tfjs-node');
    } else {
      await t.throwsAsync(pool.probe(), { message: 'backend tfjs-node is not available: npm package @tensorflow/tfjs-node is not installed' });
    }
  } finally {
    await pool.close();
  }
});
