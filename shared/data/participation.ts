// Simulated availability of virtual clients (docs/algorithms.md §1.3): which of N clients could take part in each round.
// Used by `fedpool train` (the `participation` section of train.json) so FedAU's setting can run on real workers.
import { deriveSeed, mulberry32 } from '../random.js';

/**
 * Per-client participation probability p_n, each in (0, 1]:
 * - a number: every client has that p;
 * - an array: one p per client (its length must be the number of clients);
 * - `{ min, max }`: a spread, p_n = min + (max − min)·n/(N − 1), linear in the client id (N = 1 gives min).
 */
export type ParticipationProbability = number | readonly number[] | { readonly min: number; readonly max: number };

export type ParticipationSpec =
  /** Independent draw each round with probability p_n. */
  | { readonly kind: 'bernoulli'; readonly p: ParticipationProbability }
  /** Two-state chain: P(off→on) = q, P(on→off) = q(1/p_n − 1) (capped at 1, q rescaled); starts Bernoulli(p_n). */
  | { readonly kind: 'markov'; readonly p: ParticipationProbability; readonly q: number }
  /** On for max(1, round(L·p_n)) rounds, off for max(1, L − on); random phase, starts off. */
  | { readonly kind: 'cyclic'; readonly p: ParticipationProbability; readonly period: number };

export interface Participation {
  /** p_n for every client (the probabilities the spec describes, before any cyclic rounding). */
  readonly rates: Float64Array;
  /**
   * Availability of every client in `round` (0-based): 1 = available. Rounds are meant to be asked in order;
   * asking a later round advances the generator through the skipped ones, asking the latest round again returns
   * the same answer, and asking an earlier one throws. So the answer for round r depends only on (spec, N, seed, r).
   * The returned array is a fresh copy.
   */
  available(round: number): Uint8Array;
  /**
   * As `available`, without the copy: the generator's own state, valid until the next call to `available` or
   * `availability`. Callers must not write to it. (Optional, so other Participation implementations need not have it.)
   */
  availability?(round: number): Uint8Array;
}

function checkP(p: number, where: string): number {
  if (typeof p !== 'number' || !Number.isFinite(p) || !(p > 0) || p > 1) {
    throw new RangeError(`participation: ${where} must be a number in (0, 1], got ${String(p)}`);
  }
  return p;
}

/** Expands a ParticipationProbability to one p per client, validating each. */
export function participationRates(p: ParticipationProbability, numClients: number): Float64Array {
  if (!Number.isInteger(numClients) || numClients < 1) throw new RangeError(`participation: number of clients must be an integer ≥ 1, got ${String(numClients)}`);
  const rates = new Float64Array(numClients);
  if (typeof p === 'number') {
    rates.fill(checkP(p, 'p'));
  } else if (Array.isArray(p)) {
    const arr = p as readonly number[];
    if (arr.length !== numClients) throw new RangeError(`participation: p has ${arr.length} entries but there are ${numClients} clients`);
    for (let i = 0; i < numClients; i++) rates[i] = checkP(arr[i], `p[${i}]`);
  } else if (p !== null && typeof p === 'object') {
    const { min, max } = p as { min: number; max: number };
    checkP(min, 'p.min');
    checkP(max, 'p.max');
    if (max < min) throw new RangeError(`participation: p.max (${max}) is below p.min (${min})`);
    for (let i = 0; i < numClients; i++) rates[i] = numClients === 1 ? min : min + ((max - min) * i) / (numClients - 1);
  } else {
    throw new RangeError('participation: p must be a number, an array or { min, max }');
  }
  return rates;
}

/** Markov transition probabilities for stationary rate p and P(off→on) = q, per §1.3. */
export function markovTransitions(p: number, q: number): { up: number; down: number } {
  let up = q;
  let down = q * (1 / p - 1);
  if (down > 1) {
    // Keep the stationary rate up/(up + down) = p with down = 1.
    down = 1;
    up = p / (1 - p);
  }
  return { up, down };
}

/** Lengths of the on and off phases of a cyclic client. */
export function cyclicPhases(p: number, period: number): { active: number; inactive: number } {
  const active = Math.max(1, Math.round(period * p));
  return { active, inactive: Math.max(1, period - active) };
}

/** Seeded per-round availability for `numClients` virtual clients. */
/**
 * The participation seed of a simulated run of seed `seed` (the presets, sim.json, and the train.json live mode gives
 * the coordinator, so both draw the same availability).
 */
export function participationSeed(seed: number): number {
  return deriveSeed(seed, 'participation');
}

export function createParticipation(spec: ParticipationSpec, numClients: number, seed: number): Participation {
  if (spec == null || typeof spec !== 'object') throw new RangeError('participation: spec must be an object with a kind');
  const rates = participationRates(spec.p, numClients);
  const rand = mulberry32(seed);
  const state = new Uint8Array(numClients);
  let step: () => void;
  switch (spec.kind) {
    case 'bernoulli':
      step = () => {
        for (let i = 0; i < numClients; i++) state[i] = rand() < rates[i] ? 1 : 0;
      };
      break;
    case 'markov': {
      const q = spec.q;
      if (typeof q !== 'number' || !Number.isFinite(q) || !(q > 0) || q > 1) throw new RangeError(`participation: q must be a number in (0, 1], got ${String(q)}`);
      const up = new Float64Array(numClients);
      const down = new Float64Array(numClients);
      for (let i = 0; i < numClients; i++) {
        const t = markovTransitions(rates[i], q);
        up[i] = t.up;
        down[i] = t.down;
      }
      let started = false;
      step = () => {
        for (let i = 0; i < numClients; i++) {
          const u = rand();
          if (!started) state[i] = u < rates[i] ? 1 : 0;
          else if (state[i] === 1) state[i] = u < down[i] ? 0 : 1;
          else state[i] = u < up[i] ? 1 : 0;
        }
        started = true;
      };
      break;
    }
    case 'cyclic': {
      const L = spec.period;
      if (!Number.isInteger(L) || L < 1) throw new RangeError(`participation: period must be an integer ≥ 1, got ${String(L)}`);
      const active = new Int32Array(numClients);
      const inactive = new Int32Array(numClients);
      const toSwitch = new Int32Array(numClients);
      for (let i = 0; i < numClients; i++) {
        const ph = cyclicPhases(rates[i], L);
        active[i] = ph.active;
        inactive[i] = ph.inactive;
        toSwitch[i] = Math.floor(rand() * ph.inactive); // U{0..inactive−1}; state starts 0 (inactive)
      }
      step = () => {
        for (let i = 0; i < numClients; i++) {
          if (toSwitch[i] === 0) {
            state[i] ^= 1;
            toSwitch[i] = state[i] === 1 ? active[i] : inactive[i];
          }
          toSwitch[i]--;
        }
      };
      break;
    }
    default:
      throw new RangeError(`participation: unknown kind ${JSON.stringify((spec as { kind?: unknown }).kind)}`);
  }
  let current = -1;
  const advance = (round: number): void => {
    if (!Number.isInteger(round) || round < 0) throw new RangeError(`participation: round must be an integer ≥ 0, got ${String(round)}`);
    if (round < current) throw new RangeError(`participation: rounds must be asked in order (asked ${round} after ${current})`);
    while (current < round) {
      step();
      current++;
    }
  };
  return {
    rates,
    available(round: number): Uint8Array {
      advance(round);
      return state.slice();
    },
    availability(round: number): Uint8Array {
      advance(round);
      return state;
    },
  };
}
