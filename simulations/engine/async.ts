// Asynchronous federated training on a virtual clock (docs/algorithms.md §3). C clients are kept busy, each job drawn
// uniformly from the idle clients, trained on the model version current at dispatch, and lasting a drawn duration.
//   - FedBuff (K, staleness weight s(τ)) runs the coordinator's own AsyncDriver (shared/training/async-driver.ts)
//     through the driven engine (engine/driven.ts): dispatch by the driver's seeded Random, every arrival into the
//     driver's FedBuffBuffer, a server step after K of them. FedAsync is K = 1.
//   - FedFix-Δt (Fraboni et al.) is not a driver algorithm — the coordinator has no clock-driven steps — so it keeps
//     its own loop (engine/fedfix.ts).
// Events at the same instant are all handled before any replacement is dispatched (so with equal deterministic
// durations all C arrivals are processed, the server steps, and the next jobs start on the new model — §3.4.3).
// Ties: dispatch order. Randomness by purpose (engine/clients.ts): training per (version, client), durations per
// client, the driver's sampling from deriveSeed(seed, 'sample').
import { deriveSeed } from '../../shared/random.js';
import { AsyncDriver } from '../../shared/training/async-driver.js';
import { AsyncReport, checkAsyncSpec, checkJobDuration, type AsyncRunResult, type AsyncRunSpec } from './async-report.js';
import { orderDurations, taskClient } from './clients.js';
import { runDriver } from './driven.js';
import { runFedFix } from './fedfix.js';

export type { AsyncAlgorithm, AsyncRunResult, AsyncRunSpec, AsyncTraceEvent } from './async-report.js';

export function runAsync(spec: AsyncRunSpec): AsyncRunResult {
  const every = checkAsyncSpec(spec);
  const { task, algo } = spec;
  if (algo.kind === 'fedfix') return runFedFix(spec, every);
  if (algo.kind !== 'fedbuff') throw new RangeError(`async engine: unknown algorithm ${JSON.stringify((algo as { kind?: unknown }).kind)}`);
  const N = task.numClients;
  const driver = new AsyncDriver(
    {
      numClients: N,
      concurrency: spec.concurrency,
      buffer: algo.buffer,
      staleness: algo.staleness ?? { kind: 'poly', exponent: 0.5 },
      maxStaleness: algo.maxStaleness ?? null,
      ...(algo.reduction !== undefined && { reduction: algo.reduction }),
      ...(algo.normalizeAt !== undefined && { normalizeAt: algo.normalizeAt }),
      steps: Number.isFinite(every.maxSteps) ? every.maxSteps : Number.MAX_SAFE_INTEGER,
      seed: deriveSeed(spec.seed, 'sample'),
      participation: null,
      pipeline: { weighting: 'uniform', robust: { mix: 'none', rule: 'mean', f: 0 }, server: spec.server ?? { optimizer: 'sgd', lr: 1 } },
    },
    task.initial(),
  );
  const report = new AsyncReport(spec, every, driver.weights);
  const durations = orderDurations(spec.duration, spec.seed, N);
  const trace = spec.trace;
  let count = 0; // updates taken since the last step
  report.log(0);
  const r = runDriver(driver, taskClient(task, spec.local, { seed: spec.seed }), {
    duration: (order) => checkJobDuration(order.client, durations(order)),
    maxTime: spec.maxTime,
    ...(trace !== undefined && { onDispatch: (order, now, duration) => trace({ kind: 'dispatch', time: now, client: order.client, version: order.version, duration }) }),
    onArrival: (arrival, now, taken, version) => {
      if (taken.status === 'taken') count++;
      trace?.({ kind: 'arrival', time: now, client: arrival.client, version: arrival.baseVersion, staleness: version - arrival.baseVersion, update: arrival.update });
    },
    onStep: (step, now) => {
      report.stepped(now, count, step.weights);
      count = 0;
      return report.stop;
    },
  });
  return report.result({ arrivals: r.arrivals, dispatched: r.dispatched, endTime: r.endTime });
}
