// Child processes for the benchmarks (bench/pool.ts, bench/train.ts, bench/coordinator.ts): the compiled CLI
// (bin/fedpool.js) as a coordinator and N workers, their first matching stdout line, their shutdown, and a process's
// CPU time (also the open-pool probe's).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

// bench/processes.ts → repo root, whether run from source or from dist/bench/processes.js.
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.basename(path.dirname(here)) === 'dist' ? path.resolve(here, '../..') : path.resolve(here, '..');
export const bin = path.join(root, 'bin', 'fedpool.js');

/** Called with each stderr line of a child (FEDPOOL_LOG=warn, so warnings and errors), and its argv. */
export type StderrLine = (line: string, argv: string[]) => void;

/**
 * Node options for the coordinator only, from FEDPOOL_BENCH_COORDINATOR_NODE_ARGS (space-separated), e.g.
 * "--cpu-prof --cpu-prof-dir=DIR" to profile it under a benchmark's load (Node refuses --cpu-prof in NODE_OPTIONS).
 */
const coordinatorNodeArgs = (process.env['FEDPOOL_BENCH_COORDINATOR_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');

/** `fedpool <argv>` from the compiled CLI, stdout and stderr piped, logging warnings and worse. */
export function fedpool(argv: string[], onStderrLine?: StderrLine): ChildProcess {
  const nodeArgs = argv[0] === 'coordinator' ? coordinatorNodeArgs : [];
  const child = spawn(process.execPath, [...nodeArgs, bin, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FEDPOOL_LOG: 'warn' } });
  if (onStderrLine) createInterface({ input: child.stderr! }).on('line', (l) => onStderrLine(l, argv));
  return child;
}

/** The first stdout line of `child` matching `re`; rejects, with its last stderr, if it exits before one. */
export function firstLine(child: ChildProcess, re: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-1000)));
    createInterface({ input: child.stdout! }).on('line', (l) => {
      const m = re.exec(l);
      if (m) resolve(m);
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}): ${err}`)));
  });
}

/** SIGTERM to every child still running, resolving when all have exited. */
export async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map((c) => new Promise<void>((r) => (c.exitCode !== null ? r() : (c.once('exit', () => r()), c.kill('SIGTERM'))))));
}

/**
 * A process's CPU seconds so far (user + system), from /proc/PID/stat (Linux; USER_HZ is 100, so 10 ms steps). Not
 * from the coordinator's /metrics: it renders at most once a second, so two scrapes less than a second apart read
 * the same figure. NaN when it cannot be read.
 */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/**
 * A coordinator (in-memory state, worker token `w`, client token `c`) and `workers` workers named bench-0… started
 * with `workerArgs`; resolves once every worker has connected, with the coordinator's URL and the backend the first
 * worker reports. Every child is pushed onto `children` as it starts, so `stopAll(children)` cleans up even when
 * start-up fails.
 */
export async function startPool(
  children: ChildProcess[],
  workers: number,
  workerArgs: string[],
  onStderrLine?: StderrLine,
): Promise<{ url: string; backend: string }> {
  const coord = fedpool(['coordinator', '--port', '0', '--state', ':memory:', '--worker-token', 'w', '--client-token', 'c'], onStderrLine);
  children.push(coord);
  const [, url] = await firstLine(coord, /^fedpool coordinator listening on (\S+)$/);
  const connected: Promise<RegExpMatchArray>[] = [];
  for (let k = 0; k < workers; k++) {
    const w = fedpool(['worker', '--url', url, '--token', 'w', '--name', `bench-${k}`, ...workerArgs], onStderrLine);
    children.push(w);
    connected.push(firstLine(w, /backend=(\S+), threads/));
  }
  const got = await Promise.all(connected);
  return { url, backend: got[0][1] };
}
