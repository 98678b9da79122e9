// Asynchronous FedBuff training as a pure state machine: keep `concurrency` shards in flight, weight each arrival by
// its staleness, step the model every `buffer` arrivals (docs/algorithms.md §3.1), robust rules over the buffer.
// One file because it is one state machine whose snapshot must capture all of it (in flight, buffer, RNG, server).
import { combine } from '../aggregation/combine.js';
import { Random } from '../random.js';
import { FedBuffBuffer } from '../aggregation/fedbuff.js';
import type { PipelineSpec } from '../aggregation/pipeline.js';
import { minInputs } from '../aggregation/robust.js';
import type { StalenessSpec } from '../aggregation/staleness.js';
import { createParticipation, type Participation } from '../data/participation.js';
import type { Adversary } from './adversary.js';
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

export interface AsyncDriverConfig {
  numClients: number;
  /** Shards kept in flight (a client trains one shard at a time). */
  concurrency: number;
  /** K: the model steps after every K buffered arrivals. */
  buffer: number;
  /** s(τ), τ = server steps since the shard's dispatch. */
  staleness: StalenessSpec;
  /** Arrivals with τ above this are dropped (null/undefined: never). */
  maxStaleness: number | null;
  /** The buffer's reduction (docs/algorithms.md §3.2): 'mean' (the paper; the default) or 'sum' (FLSim's WEIGHTED_SUM). */
  reduction?: 'mean' | 'sum';
  /** FLSim's normalisation s(τ)/s(τ̄) at τ̄ = normalizeAt (docs/algorithms.md §3.2; default: raw s(τ)). */
  normalizeAt?: number;
  /** Server steps to take. */
  steps: number;
  seed: number;
  /**
   * Simulated availability (null: always available). Availability "round" r is the participation process's round;
   * it follows the model version, and moves past it only while nothing is in flight and no idle client is
   * available (so an idle server waits out unavailable rounds instead of stalling).
   */
  participation: ParticipationSetting | null;
  pipeline: PipelineSpec;
  /** Byzantine clients whose updates are replaced by an attack on arrival (robustness experiments). */
  adversary?: Adversary | null;
}

export type AsyncAcceptResult =
  | { status: 'refused'; stepped: false; reason: string }
  | { status: 'dropped'; stepped: false; staleness: number; reason: string }
  | { status: 'buffered'; stepped: false; staleness: number }
  | { status: 'stepped'; stepped: true; staleness: number; metrics: StepMetrics; weights: Float32Array };

/**
 * Plain-JSON state. Captured: version, weights, momenta, FedAU counters, RNG, the participation round, the cclip
 * center and the server optimizer's moments (`server`), the partly filled buffer with its arrivals' metadata
 * (`buffer`), and the shards in flight in dispatch order with the weights of each older version they were built on
 * (`inFlight`, `versions`): a restored driver's fill() first dispatches those shards again (same client, version,
 * weights and momentum), so a restored driver given the same updates in the same order produces bit for bit the
 * models the original would have. A finished driver records nothing in flight. A snapshot without these fields
 * (written before they existed) restores as then: nothing in flight (arrivals of older dispatches are refused), an
 * empty buffer, a fresh optimizer and cclip center.
 */
export interface AsyncDriverSnapshot<V extends ArrayLike<number> = PlainVector, D extends ArrayLike<number> = V extends Float32Array ? Float64Array : PlainVector>
  extends DriverSnapshotBase<V> {
  kind: 'async';
  participationRound: number;
  server?: ServerStateSnapshot<V, D>;
  buffer?: AsyncBufferSnapshot<V>;
  /** Shards in flight, oldest dispatch first. */
  inFlight?: Array<{ client: number; version: number }>;
  /** [version, weights] of every version below `version` that a shard in flight was built on. */
  versions?: Array<[number, V]>;
  stats?: { accepted: number; dropped: number; refused: number };
}

