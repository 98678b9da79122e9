// What the scoring and training pools share: a piscina pool over a task module, and the model bundles kept in
// SharedArrayBuffers so every thread reads one copy per hash instead of receiving (and detaching) the caller's bytes.
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { BundleError, ModelError } from '../shared/model/errors.js';
import type { TaskFailure } from './thread-state.js';

/** The error a task's returned failure stood for (BundleError, RangeError, else ModelError), with its name. */
export function rebuildFailure(failure: TaskFailure['failure']): Error {
  if (failure.name === 'BundleError') return new BundleError(failure.message);
  if (failure.name === 'RangeError') return new RangeError(failure.message);
  return new ModelError(failure.message);
}

/** Bundles kept shared with the threads; each thread caches up to the same number of loaded models. */
export const SHARED_BUNDLES = 4;

export interface TensorThreads {
  readonly piscina: Piscina;
  readonly threads: number;
  /** The bundle's bytes in a SharedArrayBuffer, copied once per hash (LRU of SHARED_BUNDLES). */
  sharedBundle(hash: string, bundle: Uint8Array): Uint8Array;
  /** Forgets a hash (its bytes turned out invalid: never keep them as that hash). */
  forget(hash: string): void;
  close(): Promise<void>;
}

/**
 * `moduleUrl` is the calling pool's import.meta.url and `task` the task module's base name beside it: the task is
 * loaded with the caller's own extension, .ts from source (under tsx) or .js from dist/.
 */
export function createTensorThreads(moduleUrl: string, task: string, threads: number, idleTimeoutMs = 5 * 60_000): TensorThreads {
  if (!Number.isSafeInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${String(threads)}`);
  const piscina = new Piscina({
    filename: new URL(`./${task}${extname(fileURLToPath(moduleUrl))}`, moduleUrl).href,
    minThreads: 1,
    maxThreads: threads,
    idleTimeout: idleTimeoutMs,
    // Worker threads inherit process.execArgv (so `--import=tsx` under tests), which is what loads the .ts task.
  });
  const shared = new Map<string, Uint8Array>(); // LRU by insertion order
  return {
    piscina,
    threads,
    sharedBundle(hash, bundle) {
      let view = shared.get(hash);
      if (view !== undefined) {
        shared.delete(hash);
      } else {
        view = new Uint8Array(new SharedArrayBuffer(bundle.byteLength));
        view.set(bundle);
        if (shared.size >= SHARED_BUNDLES) shared.delete(shared.keys().next().value as string);
      }
      shared.set(hash, view);
      return view;
    },
    forget(hash) {
      shared.delete(hash);
    },
    async close() {
      shared.clear();
      await piscina.close();
    },
  };
}
