// Real worker processes for end-to-end tests, spawned from source like every CLI test.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fedpoolEntry } from '../helpers/fedpool.js';
import { WORKER_TOKEN } from '../server/helpers.js';

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