/** The FedBuff buffer's arrivals (FedBuffSnapshot) with what the driver keeps of each. */
export interface AsyncBufferSnapshot<V extends ArrayLike<number> = PlainVector> {
  dim: number;
  updates: V[];
  factors: number[];
  taus: number[];
  /** Per buffered update: its client, samples and loss, and whether it is an honest client's raw update. */
  arrivals: Array<{ client: number; samples: number; loss: number; honest: boolean }>;
}

interface InFlight {
  version: number;
  dispatchedAt: number;
  /** The weights of `version` (the driver's model array of then, never mutated). */
  weights: Float32Array;
}

interface Buffered {
  client: number;
  samples: number;
  loss: number;
  /** The raw update of an honest client (what an attacker in this buffer builds on); undefined for Byzantine ones. */
  honest: Float32Array | undefined;
}

/** How many consecutive unavailable participation rounds fill() skips before giving up for this call. */
const MAX_IDLE_SKIP = 10_000;

export class AsyncDriver implements TrainingDriver {
  readonly mode = 'async';
  readonly config: Readonly<AsyncDriverConfig>;
  readonly aggregator: DriverAggregator;
  private readonly participation: Participation | null;
  private readonly buf: FedBuffBuffer;
  private rng: Random;
  private current: Float32Array;
  private ver = 0;
  private partRound = 0;
  private inFlight = new Map<number, InFlight>();
  private buffered: Buffered[] = [];
  private momenta = new Map<number, Float32Array>();
  private counters = { accepted: 0, dropped: 0, refused: 0 };
  /** Restored shards in flight that fill() has still to dispatch again, oldest first. */
  private resend: number[] = [];

  constructor(config: AsyncDriverConfig, initialWeights: Float32Array, restored?: AsyncDriverSnapshot<ArrayLike<number>, ArrayLike<number>>) {
    const where = 'AsyncDriver';
    checkCount(where, 'numClients', config.numClients);
    checkCount(where, 'concurrency', config.concurrency);
    checkCount(where, 'buffer', config.buffer);
    checkCount(where, 'steps', config.steps, 0);
    if (config.concurrency > config.numClients) throw new RangeError(`${where}: concurrency ${config.concurrency} exceeds the ${config.numClients} clients`);
    if (!(initialWeights instanceof Float32Array) || initialWeights.length === 0) throw new RangeError(`${where}: initial weights must be a non-empty Float32Array`);
    const pipeline = withPopulation(config.pipeline, config.numClients);
    this.config = { ...config, pipeline };
    const { rule, mix, f } = pipeline.robust;
    const need = minInputs(rule, mix, f);
    if (config.buffer < need) throw new RangeError(`${where}: buffer ${config.buffer} is too small for ${mix === 'nnm' ? 'nnm+' : ''}${rule} with f = ${f} (needs ≥ ${need})`);
    this.aggregator = new DriverAggregator(pipeline, restored?.fedau ?? null);
    this.participation = config.participation === null ? null : createParticipation(config.participation, config.numClients, config.participation.seed ?? config.seed);
    this.buf = new FedBuffBuffer({
      size: config.buffer,
      staleness: config.staleness,
      maxStaleness: config.maxStaleness ?? Infinity,
      ...(config.reduction !== undefined && { reduction: config.reduction }),
      ...(config.normalizeAt !== undefined && { normalizeAt: config.normalizeAt }),
      rule: (scaled) => this.reduce(scaled),
    });
    this.current = Float32Array.from(initialWeights);
    this.rng = new Random(config.seed);
    if (restored !== undefined) {
      if (restored.kind !== 'async') throw new RangeError(`${where}.restore: not an async snapshot`);
      if (restored.weights.length !== initialWeights.length) throw new RangeError(`${where}.restore: snapshot has ${restored.weights.length} weights, the model has ${initialWeights.length}`);
      this.current = Float32Array.from(restored.weights);
      this.ver = restored.version;
      this.partRound = restored.participationRound;
      this.momenta = restoreMomenta(restored.momenta, config.numClients, initialWeights.length);
      this.rng = Random.fromState(restored.rng);
      const dim = initialWeights.length;
      if (restored.server !== undefined) restoreServer(this.aggregator, restored.server, dim);
      if (restored.buffer !== undefined) this.restoreBuffer(restored.buffer, dim);
      if (restored.inFlight !== undefined) this.restoreInFlight(restored.inFlight, restored.versions ?? [], dim);
      if (restored.stats !== undefined) {
        const { accepted, dropped, refused } = restored.stats;
        for (const [k, v] of [['accepted', accepted], ['dropped', dropped], ['refused', refused]] as const) checkCount(`${where}.restore`, `stats.${k}`, v, 0);
        this.counters = { accepted, dropped, refused };
      }
    }
  }

