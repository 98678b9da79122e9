/** How stale updates are discounted in asynchronous aggregation (FedBuff; docs/algorithms.md §3). */
export type StalenessSpec =
  | { kind: 'constant' }
  | { kind: 'poly'; exponent: number }
  | { kind: 'hinge'; a: number; b: number };

/**
 * s(τ) for τ = server versions since the client downloaded its model:
 * constant → 1; poly → (1+τ)^−exponent; hinge → 1 if τ ≤ b, else 1/(a·(τ−b)+1).
 * Raw form: FLSim additionally normalises so s(τ̄) = 1; fold that into the server lr if wanted.
 */
export function stalenessWeight(spec: StalenessSpec, tau: number): number {
  if (typeof tau !== 'number' || !(tau >= 0)) throw new RangeError(`stalenessWeight: τ must be a number ≥ 0, got ${String(tau)}`);
  if (spec == null || typeof spec !== 'object') throw new RangeError('stalenessWeight: spec must be an object with a kind');
  switch (spec.kind) {
    case 'constant':
      return 1;
    case 'poly': {
      const a = spec.exponent;
      if (typeof a !== 'number' || !Number.isFinite(a) || a < 0) {
        throw new RangeError(`stalenessWeight: poly exponent must be a finite number ≥ 0, got ${String(a)}`);
      }
      return Math.pow(1 + tau, -a);
    }
    case 'hinge': {
      const { a, b } = spec;
      if (typeof a !== 'number' || !Number.isFinite(a) || a < 0 || typeof b !== 'number' || !Number.isFinite(b) || b < 0) {
        throw new RangeError(`stalenessWeight: hinge needs finite a ≥ 0 and b ≥ 0, got a=${String(a)}, b=${String(b)}`);
      }
      return tau <= b ? 1 : 1 / (a * (tau - b) + 1);
    }
    default:
      throw new RangeError(`stalenessWeight: unknown kind ${JSON.stringify((spec as { kind?: unknown }).kind)}`);
  }
}
