// Helper threads for the aggregation kernels (docs/kernels.md, "Threads"): Node's worker_threads behind the
// platform-free KernelThreads of shared/kernels/parallel.ts. Each helper runs cli/kernel-thread.ts; a call's shares go
// out by postMessage (their arrays are SharedArrayBuffer views, so nothing is copied) and the calling thread, which
// must return synchronously, waits on one flag per helper with Atomics.wait. The helpers are unref'd: they never keep
// a process alive.
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { useKernelThreads, type KernelThreads, type ThreadTask } from '../shared/kernels/parallel.js';

/** How long a call waits for a helper before doing its share itself (a helper that died or hangs). */
const HELPER_WAIT_MS = 30_000;

/** One helper per core beyond the first, at most 7 (what the aggregation benchmark uses). */
export function defaultKernelThreads(): number {
  return Math.max(0, Math.min(7, availableParallelism() - 1));
}

/**
 * Starts `count` helpers (none for 0), waits until each has loaded, and installs them for every kernel call in this
 * process. Rejects, installing none, if a helper cannot start.
 */
export async function startKernelThreads(count: number): Promise<KernelThreads | null> {
  useKernelThreads(null);
  if (count <= 0) return null;
  const file = fileURLToPath(new URL(`./kernel-thread${path.extname(fileURLToPath(import.meta.url))}`, import.meta.url));
  // Beside this module with its own extension: .js from dist/ (an ES module, imported), .ts from a source checkout,
  // where tsx's CommonJS hook compiles it (a worker's entry does not pass through the loader hooks --import=tsx
  // installed in this thread, so the helper registers tsx itself; tsx is there in every source checkout).
  const bootstrap = file.endsWith('.ts')
    ? `require('tsx/cjs'); require(${JSON.stringify(file)}); require('node:worker_threads').parentPort.postMessage('ready');`
    : `import(${JSON.stringify(pathToFileURL(file).href)}).then(() => require('node:worker_threads').parentPort.postMessage('ready'));`;
  const flags = new Int32Array(new SharedArrayBuffer(4 * count));
  const helpers = Array.from({ length: count }, () => new Worker(bootstrap, { eval: true, execArgv: process.execArgv }));
  try {
    await Promise.all(
      helpers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            w.once('message', () => resolve());
            w.once('error', reject);
            w.once('exit', (code) => reject(new Error(`a kernel thread exited (${code}) while starting`)));
          }),
      ),
    );
  } catch (e) {
    await Promise.all(helpers.map((w) => w.terminate()));
    throw e;
  }
  for (const w of helpers) {
    w.removeAllListeners();
    // A helper that fails later is noticed by its flag (or its silence: HELPER_WAIT_MS), not by an event the blocked
    // calling thread could not receive anyway.
    w.on('error', () => {});
    w.unref();
  }
  let given = 0;
  const threads: KernelThreads = {
    size: count,
    start(tasks: ThreadTask[]) {
      given = tasks.length;
      tasks.forEach((task, i) => {
        Atomics.store(flags, i, 0);
        helpers[i]!.postMessage({ task, flags, index: i });
      });
    },
    finish() {
      const until = Date.now() + HELPER_WAIT_MS;
      let ok = true;
      for (let i = 0; i < given; i++) {
        while (Atomics.load(flags, i) === 0) {
          const left = until - Date.now();
          if (left <= 0 || Atomics.wait(flags, i, 0, left) === 'timed-out') return false;
        }
        if (Atomics.load(flags, i) !== 1) ok = false;
      }
      return ok;
    },
  };
  useKernelThreads(threads);
  return threads;
}
