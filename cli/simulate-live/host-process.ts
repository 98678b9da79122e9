// The worker-host processes of live mode (worker-host.ts, forked with an IPC channel): starting them with their share
// of the simulated workers, and one conversation per host that turns its exit, error or nonsense into one failure.
import { fork, type ChildProcess } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.js';
import { WHO } from './command-name.js';
import { fromHostSchema, type FromHost, type ToHost } from './host-messages.js';

/**
 * A worker-host process and its IPC conversation. A failure (exit, error, nonsense) is recorded once and reaches
 * every wait, pending or later; sending never throws, so no wait's promise is left unobserved by a throw between
 * creating it and handing it to Promise.all (a dead host once crashed the command with an unhandled rejection).
 */
export class HostProcess {
  private waiters: { type: FromHost['type']; timer: NodeJS.Timeout; resolve: () => void; reject: (e: Error) => void }[] = [];
  private stderr = '';
  failure: Error | undefined;
  /** Rejects when the host fails (exits, errs, sends nonsense): raced against every wait for a job. */
  readonly failed: Promise<never>;
  private rejectFailed!: (e: Error) => void;
  /** Set once we asked it to stop: its exit is then no failure. */
  private stopping = false;

  constructor(
    readonly child: ChildProcess,
    readonly index: number,
  ) {
    this.failed = new Promise<never>((_resolve, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => {}); // observed through `failure` and races; never unhandled
    child.stderr?.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-2000)));
    child.on('error', (e) => this.fail(`process error: ${e.message}`));
    // A dying host closes its channel just before it exits: give the exit (and its signal) a moment to say why.
    child.on('disconnect', () => setTimeout(() => this.fail('closed its IPC channel'), 1000).unref());
    child.on('message', (raw: unknown) => {
      const parsed = fromHostSchema.safeParse(raw);
      if (!parsed.success) return this.fail(`sent a bad message (${parsed.error.issues[0]?.message ?? 'invalid'})`);
      const m = parsed.data;
      if (m.type === 'error') return this.fail(m.message);
      const at = this.waiters.findIndex((w) => w.type === m.type);
      if (at >= 0) {
        const [w] = this.waiters.splice(at, 1);
        clearTimeout(w!.timer);
        w!.resolve();
      }
    });
    child.on('exit', (code, signal) => this.fail(`exited (${signal ?? `code ${code}`})${this.stderr.trim() === '' ? '' : `: ${this.stderr.trim().split('\n').at(-1)}`}`));
  }

  private fail(why: string): void {
    if (this.stopping || this.failure !== undefined) return;
    this.failure = new UserError(`${WHO}: worker host ${this.index}: ${why}`);
    this.rejectFailed(this.failure);
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(this.failure);
    }
  }

  /** Sends a message; after a failure or a stop it sends nothing (the failure reaches the waits instead). */
  send(message: ToHost): void {
    if (this.failure !== undefined || this.stopping || !this.child.connected) return;
    this.child.send(message, (e) => {
      if (e !== null) this.fail(`cannot send it ${message.type}: ${e.message}`);
    });
  }

  /** Resolves on the host's next `type` message; rejects on its failure, or after `ms`. */
  wait(type: FromHost['type'], ms: number, what: string): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.timer !== timer);
        reject(new UserError(`${WHO}: worker host ${this.index}: ${what} took over ${Math.round(ms / 1000)} s`));
      }, ms);
      this.waiters.push({ type, timer, resolve, reject });
    });
  }

  /**
   * Asks the host to stop (its exit is no failure from now on). Pending waits are dropped with their timers: they
   * belong to a step that has already failed elsewhere, and their timers must not keep the command alive.
   */
  stop(): void {
    if (this.failure === undefined && !this.stopping && this.child.connected) this.child.send({ type: 'stop' } satisfies ToHost, () => {});
    this.stopping = true;
    for (const w of this.waiters.splice(0)) clearTimeout(w.timer);
  }
}

/** The start message's fields that every host shares (each gets its own first … first + count − 1). */
export type HostStart = Omit<Extract<ToHost, { type: 'start' }>, 'type' | 'first' | 'count'>;

/**
 * Forks `processes` worker hosts, workers split evenly in index order, and waits until every worker is connected.
 * Each host goes into `hosts` as soon as it is forked, so the caller's signal handler and cleanup reach it even when
 * a later fork or the wait fails.
 */
export async function startHosts(hosts: HostProcess[], processes: number, start: HostStart): Promise<void> {
  const hostModule = new URL(`./worker-host${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
  const per = Math.ceil(start.total / processes);
  const connected: Promise<void>[] = [];
  for (let first = 0, i = 0; first < start.total; first += per, i++) {
    const count = Math.min(per, start.total - first);
    // The host inherits our execArgv (tsx under tests, nothing from dist/).
    const child = fork(fileURLToPath(hostModule), [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: { ...process.env, FEDPOOL_LOG: process.env.FEDPOOL_LOG ?? 'warn' } });
    const host = new HostProcess(child, i);
    hosts.push(host);
    host.send({ type: 'start', url: start.url, config: start.config, first, count, total: start.total, honest: start.honest, seeds: start.seeds, timeScale: start.timeScale });
    connected.push(host.wait('connected', 60_000 + 50 * count, `connecting ${count} workers`));
  }
  await Promise.all(connected);
}