  private restoreBuffer(b: AsyncBufferSnapshot<ArrayLike<number>>, dim: number): void {
    const where = 'AsyncDriver.restore';
    if (b === null || typeof b !== 'object' || !Array.isArray(b.updates) || !Array.isArray(b.arrivals)) throw new RangeError(`${where}: buffer must be {dim, updates, factors, taus, arrivals}`);
    if (b.arrivals.length !== b.updates.length) throw new RangeError(`${where}: buffer holds ${b.updates.length} updates but ${b.arrivals.length} arrivals`);
    if (b.updates.length > 0 && b.dim !== dim) throw new RangeError(`${where}: buffered updates have ${String(b.dim)} values, the model has ${dim}`);
    const updates = b.updates.map((u) => Float32Array.from(u));
    this.buf.restore({ size: this.config.buffer, dim: b.dim, updates, factors: b.factors, taus: b.taus });
    this.buffered = b.arrivals.map((a, i) => {
      if (a === null || typeof a !== 'object') throw new RangeError(`${where}: buffered arrival ${i} must be an object`);
      checkCount(where, `buffered client ${i}`, a.client, 0);
      if (a.client >= this.config.numClients) throw new RangeError(`${where}: buffered arrival ${i} is of unknown client ${a.client}`);
      // JSON stores an infinite loss as null.
      const loss: unknown = a.loss;
      if (typeof a.samples !== 'number' || !(typeof loss === 'number' || loss === null) || typeof a.honest !== 'boolean') throw new RangeError(`${where}: buffered arrival ${i} needs samples, loss and honest`);
      return { client: a.client, samples: a.samples, loss: loss ?? Infinity, honest: a.honest ? updates[i] : undefined };
    });
  }

  private restoreInFlight(list: ReadonlyArray<{ client: number; version: number }>, versions: ReadonlyArray<readonly [number, ArrayLike<number>]>, dim: number): void {
    const where = 'AsyncDriver.restore';
    if (!Array.isArray(list) || !Array.isArray(versions)) throw new RangeError(`${where}: inFlight and versions must be arrays`);
    if (list.length > this.config.concurrency) throw new RangeError(`${where}: ${list.length} shards in flight, concurrency is ${this.config.concurrency}`);
    const old = new Map<number, Float32Array>();
    for (const [v, w] of versions) {
      if (!Number.isInteger(v) || v < 0 || v >= this.ver) throw new RangeError(`${where}: weights of version ${String(v)}, which is not below ${this.ver}`);
      if (w.length !== dim) throw new RangeError(`${where}: weights of version ${v} have ${w.length} values, the model has ${dim}`);
      old.set(v, Float32Array.from(w));
    }
    const inFlight = new Map<number, InFlight>();
    for (const f of list) {
      if (f === null || typeof f !== 'object') throw new RangeError(`${where}: a shard in flight must be {client, version}`);
      const { client, version } = f;
      if (!Number.isInteger(client) || client < 0 || client >= this.config.numClients) throw new RangeError(`${where}: shard in flight of unknown client ${String(client)}`);
      if (inFlight.has(client)) throw new RangeError(`${where}: client ${client} has two shards in flight`);
      if (!Number.isInteger(version) || version < 0 || version > this.ver) throw new RangeError(`${where}: shard of client ${client} built on version ${String(version)}, the model is at ${this.ver}`);
      const weights = version === this.ver ? this.current : old.get(version);
      if (weights === undefined) throw new RangeError(`${where}: no weights for version ${version}, which client ${client}'s shard was built on`);
      inFlight.set(client, { version, dispatchedAt: 0, weights });
    }
    this.inFlight = inFlight;
    this.resend = [...inFlight.keys()];
  }

