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
import { bundleHash, packBundle } from '../../shared/model/bundle.js';
import { parseManifest } from '../../shared/model/manifest.js';
import type { SimConfig } from '../../simulations/config.js';
import { makeTask } from '../../simulations/presets/from-config.js';
import type { SoftmaxTask } from '../../simulations/tasks/softmax.js';
import type { MetricRow, RunResult } from '../../simulations/types.js';
import { CoordinatorApi } from '../api.js';
import { fedpoolChild, waitForLine } from '../children.js';
import { UserError } from '../errors.js';
import { fromHostSchema, type FromHost, type ToHost } from './host-messages.js';
import { planLive, type LivePlan, type LiveRun } from './plan.js';

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
  const res = await fetch(new URL('/metrics', url));
  if (!res.ok) throw new UserError(`${WHO}: the coordinator's /metrics answered ${res.status}`);
  return parseResources(await res.text());
}

/** A worker-host process and its IPC conversation. */
class HostProcess {
  private waiters: { type: FromHost['type']; resolve: () => void; reject: (e: Error) => void }[] = [];
  private stderr = '';
  failure: Error | undefined;

  constructor(
    readonly child: ChildProcess,
    readonly index: number,
  ) {
    child.stderr?.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-2000)));
    child.on('message', (raw: unknown) => {
      const parsed = fromHostSchema.safeParse(raw);
      if (!parsed.success) return this.fail(`sent a bad message (${parsed.error.issues[0]?.message ?? 'invalid'})`);
      const m = parsed.data;
      if (m.type === 'error') return this.fail(m.message);
      const at = this.waiters.findIndex((w) => w.type === m.type);
      if (at >= 0) this.waiters.splice(at, 1)[0]!.resolve();
    });
    child.on('exit', (code, signal) => this.fail(`exited (${signal ?? `code ${code}`})${this.stderr.trim() === '' ? '' : `: ${this.stderr.trim().split('\n').at(-1)}`}`));
  }

  private fail(why: string): void {
    this.failure ??= new UserError(`${WHO}: worker host ${this.index}: ${why}`);
    for (const w of this.waiters.splice(0)) w.reject(this.failure);
  }

  send(message: ToHost): void {
    if (this.failure !== undefined) throw this.failure;
    this.child.send(message);
  }

  wait(type: FromHost['type'], ms: number, what: string): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new UserError(`${WHO}: worker host ${this.index}: ${what} took over ${Math.round(ms / 1000)} s`)), ms);
      this.waiters.push({ type, resolve: () => (clearTimeout(timer), resolve()), reject: (e) => (clearTimeout(timer), reject(e)) });
    });
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

interface MetricLine {
  step: number;
  time: number;
  participants?: number;
  eval_loss?: number | null;
  accuracy?: number | null;
}

