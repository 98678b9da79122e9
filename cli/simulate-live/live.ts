// `fedpool simulate --live`: the population of a sim.json, as real processes. A coordinator (`fedpool coordinator`,
// SQLite state in a temporary folder), simulated workers spread over a few worker-host processes (each one a real
// socket.io worker, see worker-host.ts), and one real training job per experiment × algorithm × seed. Rows are the
// coordinator's own metrics (its eval loss and accuracy on the task's test set), with time in virtual units
// (wall seconds / timeScale) so they read like the simulator's; beside them the coordinator's CPU and memory,
// scraped from its Prometheus /metrics during each job.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { bundleHash, packBundle } from '../../shared/model/bundle.js';
import { parseManifest } from '../../shared/model/manifest.js';
import type { SimConfig } from '../../simulations/config.js';
import { makeTask } from '../../simulations/presets/from-config.js';
import type { SoftmaxTask } from '../../simulations/tasks/softmax.js';
import type { ReportTable } from '../../simulations/report/html.js';
import type { MetricRow, RunResult } from '../../simulations/types.js';
import { CoordinatorApi } from '../api.js';
import { fedpoolChild, waitForLine } from '../children.js';
import { UserError } from '../errors.js';
import { fromHostSchema, type FromHost, type ToHost } from './host-messages.js';
import { linearModel, toTaskLayout } from './linear-trainer.js';
import { LEASE_MS, planLive, type LivePlan, type LiveRun } from './plan.js';

const WHO = 'fedpool simulate --live';

export interface LiveOptions {
  config: SimConfig;
  /** The config file's name, for messages. */
  file: string;
  seeds: number;
  /** Worker-host processes (default: one per 250 workers, at most 4). */
  processes?: number;
  /** Wall-clock seconds per unit of virtual time. */
  timeScale: number;
  /** One line of progress or notes (stderr). */
  log: (line: string) => void;
  onRun?: (done: number, total: number, result: RunResult, stats: LiveRunStats) => void;
}

/** What one job cost the coordinator. */
export interface LiveRunStats {
  experiment: string;
  algorithm: string;
  seed: number;
  job: string;
  /** 'done', or 'cancelled' when the run stopped at maxTime or the target. */
  state: string;
  wall_s: number;
  server_steps: number;
  client_updates: number;
  updates_per_s: number;
  /** Coordinator process CPU seconds during the job, and as a share of one core. */
  coordinator_cpu_s: number;
  coordinator_cpu_percent: number;
  coordinator_rss_peak_mb: number;
  coordinator_heap_peak_mb: number;
}

export interface LiveOutcome {
  results: RunResult[];
  stats: LiveRunStats[];
  workers: { honest: number; byzantine: number; processes: number };
  plan: LivePlan;
}

interface Resources {
  cpuSeconds: number;
  rssBytes: number;
  heapBytes: number;
}

/** The coordinator's own process figures from its Prometheus text (prom-client default metrics, prefix fedpool_). */
export function parseResources(text: string): Resources {
  const value = (name: string): number => {
    const m = new RegExp(`^${name} ([0-9.eE+-]+)`, 'm').exec(text);
    if (m === null) throw new Error(`coordinator /metrics has no ${name}`);
    return Number(m[1]);
  };
  return { cpuSeconds: value('fedpool_process_cpu_seconds_total'), rssBytes: value('fedpool_process_resident_memory_bytes'), heapBytes: value('fedpool_nodejs_heap_size_used_bytes') };
}

