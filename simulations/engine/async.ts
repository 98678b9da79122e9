// Asynchronous federated training on a virtual clock (docs/algorithms.md §3): a discrete-event simulation driven by a
// binary-heap event queue. C clients are kept busy, each job drawn uniformly from the idle clients, trained on the
// model version current at dispatch, and lasting a drawn duration. Algorithms:
//   - FedBuff (K, staleness weight s(τ)): every arrival goes into the very FedBuffBuffer the coordinator's async
//     driver uses; after K arrivals the server optimizer steps with the buffer's aggregate. FedAsync is K = 1.
//   - FedFix-Δt (Fraboni et al.): the server aggregates at fixed times nΔt whatever has arrived since the last tick,
//     x ← x + η_g Σ (w_i/C)·Δ_i with w_i = the number of windows the job spanned (= ⌈dur_i/Δt⌉, as §3.3/§3.5);
//     finished clients wait for the tick and new jobs start there on the new model.
// Events at the same instant are all handled before any replacement is dispatched (so with equal deterministic
// durations all C arrivals are processed, the server steps, and the next jobs start on the new model — §3.4.3).
// Ties: arrivals before ticks, then dispatch order. Randomness: independent seeded streams for training, client
// sampling and durations (the same three streams, seeded the same way, as engine/sync.ts).
import { combine } from '../../shared/aggregation/combine.js';
import { FedBuffBuffer } from '../../shared/aggregation/fedbuff.js';
import { ServerOptimizer, type ServerOptimizerSpec } from '../../shared/aggregation/server-optimizer.js';
import type { StalenessSpec } from '../../shared/aggregation/staleness.js';
import { mulberry32 } from '../../shared/random.js';
import type { LocalOptions, MetricRow, RunResult, LearningTask } from '../types.js';
import { EventQueue } from './event-queue.js';
import type { Duration } from './sync.js';

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

interface Job {
  client: number;
  version: number;
  /** Tick index at dispatch (FedFix). */
  tick: number;
  update: Float32Array;
}

type Event = { kind: 'arrival'; job: Job } | { kind: 'tick'; n: number };

