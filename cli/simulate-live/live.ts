// `fedpool simulate --live`: the population of a sim.json, as real processes. A coordinator (`fedpool coordinator`,
// SQLite state in a temporary folder), simulated workers spread over a few worker-host processes (each one a real
// socket.io worker, see worker-host.ts), and one real training job per experiment × algorithm × seed. Rows are the
// coordinator's own metrics (its eval loss and accuracy on the task's test set), with time in virtual units
// (wall seconds / timeScale) so they read like the simulator's; beside them the coordinator's CPU and memory,
// scraped from its Prometheus /metrics during each job.
//
// This module runs the whole thing and owns every process's lifetime; the hosts are host-process.ts, one job and its
// rows run-job.ts, the coordinator's cost coordinator-cost.ts and cost-table.ts.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SimConfig } from '../../simulations/config.js';
import { makeTask } from '../../simulations/presets/from-config.js';
import type { SoftmaxTask } from '../../simulations/tasks/softmax.js';
import type { RunResult } from '../../simulations/types.js';
import { CoordinatorApi } from '../api.js';
import { fedpoolChild, waitForLine } from '../children.js';
import { WHO } from './command-name.js';
import type { LiveRunStats } from './coordinator-cost.js';
import { startHosts, type HostProcess } from './host-process.js';
import { LEASE_MS, planLive, type LivePlan } from './plan.js';
import { runJob } from './run-job.js';
import { zeroModel } from './zero-model.js';

// What importers of simulate-live/live have always found here.
export { parseResources, type LiveRunStats } from './coordinator-cost.js';
export { liveReportTable, liveTable } from './cost-table.js';

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

export interface LiveOutcome {
  results: RunResult[];
  stats: LiveRunStats[];
  workers: { honest: number; byzantine: number; processes: number };
  plan: LivePlan;
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
    // Every simulated worker connects from loopback: lift the connection caps above the population.
    coordinator = fedpoolChild([
      'coordinator', '--port', '0', '--state', path.join(tmp, 'coordinator.db'), '--metrics-public', '--lease-ms', String(LEASE_MS),
      '--max-connections-per-ip', String(total + 1_024), '--max-connections', String(total + 10_000),
    ]);
    const [, url] = await waitForLine(coordinator, /^fedpool coordinator listening on (http:\/\/\S+)$/, 'the coordinator', WHO);
    const api = new CoordinatorApi(url!, undefined);
    o.log(`${WHO}: coordinator ${url} (pid ${coordinator.pid}); starting ${plan.honest} workers${plan.byzantine > 0 ? ` + ${plan.byzantine} Byzantine` : ''} in ${processes} process${processes === 1 ? '' : 'es'}`);

    await startHosts(hosts, processes, { url: url!, config: cfg, total, honest: plan.honest, seeds: o.seeds, timeScale: o.timeScale });
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
      const { result, stat } = await runJob(api, url!, run, taskFor(run.seed), model.hash, cfg, o.timeScale, hosts);
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