async function scrape(url: string): Promise<Resources> {
  const res = await fetch(new URL('/metrics', url), { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new UserError(`${WHO}: the coordinator's /metrics answered ${res.status}`);
  return parseResources(await res.text());
}

/**
 * A worker-host process and its IPC conversation. A failure (exit, error, nonsense) is recorded once and reaches
 * every wait, pending or later; sending never throws, so no wait's promise is left unobserved by a throw between
 * creating it and handing it to Promise.all (a dead host once crashed the command with an unhandled rejection).
 */
class HostProcess {
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

/** Waits for a child to exit, sending `signal` first and SIGKILL after `ms` (by its PID, which we started). */
function stopChild(child: ChildProcess, signal: NodeJS.Signals | null, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    if (signal !== null) child.kill(signal);
  });
}

/** A linear softmax classifier bundle with zero weights: the simulator's x₀ = 0. */
async function zeroModel(features: number, classes: number): Promise<{ hash: string; bytes: Uint8Array }> {
  const [{ selectBackend }, tfModel, { setFlatWeights, parameterCount }] = await Promise.all([
    import('../../client/backends.js'),
    import('../../shared/model/tf-model.js'),
    import('../../shared/model/weights.js'),
  ]);
  await selectBackend('cpu');
  const manifest = parseManifest({ format: 'fedpool-model', version: 1, kind: 'classifier', input: { kind: 'features', dim: features }, output: { kind: 'classes', classes }, hidden: [], seed: 0 }, 'live model');
  const model = tfModel.buildModel(manifest);
  try {
    setFlatWeights(model, new Float32Array(parameterCount(model)));
    const bytes = packBundle(await tfModel.saveToFiles(model, manifest));
    return { hash: await bundleHash(bytes), bytes };
  } finally {
    model.dispose();
  }
}

const base64 = (a: Float32Array | Int32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

/** A coordinator metrics.jsonl line, as far as live mode reads it (validated: a bad line stops the run). */
const metricLineSchema = z.object({
  step: z.number().int().nonnegative(),
  time: z.number().finite().nonnegative(),
  participants: z.number().int().nonnegative().optional(),
  eval_loss: z.number().nullable().optional(),
  accuracy: z.number().nullable().optional(),
});

export async function runLive(o: LiveOptions): Promise<LiveOutcome> {
  const cfg = o.config;
  const plan = planLive(cfg, o.seeds, o.file);
  for (const note of plan.notes) o.log(`${WHO}: note: ${note}`);
  const total = plan.honest + plan.byzantine;
  const processes = Math.min(total, o.processes ?? Math.min(4, Math.max(1, Math.ceil(total / 250))));
  const tmp = mkdtempSync(path.join(tmpdir(), 'fedpool-live-'));
  const hosts: HostProcess[] = [];
  let coordinator: ChildProcess | undefined;
  // Ctrl-C or a kill of this process must not leave the coordinator (its own process group member or not) running:
  // kill every child by the PID we started it with, remove the temporary state, and exit.
  const killAll = (): void => {
    for (const c of [coordinator, ...hosts.map((h) => h.child)]) {
      if (c !== undefined && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    o.log(`${WHO}: ${signal}: stopping the coordinator and the workers`);
    killAll();
    rmSync(tmp, { recursive: true, force: true });
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', killAll);
  const tasks = new Map<number, SoftmaxTask>();
  const taskFor = (seed: number): SoftmaxTask => {
    let t = tasks.get(seed);
    if (t === undefined) {
      tasks.clear();
      t = makeTask(cfg, seed) as SoftmaxTask;
      tasks.set(seed, t);
    }
    return t;
  };
  try {
    // Long leases: a simulated job may sleep for minutes of scaled virtual time, and a dead host is noticed here.
    coordinator = fedpoolChild(['coordinator', '--port', '0', '--state', path.join(tmp, 'coordinator.db'), '--metrics-public', '--lease-ms', String(LEASE_MS)]);
    const [, url] = await waitForLine(coordinator, /^fedpool coordinator listening on (http:\/\/\S+)$/, 'the coordinator', WHO);
    const api = new CoordinatorApi(url!, undefined);
    o.log(`${WHO}: coordinator ${url} (pid ${coordinator.pid}); starting ${plan.honest} workers${plan.byzantine > 0 ? ` + ${plan.byzantine} Byzantine` : ''} in ${processes} process${processes === 1 ? '' : 'es'}`);

    const hostModule = new URL(`./worker-host${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
    const per = Math.ceil(total / processes);
    const connected: Promise<void>[] = [];
    for (let first = 0, i = 0; first < total; first += per, i++) {
      const count = Math.min(per, total - first);
      // The host inherits our execArgv (tsx under tests, nothing from dist/).
      const child = fork(fileURLToPath(hostModule), [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: { ...process.env, FEDPOOL_LOG: process.env.FEDPOOL_LOG ?? 'warn' } });
      const host = new HostProcess(child, i);
      hosts.push(host);
      host.send({ type: 'start', url: url!, config: cfg, first, count, total, honest: plan.honest, seeds: o.seeds, timeScale: o.timeScale });
      connected.push(host.wait('connected', 60_000 + 50 * count, `connecting ${count} workers`));
    }
    await Promise.all(connected);
    o.log(`${WHO}: ${total} workers connected (worker hosts: pid ${hosts.map((h) => h.child.pid).join(', ')})`);

    const first = taskFor(1);
    const model = await zeroModel(first.features, first.classes);
    await api.ensureBlob(model.hash, model.bytes);

    const results: RunResult[] = [];
    const stats: LiveRunStats[] = [];
    for (const run of plan.runs) {
      await Promise.all(hosts.map((h) => {
        h.send({ type: 'run', experiment: run.experimentName, seed: run.seed });
        return h.wait('ready', 120_000, `preparing seed ${run.seed}`);
      }));
      const { result, stat } = await runOne(api, url!, run, taskFor(run.seed), model.hash, cfg, o.timeScale, hosts);
      results.push(result);
      stats.push(stat);
      o.onRun?.(results.length, plan.runs.length, result, stat);
    }
    return { results, stats, workers: { honest: plan.honest, byzantine: plan.byzantine, processes: hosts.length }, plan };
  } finally {
    for (const h of hosts) h.stop();
    await Promise.all(hosts.map((h) => stopChild(h.child, null, 15_000)));
    if (coordinator !== undefined) await stopChild(coordinator, 'SIGTERM', 15_000);
    rmSync(tmp, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', killAll);
  }
}

async function runOne(api: CoordinatorApi, url: string, run: LiveRun, task: SoftmaxTask, model: string, cfg: SimConfig, timeScale: number, hosts: HostProcess[]): Promise<{ result: RunResult; stat: LiveRunStats }> {
  const before = await scrape(url);
  let peakRss = before.rssBytes;
  let peakHeap = before.heapBytes;
  const eval0 = task.evaluate(task.initial());
  const rows: MetricRow[] = [{ experiment: run.experiment, algorithm: run.algorithm, seed: run.seed, step: 0, time: 0, loss: finiteOrNull(eval0.loss), accuracy: eval0.accuracy }];
  const row = (step: number, time: number, loss: number | null, accuracy: number | null): MetricRow => ({ experiment: run.experiment, algorithm: run.algorithm, seed: run.seed, step, time, loss, accuracy });
  // The coordinator evaluates at these steps (eval.every = logEvery, and a sync job's last round).
  const lastRound = run.train.mode === 'sync' ? run.train.rounds : null;
  const evaluated = (step: number): boolean => step % cfg.logEvery === 0 || step === lastRound;
  let timeToTarget: number | null = null;
  let updates = 0;
  let last = { step: 0, time: 0 };
  const started = performance.now();
  const { id } = await api.createJob({
    kind: 'train',
    model,
    config: run.train,
    eval: { dim: task.features, n: task.testY.length, rows: base64(task.testX), labels: base64(task.testY) },
  });
  // Once a second: each scrape costs the coordinator a walk of its handles and file descriptors (one per socket), so
  // sampling faster would inflate the very CPU figure it measures.
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        const r = await scrape(url);
        peakRss = Math.max(peakRss, r.rssBytes);
        peakHeap = Math.max(peakHeap, r.heapBytes);
      } catch {
        // a missed sample only lowers the resolution
      }
    }
  })();
  // Stopping = cancelling the job; a cancel that fails is sent again on the next line or watchdog tick (one that
  // fails because the job has just ended is harmless: no more lines come).
  let stopped = false;
  let cancelling: Promise<void> | undefined;
  const stop = (): void => {
    stopped = true;
    cancelling ??= api.cancel(id).then(
      () => {},
      () => {
        cancelling = undefined;
      },
    );
  };
  // The virtual-time cap, on the wall clock too: a run whose workers stopped answering sends no more lines.
  const watchdog = cfg.maxTime === undefined ? undefined : setInterval(() => {
    if ((performance.now() - started) / 1000 > cfg.maxTime! * timeScale + 60) stop();
  }, 1000);
  const follow = api.followLines(`/api/jobs/${encodeURIComponent(id)}/metrics?follow=1`, (value) => {
    const parsed = metricLineSchema.safeParse(value);
    if (!parsed.success) throw new UserError(`${WHO}: job ${id} sent a bad metrics line: ${JSON.stringify(value).slice(0, 200)}`);
    const m = parsed.data;
    const time = m.time / timeScale;
    last = { step: m.step, time };
    if (stopped) {
      stop(); // a cancel that failed is sent again
      return;
    }
    updates += m.participants ?? 0;
    if (evaluated(m.step)) {
      const loss = typeof m.eval_loss === 'number' && Number.isFinite(m.eval_loss) ? m.eval_loss : null; // NaN arrives as null
      rows.push(row(m.step, time, loss, m.accuracy ?? null));
      if (timeToTarget === null && cfg.target !== undefined && loss !== null && loss <= cfg.target) {
        timeToTarget = time;
        if (cfg.stopAtTarget) stop();
      }
      if (loss === null) stop(); // diverged: the simulator ends such runs too
    }
    if (cfg.maxTime !== undefined && time >= cfg.maxTime) stop();
  });
  follow.catch(() => {}); // raced below; a stream cut by a failure elsewhere is not an error of its own
  try {
    await Promise.race([follow, ...hosts.map((h) => h.failed)]);
  } catch (e) {
    await api.cancel(id).catch(() => {});
    throw e;
  } finally {
    sampling = false;
    if (watchdog !== undefined) clearInterval(watchdog);
    await sampler;
  }
  const wall = (performance.now() - started) / 1000;
  const after = await scrape(url);
  peakRss = Math.max(peakRss, after.rssBytes);
  peakHeap = Math.max(peakHeap, after.heapBytes);
  const job = await api.job(id);
  if (job.state === 'failed') throw new UserError(`${WHO}: job ${id} (${run.experiment} ${run.algorithm} seed ${run.seed}) failed: ${job.error ?? 'no reason given'}`);
  // The model the job ended with, when no evaluated row shows it (a cancel lands between evaluations).
  const finalStep = job.progress.done;
  if (rows.at(-1)!.step !== finalStep && finalStep > 0) {
    const bundle = await api.bytes(`/api/jobs/${encodeURIComponent(id)}/model`);
    const m = linearModel(bundle);
    const e = task.evaluate(toTaskLayout(m.initial, m.features, m.classes));
    rows.push(row(finalStep, last.time, finiteOrNull(e.loss), e.accuracy));
  }
  const final = rows.at(-1)!;
  const cpu = after.cpuSeconds - before.cpuSeconds;
  const mb = (b: number): number => Math.round((b / 2 ** 20) * 10) / 10;
  return {
    result: { experiment: run.experiment, algorithm: run.algorithm, seed: run.seed, rows, finalLoss: final.loss, finalAccuracy: final.accuracy, timeToTarget, updates },
    stat: {
      experiment: run.experiment, algorithm: run.algorithm, seed: run.seed, job: id, state: job.state,
      wall_s: round3(wall), server_steps: finalStep, client_updates: updates, updates_per_s: round3(updates / wall),
      coordinator_cpu_s: round3(cpu), coordinator_cpu_percent: Math.round((cpu / wall) * 1000) / 10,
      coordinator_rss_peak_mb: mb(peakRss), coordinator_heap_peak_mb: mb(peakHeap),
    },
  };
}

function finiteOrNull(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

const LIVE_HEADERS = ['experiment', 'algorithm', 'seed', 'state', 'wall s', 'steps', 'updates', 'updates/s', 'coord CPU %', 'coord RSS MB'] as const;

/** One job's cells of the resources table (terminal and report). */
function liveCells(s: LiveRunStats): string[] {
  return [s.experiment, s.algorithm, String(s.seed), s.state, s.wall_s.toFixed(1), String(s.server_steps), String(s.client_updates), s.updates_per_s.toFixed(1), s.coordinator_cpu_percent.toFixed(1), s.coordinator_rss_peak_mb.toFixed(1)];
}

/** The resources table for report.html. */
export function liveReportTable(stats: readonly LiveRunStats[]): ReportTable {
  return {
    title: 'Coordinator cost per job (live)',
    note: 'CPU as a share of one core and peak resident memory of the coordinator process, sampled from its /metrics every second; updates are what it aggregated (Byzantine workers included).',
    headers: LIVE_HEADERS,
    rows: stats.map(liveCells),
  };
}

/** The per-job resources table printed after the summary. */
export function liveTable(stats: readonly LiveRunStats[]): string {
  const head = [...LIVE_HEADERS];
  const body = stats.map(liveCells);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), ...body.map(line)].join('\n');
}
