// The one adversary of robustness experiments (docs/algorithms.md §2.2), for the coordinator (train.json's
// `adversary`) and the simulator alike: the Byzantine clients train like everyone else (label flip: on flipped
// labels, the one data-side attack — their leases carry `flipLabels`), then their updates are replaced by an attack
// vector (shared/attacks.ts) before the server aggregates. Vector construction, seeding and the ALIE/FOE line search
// live here once. Two threat models, as options of the same object (`presence`): train.json's Byzantine clients are
// part of the population and sampled like everyone; the simulator's are f extra clients present in every sync round.
import { byzantineVectors, optimalAttack, type VectorAttack } from '../attacks.js';
import type { AttackName } from '../config/train.js';
import { deriveSeed, mulberry32 } from '../random.js';
import type { ClientArrival } from './types.js';

/** train.json's attacks, and the simulator's `mimic` (a copy of the first honest update). */
export type AdversaryAttack = AttackName | 'mimic';

/**
 * The defence an ALIE/FOE line search probes: all vectors of one aggregation (honest first, then the Byzantine ones)
 * → the aggregate the server's robust stage would produce, without changing any server state. See defence.ts.
 */
export type Defence = (all: Float32Array[]) => Float32Array;

export interface AdversarySetting {
  clients: readonly number[];
  attack: AdversaryAttack;
  /**
   * The attack's strength (docs/train-config.md: −scale·μ, z of ALIE/FOE, noise std); train.json always sets it.
   * Absent: shared/attacks.ts's default (scaled-sign-flip h/f, random 1), and for alie/foe the z that the line search
   * over {¼ … 16} finds most damaging to the defence in use (docs/algorithms.md §2.2, "Line-searched ALIE and FOE").
   */
  scale?: number;
  /** Seeds the 'random' attack's noise, per server step. */
  seed: number;
  /**
   * Who the Byzantine clients are in a sync round. 'sampled' (the default, train.json): part of the population,
   * available and sampled like every client. 'every-round' (the simulator's f extra clients): besides the sampled
   * honest clients, every round that has an honest participant dispatches all of them; with no honest update to
   * build on they send nothing. Async drivers take one arrival at a time and ignore it.
   */
  presence?: 'sampled' | 'every-round';
}

export class Adversary {
  private readonly byzantine: ReadonlySet<number>;
  /** The Byzantine clients, ascending. */
  readonly clients: readonly number[];

  constructor(readonly setting: AdversarySetting) {
    this.byzantine = new Set(setting.clients);
    this.clients = [...this.byzantine].sort((a, b) => a - b);
  }

  isByzantine(client: number): boolean {
    return this.byzantine.has(client);
  }

  /** Whether the Byzantine clients join every sync round besides the sampled ones (the simulator's threat model). */
  get everyRound(): boolean {
    return this.setting.presence === 'every-round';
  }

  /** Whether a client's leases train on flipped labels. */
  flipsLabels(client: number): boolean {
    return this.setting.attack === 'label-flip' && this.byzantine.has(client);
  }

  /** Whether the Byzantine clients' own training is replaced (a vector attack) rather than used (label flip). */
  get replacesUpdates(): boolean {
    return this.vectorAttack !== null;
  }

  private get vectorAttack(): VectorAttack | null {
    return this.setting.attack === 'label-flip' ? null : this.setting.attack;
  }

  /**
   * The arrivals of one aggregation with every Byzantine update replaced by the attack vector. The attacker sees the
   * honest updates of the same aggregation (omniscient, as in docs/algorithms.md §2.2); when there are none it builds on
   * its own clients' honestly computed updates ('sampled'), or sends nothing ('every-round'). `step` (the model
   * version) seeds the random attack; `defence` is what a line-searched ALIE/FOE (no scale) probes.
   */
  apply(arrivals: readonly ClientArrival[], step: number, defence?: Defence): ClientArrival[] {
    const kind = this.vectorAttack;
    const bad = arrivals.filter((a) => this.byzantine.has(a.client));
    if (bad.length === 0) return [...arrivals];
    const honest = arrivals.filter((a) => !this.byzantine.has(a.client)).map((a) => a.update);
    if (honest.length === 0 && this.everyRound) return arrivals.filter((a) => !this.byzantine.has(a.client));
    if (kind === null) return [...arrivals];
    const vectors = this.build(kind, honest.length > 0 ? honest : bad.map((a) => a.update), bad.length, step, defence);
    let next = 0;
    return arrivals.map((a) => (this.byzantine.has(a.client) ? { ...a, update: vectors[next++]! } : a));
  }

  /**
   * One Byzantine arrival in asynchronous mode: the attack against the honest updates already in the buffer (the
   * causal attacker of FedBuff), or against the client's own update when the buffer holds none.
   */
  applyOne(arrival: ClientArrival, bufferedHonest: readonly Float32Array[], step: number, index: number, defence?: Defence): ClientArrival {
    const kind = this.vectorAttack;
    if (kind === null || !this.byzantine.has(arrival.client)) return arrival;
    const reference = bufferedHonest.length > 0 ? bufferedHonest : [arrival.update];
    return { ...arrival, update: this.build(kind, reference, 1, step * 1024 + index, defence)[0]! };
  }

  /**
   * The f Byzantine vectors against `honest`: the line search for alie/foe without a scale (against `defence`),
   * otherwise byzantineVectors with the scale (sign-flip takes none), noise from deriveSeed(seed, 'attack', step).
   */
  private build(kind: VectorAttack, honest: readonly Float32Array[], byzantine: number, step: number, defence: Defence | undefined): Float32Array[] {
    const scale = this.setting.scale;
    if ((kind === 'alie' || kind === 'foe') && scale === undefined) {
      if (defence === undefined) throw new RangeError(`adversary: a line-searched ${kind} (no scale) needs the defence it attacks`);
      return optimalAttack(kind, { honest, byzantine }, defence).vectors;
    }
    const random = mulberry32(deriveSeed(this.setting.seed, 'attack', step));
    // sign-flip and mimic take no scale; the others read it as documented in docs/train-config.md.
    const s = kind === 'sign-flip' || kind === 'mimic' ? undefined : scale;
    return byzantineVectors(kind, { honest, byzantine, ...(s === undefined ? {} : { scale: s }), random });
  }
}
