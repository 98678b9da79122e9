// Real worker processes for end-to-end tests, spawned from source like every CLI test.
import type { ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fedpoolEntry } from '../helpers/fedpool.js';
import { CLIENT_TOKEN, WORKER_TOKEN, startCoordinatorProcess, type CoordinatorProcess } from '../server/helpers.js';

/** The child environment: quiet logs, and no token leaking in from the developer's shell. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, FEDPOOL_LOG: 'silent' };
  delete e.FEDPOOL_TOKEN;
  return e;
}

/** `fedpool worker` (wasm, one thread) with its own blob cache; `connected` resolves on its connected line. */
export function startWorker(url: string, name: string, cacheDir: string, extra: string[] = []): { proc: ChildProcess; connected: Promise<void> } {
  const proc = spawn(process.execPath, ['--import=tsx', fedpoolEntry, 'worker', '--url', url, '--token', WORKER_TOKEN, '--name', name, '--threads', '1', '--backend', 'wasm', ...extra], {
    env: { ...cleanEnv(), FEDPOOL_CACHE_DIR: cacheDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const connected = new Promise<void>((resolve, reject) => {
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes(' connected to ')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`worker ${name} exited (${code}) before connecting`)));
  });
  return { proc, connected };
}

export type WorkerProcess = ReturnType<typeof startWorker>;

/** SIGTERM, resolving when the process has exited (at once if it already has). */
export function stop(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  });
}

/** Runs the CLI from source to its exit, collecting its output. */
export function fedpool(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import=tsx', fedpoolEntry, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.once('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

/** `fedpool model init --out <dir>/model …args` from source, to its exit; throws with its stderr if it fails. */
export function modelInit(dir: string, args: string[]): void {
  const r = spawnSync(process.execPath, ['--import=tsx', fedpoolEntry, 'model', 'init', '--out', path.join(dir, 'model'), ...args], { encoding: 'utf8', env: cleanEnv() });
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
    await Promise.all(pool.workers.map((w) => stop(w.proc)));
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
