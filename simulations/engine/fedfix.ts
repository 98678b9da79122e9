// FedFix-Δt (Fraboni et al.; docs/algorithms.md §3.3) on a virtual clock: the server aggregates at fixed times nΔt
// whatever has arrived since the last tick, x ← x + η_g Σ (w_i/C)·Δ_i with w_i = the number of windows the job spanned
// (= ⌈dur_i/Δt⌉); finished clients wait for the tick and new jobs start there on the new model. Not a driver
// algorithm — the coordinator's drivers step on arrivals, never on a clock — so it keeps this loop of its own, seeded
// like the driven engine (engine/clients.ts): dispatch from deriveSeed(seed, 'sample'), training per (version,
// client), durations per client. Events at one instant: arrivals before ticks, then dispatch order.
import { combine } from '../../shared/aggregation/combine.js';
import { ServerOptimizer } from '../../shared/aggregation/server-optimizer.js';
import { deriveSeed, mulberry32 } from '../../shared/random.js';
import { AsyncReport, checkJobDuration, type AsyncRunResult, type AsyncRunSpec } from './async-report.js';
import { clientDurations } from './clients.js';
import { EventQueue } from './event-queue.js';

interface Job {
  client: number;
  version: number;
  /** Tick index at dispatch. */
  tick: number;
  update: Float32Array;
}

type Event = { kind: 'arrival'; job: Job } | { kind: 'tick'; n: number };

export function runFedFix(spec: AsyncRunSpec, every: { logEvery: number; logInterval: number; maxSteps: number }): AsyncRunResult {
  const { task, local, algo } = spec;
  if (algo.kind !== 'fedfix') throw new RangeError('runFedFix: not a FedFix algorithm');
  const interval = algo.interval;
  if (!(Number.isFinite(interval) && interval > 0)) throw new RangeError(`async engine: FedFix interval must be a finite number > 0, got ${String(interval)}`);
  const N = task.numClients;
  const d = task.dim;
  const C = spec.concurrency;
  const sampleRng = mulberry32(deriveSeed(spec.seed, 'sample'));
  const duration = clientDurations(spec.duration, spec.seed, N);
  const optimizer = new ServerOptimizer(spec.server ?? { optimizer: 'sgd', lr: 1 });
  const trace = spec.trace;

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

  const queue = new EventQueue<Event>();
  let x = task.initial();
  const report = new AsyncReport(spec, every, x);
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
    const version = report.version;
    for (const client of chosen) {
      const update = new Float32Array(d);
      task.localUpdate(client, x, local, mulberry32(deriveSeed(spec.seed, 'train', version, client)), update);
      const dur = checkJobDuration(client, duration(client));
      queue.push(now + dur, { kind: 'arrival', job: { client, version, tick: tickIndex, update } }, 0);
      inFlight++;
      dispatched++;
      trace?.({ kind: 'dispatch', time: now, client, version, duration: dur });
    }
  };

  // Arrivals waiting for the tick.
  const done: Job[] = [];
  report.log(0);
  dispatch(C, 0);
  queue.push(interval, { kind: 'tick', n: 1 }, 1);
  let now = 0;
  while (!report.stop && queue.size > 0) {
    const t = queue.peekTime();
    if (t > spec.maxTime) break;
    now = t;
    let ticked = false;
    // Handle everything that happens at this instant, then hand out new work.
    while (!report.stop && queue.size > 0 && queue.peekTime() === t) {
      const ev = queue.pop()!.value;
      if (ev.kind === 'arrival') {
        const job = ev.job;
        inFlight--;
        arrivals++;
        makeIdle(job.client);
        trace?.({ kind: 'arrival', time: t, client: job.client, version: job.version, staleness: report.version - job.version, update: job.update });
        done.push(job);
      } else {
        tickIndex = ev.n;
        ticked = true;
        if (done.length > 0) {
          const coeffs = Float64Array.from(done, (j) => (ev.n - j.tick) / C);
          x = optimizer.step(x, combine(done.map((j) => j.update), coeffs));
          const count = done.length;
          done.length = 0;
          report.stepped(t, count, x);
        }
        queue.push((ev.n + 1) * interval, { kind: 'tick', n: ev.n + 1 }, 1);
      }
    }
    if (report.stop) break;
    // Only at a tick: finished clients wait for the new model.
    if (ticked) dispatch(C - inFlight, t);
  }
  return report.result({ arrivals, dispatched, endTime: now });
}
