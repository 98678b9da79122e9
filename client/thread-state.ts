// What a tensor thread keeps between tasks, shared by the scoring and training task modules: its backend, chosen
// once on the first task, and the last few models it loaded, by verified hash.
import { selectBackend, type BackendChoice, type BackendRequest } from './backends.js';
import { BundleError } from '../shared/model/errors.js';
import { bundleHash, unpackBundle } from '../shared/model/bundle.js';
import { loadFromFiles, type LoadedModel } from '../shared/model/tf-model.js';

/** Every task module answers a probe with the backend its thread runs on. */
export interface ProbeTaskInput {
  kind: 'probe';
  backend: BackendRequest;
}

export interface ProbeResult {
  choice: BackendChoice;
}

/** A failure retrying elsewhere cannot fix, returned rather than thrown: structured clone would drop its name. */
export interface TaskFailure {
  failure: { name: string; message: string };
}

/** ModelError and BundleError: a bad model fails on every worker. */
export const isModelProblem = (e: Error): boolean => e.name === 'ModelError' || e.name === 'BundleError';

/** `err` as a TaskFailure when `permanent` says no other worker could avoid it, else undefined (thrown: retryable). */
export function permanentFailure(err: unknown, permanent: (e: Error) => boolean): TaskFailure | undefined {
  return err instanceof Error && permanent(err) ? { failure: { name: err.name, message: err.message } } : undefined;
}

/** Models each thread keeps loaded (the pools share as many bundles with their threads). */
export const MODEL_CACHE_SIZE = 4;

let backend: { requested: BackendRequest; ready: Promise<BackendChoice> } | undefined;

/** Selects this thread's backend on first use; a thread never switches backends. */
export function ensureBackend(requested: BackendRequest): Promise<BackendChoice> {
  if (backend === undefined) backend = { requested, ready: selectBackend(requested) };
  else if (backend.requested !== requested) {
    return Promise.reject(new Error(`this tensor thread runs backend ${backend.requested}, not ${requested}`));
  }
  return backend.ready;
}

/**
 * An LRU of loaded models by hash. `prepare` may add what a task module needs beside the model (the training task
 * keeps the bundle's own weights). The bundle's sha-256 is checked when a model is first loaded; a failed load is
 * not cached, so the next task retries.
 */
export function modelCache<T extends LoadedModel>(prepare: (loaded: LoadedModel) => T | Promise<T>): (hash: string, bundle: Uint8Array) => Promise<T> {
  const models = new Map<string, Promise<T>>(); // insertion order = least recently used first
  const load = async (hash: string, bundle: Uint8Array): Promise<T> => {
    const bytes = bundle.slice(); // own, non-shared copy: WebCrypto refuses shared memory, and the pool may reuse it
    const actual = await bundleHash(bytes);
    if (actual !== hash) throw new BundleError(`model bundle: sha-256 is ${actual}, expected ${hash}`);
    return prepare(await loadFromFiles(unpackBundle(bytes).files));
  };
  return (hash, bundle) => {
    const cached = models.get(hash);
    if (cached !== undefined) {
      models.delete(hash);
      models.set(hash, cached);
      return cached;
    }
    const loading = load(hash, bundle);
    models.set(hash, loading);
    loading.catch(() => {
      if (models.get(hash) === loading) models.delete(hash);
    });
    while (models.size > MODEL_CACHE_SIZE) {
      const [oldest, evicted] = models.entries().next().value as [string, Promise<T>];
      models.delete(oldest);
      // One task at a time per thread (piscina's default), so nothing is still using it.
      evicted.then((m) => m.model.dispose(), () => {});
    }
    return loading;
  };
}
