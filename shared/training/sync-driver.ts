// Synchronous rounds (FedAvg / FedAU, optionally MoNNA-robust) as a pure state machine: the coordinator turns
// DispatchOrders into leases, feeds finished shards to accept(), and calls closeRound() at the round deadline.
import type { Contribution, PipelineSpec, ServerAggregator } from '../aggregation/pipeline.js';
import { Random } from '../random.js';
import { minInputs } from '../aggregation/robust.js';
import { createParticipation, type Participation } from '../data/participation.js';
import type { Adversary, Defence } from './adversary.js';
import { defenceProbe } from './defence.js';
import {
  checkCount,
  DriverAggregator,
  payloadProblem,
  restoreMomenta,
  snapshotMomenta,
  plainCopy,
  binaryCopy,
  binaryCopy64,
  sameVector,
  plainCopy64,
  restoreServer,
  snapshotServer,
  type ServerStateSnapshot,
  type PlainVector,
  withPopulation,
  type ClientArrival,
  type DispatchOrder,
  type DriverSnapshotBase,
  type ParticipationSetting,
  type StepMetrics,
  type StepResult,
  type Taken,
  type TrainingDriver,
} from './types.js';

export interface SyncDriverConfig {
  numClients: number;
  /**
   * At most this many available clients are sampled per round. Absent: every available (and reachable) client takes
   * part, and no random draw is made (the simulator's default).
   */
  clientsPerRound?: number;
  rounds: number;
  /** Simulated availability (null: every client is available every round). Round r asks available(r). */
  participation: ParticipationSetting | null;
  /**
   * A participation process built by the caller, used instead of `participation` (the simulator builds its own, e.g.
   * for the rates of weighting 'known'). Clients beyond its population are never available.
   */
  participationProcess?: Participation;
  /** Seeds client sampling, and participation unless it has its own seed. */
  seed: number;
  pipeline: PipelineSpec;
  /** Byzantine clients whose updates are replaced by an attack before aggregation (robustness experiments). */
  adversary?: Adversary | null;
  /**
   * A server step-size schedule γ_t (t = the round's index, 0-based): the aggregate is multiplied by it before the
   * server optimizer (docs/algorithms.md §2.3 (c); the simulator's serverLr and sim.json's lrDecay). Absent: 1.
   */
  stepSize?: (round: number) => number;
}

/** A closed round's step (skipped: why it left the model unchanged although updates arrived, if so). */
export type SyncRoundResult = StepResult;

/**
 * Plain-JSON state between rounds. Captured: version (= closed rounds), weights, per-client momentum, FedAU counters,
 * the sampling RNG (as of the start of the open round, if one is open), the cclip center and the server optimizer's
 * moments (`server`). Not captured: an open round's dispatches and arrivals — restore() lands between rounds and
 * startRound() re-runs the same round index with the same sample, so a restored driver given the same updates
 * produces bit for bit the models the original would have. A snapshot without `server` (written before it existed)
 * restores with a fresh optimizer and cclip center (exact only for plain server SGD and rules other than cclip).
 */
export interface SyncDriverSnapshot<V extends ArrayLike<number> = PlainVector, D extends ArrayLike<number> = V extends Float32Array ? Float64Array : PlainVector>
  extends DriverSnapshotBase<V> {
  kind: 'sync';
  server?: ServerStateSnapshot<V, D>;
}

interface OpenRound {
  index: number;
  startedAt: number;
  dispatched: Set<number>;
  arrived: Map<number, ClientArrival>;
  /** Dispatched clients whose shard will not come (miss()). */
  missed: Set<number>;
}

/** take()'s answer for an update that completes no step (one object: the simulator takes millions). */
const TAKEN: Taken = Object.freeze({ status: 'taken', step: null });

export class SyncDriver implements TrainingDriver {
  readonly mode = 'sync';
  readonly config: Readonly<SyncDriverConfig>;
  readonly aggregator: DriverAggregator;
  private readonly participation: Participation | null;
  private rng: Random;
  private rngAtRoundStart: number;
  private current: Float32Array;
  private ver = 0;
  private open: OpenRound | null = null;
  private momenta = new Map<number, Float32Array>();