export async function runLive(o: LiveOptions): Promise<LiveOutcome> {
  const cfg = o.config;
  const plan = planLive(cfg, o.seeds, o.file);
  for (const note of plan.notes) o.log(`${WHO}: note: ${note}`);
  const total = plan.honest + plan.byzantine;
  const processes = Math.min(total, o.processes ?? Math.min(4, Math.max(1, Math.ceil(total / 250))));
  const tmp = mkdtempSync(path.join(tmpdir(), 'fedpool-live-'));
  const hosts: HostProcess[] = [];
  let coordinator: ChildProcess | undefined;
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
    coordinator = fedpoolChild(['coordinator', '--port', '0', '--state', path.join(tmp, 'coordinator.db'), '--metrics-public']);
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
      connected.push(host.wait('connected', 60_000 + 50 * count, `connecting ${count} workers`));
      host.send({ type: 'start', url: url!, config: cfg, first, count, total, honest: plan.honest, seeds: o.seeds, timeScale: o.timeScale });
    }
    await Promise.all(connected);
    o.log(`${WHO}: ${total} workers connected`);

    const first = taskFor(1);
    const model = await zeroModel(first.features, first.classes);
    await api.ensureBlob(model.hash, model.bytes);

    const results: RunResult[] = [];
    const stats: LiveRunStats[] = [];
    for (const run of plan.runs) {
      await Promise.all(hosts.map((h) => {
        const ready = h.wait('ready', 120_000, `preparing seed ${run.seed}`);
        h.send({ type: 'run', experiment: run.experimentName, seed: run.seed });
        return ready;
      }));
      const { result, stat } = await runOne(api, url!, run, taskFor(run.seed), model.hash, cfg, o.timeScale, hosts);
      results.push(result);
      stats.push(stat);
      o.onRun?.(results.length, plan.runs.length, result, stat);
    }
    return { results, stats, workers: { honest: plan.honest, byzantine: plan.byzantine, processes: hosts.length }, plan };
  } finally {
    for (const h of hosts) {
      try {
        h.send({ type: 'stop' });
      } catch {
        // already gone
      }
    }
    await Promise.all(hosts.map((h) => stopChild(h.child, null, 15_000)));
    if (coordinator !== undefined) await stopChild(coordinator, 'SIGTERM', 15_000);
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function runOne(api: CoordinatorApi, url: string, run: LiveRun, task: SoftmaxTask, model: string, cfg: SimConfig, timeScale: number, hosts: HostProcess[]): Promise<{ result: RunResult; stat: LiveRunStats }> {
  const before = await scrape(url);
  let peakRss = before.rssBytes;
  let peakHeap = before.heapBytes;
  const eval0 = task.evaluate(task.initial());
  const rows: MetricRow[] = [{ experiment: run.experiment, algorithm: run.algorithm, seed: run.seed, step: 0, time: 0, loss: eval0.loss, accuracy: eval0.accuracy }];
  let timeToTarget: number | null = null;
  let updates = 0;
  let steps = 0;
  const started = performance.now();
  const { id } = await api.createJob({
    kind: 'train',
    model,
    config: run.train,
    eval: { dim: task.features, n: task.testY.length, rows: base64(task.testX), labels: base64(task.testY) },
  });
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await new Promise((r) => setTimeout(r, 250));
      try {
        const r = await scrape(url);
        peakRss = Math.max(peakRss, r.rssBytes);
        peakHeap = Math.max(peakHeap, r.heapBytes);
      } catch {
        // a missed sample only lowers the resolution
      }
    }
  })();
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void api.cancel(id).catch(() => {}); // it may have just finished
  };
  try {
    await api.followLines(`/api/jobs/${encodeURIComponent(id)}/metrics?follow=1`, (value) => {
      const m = value as MetricLine;
      steps = Math.max(steps, m.step);
      updates += m.participants ?? 0;
      const time = m.time / timeScale;
      if (typeof m.eval_loss === 'number') {
        rows.push({ experiment: run.experiment, algorithm: run.algorithm, seed: run.seed, step: m.step, time, loss: Number.isFinite(m.eval_loss) ? m.eval_loss : null, accuracy: m.accuracy ?? null });
        if (timeToTarget === null && cfg.target !== undefined && m.eval_loss <= cfg.target) {
          timeToTarget = time;
          if (cfg.stopAtTarget) stop();
        }
      }
      if (cfg.maxTime !== undefined && time >= cfg.maxTime) stop();
    });
  } finally {
    sampling = false;
    await sampler;
  }
  const wall = (performance.now() - started) / 1000;
  const after = await scrape(url);
  const job = await api.job(id);
  const failed = hosts.find((h) => h.failure !== undefined);
  if (failed !== undefined) throw failed.failure!;
  if (job.state === 'failed') throw new UserError(`${WHO}: job ${id} (${run.experiment} ${run.algorithm} seed ${run.seed}) failed: ${job.error ?? 'no reason given'}`);
  const last = rows.at(-1)!;
  const cpu = after.cpuSeconds - before.cpuSeconds;
  const mb = (b: number): number => Math.round((b / 2 ** 20) * 10) / 10;
  return {
    result: { experiment: run.experiment, algorithm: run.algorithm, seed: run.seed, rows, finalLoss: last.loss, finalAccuracy: last.accuracy, timeToTarget, updates },
    stat: {
      experiment: run.experiment, algorithm: run.algorithm, seed: run.seed, job: id, state: job.state,
      wall_s: round3(wall), server_steps: steps, client_updates: updates, updates_per_s: round3(updates / wall),
      coordinator_cpu_s: round3(cpu), coordinator_cpu_percent: Math.round((cpu / wall) * 1000) / 10,
      coordinator_rss_peak_mb: mb(peakRss), coordinator_heap_peak_mb: mb(peakHeap),
    },
  };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** The per-job resources table printed after the summary. */
export function liveTable(stats: readonly LiveRunStats[]): string {
  const head = ['experiment', 'algorithm', 'seed', 'state', 'wall s', 'steps', 'updates', 'updates/s', 'coord CPU %', 'coord RSS MB'];
  const body = stats.map((s) => [s.experiment, s.algorithm, String(s.seed), s.state, s.wall_s.toFixed(1), String(s.server_steps), String(s.client_updates), s.updates_per_s.toFixed(1), s.coordinator_cpu_percent.toFixed(1), s.coordinator_rss_peak_mb.toFixed(1)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), ...body.map(line)].join('\n');
}
