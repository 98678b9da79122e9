// One live run: a real training job on the coordinator, followed through its metrics stream until it ends or is
// stopped (target reached, divergence, the virtual-time cap), into the simulator's rows and a RunResult, with what the
// job cost the coordinator beside it.
import { z } from 'zod';
import type { SimConfig } from '../../simulations/config.js';
import type { SoftmaxTask } from '../../simulations/tasks/softmax.js';
import type { MetricRow, RunResult } from '../../simulations/types.js';
import type { CoordinatorApi } from '../api.js';
import { UserError } from '../errors.js';
import { WHO } from './command-name.js';
import { PeakSampler, scrape, type LiveRunStats } from './coordinator-cost.js';
import type { HostProcess } from './host-process.js';
import { linearModel, toTaskLayout } from './linear-trainer.js';
import type { LiveRun } from './plan.js';

const base64 = (a: Float32Array | Int32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

/** A coordinator metrics.jsonl line, as far as live mode reads it (validated: a bad line stops the run). */
const metricLineSchema = z.object({
  step: z.number().int().nonnegative(),
  time: z.number().finite().nonnegative(),
  participants: z.number().int().nonnegative().optional(),
  eval_loss: z.number().nullable().optional(),
  accuracy: z.number().nullable().optional(),
});

/** Runs `run` as one job on the coordinator at `url`, starting from the blob `model`; a failed host fails it. */
export async function runJob(api: CoordinatorApi, url: string, run: LiveRun, task: SoftmaxTask, model: string, cfg: SimConfig, timeScale: number, hosts: readonly HostProcess[]): Promise<{ result: RunResult; stat: LiveRunStats }> {
  const before = await scrape(url);
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
  const peaks = new PeakSampler(url, before);
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
    if (watchdog !== undefined) clearInterval(watchdog);
    await peaks.stop();
  }
  const wall = (performance.now() - started) / 1000;
  const after = await scrape(url);
  peaks.see(after);
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
      coordinator_rss_peak_mb: mb(peaks.rssBytes), coordinator_heap_peak_mb: mb(peaks.heapBytes),
    },
  };
}

function finiteOrNull(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
