// Real worker processes for end-to-end tests, spawned from source like every CLI test.
import { spawn, type ChildProcess } from 'node:child_process';
import { fedpoolEntry } from '../helpers/fedpool.js';
import { WORKER_TOKEN } from '../server/helpers.js';

/** The child environment: quiet logs, and no token leaking in from the developer's shell. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, FEDPOOL_LOG: 'silent' };
  delete e.FEDPOOL_TOKEN;
  return e;
}

/** `fedpool worker` (wasm, one thread) with its own blob cache; `connected` resolves on its connected line. */
export function startWorker(url: string, name: string, cacheDir: string): { proc: ChildProcess; connected: Promise<void> } {
  const proc = spawn(process.execPath, ['--import=tsx', fedpoolEntry, 'worker', '--url', url, '--token', WORKER_TOKEN, '--name', name, '--threads', '1', '--backend', 'wasm'], {
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