  constructor(config: SyncDriverConfig, initialWeights: Float32Array, restored?: SyncDriverSnapshot<ArrayLike<number>, ArrayLike<number>>) {
    const where = 'SyncDriver';
    checkCount(where, 'numClients', config.numClients);
    if (config.clientsPerRound !== undefined) checkCount(where, 'clientsPerRound', config.clientsPerRound);
    checkCount(where, 'rounds', config.rounds, 0);
    if (!(initialWeights instanceof Float32Array) || initialWeights.length === 0) throw new RangeError(`${where}: initial weights must be a non-empty Float32Array`);
    const pipeline = withPopulation(config.pipeline, config.numClients);
    this.config = { ...config, pipeline };
    this.aggregator = new DriverAggregator(pipeline, restored?.fedau ?? null);
    this.participation =
      config.participationProcess ?? (config.participation === null ? null : createParticipation(config.participation, config.numClients, config.participation.seed ?? config.seed));
    this.current = Float32Array.from(initialWeights);
    this.rng = new Random(config.seed);
    if (restored !== undefined) {
      if (restored.kind !== 'sync') throw new RangeError(`${where}.restore: not a sync snapshot`);
      checkCount(where, 'snapshot version', restored.version, 0);
      if (restored.weights.length !== initialWeights.length) throw new RangeError(`${where}.restore: snapshot has ${restored.weights.length} weights, the model has ${initialWeights.length}`);
      this.current = Float32Array.from(restored.weights);
      this.ver = restored.version;
      this.momenta = restoreMomenta(restored.momenta, config.numClients, initialWeights.length);
      this.rng = Random.fromState(restored.rng);
      if (restored.server !== undefined) restoreServer(this.aggregator, restored.server, initialWeights.length);
    }
    this.rngAtRoundStart = this.rng.state;
  }

  /** Rebuilds a driver from snapshot() output (the config must be the one the snapshot was taken under). */
  static restore(config: SyncDriverConfig, snapshot: SyncDriverSnapshot<ArrayLike<number>, ArrayLike<number>>): SyncDriver {
    return new SyncDriver(config, Float32Array.from(snapshot.weights), snapshot);
  }

  /** Closed rounds so far; also the version of the current model. */
  get version(): number {
    return this.ver;
  }
  get weights(): Float32Array {
    return this.current;
  }
  get done(): boolean {
    return this.ver >= this.config.rounds;
  }
  get roundOpen(): boolean {
    return this.open !== null;
  }
  get wantsMore(): boolean {
    return !this.done && this.open === null;
  }
  /** Clients dispatched in the open round whose update has not arrived yet. */
  get pending(): number[] {
    if (this.open === null) return [];
    const o = this.open;
    return [...o.dispatched].filter((c) => !o.arrived.has(c) && !o.missed.has(c)).sort((a, b) => a - b);
  }
  /** The stored momentum of a client (undefined before its first accepted shard). */
  momentumOf(client: number): Float32Array | undefined {
    return this.momenta.get(client);
  }

