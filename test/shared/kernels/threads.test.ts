// The kernels with helper threads (docs/kernels.md, "Threads"): real worker threads started as the coordinator starts
// them (cli/kernel-threads.ts); every rule gives the same bits with and without them; inputs outside shared memory,
// and small calls, stay on the calling thread; a helper that fails leaves its share to the caller, with the same
// result; decoded tensors land in shared memory only when asked.
import test from 'ava';
import { defaultKernelThreads, startKernelThreads } from '../../../cli/kernel-threads.js';
import { combineRows } from '../../../shared/aggregation/combine.js';
import { coordinateMedian, trimmedMean } from '../../../shared/aggregation/coordinatewise.js';
import { pairwiseSquaredDistances } from '../../../shared/aggregation/distances.js';
import { weightedMean } from '../../../shared/aggregation/mean.js';
import { nearestNeighborMixing } from '../../../shared/aggregation/nnm.js';
import { runThreadTask, threadsFor, useKernelThreads, type KernelThreads, type ThreadTask } from '../../../shared/kernels/parallel.js';
import { decodeMessage, encodeMessage, setSharedTensorDecoding } from '../../../shared/protocol/codec.js';
import { Tensor } from '../../../shared/protocol/tensor.js';
import { mulberry32 } from '../../../shared/random.js';

/** n seeded rows of length d, in one SharedArrayBuffer (as a coordinator with threads decodes updates) or not. */
function rows(seed: number, n: number, d: number, shared: boolean): Float32Array[] {
  const rng = mulberry32(seed);
  const all = new Float32Array(shared ? new SharedArrayBuffer(n * d * 4) : new ArrayBuffer(n * d * 4));
  for (let i = 0; i < all.length; i++) all[i] = (rng() - 0.5) * 2 ** Math.floor(rng() * 8 - 4);
  return Array.from({ length: n }, (_, i) => all.subarray(i * d, (i + 1) * d));
}

const sameBits = (a: ArrayLike<number>, b: ArrayLike<number>): boolean => a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]));

/** Each rule once without helpers and once with `t`, on the same shared inputs. */
function bothWays(t: KernelThreads, x: Float32Array[]): Array<[string, ArrayLike<number>, ArrayLike<number>]> {
  const n = x.length;
  const coeffs = Float64Array.from({ length: 3 * n }, (_, i) => (i % 5 === 0 ? 0 : ((i * 7) % 11) / 11 - 0.3));
  coeffs.copyWithin(2 * n, 0, n); // a repeated row
  const rules: Array<[string, () => ArrayLike<number>]> = [
    ['trimmedMean', () => trimmedMean(x, 2)],
    ['coordinateMedian', () => coordinateMedian(x)],
    ['weightedMean', () => weightedMean(x, Array.from({ length: n }, (_, i) => i + 1))],
    ['combineRows', () => combineRows(x, coeffs, 3).flatMap((r) => Array.from(r))],
    ['pairwiseSquaredDistances', () => pairwiseSquaredDistances(x)],
    ['nearestNeighborMixing', () => nearestNeighborMixing(x, 2).flatMap((r) => Array.from(r))],
  ];
  return rules.map(([name, f]) => {
    useKernelThreads(null);
    const alone = f();
    useKernelThreads(t);
    const threaded = f();
    useKernelThreads(null);
    return [name, alone, threaded];
  });
}

/** A KernelThreads that runs each share in this thread and counts them; `fail` makes finish() report a failure. */
function inline(fail = false): KernelThreads & { shares: number } {
  let pending: ThreadTask[] = [];
  return {
    size: 2,
    shares: 0,
    start(tasks) {
      pending = tasks;
    },
    finish() {
      this.shares += pending.length;
      if (fail) return false;
      for (const task of pending) runThreadTask(task);
      return true;
    },
  };
}

test.serial('two real helper threads: every rule gives the same bits as one thread, for shapes that split unevenly', async (t) => {
  const threads = await startKernelThreads(2);
  t.teardown(() => useKernelThreads(null));
  if (threads === null) return t.fail('no threads started');
  for (const [n, d] of [[9, 130_001], [30, 40_003]] as const) {
    const x = rows(n + d, n, d, true);
    useKernelThreads(threads);
    t.is(threadsFor(x), threads, 'the helpers take part');
    for (const [name, alone, threaded] of bothWays(threads, x)) t.true(sameBits(alone, threaded), `${name} n=${n} d=${d}`);
  }
});

test.serial('helpers are used only for inputs in shared memory and calls of at least MIN_THREADED_VALUES values', (t) => {
  const fake = inline();
  useKernelThreads(fake);
  t.teardown(() => useKernelThreads(null));
  t.is(threadsFor(rows(1, 8, 140_000, false)), null, 'inputs in ordinary ArrayBuffers: copying them would cost more than it saves');
  t.is(threadsFor(rows(1, 2, 1000, true)), null, 'a small call');
  t.is(threadsFor(rows(1, 8, 140_000, true)), fake);
  trimmedMean(rows(1, 8, 140_000, true), 1);
  t.is(fake.shares, 2, 'two shares handed to the two helpers, one kept');
});

test.serial('a helper that fails or does not answer: the caller computes its share, the result is the same, and the helpers are dropped', (t) => {
  const x = rows(5, 8, 140_000, true);
  const want = trimmedMean(x, 2);
  const failing = inline(true);
  useKernelThreads(failing);
  t.teardown(() => useKernelThreads(null));
  t.true(sameBits(trimmedMean(x, 2), want));
  t.is(threadsFor(x), null, 'not used again');
});

test.serial('decoded float32 tensors go to shared memory from the size asked for, and only while asked', (t) => {
  t.teardown(() => setSharedTensorDecoding(null));
  const frame = (values: number) => encodeMessage({ type: 'result', leaseId: 'l', shardId: 's', payload: { kind: 'update', update: Tensor.float32(new Float32Array(values)), samples: 1, loss: 0, baseVersion: 0 } });
  const updateOf = (f: Uint8Array): Float32Array => {
    const m = decodeMessage(f, { direction: 'worker' });
    if (m.type !== 'result' || m.payload.kind !== 'update') throw new Error('not an update');
    return m.payload.update.data as Float32Array;
  };
  t.false(updateOf(frame(50_000)).buffer instanceof SharedArrayBuffer, 'off by default');
  setSharedTensorDecoding(64 * 1024);
  t.true(updateOf(frame(50_000)).buffer instanceof SharedArrayBuffer, '200 KB update');
  t.false(updateOf(frame(1000)).buffer instanceof SharedArrayBuffer, '4 KB: below the size');
  setSharedTensorDecoding(null);
  t.false(updateOf(frame(50_000)).buffer instanceof SharedArrayBuffer);
});

test('defaultKernelThreads is one helper per core beyond the first, at most 7', (t) => {
  t.true(defaultKernelThreads() >= 0 && defaultKernelThreads() <= 7);
});