  static restore(config: AsyncDriverConfig, snapshot: AsyncDriverSnapshot<ArrayLike<number>, ArrayLike<number>>): AsyncDriver {
    return new AsyncDriver(config, Float32Array.from(snapshot.weights), snapshot);
  }

  get version(): number {
    return this.ver;
  }
  get weights(): Float32Array {
    return this.current;
  }
  get done(): boolean {
    return this.ver >= this.config.steps;
  }
  /** Whether fill() would dispatch anything (fewer than `concurrency` shards in flight). */
  get wantsMore(): boolean {
    return !this.done && (this.inFlight.size < this.config.concurrency || this.resend.length > 0);
  }

  get inFlightClients(): number[] {
    return [...this.inFlight.keys()].sort((a, b) => a - b);
  }
  /** Arrivals waiting in the buffer. */
  get bufferedCount(): number {
    return this.buf.count;
  }
  /** Running totals: buffered-or-stepped arrivals, staleness drops, refusals. */
  get stats(): { accepted: number; dropped: number; refused: number } {
    return { ...this.counters };
  }
  momentumOf(client: number): Float32Array | undefined {
    return this.momenta.get(client);
  }

  /**
   * Tops the shards in flight up to `concurrency`: a seeded uniform choice among idle clients available in the
   * current participation round. Returns [] when done, full, or nobody idle is available.
   */
  /** Tops up the shards in flight from idle clients that are available and `reachable` (default: all). */
  fill(now: number, reachable: (client: number) => boolean = () => true): DispatchOrder[] {
    if (this.done) return [];
    // Shards in flight at the snapshot a restored driver came from go out again first, in their dispatch order.
    const again: DispatchOrder[] = [];
    if (this.resend.length > 0) {
      const later: number[] = [];
      for (const client of this.resend) {
        const f = this.inFlight.get(client);
        if (f === undefined) continue;
        if (!reachable(client)) {
          later.push(client);
          continue;
        }
        f.dispatchedAt = now;
        const m = this.momenta.get(client);
        again.push(m === undefined ? { client, version: f.version, weights: f.weights } : { client, version: f.version, weights: f.weights, momentum: m });
      }
      this.resend = later;
    }
    const want = this.config.concurrency - this.inFlight.size;
    if (want <= 0) return again;
    if (this.partRound < this.ver) this.partRound = this.ver;
    let candidates = this.idleAvailable(reachable);
    for (let skip = 0; candidates.length === 0 && this.inFlight.size === 0 && this.participation !== null && skip < MAX_IDLE_SKIP; skip++) {
      this.partRound++;
      candidates = this.idleAvailable(reachable);
    }
    const chosen = this.rng.sample(candidates, want);
    return [
      ...again,
      ...chosen.map((client) => {
        this.inFlight.set(client, { version: this.ver, dispatchedAt: now, weights: this.current });
        const m = this.momenta.get(client);
        return m === undefined ? { client, version: this.ver, weights: this.current } : { client, version: this.ver, weights: this.current, momentum: m };
      }),
    ];
  }

  /** Frees a client whose shard will not come back (lease expired, worker gone); its late arrival is then refused. */
  abandon(client: number): boolean {
    const i = this.resend.indexOf(client);
    if (i >= 0) this.resend.splice(i, 1);
    return this.inFlight.delete(client);
  }

