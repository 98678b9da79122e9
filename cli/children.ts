// Child fedpool processes for the commands that start a pool on this machine (demo, simulate --live).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { UserError } from './errors.js';

/** Runs the CLI again as a child: the same script and loader flags this process was started with. */
export function fedpoolChild(args: string[]): ChildProcess {
  return spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FEDPOOL_LOG: process.env.FEDPOOL_LOG ?? 'warn' },
  });
}

/**
 * Resolves with the first stdout line matching `re`; rejects (a UserError starting with `who`) if the child exits
 * first or after `ms`.
 */
export function waitForLine(child: ChildProcess, re: RegExp, what: string, who: string, ms = 60_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const timer = setTimeout(() => reject(new UserError(`${who}: ${what} did not start within ${ms / 1000} s`)), ms);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const m = re.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new UserError(`${who}: ${what} exited with code ${code}: ${stderr.trim().split('\n').at(-1) ?? ''}`));
    });
  });
}
