// train.json's `adversary` on real workers (robustness experiments): the listed virtual clients train like everyone
// else, then their updates are replaced by an attack built as in the simulator (shared/attacks.ts) before the server
// aggregates. Label flipping is the one data-side attack: those clients' leases carry `flipLabels` instead.
import { byzantineVectors, type VectorAttack } from '../attacks.js';
import type { AttackName } from '../config/train.js';
import { deriveSeed, mulberry32 } from '../random.js';
import type { ClientArrival } from './types.js';

export interface AdversarySetting {
  clients: readonly number[];
  attack: AttackName;
  /** The attack's strength (see docs/train-config.md: −scale·μ, z of ALIE/FOE, noise std). */
  scale: number;
  /** Seeds the 'random' attack's noise, per server step. */
  seed: number;
}

export class Adversary {
  private readonly byzantine: ReadonlySet<number>;

  constructor(readonly setting: AdversarySetting) {
    this.byzantine = new Set(setting.clients);
  }

  isByzantine(client: number): boolean {
    return this.byzantine.has(client);
  }

  /** Whether a client's leases train on flipped labels. */
  flipsLabels(client: number): boolean {
    return this.setting.attack === 'label-flip' && this.byzantine.has(client);
  }

  private get vectorAttack(): VectorAttack | null {
    return this.setting.attack === 'label-flip' ? null : this.setting.attack;
  }

  /**
   * The arrivals of one aggregation with every Byzantine update replaced by the attack vector. The attacker sees the
   * honest updates of the same aggregation (omniscient, as in docs/algorithms.md §2.2); when there are none it builds on
   * its own clients' honestly computed updates. `step` (the model version) seeds the random attack.
   */
  apply(arrivals: readonly ClientArrival[], step: number): ClientArrival[] {
    const kind = this.vectorAttack;
    const bad = arrivals.filter((a) => this.byzantine.has(a.client));
    if (kind === null || bad.length === 0) return [...arrivals];
    const honest = arrivals.filter((a) => !this.byzantine.has(a.client)).map((a) => a.update);
    const vectors = this.build(kind, honest.length > 0 ? honest : bad.map((a) => a.update), bad.length, step);
    let next = 0;
    return arrivals.map((a) => (this.byzantine.has(a.client) ? { ...a, update: vectors[next++]! } : a));
  }

  /**
   * One Byzantine arrival in asynchronous mode: the attack against the honest updates already in the buffer (the
   * causal attacker of FedBuff), or against the client's own update when the buffer holds none.
   */
  applyOne(arrival: ClientArrival, bufferedHonest: readonly Float32Array[], step: number, index: number): ClientArrival {
    const kind = this.vectorAttack;
    if (kind === null || !this.byzantine.has(arrival.client)) return arrival;
    const reference = bufferedHonest.length > 0 ? bufferedHonest : [arrival.update];
    return { ...arrival, update: this.build(kind, reference, 1, step * 1024 + index)[0]! };
  }

  private build(kind: VectorAttack, honest: readonly Float32Array[], byzantine: number, step: number): Float32Array[] {
    const random = mulberry32(deriveSeed(this.setting.seed, 'attack', step));
    // sign-flip takes no scale; the others read it as documented in docs/train-config.md.
    const scale = kind === 'sign-flip' ? undefined : this.setting.scale;
    return byzantineVectors(kind, { honest, byzantine, ...(scale === undefined ? {} : { scale }), random });
  }
}