  /** Why accept() would refuse this arrival, or null. A drop for staleness is not a refusal. */
  refusal(arrival: ClientArrival): string | null {
    if (this.done) return 'training is done';
    const f = this.inFlight.get(arrival.client);
    if (f === undefined) return `client ${String(arrival.client)} has no shard in flight`;
    if (f.version !== arrival.baseVersion) return `client ${arrival.client}'s shard was built on version ${f.version}, not ${String(arrival.baseVersion)}`;
    if (this.config.pipeline.weighting === 'samples' && !(arrival.samples > 0)) return 'weighting samples: an update needs samples > 0';
    return payloadProblem(arrival, this.current.length);
  }

  /**
   * A finished shard: frees its client, computes τ = version − baseVersion, drops it when τ > maxStaleness,
   * else buffers it with weight (weighting) · s(τ); on the K-th buffered arrival the server optimizer steps.
   */
  accept(received: ClientArrival, now: number): AsyncAcceptResult {
    const why = this.refusal(received);
    if (why !== null) {
      this.counters.refused++;
      return { status: 'refused', stepped: false, reason: why };
    }
    const adversary = this.config.adversary ?? null;
    const byzantine = adversary?.isByzantine(received.client) ?? false;
    const arrival = adversary === null || !byzantine ? received : adversary.applyOne(received, this.honestInBuffer(), this.ver, this.buffered.length);
    this.inFlight.delete(arrival.client);
    const tau = this.ver - arrival.baseVersion;
    const weighting = this.config.pipeline.weighting;
    const fedau = this.aggregator.fedau;
    // FedAU weights are read before the step that observes this buffer's round (causal).
    const w = weighting === 'samples' ? arrival.samples : weighting === 'fedau' && fedau !== null ? fedau.weight(arrival.client) : 1;
    // Listed before add() so that reduce(), which runs inside add() on the K-th arrival, sees the whole buffer.
    this.buffered.push({ client: arrival.client, samples: arrival.samples, loss: arrival.loss, honest: byzantine ? undefined : arrival.update });
    const r = this.buf.add(arrival.update, tau, w);
    if (r.kind === 'dropped') {
      this.buffered.pop();
      this.counters.dropped++;
      return { status: 'dropped', stepped: false, staleness: tau, reason: r.reason };
    }
    this.counters.accepted++;
    if (arrival.momentum !== undefined) this.momenta.set(arrival.client, Float32Array.from(arrival.momentum));
    if (r.kind === 'buffered') return { status: 'buffered', stepped: false, staleness: tau };
    // Ready: reduce() has aggregated the buffer; step the model and close FedAU's round on this buffer's clients.
    const batch = this.buffered;
    this.buffered = [];
    const participants = new Set(batch.map((b) => b.client));
    this.aggregator.fedau?.observeRound(participants);
    this.current = this.aggregator.optimizer.step(this.current, r.aggregate);
    this.ver++;
    const metrics: StepMetrics = {
      step: this.ver,
      time: now,
      loss: batch.reduce((s, b) => s + b.loss, 0) / batch.length,
      participants: participants.size,
      staleness_mean: r.stalenessMean,
    };
    return { status: 'stepped', stepped: true, staleness: tau, metrics, weights: this.current };
  }

  // ---- TrainingDriver ----------------------------------------------------------------------

  next(now: number, reachable?: (client: number) => boolean): { orders: DispatchOrder[]; step: StepResult | null } {
    return { orders: this.fill(now, reachable), step: null };
  }

  take(arrival: ClientArrival, now: number): Taken {
    const r = this.accept(arrival, now);
    if (r.status === 'refused') return { status: 'refused', reason: r.reason };
    if (r.status === 'dropped') return { status: 'dropped', reason: r.reason, staleness: r.staleness };
    return { status: 'taken', step: r.status === 'stepped' ? { weights: r.weights, metrics: r.metrics } : null };
  }

  miss(client: number, version: number, _now: number): StepResult | null {
    if (this.inFlight.get(client)?.version === version) this.abandon(client);
    return null;
  }

  expire(_now: number): StepResult | null {
    return null;
  }

  private honestInBuffer(): Float32Array[] {
    const out: Float32Array[] = [];
    for (const b of this.buffered) if (b.honest !== undefined) out.push(b.honest);
    return out;
  }