  /**
   * Opens round `version`: the clients available in it (participation process), then a seeded uniform sample of at
   * most clientsPerRound of them. Each order carries the current weights and that client's momentum. An empty list
   * is a valid round (close it to move on; the model stays unchanged).
   */
  /**
   * Samples the round's clients among those available (participation) and `reachable` (default: all; worker-held
   * datasets pass the clients whose worker is connected).
   */
  startRound(now: number, reachable?: (client: number) => boolean): DispatchOrder[] {
    if (this.done) throw new RangeError(`SyncDriver.startRound: training is done (${this.ver} of ${this.config.rounds} rounds)`);
    if (this.open !== null) throw new RangeError(`SyncDriver.startRound: round ${this.open.index} is still open`);
    const index = this.ver;
    // The simulator's Byzantine clients are not sampled: they join every round that has an honest participant.
    const adversary = this.config.adversary ?? null;
    const always = adversary !== null && adversary.everyRound ? adversary.clients.filter((c) => c < this.config.numClients) : [];
    // No filter at all in the common case (every client reachable, no every-round attackers): a simulator asks this
    // for populations of 100,000 every round.
    const eligible = always.length === 0 ? reachable : (c: number) => !adversary!.isByzantine(c) && (reachable === undefined || reachable(c));
    const n = this.config.numClients;
    const available: number[] = [];
    if (this.participation === null) {
      for (let i = 0; i < n; i++) if (eligible === undefined || eligible(i)) available.push(i);
    } else {
      const a = this.participation.available(index);
      const m = Math.min(a.length, n);
      if (eligible === undefined) {
        for (let i = 0; i < m; i++) if (a[i] === 1) available.push(i);
      } else {
        for (let i = 0; i < m; i++) if (a[i] === 1 && eligible(i)) available.push(i);
      }
    }
    this.rngAtRoundStart = this.rng.state;
    const k = this.config.clientsPerRound;
    let chosen = k === undefined ? available : this.rng.sample(available, k).sort((a, b) => a - b);
    if (always.length > 0 && chosen.length > 0) chosen = [...chosen, ...always.filter((c) => reachable === undefined || reachable(c))].sort((a, b) => a - b);
    this.open = { index, startedAt: now, dispatched: new Set(chosen), arrived: new Map(), missed: new Set() };
    return chosen.map((client) => {
      const m = this.momenta.get(client);
      return m === undefined ? { client, version: index, weights: this.current } : { client, version: index, weights: this.current, momentum: m };
    });
  }

  /** Why accept() would refuse this arrival now, or null if it would take it. */
  refusal(arrival: ClientArrival): string | null {
    const o = this.open;
    if (o === null) return 'no round is open';
    if (arrival.baseVersion !== o.index) return `built on version ${String(arrival.baseVersion)}, the open round is ${o.index}`;
    if (!o.dispatched.has(arrival.client)) return `client ${String(arrival.client)} was not dispatched in round ${o.index}`;
    if (o.arrived.has(arrival.client)) return `client ${arrival.client} already delivered round ${o.index}`;
    if (o.missed.has(arrival.client)) return `client ${arrival.client} was counted absent from round ${o.index}`;
    if (this.config.pipeline.weighting === 'samples' && !(arrival.samples > 0)) return 'weighting samples: an update needs samples > 0';
    return payloadProblem(arrival, this.current.length);
  }

  /** Takes a dispatched client's update for the open round, once. Late, duplicate, foreign or malformed ones: false. */
  accept(arrival: ClientArrival, _now: number): boolean {
    if (this.refusal(arrival) !== null) return false;
    (this.open as OpenRound).arrived.set(arrival.client, arrival);
    return true;
  }

  /**
   * Closes the open round: ServerAggregator.step over the arrived updates, with participants = the clients whose
   * update arrived (late and missing ones count as absent for FedAU). Stores the arrived clients' momentum. An empty
   * round, or one with fewer updates than the robust rule needs (reported in `skipped`), leaves the model unchanged
   * and FedAU sees nobody in it.
   */
  closeRound(now: number): SyncRoundResult {
    const o = this.open;
    if (o === null) throw new RangeError('SyncDriver.closeRound: no round is open');
    const sorted = [...o.arrived.values()].sort((a, b) => a.client - b.client);
    const arrivals = this.config.adversary?.apply(sorted, this.ver, this.defence) ?? sorted;
    const { rule, mix, f } = this.config.pipeline.robust;
    const need = minInputs(rule, mix, f);
    let skipped: string | undefined;
    let used = arrivals;
    if (arrivals.length > 0 && arrivals.length < need) {
      skipped = `${arrivals.length} updates arrived, the robust rule needs ${need}`;
      used = [];
    }
    const contributions: Contribution[] = used.map((a) => ({ update: a.update, samples: a.samples, client: a.client }));
    const gamma = this.config.stepSize === undefined ? 1 : this.config.stepSize(this.ver);
    if (!(Number.isFinite(gamma) && gamma >= 0)) throw new RangeError(`SyncDriver: stepSize(${this.ver}) must be a finite number ≥ 0, got ${String(gamma)}`);
    const result = this.aggregator.step(this.current, contributions, used.map((a) => a.client), gamma);
    this.current = result.model;
    for (const a of arrivals) if (a.momentum !== undefined) this.momenta.set(a.client, Float32Array.from(a.momentum));
    this.open = null;
    this.ver++;
    this.rngAtRoundStart = this.rng.state;
    const metrics: StepMetrics = {
      step: this.ver,
      time: now,
      loss: used.length === 0 ? null : used.reduce((s, a) => s + a.loss, 0) / used.length,
      participants: used.length,
      staleness_mean: used.length === 0 ? null : 0,
    };
    return skipped === undefined ? { weights: this.current, metrics } : { weights: this.current, metrics, skipped };
  }

