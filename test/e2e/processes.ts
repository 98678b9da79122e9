// Real worker processes for end-to-end tests, started through test/helpers/processes.ts like every CLI test.
import type { ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { cleanEnv, runFedpool, startFedpool, type Child } from '../helpers/processes.js';
import { CLIENT_TOKEN, WORKER_TOKEN, startCoordinatorProcess, type CoordinatorProcess } from '../server/helpers.js';

/** `fedpool worker` (wasm, one thread) with its own blob cache; `connected` resolves on its connected line. */
export function startWorker(url: string, name: string, cacheDir: string, extra: string[] = []): { proc: ChildProcess; child: Child; connected: Promise<void> } {
  const child = startFedpool(null, ['worker', '--url', url, '--token', WORKER_TOKEN, '--name', name, '--threads', '1', '--backend', 'wasm', ...extra], {
    env: cleanEnv({ FEDPOOL_CACHE_DIR: cacheDir }),
  });
  const connected = child.line(/ connected to /, { stream: 'stdout', what: `worker ${name} connecting` }).then(() => undefined);
  connected.catch(() => {}); // observed by whoever awaits it; a test that never does must not die of it
  return { proc: child.proc, child, connected };
}

export type WorkerProcess = ReturnType<typeof startWorker>;

/** Stops a worker (SIGTERM, then its process group is killed after a grace period); resolves once it has exited. */
export async function stop(w: WorkerProcess): Promise<void> {
  await w.child.stop();
}

/** `fedpool model init --out <dir>/model …args` to its exit; throws with its stderr if it fails. */
export async function modelInit(dir: string, args: string[]): Promise<void> {
  const r = await runFedpool(['model', 'init', '--out', path.join(dir, 'model'), ...args]);
  if (r.status !== 0) throw new Error(`fedpool model init exited ${r.status}: ${r.stderr}`);
}

export interface TrainingPoolOptions {
  /** Worker `name` runs as `w-<name>` with the blob cache `<dir>/cache-<name>`, plus `extra` arguments. */
  workers: Array<string | { name: string; extra: string[] }>;
  /** The coordinator's arguments; default `--state :memory:`, both tokens and `--lease-ms <leaseMs>`. */
  coordinatorArgs?: string[];
  /** The lease in the default coordinator arguments; default 30000. */
  leaseMs?: number;
  /** Wait for every worker's connected line before resolving; default true. */
  connect?: boolean;
}

export interface TrainingPool {
  /** The running coordinator: a test that restarts it assigns the new one here, so the teardown stops that one. */
  coordinator: CoordinatorProcess;
  workers: WorkerProcess[];
  /** The arguments the coordinator was started with. */
  coordinatorArgs: string[];
}

/**
 * A coordinator process and the named worker processes, stopped (workers first) by a teardown registered on `t`.
 * Resolves once every worker has connected unless `connect` is false (then await each `workers[i].connected`).
 */
export async function startTrainingPool(t: ExecutionContext, dir: string, options: TrainingPoolOptions): Promise<TrainingPool> {
  const coordinatorArgs = options.coordinatorArgs ?? ['--state', ':memory:', '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN, '--lease-ms', String(options.leaseMs ?? 30_000)];
  const coordinator = await startCoordinatorProcess(coordinatorArgs);
  const workers = options.workers.map((w) => {
    const { name, extra } = typeof w === 'string' ? { name: w, extra: [] } : w;
    return startWorker(coordinator.url, `w-${name}`, path.join(dir, `cache-${name}`), extra);
  });
  const pool: TrainingPool = { coordinator, workers, coordinatorArgs };
  t.teardown(async () => {
    await Promise.all(pool.workers.map((w) => stop(w)));
    await pool.coordinator.stop();
  });
  if (options.connect ?? true) await Promise.all(workers.map((w) => w.connected));
  return pool;
}

/** The JSON summary a command prints as its last stdout line. */
export function summaryOf<T>(stdout: string): T {
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as T;
}

export interface MetricLine {
  step: number;
  time: number;
  loss: number | null;
  accuracy: number | null;
  participants: number;
  staleness_mean: number | null;
}

export function readMetrics(file: string): MetricLine[] {
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as MetricLine);
}
