// What the asynchronous engines share (engine/async.ts runs FedBuff on the coordinator's AsyncDriver, engine/fedfix.ts
// runs FedFix in its own loop): the run spec, the trace, the result, and the reporting — metrics rows every logEvery
// steps or logInterval of virtual time, time to target, stop at the target, at maxSteps or when the loss diverges.
import type { ServerOptimizerSpec } from '../../shared/aggregation/server-optimizer.js';
import type { StalenessSpec } from '../../shared/aggregation/staleness.js';
import type { LocalOptions, MetricRow, RunResult, LearningTask } from '../types.js';
import type { Duration } from './clients.js';

export type AsyncAlgorithm =
  | {
      kind: 'fedbuff';
      /** K: server step after every K accepted arrivals (1 = FedAsync). */
      buffer: number;
      /** s(τ) (default (1+τ)^−½; `{ kind: 'constant' }` for none). */
      staleness?: StalenessSpec;
      /** 'mean' (paper, default) or 'sum' (FLSim, 1/K folded into the server lr). */
      reduction?: 'mean' | 'sum';
      /** FLSim's normalisation s(τ)/s(τ̄) (default: raw s(τ)). */
      normalizeAt?: number;
      maxStaleness?: number;
    }
  | {
      kind: 'fedfix';
      /** Δt: the server aggregates at times Δt, 2Δt, … */
      interval: number;
    };

export interface AsyncRunSpec {
  experiment: string;
  algorithm: string;
  seed: number;
  task: LearningTask;
  /** C: jobs in flight (≤ the task's clients). */
  concurrency: number;
  algo: AsyncAlgorithm;
  local: LocalOptions;
  /** The server's step on the aggregate (default SGD, lr η_g = 1). */
  server?: ServerOptimizerSpec;
  /** Local job durations (default: every job takes 1). */
  duration?: Duration;
  /** Stop before the first event later than this virtual time. */
  maxTime: number;
  /** Stop after this many server steps (default: unbounded). */
  maxSteps?: number;
  /** Log a metrics row every this many server steps. Default 1 unless `logInterval` is given. */
  logEvery?: number;
  /** Also (or instead) log at the first server step at or after each multiple of this virtual time. */
  logInterval?: number;
  /** Loss target: timeToTarget is the virtual time of the first logged row at or below it. */
  target?: number;
  /** End the run at the first logged row that reaches the target (default false). */
  stopAtTarget?: boolean;
  /**
   * Observe the run (tests, debugging). `update` and `model` are the engine's own buffers: copy them to keep them.
   */
  trace?: (event: AsyncTraceEvent) => void;
}

export type AsyncTraceEvent =
  | { kind: 'dispatch'; time: number; client: number; version: number; duration: number }
  | { kind: 'arrival'; time: number; client: number; version: number; staleness: number; update: Float32Array }
  | { kind: 'step'; time: number; step: number; count: number; model: Float32Array };

export interface AsyncRunResult extends RunResult {
  /** Server steps taken. */
  steps: number;
  /** Jobs that arrived at the server (= `updates`). */
  arrivals: number;
  /** Jobs started (arrivals + those still in flight when the run stopped). */
  dispatched: number;
  /** Virtual time of the last event handled. */
  endTime: number;
}

/** The checks both engines make on a spec; returns logEvery, logInterval and maxSteps with defaults filled in. */
export function checkAsyncSpec(spec: AsyncRunSpec): { logEvery: number; logInterval: number; maxSteps: number } {
  const N = spec.task.numClients;
  const C = spec.concurrency;
  if (!Number.isInteger(C) || C < 1 || C > N) throw new RangeError(`async engine: concurrency must be an integer in [1, ${N}], got ${String(C)}`);
  if (!(spec.maxTime >= 0)) throw new RangeError(`async engine: maxTime must be ≥ 0, got ${String(spec.maxTime)}`);
  const logEvery = spec.logEvery ?? (spec.logInterval === undefined ? 1 : Infinity);
  const logInterval = spec.logInterval ?? Infinity;
  if (!(logEvery >= 1) || !(logInterval > 0)) throw new RangeError('async engine: logEvery must be ≥ 1 and logInterval > 0');
  return { logEvery, logInterval, maxSteps: spec.maxSteps ?? Infinity };
}

/** A job duration as the async engines need it: finite and > 0 (0 would redispatch at the same instant for ever). */
export function checkJobDuration(client: number, dur: number): number {
  if (!(dur > 0) || !Number.isFinite(dur)) throw new RangeError(`async engine: duration of client ${client} is ${String(dur)}; jobs must take a finite time > 0`);
  return dur;
}

/** Rows, time to target and the stop flag of one asynchronous run. */
export class AsyncReport {
  readonly rows: MetricRow[] = [];
  timeToTarget: number | null = null;
  stop = false;
  /** Server steps so far (the model's version). */
  version = 0;
  private lastStepTime = 0;
  private lastLoggedStep = -1;
  private nextLogTime: number;

  constructor(
    private readonly spec: AsyncRunSpec,
    private readonly every: { logEvery: number; logInterval: number; maxSteps: number },
    private model: Float32Array,
  ) {
    this.nextLogTime = every.logInterval;
  }

  /** Evaluates the current model into a row at `time`. */
  log(time: number): void {
    const e = this.spec.task.evaluate(this.model);
    const loss = Number.isFinite(e.loss) ? e.loss : null;
    this.rows.push({ experiment: this.spec.experiment, algorithm: this.spec.algorithm, seed: this.spec.seed, step: this.version, time, loss, accuracy: e.accuracy });
    this.lastLoggedStep = this.version;
    if (this.spec.target !== undefined && e.loss <= this.spec.target) {
      this.timeToTarget ??= time;
      if (this.spec.stopAtTarget === true) this.stop = true;
    }
    if (loss === null) this.stop = true; // diverged
  }

  /** One server step at `time` over `count` updates, to `model`. */
  stepped(time: number, count: number, model: Float32Array): void {
    this.model = model;
    this.version++;
    this.lastStepTime = time;
    this.spec.trace?.({ kind: 'step', time, step: this.version, count, model });
    if (this.version % this.every.logEvery === 0 || time >= this.nextLogTime) {
      this.log(time);
      while (this.nextLogTime <= time) this.nextLogTime += this.every.logInterval;
    }
    if (this.version >= this.every.maxSteps) this.stop = true;
  }

  /** The result, with a last row for the final model when the last step was not logged. */
  result(counts: { arrivals: number; dispatched: number; endTime: number }): AsyncRunResult {
    if (this.lastLoggedStep !== this.version) this.log(this.lastStepTime);
    const last = this.rows.at(-1);
    const s = this.spec;
    return {
      experiment: s.experiment, algorithm: s.algorithm, seed: s.seed, rows: this.rows,
      finalLoss: last?.loss ?? null, finalAccuracy: last?.accuracy ?? null, timeToTarget: this.timeToTarget,
      updates: counts.arrivals, steps: this.version, ...counts,
    };
  }
}
