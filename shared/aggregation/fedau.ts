/**
 * FedAU's online estimate of 1/pₙ (Wang & Ji, ICLR 2024; semantics of IBM/fedau main.py, docs/algorithms.md §1.2):
 * the mean interval between a client's consecutive participations, each interval cut into pieces of at most K.
 * Three scalars per client, so it scales to any population. Causal: weight(n) only reflects rounds that
 * observeRound has already seen, so read weights for a round before observing it.
 */
export interface FedAUSnapshot {
  numClients: number;
  cutoff: number | null; // null = Infinity (JSON has no Infinity)
  gap: number[];
  sum: number[];
  cnt: number[];
  /** Rounds observed (roundsObserved); absent in snapshots from before it was kept (restored as 0). */
  rounds?: number;
}

export class FedAUEstimator {
  readonly numClients: number;
  readonly cutoff: number;
  private readonly gap: Float64Array;
  private readonly sum: Float64Array;
  private readonly cnt: Float64Array;
  private rounds = 0;
  private took: Uint8Array | undefined;

  constructor(numClients: number, cutoff: number = Infinity) {
    if (!Number.isInteger(numClients) || numClients < 1) {
      throw new RangeError(`FedAUEstimator: numClients must be an integer ≥ 1, got ${String(numClients)}`);
    }
    if (!(cutoff === Infinity || (Number.isInteger(cutoff) && cutoff >= 1))) {
      throw new RangeError(`FedAUEstimator: cutoff must be an integer ≥ 1 or Infinity, got ${String(cutoff)}`);
    }
    this.numClients = numClients;
    this.cutoff = cutoff;
    this.gap = new Float64Array(numClients);
    this.sum = new Float64Array(numClients);
    this.cnt = new Float64Array(numClients);
  }

  /** Rounds observed so far. */
  get roundsObserved(): number {
    return this.rounds;
  }

  /** ωₙ = mean recorded interval, or 1 until the first interval closes. Never exceeds the cutoff. */
  weight(client: number): number {
    this.checkClient(client);
    const c = this.cnt[client];
    return c > 0 ? this.sum[client] / c : 1;
  }

  /** Weights of several clients, in order. */
  weights(clients: ArrayLike<number>): Float64Array {
    const out = new Float64Array(clients.length);
    for (let k = 0; k < clients.length; k++) out[k] = this.weight(clients[k]);
    return out;
  }

  /**
   * Closes a round: every client is visited. A participant closes its interval (gap+1); a non-participant's gap
   * grows and is recorded as an interval of length K once it reaches the cutoff K.
   */
  observeRound(participants: Iterable<number>): void {
    // One marks buffer per estimator, cleared as it is read: simulations call this for every round.
    const took = (this.took ??= new Uint8Array(this.numClients));
    try {
      for (const p of participants) {
        this.checkClient(p);
        took[p] = 1;
      }
    } catch (e) {
      took.fill(0); // a bad id changes nothing
      throw e;
    }
    this.closeRound(took);
  }

  /** observeRound for the first `count` entries of a list (default all), without iterating it as an Iterable. */
  observeClients(clients: ArrayLike<number>, count: number = clients.length): void {
    if (!Number.isInteger(count) || count < 0 || count > clients.length) {
      throw new RangeError(`FedAUEstimator: count must be an integer in [0, ${clients.length}], got ${String(count)}`);
    }
    const took = (this.took ??= new Uint8Array(this.numClients));
    for (let k = 0; k < count; k++) {
      const p = clients[k];
      if (!Number.isInteger(p) || p < 0 || p >= this.numClients) {
        took.fill(0); // a bad id changes nothing
        this.checkClient(p);
      }
      took[p] = 1;
    }
    this.closeRound(took);
  }

  /**
   * The round's bookkeeping for marked participants (clears the marks).
   */
  private closeRound(took: Uint8Array): void {
    const K = this.cutoff;
    const gap = this.gap;
    const sum = this.sum;
    const cnt = this.cnt;
    for (let n = 0, N = this.numClients; n < N; n++) {
      if (took[n] === 1) {
        took[n] = 0;
        sum[n] += gap[n] + 1;
        cnt[n] += 1;
        gap[n] = 0;
      } else {
        const g = gap[n] + 1;
        if (g >= K) {
          sum[n] += g;
          cnt[n] += 1;
          gap[n] = 0;
        } else {
          gap[n] = g;
        }
      }
    }
    this.rounds++;
  }

  /** Plain-JSON state, for checkpoints and durable coordinator state. */
  snapshot(): FedAUSnapshot {
    return {
      numClients: this.numClients,
      cutoff: this.cutoff === Infinity ? null : this.cutoff,
      gap: Array.from(this.gap),
      sum: Array.from(this.sum),
      cnt: Array.from(this.cnt),
      rounds: this.rounds,
    };
  }

  /** A new estimator from a snapshot (its own N and cutoff). */
  static restore(s: FedAUSnapshot): FedAUEstimator {
    if (s === null || typeof s !== 'object') throw new RangeError('FedAUEstimator.restore: snapshot must be an object');
    const e = new FedAUEstimator(s.numClients, s.cutoff ?? Infinity);
    e.restore(s);
    return e;
  }

  /** Loads a snapshot into this estimator; its N and cutoff must be this one's. Malformed: RangeError, nothing changed. */
  restore(s: FedAUSnapshot): void {
    const where = 'FedAUEstimator.restore';
    if (s === null || typeof s !== 'object') throw new RangeError(`${where}: snapshot must be an object`);
    if (s.numClients !== this.numClients) throw new RangeError(`${where}: snapshot is for ${String(s.numClients)} clients, this estimator has ${this.numClients}`);
    if ((s.cutoff ?? Infinity) !== this.cutoff) throw new RangeError(`${where}: snapshot has cutoff ${String(s.cutoff)}, this estimator ${String(this.cutoff)}`);
    for (const [name, arr] of [['gap', s.gap], ['sum', s.sum], ['cnt', s.cnt]] as const) {
      if (!Array.isArray(arr) || arr.length !== s.numClients || !arr.every((v) => Number.isFinite(v) && v >= 0)) {
        throw new RangeError(`${where}: ${name} must hold ${s.numClients} finite numbers ≥ 0`);
      }
    }
    const rounds = s.rounds ?? 0;
    if (!Number.isInteger(rounds) || rounds < 0) throw new RangeError(`${where}: rounds must be an integer ≥ 0, got ${String(s.rounds)}`);
    this.gap.set(s.gap);
    this.sum.set(s.sum);
    this.cnt.set(s.cnt);
    this.rounds = rounds;
  }

  private checkClient(c: number): void {
    if (!Number.isInteger(c) || c < 0 || c >= this.numClients) {
      throw new RangeError(`FedAUEstimator: client must be an integer in [0, ${this.numClients - 1}], got ${String(c)}`);
    }
  }
}
