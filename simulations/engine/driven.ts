// One engine for both training drivers (issue 12, "one driver for coordinator and simulator"): it runs any
// TrainingDriver — the coordinator's SyncDriver (FedAvg / FedAU rounds) or AsyncDriver (FedBuff steps) — on a virtual
// clock with in-process clients, as the coordinator's training service runs it on real workers (docs/architecture.md,
// "The path of a model update"). The loop:
//   1. ask next(now) for orders (a sync round nobody is dispatched in closes at once: its step comes back here);
//   2. run each order's job now, with the client function (the worker's part: train from order.weights and
//      order.momentum, return update = local − global and the new momentum), and schedule its arrival at
//      now + duration on the event queue, in dispatch order;
//   3. jump to the earliest arrival time and feed every arrival of that instant to take() in time order (ties:
//      dispatch order); a refused arrival is missed (miss()), as the coordinator does;
//   4. back to 1 after each handled instant.
// Each step goes to onStep with the clock; `recordWeights` keeps the model after every step (tests compare the
// sequence with a driver driven by hand, and with the coordinator's). Platform-free.
import type { ClientArrival, DispatchOrder, StepResult, Taken, TrainingDriver } from '../../shared/training/types.js';
import { EventQueue } from './event-queue.js';

/** What a client's job gives back: a worker's result, minus the version (the engine knows the order). */
export interface ClientWork {
  /** local − global (or −m for server-coordinated MoNNA): the direction the server should move. */
  update: Float32Array;
  /** The client's momentum after the job; the driver keeps it and sends it back with the client's next order. */
  momentum?: Float32Array;
  samples: number;
  loss: number;
}

/** A client's job: train from order.weights (and order.momentum); both are shared with the driver, so read-only. */
export type ClientFn = (order: DispatchOrder) => ClientWork;

export interface DriverRunOptions {
  /** Virtual time the order's job takes: finite, ≥ 0 (default 1). Asked once per order, at dispatch, in dispatch order. */
  duration?: (order: DispatchOrder) => number;
  /** Stop before the first arrival later than this virtual time (default: never). */
  maxTime?: number;
  /** Virtual time a step that closes at once costs (a sync round nobody was dispatched in; default 0). */
  emptyStepTime?: number;
  /** Keep the model after every step in `weights` (default false). */
  recordWeights?: boolean;
  /** After every server step, with the clock; return true to end the run there. */
  onStep?: (step: StepResult, now: number) => boolean | void;
  /** After each order's job ran, with the job's duration. */
  onDispatch?: (order: DispatchOrder, now: number, duration: number) => void;
  /** After take() (and miss(), for a refused arrival); `version` is the driver's model version before take(). */
  onArrival?: (arrival: ClientArrival, now: number, taken: Taken, version: number) => void;
}

export interface DriverRunResult {
  /** Server steps taken during the run. */
  steps: number;
  /** The model after each step, in order (only with recordWeights; the driver's own arrays, never mutated). */
  weights: Float32Array[];
  /** Orders dispatched. */
  dispatched: number;
  /** Arrivals fed to take(), and of those the refused (then missed) and the dropped (too stale) ones. */
  arrivals: number;
  refused: number;
  dropped: number;
  /** The clock at the end: the last instant handled. */
  endTime: number;
  /** Why the run ended: the driver is done, onStep asked to stop, the next arrival is past maxTime, or nothing is left to do. */
  ended: 'done' | 'stopped' | 'maxTime' | 'idle';
}


/** Runs `driver` with in-process clients until it is done, onStep stops it, maxTime passes or nothing is left to do. */
export function runDriver(driver: TrainingDriver, client: ClientFn, options: DriverRunOptions = {}): DriverRunResult {
  const duration = options.duration ?? (() => 1);
  const maxTime = options.maxTime ?? Infinity;
  const emptyStepTime = options.emptyStepTime ?? 0;
  if (!(maxTime >= 0)) throw new RangeError(`runDriver: maxTime must be ≥ 0, got ${String(maxTime)}`);
  if (!(Number.isFinite(emptyStepTime) && emptyStepTime >= 0)) throw new RangeError(`runDriver: emptyStepTime must be a finite number ≥ 0, got ${String(emptyStepTime)}`);
  const queue = new EventQueue<ClientArrival>(); // each job's arrival, built at dispatch
  const weights: Float32Array[] = [];
  let now = 0;
  let steps = 0;
  let dispatched = 0;
  let arrivals = 0;
  let refused = 0;
  let dropped = 0;
  let stopped = false;

  const stepped = (step: StepResult): void => {
    steps++;
    if (options.recordWeights === true) weights.push(step.weights);
    if (options.onStep?.(step, now) === true) stopped = true;
  };

  /** next(): dispatches its orders; true when it closed a step at once (ask again). */
  const dispatch = (): boolean => {
    const { orders, step } = driver.next(now);
    for (const order of orders) {
      const work = client(order);
      const dur = duration(order);
      if (!(Number.isFinite(dur) && dur >= 0)) throw new RangeError(`runDriver: the job of client ${order.client} lasts ${String(dur)}; durations must be finite and ≥ 0`);
      const arrival: ClientArrival = { client: order.client, baseVersion: order.version, update: work.update, samples: work.samples, loss: work.loss };
      if (work.momentum !== undefined) arrival.momentum = work.momentum;
      queue.push(now + dur, arrival);
      dispatched++;
      options.onDispatch?.(order, now, dur);
    }
    if (step === null) return false;
    now += emptyStepTime;
    stepped(step);
    return true;
  };

  let ended: DriverRunResult['ended'] = 'idle';
  for (;;) {
    if (stopped || driver.done) break;
    if (driver.wantsMore && dispatch()) continue;
    if (stopped || driver.done) break;
    if (queue.size === 0) break;
    const t = queue.peekTime();
    if (t > maxTime) {
      ended = 'maxTime';
      break;
    }
    now = t;
    // Every arrival of this instant, in dispatch order, before new work is handed out.
    while (!stopped && queue.size > 0 && queue.peekTime() === t) {
      const arrival = queue.popValue() as ClientArrival;
      const version = driver.version;
      const taken = driver.take(arrival, now);
      arrivals++;
      let step: StepResult | null = null;
      if (taken.status === 'refused') {
        refused++;
        step = driver.miss(arrival.client, arrival.baseVersion, now);
      } else if (taken.status === 'dropped') {
        dropped++;
      } else {
        step = taken.step;
      }
      options.onArrival?.(arrival, now, taken, version);
      if (step !== null) stepped(step);
      if (driver.done) break;
    }
  }
  if (stopped) ended = 'stopped';
  else if (driver.done) ended = 'done';
  return { steps, weights, dispatched, arrivals, refused, dropped, endTime: now, ended };
}
