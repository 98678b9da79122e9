// The one way tests start processes. Every child is tracked by the PID we started, in its own process group, and
// is killed on every way out of a test file: the test's teardown (when the test passes `t`), a start-up line that
// never comes, a command that runs past its limit, the file's process exiting, and ava's SIGTERM on a timeout. The
// CLI runs by absolute path from this checkout (bin/fedpool.js when dist/ is current, else the source through tsx's
// loader resolved here), so a child never depends on its working folder.
import { registerCompletionHandler, type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fedpoolArgv as argvFor } from './fedpool.js';

/** The checkout's root folder. */
export const root = fileURLToPath(new URL('../../', import.meta.url));

/** tsx's loader in this checkout's node_modules, as an absolute file URL. */
export const tsxLoader = import.meta.resolve('tsx');

/** Node arguments that run the fedpool CLI (compiled when dist/ is current, else from source; see fedpool.ts). */
export function fedpoolArgv(args: readonly string[]): string[] {
  return argvFor(tsxLoader, args);
}

/** Limits sized for a loaded 2-core machine: a start or a run past them is a hang, not slowness. */
export const START_MS = 90_000;
export const RUN_MS = 240_000;
/** How long a stopped child may take over its own shutdown before its process group is killed. */
export const STOP_GRACE_MS = 20_000;

let scratchDir: string | undefined;
/** One scratch folder per test file process (under the OS temp folder), removed when the process exits. */
export function scratch(): string {
  scratchDir ??= mkdtempSync(path.join(tmpdir(), 'fedpool-test-'));
  return scratchDir;
}

/**
 * The child environment: quiet logs, no token leaking in from the developer's shell, and the worker blob cache in
 * this file's scratch folder rather than the home folder's cache.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, FEDPOOL_LOG: 'silent', FEDPOOL_CACHE_DIR: path.join(scratch(), 'cache') };
  for (const k of ['FEDPOOL_TOKEN', 'FEDPOOL_WORKER_TOKEN', 'FEDPOOL_CLIENT_TOKEN']) delete e[k];
  return { ...e, ...extra };
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Child {
  proc: ChildProcess;
  pid: number;
  stdout: () => string;
  stderr: () => string;
  /** Resolves when the process has exited; never rejects. */
  exited: Promise<Exit>;
  /** The exit code, or 128 + the signal's number for a signal (as a shell reports it). */
  status: Promise<number | null>;
  /**
   * Resolves with the first match of `re` in the stream so far (anchor with ^…$ and the m flag for a whole line).
   * Rejects if the process exits first, or after `ms` — and then kills it: a child that never started is not left.
   */
  line: (re: RegExp, options?: { stream?: 'stdout' | 'stderr'; ms?: number; what?: string }) => Promise<RegExpMatchArray>;
  /** Sends `signal` (default SIGTERM), then kills the process group after `graceMs`; resolves with `status`. */
  stop: (signal?: NodeJS.Signals, graceMs?: number) => Promise<number | null>;
}

const running = new Set<Child>();

/** SIGKILL to the child's whole process group (the child and anything it started), now. */
function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // the group is gone already
  }
}

function killAllNow(): void {
  for (const c of running) killGroup(c.pid);
  running.clear();
}

// The backstops: whatever a test forgot or could not do (an assertion thrown before its teardown was registered,
// ava's timeout SIGTERM, an exit with children still attached), nothing outlives this process.
process.on('exit', () => {
  killAllNow();
  if (scratchDir !== undefined) rmSync(scratchDir, { recursive: true, force: true });
});
// Every test of the file has ended: a child still running is one its test never stopped, and would keep this
// process (and ava) waiting on its pipes.
registerCompletionHandler(() => killAllNow());
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    killAllNow();
    process.exit(signal === 'SIGTERM' ? 143 : 130);
  });
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Text written to the child's stdin (which is then closed); default: no stdin. */
  input?: string;
}

/**
 * Starts `command args` in its own process group. With `t`, the test's teardown stops it; without, the caller
 * stops it (a file-level process, stopped in `test.after.always`), and the exit backstop kills it if nobody did.
 */