export function runAsync(spec: AsyncRunSpec): AsyncRunResult {
  const { task, local, algo } = spec;
  const N = task.numClients;
  const d = task.dim;
  const C = spec.concurrency;
  if (!Number.isInteger(C) || C < 1 || C > N) throw new RangeError(`async engine: concurrency must be an integer in [1, ${N}], got ${String(C)}`);
  if (!(spec.maxTime >= 0)) throw new RangeError(`async engine: maxTime must be ≥ 0, got ${String(spec.maxTime)}`);
  const logEvery = spec.logEvery ?? (spec.logInterval === undefined ? 1 : Infinity);
  const logInterval = spec.logInterval ?? Infinity;
  if (!(logEvery >= 1) || !(logInterval > 0)) throw new RangeError('async engine: logEvery must be ≥ 1 and logInterval > 0');
  const maxSteps = spec.maxSteps ?? Infinity;
  const trainRng = mulberry32(spec.seed * 2654435761 + 1);
  const sampleRng = mulberry32(spec.seed * 2654435761 + 2);
  const timeRng = mulberry32(spec.seed * 2654435761 + 3);
  const duration: Duration = spec.duration ?? (() => 1);
  const optimizer = new ServerOptimizer(spec.server ?? { optimizer: 'sgd', lr: 1 });
  const trace = spec.trace;

  let buffer: FedBuffBuffer | null = null;
  let interval = 0;
  if (algo.kind === 'fedbuff') {
    buffer = new FedBuffBuffer({
      size: algo.buffer,
      ...(algo.staleness !== undefined && { staleness: algo.staleness }),
      ...(algo.reduction !== undefined && { reduction: algo.reduction }),
      ...(algo.normalizeAt !== undefined && { normalizeAt: algo.normalizeAt }),
      ...(algo.maxStaleness !== undefined && { maxStaleness: algo.maxStaleness }),
    });
  } else if (algo.kind === 'fedfix') {
    interval = algo.interval;
    if (!(Number.isFinite(interval) && interval > 0)) throw new RangeError(`async engine: FedFix interval must be a finite number > 0, got ${String(interval)}`);
  } else {
    throw new RangeError(`async engine: unknown algorithm ${JSON.stringify((algo as { kind?: unknown }).kind)}`);
  }

  // Idle clients: a dense list with positions, so a uniform pick and its removal are O(1).
  const idle = Int32Array.from({ length: N }, (_, i) => i);
  const pos = Int32Array.from({ length: N }, (_, i) => i);
  let idleCount = N;
  const makeIdle = (c: number): void => {
    idle[idleCount] = c;
    pos[c] = idleCount++;
  };
  const takeIdle = (c: number): void => {
    const p = pos[c]!;
    const last = idle[--idleCount]!;
    idle[p] = last;
    pos[last] = p;
    pos[c] = -1;
  };

  // Update buffers are recycled: at most C in flight plus those waiting in the server's buffer.
  const pool: Float32Array[] = [];
  const release = (u: Float32Array): void => {
    pool.push(u);
  };

  const queue = new EventQueue<Event>();
  let x = task.initial();
  let version = 0;
  let inFlight = 0;
  let dispatched = 0;
  let arrivals = 0;
  let tickIndex = 0;

  const dispatch = (count: number, now: number): void => {
    const m = Math.min(count, idleCount);
    if (m <= 0) return;
    const chosen: number[] = [];
    for (let k = 0; k < m; k++) {
      const c = idle[Math.floor(sampleRng() * idleCount)]!;
      takeIdle(c);
      chosen.push(c);
    }
    chosen.sort((a, b) => a - b);
    for (const client of chosen) {
      const update = pool.pop() ?? new Float32Array(d);
      task.localUpdate(client, x, local, trainRng, update);
      const dur = duration(client, timeRng);
      // 0 would redispatch at the same instant for ever (the clock never reaches maxTime).
      if (!(dur > 0) || !Number.isFinite(dur)) throw new RangeError(`async engine: duration of client ${client} is ${String(dur)}; jobs must take a finite time > 0`);
      queue.push(now + dur, { kind: 'arrival', job: { client, version, tick: tickIndex, update } }, 0);
      inFlight++;
      dispatched++;
      trace?.({ kind: 'dispatch', time: now, client, version, duration: dur });
    }
  };

  const rows: MetricRow[] = [];
  let timeToTarget: number | null = null;
  let stop = false;
  let lastStepTime = 0;
  let lastLoggedStep = -1;
  let nextLogTime = logInterval;
  const log = (time: number): void => {
    const e = task.evaluate(x);
    const loss = Number.isFinite(e.loss) ? e.loss : null;
    rows.push({ experiment: spec.experiment, algorithm: spec.algorithm, seed: spec.seed, step: version, time, loss, accuracy: e.accuracy });
    lastLoggedStep = version;
    if (spec.target !== undefined && e.loss <= spec.target) {
      timeToTarget ??= time;
      if (spec.stopAtTarget === true) stop = true;
    }
    if (loss === null) stop = true; // diverged
  };
  const stepped = (time: number, count: number): void => {
    version++;
    lastStepTime = time;
    trace?.({ kind: 'step', time, step: version, count, model: x });
    if (version % logEvery === 0 || time >= nextLogTime) {
      log(time);
      while (nextLogTime <= time) nextLogTime += logInterval;
    }
    if (version >= maxSteps) stop = true;
  };

  // FedBuff: updates sitting in the server buffer (recycled once it drains). FedFix: arrivals waiting for the tick.
  const held: Float32Array[] = [];
  const done: Job[] = [];

  log(0);
  dispatch(C, 0);
  if (interval > 0) queue.push(interval, { kind: 'tick', n: 1 }, 1);
  let now = 0;
  while (!stop && queue.size > 0) {
    const t = queue.peekTime();
    if (t > spec.maxTime) break;
    now = t;
    let ticked = false;
    // Handle everything that happens at this instant, then hand out new work.
    while (!stop && queue.size > 0 && queue.peekTime() === t) {
      const ev = queue.pop()!.value;
      if (ev.kind === 'arrival') {
        const job = ev.job;
        inFlight--;
        arrivals++;
        makeIdle(job.client);
        const staleness = version - job.version;
        trace?.({ kind: 'arrival', time: t, client: job.client, version: job.version, staleness, update: job.update });
        if (buffer !== null) {
          const r = buffer.add(job.update, staleness);
          if (r.kind === 'dropped') release(job.update);
          else {
            held.push(job.update);
            if (r.kind === 'ready') {
              x = optimizer.step(x, r.aggregate);
              for (const u of held) release(u);
              held.length = 0;
              stepped(t, r.count);
            }
          }
        } else {
          done.push(job);
        }
      } else {
        tickIndex = ev.n;
        ticked = true;
        if (done.length > 0) {
          const coeffs = Float64Array.from(done, (j) => (ev.n - j.tick) / C);
          x = optimizer.step(x, combine(done.map((j) => j.update), coeffs));
          for (const j of done) release(j.update);
          const count = done.length;
          done.length = 0;
          stepped(t, count);
        }
        queue.push((ev.n + 1) * interval, { kind: 'tick', n: ev.n + 1 }, 1);
      }
    }
    if (stop) break;
    // FedBuff tops up after every instant; FedFix only at a tick (finished clients wait for the new model).
    if (buffer !== null || ticked) dispatch(C - inFlight, t);
  }
  if (lastLoggedStep !== version) log(lastStepTime);
  const last = rows.at(-1);
  return {
    experiment: spec.experiment,
    algorithm: spec.algorithm,
    seed: spec.seed,
    rows,
    finalLoss: last?.loss ?? null,
    finalAccuracy: last?.accuracy ?? null,
    timeToTarget,
    updates: arrivals,
    steps: version,
    arrivals,
    dispatched,
    endTime: now,
  };
}