  snapshot(): AsyncDriverSnapshot {
    return this.snapshotWith(plainCopy, plainCopy64);
  }

  /** snapshot() with Float32Array / Float64Array copies instead of number arrays (for binary checkpoints). */
  binarySnapshot(): AsyncDriverSnapshot<Float32Array, Float64Array> {
    return this.snapshotWith(binaryCopy, binaryCopy64);
  }

  /**
   * binarySnapshot() without the copies: the driver's own vectors, valid until its next call. For packing a
   * checkpoint at once, which copies every vector into its buffer anyway (a second copy of ~100 MB a step for a
   * 1e6-parameter job with per-client momenta was most of the coordinator's time per step).
   */
  viewSnapshot(): AsyncDriverSnapshot<Float32Array, Float64Array> {
    return this.snapshotWith(sameVector, sameVector);
  }

  private snapshotWith<V extends ArrayLike<number>, D extends ArrayLike<number>>(copy: (v: Float32Array) => V, copy64: (v: Float64Array) => D): AsyncDriverSnapshot<V, D> {
    const b = this.buf.snapshot();
    // A finished driver takes no more arrivals: nothing it has in flight matters.
    const flying = this.done ? [] : [...this.inFlight.entries()];
    const versions = new Map<number, Float32Array>();
    for (const [, f] of flying) if (f.version !== this.ver) versions.set(f.version, f.weights);
    return {
      kind: 'async',
      version: this.ver,
      weights: copy(this.current),
      momenta: snapshotMomenta(this.momenta, copy),
      fedau: this.aggregator.fedau?.snapshot() ?? null,
      rng: this.rng.state,
      participationRound: this.partRound,
      server: snapshotServer(this.aggregator, copy, copy64),
      buffer: {
        dim: b.dim,
        updates: b.updates.map((u) => copy(u)),
        factors: b.factors,
        taus: b.taus,
        arrivals: this.buffered.map((a) => ({ client: a.client, samples: a.samples, loss: a.loss, honest: a.honest !== undefined })),
      },
      inFlight: flying.map(([client, f]) => ({ client, version: f.version })),
      versions: [...versions.entries()].sort((x, y) => x[0] - y[0]).map(([v, w]) => [v, copy(w)]),
      stats: { ...this.counters },
    };
  }

  private idleAvailable(reachable: (client: number) => boolean): number[] {
    const a = this.participation === null ? null : this.participation.available(this.partRound);
    const out: number[] = [];
    for (let i = 0; i < this.config.numClients; i++) if (!this.inFlight.has(i) && (a === null || a[i] === 1) && reachable(i)) out.push(i);
    return out;
  }

  /**
   * The buffer's rule over the K updates it already scaled by weightᵢ·s(τᵢ), returning the aggregate (reduction
   * 'mean' passes it through). The weighting's normalisation is applied here, as weightingScales does per sync round:
   * samples → ·n/Σk (so the mean is Σ kᵢsᵢΔᵢ/Σk), fedau → ·n/N (FedAU's Σ ωᵢsᵢΔᵢ/N), uniform → ·1; then the
   * pipeline's robust rule, or the plain mean.
   */
  private reduce(scaled: Float32Array[]): Float32Array {
    const n = scaled.length;
    const spec = this.config.pipeline;
    let factor = 1;
    if (spec.weighting === 'samples') {
      const total = this.buffered.reduce((s, b) => s + b.samples, 0);
      if (!(total > 0)) throw new RangeError('weighting samples: all sample counts in the buffer are zero');
      factor = n / total;
    } else if (spec.weighting === 'fedau') {
      factor = n / this.config.numClients;
    }
    const { rule, mix } = spec.robust;
    if (rule === 'mean' && mix === 'none') return combine(scaled, new Float64Array(n).fill(factor / n));
    const inputs = factor === 1 ? scaled : scaled.map((u) => u.map((v) => v * factor));
    return this.aggregator.robust.aggregate(inputs);
  }
}
