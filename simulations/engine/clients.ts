// The simulator's clients for the driven engine (engine/driven.ts), doing what the coordinator's workers do with a
// lease: train from the order's weights, resuming from the order's momentum, and return update = local − global with
// the new momentum. Randomness by purpose (docs/algorithms.md §7): a job's training noise comes from
// deriveSeed(seed, 'train', version, client) — like a worker's deriveSeed(version, 'train', client), plus the run's
// seed — so it does not depend on the order jobs run in; each client's job durations come from its own stream
// deriveSeed(seed, 'duration', client), consumed in the order of its jobs (as a live worker draws its delays).
import type { Adversary } from '../../shared/training/adversary.js';
import type { DispatchOrder } from '../../shared/training/types.js';
import { deriveSeed, mulberry32 } from '../../shared/random.js';
import type { LearningTask, LocalOptions, Rng } from '../types.js';
import type { ClientFn, ClientWork } from './driven.js';

/** Seconds a client's local job takes (drawn per job from the client's own stream). */
export type Duration = (client: number, rng: Rng) => number;

export interface TaskClientOptions {
  /** The run's seed (training streams are derived from it). */
  seed: number;
  /** Worker momentum: resume from the order's momentum and hand the new one back (default: start from 0 each job). */
  keepMomentum?: boolean;
  /**
   * The simulator's f extra Byzantine clients are the driver's clients honest … honest + f − 1 (default: none, every
   * client is one of the task's). Byzantine client k trains on a copy of honest client (k − honest) mod honest's rows,
   * as a live Byzantine worker holds one; with label flip on flipped labels. Under a vector attack the adversary
   * replaces its update before aggregation, so it is not trained (an empty update).
   */
  honest?: number;
  adversary?: Adversary | null;
  /** Called once per job that trained (the run's `updates` count). */
  onTrain?: () => void;
}

/** The client function of a LearningTask: the task's localUpdate on the order's weights, seeded per job. */
export function taskClient(task: LearningTask, local: LocalOptions, o: TaskClientOptions): ClientFn {
  const d = task.dim;
  const honest = o.honest ?? task.numClients;
  const adversary = o.adversary ?? null;
  const flipped: LocalOptions = { ...local, flipLabels: true };
  // One generator, started over for each job (a job's noise depends only on its seed; no allocation per job).
  const rng = mulberry32(0);
  return (order: DispatchOrder): ClientWork => {
    const k = order.client;
    const byzantine = k >= honest;
    const flip = adversary?.flipsLabels(k) === true;
    if (byzantine && !flip) return { update: new Float32Array(d), samples: 0, loss: 0 };
    const momentum = o.keepMomentum === true ? (order.momentum === undefined ? new Float32Array(d) : Float32Array.from(order.momentum)) : undefined;
    const update = new Float32Array(d);
    rng.reseed(deriveSeed(o.seed, 'train', order.version, k));
    const r = task.localUpdate(byzantine ? (k - honest) % honest : k, order.weights, flip ? flipped : local, rng, update, momentum);
    o.onTrain?.();
    // A task without a loss reports NaN; the drivers take numbers only (the simulator evaluates models itself).
    const loss = Number.isNaN(r.loss) ? 0 : r.loss;
    return momentum === undefined ? { update, samples: r.samples, loss } : { update, momentum, samples: r.samples, loss };
  };
}

/**
 * The duration of a client's next job: `duration` drawn from the client's own stream (default: every job takes
 * `fallback`); the simulator's Byzantine clients (≥ honest) answer at once, as live Byzantine workers do.
 */
export function clientDurations(duration: Duration | undefined, seed: number, honest: number, fallback = 1): (client: number) => number {
  if (duration === undefined) return (c) => (c >= honest ? 0 : fallback);
  const streams = new Map<number, Rng>();
  return (c) => {
    if (c >= honest) return 0;
    let rng = streams.get(c);
    if (rng === undefined) streams.set(c, (rng = mulberry32(deriveSeed(seed, 'duration', c))));
    return duration(c, rng);
  };
}

/** clientDurations for the driven engine's orders. */
export function orderDurations(duration: Duration | undefined, seed: number, honest: number, fallback = 1): (order: DispatchOrder) => number {
  const of = clientDurations(duration, seed, honest, fallback);
  return (order) => of(order.client);
}