  // ---- TrainingDriver ----------------------------------------------------------------------

  next(now: number, reachable?: (client: number) => boolean): { orders: DispatchOrder[]; step: StepResult | null } {
    if (!this.wantsMore) return { orders: [], step: null };
    const orders = this.startRound(now, reachable);
    return { orders, step: orders.length === 0 ? this.closeRound(now) : null };
  }

  take(arrival: ClientArrival, now: number): Taken {
    const reason = this.refusal(arrival);
    if (reason !== null) return { status: 'refused', reason };
    (this.open as OpenRound).arrived.set(arrival.client, arrival);
    return this.settled() ? { status: 'taken', step: this.closeRound(now) } : TAKEN;
  }

  miss(client: number, version: number, now: number): StepResult | null {
    const o = this.open;
    if (o === null || o.index !== version || !o.dispatched.has(client) || o.arrived.has(client) || o.missed.has(client)) return null;
    o.missed.add(client);
    return this.settled() ? this.closeRound(now) : null;
  }

  expire(now: number): StepResult | null {
    return this.open === null ? null : this.closeRound(now);
  }

  /** The robust stage a line-searched attack probes (built on first use; reads the live cclip centre). */
  private readonly defence: Defence = (all) => (this.probe ??= defenceProbe(this.config.pipeline, this.aggregator))(all);
  private probe: Defence | null = null;

  /** Every dispatched client of the open round arrived or was missed. */
  private settled(): boolean {
    const o = this.open;
    return o !== null && o.arrived.size + o.missed.size >= o.dispatched.size;
  }

  /** See SyncDriverSnapshot for what is captured. JSON-safe. */
  snapshot(): SyncDriverSnapshot {
    return this.snapshotWith(plainCopy, plainCopy64);
  }

  /** snapshot() with Float32Array / Float64Array copies instead of number arrays (for binary checkpoints). */
  binarySnapshot(): SyncDriverSnapshot<Float32Array, Float64Array> {
    return this.snapshotWith(binaryCopy, binaryCopy64);
  }

  /**
   * binarySnapshot() without the copies: the driver's own vectors, valid until its next call. For packing a
   * checkpoint at once, which copies every vector into its buffer anyway (a second copy of ~100 MB a step for a
   * 1e6-parameter job with per-client momenta was most of the coordinator's time per step).
   */
  viewSnapshot(): SyncDriverSnapshot<Float32Array, Float64Array> {
    return this.snapshotWith(sameVector, sameVector);
  }

  private snapshotWith<V extends ArrayLike<number>, D extends ArrayLike<number>>(copy: (v: Float32Array) => V, copy64: (v: Float64Array) => D): SyncDriverSnapshot<V, D> {
    return {
      kind: 'sync',
      version: this.ver,
      weights: copy(this.current),
      momenta: snapshotMomenta(this.momenta, copy),
      fedau: this.aggregator.fedau?.snapshot() ?? null,
      rng: this.open === null ? this.rng.state : this.rngAtRoundStart,
      server: snapshotServer(this.aggregator, copy, copy64),
    };
  }
}