export function start(t: ExecutionContext | null, command: string, args: readonly string[], options: StartOptions = {}): Child {
  const proc = spawn(command, args, {
    env: options.env ?? cleanEnv(),
    cwd: options.cwd ?? root,
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    detached: true,
  });
  if (proc.pid === undefined) {
    proc.once('error', () => {}); // reported by the throw below, not as an uncaught 'error' event
    throw new Error(`${command}: cannot start it (not found on PATH, or not executable)`);
  }
  const pid = proc.pid;
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    wake();
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    wake();
  });
  if (options.input !== undefined) proc.stdin!.end(options.input);
  // 'close' comes after 'exit' once the pipes are drained: the output is then complete.
  const exited = new Promise<Exit>((resolve) => {
    proc.once('close', (code, signal) => {
      running.delete(child);
      wake();
      resolve({ code, signal });
    });
    proc.once('error', () => {
      running.delete(child);
      resolve({ code: null, signal: null });
    });
  });
  const status = exited.then(({ code, signal }) => code ?? (signal === null ? null : 128 + (SIGNAL_NUMBERS[signal] ?? 0)));
  const done = (): boolean => proc.exitCode !== null || proc.signalCode !== null;

  const child: Child = {
    proc, pid, exited, status,
    stdout: () => out,
    stderr: () => err,
    line: (re, o = {}) => new Promise((resolve, reject) => {
      const ms = o.ms ?? START_MS;
      const what = o.what ?? String(re);
      const text = (): string => (o.stream === 'stderr' ? err : o.stream === 'stdout' ? out : `${out}\n${err}`);
      let timer: NodeJS.Timeout | undefined;
      const check = (): void => {
        const m = re.exec(text());
        if (m !== null) {
          finish();
          resolve(m);
        } else if (done() && proc.stdout!.readableEnded && proc.stderr!.readableEnded) {
          finish();
          reject(new Error(`${what}: the process exited (${proc.exitCode ?? proc.signalCode}) first; stderr: ${err.slice(-2000)}`));
        }
      };
      const finish = (): void => {
        waiters.delete(check);
        clearTimeout(timer);
      };
      timer = setTimeout(() => {
        finish();
        killGroup(pid);
        reject(new Error(`${what}: not seen within ${ms / 1000} s (process killed); stderr: ${err.slice(-2000)}`));
      }, ms);
      waiters.add(check);
      void exited.then(check);
      check();
    }),
    stop: (signal = 'SIGTERM', graceMs = STOP_GRACE_MS) => {
      if (!done()) {
        try {
          proc.kill(signal);
        } catch {
          // exited meanwhile
        }
        const timer = setTimeout(() => killGroup(pid), graceMs);
        void exited.then(() => clearTimeout(timer));
      }
      return status;
    },
  };
  running.add(child);
  t?.teardown(async () => {
    await child.stop();
  });
  return child;
}

/** `fedpool ARGS`; see start. */
export function startFedpool(t: ExecutionContext | null, args: readonly string[], options: StartOptions = {}): Child {
  return start(t, process.execPath, fedpoolArgv(args), options);
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `command args` to its exit, collecting its output. Past `ms` the process group is killed and the returned
 * promise rejects: a hung command fails its test instead of hanging the suite.
 */
export async function run(command: string, args: readonly string[], options: StartOptions & { ms?: number } = {}): Promise<RunResult> {
  const child = start(null, command, args, options);
  const ms = options.ms ?? RUN_MS;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      killGroup(child.pid);
      reject(new Error(`${path.basename(command)} ${args.join(' ')}: still running after ${ms / 1000} s (killed); stderr: ${child.stderr().slice(-2000)}`));
    }, ms);
  });
  try {
    const status = await Promise.race([child.status, late]);
    return { status, stdout: child.stdout(), stderr: child.stderr() };
  } finally {
    clearTimeout(timer);
  }
}

/** `fedpool ARGS` to its exit; see run. */
export function runFedpool(args: readonly string[], options: StartOptions & { ms?: number } = {}): Promise<RunResult> {
  return run(process.execPath, fedpoolArgv(args), options);
}

/** Whether a process runs; a zombie (exited, not yet reaped by whoever inherited it) counts as gone. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc: kill(0) said it exists
  }
}

/** Waits for a process we did not start ourselves (a child's child) to be gone; false if it still runs after `ms`. */
export async function gone(pid: number, ms = STOP_GRACE_MS): Promise<boolean> {
  const end = Date.now() + ms;
  while (alive(pid)) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}
