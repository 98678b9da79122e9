// Splitting the kernels' work across threads (docs/kernels.md, "Threads"). Platform-free: the host that can start
// threads (Node's worker_threads, in cli/kernel-threads.ts) hands in a KernelThreads, and each helper runs
// runThreadTask with a kernels instance of its own. Work is split so that every output value is computed by the same
// operations whatever the number of threads: coordinate ranges for the per-coordinate kernels (weighted sums, the
// coordinate-wise rules) and whole distance blocks, whose sums the caller adds in block order. Results are therefore
// the same bits with 0, 1 or 7 helpers.
import { MIN_WASM_LENGTH, wasmKernels } from './wasm.js';

/** One helper's share of a call. Typed arrays the helper reads or writes are views of SharedArrayBuffers. */
export type ThreadTask =
  | { op: 'window-mean'; inputs: Float32Array[]; lo: number; hi: number; out: Float32Array; from: number; to: number }
  | {
      op: 'combine';
      inputs: Float32Array[];
      coeffs: Float64Array;
      usedStart: Int32Array;
      usedIdx: Int32Array;
      distinct: boolean[];
      out: Float32Array[];
      from: number;
      to: number;
    }
  | { op: 'distances'; inputs: Float32Array[]; sums: Float64Array; from: number; to: number };

/** Helper threads, as the host made them. */
export interface KernelThreads {
  /** How many helpers there are. */
  readonly size: number;
  /** Hands tasks[i] to helper i (tasks.length ≤ size) and returns at once. */
  start(tasks: ThreadTask[]): void;
  /** Waits for the helpers given tasks by the last start(); false if one failed or did not answer in time. */
  finish(): boolean;
}

let threads: KernelThreads | null = null;

/** Installs helper threads for the kernels (null: none, the default). */
export function useKernelThreads(t: KernelThreads | null): void {
  threads = t;
}

/** Calls smaller than this many input values run on the calling thread: handing work over costs ~0.1 ms. */
export const MIN_THREADED_VALUES = 1 << 20;

/** Runs one share in this thread, with this thread's kernels instance (the one its own calls use). */
export function runThreadTask(task: ThreadTask): void {
  const k = wasmKernels(MIN_WASM_LENGTH);
  if (k === null) throw new Error('runThreadTask: the WebAssembly kernels cannot run in this thread');
  if (task.op === 'window-mean') k.sortedWindowMeanInto(task.inputs, task.lo, task.hi, task.out, task.from, task.to);
  else if (task.op === 'combine') k.combineRows(task.inputs, task.coeffs, task.out, task.usedStart, task.usedIdx, task.distinct, task.from, task.to);
  else k.distanceBlockSums(task.inputs, task.sums, task.from, task.to);
}

/**
 * The helpers to use for a call, or null for this thread alone: helpers only read inputs that live in
 * SharedArrayBuffers (as a coordinator with kernel threads decodes training updates: codec.ts,
 * setSharedTensorDecoding). Copying other inputs there first cost more than the second thread saved (measured: a
 * 200 MB weighted mean took 100–230 ms instead of 24–30).
 */
export function threadsFor(inputs: readonly Float32Array[]): KernelThreads | null {
  if (threads === null || threads.size === 0 || inputs.length === 0) return null;
  const d = inputs[0].length;
  if (inputs.length * d < MIN_THREADED_VALUES || wasmKernels(d) === null) return null;
  return inputs.every((x) => x.buffer instanceof SharedArrayBuffer) ? threads : null;
}

/** A Float32Array of length d on a SharedArrayBuffer. */
export function sharedFloats(d: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(d * 4));
}

/**
 * Splits [0, d) into `parts` ranges whose starts are multiples of `unit`, runs make(range) on the helpers and the
 * first range here, and returns once all are done. A helper that fails or does not answer leaves its ranges to this
 * thread (a late helper writes the same values, so nothing is lost either way) and the threads are not used again.
 */
export function runSplit(t: KernelThreads, d: number, unit: number, make: (from: number, to: number) => ThreadTask): void {
  const parts = t.size + 1;
  const units = Math.ceil(d / unit);
  const ranges: Array<[number, number]> = [];
  for (let p = 0; p < parts; p++) {
    const from = Math.min(d, Math.floor((units * p) / parts) * unit);
    const to = Math.min(d, Math.floor((units * (p + 1)) / parts) * unit);
    if (to > from) ranges.push([from, to]);
  }
  const [mine, ...theirs] = ranges.map(([from, to]) => make(from, to));
  if (mine === undefined) return;
  t.start(theirs);
  runThreadTask(mine);
  if (!t.finish()) {
    threads = null;
    for (const task of theirs) runThreadTask(task);
  }
}
